//! umem-vmem beside its peers: the `vmem` crate 1.x, `offset-allocator` and
//! `range-alloc`, on the same request sequences (see the fixtures in
//! `umem_microbench`).
//!
//! Groups (one per pattern and live count, so peers sit side by side):
//! * `vmem_pair/live=N` — a free+alloc pair with N live segments of random
//!   sizes, victims in random order ([`Churn`]).
//! * `vmem_frag/live=N` — an alloc+free pair of 7 quanta in an arena holding
//!   N one-quantum segments separated by N five-quantum holes ([`Fragmented`]).
//! * `vmem_qcache` — small allocations from an arena with and without quantum
//!   caches.
//!
//! Run: `cargo bench -p umem-microbench --bench vmem` (add a filter such as
//! `vmem_pair` to run one group; `-- --warm-up-time 1 --measurement-time 2`
//! to change the short default times).

use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use criterion::measurement::WallTime;
use umem_microbench::{
    churn_span_quanta, frag_span_quanta, Churn, Fragmented, RangeArena,
};

/// Live-segment counts every pattern is run at.
const LIVE: [usize; 3] = [100, 10_000, 1_000_000];
/// Seed of the size/victim sequence (the same for every allocator).
const SEED: u64 = 0x5eed_0f_b0b;
/// Quantum of the address-based arenas (umem-vmem, the `vmem` crate).
const QUANTUM: usize = 4096;
/// Base of their spans.
const BASE: usize = 1 << 32;

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
    }

    impl VmemCrate {
        pub fn new(span_quanta: usize, policy: AllocPolicy) -> Self {
            let arena = Arena::create("vmem-crate", QUANTUM, None, BtAlloc).expect("create");
            arena.add_span(BASE, span_quanta * QUANTUM).expect("add_span");
            VmemCrate { arena, policy }
        }
    }

    impl RangeArena for VmemCrate {
        type Handle = usize;
        #[inline]
        fn alloc(&mut self, quanta: usize) -> Option<usize> {
            self.arena.alloc(quanta * QUANTUM, self.policy).ok()
        }
        #[inline]
        fn free(&mut self, h: usize, _quanta: usize) {
            self.arena.free(h).expect("vmem crate free");
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
        umem_side::pair(&mut g, live, span);
        for (pname, policy) in vmem_crate::POLICIES {
            churn(&mut g, &format!("vmem-crate/{pname}"), live, || {
                vmem_crate::VmemCrate::new(span, policy)
            });
        }
        churn(&mut g, "offset-allocator", live, || offset::Offset::new(span, live));
        churn(&mut g, "range-alloc/best", live, || range::Range::new(span));
        g.finish();
    }
}

fn bench_frag(c: &mut Criterion) {
    for live in LIVE {
        let span = frag_span_quanta(live);
        let mut g = group(c, "vmem_frag", live);
        umem_side::frag(&mut g, live, span);
        for (pname, policy) in vmem_crate::POLICIES {
            frag(&mut g, &format!("vmem-crate/{pname}"), live, || {
                vmem_crate::VmemCrate::new(span, policy)
            });
        }
        frag(&mut g, "offset-allocator", live, || offset::Offset::new(span, live));
        if live <= 10_000 {
            // range-alloc frees are O(free ranges) with a Vec insert: laying
            // out 10^6 holes would take minutes.
            frag(&mut g, "range-alloc/best", live, || range::Range::new(span));
        }
        g.finish();
    }
}

/// umem-vmem's side (filled in once its API has landed).
mod umem_side {
    use super::*;

    pub fn pair(_g: &mut BenchmarkGroup<'_, WallTime>, _live: usize, _span: usize) {}
    pub fn frag(_g: &mut BenchmarkGroup<'_, WallTime>, _live: usize, _span: usize) {}
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
    targets = bench_pair, bench_frag
}
criterion_main!(benches);
