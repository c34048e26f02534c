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
    /// Give back an object earlier returned by `alloc` of this cache,
    /// unchecked (the caller vouches for it).
    fn free(&self, addr: Addr);
    /// Give back `addr` only if it is an object this cache handed out and
    /// that is still allocated, as far as the cache can tell; otherwise
    /// leave everything unchanged and say why. [`Vmem::free`] uses it
    /// with debug assertions on (see there for what it catches).
    ///
    /// The default does no checking: it frees and answers
    /// [`QCacheFree::Freed`].
    ///
    /// [`Vmem::free`]: crate::Vmem::free
    fn free_checked(&self, addr: Addr) -> QCacheFree {
        self.free(addr);
        QCacheFree::Freed
    }
    /// Whether `addr` is an object this cache handed out and that has not
    /// reached its slab layer again (used only to diagnose a refused
    /// checked free; the default, `false`, means "cannot tell").
    fn is_allocated(&self, addr: Addr) -> bool {
        let _ = addr;
        false
    }
    /// Return cached objects to the arena (called when the arena runs short).
    fn reap(&self);
    /// Destroy the cache, returning all its slabs to the arena.
    ///
    /// # Safety
    /// No other thread may use the cache, and no object may still be
    /// allocated from it; the cache is not used again.
    unsafe fn destroy(&self);
}

/// The answer of [`QCache::free_checked`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QCacheFree {
    /// The object was allocated and is now freed.
    Freed,
    /// Not an allocated object of this cache: never handed out, not the
    /// start of an object, or free in the cache's slab layer. Nothing was
    /// changed.
    NotAllocated,
    /// An object of this cache that is already free and cached (in the
    /// calling thread's magazines or the depot): a double free. Nothing
    /// was changed.
    AlreadyFree,
}
