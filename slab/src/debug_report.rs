//! Reporting what the debug checks find (`debug.rs`, `redzone.rs`): the hook a cache's
//! user installs to print its own report and choose between aborting and carrying on
//! (umem-global's `UMEM_DEBUG=noabort`), and the abort when there is none.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::cache::Cache;
use crate::diag::fatal_error;
use crate::error::SlabError;

/// What umem-slab calls with an error its debug checks found in a buffer of a cache
/// ([`set_debug_report_hook`]); `true` means "carry on" (the user's `noabort`).
pub type DebugReportHook = fn(&Cache, &SlabError) -> bool;

static REPORT_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Installs the reporter of the errors debug caches find (double free, redzone overrun or
/// underrun, modified free buffer, broken buftag): it prints what it wants and returns
/// `true` to carry on, `false` to have umem-slab abort with its one-line message.
/// Carrying on means: a bad free leaves the buffer alone (it is not freed; it leaks), a
/// modified free buffer is refilled and handed out. Without a hook every such error
/// aborts.
pub fn set_debug_report_hook(hook: DebugReportHook) {
    REPORT_HOOK.store(hook as usize, Ordering::Release);
}

/// Reports `e`, found by `cache`'s debug checks: the hook's answer, or abort.
pub(crate) fn debug_report(cache: &Cache, e: &SlabError) -> bool {
    let h = REPORT_HOOK.load(Ordering::Acquire);
    if h != 0 {
        // SAFETY: only `set_debug_report_hook` stores here, and it stores a
        // `DebugReportHook`.
        let f: DebugReportHook = unsafe { core::mem::transmute::<usize, DebugReportHook>(h) };
        if f(cache, e) {
            return true;
        }
    }
    fatal_error(e)
}
