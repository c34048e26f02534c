//! The metadata arenas — where umem-slab's own structures come from — and the two calls
//! that take and give back arena memory ([`arena_alloc`], [`arena_free`]).
//!
//! `init()` creates them under `umem_vmem::heap()`, before any cache exists:
//! `umem_internal` (page quantum: slabs of the internal caches, magazine blocks and their
//! chunks), `umem_cache` (the `Cache` structs, 64-byte aligned) and `umem_hash` (the
//! allocated-buffer hash tables). Nothing comes from the system allocator.

use core::cell::UnsafeCell;

use umem_vmem::{Addr, Policy, Vmem, XAllocRequest};

use crate::diag::fatal;

/// The three metadata arenas.
pub(crate) struct MetadataArenas {
    /// `umem_internal`: page quantum.
    pub internal: &'static Vmem,
    /// `umem_cache`: the `Cache` structs.
    pub cache_arena: &'static Vmem,
    /// `umem_hash`: hash tables of hashed caches.
    pub hash_arena: &'static Vmem,
}

struct ArenasCell(UnsafeCell<Option<MetadataArenas>>);
// SAFETY: written once by the initialising thread before it creates the first cache (and
// before `init` publishes READY with Release); read only by code that got hold of a cache
// or of READY, so after that write.
unsafe impl Sync for ArenasCell {}
static ARENAS: ArenasCell = ArenasCell(UnsafeCell::new(None));

/// Record the metadata arenas.
///
/// # Safety
/// Called once, by the thread running `init`, before any cache is created.
pub(crate) unsafe fn set_arenas(a: MetadataArenas) {
    // SAFETY: by the caller nobody reads the cell yet.
    unsafe { *ARENAS.0.get() = Some(a) };
}

/// The metadata arenas (aborts if `init` has not made them yet).
#[inline]
pub(crate) fn arenas() -> &'static MetadataArenas {
    // SAFETY: see `ArenasCell`: after the one write, the cell is only read.
    match unsafe { &*ARENAS.0.get() } {
        Some(a) => a,
        None => fatal("umem-slab: used before init"),
    }
}

/// `size` bytes aligned to `align` from `vm` (xalloc when the quantum is not enough).
pub(crate) fn arena_alloc(vm: &Vmem, size: usize, align: usize) -> Option<Addr> {
    if align <= vm.quantum() {
        vm.alloc(size, Policy::InstantFit).ok()
    } else {
        vm.xalloc(&XAllocRequest::new(size).align(align)).ok()
    }
}

/// Give back what [`arena_alloc`] returned for the same `size` and `align`; aborts when
/// the arena refuses (the allocator's own bookkeeping is then broken).
pub(crate) fn arena_free(vm: &Vmem, addr: Addr, size: usize, align: usize) {
    let r = if align <= vm.quantum() {
        vm.free(addr, size)
    } else {
        vm.xfree(addr, size)
    };
    if r.is_err() {
        fatal("umem-slab: source arena refused a slab free");
    }
}
