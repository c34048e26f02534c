//! Shared fixtures for the criterion benches in `benches/`.
//!
//! The vmem benches compare several range allocators (umem-vmem, the `vmem`
//! crate, `offset-allocator`, `range-alloc`) on the same access patterns. Each
//! allocator is wrapped in a [`RangeArena`] adapter whose unit is one
//! *quantum*; the fixtures below only speak in quanta, so every allocator sees
//! exactly the same sequence of requests.
//!
//! * [`Churn`] — `live` segments of random sizes (1..=8 quanta) are live; one
//!   step frees a victim (victims are visited in a fixed random permutation, so
//!   the lookup is a cache-cold random access, not the last allocation) and
//!   allocates a segment of the same size in its place. The number of live
//!   segments stays exactly `live`. [`Churn::with_sizes`] draws the sizes
//!   from a given set instead (the benches also use powers of two, which
//!   instant fit can put back in the hole just freed).
//! * [`Fragmented`] — `live` one-quantum segments each preceded by a free
//!   five-quantum hole (all holes sit on the `[4, 8)` power-of-two freelist),
//!   then a large free tail. One step allocates seven quanta and frees them:
//!   no hole fits, so a policy that searches the `[4, 8)` list pays for every
//!   hole while instant fit goes straight to the `[8, 16)`+ lists.
//!
//! Fixture setup is linear in `live` for every allocator here: frees during
//! setup go in reverse allocation order, which keeps the `vmem` crate's
//! 64-bucket allocation table (newest first) and `range-alloc`'s sorted free
//! list on their cheap paths.
//!
//! The umem-vmem adapter ([`UmemArena`]) lives here too; the peers' adapters
//! are in the bench file, since the peers are dev-dependencies.

use std::sync::atomic::{AtomicUsize, Ordering};

use umem_vmem::{Addr, CreateFlags, Policy, SegHandle, Vmem};

/// A small deterministic generator (SplitMix64) so the fixtures need no
/// `rand` and every allocator sees the same sequence.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (n > 0); the tiny modulo bias does not matter here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Shuffles `v` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// A range allocator seen through the fixtures: sizes are in quanta.
pub trait RangeArena {
    /// What `alloc` hands back and `free` takes (an address, an index, a
    /// move-only token such as umem-vmem's `SegHandle`, ...).
    type Handle;
    /// Allocates `quanta` units; `None` when the allocator is exhausted.
    fn alloc(&mut self, quanta: usize) -> Option<Self::Handle>;
    /// Frees a handle returned by `alloc(quanta)`.
    fn free(&mut self, handle: Self::Handle, quanta: usize);
    /// Where the allocation of `handle` starts, in the allocator's own
    /// units (an address, an offset): lets tests check placement.
    fn start(handle: &Self::Handle) -> usize;

    /// Lays out the [`Fragmented`] pattern in an empty arena: `live`
    /// one-quantum segments, each beside a free [`FRAG_HOLE_QUANTA`] hole that
    /// cannot coalesce with another hole, and a free tail. Returns the live
    /// handles, newest last.
    ///
    /// The default allocates (hole, live) pairs from the start of the arena
    /// and frees the holes in reverse order; an adapter overrides it when
    /// that would be quadratic for its allocator.
    fn lay_out_fragmented(&mut self, live: usize) -> Vec<Self::Handle>
    where
        Self: Sized,
    {
        let mut holes = Vec::with_capacity(live);
        let mut segs = Vec::with_capacity(live);
        for _ in 0..live {
            holes.push(
                self.alloc(FRAG_HOLE_QUANTA)
                    .expect("lay_out_fragmented: hole"),
            );
            segs.push(self.alloc(1).expect("lay_out_fragmented: live segment"));
        }
        for h in holes.into_iter().rev() {
            self.free(h, FRAG_HOLE_QUANTA);
        }
        segs
    }
}

/// Largest segment [`Churn`] allocates, in quanta.
pub const CHURN_MAX_QUANTA: usize = 8;

/// Quanta an arena needs for [`Churn::new(live)`](Churn::new): room for the
/// live set plus what instant/next fit leave behind as holes.
pub fn churn_span_quanta(live: usize) -> usize {
    live * CHURN_MAX_QUANTA * 4 + (1 << 20)
}

/// `live` segments of random sizes kept live; see the crate docs.
pub struct Churn<A: RangeArena> {
    /// The allocator under test.
    pub arena: A,
    /// Live handles (`None` only between a victim's free and its
    /// replacement's alloc, so handles need not be `Copy`) and sizes.
    slots: Vec<(Option<A::Handle>, u32)>,
    order: Vec<u32>,
    pos: usize,
}

