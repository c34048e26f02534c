//! Per-CPU magazines (restartable sequences): the mode, the rseq sections under forced
//! migration and preemption (many more threads than CPUs, affinity changed all the time,
//! content and uniqueness checks on every block), destroy and reap with magazines on
//! several CPUs, fork, and the per-thread fallback where glibc registered no rseq area.
//!
//! This binary asks for per-CPU magazines before its first cache (`setup`), so every
//! test here runs in that mode when the system allows it.

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Once};

use umem_slab::{Cache, MagazineMode};
use umem_testkit::cpus::{deny_rseq, gettid, online_cpus, pin, possible_cpus};
use umem_testkit::pattern::{check_words, fill_words};
use umem_testkit::{cache, heap_arena, serial, Child, Rng};

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        umem_slab::set_percpu(true);
        umem_slab::init();
    });
}

/// Whether glibc registered an rseq area for this process (then per-CPU mode is
/// expected).
fn glibc_rseq() -> bool {
    // SAFETY: a NUL-terminated name; the symbol, if any, is glibc's `unsigned int`.
    unsafe {
        let p = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()) as *const u32;
        !p.is_null() && *p != 0
    }
}

/// Buffers held by clients: out of the slab layer, minus the depot's and the CPUs'
/// magazines (exact when no thread is inside a slow path).
fn held(c: &Cache) -> usize {
    let st = c.stats();
    st.buf_slab_alloc - st.buf_depot - st.cpu_rounds
}

#[test]
fn mode_follows_rseq_and_hits_fill_cpu_magazines() {
    setup();
    let _s = serial();
    if !glibc_rseq() {
        assert_eq!(umem_slab::magazine_mode(), MagazineMode::PerThread);
        return;
    }
    assert_eq!(
        umem_slab::magazine_mode(),
        MagazineMode::PerCpu {
            cpus: possible_cpus()
        }
    );
    let c = cache("pc_basic", 48, heap_arena("pc_basic", 4096));
    for round in 0..50 {
        let v: Vec<NonNull<u8>> = (0..200).map(|_| c.alloc().unwrap()).collect();
        for (i, p) in v.iter().enumerate() {
            // SAFETY: fresh buffers of 48 bytes, 8-aligned, ours.
            unsafe { fill_words(p.as_ptr(), 48, (round * 1000 + i) as u64) };
        }
        for (i, p) in v.iter().enumerate() {
            // SAFETY: as above; each is checked, then freed once.
            unsafe {
                check_words(p.as_ptr(), 48, (round * 1000 + i) as u64);
                c.free(*p);
            }
        }
    }
    let st = c.stats();
    assert!(st.cpu_rounds > 0, "{st:?}");
    assert_eq!(held(c), 0, "{st:?}");
    let mut per = vec![0usize; 8192];
    assert_eq!(c.cpu_rounds(&mut per), possible_cpus());
    assert_eq!(per.iter().sum::<usize>(), st.cpu_rounds);
    c.verify().unwrap();
}

