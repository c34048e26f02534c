//! Quantum caches for vmem (Bonwick & Adams 2001, section 4.2): an arena created with
//! `qcache_max` serves allocations of 1..=qcache_max/quantum quanta from NOTOUCH object
//! caches whose slabs (next power of two above 3 × qcache_max) come from the arena itself.

use umem_vmem::{Addr, QCache, QCacheFactory, QCacheFree, Vmem};

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

    fn free_checked(&self, addr: Addr) -> QCacheFree {
        if !self.hash_holds(addr) {
            return QCacheFree::NotAllocated;
        }
        if self.in_magazines(addr) {
            return QCacheFree::AlreadyFree;
        }
        // SAFETY: the slab layer counts `addr` as an allocated buffer of this cache (its
        // bufctl is in the hash) and it is in none of the magazines we can see: it was
        // allocated and not freed since, as far as any thread but another one holding it
        // in its magazines can tell (documented on `Vmem::free`).
        unsafe { self.free_addr(addr) };
        QCacheFree::Freed
    }

    fn is_allocated(&self, addr: Addr) -> bool {
        self.hash_holds(addr) && !self.in_magazines(addr)
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

impl Cache {
    /// Whether the hash of this (hashed) cache holds the bufctl of a buffer starting at
    /// `addr`: the slab layer counts it as allocated (it may be cached in a magazine).
    /// One bucket walk under the slab lock; `false` for caches without a hash.
    fn hash_holds(&self, addr: Addr) -> bool {
        if !self.hashed {
            return false;
        }
        let g = self.slab.0.lock();
        // SAFETY: the slab lock is held; the bucket is inside the table.
        let mut bc = unsafe { *self.hash_bucket(&g, addr) };
        while !bc.is_null() {
            // SAFETY: bufctls in the hash are live while the slab lock is held.
            unsafe {
                if (*bc).addr == addr {
                    return true;
                }
                bc = (*bc).next;
            }
        }
        false
    }
}
