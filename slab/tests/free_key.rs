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
        (48usize, CacheFlags::FREE_KEY),
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
            c.check_free(p + 16),
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
