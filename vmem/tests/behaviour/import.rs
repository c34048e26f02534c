//! Spans from elsewhere: `extend_alloc`, import rounding and alignment, retained spans.

use umem_testkit::{child_arena, span_arena, ArenaBuilder};
use umem_vmem::{Policy, SegTypes, Source, VmemError, WalkMode, XAllocRequest};

#[test]
fn extend_alloc_cases() {
    let q = 0x1000;
    let a = ArenaBuilder::new("ext").quantum(q).create();
    // Case 4: new span.
    let x = a.extend_alloc(0x100000, 4 * q, q).unwrap();
    assert_eq!(x, 0x100000);
    // Case 2: grow the top span; the free tail [0x101000, 0x104000) joins.
    let y = a.extend_alloc(0x104000, 2 * q, 2 * q).unwrap();
    assert_eq!(y, 0x101000);
    a.verify().unwrap();
    assert_eq!(a.stats().spans, 1);
    // Case 3: grow down.
    let z = a.extend_alloc(0xfe000, 2 * q, q).unwrap();
    assert_eq!(z, 0xfe000);
    assert_eq!(a.stats().spans, 1);
    a.verify().unwrap();
    // Case 1: join two spans through the hole between them.
    a.add(0x200000, 4 * q).unwrap();
    assert_eq!(a.stats().spans, 2);
    let hole = 0x200000 - 0x106000;
    let w = a.extend_alloc(0x106000, hole, q).unwrap();
    assert_eq!(w, 0x103000, "the free tail of the lower span comes first");
    a.verify().unwrap();
    assert_eq!(a.stats().spans, 1);
    let mut spans = Vec::new();
    a.walk(SegTypes::SPAN, WalkMode::Locked, &mut |_, s, n| {
        spans.push((s, n))
    });
    assert_eq!(spans, vec![(0xfe000, 0x204000 - 0xfe000)]);
    // Errors.
    assert_eq!(
        a.extend_alloc(0x300000, q, 2 * q),
        Err(VmemError::BadExtendAlloc {
            size: q,
            alloc: 2 * q
        })
    );
    assert_eq!(
        a.extend_alloc(0x300000, q, 0),
        Err(VmemError::BadExtendAlloc { size: q, alloc: 0 })
    );
    assert_eq!(
        a.extend_alloc(0x300000, 2 * q, q + 1),
        Err(VmemError::BadExtendAlloc {
            size: 2 * q,
            alloc: q + 1
        })
    );
    assert!(matches!(
        a.extend_alloc(0x100000, q, q),
        Err(VmemError::SpanOverlap { .. })
    ));
    for (p, n) in [(x, q), (y, 2 * q), (z, q), (w, q)] {
        a.xfree(p, n).unwrap();
    }
    a.verify().unwrap();
    assert_eq!(a.size(SegTypes::ALLOC), 0);
    assert_eq!(a.size(SegTypes::FREE), 0x204000 - 0xfe000);
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn import_rounding_and_alignment() {
    // The source's quantum and the request's alignment decide the import.
    let parent = span_arena("rparent", 0x1000_0000, 0x1000_0000, 0x10000);
    let child = child_arena("rchild", 16, parent);
    let x = child.alloc(100, Policy::InstantFit).unwrap();
    let st = child.stats();
    assert_eq!(st.mem_import, 0x10000, "rounded to the source quantum");
    assert_eq!(x % 0x10000, 0);
    let y = child
        .xalloc(&XAllocRequest::new(0x100).align(0x40000).phase(0x30))
        .unwrap();
    assert_eq!(y % 0x40000, 0x30);
    assert_eq!(child.stats().import, 2);
    assert_eq!(
        child.stats().mem_import,
        0x10000 + 0x40000,
        "roundup(size + phase, align)"
    );
    child.xfree(y, 0x100).unwrap();
    child.free(x, 100).unwrap();
    assert_eq!(child.stats().mem_total, 0);
    assert_eq!(child.stats().release, 2);
    // Constrained requests do not import.
    assert_eq!(
        child.xalloc(&XAllocRequest::new(16).minaddr(0x1000_0000)),
        Err(VmemError::Exhausted { size: 16 })
    );
    // Source is the Vmem itself through the trait.
    let s: &dyn Source = parent;
    assert_eq!(s.quantum(), 0x10000);
    let a = s.import(0x20000, 0x20000).unwrap();
    assert_eq!(a % 0x20000, 0);
    s.release(a, 0x20000);
    // SAFETY: the test made these arenas/caches and nothing uses them after this (no
    // other users); any buffer freed here came from its cache's `alloc`, freed once.
    unsafe {
        assert_eq!(child.destroy(), 0);
        assert_eq!(parent.destroy(), 0);
    }
}

/// Hysteresis: an arena with a retain limit keeps a wholly free imported
/// span, so alloc/free oscillating across a span boundary imports once
/// instead of import + release per pair; `update()` and lowering the limit
/// give the spans back; the retained total never passes the limit.
#[test]
fn retained_spans_hysteresis() {
    const P: usize = 4096;
    let parent = span_arena("ret.parent", 1 << 32, 1 << 30, P);
    let child = child_arena("ret.child", P, parent);
    assert_eq!(child.retain(), 0);
    // Default (as vmem.c): every pair imports and releases.
    for _ in 0..10 {
        let a = child.alloc(P, Policy::InstantFit).unwrap();
        child.free(a, P).unwrap();
    }
    let s = child.stats();
    assert_eq!((s.import, s.release, s.mem_total), (10, 10, 0));

    child.set_retain(16 * P);
    assert_eq!(child.retain(), 16 * P);
    for _ in 0..1000 {
        let a = child.alloc(P, Policy::InstantFit).unwrap();
        child.free(a, P).unwrap();
        child.verify().unwrap();
    }
    let s = child.stats();
    assert_eq!((s.import, s.release, s.mem_total), (11, 10, P as u64));
    assert_eq!(parent.stats().mem_inuse, P as u64);

    // update() gives the retained span back.
    umem_vmem::update();
    let s = child.stats();
    assert_eq!((s.release, s.mem_total), (11, 0));
    assert_eq!(parent.stats().mem_inuse, 0);

    // The bound: 20 separate one-page spans freed, 16 pages kept.
    let v: Vec<usize> = (0..20)
        .map(|_| child.alloc(P, Policy::InstantFit).unwrap())
        .collect();
    assert_eq!(child.stats().import, 11 + 20);
    for a in v {
        child.free(a, P).unwrap();
        child.verify().unwrap();
    }
    assert_eq!(child.stats().mem_total, 16 * P as u64);
    assert_eq!(child.stats().release, 11 + 4);
    // Retained spans serve later allocations without importing.
    let w: Vec<usize> = (0..16)
        .map(|_| child.alloc(P, Policy::InstantFit).unwrap())
        .collect();
    assert_eq!(child.stats().import, 31);
    for a in w {
        child.free(a, P).unwrap();
    }
    // Lowering the limit gives the excess back at once.
    child.set_retain(4 * P);
    assert_eq!(child.stats().mem_total, 4 * P as u64);
    child.verify().unwrap();
    child.set_retain(0);
    assert_eq!(child.stats().mem_total, 0);
    assert_eq!(parent.stats().mem_inuse, 0);
    child.verify().unwrap();
    parent.verify().unwrap();
    // SAFETY: test-local arenas, no other users.
    unsafe {
        assert_eq!(child.destroy(), 0);
        assert_eq!(parent.destroy(), 0);
    }
    assert_eq!(umem_vmem::heap().retain(), umem_vmem::HEAP_RETAIN);
}
