//! More caches than the 64 slots inline in a thread block: ids from 64 on go through the
//! lazily allocated directory (alloc, free, thread-exit flush, stats, destroy).

use std::ptr::NonNull;
use umem_slab::Cache;
use umem_testkit::{cache, heap_arena};

#[test]
fn caches_beyond_the_inline_slots_work_in_every_thread() {
    let a = heap_arena("many_arena", 4096);
    let caches: Vec<&'static Cache> = (0..100)
        .map(|i| cache("many", 16 + 16 * (i % 8), a))
        .collect();
    assert!(umem_slab::cache_count() >= 100);
    let work = |caches: &[&'static Cache], tag: usize| {
        for round in 0..20 {
            let mut held: Vec<(usize, NonNull<u8>)> = Vec::new();
            for (i, c) in caches.iter().enumerate() {
                for _ in 0..(i % 5 + 1) {
                    let p = c.alloc().unwrap();
                    // SAFETY: a live buffer of at least 16 bytes, word-aligned, ours.
                    unsafe { *(p.as_ptr() as *mut usize) = tag ^ i ^ round };
                    held.push((i, p));
                }
            }
            for (i, p) in held {
                // SAFETY: the same live buffer, written above.
                assert_eq!(unsafe { *(p.as_ptr() as *const usize) }, tag ^ i ^ round);
                // SAFETY: the buffer came from this cache's `alloc` and is freed once.
                unsafe { caches[i].free(p) };
            }
        }
    };
    let hs: Vec<_> = (0..4)
        .map(|t| {
            let cs = caches.clone();
            std::thread::spawn(move || work(&cs, t * 1000))
        })
        .collect();
    work(&caches, 7);
    for h in hs {
        h.join().unwrap();
    }
    for (i, c) in caches.iter().enumerate() {
        c.verify().unwrap();
        let st = c.stats();
        assert_eq!(st.buf_inuse, 0, "cache {i}: {st:?}");
        assert_eq!(st.alloc, 5 * 20 * (i as u64 % 5 + 1), "cache {i}: {st:?}");
    }
    // Destroy takes the magazines of this (live) thread's directory slots back.
    for c in caches {
        // SAFETY: the test made it and nothing uses it after this (no other users).
        unsafe { c.destroy().unwrap() };
    }
    assert_eq!(a.stats().mem_inuse, 0);
}
