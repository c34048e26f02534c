//! The quantum-cache hook, with a simple mock factory standing in for
//! umem-slab: routing of small sizes, cache naming and sizes, the
//! `qcache_max` cap, a factory that declines, NO_QCACHE, reap on
//! exhaustion, and destroy. (Own test binary: the factory is global.)
// These tests rely on the lazily built tree (feature `std`).
#![cfg(feature = "std")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use umem_testkit::{ArenaBuilder, POLICIES};
use umem_vmem::{
    set_qcache_factory, CreateFlags, Policy, QCache, QCacheFactory, Vmem, VmemError, XAllocRequest,
};

struct MockCache {
    arena: &'static Vmem,
    objsize: usize,
    slab: usize,
    name: String,
    free: Mutex<Vec<usize>>,
    slabs: Mutex<Vec<usize>>,
    allocs: AtomicUsize,
    frees: AtomicUsize,
    reaps: AtomicUsize,
    destroyed: AtomicUsize,
}

impl QCache for MockCache {
    fn alloc(&self) -> Option<usize> {
        self.allocs.fetch_add(1, Ordering::Relaxed);
        if let Some(a) = self.free.lock().unwrap().pop() {
            return Some(a);
        }
        // A slab bigger than qcache_max: the arena's segment path.
        let s = self.arena.alloc(self.slab, Policy::InstantFit).ok()?;
        self.slabs.lock().unwrap().push(s);
        let mut f = self.free.lock().unwrap();
        for i in 1..self.slab / self.objsize {
            f.push(s + i * self.objsize);
        }
        Some(s)
    }
    fn free(&self, addr: usize) {
        self.frees.fetch_add(1, Ordering::Relaxed);
        self.free.lock().unwrap().push(addr);
    }
    fn reap(&self) {
        self.reaps.fetch_add(1, Ordering::Relaxed);
        // Return slabs whose objects are all free.
        let per = self.slab / self.objsize;
        let mut slabs = self.slabs.lock().unwrap();
        let mut free = self.free.lock().unwrap();
        slabs.retain(|&s| {
            let n = free
                .iter()
                .filter(|&&a| a >= s && a < s + self.slab)
                .count();
            if n == per {
                free.retain(|&a| !(a >= s && a < s + self.slab));
                self.arena.free(s, self.slab).unwrap();
                false
            } else {
                true
            }
        });
    }
    unsafe fn destroy(&self) {
        self.destroyed.fetch_add(1, Ordering::Relaxed);
        for s in self.slabs.lock().unwrap().drain(..) {
            self.arena.free(s, self.slab).unwrap();
        }
        self.free.lock().unwrap().clear();
    }
}

struct MockFactory {
    made: Mutex<Vec<&'static MockCache>>,
    /// Decline objects larger than this.
    limit: AtomicUsize,
}

impl QCacheFactory for MockFactory {
    fn create(
        &self,
        arena: &'static Vmem,
        objsize: usize,
        name: &str,
    ) -> Option<&'static dyn QCache> {
        if objsize > self.limit.load(Ordering::Relaxed) {
            return None;
        }
        let slab = (3 * arena.quantum() * 16).next_power_of_two();
        let c: &'static MockCache = Box::leak(Box::new(MockCache {
            arena,
            objsize,
            slab,
            name: name.to_string(),
            free: Mutex::new(Vec::new()),
            slabs: Mutex::new(Vec::new()),
            allocs: AtomicUsize::new(0),
            frees: AtomicUsize::new(0),
            reaps: AtomicUsize::new(0),
            destroyed: AtomicUsize::new(0),
        }));
        self.made.lock().unwrap().push(c);
        Some(c)
    }
}

static FACTORY: MockFactory = MockFactory {
    made: Mutex::new(Vec::new()),
    limit: AtomicUsize::new(usize::MAX),
};

fn caches_of(arena: &Vmem) -> Vec<&'static MockCache> {
    FACTORY
        .made
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|c| std::ptr::eq(c.arena, arena))
        .collect()
}

