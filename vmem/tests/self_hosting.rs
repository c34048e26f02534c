//! The self-hosting proof: build vmem's internal tree on a static-memory
//! page source (no mmap, no malloc), then run 10^6 arena operations —
//! instant/best/first/next fit, constrained xallocs, frees, imports and
//! releases through the tree, hash growth, populate, arena create/destroy —
//! while a counting global allocator shows that vmem asked the system
//! allocator for nothing.
//!
//! This file is its own test binary (its own process), so `init` here is the
//! first one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use umem_testkit::{child_arena, span_arena, Rng, POLICIES};
use umem_vmem::{Policy, Source, XAllocRequest};

/// Counts allocations made by the current thread.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` with the caller's arguments, so `System`'s guarantees hold; counting touches only a thread-local counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System` with layout `l` (every allocation here does).
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: the block is live (from `alloc`/`realloc`) and the old pointer is not used after.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

const PAGE: usize = 4096;
const REGION: usize = 256 << 20;

#[repr(C, align(4096))]
struct Region(UnsafeCell<[u8; REGION]>);
// SAFETY: handed out in disjoint pieces by StaticSource.
unsafe impl Sync for Region {}
static MEMORY: Region = Region(UnsafeCell::new([0; REGION]));

/// A page source over a static array: bump allocation plus exact-size
/// reuse of released ranges (a fixed table; no heap).
struct StaticSource {
    next: AtomicUsize,
    freed: Mutex<([(usize, usize); 1024], usize)>,
    imports: AtomicUsize,
    releases: AtomicUsize,
}

static STATIC_SOURCE: StaticSource = StaticSource {
    next: AtomicUsize::new(0),
    freed: Mutex::new(([(0, 0); 1024], 0)),
    imports: AtomicUsize::new(0),
    releases: AtomicUsize::new(0),
};

impl Source for StaticSource {
    fn import(&self, size: usize, align: usize) -> Option<usize> {
        self.imports.fetch_add(1, Ordering::Relaxed);
        let base = MEMORY.0.get() as usize;
        {
            let mut f = self.freed.lock().unwrap();
            let n = f.1;
            if let Some(i) = f.0[..n]
                .iter()
                .position(|&(a, s)| s == size && a % align == 0)
            {
                let a = f.0[i].0;
                f.0[i] = f.0[n - 1];
                f.1 -= 1;
                return Some(a);
            }
        }
        let align = align.max(PAGE);
        loop {
            let cur = self.next.load(Ordering::Relaxed);
            let start = (base + cur + align - 1) & !(align - 1);
            let end = start + size;
            if end > base + REGION {
                return None;
            }
            if self
                .next
                .compare_exchange(cur, end - base, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return Some(start);
            }
        }
    }
    fn release(&self, addr: usize, size: usize) {
        self.releases.fetch_add(1, Ordering::Relaxed);
        let mut f = self.freed.lock().unwrap();
        let n = f.1;
        if n < f.0.len() {
            f.0[n] = (addr, size);
            f.1 += 1;
        }
    }
    fn quantum(&self) -> usize {
        PAGE
    }
}

