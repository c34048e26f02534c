//! The internal arena tree (heap → vmem_internal → vmem_seg / vmem_hash /
//! vmem_vmem), bootstrap, the arena list, populate, lockup/release, update.

use crate::error::VmemError;
use crate::source::{QCacheFactory, Source};
use crate::Vmem;

/// Build the internal arena tree on `heap_source` (which must hand out
/// readable, writable memory aligned to `page_size`).
///
/// Idempotent: a second call with the same source and page size returns
/// `Ok`; with another, `Err(AlreadyInitialized)`.
pub fn init(heap_source: &'static dyn Source, page_size: usize) -> Result<(), VmemError> {
    let _ = (heap_source, page_size);
    todo!()
}

/// Whether the internal tree is built.
pub fn is_initialized() -> bool {
    todo!()
}

/// The page-quantum `heap` arena other arenas import from.
///
/// With feature `std`, builds the tree on the built-in mmap source if
/// nobody called [`init`]. Without `std`, panics if [`init`] was not called.
pub fn heap() -> &'static Vmem {
    todo!()
}

/// The `heap` arena, or `None` if the tree is not built (never builds it).
pub fn try_heap() -> Option<&'static Vmem> {
    todo!()
}

/// Install the quantum-cache factory used by arenas created afterwards with
/// `qcache_max > 0`. The last call wins.
pub fn set_qcache_factory(factory: &'static dyn QCacheFactory) {
    let _ = factory;
    todo!()
}

/// Take every vmem lock in the fixed order (arena list, populate lock, each
/// arena in creation order, global segment list) — `vmem_lockup`, for the
/// `pthread_atfork` prepare handler.
pub fn lockup() {
    todo!()
}

/// Drop every lock [`lockup`] took (`vmem_release`), in the parent and in the
/// child after fork.
///
/// # Safety
/// Must follow a [`lockup`] by the same thread (or be its forked child).
pub unsafe fn release() {
    todo!()
}

/// Periodic maintenance (`vmem_update`): rescale every arena's hash table.
pub fn update() {
    todo!()
}

/// [`Vmem::verify`] every arena; the first error found.
pub fn verify() -> Result<(), VmemError> {
    todo!()
}

/// Call `f` for every arena, in creation order, holding the arena-list lock
/// (so `f` must not create or destroy arenas).
pub fn for_each_arena(f: &mut dyn FnMut(&'static Vmem)) {
    let _ = f;
    todo!()
}
