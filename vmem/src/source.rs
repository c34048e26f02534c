//! Where arenas get spans ([`Source`]) and the quantum-cache hook
//! ([`QCache`], [`QCacheFactory`]).

use crate::{Addr, Vmem};

/// A supplier of spans: the `afunc`/`ffunc` pair of `vmem_create`.
///
/// [`Vmem`] implements it (import = constrained allocation with no quantum
/// cache, release = free), so arenas can import from arenas; a page source
/// (mmap) implements it for the root of a tree.
///
/// Implementations must be callable from any thread, must not call back into
/// the importing arena, and must hand out disjoint ranges.
pub trait Source: Sync {
    /// Get `size` units aligned to `align` (a power of two). `size` is a
    /// multiple of [`quantum`](Source::quantum). `None` when exhausted.
    fn import(&self, size: usize, align: usize) -> Option<Addr>;
    /// Take back a range earlier returned by `import`, whole.
    fn release(&self, addr: Addr, size: usize);
    /// The source's unit: importing arenas round their requests up to it
    /// (as vmem.c rounds to `vm_source->vm_quantum`). Default 1.
    fn quantum(&self) -> usize {
        1
    }
    /// The id of the source if it is a [`Vmem`] arena (kstat `source_id`),
    /// else 0.
    fn source_id(&self) -> u32 {
        0
    }
}

/// A quantum cache: an object cache of one size (`k * quantum`) whose slabs
/// come from the arena itself (with sizes above `qcache_max`, so no
/// recursion). It never writes into the objects (arenas may manage plain
/// integers).
pub trait QCache: Sync {
    /// One object of the cache's size, or `None` if the arena is exhausted.
    fn alloc(&self) -> Option<Addr>;
    /// Give back an object earlier returned by `alloc` of this cache.
    /// Misuse detection (bad or double free) is the cache's job.
    fn free(&self, addr: Addr);
    /// Return cached objects to the arena (called when the arena runs short).
    fn reap(&self);
    /// Destroy the cache, returning all its slabs to the arena.
    ///
    /// # Safety
    /// No other thread may use the cache, and no object may still be
    /// allocated from it; the cache is not used again.
    unsafe fn destroy(&self);
}

/// Makes quantum caches for arenas created with `qcache_max > 0`
/// (implemented by umem-slab; installed with
/// [`set_qcache_factory`](crate::set_qcache_factory)).
pub trait QCacheFactory: Sync {
    /// A cache of objects of `objsize` units (aligned to the arena's quantum)
    /// drawing slabs from `arena`, or `None` (then sizes from this one up go
    /// through the arena's segment path). `name` is `"<arena>_<objsize>"`.
    /// Called from `Vmem::create` with no vmem lock held.
    fn create(
        &self,
        arena: &'static Vmem,
        objsize: usize,
        name: &str,
    ) -> Option<&'static dyn QCache>;
}
