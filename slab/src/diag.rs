//! Dying with a message: [`fatal`] and [`fatal_error`].
//!
//! An allocator cannot unwind or allocate while reporting a broken heap. The one home of
//! the abort-with-message helper, the allocation-free formatting buffer and the page size
//! is umem-vmem (`umem_vmem::diag`, `umem_vmem::page_size`); this file gives umem-slab's
//! messages their `umem-slab:` prefix.

pub(crate) use umem_vmem::page_size;

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::SlabError;

/// Write `msg` (the `umem-slab: ...` text, without a trailing newline) to stderr with
/// write(2) and abort (never unwinds, never allocates).
pub(crate) fn fatal(msg: &str) -> ! {
    umem_vmem::diag::fatal(format_args!("{msg}"))
}

/// Called by umem-slab's fatal errors with the address an error is about, after its
/// message and before the abort (umem-global prints the buffer's audit history there).
pub type ErrorHook = fn(addr: usize);

/// The error hook as a function-pointer word (0: none).
static ERROR_HOOK: AtomicUsize = AtomicUsize::new(0);
/// Set while the hook runs: a fatal error inside it aborts at once.
static IN_HOOK: AtomicBool = AtomicBool::new(false);

/// Installs the hook umem-slab's fatal errors call before aborting (see [`ErrorHook`]). The hook
/// must not allocate from umem and must return.
pub fn set_error_hook(hook: ErrorHook) {
    ERROR_HOOK.store(hook as usize, Ordering::Release);
}

/// The buffer address an error is about, if any.
fn error_addr(e: &SlabError) -> Option<usize> {
    match *e {
        SlabError::NotOwned { addr, .. }
        | SlabError::WrongCache { addr, .. }
        | SlabError::DoubleFree { addr, .. }
        | SlabError::Redzone { addr, .. }
        | SlabError::ModifiedAfterFree { addr, .. } => Some(addr),
        SlabError::BadAddress { buffer, .. } => Some(buffer),
        _ => None,
    }
}

/// Abort with `umem-slab: <e>` (and, with an error hook, what it prints about the buffer).
pub(crate) fn fatal_error(e: &SlabError) -> ! {
    let w = ERROR_HOOK.load(Ordering::Acquire);
    if let (Some(addr), false) = (error_addr(e), w == 0) {
        if !IN_HOOK.swap(true, Ordering::AcqRel) {
            let mut b = umem_vmem::diag::StackStr::<512>::new();
            let _ = writeln!(b, "umem-slab: {e}");
            let m = b.as_str().as_bytes();
            // SAFETY: `m` is an initialised buffer; write(2) only reads it.
            unsafe { libc::write(2, m.as_ptr().cast(), m.len()) };
            // SAFETY: the only non-zero value stored is an `ErrorHook` (set_error_hook).
            let hook = unsafe { core::mem::transmute::<usize, ErrorHook>(w) };
            hook(addr);
            // SAFETY: abort has no preconditions.
            unsafe { libc::abort() };
        }
    }
    umem_vmem::diag::fatal(format_args!("umem-slab: {e}"))
}
