//! Magazine resize under forced depot contention (its own test binary: it depends on the
//! global update step).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use umem_slab::{CacheOps, MagazineMode};
use umem_testkit::{cache, heap_arena, serial, CacheBuilder};

// Every test here calls the global update step: they take turns (`serial()`).

#[test]
fn magazines_grow_under_forced_depot_contention() {
    let _s = serial();
    umem_slab::set_update_interval_ms(0);
    let a = heap_arena("c_arena", 4096);
    let c = cache("contend", 64, a);
    // Prime the depot with a full magazine so that a fresh thread's first alloc goes there.
    let v: Vec<_> = (0..100).map(|_| c.alloc().unwrap()).collect();
    for p in v {
        // SAFETY: the buffer came from this cache's `alloc` and is freed once.
        unsafe { c.free(p) };
    }
    umem_slab::thread_exit_flush();
    let m0 = c.stats().mag_size;
    assert_eq!(m0, 15, "64-byte buffers start with 15-round magazines");
    umem_slab::update(); // start a fresh interval
    let before = c.stats().depot_contention;
    let per_cpu = umem_slab::magazine_mode() != MagazineMode::PerThread;
    for _ in 0..4 {
        if per_cpu {
            // A fresh thread has no magazines of its own only per thread: per CPU, empty
            // every CPU's so that its first allocation goes to the depot.
            c.reap();
        }
        let (tx, rx) = mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            rx.recv().unwrap();
            // First alloc of a fresh thread visits the depot while it is held.
            let p = c.alloc().unwrap();
            // SAFETY: the buffer came from this cache's `alloc` and is freed once.
            unsafe { c.free(p) };
        });
        umem_slab::__with_depot_locked(c, &mut |waiters| {
            tx.send(()).unwrap();
            while waiters() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        h.join().unwrap();
    }
    let st = c.stats();
    assert!(st.depot_contention - before >= 4, "{st:?}");
    umem_slab::update();
    let st = c.stats();
    assert_eq!(st.mag_size, 31, "{st:?}");
    assert_eq!(st.mag_resize, 1);
    // Threads pick up the new size; everything still adds up.
    let hs: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let v: Vec<_> = (0..100).map(|_| c.alloc().unwrap()).collect();
                    for p in v {
                        // SAFETY: the buffer came from this cache's `alloc` and is freed once.
                        unsafe { c.free(p) };
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let v: Vec<_> = (0..100).map(|_| c.alloc().unwrap()).collect();
    for p in v {
        // SAFETY: the buffer came from this cache's `alloc` and is freed once.
        unsafe { c.free(p) };
    }
    c.verify().unwrap();
    let st = c.stats();
    assert_eq!(st.buf_inuse, 0);
    // The two threads really contend for the depot (and make depot traffic), so the next
    // update may legitimately grow the magazines once more; they never shrink.
    umem_slab::update();
    let settled = c.stats().mag_size;
    assert!(settled >= 31, "{:?}", c.stats());
    // Without contention or traffic in an interval, the size stays.
    umem_slab::update();
    assert_eq!(c.stats().mag_size, settled);
    c.reap();
    umem_slab::thread_exit_flush();
    c.reap();
    assert_eq!(c.stats().slabs, 0);
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { c.destroy().unwrap() };
}

#[test]
fn working_set_reaping_frees_idle_magazines() {
    let _s = serial();
    let a = heap_arena("ws_arena", 4096);
    let c = cache("ws", 128, a);
    // A burst puts many full magazines in the depot (enough that the magazines growing on
    // the burst's depot traffic, which empties the depot, still leaves many).
    // (A joined std thread: its exit flush has run when join returns.)
    std::thread::spawn(move || {
        let v: Vec<_> = (0..20000).map(|_| c.alloc().unwrap()).collect();
        for p in v {
            // SAFETY: the buffer came from this cache's `alloc` and is freed once.
            unsafe { c.free(p) };
        }
    })
    .join()
    .unwrap();
    let full0 = c.stats().depot_full;
    assert!(full0 > 10);
    // Two idle intervals: the first sets the reap limit, the second reaps down to it.
    umem_slab::update();
    umem_slab::update();
    let st = c.stats();
    assert_eq!(st.depot_full, 0, "idle magazines reaped: {st:?}");
    c.reap();
    assert_eq!(c.stats().slabs, 0);
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { c.destroy().unwrap() };
}

#[test]
fn inline_update_runs_from_slow_paths_when_due() {
    let _s = serial();
    let a = heap_arena("iu_arena", 4096);
    let c = cache("inline_upd", 256, a);
    std::thread::spawn(move || {
        let v: Vec<_> = (0..2000).map(|_| c.alloc().unwrap()).collect();
        for p in v {
            // SAFETY: the buffer came from this cache's `alloc` and is freed once.
            unsafe { c.free(p) };
        }
    })
    .join()
    .unwrap();
    assert!(c.stats().depot_full > 5);
    umem_slab::set_update_interval_ms(5);
    // Nobody calls update(): slow-path allocations (another cache's, from fresh threads)
    // run it inline once the interval passes; two idle intervals reap the idle depot.
    let other = cache("inline_upd2", 32, a);
    let t0 = std::time::Instant::now();
    while c.stats().depot_full != 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "inline update never ran"
        );
        std::thread::sleep(Duration::from_millis(6));
        std::thread::spawn(move || {
            if umem_slab::magazine_mode() != MagazineMode::PerThread {
                // Per CPU a fresh thread may hit its CPU's magazines: empty them, so that
                // this allocation takes a slow path as a fresh thread's does.
                other.reap();
            }
            let p = other.alloc().unwrap();
            // SAFETY: the buffer came from this cache's `alloc` and is freed once.
            unsafe { other.free(p) };
        })
        .join()
        .unwrap();
    }
    umem_slab::set_update_interval_ms(0);
    c.reap();
    other.reap();
    assert_eq!(a.stats().mem_inuse, 0);
    // SAFETY: the test made these arenas/caches and nothing uses them after this (no
    // other users); any buffer freed here came from its cache's `alloc`, freed once.
    unsafe {
        c.destroy().unwrap();
        other.destroy().unwrap();
    }
}

