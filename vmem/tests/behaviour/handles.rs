//! Segment handles: allocation, freeing, misuse, every policy and constraint.

use umem_testkit::{child_arena, span_arena};
use umem_vmem::{Policy, SegTypes, VmemError, WalkMode, XAllocRequest};

#[test]
fn handle_alloc_free_and_misuse() {
    let a = span_arena("h1", 0x10_0000, 0x10_0000, 16);
    let b = span_arena("h2", 0x10_0000, 0x10_0000, 16);
    let x = a.alloc(100, Policy::InstantFit).unwrap();
    let h = a.alloc_handle(200, Policy::InstantFit).unwrap();
    let y = a.alloc(300, Policy::InstantFit).unwrap();
    assert_eq!((h.addr(), h.size(), h.arena_id()), (x + 112, 200, a.id()));
    assert_eq!(
        a.alloc_handle(0, Policy::BestFit).err(),
        Some(VmemError::ZeroSize)
    );
    assert!(format!("{h:?}").contains("SegHandle"));
    let st = a.stats();
    assert_eq!((st.alloc_segs, st.handle_segs), (3, 1));
    assert_eq!(st.mem_inuse, 112 + 208 + 304);
    let mut seen = Vec::new();
    a.walk(SegTypes::ALLOC, WalkMode::Locked, &mut |_, s, n| {
        seen.push((s, n))
    });
    assert_eq!(seen, vec![(x, 100), (h.addr(), 200), (y, 300)]);
    a.verify().unwrap();

    // By address, any size, the handle segment is refused and stays.
    let hp = h.addr();
    assert_eq!(
        a.free(hp, 200),
        Err(VmemError::HandleAllocated {
            addr: hp,
            size: 200
        })
    );
    assert_eq!(
        a.xfree(hp, 16),
        Err(VmemError::HandleAllocated { addr: hp, size: 16 })
    );
    assert_eq!(
        a.free(hp + 16, 200),
        Err(VmemError::NotAllocated {
            addr: hp + 16,
            size: 200
        })
    );
    assert!(VmemError::HandleAllocated {
        addr: hp,
        size: 200
    }
    .to_string()
    .contains("free_handle"));
    a.verify().unwrap();
    assert_eq!(a.stats().handle_segs, 1);

    // The same address in another arena is not this handle's segment.
    let hb = b.alloc_handle(200, Policy::InstantFit).unwrap();
    assert_eq!(hb.addr(), 0x10_0000);

    // Wrong arena: refused precisely, nothing freed anywhere; the handle is
    // consumed and its segment leaked in its arena.
    assert_eq!(
        b.free_handle(h),
        Err(VmemError::WrongArena {
            addr: hp,
            arena: b.id(),
            owner: a.id()
        })
    );
    a.verify().unwrap();
    b.verify().unwrap();
    assert_eq!(a.stats().handle_segs, 1);
    assert_eq!(b.stats().handle_segs, 1);

    // The handle frees and coalesces with address frees around it.
    a.free(x, 100).unwrap();
    a.free(y, 300).unwrap();
    let h2 = a.alloc_handle(16, Policy::NextFit).unwrap();
    a.free_handle(h2).unwrap();
    b.free_handle(hb).unwrap();
    b.verify().unwrap();
    assert_eq!(
        b.stats().free_segs,
        1,
        "b coalesced back to one free segment"
    );
    a.verify().unwrap();
    assert_eq!(a.stats().alloc_segs, 1);
    // SAFETY: single user; no handle of either arena is used afterwards.
    unsafe {
        assert_eq!(a.destroy(), 208, "the leaked handle segment");
        assert_eq!(b.destroy(), 0);
    }
    umem_vmem::verify().unwrap();
}

#[test]
fn handles_with_every_policy_constraints_and_source() {
    let parent = span_arena("hparent", 0x100_0000, 0x100_0000, 4096);
    let child = child_arena("hchild", 64, parent);
    let mut hs = Vec::new();
    for (i, p) in [
        Policy::InstantFit,
        Policy::BestFit,
        Policy::FirstFit,
        Policy::NextFit,
    ]
    .into_iter()
    .enumerate()
    {
        let h = child.alloc_handle(64 * (i + 1) + 3, p).unwrap();
        assert_eq!(h.size(), 64 * (i + 1) + 3);
        hs.push(h);
    }
    let h = child
        .xalloc_handle(&XAllocRequest::new(4096).align(8192).phase(64))
        .unwrap();
    assert_eq!(h.addr() % 8192, 64);
    hs.push(h);
    assert_eq!(
        child.xalloc_handle(&XAllocRequest::new(64).align(96)).err(),
        Some(VmemError::BadAlign {
            align: 96,
            quantum: 64
        })
    );
    // Constrained, from an added span (no import).
    child.add(0x4000_0000, 0x10000).unwrap();
    let h = child
        .xalloc_handle(&XAllocRequest::new(128).minaddr(0x4000_0000).nocross(0x1000))
        .unwrap();
    assert!(h.addr() >= 0x4000_0000);
    hs.push(h);
    assert!(parent.stats().mem_inuse > 0, "the handles imported spans");
    child.verify().unwrap();
    // Maintenance leaves live handles alone.
    umem_vmem::update();
    child.rescale();
    umem_vmem::verify().unwrap();
    assert_eq!(child.stats().handle_segs, hs.len());
    for h in hs.drain(..).rev() {
        child.free_handle(h).unwrap();
        child.verify().unwrap();
    }
    let st = child.stats();
    assert_eq!(st.mem_inuse, 0);
    assert_eq!(
        st.mem_import, 0,
        "imported spans went back with the last handle"
    );
    assert_eq!(st.import, st.release);
    assert_eq!(parent.stats().mem_inuse, 0);
    // Exhaustion is reported as for alloc.
    let small = span_arena("hsmall", 0x1000, 0x100, 16);
    let h = small.alloc_handle(0x100, Policy::InstantFit).unwrap();
    assert_eq!(
        small.alloc_handle(16, Policy::InstantFit).err(),
        Some(VmemError::Exhausted { size: 16 })
    );
    small.free_handle(h).unwrap();
    // Destroy with live handles: leaked like any allocation (the handles
    // are never used again).
    let _leak = child.alloc_handle(1000, Policy::InstantFit).unwrap();
    // SAFETY: single user; `_leak` is never used again.
    unsafe {
        assert_eq!(small.destroy(), 0);
        assert_eq!(child.destroy(), 1024);
        assert_eq!(parent.destroy(), 0);
    }
    umem_vmem::verify().unwrap();
}
