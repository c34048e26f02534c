//! The allocator never unwinds into its caller: a panic inside one of its
//! out-of-line paths aborts the process with a message (test binaries are
//! built with `panic = "unwind"`, as a Rust program using `Umem` may be), and
//! a `dealloc` whose layout does not match the block aborts naming it (with
//! debug assertions, as `ci/test` builds). Each case runs in a child process
//! (this test binary again, selecting the case by environment variable).

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

const CASE: &str = "UMEM_NO_UNWIND_CASE";

/// Runs `test` of this binary in a child with `CASE=case`; returns (signal, stderr).
fn child(test: &str, case: &str) -> (Option<i32>, String) {
    let o = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE, case)
        .output()
        .unwrap();
    (
        o.status.signal(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_panic_inside_no_unwind_aborts() {
    if std::env::var(CASE).as_deref() == Ok("panic") {
        let r: usize = umem_global::preload_abi::no_unwind(|| panic!("boom inside the allocator"));
        println!("NOT ABORTED {r}");
        return;
    }
    let (sig, err) = child("a_panic_inside_no_unwind_aborts", "panic");
    assert_eq!(sig, Some(libc::SIGABRT), "{err}");
    assert!(err.contains("boom inside the allocator"), "{err}");
    assert!(
        err.contains("umem: a panic unwound into the allocator; aborting"),
        "{err}"
    );
    // And nothing is in the way when nothing panics.
    assert_eq!(umem_global::preload_abi::no_unwind(|| 6 * 7), 42);
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the layout check exists only with debug assertions (ci/test has them)"
)]
fn a_dealloc_with_the_wrong_layout_aborts_naming_it() {
    if std::env::var(CASE).as_deref() == Ok("layout") {
        let p = umem_global::preload_abi::alloc(100, 16, false);
        println!("PTR {p:p}");
        // 100 bytes is the 112-byte class; 600 is the 640-byte class.
        unsafe { umem_global::preload_abi::free_sized(p, 600, 16) };
        println!("NOT ABORTED");
        return;
    }
    let (sig, err) = child("a_dealloc_with_the_wrong_layout_aborts_naming_it", "layout");
    assert_eq!(sig, Some(libc::SIGABRT), "{err}");
    assert!(
        err.contains("does not match the block") && err.contains("size 600"),
        "{err}"
    );
}