#[test]
fn thousand_short_lived_threads_do_not_grow_memory() {
    let _s = serial();
    let a = heap_arena("st_arena", 4096);
    let c = cache("short", 48, a);
    let run = |n: usize| {
        for _ in 0..n {
            std::thread::spawn(move || {
                let v: Vec<_> = (0..40).map(|_| c.alloc().unwrap()).collect();
                for p in v {
                    // SAFETY: the buffer came from this cache's `alloc` and is freed once.
                    unsafe { c.free(p) };
                }
            })
            .join()
            .unwrap();
        }
    };
    run(100);
    let blocks = umem_slab::live_thread_blocks();
    let heap0 = umem_vmem::heap().stats().mem_inuse;
    let arena0 = a.stats().mem_inuse;
    run(1000);
    assert_eq!(
        umem_slab::live_thread_blocks(),
        blocks,
        "every exiting thread retired its block"
    );
    // Objects and magazines are recycled through the depot: no growth.
    assert!(
        a.stats().mem_inuse <= arena0 + 4096,
        "{} vs {arena0}",
        a.stats().mem_inuse
    );
    let heap1 = umem_vmem::heap().stats().mem_inuse;
    assert!(
        heap1 <= heap0 + 64 * 4096,
        "heap grew from {heap0} to {heap1}"
    );
    assert_eq!(c.stats().buf_inuse, 0);
    c.verify().unwrap();
    c.reap();
    assert_eq!(c.stats().slabs, 0);
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { c.destroy().unwrap() };
}

#[test]
fn reap_asks_live_threads_to_flush_on_their_next_slow_path() {
    let _s = serial();
    let a = heap_arena("rf_arena", 4096);
    let c = cache("reapflush", 512, a);
    let other = cache("reapflush2", 16, a);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        let v: Vec<_> = (0..5).map(|_| c.alloc().unwrap()).collect();
        for p in v {
            // SAFETY: the buffer came from this cache's `alloc` and is freed once.
            unsafe { c.free(p) };
        }
        done_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        // Any slow path (here: another cache's first allocation) honours the request.
        let p = other.alloc().unwrap();
        // SAFETY: the buffer came from this cache's `alloc` and is freed once.
        unsafe { other.free(p) };
        done_tx.send(()).unwrap();
        go_rx.recv().unwrap();
    });
    done_rx.recv().unwrap();
    umem_slab::reap();
    if umem_slab::magazine_mode() == MagazineMode::PerThread {
        assert!(
            c.stats().slabs > 0,
            "the live thread still holds its magazines"
        );
    } else {
        // Per CPU the magazines are the CPUs', and a reap visits every CPU.
        assert_eq!(c.stats().slabs, 0, "every CPU's magazines reaped");
    }
    go_tx.send(()).unwrap();
    done_rx.recv().unwrap();
    umem_slab::reap();
    assert_eq!(c.stats().slabs, 0, "flushed on request, then reaped");
    go_tx.send(()).unwrap();
    h.join().unwrap();
    other.reap();
    // SAFETY: the test made these arenas/caches and nothing uses them after this (no
    // other users); any buffer freed here came from its cache's `alloc`, freed once.
    unsafe {
        c.destroy().unwrap();
        other.destroy().unwrap();
    }
}

