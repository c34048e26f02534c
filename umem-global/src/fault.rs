//! Fault injection (`UMEM_DEBUG=mtbf=n`): every `n`-th allocation that goes
//! through the debug path fails, so that a program's out-of-memory paths can
//! be tested. Deterministic (a process-wide counter) where illumos draws on
//! the high-resolution clock; its promise — 0 is off, 1 fails everything,
//! larger is rarer — holds. Allocations umem makes for itself while it
//! loads the unwinder or captures a stack (`UMEM_DEBUG=audit`: `dlopen`'s,
//! libgcc's) are never failed: the audit stacks would be lost, not the
//! program's out-of-memory paths tested. They do not count.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::debug_options::MTBF;

static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Allocations failed on purpose so far.
pub static INJECTED: AtomicUsize = AtomicUsize::new(0);

/// Whether this allocation is to fail.
#[inline]
pub fn inject() -> bool {
    let n = MTBF.load(Ordering::Relaxed);
    if n == 0 || crate::stack::capturing() || (COUNT.fetch_add(1, Ordering::Relaxed) + 1) % n != 0 {
        return false;
    }
    INJECTED.fetch_add(1, Ordering::Relaxed);
    true
}