/// The hit follows the mode: per CPU, `hit_alloc`/`hit_free` work on the current CPU's
/// magazines (where the 40 frees went) and the out-of-line `cpu_hit_alloc` serves as well;
/// per thread the per-CPU hit always misses.
#[test]
fn hit_follows_the_mode() {
    setup();
    let _s = serial();
    let c = cache("pc_split", 64, heap_arena("pc_split", 4096));
    let ii = c.fast_index().inline();
    assert_ne!(ii, umem_slab::InlineIndex::MISS);
    let v: Vec<NonNull<u8>> = (0..40).map(|_| c.alloc().unwrap()).collect();
    for p in &v {
        // SAFETY: buffers of `c`, each freed once.
        unsafe { c.free(*p) };
    }
    let per_cpu = umem_slab::magazine_mode() != MagazineMode::PerThread;
    if per_cpu {
        assert!(c.stats().cpu_rounds > 0, "{:?}", c.stats());
    }
    let mut taken = Vec::new();
    for _ in 0..2 {
        // SAFETY: `ii` is the cache's own inline index; a buffer handed out is given
        // back through the same cache below.
        taken.extend(unsafe { umem_slab::hit_alloc(ii) });
    }
    // SAFETY: as above.
    let cpu = unsafe { umem_slab::cpu_hit_alloc(ii) };
    if !per_cpu {
        assert_eq!(
            cpu, None,
            "the per-CPU hit served a buffer in per-thread mode"
        );
    }
    taken.extend(cpu);
    // Per CPU a thread that stayed on its CPU got its buffers from there (a migration in
    // between may leave it an empty CPU: then the slow path serves, as it should).
    let st = c.stats();
    assert!(!per_cpu || !taken.is_empty() || st.cpu_rounds > 0, "{st:?}");
    for a in taken {
        // SAFETY: a buffer of `c` handed out above, freed once, through the hit (the
        // slow path when the magazines are full).
        unsafe {
            if !umem_slab::hit_free(ii, a) {
                c.free(NonNull::new(a as *mut u8).unwrap());
            }
        }
    }
    c.verify().unwrap();
    // SAFETY: no buffer of `c` is in use, and no other thread uses it.
    unsafe { c.destroy() }.unwrap();
}

