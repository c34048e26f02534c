//! Create, destroy, the arena list and `init` (the hash's growth and shrink: `hash_growth.rs`).

use umem_testkit::{child_arena, run_alone, span_arena};
use umem_vmem::{Policy, Vmem, VmemError, XAllocRequest};

/// In a child process of its own: `global_free_segs()` counts a
/// process-wide list that sibling tests' allocations and `update()` calls
/// (which give wholly free chunks back) change at any moment.
#[test]
fn destroy_reports_leaks_and_releases_imports() {
    run_alone("destroy", || {
        let parent = span_arena("dparent", 0x100000, 0x100000, 4096);
        let child = child_arena("dchild", 16, parent);
        let _leak1 = child.alloc(100, Policy::InstantFit).unwrap();
        let _leak2 = child.alloc(5000, Policy::InstantFit).unwrap();
        child.add(0x900000, 0x1000).unwrap();
        let _leak3 = child
            .xalloc(&XAllocRequest::new(32).minaddr(0x900000))
            .unwrap();
        child.verify().unwrap();
        assert!(parent.stats().mem_inuse > 0);
        let segs_before = umem_vmem::global_free_segs();
        // SAFETY: the test made it and nothing uses it after this (no other users).
        let leaked = unsafe { child.destroy() };
        assert_eq!(leaked, 112 + 5008 + 32);
        assert_eq!(
            parent.stats().mem_inuse,
            0,
            "imported spans released on destroy"
        );
        assert!(
            umem_vmem::global_free_segs() > segs_before,
            "segments returned"
        );
        parent.verify().unwrap();
        umem_vmem::verify().unwrap();
        // SAFETY: the test made it and nothing uses it after this (no other users).
        unsafe { assert_eq!(parent.destroy(), 0) };
    });
}

/// The arena list stays whole through creates and destroys at either end and
/// in the middle (appends go to a remembered tail): every live arena is
/// listed exactly once, in creation order, and no destroyed one is.
#[test]
fn arena_list_after_destroys_at_every_position() {
    let ids = |want: &[&'static Vmem]| -> Vec<u32> {
        let mut seen = Vec::new();
        umem_vmem::for_each_arena(&mut |vm| {
            if want.iter().any(|w| w.id() == vm.id()) {
                seen.push(vm.id());
            }
        });
        seen
    };
    let mk = |n: &str| span_arena(n, 0x1000, 0x1000, 16);
    let a = mk("list_a");
    let b = mk("list_b");
    let c = mk("list_c");
    assert_eq!(ids(&[a, b, c]), vec![a.id(), b.id(), c.id()]);
    // The newest (the tail) goes; the next create must still be listed.
    let cid = c.id();
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { c.destroy() };
    let d = mk("list_d");
    let all = [a, b, d];
    assert_eq!(ids(&all), vec![a.id(), b.id(), d.id()]);
    let mut n = 0;
    umem_vmem::for_each_arena(&mut |vm| n += usize::from(vm.id() == cid));
    assert_eq!(n, 0, "destroyed arena still listed");
    // The oldest, then one in the middle.
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { a.destroy() };
    let e = mk("list_e");
    assert_eq!(ids(&[b, d, e]), vec![b.id(), d.id(), e.id()]);
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { d.destroy() };
    let f = mk("list_f");
    assert_eq!(ids(&[b, e, f]), vec![b.id(), e.id(), f.id()]);
    for vm in [b, e, f] {
        // SAFETY: the test made it and nothing uses it after this (no other users).
        unsafe { vm.destroy() };
    }
    let g = mk("list_g");
    assert_eq!(ids(&[g]), vec![g.id()]);
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { g.destroy() };
}

#[test]
fn init_is_idempotent() {
    let _ = umem_vmem::heap();
    assert!(umem_vmem::is_initialized());
    #[cfg(feature = "std")]
    {
        assert_eq!(umem_vmem::init(&umem_vmem::MMAP_SOURCE, 4096), Ok(()));
        assert_eq!(
            umem_vmem::init(&umem_vmem::MMAP_SOURCE, 8192),
            Err(VmemError::AlreadyInitialized)
        );
    }
    assert_eq!(
        umem_vmem::init(&umem_vmem::MMAP_SOURCE, 3),
        Err(VmemError::BadPageSize { page_size: 3 })
    );
    let mut names = Vec::new();
    umem_vmem::for_each_arena(&mut |v| names.push(v.name().to_string()));
    for n in [
        "heap",
        "vmem_internal",
        "vmem_seg",
        "vmem_hash",
        "vmem_vmem",
    ] {
        assert!(names.iter().any(|m| m == n), "{n} missing from {names:?}");
    }
    umem_vmem::verify().unwrap();
}
