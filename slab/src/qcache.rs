//! Quantum caches for vmem (Bonwick & Adams 2001, section 4.2): an arena created with
//! `qcache_max` serves allocations of 1..=qcache_max/quantum quanta from NOTOUCH object
//! caches whose slabs (next power of two above 3 × qcache_max) come from the arena itself.

use umem_vmem::{Addr, QCache, QCacheFactory, Vmem};

use crate::cache::Cache;

pub(crate) struct Factory;

pub(crate) static FACTORY: Factory = Factory;

impl QCacheFactory for Factory {
    fn create(
        &self,
        arena: &'static Vmem,
        objsize: usize,
        name: &str,
    ) -> Option<&'static dyn QCache> {
        match Cache::create_qcache(name, objsize, arena) {
            Ok(c) => Some(c as &'static dyn QCache),
            Err(_) => None,
        }
    }
}

impl QCache for Cache {
    #[inline]
    fn alloc(&self) -> Option<Addr> {
        self.alloc_addr()
    }

    #[inline]
    fn free(&self, addr: Addr) {
        // SAFETY: vmem only frees through the qcache addresses it allocated from it.
        unsafe { self.free_addr(addr) }
    }

    fn reap(&self) {
        Cache::reap(self)
    }

    unsafe fn destroy(&self) {
        // SAFETY: qcaches live in memory from the umem_cache arena until destroyed; vmem
        // calls this once, when the arena is destroyed and nobody uses it any more.
        let c: &'static Cache = unsafe { &*(self as *const Cache) };
        // SAFETY: by vmem's contract (arena destroy: no concurrent use).
        if unsafe { c.destroy() }.is_err() {
            // Segments still allocated through the qcache: vmem reports leaked bytes for the
            // arena; the cache stays (its slabs are in the arena being torn down).
        }
    }
}
