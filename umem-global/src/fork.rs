//! The `pthread_atfork` handlers (registered by `init.rs` once the tree is
//! built): before a fork, take every allocator lock in the process-wide
//! order, so that no lock is held mid-update by a thread that will not exist
//! in the child; after it, release them in both processes.
//!
//! The order (see the crate's theory statement, section 3): the large-block
//! cache lock, the class-creation lock, umem-slab's locks and then every
//! umem-vmem lock (`umem_slab::lockup` takes those two groups in order), and
//! last the leaf locks (the page map's leaf pool, the region's stripe
//! bitmaps).

use crate::arenas::is_initialized;
use crate::caches::CLASS_LOCK;
use crate::large::BLOCK_CACHE;
use crate::pagemap;
use crate::region;

/// Prepare handler: takes every allocator lock in the process-wide order.
pub fn prefork() {
    if !is_initialized() {
        return;
    }
    BLOCK_CACHE.raw().lock();
    CLASS_LOCK.raw().lock();
    crate::debug_large::TABLE.raw().lock();
    // umem-slab's lockup takes its own locks and then every vmem lock.
    umem_slab::lockup();
    // Leaf locks, last.
    pagemap::POOL.raw().lock();
    region::STRIPES.raw().lock();
}

/// Parent side after fork: drops every lock [`prefork`] took.
///
/// # Safety
/// Must follow [`prefork`] on the same thread.
pub unsafe fn postfork_parent() {
    if !is_initialized() {
        return;
    }
    // SAFETY: prefork took these on this thread (umem_slab::release undoes
    // its lockup).
    unsafe { release_all() }
}

/// Child side after fork: drops every lock [`prefork`] took (the child is
/// single-threaded; other threads' caches are simply lost).
///
/// # Safety
/// Must run in the child of a fork whose prepare handler ran [`prefork`].
pub unsafe fn postfork_child() {
    if !is_initialized() {
        return;
    }
    // SAFETY: the parent's prepare handler took them before fork, on the
    // thread the child continues.
    unsafe { release_all() }
}

/// Releases what [`prefork`] took, in the reverse order.
///
/// # Safety
/// [`prefork`] took every one of them on this thread (or, in the child of a
/// fork, on the forking thread).
unsafe fn release_all() {
    // SAFETY: per the caller.
    unsafe {
        region::STRIPES.raw().unlock();
        pagemap::POOL.raw().unlock();
        umem_slab::release();
        crate::debug_large::TABLE.raw().unlock();
        CLASS_LOCK.raw().unlock();
        BLOCK_CACHE.raw().unlock();
    }
}
