//! Quick manual timing of the magazine-hit path (the criterion benches live in
//! benches/micro). Run: `cargo run --release -p umem-slab --example hit_timing`.
//!
//! Prints ns per alloc+free pair for: the per-thread magazine hit; the same with 2 threads
//! (aggregate); a `sched_getcpu()` + per-CPU spin-lock magazine (the alternative design
//! measured for the theory statement); and `Box` on the system allocator.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use umem_slab::{Cache, CacheFlags, CacheOps};

const N: u64 = 20_000_000;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time (not wall time) per pair: unaffected by other processes on a loaded machine,
/// but it does include any slowdown from sharing cache lines with the other thread.
fn pair_loop_cpu(c: &Cache, n: u64) -> f64 {
    let t = thread_cpu_ns();
    for _ in 0..n {
        let p = c.alloc().unwrap();
        black_box(p);
        // SAFETY: `p` was just allocated from `c` and is freed once.
        unsafe { c.free(p) };
    }
    (thread_cpu_ns() - t) as f64 / n as f64
}

fn pair_loop(c: &Cache, n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        let p = c.alloc().unwrap();
        black_box(p);
        // SAFETY: `p` was just allocated from `c` and is freed once.
        unsafe { c.free(p) };
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// The per-CPU alternative: one magazine per CPU behind a spin lock, CPU from sched_getcpu.
struct PerCpu {
    slots: Vec<CpuSlot>,
}
#[repr(align(64))]
struct CpuSlot {
    lock: AtomicBool,
    rounds: std::cell::UnsafeCell<(usize, [usize; 64])>,
}
// SAFETY: each slot's rounds are touched only while its `lock` is held.
unsafe impl Sync for PerCpu {}

impl PerCpu {
    fn alloc(&self) -> Option<usize> {
        // SAFETY: sched_getcpu has no preconditions.
        let cpu = unsafe { libc::sched_getcpu() } as usize % self.slots.len();
        let s = &self.slots[cpu];
        while s.lock.swap(true, Ordering::Acquire) {
            std::hint::spin_loop();
        }
        // SAFETY: the slot's lock is held (taken just above).
        let r = unsafe { &mut *s.rounds.get() };
        let v = if r.0 > 0 {
            r.0 -= 1;
            Some(r.1[r.0])
        } else {
            None
        };
        s.lock.store(false, Ordering::Release);
        v
    }
    fn free(&self, a: usize) -> bool {
        // SAFETY: sched_getcpu has no preconditions.
        let cpu = unsafe { libc::sched_getcpu() } as usize % self.slots.len();
        let s = &self.slots[cpu];
        while s.lock.swap(true, Ordering::Acquire) {
            std::hint::spin_loop();
        }
        // SAFETY: the slot's lock is held (taken just above).
        let r = unsafe { &mut *s.rounds.get() };
        let ok = r.0 < 64;
        if ok {
            r.1[r.0] = a;
            r.0 += 1;
        }
        s.lock.store(false, Ordering::Release);
        ok
    }
}

fn main() {
    let c = Cache::create(
        "timing_64",
        64,
        0,
        CacheOps::NONE,
        umem_vmem::heap(),
        CacheFlags::NONE,
    )
    .unwrap();
    // Warm up: magazines loaded.
    pair_loop(c, 1_000_000);
    let one = (0..3).map(|_| pair_loop(c, N)).fold(f64::MAX, f64::min);
    println!("umem-slab magazine hit, 1 thread: {one:.2} ns per alloc+free pair");

    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| pair_loop(c, N));
        }
    });
    let el = t.elapsed().as_nanos() as f64;
    println!(
        "umem-slab magazine hit, 2 threads: {:.2} ns per pair per thread, aggregate {:.2}x one thread",
        el / N as f64,
        (2.0 * N as f64 / el) / (1.0 / one)
    );

    let solo = pair_loop_cpu(c, N);
    let both: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2).map(|_| s.spawn(|| pair_loop_cpu(c, N))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    println!(
        "thread CPU time per pair: 1 thread {solo:.2} ns; 2 concurrent threads {:.2} / {:.2} ns \
         (equal = no shared-line interference)",
        both[0], both[1]
    );

    // Depot traffic: batches larger than two magazines force a depot exchange about every
    // magazine-size operations.
    let mut batch = Vec::with_capacity(256);
    let rounds = 200_000u64;
    let t = Instant::now();
    for _ in 0..rounds {
        for _ in 0..256 {
            batch.push(c.alloc().unwrap());
        }
        for p in batch.drain(..) {
            // SAFETY: every pointer in `batch` came from `c.alloc()` and is freed once.
            unsafe { c.free(p) };
        }
    }
    let st = c.stats();
    println!(
        "batches of 256 (depot exchanges, {}-round magazines): {:.2} ns per alloc+free pair",
        st.mag_size,
        t.elapsed().as_nanos() as f64 / (rounds * 256) as f64
    );

    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pc = PerCpu {
        slots: (0..ncpu)
            .map(|_| CpuSlot {
                lock: AtomicBool::new(false),
                rounds: std::cell::UnsafeCell::new((0, [0; 64])),
            })
            .collect(),
    };
    let buf = c.alloc().unwrap().as_ptr() as usize;
    pc.free(buf);
    let t = Instant::now();
    for _ in 0..N {
        let a = pc.alloc().unwrap();
        black_box(a);
        pc.free(a);
    }
    println!(
        "sched_getcpu + per-CPU spin lock magazine: {:.2} ns per pair",
        t.elapsed().as_nanos() as f64 / N as f64
    );

    let t = Instant::now();
    for _ in 0..N {
        let b = Box::new([0u64; 8]);
        black_box(&b);
        drop(b);
    }
    println!(
        "Box<[u64; 8]> on the system allocator: {:.2} ns per pair",
        t.elapsed().as_nanos() as f64 / N as f64
    );
    let st = c.stats();
    println!(
        "stats: alloc {} free {} slabs {} mag_size {}",
        st.alloc, st.free, st.slabs, st.mag_size
    );
}
