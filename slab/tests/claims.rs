//! Buffers stay with the CPU (per-CPU magazines) or the thread (per-thread magazines) whose
//! group took them: the slab layer's claims (`slab_layer.rs`, "CPU claims"), the depot's
//! rule for taking another group's full magazines (`depot.rs`, `steal_min`), and batch
//! refills that spread small buffers over eight lines (`miss.rs`, `SPREAD_BYTES`).
//!
//! Its own binary: per-thread groups are numbered in the order threads make their
//! magazine blocks, so here the two workers are the only threads that do.

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::{Arc, Barrier};

use umem_slab::{Cache, CacheFlags};
use umem_testkit::cpus::{online_cpus, pin};
use umem_testkit::pattern::{check_words, fill_words};
use umem_testkit::{cache, heap_arena, serial, CacheBuilder};

/// Lines holding buffers of more than one of `sets` (buffers of `size` bytes).
fn shared_lines(sets: &[Vec<usize>], size: usize) -> usize {
    let mut owner: HashMap<usize, usize> = HashMap::new();
    let mut shared = std::collections::HashSet::new();
    for (t, set) in sets.iter().enumerate() {
        for &b in set {
            for line in (b / 64)..=((b + size - 1) / 64) {
                if *owner.entry(line).or_insert(t) != t {
                    shared.insert(line);
                }
            }
        }
    }
    shared.len()
}

/// Two CPUs this process may run on whose numbers differ modulo 8 (the slab layer's and
/// the depot's groups).
fn two_cpus() -> [usize; 2] {
    let cpus = online_cpus();
    for &a in &cpus {
        if let Some(&b) = cpus.iter().find(|&&b| b % 8 != a % 8) {
            return [a, b];
        }
    }
    panic!("this test needs two CPUs in different groups, has {cpus:?}");
}

/// Gives the calling thread its magazine block (per-thread groups are numbered when a
/// thread makes it), by one allocation from a cache with magazines.
fn make_block(c: &'static Cache) {
    let p = c.alloc().unwrap();
    // SAFETY: allocated above, freed once.
    unsafe { c.free(p) };
}

/// Two threads, each on its own CPU, take `n` buffers each from `c`'s slab layer in
/// strict alternation, free them and take `n` again; returns each thread's buffers of
/// both rounds (the first `n`, then the second).
fn alternate(c: &'static Cache, size: usize, n: usize) -> Vec<Vec<usize>> {
    let cpus = two_cpus();
    let with_mags = cache("claims_block", 64, heap_arena("claims_block", 4096));
    let barrier = Arc::new(Barrier::new(2));
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let (barrier, cpu) = (barrier.clone(), cpus[t]);
            std::thread::spawn(move || {
                pin(0, &[cpu]);
                make_block(with_mags);
                let mut all = Vec::new();
                for round in 0..2 {
                    let mut v: Vec<NonNull<u8>> = Vec::with_capacity(n);
                    for i in 0..n {
                        // One thread takes a buffer while the other waits, then the other.
                        for turn in 0..2 {
                            if turn == t {
                                let p = c.alloc().unwrap();
                                // SAFETY: a fresh buffer of `size` bytes, 8-aligned, ours.
                                unsafe { fill_words(p.as_ptr(), size, (t * n + i) as u64) };
                                v.push(p);
                            }
                            barrier.wait();
                        }
                    }
                    for (i, p) in v.iter().enumerate() {
                        // SAFETY: filled above, still ours.
                        unsafe { check_words(p.as_ptr(), size, (t * n + i) as u64) };
                    }
                    all.extend(v.iter().map(|p| p.as_ptr() as usize));
                    if round == 0 {
                        for p in v {
                            // SAFETY: allocated above, freed once.
                            unsafe { c.free(p) };
                        }
                    }
                    barrier.wait();
                }
                all
            })
        })
        .collect();
    workers.into_iter().map(|w| w.join().unwrap()).collect()
}

#[test]
fn threads_taking_turns_at_the_slab_layer_get_their_own_lines() {
    let _s = serial();
    // No magazines: every allocation and free is the slab layer's, and the two threads
    // alternate there buffer by buffer. Without claims both took the next free chunk of
    // one slab: every line of 16-byte chunks held both threads' buffers.
    for size in [16, 48, 24] {
        let name = format!("claims{size}");
        let c = CacheBuilder::new(&name, size, heap_arena(&name, 4096))
            .flags(CacheFlags::NOMAGAZINE)
            .create();
        let sets = alternate(c, size, 2000);
        for (round, at) in [(1, 0..2000), (2, 2000..4000)] {
            let live: Vec<Vec<usize>> = sets.iter().map(|s| s[at.clone()].to_vec()).collect();
            assert_eq!(
                shared_lines(&live, size),
                0,
                "{size}-byte buffers, round {round}: lines shared by the two threads"
            );
        }
        c.verify().unwrap();
        let halves: Vec<Vec<usize>> = sets.iter().map(|s| s[2000..].to_vec()).collect();
        for p in halves.concat() {
            // SAFETY: the workers' live (second-round) buffers, freed once.
            unsafe { c.free(NonNull::new(p as *mut u8).unwrap()) };
        }
        assert_eq!(c.stats().slabs, 0, "every slab given back");
        // SAFETY: no buffer of the cache is live and nothing uses it afterwards.
        unsafe { c.destroy().unwrap() };
    }
}