/// 32 threads on the machine's CPUs, an affinity shuffler moving them between CPUs (one,
/// another, all) every few hundred microseconds, and a yielding load thread: every
/// block is written with its owner's tag and checked before it is freed, and a global
/// set proves that no block is handed out twice. In the end every buffer is back.
#[test]
fn migration_stress_loses_nothing_and_hands_out_nothing_twice() {
    setup();
    let _s = serial();
    const THREADS: usize = 32;
    const OPS: usize = 150_000;
    let a = heap_arena("pc_stress", 4096);
    let sizes = [16usize, 64, 200, 1000];
    let caches: Vec<&'static Cache> = sizes.iter().map(|&s| cache("pc_stress", s, a)).collect();
    let live: Arc<Vec<Mutex<HashSet<usize>>>> =
        Arc::new((0..64).map(|_| Mutex::new(HashSet::new())).collect());
    let tids: Arc<Vec<AtomicI32>> = Arc::new((0..THREADS).map(|_| AtomicI32::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let cpus = online_cpus();

    let shuffler = {
        let (tids, stop, cpus) = (tids.clone(), stop.clone(), cpus.clone());
        std::thread::spawn(move || {
            let mut rng = Rng::new(7);
            let mut moves = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = tids[rng.below(THREADS as u64) as usize].load(Ordering::Relaxed);
                if t != 0 {
                    match rng.below(3) {
                        0 => pin(t, &cpus),
                        _ => pin(t, &[cpus[rng.below(cpus.len() as u64) as usize]]),
                    }
                    moves += 1;
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            moves
        })
    };
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
                std::thread::yield_now();
            }
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (caches, live, tids) = (caches.clone(), live.clone(), tids.clone());
            std::thread::spawn(move || {
                tids[t].store(gettid(), Ordering::Relaxed);
                let mut rng = Rng::new(1000 + t as u64);
                let mut mine: Vec<(NonNull<u8>, usize, u64)> = Vec::new();
                for _ in 0..OPS {
                    if mine.len() < 300 && (mine.is_empty() || rng.below(100) < 52) {
                        let ci = rng.below(sizes.len() as u64) as usize;
                        let p = caches[ci].alloc().unwrap();
                        let a = p.as_ptr() as usize;
                        assert!(
                            live[(a >> 4) % 64].lock().unwrap().insert(a),
                            "block {a:#x} handed out twice"
                        );
                        let tag = rng.next();
                        // SAFETY: a fresh buffer of sizes[ci] bytes, 8-aligned, ours.
                        unsafe { fill_words(p.as_ptr(), sizes[ci], tag) };
                        mine.push((p, ci, tag));
                    } else {
                        let i = rng.below(mine.len() as u64) as usize;
                        let (p, ci, tag) = mine.swap_remove(i);
                        let a = p.as_ptr() as usize;
                        // SAFETY: our live buffer of sizes[ci] bytes.
                        unsafe { check_words(p.as_ptr(), sizes[ci], tag) };
                        assert!(live[(a >> 4) % 64].lock().unwrap().remove(&a));
                        // SAFETY: from this cache's alloc, freed once.
                        unsafe { caches[ci].free(p) };
                    }
                }
                for (p, ci, tag) in mine {
                    let a = p.as_ptr() as usize;
                    // SAFETY: as above.
                    unsafe { check_words(p.as_ptr(), sizes[ci], tag) };
                    assert!(live[(a >> 4) % 64].lock().unwrap().remove(&a));
                    // SAFETY: as above.
                    unsafe { caches[ci].free(p) };
                }
                tids[t].store(0, Ordering::Relaxed);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let moves = shuffler.join().unwrap();
    load.join().unwrap();
    assert!(moves > 0);
    for c in &caches {
        c.verify().unwrap();
        assert_eq!(held(c), 0, "{:?}", c.stats());
    }
    // Everything can go back: destroy finds nothing allocated.
    for c in caches {
        // SAFETY: no thread uses the cache any more.
        unsafe { c.destroy() }.unwrap();
    }
}

/// Magazines left on every CPU are taken by destroy (not reported as leaked), and the id
/// is reusable at once.
#[test]
fn destroy_takes_every_cpus_magazines() {
    setup();
    let _s = serial();
    let a = heap_arena("pc_destroy", 4096);
    for round in 0..3 {
        let c = cache("pc_destroy", 96, a);
        for cpu in online_cpus() {
            std::thread::spawn(move || {
                pin(0, &[cpu]);
                let v: Vec<NonNull<u8>> = (0..100).map(|_| c.alloc().unwrap()).collect();
                for p in v {
                    // SAFETY: from this cache's alloc, freed once.
                    unsafe { c.free(p) };
                }
            })
            .join()
            .unwrap();
        }
        if umem_slab::magazine_mode() != MagazineMode::PerThread {
            assert!(c.stats().cpu_rounds > 0, "round {round}");
        }
        // SAFETY: no thread uses the cache any more.
        unsafe { c.destroy() }.unwrap();
    }
}

/// A reap asks every CPU to flush; the next slow path on each CPU gives its magazines
/// back, and the global reap frees them.
#[test]
fn reap_flushes_cpu_magazines() {
    setup();
    let _s = serial();
    let c = cache("pc_reap", 200, heap_arena("pc_reap", 4096));
    let other = cache("pc_reap_other", 24, heap_arena("pc_reap_o", 4096));
    let v: Vec<NonNull<u8>> = (0..500).map(|_| c.alloc().unwrap()).collect();
    for p in v {
        // SAFETY: from this cache's alloc, freed once.
        unsafe { c.free(p) };
    }
    umem_slab::reap();
    for cpu in online_cpus() {
        std::thread::spawn(move || {
            pin(0, &[cpu]);
            // A slow path on this CPU (a fresh cache's first allocation always misses).
            let q = other.alloc().unwrap();
            // SAFETY: from this cache's alloc, freed once.
            unsafe { other.free(q) };
        })
        .join()
        .unwrap();
    }
    umem_slab::reap();
    let st = c.stats();
    assert_eq!(st.cpu_rounds, 0, "{st:?}");
    assert_eq!(held(c), 0, "{st:?}");
    c.verify().unwrap();
}

/// fork while other threads allocate and free: the child's caches are consistent and
/// usable.
#[test]
fn fork_with_busy_threads() {
    setup();
    let _s = serial();
    let c = cache("pc_fork", 64, heap_arena("pc_fork", 4096));
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..4)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(t);
                let mut v = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if v.len() < 64 && rng.chance(55) {
                        v.push(c.alloc().unwrap());
                    } else if let Some(p) = v.pop() {
                        // SAFETY: from this cache's alloc, freed once.
                        unsafe { c.free(p) };
                    }
                }
                for p in v {
                    // SAFETY: as above.
                    unsafe { c.free(p) };
                }
            })
        })
        .collect();
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(5));
        umem_slab::lockup();
        // SAFETY: fork; the child only uses umem-slab and _exit.
        let pid = unsafe { libc::fork() };
        // SAFETY: after lockup, in parent and child.
        unsafe { umem_slab::release() };
        if pid == 0 {
            let mut ok = true;
            for _ in 0..1000 {
                let p = c.alloc().unwrap();
                // SAFETY: fresh buffer, 64 bytes; freed once.
                unsafe {
                    fill_words(p.as_ptr(), 64, 5);
                    check_words(p.as_ptr(), 64, 5);
                    c.free(p);
                }
            }
            ok &= c.verify().is_ok();
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
    stop.store(true, Ordering::Relaxed);
    for b in busy {
        b.join().unwrap();
    }
    c.verify().unwrap();
    assert_eq!(held(c), 0);
}

