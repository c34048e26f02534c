//! Error cases: what `create`, `alloc`, `free`, `xalloc` and `add` refuse, and how errors read.

use umem_testkit::span_arena;
use umem_vmem::{CreateFlags, Policy, SegTypes, Vmem, VmemError, WalkMode, XAllocRequest};

#[test]
fn create_errors() {
    assert_eq!(
        Vmem::create("q0", None, 0, None, 0, CreateFlags::NONE).unwrap_err(),
        VmemError::BadQuantum { quantum: 0 }
    );
    assert_eq!(
        Vmem::create("q3", None, 3, None, 0, CreateFlags::NONE).unwrap_err(),
        VmemError::BadQuantum { quantum: 3 }
    );
    assert_eq!(
        Vmem::create(
            "mis",
            Some((0x1008, 0x1000)),
            16,
            None,
            0,
            CreateFlags::NONE
        )
        .unwrap_err(),
        VmemError::SpanMisaligned {
            addr: 0x1008,
            size: 0x1000,
            quantum: 16
        }
    );
    assert_eq!(
        Vmem::create("zero", Some((0x1000, 0)), 16, None, 0, CreateFlags::NONE).unwrap_err(),
        VmemError::ZeroSize
    );
    assert_eq!(
        Vmem::create(
            "wrap",
            Some((usize::MAX - 0xfff, 0x2000)),
            16,
            None,
            0,
            CreateFlags::NONE
        )
        .unwrap_err(),
        VmemError::SpanOverflow {
            addr: usize::MAX - 0xfff,
            size: 0x2000
        }
    );
    // A name longer than NAME_MAX is truncated, not refused.
    let long = "x".repeat(100);
    let a = Vmem::create(&long, None, 1, None, 0, CreateFlags::NONE).unwrap();
    assert_eq!(a.name().len(), umem_vmem::NAME_MAX);
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { a.destroy() };
}

