//! `CacheFlags::FREE_KEY` (issue 11, defect 4): colour-free slabs whose chunk starts are a
//! function of the address (`Cache::grid`), new chunks marked with the free key, and
//! `Cache::check_free`, the slow check a free path runs when a block it frees already
//! holds the key.

#![allow(clippy::manual_is_multiple_of)] // keep the workspace MSRV (1.80)

use std::ptr::NonNull;

use umem_slab::{Cache, CacheFlags, CacheOps, SlabError};
use umem_vmem::{CreateFlags, Vmem};

fn key_of(p: usize) -> usize {
    // SAFETY: `p` is a buffer of the test's cache (live or free, never unmapped while
    // its slab exists).
    unsafe { *(p as *const usize) }
}

#[test]
fn free_key_caches() {
    umem_slab::set_update_interval_ms(0);
    let a = Vmem::create(
        "fk_arena",
        None,
        4096,
        Some(umem_vmem::heap()),
        0,
        CreateFlags::NONE,
    )
    .unwrap();
    let secret = umem_slab::process_secret();
    assert_ne!(secret, 0);
    assert_eq!(secret, umem_slab::process_secret());
    let key = umem_slab::FREE_KEY_WORD;
    assert_ne!(key, 0);

    // Only caches whose free buffers may be written.
    fn ctor(_: NonNull<u8>, _: *mut ()) -> bool {
        true
    }
    let ops = CacheOps {
        ctor: Some(ctor),
        ..CacheOps::NONE
    };
    assert!(matches!(
        Cache::create("fk_ctor", 32, 0, ops, a, CacheFlags::FREE_KEY),
        Err(SlabError::BadFlags { .. })
    ));
    assert!(matches!(
        Cache::create(
            "fk_nt",
            32,
            0,
            CacheOps::NONE,
            a,
            CacheFlags::FREE_KEY | CacheFlags::NOTOUCH
        ),
        Err(SlabError::BadFlags { .. })
    ));

    for (size, flags) in [
        (8usize, CacheFlags::FREE_KEY),
        (8, CacheFlags::FREE_KEY | CacheFlags::NOMAGAZINE),
        (48, CacheFlags::FREE_KEY),
        (80, CacheFlags::FREE_KEY),
        (160, CacheFlags::FREE_KEY | CacheFlags::NOMAGAZINE),
        (448, CacheFlags::FREE_KEY),
    ] {
        let c = Cache::create("fk", size, 0, CacheOps::NONE, a, flags).unwrap();
        let g = c.grid().expect("in-slab FREE_KEY caches have a grid");
        assert_eq!((g.slab_size, g.chunk_size), (4096, c.chunk_size()));
        assert_eq!(g.chunks, c.buffers_per_slab());
        // Colour-free: every buffer, over many slabs, is on the grid.
        let v: Vec<usize> = (0..6 * g.chunks)
            .map(|_| c.alloc().unwrap().as_ptr() as usize)
            .collect();
        for &p in &v {
            let o = p % g.slab_size;
            assert!(
                o % g.chunk_size == 0 && o / g.chunk_size < g.chunks,
                "{p:#x}"
            );
        }
        // A live block (its first word cleared, as the free path's user does on
        // allocation) passes; so does one whose data happens to equal the key.
        let p = v[3];
        // SAFETY: a live block of this cache.
        unsafe { *(p as *mut usize) = 0 };
        assert_eq!(c.check_free(p), Ok(()));
        // SAFETY: as above.
        unsafe { *(p as *mut usize) = key };
        assert_eq!(c.check_free(p), Ok(()));
        // Interior and foreign pointers.
        assert!(matches!(
            c.check_free(p + c.chunk_size() / 2),
            Err(SlabError::BadAddress { buffer, .. }) if buffer == p
        ));
        let mut local = 0usize;
        assert!(matches!(
            c.check_free(&mut local as *mut usize as usize),
            Err(SlabError::NotOwned { .. })
        ));
        // Freed (to the thread's magazine, or to the slab layer): a double free.
        // SAFETY: a live block, freed once.
        unsafe { c.free(NonNull::new(p as *mut u8).unwrap()) };
        assert!(matches!(
            c.check_free(p),
            Err(SlabError::DoubleFree { addr, .. }) if addr == p
        ));
        // Blocks pushed to the depot by a reap of the thread's magazines are found too.
        for &q in &v[4..40] {
            // SAFETY: live blocks, freed once.
            unsafe { c.free(NonNull::new(q as *mut u8).unwrap()) };
        }
        assert!(matches!(
            c.check_free(v[20]),
            Err(SlabError::DoubleFree { .. })
        ));
        // A never-allocated chunk of a fresh slab starts marked with the key, and is free.
        let fresh = c.alloc().unwrap().as_ptr() as usize;
        let mut n = None;
        let slab = fresh & !(g.slab_size - 1);
        for i in 0..g.chunks {
            let q = slab + i * g.chunk_size;
            if !v.contains(&q) && q != fresh && key_of(q) == key {
                n = Some(q);
                break;
            }
        }
        if let Some(q) = n {
            assert!(matches!(c.check_free(q), Err(SlabError::DoubleFree { .. })));
        }
        c.verify().unwrap();
        for &q in v[..3].iter().chain(&v[40..]).chain([&fresh]) {
            // SAFETY: the remaining live blocks.
            unsafe { c.free(NonNull::new(q as *mut u8).unwrap()) };
        }
        c.verify().unwrap();
    }
    // Hashed FREE_KEY caches have a grid too: their slabs are aligned to their size
    // rounded up to a power of two, buffers from each slab's start.
    let h = Cache::create("fk_big", 1000, 0, CacheOps::NONE, a, CacheFlags::FREE_KEY).unwrap();
    assert!(h.is_hashed());
    let g = h.grid().expect("hashed FREE_KEY caches have a grid");
    assert!(g.slab_size.is_power_of_two() && g.slab_size >= h.slab_size());
    assert_eq!(
        (g.chunk_size, g.chunks),
        (h.chunk_size(), h.slab_size() / h.chunk_size())
    );
    let hv: Vec<usize> = (0..3 * g.chunks)
        .map(|_| h.alloc().unwrap().as_ptr() as usize)
        .collect();
    for &p in &hv {
        let o = p % g.slab_size;
        assert!(
            o % g.chunk_size == 0 && o / g.chunk_size < g.chunks,
            "{p:#x} off {g:?}"
        );
    }
    for &p in &hv {
        // SAFETY: live blocks of h.
        unsafe { h.free(NonNull::new(p as *mut u8).unwrap()) };
    }
    // Hashed caches without FREE_KEY have none.
    let n = Cache::create("nk_big", 1000, 0, CacheOps::NONE, a, CacheFlags::NONE).unwrap();
    assert!(n.is_hashed() && n.grid().is_none());
}

