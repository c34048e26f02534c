//! umem-vmem beside its peers: the `vmem` crate 1.x, `offset-allocator` and
//! `range-alloc`, on the same request sequences (see the fixtures in
//! `umem_microbench`).
//!
//! umem-vmem rows: `umem/P` allocate with policy P and free by address
//! (`free(addr, size)`: a hash lookup); `umem/P-handle` use
//! `alloc_handle` / `free_handle` (no lookup), the way `offset-allocator`'s
//! `Allocation` token is used.
//!
//! Groups (one per pattern and live count, so peers sit side by side):
//! * `vmem_pair/live=N` — a free+alloc pair with N live segments of random
//!   sizes, victims in random order ([`Churn`]).
//! * `vmem_pair_pow2/live=N` — the same with sizes 1, 2, 4, 8 quanta (instant
//!   fit can then reuse the hole it just made; with other sizes it cannot).
//! * `vmem_frag/live=N` — an alloc+free pair of 7 quanta in an arena holding
//!   N one-quantum segments separated by N five-quantum holes ([`Fragmented`]).
//! * `vmem_qcache/live=N` — the `vmem_pair` pattern (sizes 1..=8 quanta) on
//!   an instant-fit arena without and with quantum caches (`qcache_max` = 8
//!   quanta, caches from umem-slab's factory).
//!
//! Run: `cargo bench -p umem-microbench --bench vmem` (add a filter such as
//! `vmem_pair` to run one group; `-- --warm-up-time 1 --measurement-time 2`
//! to change the short default times).

use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use umem_microbench::{
    churn_span_quanta, frag_span_quanta, Churn, Fragmented, RangeArena, FRAG_HOLE_QUANTA,
};

/// Live-segment counts every pattern is run at.
const LIVE: [usize; 3] = [100, 10_000, 1_000_000];
/// Seed of the size/victim sequence (the same for every allocator).
const SEED: u64 = 0x05ee_d0fb;
/// Quantum of the address-based arenas (umem-vmem, the `vmem` crate).
const QUANTUM: usize = 4096;
/// Base of their spans.
const BASE: usize = 1 << 32;
/// `qcache_max` of the quantum-cached arena: every [`Churn`] size (1..=8
/// quanta) goes to a quantum cache.
const QCACHE_MAX: usize = umem_microbench::CHURN_MAX_QUANTA * QUANTUM;

/// The `vmem` crate 1.x: boundary tags from the system allocator, a std mutex.
mod vmem_crate {
    use super::*;
    use vmem::{AllocPolicy, Arena, Bt};

    /// Boundary tags straight from the global (system) allocator.
    pub struct BtAlloc;

    // SAFETY: hands out fresh, properly sized and aligned blocks for `Bt` and
    // takes back only those.
    unsafe impl vmem::Allocator for BtAlloc {
        fn allocate(&self) -> Option<NonNull<Bt>> {
            // SAFETY: `Bt` has a non-zero size.
            NonNull::new(unsafe { std::alloc::alloc(std::alloc::Layout::new::<Bt>()) }.cast())
        }
        unsafe fn deallocate(&self, ptr: NonNull<Bt>) {
            // SAFETY: `ptr` came from `allocate` above with the same layout.
            unsafe { std::alloc::dealloc(ptr.as_ptr().cast(), std::alloc::Layout::new::<Bt>()) }
        }
    }

    pub struct VmemCrate {
        arena: Arena<'static, 'static, BtAlloc, Mutex<()>>,
        policy: AllocPolicy,
        quantum: usize,
    }

    impl VmemCrate {
        /// An arena with one span of `span_quanta` quanta at [`BASE`].
        pub fn new(span_quanta: usize, policy: AllocPolicy) -> Self {
            let v = Self::empty(policy);
            v.arena
                .add_span(BASE, span_quanta * QUANTUM)
                .expect("add_span");
            v
        }

