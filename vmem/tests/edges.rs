//! Issue 11, defect 6a: an arena with quantum 1 whose span ends at the top
//! of the address space (`[usize::MAX - 0x1000, usize::MAX)`, the highest
//! span an exclusive end can describe). Allocating and freeing its last
//! segment must not overflow (`free_seg` rounded the end up as
//! `end + q - 1`; with overflow checks on, as in the `ci` profile, that
//! panicked while holding the arena lock). Each case runs in a child
//! process (this test binary again, selected by an environment variable),
//! so a panic or abort inside the arena cannot take the other tests down.
// These tests rely on the lazily built tree (feature `std`).
#![cfg(feature = "std")]

use std::process::Command;
use umem_vmem::{CreateFlags, Policy, SegTypes, Vmem, XAllocRequest};

const CASE: &str = "VMEM_EDGES_CASE";
const TOP: usize = usize::MAX - 0x1000;

/// Runs `test` of this binary in a child with `CASE=1`; asserts it passed.
fn in_child(test: &str) -> bool {
    if std::env::var(CASE).is_ok() {
        return true;
    }
    let o = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE, "1")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{test} in a child: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    false
}

fn top_arena(name: &str) -> &'static Vmem {
    let a = Vmem::create(name, None, 1, None, 0, CreateFlags::NONE).unwrap();
    assert_eq!(a.add(TOP, 0x1000), Ok(TOP));
    a
}

fn all_free(a: &'static Vmem) {
    a.verify().unwrap();
    assert_eq!(a.size(SegTypes::ALLOC), 0);
    assert_eq!(a.size(SegTypes::FREE), 0x1000);
    // The whole span can be had again.
    let x = a.xalloc(&XAllocRequest::new(0x1000)).unwrap();
    assert_eq!(x, TOP);
    a.xfree(x, 0x1000).unwrap();
    a.verify().unwrap();
}

#[test]
fn freeing_the_whole_top_span_does_not_overflow() {
    if !in_child("freeing_the_whole_top_span_does_not_overflow") {
        return;
    }
    let a = top_arena("edge-top-whole");
    let x = a.alloc(0x1000, Policy::InstantFit).unwrap();
    assert_eq!(x, TOP);
    a.free(x, 0x1000).unwrap();
    all_free(a);
}

#[test]
fn freeing_the_last_segment_below_the_top_does_not_overflow() {
    if !in_child("freeing_the_last_segment_below_the_top_does_not_overflow") {
        return;
    }
    let a = top_arena("edge-top-last");
    // Three pieces; the last ends at usize::MAX.
    let p = a.xalloc(&XAllocRequest::new(0x800)).unwrap();
    let q = a.xalloc(&XAllocRequest::new(0x7ff)).unwrap();
    let r = a.xalloc(&XAllocRequest::new(1)).unwrap();
    let mut got = [(p, 0x800), (q, 0x7ff), (r, 1)];
    got.sort();
    assert_eq!(got[2].0 + got[2].1, usize::MAX, "{got:x?}");
    // Free the top one first (no free neighbour), then the others
    // (coalescing into it), in both orders across two rounds.
    for (addr, size) in [got[2], got[0], got[1]] {
        a.xfree(addr, size).unwrap();
        a.verify().unwrap();
    }
    all_free(a);
    let p = a.alloc(0x10, Policy::BestFit).unwrap();
    let q = a
        .xalloc(
            &XAllocRequest::new(0x10)
                .maxaddr(usize::MAX)
                .minaddr(usize::MAX - 0x10),
        )
        .unwrap();
    assert_eq!(q, usize::MAX - 0x10);
    a.free(p, 0x10).unwrap();
    a.xfree(q, 0x10).unwrap();
    all_free(a);
}

#[test]
fn next_fit_wraps_at_the_top_without_overflow() {
    if !in_child("next_fit_wraps_at_the_top_without_overflow") {
        return;
    }
    let a = top_arena("edge-top-nextfit");
    let mut live = Vec::new();
    for _ in 0..3 {
        for _ in 0..0x100 {
            live.push(a.alloc(0x10, Policy::NextFit).unwrap());
        }
        for x in live.drain(..) {
            a.free(x, 0x10).unwrap();
        }
        a.verify().unwrap();
    }
    all_free(a);
}
