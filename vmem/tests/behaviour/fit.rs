//! The policies' defining behaviours: next fit cycles, best and first fit choices, instant fit's floor-list head.

use umem_testkit::span_arena;
use umem_vmem::{Policy, VmemError, XAllocRequest};

#[test]
fn nextfit_cycles_through_all_ids() {
    // PIDs 1..=999: allocate and free at once; the IDs come in order and
    // wrap only after all were used.
    let a = span_arena("pids", 1, 999, 1);
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
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn nextfit_exhaustion_and_rotor_between_free_segments() {
    let a = span_arena("nf", 0x1000, 64, 1);
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
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { a.destroy() };
}

#[test]
fn best_first_and_instant_fit_choices() {
    let a = span_arena("fits", 0, 1 << 20, 1);
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
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { assert_eq!(a.destroy(), 0) };
}

/// Floor-list head fit: a non-power-of-two request first tries the head of
/// list floor(log2 size), so the exact hole a free just made is reused
/// (vmem.c's instant fit would split the big free segment instead).
#[test]
fn instant_fit_takes_floor_list_head() {
    let a = span_arena("floorfit", 0, 1000, 1);
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
    let b = span_arena("floorfit2", 0, 7, 1);
    assert_eq!(b.alloc(5, Policy::InstantFit).unwrap(), 0);
    b.verify().unwrap();
    a.verify().unwrap();
    // SAFETY: test-local arenas.
    unsafe {
        b.destroy();
        a.destroy();
    }
}
