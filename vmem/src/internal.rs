//! vmem's own arenas, once built: `heap` (page quantum, the root) →
//! `vmem_internal` → `vmem_seg` (pages of segment structures), `vmem_hash`
//! (hash tables) and `vmem_vmem` (arena structures), and the metadata
//! allocations the arena code makes from them.
//!
//! `bootstrap.rs` builds the arenas and publishes them here, one by one
//! (populate needs `heap` and `vmem_seg` while the later ones are built);
//! the arena code asks here for a hash table or an arena structure. Above
//! the arena type, below arena creation and the hash rescale.

use crate::arena::Vmem;
use crate::diag::vmem_fatal;
use crate::error::VmemError;
use crate::seg::Seg;
use crate::types::{Addr, XAllocRequest};
use core::mem::size_of;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// `heap`: page quantum, imports from the page source given to `init`.
pub(crate) static HEAP: AtomicPtr<Vmem> = AtomicPtr::new(ptr::null_mut());
/// `vmem_seg`: the pages populate carves into segment structures.
pub(crate) static SEG_ARENA: AtomicPtr<Vmem> = AtomicPtr::new(ptr::null_mut());
/// `vmem_hash`: hash tables beyond the embedded one.
pub(crate) static HASH_ARENA: AtomicPtr<Vmem> = AtomicPtr::new(ptr::null_mut());
/// `vmem_vmem`: `Vmem` structures.
pub(crate) static VMEM_ARENA: AtomicPtr<Vmem> = AtomicPtr::new(ptr::null_mut());

/// Publish an internal arena in `slot` (bootstrap).
pub(crate) fn publish(slot: &AtomicPtr<Vmem>, vm: &'static Vmem) {
    slot.store(vm as *const Vmem as *mut Vmem, Ordering::Release);
}

fn arena(p: &AtomicPtr<Vmem>) -> Option<&'static Vmem> {
    let p = p.load(Ordering::Acquire);
    if p.is_null() {
        None
    } else {
        // SAFETY: internal arenas live forever once published.
        Some(unsafe { &*p })
    }
}

/// `heap`, once published.
pub(crate) fn heap_arena() -> Option<&'static Vmem> {
    arena(&HEAP)
}

/// `vmem_seg`, once published.
pub(crate) fn seg_arena() -> Option<&'static Vmem> {
    arena(&SEG_ARENA)
}

/// Memory for a new `Vmem` from vmem_vmem.
pub(crate) fn alloc_vmem_struct() -> Result<*mut Vmem, VmemError> {
    let va = arena(&VMEM_ARENA).ok_or(VmemError::NotInitialized)?;
    va.xalloc(&XAllocRequest::new(size_of::<Vmem>()).align(64))
        .map(|a| a as *mut Vmem)
        .map_err(|_| VmemError::NoMetadata)
}

/// Give a `Vmem`'s memory back to vmem_vmem.
pub(crate) fn free_vmem_struct(p: *mut Vmem) {
    if let Some(va) = arena(&VMEM_ARENA) {
        if let Err(e) = va.xfree(p as Addr, size_of::<Vmem>()) {
            vmem_fatal(format_args!("freeing an arena structure: {e}"));
        }
    }
}

/// A zeroed hash table of `n` buckets from vmem_hash.
pub(crate) fn alloc_hash_table(n: usize) -> Option<*mut *mut Seg> {
    let ha = arena(&HASH_ARENA)?;
    let bytes = n.checked_mul(size_of::<*mut Seg>())?;
    let a = ha.xalloc(&XAllocRequest::new(bytes)).ok()?;
    let t = a as *mut *mut Seg;
    // SAFETY: vmem_hash hands out `bytes` of writable memory (the tree's
    // page source contract).
    unsafe { ptr::write_bytes(t, 0, n) };
    Some(t)
}

/// Give a table of `n` buckets back to vmem_hash.
pub(crate) fn free_hash_table(t: *mut *mut Seg, n: usize) {
    if let Some(ha) = arena(&HASH_ARENA) {
        if let Err(e) = ha.xfree(t as Addr, n * size_of::<*mut Seg>()) {
            vmem_fatal(format_args!("freeing a hash table: {e}"));
        }
    }
}
