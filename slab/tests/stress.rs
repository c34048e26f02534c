//! Multi-threaded stress with cross-thread frees and content checks, and a randomized
//! model test of alloc/free/reap/update against a reference model.

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::mpsc;

use umem_slab::{Cache, CacheFlags};
use umem_testkit::pattern::{check_words, fill_words};
use umem_testkit::{cache, heap_arena, serial, CacheBuilder, Rng};
use umem_vmem::Vmem;

// The model test runs the global update step, which reaps every cache's depot: it takes
// turns (`serial()`) with the stress test's exact end-state checks.

fn arena(name: &str) -> &'static Vmem {
    heap_arena(name, 4096)
}

#[derive(Clone, Copy)]
struct Obj(NonNull<u8>, usize, u64);
// SAFETY: an `Obj` is a buffer handed from one thread to another with its ownership; the caches are thread-safe.
unsafe impl Send for Obj {}

#[test]
fn four_threads_cross_thread_frees_with_content_checks() {
    let _s = serial();
    const THREADS: usize = 4;
    const OPS: usize = 150_000;
    let a = arena("s_stress");
    let sizes = [16usize, 64, 200, 1024, 3000];
    let caches: Vec<&'static Cache> = sizes.iter().map(|&s| cache("stress", s, a)).collect();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Obj>()).unzip();
    // Plain std threads, joined: a join returns after the thread's exit flush.
    let mut handles = Vec::new();
    {
        for (t, rx) in rxs.into_iter().enumerate() {
            let txs = txs.clone();
            let caches = caches.clone();
            handles.push(std::thread::spawn(move || {
                let mut rng =
                    Rng::from_state(0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1234_5678));
                let mut mine: Vec<Obj> = Vec::new();
                for op in 0..OPS {
                    // Objects sent to us by other threads: check and free.
                    while let Ok(Obj(p, ci, tag)) = rx.try_recv() {
                        // SAFETY: a live object of the cache, at least sizes[ci] bytes, 8-aligned, and only
                        // its holder (this thread) touches it.
                        unsafe { check_words(p.as_ptr(), sizes[ci], tag) };
                        // SAFETY: the buffer came from this cache's `alloc` and is freed once.
                        unsafe { caches[ci].free(p) };
                    }
                    let r = rng.below(100);
                    if r < 50 || mine.is_empty() {
                        let ci = rng.below(sizes.len() as u64) as usize;
                        let p = caches[ci].alloc().unwrap();
                        let tag = rng.next();
                        // SAFETY: a fresh object of the cache, at least sizes[ci] bytes, 8-aligned, ours.
                        unsafe { fill_words(p.as_ptr(), sizes[ci], tag) };
                        mine.push(Obj(p, ci, tag));
                    } else {
                        let i = rng.below(mine.len() as u64) as usize;
                        let o = mine.swap_remove(i);
                        // SAFETY: a live object of the cache, at least sizes[o.1] bytes, 8-aligned, and only
                        // its holder (this thread) touches it.
                        unsafe { check_words(o.0.as_ptr(), sizes[o.1], o.2) };
                        if r < 75 {
                            // SAFETY: the buffer came from this cache's `alloc` and is freed once.
                            unsafe { caches[o.1].free(o.0) };
                        } else {
                            let to = (t + 1 + rng.below(THREADS as u64 - 1) as usize) % THREADS;
                            let _ = txs[to].send(o);
                        }
                    }
                    if op % 50_000 == 0 {
                        for c in &caches {
                            c.verify().unwrap();
                        }
                    }
                }
                for o in mine {
                    // SAFETY: a live object of the cache, at least sizes[o.1] bytes, 8-aligned, and only
                    // its holder (this thread) touches it.
                    unsafe { check_words(o.0.as_ptr(), sizes[o.1], o.2) };
                    // SAFETY: the buffer came from this cache's `alloc` and is freed once.
                    unsafe { caches[o.1].free(o.0) };
                }
                drop(txs);
                // Drain what the others still send until they are all done.
                while let Ok(Obj(p, ci, tag)) = rx.recv() {
                    // SAFETY: a live object of the cache, at least sizes[ci] bytes, 8-aligned, and only
                    // its holder (this thread) touches it.
                    unsafe { check_words(p.as_ptr(), sizes[ci], tag) };
                    // SAFETY: the buffer came from this cache's `alloc` and is freed once.
                    unsafe { caches[ci].free(p) };
                }
            }));
        }
        drop(txs);
    }
    for h in handles {
        h.join().unwrap();
    }
    for c in &caches {
        c.verify().unwrap();
        let st = c.stats();
        assert_eq!(st.buf_inuse, 0, "{st:?}");
        if umem_slab::magazine_mode() == umem_slab::MagazineMode::PerThread {
            assert_eq!(st.alloc, st.free);
        } else {
            // Per CPU a hit preempted between its count and its commit is counted twice
            // (`CacheStats::alloc`): about one run in fifteen of this test sees one such
            // operation. A known defect: exact per-CPU counts need the count and the
            // commit in one store.
            assert!(st.alloc.abs_diff(st.free) <= 8, "{st:?}");
        }
        c.reap();
        assert_eq!(c.stats().slabs, 0);
        // SAFETY: the test made it and nothing uses it after this (no other users).
        unsafe { c.destroy().unwrap() };
    }
    assert_eq!(a.stats().mem_inuse, 0);
}