#[test]
fn million_ops_with_zero_outside_allocation() {
    umem_vmem::init(&STATIC_SOURCE, PAGE).unwrap();
    let heap = umem_vmem::heap();
    assert_eq!(heap.quantum(), PAGE);

    // Everything the test itself needs is allocated before the window.
    let mut live: Vec<(usize, usize, bool)> = Vec::with_capacity(300_000);
    let mut mem_live: Vec<(usize, usize)> = Vec::with_capacity(10_000);
    let mut rng = Rng::new(2024);
    let segs_before = umem_vmem::global_free_segs();
    let imports_before = STATIC_SOURCE.imports.load(Ordering::Relaxed);

    // The counter does count (negative control).
    let c0 = allocs();
    let probe = std::hint::black_box(vec![1u8; 3]);
    assert!(allocs() > c0);
    drop(probe);

    let before = allocs();
    let mut ops = 0usize;

    // An integer arena (IDs/addresses) with 2*10^5 live segments at peak.
    let ids = span_arena("ids", 0x1000_0000, 1 << 34, 16);
    // A memory arena importing real pages through heap from the static source.
    let memory = child_arena("memory", 64, heap);

    for _ in 0..200_000 {
        let n = 16 * rng.range(1, 8);
        let p = ids.alloc(n, POLICIES[rng.below(4) as usize]).unwrap();
        live.push((p, n, false));
        ops += 1;
    }
    for i in 0..500_000 {
        if rng.chance(50) && live.len() < live.capacity() {
            if rng.chance(15) {
                let align = 16 * rng.pow2(1, 64);
                let n = 16 * rng.range(1, 8);
                let p = ids
                    .xalloc(
                        &XAllocRequest::new(n)
                            .align(align)
                            .phase(16 * rng.range(0, align / 16 - 1)),
                    )
                    .unwrap();
                live.push((p, n, true));
            } else {
                let n = 16 * rng.range(1, 8);
                let p = ids.alloc(n, POLICIES[rng.below(4) as usize]).unwrap();
                live.push((p, n, false));
            }
        } else if !live.is_empty() {
            let (p, n, x) = live.swap_remove(rng.below(live.len() as u64) as usize);
            if x {
                ids.xfree(p, n).unwrap();
            } else {
                ids.free(p, n).unwrap();
            }
        }
        ops += 1;
        // Real memory through the tree: imports and releases.
        if i % 3 == 0 {
            if mem_live.len() < 5_000 && rng.chance(50) {
                let n = 64 * rng.range(1, 256);
                let p = memory.alloc(n, Policy::InstantFit).unwrap();
                // SAFETY: our block of real memory.
                unsafe { *(p as *mut u64) = p as u64 };
                mem_live.push((p, n));
            } else if let Some((p, n)) = mem_live.pop() {
                // SAFETY: as above.
                assert_eq!(unsafe { *(p as *const u64) }, p as u64);
                memory.free(p, n).unwrap();
            }
            ops += 1;
        }
        if i % 100_000 == 0 {
            ids.verify().unwrap();
            memory.verify().unwrap();
        }
        // Arenas come and go (their structures come from vmem_vmem).
        if i % 5_000 == 0 {
            let t = span_arena("temp", 0, 1 << 20, 1);
            let c = child_arena("tempchild", 1, t);
            for _ in 0..10 {
                let p = c.alloc(100, Policy::BestFit).unwrap();
                c.free(p, 100).unwrap();
                ops += 2;
            }
            // SAFETY: unused after.
            unsafe {
                assert_eq!(c.destroy(), 0);
                assert_eq!(t.destroy(), 0);
            }
        }
    }
    while let Some((p, n, x)) = live.pop() {
        if x {
            ids.xfree(p, n).unwrap();
        } else {
            ids.free(p, n).unwrap();
        }
        ops += 1;
    }
    while let Some((p, n)) = mem_live.pop() {
        memory.free(p, n).unwrap();
        ops += 1;
    }
    let seg_total = || {
        let mut t = 0;
        umem_vmem::for_each_arena(&mut |v| {
            if v.name() == "vmem_seg" {
                t = v.stats().mem_total;
            }
        });
        t
    };
    let internal_total = seg_total();
    umem_vmem::update();
    umem_vmem::verify().unwrap();
    let st = ids.stats();
    let mst = memory.stats();
    // SAFETY: unused after.
    unsafe {
        assert_eq!(ids.destroy(), 0);
        assert_eq!(memory.destroy(), 0);
    }
    let after = allocs();

    assert!(ops >= 1_000_000, "only {ops} operations");
    assert_eq!(
        after - before,
        0,
        "vmem used the outside allocator {} times",
        after - before
    );
    // The tree really worked: hashes grew, segments were populated from
    // vmem_seg, and memory came from the static source.
    assert!(st.hash_rescale >= 5, "hash never rescaled: {st:?}");
    assert!(st.populate > 0, "ids never populated from vmem_seg: {st:?}");
    let _ = segs_before;
    assert!(mst.import > 0 && mst.release > 0);
    assert!(STATIC_SOURCE.imports.load(Ordering::Relaxed) > imports_before);
    assert!(
        internal_total > 10 << 20,
        "10^5+ segments came from vmem_seg: {internal_total}"
    );
    // update() gave the (now unused) segment chunks back: the arenas'
    // reserves went to the global list and whole chunks to vmem_seg,
    // which released its spans.
    let now = seg_total();
    assert!(
        now < internal_total / 4,
        "vmem_seg kept {now} of {internal_total} after update()"
    );
}
