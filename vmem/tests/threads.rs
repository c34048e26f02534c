//! Multi-threaded stress with content checks: one arena shared by several
//! threads, an arena importing from another, arenas created and destroyed
//! concurrently, and lockup/release around fork.
// These tests rely on the lazily built tree (feature `std`).
#![cfg(feature = "std")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use umem_testkit::pattern::{check_bytes, fill_bytes};
use umem_testkit::{child_arena, heap_arena, span_arena, ArenaBuilder, Rng, POLICIES};
use umem_vmem::{Policy, SegHandle, SegTypes, Vmem, WalkMode, XAllocRequest};

/// How a live block of [`churn`] was allocated (so how to free it).
enum Kind {
    Alloc,
    X,
    Handle(SegHandle),
}

fn free_block(a: &Vmem, p: usize, n: usize, k: Kind) {
    match k {
        Kind::Alloc => a.free(p, n).unwrap(),
        Kind::X => a.xfree(p, n).unwrap(),
        Kind::Handle(h) => {
            assert_eq!((h.addr(), h.size()), (p, n));
            a.free_handle(h).unwrap()
        }
    }
}

/// Random alloc/free on `a` from one thread (by address, constrained, and
/// through handles), with content checks.
fn churn(a: &'static Vmem, seed: u64, ops: usize, max_units: usize, tag: u8) {
    let mut rng = Rng::new(seed);
    let q = a.quantum();
    let mut live: Vec<(usize, usize, Kind)> = Vec::new();
    for i in 0..ops {
        if live.len() < 8 || (live.len() < 400 && rng.chance(52)) {
            let n = q * rng.range(1, max_units)
                - if rng.chance(20) {
                    rng.range(0, q - 1)
                } else {
                    0
                };
            let policy = POLICIES[rng.below(4) as usize];
            let (p, k) = match rng.below(10) {
                0..=1 => {
                    let align = q * rng.pow2(1, 16);
                    let p = a.xalloc(&XAllocRequest::new(n).align(align)).unwrap();
                    assert_eq!(p % align, 0);
                    (p, Kind::X)
                }
                2..=4 => {
                    let h = a.alloc_handle(n, policy).unwrap();
                    (h.addr(), Kind::Handle(h))
                }
                _ => (a.alloc(n, policy).unwrap(), Kind::Alloc),
            };
            // SAFETY: [p, p + n) was just allocated from this heap-backed arena and is
            // ours until freed.
            unsafe { fill_bytes(p as *mut u8, n, tag) };
            live.push((p, n, k));
        } else {
            let (p, n, k) = live.swap_remove(rng.below(live.len() as u64) as usize);
            // SAFETY: [p, p + n) is live and only this thread touches it.
            unsafe { check_bytes(p as *const u8, n, tag) };
            free_block(a, p, n, k);
        }
        if i % 5000 == 0 {
            a.verify().unwrap();
        }
    }
    for (p, n, k) in live {
        // SAFETY: as above.
        unsafe { check_bytes(p as *const u8, n, tag) };
        free_block(a, p, n, k);
    }
}

#[test]
fn one_arena_many_threads() {
    let a = heap_arena("mt", 64);
    let threads = 4;
    let bar = Barrier::new(threads);
    std::thread::scope(|s| {
        for t in 0..threads {
            let bar = &bar;
            s.spawn(move || {
                bar.wait();
                churn(a, 100 + t as u64, 40_000, 64, 0x10 + t as u8);
            });
        }
    });
    a.verify().unwrap();
    let st = a.stats();
    assert_eq!(st.mem_inuse, 0);
    assert_eq!(st.mem_total, 0, "every imported span went back");
    assert_eq!(st.alloc, st.free);
    assert_eq!(st.import, st.release);
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { assert_eq!(a.destroy(), 0) };
    umem_vmem::verify().unwrap();
}