        /// An arena for [`Fragmented`]: the chunks are added by
        /// `lay_out_fragmented`, the tail span here, above them.
        pub fn for_frag(live: usize, policy: AllocPolicy) -> Self {
            let v = Self::empty(policy);
            let tail = BASE + live * (FRAG_HOLE_QUANTA + 1) * QUANTUM;
            v.arena
                .add_span(tail, (1 << 20) * QUANTUM)
                .expect("add_span");
            v
        }

        /// Like [`new`](Self::new) with quantum 1 (integers 0..span): the
        /// crate's hash spreads these over its 64 buckets.
        pub fn unit_quantum(span_quanta: usize, policy: AllocPolicy) -> Self {
            let arena = Arena::create("vmem-crate", 1, None, BtAlloc).expect("create");
            arena.add_span(0, span_quanta).expect("add_span");
            VmemCrate {
                arena,
                policy,
                quantum: 1,
            }
        }

        fn empty(policy: AllocPolicy) -> Self {
            let arena = Arena::create("vmem-crate", QUANTUM, None, BtAlloc).expect("create");
            VmemCrate {
                arena,
                policy,
                quantum: QUANTUM,
            }
        }
    }

    impl RangeArena for VmemCrate {
        type Handle = usize;
        #[inline]
        fn alloc(&mut self, quanta: usize) -> Option<usize> {
            self.arena.alloc(quanta * self.quantum, self.policy).ok()
        }
        #[inline]
        fn free(&mut self, h: usize, _quanta: usize) {
            self.arena.free(h).expect("vmem crate free");
        }
        fn start(h: &usize) -> usize {
            *h
        }

        /// The default layout is quadratic here: this crate hashes
        /// allocated segments into 64 buckets by `FxHash(addr) % 64`, and
        /// page-aligned addresses all land in bucket 0, so every free scans
        /// the live list. Instead each (live, hole) chunk is added as its own
        /// span (in decreasing address order: `add_span` walks the address
        /// list from the front) and its live quantum is allocated at once (it
        /// is the newest entry on the `[4, 8)` list).
        fn lay_out_fragmented(&mut self, live: usize) -> Vec<usize> {
            let chunk = (FRAG_HOLE_QUANTA + 1) * QUANTUM;
            let mut segs = Vec::with_capacity(live);
            for i in (0..live).rev() {
                let base = BASE + i * chunk;
                self.arena.add_span(base, chunk).expect("add_span");
                let h = self
                    .arena
                    .alloc(QUANTUM, AllocPolicy::InstantFit)
                    .expect("alloc");
                assert_eq!(h, base, "vmem crate did not allocate from the new chunk");
                segs.push(h);
            }
            segs
        }
    }

    pub const POLICIES: [(&str, AllocPolicy); 3] = [
        ("instant", AllocPolicy::InstantFit),
        ("best", AllocPolicy::BestFit),
        ("next", AllocPolicy::NextFit),
    ];
}

/// `offset-allocator` (a TLSF-style allocator of u32 offsets; one policy).
mod offset {
    use super::*;
    use offset_allocator::{Allocation, Allocator};

    pub struct Offset(Allocator);

    impl Offset {
        pub fn new(span_quanta: usize, live: usize) -> Self {
            let size = u32::try_from(span_quanta).expect("span fits u32");
            let max_allocs = u32::try_from(live * 4 + 4096).expect("allocs fit u32");
            Offset(Allocator::with_max_allocs(size, max_allocs))
        }
    }

    impl RangeArena for Offset {
        type Handle = Allocation;
        #[inline]
        fn alloc(&mut self, quanta: usize) -> Option<Allocation> {
            self.0.allocate(quanta as u32)
        }
        #[inline]
        fn free(&mut self, h: Allocation, _quanta: usize) {
            self.0.free(h)
        }
        fn start(h: &Allocation) -> usize {
            h.offset as usize
        }
    }
}

