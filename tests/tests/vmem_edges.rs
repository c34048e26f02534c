//! Issue 11, defects 6b and 6c, with umem-slab's real quantum caches and
//! object caches (they live here, not in `vmem/tests/edges.rs`: umem-vmem
//! cannot dev-depend on umem-slab without linking a second copy of itself).
//!
//! 6b: `Vmem::free` of a size served by a quantum cache must check the
//! free — a double free, a wrong size, a never-allocated address and a
//! handle's address must be errors (at least with debug assertions), never
//! `Ok` followed by the range being handed out twice. Each case runs in a
//! child process (this binary again), since today's accepted bad free may
//! abort at a later reap.
//!
//! 6c: when an arena allocation fails, every slab cache must be reaped
//! (each reclaim callback called, as `umem_reap` does) before giving up.

use std::collections::HashSet;
use std::process::Command;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use umem_slab::{Cache, CacheFlags, CacheOps};
use umem_vmem::{CreateFlags, Policy, Vmem, VmemError};

const CASE: &str = "UMEM_VMEM_EDGES_CASE";

/// An arena of plain integers with quantum caches for 16..=64.
fn qcached(name: &str) -> &'static Vmem {
    umem_slab::init();
    let a = Vmem::create(
        name,
        Some((0x1000_0000, 1 << 20)),
        16,
        None,
        64,
        CreateFlags::NONE,
    )
    .unwrap();
    assert!(a.qcache_for(32).is_some(), "no quantum cache for 32");
    a
}

/// After a bad free that returned Ok: allocate until the arena runs dry and
/// report whether some address came back twice.
fn handed_out_twice(a: &'static Vmem, size: usize) -> Option<usize> {
    let mut seen = HashSet::new();
    for _ in 0..(1 << 20) / size + 16 {
        match a.alloc(size, Policy::InstantFit) {
            Ok(x) => {
                if !seen.insert(x) {
                    return Some(x);
                }
            }
            Err(_) => break,
        }
    }
    None
}

/// Runs the bad-free `case` in a child and checks that it was refused.
fn refused_in_child(case: &str) {
    let o = Command::new(std::env::current_exe().unwrap())
        .args([
            "qcache_frees_are_checked_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CASE, case)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("REFUSED"),
        "{case}: a bad Vmem::free of a quantum-cached size was not refused ({:?})\n{out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The child side of [`qcache_frees_are_checked`]; does nothing unless run
/// as a child.
#[test]
fn qcache_frees_are_checked_child() {
    let Ok(case) = std::env::var(CASE) else {
        return;
    };
    let a = qcached("edges-qc");
    let x = a.alloc(32, Policy::InstantFit).unwrap();
    let (addr, size, handle) = match case.as_str() {
        "double" => {
            a.free(x, 32).unwrap();
            (x, 32, None)
        }
        "wrong-size" => (x, 48, None),
        "never-allocated" => (x + 0x4_0000, 32, None),
        "handle" => {
            let h = a.alloc_handle(32, Policy::InstantFit).unwrap();
            (h.addr(), 32, Some(h))
        }
        _ => panic!("unknown case {case}"),
    };
    let r = a.free(addr, size);
    println!("{case}: free({addr:#x}, {size}) = {r:?}");
    match r {
        Err(e) => {
            println!("REFUSED: {e:?}");
            if let Some(h) = handle {
                a.free_handle(h).unwrap();
            }
        }
        Ok(()) => match handed_out_twice(a, 32) {
            Some(d) => println!("ACCEPTED, and {d:#x} was then handed out twice"),
            None => println!("ACCEPTED"),
        },
    }
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the checks are required with debug assertions (ci/test has them)"
)]
fn qcache_double_free_is_an_error() {
    refused_in_child("double");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "checked with debug assertions")]
fn qcache_wrong_size_free_is_an_error() {
    refused_in_child("wrong-size");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "checked with debug assertions")]
