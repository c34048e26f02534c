//! Debug caches (buftag, redzone, fill patterns) and fork safety (lockup/release while
//! other threads allocate). Aborting cases run in forked children. One test function so
//! that no other test thread of this binary holds allocator locks when we fork.

#![allow(clippy::manual_is_multiple_of)] // keep the workspace MSRV (1.80)

use std::sync::atomic::{AtomicBool, Ordering};

use umem_slab::{Cache, CacheFlags, CacheOps, SlabError};
use umem_vmem::{CreateFlags, Vmem};

const REDZONE: u64 = 0xfeed_face_feed_face;

/// Run `f` in a child; return whether it died of SIGABRT and what it wrote to stderr.
fn child_abort_message(f: impl FnOnce()) -> (bool, String) {
    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        unsafe {
            libc::close(fds[0]);
            libc::dup2(fds[1], 2);
        }
        f();
        unsafe { libc::_exit(0) };
    }
    unsafe { libc::close(fds[1]) };
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr() as *mut _, buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    unsafe { libc::close(fds[0]) };
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
    (
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT,
        String::from_utf8_lossy(&out).into_owned(),
    )
}

fn child_aborts(f: impl FnOnce()) -> bool {
    // SAFETY: the child runs `f` and exits without returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // Silence the expected abort message.
        unsafe {
            let fd = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            libc::dup2(fd, 2);
        }
        f();
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
    libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT
}

#[test]
fn debug_caches_and_fork() {
    let a = Vmem::create(
        "d_arena",
        None,
        4096,
        Some(umem_vmem::heap()),
        0,
        CreateFlags::NONE,
    )
    .unwrap();
    for &size in &[40usize, 1000] {
        let c = Cache::create("dbg", size, 0, CacheOps::NONE, a, CacheFlags::DEBUG).unwrap();
        let p = c.alloc().unwrap();
        let w = p.as_ptr() as *mut u64;
        // Fresh buffers carry the uninitialised pattern.
        unsafe { assert_eq!(*w, 0xbadd_cafe_badd_cafe) };
        // Write past the end: the redzone word right after the (8-rounded) buffer.
        let rz = unsafe { p.as_ptr().add(size.next_multiple_of(8)) as *mut u64 };
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
        assert!(child_aborts(|| {
            let q = c.alloc().unwrap();
            unsafe {
                c.free(q);
                *(q.as_ptr() as *mut u64).add(1) = 7;
            }
            let _ = c.alloc(); // same buffer (LIFO magazine): fill check fails
        }));
        // A double free through the unchecked path aborts with a message.
        assert!(child_aborts(|| {
            let q = c.alloc().unwrap();
            unsafe {
                c.free(q);
                c.free(q);
            }
        }));
        // Freeing another debug cache's buffer through the unchecked path aborts, naming
        // the owner.
        let other =
            Cache::create("dbg_other", size, 0, CacheOps::NONE, a, CacheFlags::DEBUG).unwrap();
        let (aborted, msg) = child_abort_message(|| {
            let q = other.alloc().unwrap();
            unsafe { c.free(q) };
        });
        assert!(aborted, "{msg}");
        assert!(msg.contains("belongs to cache dbg_other"), "{msg}");
        unsafe { other.destroy().unwrap() };
        // The parent is unaffected.
        let q = c.alloc().unwrap();
        unsafe { c.free(q) };
        c.verify().unwrap();
        c.reap();
        umem_slab::thread_exit_flush();
        c.reap();
        assert_eq!(c.stats().slabs, 0);
        unsafe { c.destroy().unwrap() };
    }

    // Fork while two threads allocate: lockup before, release in parent and child.
    let c = Cache::create("forky", 72, 0, CacheOps::NONE, a, CacheFlags::NONE).unwrap();
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
                            unsafe { c.free(p) };
                        }
                    }
                    if i % 1000 == 0 {
                        umem_slab::reap();
                    }
                }
                for p in v {
                    unsafe { c.free(p) };
                }
            });
        }
        for _ in 0..30 {
            umem_slab::lockup();
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                unsafe { umem_slab::release() };
                let v: Vec<_> = (0..500).map(|_| c.alloc().unwrap()).collect();
                for p in v {
                    unsafe { c.free(p) };
                }
                umem_slab::reap();
                let ok = c.verify().is_ok();
                unsafe { libc::_exit(if ok { 0 } else { 3 }) };
            }
            unsafe { umem_slab::release() };
            assert!(pid > 0);
            let mut status = 0;
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