static RECLAIMS: AtomicUsize = AtomicUsize::new(0);

struct Tracker {
    ctors: AtomicUsize,
    dtors: AtomicUsize,
}

impl umem_slab::ObjectOps for Tracker {
    const HAS_RECLAIM: bool = true;
    fn construct(&self, buf: NonNull<u8>) -> bool {
        // SAFETY: the constructor gets a buffer of at least 4 bytes, aligned for u32, that is its own.
        unsafe { *(buf.as_ptr() as *mut u32) = 0xc0ffee };
        self.ctors.fetch_add(1, Ordering::SeqCst);
        true
    }
    fn destruct(&self, buf: NonNull<u8>) {
        // SAFETY: a constructed buffer (written by the constructor), at least 4 bytes.
        assert_eq!(unsafe { *(buf.as_ptr() as *const u32) }, 0xc0ffee);
        self.dtors.fetch_add(1, Ordering::SeqCst);
    }
    fn reclaim(&self) {
        RECLAIMS.fetch_add(1, Ordering::SeqCst);
    }
}

static TRACKER: Tracker = Tracker {
    ctors: AtomicUsize::new(0),
    dtors: AtomicUsize::new(0),
};

#[test]
fn object_ops_trait_and_reclaim_callback() {
    // umem_slab::reap() below reaps every cache: serialised with this binary's other tests.
    let _s = serial();
    let a = heap_arena("t_objops", 4096);
    let c = CacheBuilder::new("objops", 24, a)
        .ops(CacheOps::from_object(&TRACKER))
        .create();
    let v: Vec<_> = (0..10).map(|_| c.alloc().unwrap()).collect();
    for p in &v {
        // SAFETY: a live, constructed buffer of at least 4 bytes.
        assert_eq!(unsafe { *(p.as_ptr() as *const u32) }, 0xc0ffee);
    }
    for p in v {
        // SAFETY: the buffer came from this cache's `alloc` and is freed once.
        unsafe { c.free(p) };
    }
    assert_eq!(TRACKER.ctors.load(Ordering::SeqCst), 10);
    let r0 = RECLAIMS.load(Ordering::SeqCst);
    c.reap();
    assert_eq!(RECLAIMS.load(Ordering::SeqCst), r0 + 1);
    umem_slab::reap();
    assert_eq!(RECLAIMS.load(Ordering::SeqCst), r0 + 2);
    assert_eq!(
        TRACKER.dtors.load(Ordering::SeqCst),
        10,
        "reap destructed every cached object"
    );
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { c.destroy().unwrap() };
}

#[test]
fn magazines_grow_on_depot_traffic_of_one_thread() {
    let _s = serial();
    umem_slab::set_update_interval_ms(0);
    let a = heap_arena("traffic_arena", 4096);
    // 1000-byte buffers start with 3-round magazines; a churn over 64 live objects
    // visits the depot every few operations. No other thread, no contention.
    let c = cache("traffic", 1000, a);
    let p0 = c.alloc().unwrap();
    // SAFETY: the buffer came from this cache's `alloc` and is freed once.
    unsafe { c.free(p0) };
    let m0 = c.stats().mag_size;
    assert_eq!(m0, 3);
    let t0 = std::time::Instant::now();
    let mut v = Vec::new();
    while c.stats().mag_size == m0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "magazines never grew: {:?}",
            c.stats()
        );
        for _ in 0..2000 {
            while v.len() < 64 {
                let p = c.alloc().unwrap();
                // SAFETY: a live buffer of this cache, at least a word long and word-aligned, ours.
                unsafe { *(p.as_ptr() as *mut usize) = p.as_ptr() as usize };
                v.push(p);
            }
            for p in v.drain(32..) {
                assert_eq!(
                    // SAFETY: as above: the buffer is still live.
                    unsafe { *(p.as_ptr() as *const usize) },
                    p.as_ptr() as usize
                );
                // SAFETY: the buffer came from this cache's `alloc` and is freed once.
                unsafe { c.free(p) };
            }
        }
    }
    let st = c.stats();
    assert_eq!(st.depot_contention, 0, "{st:?}");
    assert!(st.mag_size > m0 && st.mag_resize >= 1, "{st:?}");
    for p in v {
        // SAFETY: the buffer came from this cache's `alloc` and is freed once.
        unsafe { c.free(p) };
    }
    c.verify().unwrap();
    assert_eq!(c.stats().buf_inuse, 0);
    umem_slab::thread_exit_flush();
    c.reap();
    assert_eq!(c.stats().slabs, 0);
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { c.destroy().unwrap() };
}
