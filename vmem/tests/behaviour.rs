//! Error cases, policies' defining behaviours, walk, destroy, hash rescale.
// These tests rely on the lazily built tree (feature `std`).
#![cfg(feature = "std")]

mod common;

use common::Rng;
use umem_vmem::{
    CreateFlags, Policy, SegType, SegTypes, Source, Vmem, VmemError, WalkMode, XAllocRequest,
};

fn arena(name: &str, base: usize, size: usize, q: usize) -> &'static Vmem {
    Vmem::create(name, Some((base, size)), q, None, 0, CreateFlags::NONE).unwrap()
}

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
    unsafe { a.destroy() };
}

#[test]
fn alloc_and_free_errors() {
    let a = arena("errs", 0x10000, 0x10000, 16);
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
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn xalloc_parameter_errors() {
    let a = arena("xerrs", 0x100000, 0x100000, 16);
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
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn add_errors_and_contains() {
    let a = arena("adds", 0x10000, 0x10000, 0x100);
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
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn extend_alloc_cases() {
    let q = 0x1000;
    let a = Vmem::create("ext", None, q, None, 0, CreateFlags::NONE).unwrap();
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
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn nextfit_cycles_through_all_ids() {
    // PIDs 1..=999: allocate and free at once; the IDs come in order and
    // wrap only after all were used.
    let a = arena("pids", 1, 999, 1);
    let mut seen = Vec::new();
    for _ in 0..2500 {
        let id = a.alloc(1, Policy::NextFit).unwrap();
        seen.push(id);
        a.free(id, 1).unwrap();
    }
    for (i, &id) in seen.iter().enumerate() {
        assert_eq!(id, 1 + i % 999, "next fit broke the cycle at step {i}");
    }
    a.verify().unwrap();
    // With some IDs held, next fit skips them and still cycles.
    let held: Vec<usize> = (0..10)
        .map(|_| a.alloc(1, Policy::NextFit).unwrap())
        .collect();
    let mut prev = *held.last().unwrap();
    for _ in 0..3000 {
        let id = a.alloc(1, Policy::NextFit).unwrap();
        let want = (prev + 1..1000)
            .chain(1..=prev)
            .find(|i| !held.contains(i))
            .unwrap();
        assert_eq!(id, want, "next fit after {prev}");
        prev = id;
        a.free(id, 1).unwrap();
    }
    a.verify().unwrap();
    for h in held {
        a.free(h, 1).unwrap();
    }
    // Instant fit, by contrast, reuses the freed ID at once.
    let i1 = a.alloc(1, Policy::InstantFit).unwrap();
    a.free(i1, 1).unwrap();
    let i2 = a.alloc(1, Policy::InstantFit).unwrap();
    assert_eq!(i1, i2);
    a.free(i2, 1).unwrap();
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn nextfit_exhaustion_and_rotor_between_free_segments() {
    let a = arena("nf", 0x1000, 64, 1);
    let v: Vec<usize> = (0..64)
        .map(|_| a.alloc(1, Policy::NextFit).unwrap())
        .collect();
    assert_eq!(
        a.alloc(1, Policy::NextFit),
        Err(VmemError::Exhausted { size: 1 })
    );
    // Free two neighbours on each side of the rotor's spot; a 2-unit next
    // fit must still succeed (the rotor is moved out of the way).
    a.free(v[63], 1).unwrap();
    a.free(v[0], 1).unwrap();
    a.free(v[62], 1).unwrap();
    a.free(v[1], 1).unwrap();
    let two = a.alloc(2, Policy::NextFit).unwrap();
    assert!(two == v[62] || two == v[0]);
    a.verify().unwrap();
    unsafe { a.destroy() };
}

#[test]
fn best_first_and_instant_fit_choices() {
    let a = arena("fits", 0, 1 << 20, 1);
    // Carve free holes of sizes 300, 100, 200 (in address order).
    let mut keep = Vec::new();
    let mut holes = Vec::new();
    let mut at = 0;
    for hole in [300usize, 100, 200] {
        let h = a
            .xalloc(
                &XAllocRequest::new(hole)
                    .minaddr(at)
                    .policy(Policy::FirstFit),
            )
            .unwrap();
        assert_eq!(h, at);
        let k = a
            .xalloc(
                &XAllocRequest::new(10)
                    .minaddr(at + hole)
                    .policy(Policy::FirstFit),
            )
            .unwrap();
        keep.push(k);
        holes.push((h, hole));
        at += hole + 10;
    }
    for &(h, n) in &holes {
        a.xfree(h, n).unwrap();
    }
    a.verify().unwrap();
    // Best fit takes the 100 hole for 90; first fit takes the first
    // segment that fits, searching from the freelist that may hold one.
    let b = a.alloc(90, Policy::BestFit).unwrap();
    assert_eq!(b, holes[1].0);
    a.free(b, 90).unwrap();
    let f = a.alloc(150, Policy::FirstFit).unwrap();
    assert!(f == holes[0].0 || f == holes[2].0);
    a.free(f, 150).unwrap();
    // Instant fit of 129 first looks at the head of list 7 ([128, 256):
    // the 200 hole) and takes it since it fits (floor-list head fit, a
    // deviation from vmem.c); of 250, which that head cannot hold, it
    // takes one from a list whose members all fit (the 300 hole or the
    // tail), never searching list 7.
    let i = a.alloc(129, Policy::InstantFit).unwrap();
    assert_eq!(i, holes[2].0, "instant fit took {i}");
    a.free(i, 129).unwrap();
    let i = a.alloc(250, Policy::InstantFit).unwrap();
    assert!(i == holes[0].0 || i >= at, "instant fit took {i}");
    a.free(i, 250).unwrap();
    for k in keep {
        a.free(k, 10).unwrap();
    }
    a.verify().unwrap();
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn walk_types_and_reentrant_walk() {
    let a = arena("walk", 0x1000, 0x1000, 16);
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
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn reentrant_walk_on_sourced_arena_releases_spans() {
    let parent = arena("wparent", 0x100000, 0x100000, 4096);
    let child = Vmem::create("wchild", None, 64, Some(parent), 0, CreateFlags::NONE).unwrap();
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
    unsafe {
        child.destroy();
        parent.destroy();
    }
}

#[test]
fn destroy_reports_leaks_and_releases_imports() {
    let parent = arena("dparent", 0x100000, 0x100000, 4096);
    let child = Vmem::create("dchild", None, 16, Some(parent), 0, CreateFlags::NONE).unwrap();
    let _leak1 = child.alloc(100, Policy::InstantFit).unwrap();
    let _leak2 = child.alloc(5000, Policy::InstantFit).unwrap();
    child.add(0x900000, 0x1000).unwrap();
    let _leak3 = child
        .xalloc(&XAllocRequest::new(32).minaddr(0x900000))
        .unwrap();
    child.verify().unwrap();
    assert!(parent.stats().mem_inuse > 0);
    let segs_before = umem_vmem::global_free_segs();
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
    unsafe { assert_eq!(parent.destroy(), 0) };
}

#[test]
fn import_rounding_and_alignment() {
    // The source's quantum and the request's alignment decide the import.
    let parent = arena("rparent", 0x1000_0000, 0x1000_0000, 0x10000);
    let child = Vmem::create("rchild", None, 16, Some(parent), 0, CreateFlags::NONE).unwrap();
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
    unsafe {
        assert_eq!(child.destroy(), 0);
        assert_eq!(parent.destroy(), 0);
    }
}

#[test]
fn hash_grows_on_demand_and_update_shrinks() {
    let a = arena("hash", 0, 1 << 30, 1);
    let n = 200_000;
    let v: Vec<usize> = (0..n)
        .map(|_| a.alloc(1, Policy::InstantFit).unwrap())
        .collect();
    let st = a.stats();
    assert!(st.hash_size >= n / 2, "hash did not grow: {}", st.hash_size);
    assert!(st.hash_rescale >= 3);
    a.verify().unwrap();
    let lookups = a.stats().lookup;
    for &x in &v {
        a.free(x, 1).unwrap();
    }
    let per_free = (a.stats().lookup - lookups) as f64 / n as f64;
    assert!(
        per_free < 2.0,
        "hash chains too long: {per_free} extra steps per free"
    );
    umem_vmem::update();
    assert_eq!(a.stats().hash_size, 16, "update() shrinks the idle hash");
    a.verify().unwrap();
    let mut rng = Rng::new(5);
    let w: Vec<usize> = (0..50_000)
        .map(|_| {
            a.alloc(1 + rng.below(3) as usize, Policy::InstantFit)
                .unwrap()
        })
        .collect();
    a.rescale();
    assert!(a.stats().hash_size >= 32_768);
    let _ = w;
    unsafe { a.destroy() };
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

/// Hysteresis: an arena with a retain limit keeps a wholly free imported
/// span, so alloc/free oscillating across a span boundary imports once
/// instead of import + release per pair; `update()` and lowering the limit
/// give the spans back; the retained total never passes the limit.
#[test]
fn retained_spans_hysteresis() {
    const P: usize = 4096;
    let parent = arena("ret.parent", 1 << 32, 1 << 30, P);
    let child = Vmem::create("ret.child", None, P, Some(parent), 0, CreateFlags::NONE).unwrap();
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

/// Floor-list head fit: a non-power-of-two request first tries the head of
/// list floor(log2 size), so the exact hole a free just made is reused
/// (vmem.c's instant fit would split the big free segment instead).
#[test]
fn instant_fit_takes_floor_list_head() {
    let a = arena("floorfit", 0, 1000, 1);
    let x = a.alloc(3, Policy::InstantFit).unwrap();
    let sep = a.alloc(1, Policy::InstantFit).unwrap();
    assert_eq!((x, sep), (0, 3));
    a.free(x, 3).unwrap();
    // The 3-hole is on list 1 (sizes 2..3), the rest [4, 1000) on list 8.
    let before = a.stats().search;
    assert_eq!(a.alloc(3, Policy::InstantFit).unwrap(), 0);
    assert_eq!(a.stats().search - before, 1);
    a.verify().unwrap();
    // Constrained instant-fit xalloc tries the same head first.
    a.free(0, 3).unwrap();
    assert_eq!(
        a.xalloc(&XAllocRequest::new(3).maxaddr(500)).unwrap(),
        0,
        "xalloc instant fit takes the floor head"
    );
    a.xfree(0, 3).unwrap();
    // A head too small for the request is skipped: a 2-hole on list 1
    // cannot hold 3, so the ceil list serves it.
    let y = a.alloc(2, Policy::InstantFit).unwrap();
    assert_eq!(y, 0);
    let z = a.alloc(1, Policy::InstantFit).unwrap();
    assert_eq!(z, 2);
    a.free(y, 2).unwrap();
    let w = a.alloc(3, Policy::InstantFit).unwrap();
    assert_eq!(w, 4);
    // A non-power-of-two request that only the floor list can hold (the
    // ceil lists are empty) still succeeds from the head.
    let b = arena("floorfit2", 0, 7, 1);
    assert_eq!(b.alloc(5, Policy::InstantFit).unwrap(), 0);
    b.verify().unwrap();
    a.verify().unwrap();
    // SAFETY: test-local arenas.
    unsafe {
        b.destroy();
        a.destroy();
    }
}

#[test]
fn handle_alloc_free_and_misuse() {
    let a = arena("h1", 0x10_0000, 0x10_0000, 16);
    let b = arena("h2", 0x10_0000, 0x10_0000, 16);
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
    let parent = arena("hparent", 0x100_0000, 0x100_0000, 4096);
    let child = Vmem::create("hchild", None, 64, Some(parent), 0, CreateFlags::NONE).unwrap();
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
    let small = arena("hsmall", 0x1000, 0x100, 16);
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
    let mk = |n: &str| arena(n, 0x1000, 0x1000, 16);
    let a = mk("list_a");
    let b = mk("list_b");
    let c = mk("list_c");
    assert_eq!(ids(&[a, b, c]), vec![a.id(), b.id(), c.id()]);
    // The newest (the tail) goes; the next create must still be listed.
    let cid = c.id();
    unsafe { c.destroy() };
    let d = mk("list_d");
    let all = [a, b, d];
    assert_eq!(ids(&all), vec![a.id(), b.id(), d.id()]);
    let mut n = 0;
    umem_vmem::for_each_arena(&mut |vm| n += usize::from(vm.id() == cid));
    assert_eq!(n, 0, "destroyed arena still listed");
    // The oldest, then one in the middle.
    unsafe { a.destroy() };
    let e = mk("list_e");
    assert_eq!(ids(&[b, d, e]), vec![b.id(), d.id(), e.id()]);
    unsafe { d.destroy() };
    let f = mk("list_f");
    assert_eq!(ids(&[b, e, f]), vec![b.id(), e.id(), f.id()]);
    for vm in [b, e, f] {
        unsafe { vm.destroy() };
    }
    let g = mk("list_g");
    assert_eq!(ids(&[g]), vec![g.id()]);
    unsafe { g.destroy() };
}