/// `range-alloc` (a sorted Vec of free ranges, best fit).
mod range {
    use super::*;
    use range_alloc::RangeAllocator;

    pub struct Range(RangeAllocator<usize>);

    impl Range {
        pub fn new(span_quanta: usize) -> Self {
            Range(RangeAllocator::new(0..span_quanta))
        }
    }

    impl RangeArena for Range {
        type Handle = usize;
        #[inline]
        fn alloc(&mut self, quanta: usize) -> Option<usize> {
            self.0.allocate_range(quanta).ok().map(|r| r.start)
        }
        #[inline]
        fn free(&mut self, h: usize, quanta: usize) {
            self.0.free_range(h..h + quanta)
        }
        fn start(h: &usize) -> usize {
            *h
        }
    }
}

/// Benches `Churn::step` on a fixture built (lazily, only when the bench is
/// selected) by `make`.
fn churn<A: RangeArena>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    live: usize,
    make: impl FnOnce() -> A,
) {
    let mut make = Some(make);
    let mut fx: Option<Churn<A>> = None;
    g.bench_function(name, |b| {
        let f = fx.get_or_insert_with(|| Churn::new((make.take().unwrap())(), live, SEED));
        b.iter(|| f.step())
    });
}

/// [`churn`] with power-of-two sizes (1, 2, 4, 8 quanta).
fn churn_pow2<A: RangeArena>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    live: usize,
    make: impl FnOnce() -> A,
) {
    let mut make = Some(make);
    let mut fx: Option<Churn<A>> = None;
    g.bench_function(name, |b| {
        let f = fx.get_or_insert_with(|| {
            Churn::with_sizes((make.take().unwrap())(), live, SEED, &[1, 2, 4, 8])
        });
        b.iter(|| f.step())
    });
}

fn bench_pair_pow2(c: &mut Criterion) {
    use umem_microbench::{UmemArena, UmemHandleArena};
    use umem_vmem::Policy;
    for live in LIVE {
        let span = churn_span_quanta(live);
        let mut g = group(c, "vmem_pair_pow2", live);
        for (pname, policy) in [("instant", Policy::InstantFit), ("best", Policy::BestFit)] {
            churn_pow2(&mut g, &format!("umem/{pname}"), live, || {
                UmemArena::new(span, QUANTUM, policy, 0)
            });
        }
        for (pname, policy) in [("instant", Policy::InstantFit), ("best", Policy::BestFit)] {
            churn_pow2(&mut g, &format!("umem/{pname}-handle"), live, || {
                UmemHandleArena::new(span, QUANTUM, policy, 0)
            });
        }
        churn_pow2(&mut g, "offset-allocator", live, || {
            offset::Offset::new(span, live)
        });
        g.finish();
    }
}

/// Benches `Fragmented::step`, built lazily like [`churn`].
fn frag<A: RangeArena>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    live: usize,
    make: impl FnOnce() -> A,
) {
    let mut make = Some(make);
    let mut fx: Option<Fragmented<A>> = None;
    g.bench_function(name, |b| {
        let f = fx.get_or_insert_with(|| Fragmented::new((make.take().unwrap())(), live));
        b.iter(|| f.step())
    });
}

fn group<'a>(c: &'a mut Criterion, pattern: &str, live: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(format!("{pattern}/live={live}"));
    if live >= 1_000_000 {
        // The slow peers take milliseconds per op here.
        g.sample_size(10);
    }
    g
}

fn bench_pair(c: &mut Criterion) {
    for live in LIVE {
        let span = churn_span_quanta(live);
        let mut g = group(c, "vmem_pair", live);
        umem_side::pair_benches(&mut g, live, span);
        for (pname, policy) in vmem_crate::POLICIES {
            churn(&mut g, &format!("vmem-crate/{pname}"), live, || {
                vmem_crate::VmemCrate::new(span, policy)
            });
        }
        churn(&mut g, "vmem-crate/instant,q=1", live, || {
            vmem_crate::VmemCrate::unit_quantum(span, vmem::AllocPolicy::InstantFit)
        });
        churn(&mut g, "offset-allocator", live, || {
            offset::Offset::new(span, live)
        });
        churn(&mut g, "range-alloc/best", live, || range::Range::new(span));
        g.finish();
    }
}