fn qcache_never_allocated_free_is_an_error() {
    refused_in_child("never-allocated");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "checked with debug assertions")]
fn qcache_free_of_a_handle_address_is_an_error() {
    refused_in_child("handle");
}

// ------------------------------------------------------------------- 6c --

/// Objects the "program" keeps cached; the reclaim callback gives them back.
static HELD: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static CACHE: Mutex<Option<&'static Cache>> = Mutex::new(None);
static RECLAIMS: AtomicUsize = AtomicUsize::new(0);
/// The callback gives objects back only when armed (not while the test
/// fills the arena: a fixed allocator reaps when the fill runs dry).
static ARMED: AtomicBool = AtomicBool::new(false);

fn give_back(_: *mut ()) {
    RECLAIMS.fetch_add(1, Ordering::Relaxed);
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let c = CACHE.lock().unwrap().expect("cache");
    for p in HELD.lock().unwrap().drain(..) {
        // SAFETY: every held pointer was allocated from `c` and is live.
        unsafe { c.free(NonNull::new(p as *mut u8).unwrap()) };
    }
}

/// A full arena (real memory: the slab layer writes into its buffers),
/// filled by a cache whose reclaim callback frees everything it holds. An
/// allocation from the arena, and one from a second cache of the same
/// arena, must then succeed: the failure reaps every cache first.
#[test]
fn a_failing_arena_allocation_reaps_every_cache() {
    umem_slab::init();
    const LEN: usize = 256 << 10;
    // SAFETY: an anonymous private mapping, never unmapped (the arena keeps it).
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED);
    let arena = Vmem::create(
        "edges-reclaim",
        Some((base as usize, LEN)),
        4096,
        None,
        0,
        CreateFlags::NONE,
    )
    .unwrap();
    let ops = CacheOps {
        reclaim: Some(give_back),
        ..CacheOps::NONE
    };
    let c = Cache::create("edges-reclaim-512", 512, 0, ops, arena, CacheFlags::NONE).unwrap();
    *CACHE.lock().unwrap() = Some(c);
    let c2 = Cache::create(
        "edges-reclaim-other",
        1024,
        0,
        CacheOps::NONE,
        arena,
        CacheFlags::NONE,
    )
    .unwrap();
    let mut n = 0;
    while let Some(p) = c.alloc() {
        HELD.lock().unwrap().push(p.as_ptr() as usize);
        n += 1;
        assert!(n < LEN / 512 + 1, "the cache got more than the arena holds");
    }
    assert!(n > LEN / 512 / 2, "only {n} objects filled the arena");
    assert!(matches!(
        arena.xalloc(&umem_vmem::XAllocRequest::new(4096).minaddr(base as usize)),
        Err(VmemError::Exhausted { .. })
    ));
    ARMED.store(true, Ordering::Relaxed);
    let before = RECLAIMS.load(Ordering::Relaxed);
    let got = arena.alloc(4096, Policy::InstantFit);
    assert!(
        got.is_ok(),
        "arena alloc after exhaustion: {got:?}; reclaim callbacks called: {} \
         ({n} objects held by a cache whose callback would free them)",
        RECLAIMS.load(Ordering::Relaxed) - before
    );
    assert!(RECLAIMS.load(Ordering::Relaxed) > before);
    arena.free(got.unwrap(), 4096).unwrap();
    // The same through another cache of the arena: fill again, then c2.
    ARMED.store(false, Ordering::Relaxed);
    while let Some(p) = c.alloc() {
        HELD.lock().unwrap().push(p.as_ptr() as usize);
    }
    ARMED.store(true, Ordering::Relaxed);
    let before = RECLAIMS.load(Ordering::Relaxed);
    let q = c2.alloc();
    assert!(
        q.is_some(),
        "second cache's alloc on the full arena failed; reclaim callbacks called: {}",
        RECLAIMS.load(Ordering::Relaxed) - before
    );
    // SAFETY: q was just allocated from c2.
    unsafe { c2.free(q.unwrap()) };
}