#[test]
fn alloc_and_free_errors() {
    let a = span_arena("errs", 0x10000, 0x10000, 16);
    assert_eq!(a.alloc(0, Policy::InstantFit), Err(VmemError::ZeroSize));
    assert_eq!(
        a.alloc(usize::MAX, Policy::InstantFit),
        Err(VmemError::SizeOverflow { size: usize::MAX })
    );
    assert_eq!(
        a.alloc(0x20000, Policy::InstantFit),
        Err(VmemError::Exhausted { size: 0x20000 })
    );
    assert_eq!(
        a.alloc(0x20000, Policy::BestFit),
        Err(VmemError::Exhausted { size: 0x20000 })
    );
    assert_eq!(
        a.alloc(0x20000, Policy::FirstFit),
        Err(VmemError::Exhausted { size: 0x20000 })
    );
    assert_eq!(
        a.alloc(0x20000, Policy::NextFit),
        Err(VmemError::Exhausted { size: 0x20000 })
    );
    assert_eq!(a.stats().fail, 4);
    let x = a.alloc(40, Policy::InstantFit).unwrap();
    assert_eq!(
        a.free(x, 48),
        Err(VmemError::WrongSize {
            addr: x,
            size: 48,
            allocated: 40
        })
    );
    assert_eq!(
        a.free(x + 16, 40),
        Err(VmemError::NotAllocated {
            addr: x + 16,
            size: 40
        })
    );
    assert_eq!(
        a.free(0x5, 40),
        Err(VmemError::NotAllocated {
            addr: 0x5,
            size: 40
        })
    );
    assert_eq!(a.free(x, 0), Err(VmemError::ZeroSize));
    a.verify().unwrap();
    a.free(x, 40).unwrap();
    // Double free.
    assert_eq!(
        a.free(x, 40),
        Err(VmemError::NotAllocated { addr: x, size: 40 })
    );
    a.verify().unwrap();
    assert_eq!(a.stats().mem_inuse, 0);
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn xalloc_parameter_errors() {
    let a = span_arena("xerrs", 0x100000, 0x100000, 16);
    let r = |req: XAllocRequest| a.xalloc(&req);
    assert_eq!(r(XAllocRequest::new(0)), Err(VmemError::ZeroSize));
    assert_eq!(
        r(XAllocRequest::new(16).align(24)),
        Err(VmemError::BadAlign {
            align: 24,
            quantum: 16
        })
    );
    assert_eq!(
        r(XAllocRequest::new(16).align(8)),
        Err(VmemError::BadAlign {
            align: 8,
            quantum: 16
        })
    );
    assert_eq!(
        r(XAllocRequest::new(16).align(64).phase(64)),
        Err(VmemError::BadPhase {
            phase: 64,
            align: 64
        })
    );
    assert_eq!(
        r(XAllocRequest::new(16).align(64).phase(80)),
        Err(VmemError::BadPhase {
            phase: 80,
            align: 64
        })
    );
    assert_eq!(
        r(XAllocRequest::new(16).align(64).phase(8)),
        Err(VmemError::BadPhase {
            phase: 8,
            align: 64
        })
    );
    // Phase with the default alignment (= quantum) must be 0.
    assert_eq!(
        r(XAllocRequest::new(16).phase(16)),
        Err(VmemError::BadPhase {
            phase: 16,
            align: 16
        })
    );
    assert_eq!(
        r(XAllocRequest::new(16).nocross(48)),
        Err(VmemError::BadNocross {
            nocross: 48,
            quantum: 16
        })
    );
    assert_eq!(
        r(XAllocRequest::new(16).nocross(8)),
        Err(VmemError::BadNocross {
            nocross: 8,
            quantum: 16
        })
    );
    assert_eq!(
        r(XAllocRequest::new(100).nocross(64)),
        Err(VmemError::NocrossTooSmall {
            nocross: 64,
            size: 100,
            align: 16,
            phase: 0
        })
    );
    assert_eq!(
        r(XAllocRequest::new(16).align(128).nocross(64)),
        Err(VmemError::NocrossTooSmall {
            nocross: 64,
            size: 16,
            align: 128,
            phase: 0
        })
    );
    assert_eq!(
        r(XAllocRequest::new(32).align(64).phase(48).nocross(64)),
        Err(VmemError::NocrossTooSmall {
            nocross: 64,
            size: 32,
            align: 64,
            phase: 48
        })
    );
    assert_eq!(
        r(XAllocRequest::new(16).minaddr(0x2000).maxaddr(0x2000)),
        Err(VmemError::BadAddrRange {
            minaddr: 0x2000,
            maxaddr: 0x2000,
            size: 16
        })
    );
    assert_eq!(
        r(XAllocRequest::new(64).minaddr(0x2000).maxaddr(0x2030)),
        Err(VmemError::BadAddrRange {
            minaddr: 0x2000,
            maxaddr: 0x2030,
            size: 64
        })
    );
    // A window outside the arena: exhausted, not an error of parameters.
    assert_eq!(
        r(XAllocRequest::new(64).minaddr(0x1000).maxaddr(0x2000)),
        Err(VmemError::Exhausted { size: 64 })
    );
    // Exactly satisfiable corner: the very end of the span.
    let top = 0x200000;
    let x = r(XAllocRequest::new(16).minaddr(top - 16).maxaddr(top)).unwrap();
    assert_eq!(x, top - 16);
    // nocross exactly the size.
    let y = r(XAllocRequest::new(64).nocross(64).minaddr(0x100010)).unwrap();
    assert_eq!(y % 64, 0);
    assert!(y >= 0x100010);
    a.xfree(x, 16).unwrap();
    a.xfree(y, 64).unwrap();
    a.verify().unwrap();
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn add_errors_and_contains() {
    let a = span_arena("adds", 0x10000, 0x10000, 0x100);
    assert_eq!(
        a.add(0x10000, 0x100),
        Err(VmemError::SpanOverlap {
            addr: 0x10000,
            size: 0x100,
            existing: 0x10000,
            existing_size: 0x10000
        })
    );
    assert_eq!(
        a.add(0xff00, 0x200),
        Err(VmemError::SpanOverlap {
            addr: 0xff00,
            size: 0x200,
            existing: 0x10000,
            existing_size: 0x10000
        })
    );
    assert_eq!(
        a.add(0x1ff00, 0x200),
        Err(VmemError::SpanOverlap {
            addr: 0x1ff00,
            size: 0x200,
            existing: 0x10000,
            existing_size: 0x10000
        })
    );
    assert_eq!(
        a.add(0x30080, 0x100),
        Err(VmemError::SpanMisaligned {
            addr: 0x30080,
            size: 0x100,
            quantum: 0x100
        })
    );
    assert_eq!(
        a.add(0x30000, 0x180),
        Err(VmemError::SpanMisaligned {
            addr: 0x30000,
            size: 0x180,
            quantum: 0x100
        })
    );
    assert_eq!(a.add(0x30000, 0), Err(VmemError::ZeroSize));
    assert_eq!(
        a.add(usize::MAX & !0xff, 0x200),
        Err(VmemError::SpanOverflow {
            addr: usize::MAX & !0xff,
            size: 0x200
        })
    );
    // Adjacent is fine (a separate span), as is below.
    assert_eq!(a.add(0x20000, 0x1000), Ok(0x20000));
    assert_eq!(a.add(0x0, 0x1000), Ok(0));
    assert_eq!(a.stats().spans, 3);
    assert!(a.contains(0x10000, 0x10000));
    assert!(a.contains(0x0, 0x1000));
    assert!(a.contains(0x1ff00, 0x100));
    assert!(!a.contains(0x1ff00, 0x200), "straddles two spans");
    assert!(!a.contains(0x1000, 0x100));
    assert!(!a.contains(0x10000, 0));
    assert!(!a.contains(usize::MAX, 2));
    assert_eq!(
        a.stats().contains,
        5,
        "empty and wrapping ranges are answered without a search"
    );
    // Non-imported spans of a source-less arena are kept in address order.
    let mut spans = Vec::new();
    a.walk(SegTypes::SPAN, WalkMode::Locked, &mut |_, s, n| {
        spans.push((s, n))
    });
    assert_eq!(
        spans,
        vec![(0, 0x1000), (0x10000, 0x10000), (0x20000, 0x1000)]
    );
    a.verify().unwrap();
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn errors_explain_themselves() {
    let e = VmemError::WrongSize {
        addr: 0x1000,
        size: 16,
        allocated: 32,
    };
    assert_eq!(
        e.to_string(),
        "bad free: segment at 0x1000 freed with size 0x10, allocated with 0x20"
    );
    let e = VmemError::NocrossTooSmall {
        nocross: 64,
        size: 100,
        align: 16,
        phase: 0,
    };
    assert!(e.to_string().contains("0x40") && e.to_string().contains("0x64"));
    let e: Box<dyn std::error::Error> = Box::new(VmemError::ZeroSize);
    assert_eq!(e.to_string(), "zero size");
}
