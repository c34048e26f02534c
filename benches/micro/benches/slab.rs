//! umem-slab beside `Box` on the system allocator and std's `System`
//! `alloc`/`dealloc` of the same object size.
//!
//! Groups:
//! * `slab_hit` — one alloc+free pair that stays in the thread's loaded
//!   magazine (the hit path); also a `NOMAGAZINE` cache (every pair goes to
//!   the slab layer under its lock) to show what the magazines buy.
//! * `slab_depot` — per-pair cost of allocating a batch of `B` objects and
//!   freeing them all, with `B = M` (fits the loaded + previous magazines: no
//!   depot visit) and `B = 16M` (each batch forces 14 magazine exchanges with
//!   the depot on the alloc side and 14 on the free side: 28 per 16M pairs);
//!   `M` is the cache's magazine size. Reported per alloc+free pair
//!   (criterion's time is already divided by B), so the cost of one depot
//!   exchange is `(t(16M) - t(M)) * 16M / 28`.
//! * `slab_threads` — aggregate throughput of 1 and 2 threads each doing hit
//!   pairs on the same cache (criterion's "thrpt" is pairs/s over all
//!   threads; time is wall time per round of one pair in each thread), with
//!   a no-allocation compute loop as the machine's own scaling baseline.
//!
//! Run: `cargo bench -p umem-microbench --bench slab`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use umem_slab::{Cache, CacheFlags, CacheOps};

/// Object size every contender allocates.
const OBJ: usize = 64;

fn cache(name: &str, flags: CacheFlags) -> &'static Cache {
    Cache::create(name, OBJ, 0, CacheOps::NONE, umem_vmem::heap(), flags).expect("Cache::create")
}

fn layout() -> Layout {
    Layout::from_size_align(OBJ, 8).unwrap()
}

#[inline(always)]
fn slab_pair(c: &Cache) {
    let p = c.alloc().expect("slab alloc");
    black_box(p);
    // SAFETY: just allocated from `c`, not used afterwards.
    unsafe { c.free(p) };
}

#[inline(always)]
fn box_pair() {
    drop(black_box(Box::new([0u8; OBJ])));
}

#[inline(always)]
fn system_pair(l: Layout) {
    // SAFETY: non-zero size; freed with the same layout.
    unsafe {
        let p = System.alloc(l);
        assert!(!p.is_null());
        System.dealloc(black_box(p), l);
    }
}

fn bench_hit(c: &mut Criterion) {
    let mut g = c.benchmark_group("slab_hit");
    let umem = cache("bench_hit", CacheFlags::NONE);
    g.bench_function("umem-slab", |b| b.iter(|| slab_pair(umem)));
    let nomag = cache("bench_nomag", CacheFlags::NOMAGAZINE);
    g.bench_function("umem-slab/nomagazine", |b| b.iter(|| slab_pair(nomag)));
    g.bench_function("box-system", |b| b.iter(box_pair));
    let l = layout();
    g.bench_function("system-alloc", |b| b.iter(|| system_pair(l)));
    g.finish();
}

/// Runs `iters` batches of `n` allocations then `n` frees and returns the
/// elapsed time divided by `n` (so criterion reports per pair).
fn batches(
    iters: u64,
    n: usize,
    mut alloc: impl FnMut() -> usize,
    mut free: impl FnMut(usize),
) -> Duration {
    let mut held = vec![0usize; n];
    let t = Instant::now();
    for _ in 0..iters {
        for h in held.iter_mut() {
            *h = alloc();
        }
        for &h in held.iter().rev() {
            free(black_box(h));
        }
    }
    t.elapsed() / n as u32
}

fn bench_depot(c: &mut Criterion) {
    let umem = cache("bench_depot", CacheFlags::NONE);
    // Touch the cache once so the thread has its magazines.
    slab_pair(umem);
    let m = umem.stats().mag_size.max(1);
    let mut g = c.benchmark_group(format!("slab_depot/M={m}"));
    let l = layout();
    for (label, n) in [("B=M", m), ("B=16M", 16 * m)] {
        g.bench_function(format!("umem-slab/{label}"), |b| {
            b.iter_custom(|iters| {
                batches(
                    iters,
                    n,
                    || umem.alloc().expect("alloc").as_ptr() as usize,
                    // SAFETY: each address was allocated from `umem` just before.
                    |a| unsafe { umem.free(NonNull::new_unchecked(a as *mut u8)) },
                )
            })
        });
        g.bench_function(format!("box-system/{label}"), |b| {
            b.iter_custom(|iters| {
                batches(
                    iters,
                    n,
                    || Box::into_raw(Box::new([0u8; OBJ])) as usize,
                    // SAFETY: each address came from `Box::into_raw` just before.
                    |a| drop(unsafe { Box::from_raw(a as *mut [u8; OBJ]) }),
                )
            })
        });
        g.bench_function(format!("system-alloc/{label}"), |b| {
            b.iter_custom(|iters| {
                batches(
                    iters,
                    n,
                    // SAFETY: non-zero size.
                    || unsafe { System.alloc(l) } as usize,
                    // SAFETY: allocated with the same layout just before.
                    |a| unsafe { System.dealloc(a as *mut u8, l) },
                )
            })
        });
    }
    g.finish();
}

/// A few nanoseconds of register-only work (the scaling baseline).
#[inline(always)]
fn compute_unit() {
    let mut x = black_box(0x9e37_79b9_u64);
    for _ in 0..8 {
        x = x.wrapping_mul(0x2545_f491_4f6c_dd1d).rotate_left(7);
    }
    black_box(x);
}

/// Runs `pair` `iters` times on each of `threads` threads (started together)
/// and returns the longest thread's time.
fn parallel(
    threads: usize,
    iters: u64,
    pair: impl Fn() + Sync + Send + Copy + 'static,
) -> Duration {
    let barrier = Arc::new(Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                // Warm the thread's magazines outside the timed part.
                for _ in 0..1000 {
                    pair();
                }
                barrier.wait();
                let t = Instant::now();
                for _ in 0..iters {
                    pair();
                }
                t.elapsed()
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).max().unwrap()
}

fn bench_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("slab_threads");
    let umem = cache("bench_threads", CacheFlags::NONE);
    let l = layout();
    for threads in [1usize, 2] {
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_function(format!("umem-slab/threads={threads}"), |b| {
            b.iter_custom(|iters| parallel(threads, iters, move || slab_pair(umem)))
        });
        g.bench_function(format!("box-system/threads={threads}"), |b| {
            b.iter_custom(|iters| parallel(threads, iters, box_pair))
        });
        g.bench_function(format!("system-alloc/threads={threads}"), |b| {
            b.iter_custom(|iters| parallel(threads, iters, move || system_pair(l)))
        });
        // No allocation at all: how well this machine runs 2 threads at once
        // (on a loaded 2-core box, far from 2x; read the allocators' ratios
        // against this one).
        g.bench_function(format!("no-alloc-baseline/threads={threads}"), |b| {
            b.iter_custom(|iters| parallel(threads, iters, compute_unit))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    // Short times: the machine has 2 cores shared with compilers. Override
    // with `-- --warm-up-time S --measurement-time S`.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_hit, bench_depot, bench_threads
}
criterion_main!(benches);