impl<A: RangeArena> Churn<A> {
    /// Allocates `live` segments (sizes 1..=8 quanta from `seed`) in `arena`.
    ///
    /// # Panics
    /// If the arena runs out during setup (a fixture bug: size it with
    /// [`churn_span_quanta`]).
    pub fn new(arena: A, live: usize, seed: u64) -> Self {
        Self::with_sizes(arena, live, seed, &[1, 2, 3, 4, 5, 6, 7, 8])
    }

    /// Like [`new`](Self::new) with segment sizes drawn from `sizes` (in
    /// quanta, each at most [`CHURN_MAX_QUANTA`]).
    pub fn with_sizes(mut arena: A, live: usize, seed: u64, sizes: &[usize]) -> Self {
        assert!(live > 0 && live < u32::MAX as usize);
        assert!(sizes.iter().all(|&q| (1..=CHURN_MAX_QUANTA).contains(&q)));
        let mut rng = SplitMix64::new(seed);
        let mut slots = Vec::with_capacity(live);
        for _ in 0..live {
            let q = sizes[rng.below(sizes.len())];
            let h = arena
                .alloc(q)
                .expect("Churn::new: arena exhausted during setup");
            slots.push((Some(h), q as u32));
        }
        let mut order: Vec<u32> = (0..live as u32).collect();
        rng.shuffle(&mut order);
        Churn {
            arena,
            slots,
            order,
            pos: 0,
        }
    }

    /// Number of live segments (constant).
    pub fn live(&self) -> usize {
        self.slots.len()
    }

    /// One free+alloc pair: frees the next victim, allocates its size again.
    #[inline]
    pub fn step(&mut self) {
        let i = self.order[self.pos] as usize;
        self.pos += 1;
        if self.pos == self.order.len() {
            self.pos = 0;
        }
        let slot = &mut self.slots[i];
        let q = slot.1 as usize;
        let h = slot.0.take().expect("Churn::step: empty slot");
        self.arena.free(h, q);
        slot.0 = Some(self.arena.alloc(q).expect("Churn::step: arena exhausted"));
    }

    /// Frees every live segment and hands the (empty) arena back.
    pub fn into_empty(self) -> A {
        let Churn {
            mut arena, slots, ..
        } = self;
        for (h, q) in slots.into_iter().rev() {
            arena.free(h.expect("Churn: empty slot"), q as usize);
        }
        arena
    }
}

/// Size of the holes in [`Fragmented`], in quanta (on the `[4, 8)` list).
pub const FRAG_HOLE_QUANTA: usize = 5;
/// Size [`Fragmented::step`] asks for, in quanta (no hole fits it).
pub const FRAG_REQUEST_QUANTA: usize = 7;

/// Quanta an arena needs for [`Fragmented::new(live)`](Fragmented::new).
pub fn frag_span_quanta(live: usize) -> usize {
    live * (FRAG_HOLE_QUANTA + 1) + (1 << 20)
}

/// `live` one-quantum segments separated by five-quantum holes; see the
/// crate docs.
pub struct Fragmented<A: RangeArena> {
    /// The allocator under test.
    pub arena: A,
    live: Vec<A::Handle>,
}

impl<A: RangeArena> Fragmented<A> {
    /// Lays out the pattern with [`RangeArena::lay_out_fragmented`].
    pub fn new(mut arena: A, live: usize) -> Self {
        let live = arena.lay_out_fragmented(live);
        Fragmented { arena, live }
    }

    /// Number of live segments (and of holes).
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// One alloc+free pair of [`FRAG_REQUEST_QUANTA`]; returns where the
    /// allocation started ([`RangeArena::start`]; already freed) so callers
    /// can check where it landed.
    #[inline]
    pub fn step(&mut self) -> usize {
        let h = self
            .arena
            .alloc(FRAG_REQUEST_QUANTA)
            .expect("Fragmented::step: arena exhausted");
        let at = A::start(&h);
        self.arena.free(h, FRAG_REQUEST_QUANTA);
        at
    }

    /// Frees every live segment and hands the arena back.
    pub fn into_empty(self) -> A {
        let Fragmented { mut arena, live } = self;
        for h in live.into_iter().rev() {
            arena.free(h, 1);
        }
        arena
    }
}

/// Base address of the spans the benches give umem-vmem arenas (non-zero so
/// that no segment starts at address 0).
pub const UMEM_SPAN_BASE: Addr = 1 << 32;