/// Handles are `Send`: producers allocate through handles and pass them to
/// consumers that check the contents and free them, while the producers'
/// own frees by address of those blocks are refused.
#[test]
fn handles_freed_by_other_threads() {
    use std::sync::mpsc;
    let a = heap_arena("mth", 64);
    let producers = 2;
    let per = 20_000;
    std::thread::scope(|s| {
        let mut txs = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = mpsc::sync_channel::<(SegHandle, u8)>(64);
            txs.push(tx);
            s.spawn(move || {
                let mut n = 0;
                for (h, tag) in rx {
                    // SAFETY: the producer filled the block and handed it over (the
                    // channel orders its writes before these reads); it is live until
                    // freed on the next line.
                    unsafe { check_bytes(h.addr() as *const u8, h.size(), tag) };
                    a.free_handle(h).unwrap();
                    n += 1;
                    if n % 4096 == 0 {
                        a.verify().unwrap();
                    }
                }
            });
        }
        for t in 0..producers {
            let txs = txs.clone();
            s.spawn(move || {
                let mut rng = Rng::new(500 + t as u64);
                let tag = 0x60 + t as u8;
                for i in 0..per {
                    let n = 64 * rng.range(1, 32) - rng.range(0, 63);
                    let h = a.alloc_handle(n, POLICIES[rng.below(4) as usize]).unwrap();
                    // SAFETY: a fresh block of this heap-backed arena, ours until sent.
                    unsafe { fill_bytes(h.addr() as *mut u8, n, tag) };
                    if i % 1000 == 0 {
                        assert_eq!(
                            a.free(h.addr(), n),
                            Err(umem_vmem::VmemError::HandleAllocated {
                                addr: h.addr(),
                                size: n
                            })
                        );
                    }
                    txs[i % txs.len()].send((h, tag)).unwrap();
                }
            });
        }
        drop(txs);
    });
    a.verify().unwrap();
    let st = a.stats();
    assert_eq!((st.mem_inuse, st.handle_segs, st.alloc_segs), (0, 0, 0));
    assert_eq!(st.mem_total, 0, "every imported span went back");
    assert_eq!(st.alloc, st.free);
    assert_eq!(st.alloc, (producers * per) as u64);
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { assert_eq!(a.destroy(), 0) };
    umem_vmem::verify().unwrap();
}

#[test]
fn arena_importing_from_arena_many_threads() {
    let parent = heap_arena("mtparent", 4096);
    let child = child_arena("mtchild", 16, parent);
    let bar = Barrier::new(4);
    std::thread::scope(|s| {
        for t in 0..3 {
            let bar = &bar;
            s.spawn(move || {
                bar.wait();
                churn(child, 200 + t, 30_000, 300, 0x40 + t as u8);
            });
        }
        // One thread uses the parent directly, beside the child's imports.
        let bar = &bar;
        s.spawn(move || {
            bar.wait();
            churn(parent, 299, 20_000, 4, 0x7f);
        });
    });
    child.verify().unwrap();
    parent.verify().unwrap();
    assert_eq!(child.stats().mem_total, 0);
    assert_eq!(parent.stats().mem_inuse, 0);
    assert_eq!(parent.stats().mem_total, 0);
    // SAFETY: the test made these arenas/caches and nothing uses them after this (no
    // other users); any buffer freed here came from its cache's `alloc`, freed once.
    unsafe {
        assert_eq!(child.destroy(), 0);
        assert_eq!(parent.destroy(), 0);
    }
    umem_vmem::verify().unwrap();
}

