//! Issue 11, defect 1, on the Rust side: after `Umem` has run out of
//! address space and everything was freed, allocations must succeed again
//! at once. The case runs in a child process (this test binary again,
//! selected by an environment variable) whose address space is limited, before
//! umem's first allocation, to what it has mapped plus 200 MiB.

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;
use umem_global::Umem;

const CASE: &str = "UMEM_EXHAUSTION_CASE";

/// Writes `s` to stdout with write(2) (std's machinery may need memory).
fn say(s: &str) {
    // SAFETY: writes s.len() bytes from a live &str to fd 1.
    unsafe { libc::write(1, s.as_ptr().cast(), s.len()) };
}

fn vm_size() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().next().unwrap().parse().unwrap();
    pages * 4096
}

/// The child: limit RLIMIT_AS, fill with 64-byte blocks through
/// `GlobalAlloc::alloc` until it returns null, free them all, then a
/// 24,000-byte and a 300,000-byte allocation must succeed (a few retries
/// within ~1 s allowed).
fn exhaust_then_allocate() -> bool {
    let small = Layout::from_size_align(64, 8).unwrap();
    // The limit is set before umem's first allocation (as a C program's
    // `ulimit -v` would be): its class region reservation then does not fit
    // and is not counted.
    let limit = vm_size() + (200 << 20);
    let lim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: plain system call with a valid pointer.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
    // The blocks form a list through their first word (no Vec: it would
    // need memory while there is none).
    let mut head: *mut u8 = std::ptr::null_mut();
    let mut n = 0usize;
    loop {
        // SAFETY: valid layout.
        let p = unsafe { Umem.alloc(small) };
        if p.is_null() {
            break;
        }
        // SAFETY: p is a fresh 64-byte block, 8-aligned.
        unsafe { p.cast::<*mut u8>().write(head) };
        head = p;
        n += 1;
    }
    while !head.is_null() {
        // SAFETY: head is one of the blocks above; its first word is the next.
        let next = unsafe { head.cast::<*mut u8>().read() };
        // SAFETY: allocated above with `small`.
        unsafe { Umem.dealloc(head, small) };
        head = next;
    }
    say(&format!(
        "filled {n} blocks of 64 bytes under a {} MiB address-space limit, freed them all\n",
        limit >> 20
    ));
    if n < 1000 {
        say("FAIL: fewer than 1000 blocks before null\n");
        return false;
    }
    let (a, b) = (
        Layout::from_size_align(24_000, 8).unwrap(),
        Layout::from_size_align(300_000, 8).unwrap(),
    );
    for attempt in 1..=10 {
        // SAFETY: valid layouts; freed below with the same layouts.
        let (p, q) = unsafe { (Umem.alloc(a), Umem.alloc(b)) };
        let ok = !p.is_null() && !q.is_null();
        // SAFETY: freeing what was just allocated, with its layout.
        unsafe {
            if !p.is_null() {
                Umem.dealloc(p, a);
            }
            if !q.is_null() {
                Umem.dealloc(q, b);
            }
        }
        if ok {
            say(&format!(
                "24,000 and 300,000 bytes allocated at attempt {attempt}\n"
            ));
            return true;
        }
        say(&format!(
            "attempt {attempt}: alloc(24000) = {p:p}, alloc(300000) = {q:p}\n"
        ));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    say("FAIL: no recovery after exhaustion within ~1 s\n");
    false
}

#[test]
fn umem_recovers_after_exhaustion() {
    if std::env::var(CASE).as_deref() == Ok("child") {
        let ok = exhaust_then_allocate();
        // SAFETY: ends the child at once (no harness output needing memory).
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let o = Command::new(std::env::current_exe().unwrap())
        .args([
            "umem_recovers_after_exhaustion",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CASE, "child")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "Umem did not recover after exhaustion ({:?}):\n{out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}