/// An 8-byte `FREE_KEY` cache: one word per chunk, so its slabs keep a free map after the
/// record instead of links in the chunks (`slab.rs`, `MAP_CHUNK`). Its free chunks hold
/// the key wherever they are; a random sequence of allocations and frees, checked against
/// a model, never hands out a live buffer and never loses one.
#[test]
fn one_word_chunks_keep_a_free_map() {
    umem_slab::set_update_interval_ms(0);
    let a = umem_testkit::heap_arena("fm_arena", 4096);
    let key = umem_slab::FREE_KEY_WORD;
    // Without the key the chunk is one word, linked as any other in-slab cache's.
    let plain = umem_testkit::cache("fm_plain", 8, a);
    assert_eq!(
        (plain.chunk_size(), plain.buffers_per_slab()),
        (8, (4096 - 64) / 8)
    );
    for flags in [CacheFlags::NOMAGAZINE, CacheFlags::NONE] {
        let c = umem_testkit::CacheBuilder::new("fm", 8, a)
            .flags(CacheFlags::FREE_KEY | flags)
            .create();
        // Record (64 bytes) and map (64) at the slab's end: 496 chunks, not 252 of 16.
        assert_eq!((c.chunk_size(), c.buffers_per_slab()), (8, 496));
        let g = c.grid().unwrap();
        assert_eq!((g.slab_size, g.chunk_size, g.chunks), (4096, 8, 496));

        let mut rng = umem_testkit::Rng::new(0x8b17);
        let mut live: Vec<usize> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for step in 0..60_000 {
            if live.is_empty() || (rng.below(100) < 55 && live.len() < 3000) {
                let p = c.alloc().unwrap().as_ptr() as usize;
                let o = p % 4096;
                assert!(o % 8 == 0 && o / 8 < 496, "{p:#x} off the grid");
                assert!(seen.insert(p), "step {step}: {p:#x} handed out while live");
                // A buffer from the slab layer or a magazine holds the key until its user
                // clears it (umem-global does, on every allocation).
                assert_eq!(key_of(p), key, "step {step}: {p:#x} free without the key");
                // SAFETY: a live buffer of c, one word.
                unsafe { *(p as *mut usize) = p ^ 0x5a5a };
                live.push(p);
            } else {
                let p = live.swap_remove(rng.below(live.len() as u64) as usize);
                assert_eq!(key_of(p), p ^ 0x5a5a, "step {step}: {p:#x} overwritten");
                assert_eq!(c.check_free(p), Ok(()));
                // SAFETY: a live buffer, freed once (the key first, as umem-global's free
                // path writes it).
                unsafe {
                    *(p as *mut usize) = key;
                    c.free(NonNull::new(p as *mut u8).unwrap());
                }
                seen.remove(&p);
                // Free in a magazine or on its slab's map; without magazines, a slab with
                // no live buffer left is gone back to the arena.
                let slab_kept = live.iter().any(|&q| q / 4096 == p / 4096);
                match c.check_free(p) {
                    Err(SlabError::DoubleFree { addr, .. }) if addr == p => {}
                    Err(SlabError::NotOwned { .. })
                        if !slab_kept && flags == CacheFlags::NOMAGAZINE => {}
                    other => panic!("step {step}: check_free of free {p:#x} gave {other:?}"),
                }
            }
            if step % 10_000 == 0 {
                c.verify().unwrap();
            }
        }
        c.verify().unwrap();
        for p in live.drain(..) {
            // SAFETY: the remaining live buffers.
            unsafe {
                *(p as *mut usize) = key;
                c.free(NonNull::new(p as *mut u8).unwrap());
            }
        }
        c.verify().unwrap();
        assert_eq!(c.stats().buf_inuse, 0);
    }
}
