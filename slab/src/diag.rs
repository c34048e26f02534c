//! Dying with a message: [`fatal`] and [`fatal_error`].
//!
//! An allocator cannot unwind or allocate while reporting a broken heap. The one home of
//! the abort-with-message helper, the allocation-free formatting buffer and the page size
//! is umem-vmem (`umem_vmem::diag`, `umem_vmem::page_size`); this file gives umem-slab's
//! messages their `umem-slab:` prefix.

pub(crate) use umem_vmem::page_size;

use crate::error::SlabError;

/// Write `msg` (the `umem-slab: ...` text, without a trailing newline) to stderr with
/// write(2) and abort (never unwinds, never allocates).
pub(crate) fn fatal(msg: &str) -> ! {
    umem_vmem::diag::fatal(format_args!("{msg}"))
}

/// Abort with `umem-slab: <e>`.
pub(crate) fn fatal_error(e: &SlabError) -> ! {
    umem_vmem::diag::fatal(format_args!("umem-slab: {e}"))
}