#[test]
fn randomized_model_alloc_free_reap() {
    let _s = serial();
    let a = arena("s_model");
    for (seed, &(size, flags)) in [
        (24usize, CacheFlags::NONE),
        (136, CacheFlags::NONE),
        (700, CacheFlags::NONE),
        (5000, CacheFlags::NONE),
        (40, CacheFlags::NOMAGAZINE),
        (2048, CacheFlags::NOMAGAZINE),
        (100, CacheFlags::DEBUG),
        (1000, CacheFlags::DEBUG),
        (300, CacheFlags::AUDIT),
    ]
    .iter()
    .enumerate()
    {
        let c = CacheBuilder::new("model", size, a).flags(flags).create();
        let mut rng = Rng::from_state(seed as u64 * 7919 + 17);
        // Model: live address -> tag.
        let mut live: HashMap<usize, u64> = HashMap::new();
        let mut order: Vec<usize> = Vec::new();
        let mut allocs = 0u64;
        for step in 0..40_000 {
            let r = rng.below(1000);
            if r < 520 || order.is_empty() {
                let p = c.alloc().unwrap();
                let addr = p.as_ptr() as usize;
                assert_eq!(addr % c.align(), 0);
                assert!(!live.contains_key(&addr), "address handed out twice");
                let tag = rng.next();
                // SAFETY: a fresh object of the cache, at least size.min(64) bytes, 8-aligned, ours.
                unsafe { fill_words(p.as_ptr(), size.min(64), tag) };
                live.insert(addr, tag);
                order.push(addr);
                allocs += 1;
            } else if r < 995 {
                let i = rng.below(order.len() as u64) as usize;
                let addr = order.swap_remove(i);
                let tag = live.remove(&addr).unwrap();
                let p = NonNull::new(addr as *mut u8).unwrap();
                // SAFETY: a live object of the cache, at least size.min(64) bytes, 8-aligned, and only
                // its holder (this thread) touches it.
                unsafe { check_words(p.as_ptr(), size.min(64), tag) };
                if rng.below(10) == 0 {
                    // SAFETY: the buffer came from this cache's `alloc` and is freed once.
                    unsafe { c.free_checked(p).unwrap() };
                } else {
                    // SAFETY: the buffer came from this cache's `alloc` and is freed once.
                    unsafe { c.free(p) };
                }
            } else if r < 998 {
                c.reap();
            } else {
                umem_slab::update();
            }
            if step % 4000 == 0 {
                c.verify().unwrap();
                let st = c.stats();
                assert_eq!(st.buf_inuse, live.len() as u64);
                assert!(st.buf_slab_alloc >= live.len());
                assert!(st.buf_total >= st.buf_slab_alloc);
                assert_eq!(st.alloc, allocs);
            }
        }
        for addr in order {
            let tag = live.remove(&addr).unwrap();
            let p = NonNull::new(addr as *mut u8).unwrap();
            // SAFETY: a live object of the cache, at least size.min(64) bytes, 8-aligned, and only
            // its holder (this thread) touches it.
            unsafe { check_words(p.as_ptr(), size.min(64), tag) };
            // SAFETY: the buffer came from this cache's `alloc` and is freed once.
            unsafe { c.free(p) };
        }
        c.reap();
        c.verify().unwrap();
        assert_eq!(c.stats().slabs, 0);
        // SAFETY: the test made it and nothing uses it after this (no other users).
        unsafe { c.destroy().unwrap() };
    }
    assert_eq!(a.stats().mem_inuse, 0);
}
