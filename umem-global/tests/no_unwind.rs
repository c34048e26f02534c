//! The allocator never unwinds into its caller: a panic inside one of its
//! out-of-line paths aborts the process with a message (test binaries are
//! built with `panic = "unwind"`, as a Rust program using `Umem` may be), and
//! a `dealloc` whose layout does not match the block aborts naming it (with
//! debug assertions, as `ci/test` builds). Each case runs in a child process
//! (this test binary again, `umem_testkit::child`).

use umem_testkit::assert_aborts_with;

#[test]
fn a_panic_inside_no_unwind_aborts() {
    if let Some(o) = assert_aborts_with(
        "panic",
        || {
            let r: usize =
                umem_global::preload_abi::no_unwind(|| panic!("boom inside the allocator"));
            println!("NOT ABORTED {r}");
        },
        "boom inside the allocator",
    ) {
        assert!(
            o.stderr
                .contains("umem: a panic unwound into the allocator; aborting"),
            "{}",
            o.stderr
        );
    }
    // And nothing is in the way when nothing panics.
    assert_eq!(umem_global::preload_abi::no_unwind(|| 6 * 7), 42);
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the layout check exists only with debug assertions (ci/test has them)"
)]
fn a_dealloc_with_the_wrong_layout_aborts_naming_it() {
    if let Some(o) = assert_aborts_with(
        "layout",
        || {
            let p = umem_global::preload_abi::alloc(100, 16, false);
            println!("PTR {p:p}");
            // 100 bytes is the 112-byte class; 600 is the 640-byte class.
            // SAFETY: deliberately wrong (the size is not the block's): the allocator must
            // abort before it touches anything; this runs in a child process.
            unsafe { umem_global::preload_abi::free_sized(p, 600, 16) };
            println!("NOT ABORTED");
        },
        "does not match the block",
    ) {
        assert!(o.stderr.contains("size 600"), "{}", o.stderr);
    }
}