#[test]
fn create_destroy_while_others_allocate() {
    let shared = span_arena("cd_shared", 0x1_0000_0000, 1 << 30, 8);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let done = &done;
        s.spawn(move || {
            let mut rng = Rng::new(9);
            let mut live = Vec::new();
            while done.load(Ordering::Relaxed) < 2 {
                if live.len() < 1000 && rng.chance(55) {
                    let n = 8 * rng.range(1, 32);
                    live.push((shared.alloc(n, Policy::InstantFit).unwrap(), n));
                } else if let Some((p, n)) = live.pop() {
                    shared.free(p, n).unwrap();
                }
            }
            for (p, n) in live {
                shared.free(p, n).unwrap();
            }
        });
        for t in 0..2u64 {
            s.spawn(move || {
                let mut rng = Rng::new(50 + t);
                for i in 0..300 {
                    let base = 0x10_0000 * (1 + rng.below(1000) as usize);
                    let a = span_arena("short", base, 0x10_0000, 16);
                    let c = child_arena("shortchild", 16, a);
                    let v: Vec<usize> = (0..20)
                        .map(|_| c.alloc(64, Policy::InstantFit).unwrap())
                        .collect();
                    if i % 50 == 0 {
                        umem_vmem::verify().unwrap();
                    }
                    for p in v {
                        c.free(p, 64).unwrap();
                    }
                    // SAFETY: the test made these arenas/caches and nothing uses them after this (no
                    // other users); any buffer freed here came from its cache's `alloc`, freed once.
                    unsafe {
                        assert_eq!(c.destroy(), 0);
                        assert_eq!(a.destroy(), 0);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    shared.verify().unwrap();
    assert_eq!(shared.size(SegTypes::ALLOC), 0);
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { shared.destroy() };
    umem_vmem::verify().unwrap();
}

#[test]
fn lockup_release_around_fork() {
    let a = heap_arena("fork", 64);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let stop = &stop;
        for t in 0..2u64 {
            s.spawn(move || {
                let mut rng = Rng::new(700 + t);
                let mut live = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if live.len() < 200 && rng.chance(55) {
                        let n = 64 * rng.range(1, 100);
                        live.push((a.alloc(n, Policy::InstantFit).unwrap(), n));
                    } else if let Some((p, n)) = live.pop() {
                        a.free(p, n).unwrap();
                    }
                }
                for (p, n) in live {
                    a.free(p, n).unwrap();
                }
            });
        }
        let r = std::panic::catch_unwind(|| {
            for _ in 0..20 {
                std::thread::sleep(std::time::Duration::from_millis(2));
                umem_vmem::lockup();
                // SAFETY: plain fork; the child only uses vmem (which is
                // consistent: we hold every vmem lock) and then _exits.
                let pid = unsafe { libc::fork() };
                assert!(pid >= 0);
                // SAFETY: we (or our forked copy) did the lockup.
                unsafe { umem_vmem::release() };
                if pid == 0 {
                    let code = (|| {
                        a.verify().map_err(|_| 2)?;
                        let p = a.alloc(4096, Policy::InstantFit).map_err(|_| 3)?;
                        a.free(p, 4096).map_err(|_| 4)?;
                        let b = ArenaBuilder::new("forkchild")
                            .quantum(64)
                            .from_heap()
                            .try_create()
                            .map_err(|_| 5)?;
                        let x = b.alloc(100_000, Policy::BestFit).map_err(|_| 6)?;
                        b.free(x, 100_000).map_err(|_| 7)?;
                        umem_vmem::verify().map_err(|_| 8)?;
                        Ok::<i32, i32>(0)
                    })()
                    .unwrap_or_else(|c| c);
                    // SAFETY: `_exit` ends the forked child without returning into the harness.
                    unsafe { libc::_exit(code) };
                }
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(
                    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                    "child failed: exit {} (status {status:#x})",
                    libc::WEXITSTATUS(status)
                );
            }
        });
        stop.store(true, Ordering::Relaxed);
        if let Err(e) = r {
            std::panic::resume_unwind(e);
        }
    });
    a.verify().unwrap();
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn maintenance_races_with_allocation() {
    // update() (hash rescale both ways), verify(), reentrant and locked
    // walks and next-fit allocations all at once on one arena.
    let a = span_arena("race", 0x10_0000_0000, 1 << 32, 16);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let done = &done;
        for t in 0..2u64 {
            s.spawn(move || {
                let mut rng = Rng::new(900 + t);
                let mut live: Vec<(usize, usize)> = Vec::new();
                for round in 0..6 {
                    // Grow to thousands of live segments, then shrink: the
                    // hash must grow and (on update) shrink under us.
                    let target = if round % 2 == 0 { 6000 } else { 10 };
                    while live.len() != target {
                        if live.len() < target {
                            let n = 16 * rng.range(1, 8);
                            live.push((a.alloc(n, POLICIES[rng.below(4) as usize]).unwrap(), n));
                        } else {
                            let (p, n) = live.swap_remove(rng.below(live.len() as u64) as usize);
                            a.free(p, n).unwrap();
                        }
                    }
                }
                for (p, n) in live {
                    a.free(p, n).unwrap();
                }
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        s.spawn(move || {
            let mut walks = 0u64;
            loop {
                umem_vmem::update();
                a.verify().unwrap();
                let mut n = 0usize;
                a.walk(SegTypes::ALLOC, WalkMode::Reentrant, &mut |_, _, _| n += 1);
                a.walk(
                    SegTypes::FREE | SegTypes::SPAN,
                    WalkMode::Locked,
                    &mut |_, _, _| n += 1,
                );
                walks += 1;
                if done.load(Ordering::Relaxed) >= 2 && walks >= 20 {
                    break;
                }
                std::thread::yield_now();
            }
            assert!(walks > 0);
        });
    });
    a.verify().unwrap();
    let st = a.stats();
    assert_eq!(st.mem_inuse, 0);
    assert!(st.hash_rescale >= 2, "{st:?}");
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { assert_eq!(a.destroy(), 0) };
}

#[test]
fn update_gives_back_while_others_allocate() {
    // Retained spans and segment chunks given back by update() while two
    // threads grow and shrink an importing arena (populating, importing,
    // releasing) and a third creates and destroys arenas.
    let parent = span_arena("giveback.parent", 0x20_0000_0000, 1 << 34, 4096);
    let child = child_arena("giveback.child", 4096, parent);
    child.set_retain(64 << 12);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let done = &done;
        for t in 0..2u64 {
            s.spawn(move || {
                let mut rng = Rng::new(1300 + t);
                let mut live: Vec<(usize, usize)> = Vec::new();
                for round in 0..6 {
                    let target = if round % 2 == 0 { 5000 } else { 0 };
                    while live.len() != target {
                        if live.len() < target {
                            let n = 4096 * rng.range(1, 5);
                            live.push((child.alloc(n, Policy::InstantFit).unwrap(), n));
                        } else {
                            let (p, n) = live.swap_remove(rng.below(live.len() as u64) as usize);
                            child.free(p, n).unwrap();
                        }
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        s.spawn(move || {
            let mut i = 0u64;
            // At least one round, however fast the workers finish.
            while i == 0 || done.load(Ordering::Relaxed) < 2 {
                let a = span_arena("giveback.tmp", 1 << 40, 1 << 30, 1);
                let v: Vec<usize> = (0..3000)
                    .map(|_| a.alloc(1, Policy::InstantFit).unwrap())
                    .collect();
                for x in v {
                    a.free(x, 1).unwrap();
                }
                // SAFETY: local arena, no other users.
                unsafe { assert_eq!(a.destroy(), 0) };
                i += 1;
            }
            assert!(i > 0);
        });
        s.spawn(move || {
            let mut n = 0u64;
            loop {
                umem_vmem::update();
                umem_vmem::verify().unwrap();
                n += 1;
                if done.load(Ordering::Relaxed) >= 2 && n >= 10 {
                    break;
                }
                std::thread::yield_now();
            }
        });
    });
    umem_vmem::update();
    umem_vmem::verify().unwrap();
    assert_eq!(child.stats().mem_total, 0);
    assert_eq!(parent.stats().mem_inuse, 0);
    // SAFETY: unused after.
    unsafe {
        assert_eq!(child.destroy(), 0);
        assert_eq!(parent.destroy(), 0);
    }
}
