//! Debug caches (buftag, redzone, fill patterns) and fork safety (lockup/release while
//! other threads allocate). Aborting cases run in child processes (the test binary runs
//! this test again, `umem_testkit::child`). One test function so that no other test thread
//! of this binary holds allocator locks when we fork.

#![allow(clippy::manual_is_multiple_of)] // keep the workspace MSRV (1.80)

use std::sync::atomic::{AtomicBool, Ordering};

use umem_slab::{CacheFlags, SlabError};
use umem_testkit::{assert_aborts_with, cache, heap_arena, run_child, CacheBuilder};

const REDZONE: u64 = 0xfeed_face_feed_face;

/// Runs `f` in a child process (this test again, see `umem_testkit::child`) and asserts
/// that it died of SIGABRT.
#[track_caller]
fn assert_child_aborts(name: &str, f: impl FnOnce()) {
    if let Some(o) = run_child(name, f) {
        assert!(o.aborted(), "child {name} did not abort:\n{}", o.show());
    }
}

#[test]
fn debug_caches_and_fork() {
    let a = heap_arena("d_arena", 4096);
    for &size in &[40usize, 1000] {
        let c = CacheBuilder::new("dbg", size, a)
            .flags(CacheFlags::DEBUG)
            .create();
        let p = c.alloc().unwrap();
        let w = p.as_ptr() as *mut u64;
        // Fresh buffers carry the uninitialised pattern.
        // SAFETY: a fresh buffer of at least 40 bytes, 8-aligned.
        unsafe { assert_eq!(*w, 0xbadd_cafe_badd_cafe) };
        // Write past the end: the redzone word right after the (8-rounded) buffer.
        // SAFETY: a debug cache's buffer is followed by its redzone word, inside the same chunk.
        let rz = unsafe { p.as_ptr().add(size.next_multiple_of(8)) as *mut u64 };
        // SAFETY: `rz` and `w` are words of p's chunk (redzone and buffer); the checked
        // frees detect the corruption and the double free without touching anything else.
        unsafe {
            assert_eq!(*rz, REDZONE);
            *rz = 0;
            assert!(matches!(c.free_checked(p), Err(SlabError::Redzone { .. })));
            *rz = REDZONE;
            c.free_checked(p).unwrap();
            // Freed buffers are filled with 0xdeadbeef and marked free in the buftag.
            assert_eq!(*w, 0xdead_beef_dead_beef);
            assert!(matches!(
                c.free_checked(p),
                Err(SlabError::DoubleFree { .. })
            ));
        }
        c.verify().unwrap();
        // Use after free is caught when the buffer is handed out again.
        assert_child_aborts(&format!("use-after-free-{size}"), || {
            let q = c.alloc().unwrap();
            // SAFETY: the buffers came from this cache's `alloc`; each is freed once.
            unsafe {
                c.free(q);
                *(q.as_ptr() as *mut u64).add(1) = 7;
            }
            let _ = c.alloc(); // same buffer (LIFO magazine): fill check fails
        });
        // A double free through the unchecked path aborts with a message.
        assert_child_aborts(&format!("double-free-{size}"), || {
            let q = c.alloc().unwrap();
            // SAFETY: the buffers came from this cache's `alloc`; each is freed once.
            unsafe {
                c.free(q);
                c.free(q);
            }
        });
        // Freeing another debug cache's buffer through the unchecked path aborts, naming
        // the owner.
        let other = CacheBuilder::new("dbg_other", size, a)
            .flags(CacheFlags::DEBUG)
            .create();
        assert_aborts_with(
            &format!("foreign-free-{size}"),
            || {
                let q = other.alloc().unwrap();
                // SAFETY: the buffer came from this cache's `alloc` and is freed once.
                unsafe { c.free(q) };
            },
            "belongs to cache dbg_other",
        );
        // SAFETY: the test made it and nothing uses it after this (no other users).
        unsafe { other.destroy().unwrap() };
        // The parent is unaffected.
        let q = c.alloc().unwrap();
        // SAFETY: the buffer came from this cache's `alloc` and is freed once.
        unsafe { c.free(q) };
        c.verify().unwrap();
        c.reap();
        umem_slab::thread_exit_flush();
        c.reap();
        assert_eq!(c.stats().slabs, 0);
        // SAFETY: the test made it and nothing uses it after this (no other users).
        unsafe { c.destroy().unwrap() };
    }

    // Fork while two threads allocate: lockup before, release in parent and child.
    let c = cache("forky", 72, a);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2 {
            let stop = &stop;
            s.spawn(move || {
                let mut v = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    v.push(c.alloc().unwrap());
                    if v.len() > 200 + t * 50 {
                        for p in v.drain(..) {
                            // SAFETY: the buffer came from this cache's `alloc` and is freed once.
                            unsafe { c.free(p) };
                        }
                    }
                    if i % 1000 == 0 {
                        umem_slab::reap();
                    }
                }
                for p in v {
                    // SAFETY: the buffer came from this cache's `alloc` and is freed once.
                    unsafe { c.free(p) };
                }
            });
        }
        for _ in 0..30 {
            umem_slab::lockup();
            // SAFETY: after `lockup()` every allocator lock is held by this thread, so the child starts with consistent allocator state; it only allocates, verifies and `_exit`s.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: the parent did the `lockup()`; the child inherited its locks.
                unsafe { umem_slab::release() };
                let v: Vec<_> = (0..500).map(|_| c.alloc().unwrap()).collect();
                for p in v {
                    // SAFETY: the buffer came from this cache's `alloc` and is freed once.
                    unsafe { c.free(p) };
                }
                umem_slab::reap();
                let ok = c.verify().is_ok();
                // SAFETY: `_exit` ends the forked child without returning into the harness.
                unsafe { libc::_exit(if ok { 0 } else { 3 }) };
            }
            // SAFETY: this thread did the `lockup()` above.
            unsafe { umem_slab::release() };
            assert!(pid > 0);
            let mut status = 0;
            // SAFETY: waiting for our own child, with a valid status pointer.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child status {status}"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
    });
    c.verify().unwrap();
}