/// Where glibc registered no rseq area (here: turned off with its tunable), umem registers
/// one per thread itself: the magazines are per CPU all the same, threads register on
/// their first slow path, and a migration stress holds.
#[test]
fn registers_its_own_rseq_areas_where_glibc_did_not() {
    setup();
    let o = Child::new("own_rseq")
        .env("GLIBC_TUNABLES", "glibc.pthread.rseq=0")
        .run(|| {
            assert!(!glibc_rseq());
            assert!(matches!(
                umem_slab::magazine_mode(),
                MagazineMode::PerCpu { .. }
            ));
            let c = cache("pc_own", 40, heap_arena("pc_own", 4096));
            let cpus = online_cpus();
            let hs: Vec<_> = (0..8)
                .map(|t| {
                    let cpus = cpus.clone();
                    std::thread::spawn(move || {
                        let mut rng = Rng::new(t);
                        let mut v: Vec<(NonNull<u8>, u64)> = Vec::new();
                        for i in 0..20_000u64 {
                            if i % 1000 == 0 {
                                pin(0, &[cpus[rng.below(cpus.len() as u64) as usize]]);
                            }
                            if v.len() < 200 && rng.chance(55) {
                                let p = c.alloc().unwrap();
                                // SAFETY: a fresh 40-byte buffer, ours.
                                unsafe { fill_words(p.as_ptr(), 40, i) };
                                v.push((p, i));
                            } else if let Some((p, tag)) = v.pop() {
                                // SAFETY: our live buffer; freed once.
                                unsafe {
                                    check_words(p.as_ptr(), 40, tag);
                                    c.free(p);
                                }
                            }
                        }
                        for (p, tag) in v {
                            // SAFETY: as above.
                            unsafe {
                                check_words(p.as_ptr(), 40, tag);
                                c.free(p);
                            }
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert!(c.stats().cpu_rounds > 0);
            assert_eq!(held(c), 0);
            c.verify().unwrap();
        });
    if let Some(o) = o {
        assert_eq!(o.code(), Some(0), "{}", o.show());
    }
}

/// Where rseq(2) fails (a seccomp filter here, as under valgrind or an old kernel), the
/// magazines are per thread, and they work.
#[test]
fn falls_back_to_per_thread_where_rseq_fails() {
    setup();
    let o = Child::new("norseq").before_exec(deny_rseq).run(|| {
        assert_eq!(umem_slab::magazine_mode(), MagazineMode::PerThread);
        let c = cache("pc_fallback", 32, heap_arena("pc_fallback", 4096));
        let v: Vec<NonNull<u8>> = (0..1000).map(|_| c.alloc().unwrap()).collect();
        for p in v {
            // SAFETY: from this cache's alloc, freed once.
            unsafe { c.free(p) };
        }
        assert_eq!(c.stats().cpu_rounds, 0);
        assert_eq!(c.stats().buf_inuse, 0);
        c.verify().unwrap();
    });
    if let Some(o) = o {
        assert_eq!(o.code(), Some(0), "{}", o.show());
    }
}
