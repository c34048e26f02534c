//! What an arena draws on from outside: where it gets spans ([`Source`])
//! and the object caches in front of it ([`QCache`]). Traits only; the arena
//! (`arena.rs`) holds them, `qcache.rs` makes the caches. Below the arena:
//! depends only on `types.rs`.

use crate::types::Addr;

/// A supplier of spans: the `afunc`/`ffunc` pair of `vmem_create`.
///
/// [`Vmem`](crate::Vmem) implements it (import = constrained allocation with no quantum
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
    /// The id of the source if it is a [`Vmem`](crate::Vmem) arena (kstat `source_id`),
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