#[test]
fn a_cpu_takes_another_cpus_full_magazines_only_from_a_list_of_two() {
    let _s = serial();
    // No inline periodic update: it could reap the depot the test counts.
    umem_slab::set_update_interval_ms(0);
    let cpus = two_cpus();
    let c = cache("claims_steal", 64, heap_arena("claims_steal", 4096));
    // A, on its CPU, frees until its depot list holds one full magazine, then two.
    let (to_b, from_a) = std::sync::mpsc::channel::<(usize, Vec<usize>)>();
    let (to_a, from_b) = std::sync::mpsc::channel::<()>();
    let a = std::thread::spawn(move || {
        pin(0, &[cpus[0]]);
        let mut live: Vec<NonNull<u8>> = (0..400).map(|_| c.alloc().unwrap()).collect();
        for want in [1, 2] {
            let mut freed = Vec::new();
            while c.stats().depot_full < want {
                let p = live.pop().unwrap();
                freed.push(p.as_ptr() as usize);
                // SAFETY: allocated above, freed once.
                unsafe { c.free(p) };
            }
            to_b.send((want, freed)).unwrap();
            from_b.recv().unwrap();
        }
        live.into_iter()
            .map(|p| p.as_ptr() as usize)
            .collect::<Vec<_>>()
    });
    let b = std::thread::spawn(move || {
        pin(0, &[cpus[1]]);
        let mut mine = Vec::new();
        let mut freed_by_a = std::collections::HashSet::new();
        while let Ok((want, freed)) = from_a.recv() {
            freed_by_a.extend(freed);
            let depot = c.stats().depot_full;
            assert_eq!(depot, want, "A's list");
            // Allocate until the depot changes: B's own magazines and list are empty, so
            // its first miss goes to the depot.
            let mut took_a_magazine = false;
            for _ in 0..64 {
                let p = c.alloc().unwrap().as_ptr() as usize;
                mine.push(p);
                if freed_by_a.contains(&p) {
                    took_a_magazine = true;
                    break;
                }
            }
            assert_eq!(
                took_a_magazine,
                want >= 2,
                "B with A's list holding {want}: got one of A's freed buffers"
            );
            to_a.send(()).unwrap();
        }
        mine
    });
    let live = a.join().unwrap();
    let mine = b.join().unwrap();
    for p in live.into_iter().chain(mine) {
        // SAFETY: live buffers of the two threads, freed once.
        unsafe { c.free(NonNull::new(p as *mut u8).unwrap()) };
    }
    c.verify().unwrap();
}

#[test]
fn a_consumer_still_feeds_its_producer() {
    // Producer and consumer on two CPUs: every buffer is allocated by one thread and
    // freed by the other, so the consumer's depot list is the only place its frees go.
    // The producer takes from it once it holds `steal_min` magazines: the slab layer
    // grows by a few magazines' worth, not by everything ever passed.
    let _s = serial();
    umem_slab::set_update_interval_ms(0);
    let cpus = two_cpus();
    let c = cache("claims_pc", 32, heap_arena("claims_pc", 4096));
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<usize>>(4);
    let total = 400_000;
    let batch = 1000;
    let (p_cpu, c_cpu) = (cpus[0], cpus[1]);
    let producer = std::thread::spawn(move || {
        pin(0, &[p_cpu]);
        for k in 0..total / batch {
            let v: Vec<usize> = (0..batch)
                .map(|i| {
                    let p = c.alloc().unwrap().as_ptr();
                    // SAFETY: a fresh 32-byte buffer, ours.
                    unsafe { fill_words(p, 32, (k * batch + i) as u64) };
                    p as usize
                })
                .collect();
            tx.send(v).unwrap();
        }
    });
    let consumer = std::thread::spawn(move || {
        pin(0, &[c_cpu]);
        let mut k = 0;
        while let Ok(v) = rx.recv() {
            for (i, p) in v.into_iter().enumerate() {
                // SAFETY: filled by the producer, handed over, freed once.
                unsafe {
                    check_words(p as *mut u8, 32, (k * batch + i) as u64);
                    c.free(NonNull::new(p as *mut u8).unwrap());
                }
            }
            k += 1;
        }
    });
    producer.join().unwrap();
    consumer.join().unwrap();
    let st = c.stats();
    // In flight at most: the channel's 4 batches, one being filled and one being freed
    // (6,000 buffers), plus magazines in the depot and on the CPUs. Without stealing,
    // the slab layer would have handed out all 400,000.
    assert!(
        st.buf_total < 40_000,
        "{} buffers made for at most 6,000 in flight: {st:?}",
        st.buf_total
    );
    c.verify().unwrap();
}

#[test]
fn a_fresh_cache_hands_out_its_first_eight_small_buffers_on_eight_lines() {
    let _s = serial();
    // A fresh cache's magazines hold 15 rounds: 240 bytes of 16-byte buffers, four lines,
    // so its first batch alternated between four lines, and two of the first eight
    // buffers shared each. A thread that hands its first buffers to other threads (the
    // Rust `cache-scratch`) then had them write one line. Batches now cover eight lines.
    for size in [8, 16, 24] {
        let name = format!("spread{size}");
        let c = cache(&name, size, heap_arena(&name, 4096));
        let lines = std::thread::spawn(move || {
            let v: Vec<NonNull<u8>> = (0..8).map(|_| c.alloc().unwrap()).collect();
            let lines: std::collections::HashSet<usize> =
                v.iter().map(|p| p.as_ptr() as usize / 64).collect();
            for p in v {
                // SAFETY: allocated above, freed once.
                unsafe { c.free(p) };
            }
            lines.len()
        })
        .join()
        .unwrap();
        assert_eq!(lines, 8, "{size}-byte buffers: lines of the first eight");
        c.verify().unwrap();
    }
}