#[test]
fn qcache_hook() {
    // Without a factory: qcache_max is asked for but everything works
    // through the segment path.
    let plain = ArenaBuilder::new("plain")
        .span(0x10000, 0x100000)
        .quantum(16)
        .qcache_max(64)
        .create();
    assert_eq!(plain.qcache_max(), 0);
    let p = plain.alloc(32, Policy::InstantFit).unwrap();
    assert_eq!(plain.stats().alloc, 1);
    plain.free(p, 32).unwrap();

    set_qcache_factory(&FACTORY);

    // qcache_max = 4 quanta: caches of 16, 32, 48, 64 named arena_size.
    let a = ArenaBuilder::new("qa")
        .span(0x1000_0000, 0x100_0000)
        .quantum(16)
        .qcache_max(64)
        .create();
    assert_eq!(a.qcache_max(), 64);
    let cs = caches_of(a);
    assert_eq!(
        cs.iter().map(|c| c.objsize).collect::<Vec<_>>(),
        vec![16, 32, 48, 64]
    );
    assert_eq!(
        cs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec!["qa_16", "qa_32", "qa_48", "qa_64"]
    );
    assert!(std::ptr::addr_eq(
        a.qcache_for(40).unwrap() as *const dyn QCache,
        cs[2] as *const MockCache
    ));
    assert!(a.qcache_for(65).is_none());
    assert!(a.qcache_for(0).is_none());

    // Small sizes go to their cache, whatever the policy; the arena only
    // sees slab allocations (sizes above qcache_max).
    let mut small = Vec::new();
    for (i, size) in [1usize, 16, 17, 32, 40, 64].iter().enumerate() {
        let x = a.alloc(*size, POLICIES[i % 4]).unwrap();
        small.push((x, *size));
    }
    assert_eq!(cs[0].allocs.load(Ordering::Relaxed), 2);
    assert_eq!(cs[1].allocs.load(Ordering::Relaxed), 2);
    assert_eq!(cs[2].allocs.load(Ordering::Relaxed), 1);
    assert_eq!(cs[3].allocs.load(Ordering::Relaxed), 1);
    let st = a.stats();
    assert_eq!(st.alloc, 4, "one slab per cache, nothing else");
    // Larger sizes and xalloc bypass the caches.
    let big = a.alloc(65, Policy::InstantFit).unwrap();
    let x = a.xalloc(&XAllocRequest::new(16).align(256)).unwrap();
    assert_eq!(a.stats().alloc, 6);
    assert_eq!(cs[0].allocs.load(Ordering::Relaxed), 2);
    a.xfree(x, 16).unwrap();
    a.free(big, 65).unwrap();
    for (p, n) in small {
        a.free(p, n).unwrap();
    }
    assert_eq!(
        cs.iter()
            .map(|c| c.frees.load(Ordering::Relaxed))
            .sum::<usize>(),
        6
    );
    a.verify().unwrap();

    // Exhaustion reaps the caches and retries.
    let slabs_inuse = a.stats().mem_inuse;
    assert!(slabs_inuse > 0);
    let rest = a.size(umem_vmem::SegTypes::FREE);
    let r = a.alloc(rest + 16 * 1024, Policy::InstantFit);
    assert_eq!(
        r,
        Err(VmemError::Exhausted {
            size: rest + 16 * 1024
        })
    );
    assert!(cs.iter().all(|c| c.reaps.load(Ordering::Relaxed) >= 1));
    assert_eq!(a.stats().mem_inuse, 0, "reap gave every idle slab back");

    // The cap: at most 16 caches.
    let b = ArenaBuilder::new("qb")
        .span(0x2000_0000, 0x100_0000)
        .quantum(8)
        .qcache_max(1 << 20)
        .create();
    assert_eq!(b.qcache_max(), 16 * 8);
    assert_eq!(caches_of(b).len(), 16);
    // A factory that declines from some size on: qcache_max stops below it.
    FACTORY.limit.store(2 * 8, Ordering::Relaxed);
    let c = ArenaBuilder::new("qc")
        .span(0x3000_0000, 0x100_0000)
        .quantum(8)
        .qcache_max(64)
        .create();
    assert_eq!(c.qcache_max(), 16);
    FACTORY.limit.store(usize::MAX, Ordering::Relaxed);
    // NO_QCACHE.
    let d = ArenaBuilder::new("qd")
        .span(0x4000_0000, 0x100_0000)
        .quantum(8)
        .qcache_max(64)
        .flags(CreateFlags::NO_QCACHE)
        .create();
    assert_eq!(d.qcache_max(), 0);
    assert!(caches_of(d).is_empty());

    // Handle allocations never use the caches, whatever the size.
    let cache_allocs: usize = cs.iter().map(|c| c.allocs.load(Ordering::Relaxed)).sum();
    let before = a.stats().alloc;
    let h = a.alloc_handle(16, Policy::InstantFit).unwrap();
    assert_eq!(a.stats().alloc, before + 1, "a segment allocation");
    assert_eq!(a.stats().handle_segs, 1);
    assert_eq!(
        cs.iter()
            .map(|c| c.allocs.load(Ordering::Relaxed))
            .sum::<usize>(),
        cache_allocs
    );
    a.free_handle(h).unwrap();
    a.verify().unwrap();

    // Destroy destroys the caches, which give their slabs back first.
    let y = a.alloc(16, Policy::InstantFit).unwrap();
    a.free(y, 16).unwrap();
    // SAFETY: no users left.
    unsafe {
        assert_eq!(a.destroy(), 0);
        b.destroy();
        c.destroy();
        d.destroy();
        plain.destroy();
    }
    assert!(cs.iter().all(|c| c.destroyed.load(Ordering::Relaxed) == 1));
    umem_vmem::verify().unwrap();
}
