//! Quantum caches: an arena with `qcache_max` serves small multiples of its quantum from
//! NOTOUCH slab caches. The arena here is a pure integer range that is not mapped memory,
//! so any write by the allocator into a buffer would crash the test.

use std::collections::BTreeMap;

use umem_testkit::{ArenaBuilder, Rng};
use umem_vmem::{Policy, Vmem};

const BASE: usize = 1 << 44;
const SPAN: usize = 1 << 26;

fn model_run(a: &'static Vmem, seed: u64, ops: usize, quantum: usize) {
    let mut rng = Rng::from_state(seed);
    // addr -> (rounded size, requested size)
    let mut live: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for step in 0..ops {
        if rng.below(100) < 55 || live.is_empty() {
            // Mostly qcache sizes, some larger.
            let size = if rng.below(10) < 8 {
                1 + rng.below(8 * quantum as u64) as usize
            } else {
                1 + rng.below(64 * quantum as u64) as usize
            };
            let addr = a.alloc(size, Policy::InstantFit).unwrap();
            let rsize = size.next_multiple_of(quantum);
            assert_eq!(addr % quantum, 0, "alignment");
            assert!(
                addr >= BASE && addr + rsize <= BASE + SPAN,
                "outside the span"
            );
            if let Some((&pa, &(ps, _))) = live.range(..=addr).next_back() {
                assert!(
                    pa + ps <= addr,
                    "overlaps previous: {pa:#x}+{ps:#x} vs {addr:#x}"
                );
            }
            if let Some((&na, _)) = live.range(addr..).next() {
                assert!(addr + rsize <= na, "overlaps next");
            }
            live.insert(addr, (rsize, size));
        } else {
            let k = rng.below(live.len() as u64) as usize;
            let (&addr, &(_, size)) = live.iter().nth(k).unwrap();
            live.remove(&addr);
            a.free(addr, size).unwrap();
        }
        if step % 5000 == 0 {
            umem_slab::reap();
        }
    }
    for (addr, (_, size)) in live {
        a.free(addr, size).unwrap();
    }
}

#[test]
fn qcache_backed_arena_passes_model_test() {
    umem_slab::init();
    let quantum = 16;
    let a = ArenaBuilder::new("qc_model")
        .span(BASE, SPAN)
        .quantum(quantum)
        .qcache_max(8 * quantum)
        .create();
    model_run(a, 42, 30_000, quantum);
    // Two threads on the same arena.
    let hs: Vec<_> = (0..2)
        .map(|t| std::thread::spawn(move || model_run(a, 1000 + t, 20_000, quantum)))
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    // The qcaches were used (their caches exist and did work) ...
    let mut qc_allocs = 0;
    umem_slab::for_each_cache(&mut |c| {
        if c.name().starts_with("qc_model") {
            assert!(c.flags().contains(umem_slab::CacheFlags::NOTOUCH));
            assert!(c.is_hashed());
            assert!(c.slab_size() >= 3 * 8 * quantum && c.slab_size().is_power_of_two());
            c.verify().unwrap();
            qc_allocs += c.stats().alloc;
        }
    });
    assert!(qc_allocs > 10_000, "qcaches served {qc_allocs}");
    // ... and after a reap everything is back in the arena.
    umem_slab::reap();
    assert_eq!(a.stats().mem_inuse, 0);
    a.verify().unwrap();
    // SAFETY: the test made it and nothing uses it after this (no other users).
    assert_eq!(unsafe { a.destroy() }, 0, "no leaked bytes");
}