fn bench_frag(c: &mut Criterion) {
    for live in LIVE {
        let span = frag_span_quanta(live);
        let mut g = group(c, "vmem_frag", live);
        umem_side::frag_benches(&mut g, live, span);
        for (pname, policy) in vmem_crate::POLICIES {
            frag(&mut g, &format!("vmem-crate/{pname}"), live, || {
                vmem_crate::VmemCrate::for_frag(live, policy)
            });
        }
        frag(&mut g, "offset-allocator", live, || {
            offset::Offset::new(span, live)
        });
        if live <= 10_000 {
            // range-alloc frees are O(free ranges) with a Vec insert: laying
            // out 10^6 holes would take minutes.
            frag(&mut g, "range-alloc/best", live, || range::Range::new(span));
        }
        g.finish();
    }
}

/// umem-vmem's side: one bench per policy, by address (`umem/P`: `alloc`
/// / `free(addr, size)`) and through handles (`umem/P-handle`:
/// `alloc_handle` / `free_handle`).
mod umem_side {
    use super::*;
    use umem_microbench::{UmemArena, UmemHandleArena, UMEM_POLICIES};

    /// Policies with a handle row (indices into `UMEM_POLICIES`: instant,
    /// best, next; first fit is left out to keep the groups short).
    const HANDLE_POLICIES: [usize; 3] = [0, 1, 3];

    pub fn pair_benches(g: &mut BenchmarkGroup<'_, WallTime>, live: usize, span: usize) {
        for (pname, policy) in UMEM_POLICIES {
            churn(g, &format!("umem/{pname}"), live, || {
                UmemArena::new(span, QUANTUM, policy, 0)
            });
        }
        for (pname, policy) in HANDLE_POLICIES.map(|i| UMEM_POLICIES[i]) {
            churn(g, &format!("umem/{pname}-handle"), live, || {
                UmemHandleArena::new(span, QUANTUM, policy, 0)
            });
        }
    }

    pub fn frag_benches(g: &mut BenchmarkGroup<'_, WallTime>, live: usize, span: usize) {
        for (pname, policy) in UMEM_POLICIES {
            frag(g, &format!("umem/{pname}"), live, || {
                UmemArena::new(span, QUANTUM, policy, 0)
            });
        }
        for (pname, policy) in HANDLE_POLICIES.map(|i| UMEM_POLICIES[i]) {
            frag(g, &format!("umem/{pname}-handle"), live, || {
                UmemHandleArena::new(span, QUANTUM, policy, 0)
            });
        }
    }
}

fn bench_qcache(c: &mut Criterion) {
    use umem_microbench::UmemArena;
    use umem_vmem::Policy;
    // Installs umem-slab's quantum-cache factory in umem-vmem.
    umem_slab::init();
    for live in LIVE {
        let span = churn_span_quanta(live);
        let mut g = group(c, "vmem_qcache", live);
        churn(&mut g, "umem/instant", live, || {
            UmemArena::new(span, QUANTUM, Policy::InstantFit, 0)
        });
        churn(&mut g, "umem/instant+qcache", live, || {
            let a = UmemArena::new(span, QUANTUM, Policy::InstantFit, QCACHE_MAX);
            assert!(
                a.vmem.qcache_for(QUANTUM).is_some(),
                "no quantum cache: is umem-slab's factory installed?"
            );
            a
        });
        g.finish();
    }
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
    targets = bench_pair, bench_pair_pow2, bench_frag, bench_qcache
}
criterion_main!(benches);