static ARENA_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A umem-vmem arena over a plain integer span, with one allocation policy.
/// Destroyed on drop.
pub struct UmemArena {
    /// The arena.
    pub vmem: &'static Vmem,
    /// Its quantum in bytes.
    pub quantum: usize,
    /// The policy every `alloc` uses.
    pub policy: Policy,
}

impl UmemArena {
    /// An arena with an initial span of `span_quanta` quanta at
    /// [`UMEM_SPAN_BASE`], no source and the given `qcache_max` (0: none).
    pub fn new(span_quanta: usize, quantum: usize, policy: Policy, qcache_max: usize) -> Self {
        let name = format!("bench{}", ARENA_SEQ.fetch_add(1, Ordering::Relaxed));
        let vmem = Vmem::create(
            &name,
            Some((UMEM_SPAN_BASE, span_quanta * quantum)),
            quantum,
            None,
            qcache_max,
            CreateFlags::NONE,
        )
        .expect("Vmem::create");
        UmemArena {
            vmem,
            quantum,
            policy,
        }
    }
}

impl Drop for UmemArena {
    fn drop(&mut self) {
        // SAFETY: the arena was created by `new` for this adapter alone; no
        // other reference to it (nor any of its handles) is used after the
        // adapter.
        unsafe {
            let _ = self.vmem.destroy();
        }
        // Give the destroyed arena's segment structures back (whole chunks),
        // so the next bench row starts from fresh, address-ordered
        // structures as its peers start from fresh memory: structures
        // recycled through the global free list come in the memory order a
        // churned arena left them in, and an arena built from them pays a
        // miss per address neighbour (measured: vmem_pair/live=10000
        // instant-handle 26-27 ns after the rows before it, 19 ns alone).
        umem_vmem::update();
    }
}

impl RangeArena for UmemArena {
    type Handle = Addr;

    #[inline]
    fn alloc(&mut self, quanta: usize) -> Option<Addr> {
        self.vmem.alloc(quanta * self.quantum, self.policy).ok()
    }

    #[inline]
    fn free(&mut self, addr: Addr, quanta: usize) {
        self.vmem
            .free(addr, quanta * self.quantum)
            .expect("umem-vmem free");
    }

    fn start(addr: &Addr) -> usize {
        *addr
    }
}

/// A [`UmemArena`] used through handles: `alloc_handle` / `free_handle`
/// (no hash lookup on the free), like `offset-allocator`'s `Allocation`.
pub struct UmemHandleArena(pub UmemArena);

impl UmemHandleArena {
    /// As [`UmemArena::new`].
    pub fn new(span_quanta: usize, quantum: usize, policy: Policy, qcache_max: usize) -> Self {
        UmemHandleArena(UmemArena::new(span_quanta, quantum, policy, qcache_max))
    }
}

// Dropping the adapter destroys the arena (UmemArena's Drop). Handles the
// fixture still holds are then never used: `SegHandle` has no destructor.
impl RangeArena for UmemHandleArena {
    type Handle = SegHandle;

    #[inline]
    fn alloc(&mut self, quanta: usize) -> Option<SegHandle> {
        self.0
            .vmem
            .alloc_handle(quanta * self.0.quantum, self.0.policy)
            .ok()
    }

    #[inline]
    fn free(&mut self, h: SegHandle, _quanta: usize) {
        self.0.vmem.free_handle(h).expect("umem-vmem free_handle");
    }

    fn start(h: &SegHandle) -> usize {
        h.addr()
    }
}

