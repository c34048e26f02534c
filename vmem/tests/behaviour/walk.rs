//! Walking an arena's segments, locked and reentrant.

use umem_testkit::{child_arena, span_arena};
use umem_vmem::{Policy, SegType, SegTypes, WalkMode};

#[test]
fn walk_types_and_reentrant_walk() {
    let a = span_arena("walk", 0x1000, 0x1000, 16);
    a.add(0x4000, 0x100).unwrap();
    let x = a.alloc(32, Policy::InstantFit).unwrap();
    let y = a.alloc(48, Policy::InstantFit).unwrap();
    let mut all = Vec::new();
    a.walk(SegTypes::ALL, WalkMode::Locked, &mut |t, s, n| {
        all.push((t, s, n))
    });
    assert_eq!(all.iter().filter(|e| e.0 == SegType::Span).count(), 2);
    assert_eq!(all.iter().filter(|e| e.0 == SegType::Alloc).count(), 2);
    assert!(all.contains(&(SegType::Alloc, x, 32)));
    assert!(all.contains(&(SegType::Alloc, y, 48)));
    // Reentrant: free every allocated segment from inside the callback and
    // allocate new ones; the walk goes on and the arena stays consistent.
    let mut extra = Vec::new();
    let mut visited = 0;
    a.walk(SegTypes::ALLOC, WalkMode::Reentrant, &mut |_, s, n| {
        visited += 1;
        a.free(s, n).unwrap();
        a.verify().unwrap();
        if extra.len() < 5 {
            extra.push(a.alloc(16, Policy::InstantFit).unwrap());
        }
    });
    assert!(visited >= 2);
    a.verify().unwrap();
    for e in extra {
        let _ = a.free(e, 16);
    }
    a.verify().unwrap();
    assert_eq!(a.stats().alloc_segs, 0);
    // A reentrant walk that unwinds leaves no walker behind.
    let b = a.alloc(16, Policy::InstantFit).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        a.walk(SegTypes::ALL, WalkMode::Reentrant, &mut |_, _, _| {
            panic!("boom")
        });
    }));
    assert!(r.is_err());
    a.verify().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        a.walk(SegTypes::ALL, WalkMode::Locked, &mut |_, _, _| {
            panic!("boom")
        });
    }));
    assert!(r.is_err());
    a.verify().unwrap();
    a.free(b, 16).unwrap();
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn reentrant_walk_on_sourced_arena_releases_spans() {
    let parent = span_arena("wparent", 0x100000, 0x100000, 4096);
    let child = child_arena("wchild", 64, parent);
    let v: Vec<usize> = (0..20)
        .map(|_| child.alloc(4096, Policy::InstantFit).unwrap())
        .collect();
    assert_eq!(child.stats().spans, 20);
    child.walk(SegTypes::ALLOC, WalkMode::Reentrant, &mut |_, s, n| {
        child.free(s, n).unwrap();
    });
    child.verify().unwrap();
    assert_eq!(
        child.stats().mem_total,
        0,
        "wholly free spans went back to the parent"
    );
    assert_eq!(parent.stats().mem_inuse, 0);
    let _ = v;
    // SAFETY: the test made these arenas/caches and nothing uses them after this (no
    // other users); any buffer freed here came from its cache's `alloc`, freed once.
    unsafe {
        child.destroy();
        parent.destroy();
    }
}
