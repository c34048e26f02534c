//! Issue 11, defect 4, through `Umem` (Rust's `dealloc`, which knows the
//! layout) and `umem_global`'s C-style `free`: a double free (the block in
//! the thread's magazine, or in the depot, or an 8-byte block back on its
//! slab) and a free of a pointer inside a
//! block abort
//! with one line naming the pointer and the class (a never-allocated chunk
//! start is tested in C, `tests/tests/hardening.rs`, where the heap is
//! known to be fresh). Each case runs in a
//! child process (the test kit's re-exec runner).

use std::alloc::{GlobalAlloc, Layout};

use umem_global::Umem;
use umem_testkit::run_child;

#[global_allocator]
static A: Umem = Umem;

/// Runs `f` in a child process (the kit's re-exec runner; `case` names the
/// child) and requires an abort whose message names the announced pointer,
/// `what` and `class` on one line.
fn expect(case: &str, what: &str, class: &str, f: impl FnOnce()) {
    let Some(o) = run_child(case, f) else {
        return; // a child started for another case
    };
    let (aborted, msg) = (o.aborted(), o.stderr);
    let ptr = msg
        .lines()
        .find_map(|l| l.strip_prefix("PTR "))
        .unwrap_or_else(|| panic!("{case}: no PTR line: {msg:?}"))
        .to_string();
    assert!(aborted, "{case}: no abort: {msg:?}");
    let line = msg
        .lines()
        .find(|l| l.starts_with("umem") && l.contains(&ptr))
        .unwrap_or_else(|| panic!("{case}: no message naming {ptr}: {msg:?}"));
    assert!(
        line.contains(what) && line.contains(class),
        "{case}: {line:?} lacks {what:?} or {class:?}"
    );
}

#[test]
fn bad_deallocs_abort_naming_pointer_and_class() {
    let l32 = Layout::from_size_align(32, 8).unwrap();
    let l48 = Layout::from_size_align(48, 16).unwrap();

    // The free path announces the pointer before the bad call (so the
    // message can be matched to it), then makes it.
    fn announce(p: *mut u8) {
        let line = format!("PTR {:#x}\n", p as usize);
        // SAFETY: writes a buffer of its own length to stderr.
        unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
    }

    expect(
        "dealloc twice (magazine)",
        "double free",
        "umem_alloc_32",
        || {
            // SAFETY: a block of this layout; the second dealloc is the bug
            // under test, which must abort.
            unsafe {
                let p = A.alloc(l32);
                A.dealloc(p, l32);
                announce(p);
                A.dealloc(p, l32);
            }
        },
    );
    expect(
        "dealloc twice (depot)",
        "double free",
        "umem_alloc_32",
        || {
            // SAFETY: as above; 5000 frees fill magazines that go to the depot.
            unsafe {
                let v: Vec<*mut u8> = (0..5000).map(|_| A.alloc(l32)).collect();
                for &p in &v {
                    A.dealloc(p, l32);
                }
                announce(v[0]);
                A.dealloc(v[0], l32);
            }
        },
    );
    expect(
        "dealloc twice (8-byte block back on its slab)",
        "double free",
        "umem_alloc_8",
        || {
            // SAFETY: as above. The reap sends the magazines' blocks back to
            // their slabs; the blocks kept alive keep the slab there.
            unsafe {
                let l8 = Layout::from_size_align(8, 8).unwrap();
                let keep: Vec<*mut u8> = (0..64).map(|_| A.alloc(l8)).collect();
                let p = keep[32];
                A.dealloc(p, l8);
                umem_global::reap();
                announce(p);
                A.dealloc(p, l8);
            }
        },
    );
    expect(
        "free twice (C free)",
        "double free",
        "umem_alloc_48",
        || {
            // SAFETY: as above, through the C-style entry point.
            unsafe {
                let p = umem_global::preload_abi::alloc(48, 16, false);
                umem_global::preload_abi::free(p).unwrap();
                announce(p);
                let _ = umem_global::preload_abi::free(p);
            }
        },
    );
    expect(
        "dealloc of an interior pointer",
        "not the start of a block",
        "umem_alloc_48",
        || {
            // SAFETY: the interior dealloc is the bug under test.
            unsafe {
                let p = A.alloc(l48);
                let q = p.add(16);
                announce(q);
                A.dealloc(q, l48);
            }
        },
    );
    expect(
        "free of an interior pointer (C free)",
        "not the start of a block",
        "umem_alloc_48",
        || {
            // SAFETY: as above.
            unsafe {
                let p = umem_global::preload_abi::alloc(48, 16, false);
                let q = p.add(16);
                announce(q);
                let _ = umem_global::preload_abi::free(q);
            }
        },
    );
    // And good frees still work: blocks whose first word is the key by
    // chance are freed (the slow check finds them allocated).
    let mut v = Vec::new();
    for i in 0..1000usize {
        let mut b = vec![i; 4 + i % 60];
        b[0] = i;
        v.push(b);
    }
    drop(v);
}