/// Every umem-vmem policy, with the name the benches print.
pub const UMEM_POLICIES: [(&str, Policy); 4] = [
    ("instant", Policy::InstantFit),
    ("best", Policy::BestFit),
    ("first", Policy::FirstFit),
    ("next", Policy::NextFit),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// An obviously-correct first-fit allocator over a bitmap of quanta,
    /// which also checks every free against its live set.
    struct Model {
        used: Vec<bool>,
        live: std::collections::HashMap<usize, usize>,
    }

    impl Model {
        fn new(span: usize) -> Self {
            Model {
                used: vec![false; span],
                live: Default::default(),
            }
        }
        fn free_runs(&self) -> Vec<(usize, usize)> {
            let mut runs = Vec::new();
            let mut i = 0;
            while i < self.used.len() {
                if !self.used[i] {
                    let s = i;
                    while i < self.used.len() && !self.used[i] {
                        i += 1;
                    }
                    runs.push((s, i - s));
                } else {
                    i += 1;
                }
            }
            runs
        }
    }

    impl RangeArena for Model {
        type Handle = usize;
        fn alloc(&mut self, q: usize) -> Option<usize> {
            let start =
                (0..=self.used.len() - q).find(|&s| self.used[s..s + q].iter().all(|u| !u))?;
            self.used[start..start + q]
                .iter_mut()
                .for_each(|u| *u = true);
            self.live.insert(start, q);
            Some(start)
        }
        fn free(&mut self, h: usize, q: usize) {
            assert_eq!(self.live.remove(&h), Some(q), "bad free {h}/{q}");
            self.used[h..h + q].iter_mut().for_each(|u| *u = false);
        }
        fn start(h: &usize) -> usize {
            *h
        }
    }

    #[test]
    fn churn_keeps_the_live_set() {
        let live = 300;
        let mut fx = Churn::new(
            Model::new(churn_span_quanta(live) - (1 << 20) + 64),
            live,
            7,
        );
        let total: usize = fx.arena.live.values().sum();
        for _ in 0..5 * live {
            fx.step();
        }
        assert_eq!(fx.live(), live);
        assert_eq!(fx.arena.live.len(), live);
        assert_eq!(fx.arena.live.values().sum::<usize>(), total);
        assert!(fx
            .arena
            .live
            .values()
            .all(|&q| (1..=CHURN_MAX_QUANTA).contains(&q)));
        let m = fx.into_empty();
        assert!(m.live.is_empty());
    }

    #[test]
    fn fragmented_layout_has_the_promised_holes() {
        let live = 200;
        let mut fx = Fragmented::new(Model::new(live * 6 + 64), live);
        let runs = fx.arena.free_runs();
        assert_eq!(runs.len(), live + 1);
        assert!(runs[..live].iter().all(|&(_, len)| len == FRAG_HOLE_QUANTA));
        assert_eq!(runs[live], (live * 6, 64));
        // No hole fits the request: first fit lands in the tail.
        assert_eq!(fx.step(), live * 6);
        assert_eq!(fx.arena.live.len(), live);
        assert!(fx.into_empty().live.is_empty());
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<u32> = (0..1000).collect();
        SplitMix64::new(1).shuffle(&mut v);
        assert_ne!(v, (0..1000).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..1000).collect::<Vec<_>>());
    }

    /// Both umem adapters keep the fixtures' promises with every policy;
    /// `handles`: the live segments are handle segments.
    fn check_umem_fixtures<A: RangeArena>(
        make: impl Fn(usize, Policy) -> A,
        vmem: impl Fn(&A) -> &'static Vmem,
        handles: bool,
    ) {
        let live = 2000;
        for (name, policy) in UMEM_POLICIES {
            let mut fx = Churn::new(make(churn_span_quanta(live), policy), live, 3);
            for _ in 0..3 * live {
                fx.step();
            }
            let v = vmem(&fx.arena);
            v.verify().unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(v.stats().alloc_segs, live, "{name}");
            assert_eq!(
                v.stats().handle_segs,
                if handles { live } else { 0 },
                "{name}"
            );
            let a = fx.into_empty();
            assert_eq!(vmem(&a).stats().mem_inuse, 0, "{name}");

            let mut fx = Fragmented::new(make(frag_span_quanta(live), policy), live);
            let tail = UMEM_SPAN_BASE + live * (FRAG_HOLE_QUANTA + 1) * 4096;
            let got = fx.step();
            assert!(
                got >= tail,
                "{name}: 7 quanta at {got:#x}, below the tail {tail:#x}"
            );
            let st = vmem(&fx.arena).stats();
            assert_eq!(st.alloc_segs, live, "{name}");
            // Holes + tail; next fit's rotor may split the tail in two (a
            // rotor may sit between free segments).
            let extra = if policy == Policy::NextFit { 2 } else { 1 };
            assert!(
                (live + 1..=live + extra).contains(&st.free_segs),
                "{name}: {} free segments",
                st.free_segs
            );
            vmem(&fx.arena)
                .verify()
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let a = fx.into_empty();
            assert_eq!(vmem(&a).stats().mem_inuse, 0, "{name}");
        }
    }

    #[test]
    fn umem_fixtures_hold_for_every_policy() {
        check_umem_fixtures(
            |span, policy| UmemArena::new(span, 4096, policy, 0),
            |a| a.vmem,
            false,
        );
    }

    #[test]
    fn umem_handle_fixtures_hold_for_every_policy() {
        check_umem_fixtures(
            |span, policy| UmemHandleArena::new(span, 4096, policy, 0),
            |a| a.0.vmem,
            true,
        );
    }
}
