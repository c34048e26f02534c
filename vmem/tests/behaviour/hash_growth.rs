//! The allocated-segment hash's growth on demand, its shrink by `update()`, and
//! growth deferred while the arena-list lock is busy.
//!
//! An allocation that pushes an arena past its grow limit rescales the hash
//! itself, but only if it can take the arena-list lock at once
//! (`grow_hash` tries, never waits: the allocating thread may be deep in
//! another arena's code). While another thread holds the list lock —
//! `update()`, `verify()`, `for_each_arena`, a create or destroy — the growth
//! is deferred: every later allocation asks again, and the first one that
//! finds the lock free grows the table straight to the size the live count
//! wants. A holder that needs this arena's lock (`update()` and `verify()`
//! visit every arena) can wait on a thread that allocates in a tight loop for
//! the whole loop, so a test that checks growth on demand runs in a child
//! process of its own, where no other test can hold the list lock.

use std::sync::mpsc;
use std::thread;
use umem_testkit::{run_alone, span_arena, Rng};
use umem_vmem::{Policy, Vmem};

#[test]
fn hash_grows_on_demand_and_update_shrinks() {
    run_alone("grow", || {
        let a = span_arena("hash", 0, 1 << 30, 1);
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
        // SAFETY: the test made it and nothing uses it after this (no other users).
        unsafe { a.destroy() };
    });
}

/// Holds the arena-list lock on another thread (inside `for_each_arena`)
/// until the returned sender is used or dropped; returns once it is held.
fn hold_list_lock() -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let t = thread::spawn(move || {
        let mut first = true;
        umem_vmem::for_each_arena(&mut |_: &'static Vmem| {
            if first {
                first = false;
                held_tx.send(()).unwrap();
                let _ = go_rx.recv();
            }
        });
    });
    held_rx.recv().unwrap();
    (go_tx, t)
}

/// The flake of `hash_grows_on_demand_and_update_shrinks` made
/// deterministic: with the list lock held through the whole allocation loop
/// (as a sibling test's `update()` or `verify()` did, starved of this
/// arena's lock), no allocation can grow the hash. The growth is deferred,
/// not lost: the first allocation after the lock is free grows the table in
/// one rescale to the size the live count wants.
#[test]
fn hash_growth_deferred_while_list_lock_held() {
    run_alone("deferred", || {
        let a = span_arena("hash_busy", 0, 1 << 30, 1);
        let n = 200_000;
        let (go, holder) = hold_list_lock();
        let mut v: Vec<usize> = (0..n)
            .map(|_| a.alloc(1, Policy::InstantFit).unwrap())
            .collect();
        let st = a.stats();
        assert_eq!(
            (st.hash_size, st.hash_rescale),
            (16, 0),
            "no growth while the list lock is held"
        );
        drop(go);
        holder.join().unwrap();
        v.push(a.alloc(1, Policy::InstantFit).unwrap());
        let st = a.stats();
        assert!(
            st.hash_size >= 2 * n,
            "deferred growth not caught up: {} buckets for {} live",
            st.hash_size,
            n + 1
        );
        assert_eq!(st.hash_rescale, 1, "caught up in one rescale");
        a.verify().unwrap();
        for &x in &v {
            a.free(x, 1).unwrap();
        }
        // SAFETY: the test made it and nothing uses it after this (no other users).
        unsafe { a.destroy() };
    });
}
