//! The process-wide reap hook (libumem's `umem_reap` before a failing
//! allocation gives up): an arena allocation that finds no space, after
//! its own quantum caches were reaped, calls the installed hook once — with
//! no vmem lock held — and retries once. umem-slab installs a hook that
//! reaps every object cache (reclaim callbacks, magazines, depots), so
//! memory cached anywhere in the process can satisfy the allocation.
//!
//! **When the hook is skipped** (the allocation then fails as before):
//!
//! * the calling thread is vmem's populating thread (it holds the populate
//!   lock, which a free reached from the hook may need);
//! * the calling thread holds the arena-list lock (`update`, `verify`,
//!   `for_each_arena`, a hash rescale, `lockup`): a hook that creates or
//!   walks arenas would deadlock;
//! * a hook is running anywhere in the process (one at a time; an
//!   allocation made *by* the hook, e.g. in a reclaim callback, must not
//!   start another), or a [`ReapHookOff`] guard is alive anywhere;
//! * someone else reaped since this allocation began: then it only retries.
//!
//! The hook itself must not block on a lock the allocating thread may hold:
//! umem-slab's skips threads that are exiting or flushing (they hold its
//! block-list lock) and uses a try-lock on its cache list (held while an
//! update or reap runs callbacks that may allocate). See umem-slab's
//! `reap_hook`.
//!
//! Below the arena operations: used by `arena/fit.rs`; depends on the
//! arena-list and populate locks' owner marks.

use crate::arena::populate::populating_thread;
use crate::arenas::list_held_here;
use crate::sys::thread_id;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The hook as a `fn()` address; 0 when none is installed.
static HOOK: AtomicUsize = AtomicUsize::new(0);
/// Hooks run so far (an allocation that sees it change needs no reap of
/// its own).
static GEN: AtomicUsize = AtomicUsize::new(0);
/// Set while a hook runs.
static RUNNING: AtomicBool = AtomicBool::new(false);
/// Live [`ReapHookOff`] guards.
static HELD_OFF: AtomicUsize = AtomicUsize::new(0);

/// Install `hook`, called once (with no vmem lock held) when an arena
/// allocation is about to fail; the allocation is then retried once. The
/// last call wins. umem-slab's `init` installs one that reaps every object
/// cache.
///
/// The hook may allocate and free; allocations it makes never call it
/// again. It must not block on locks that an allocating thread may hold
/// (see the crate's lock order): when in doubt, skip.
pub fn set_reap_hook(hook: fn()) {
    HOOK.store(hook as usize, Ordering::Release);
}

/// While alive, failing allocations in the whole process do not call the
/// reap hook (they fail at once). For callers that hold a lock of their own
/// that code reached from the hook (a reclaim callback that allocates) may
/// take, e.g. umem-global while it makes a size class.
#[must_use = "the hook is held off only while the guard lives"]
pub struct ReapHookOff(());

impl ReapHookOff {
    /// Hold the reap hook off until the guard is dropped.
    pub fn new() -> ReapHookOff {
        HELD_OFF.fetch_add(1, Ordering::Acquire);
        ReapHookOff(())
    }
}

impl Default for ReapHookOff {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ReapHookOff {
    fn drop(&mut self) {
        HELD_OFF.fetch_sub(1, Ordering::Release);
    }
}

/// The reap generation, read when an allocation starts its search.
#[inline]
pub(super) fn generation() -> usize {
    GEN.load(Ordering::Acquire)
}

/// An allocation that began at generation `gen` is about to fail: run the
/// hook if allowed. Returns whether retrying may help (the hook ran, or
/// another reap finished since `gen`). Call with no vmem lock held.
#[cold]
#[inline(never)]
pub(super) fn reap_before_failing(gen: usize) -> bool {
    if GEN.load(Ordering::Acquire) != gen {
        return true;
    }
    let hook = HOOK.load(Ordering::Acquire);
    if hook == 0
        || HELD_OFF.load(Ordering::Acquire) != 0
        || populating_thread() == thread_id()
        || list_held_here()
    {
        return false;
    }
    if RUNNING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    // SAFETY: HOOK only ever holds 0 or a `fn()` stored by `set_reap_hook`.
    let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(hook) };
    f();
    GEN.fetch_add(1, Ordering::AcqRel);
    RUNNING.store(false, Ordering::Release);
    true
}
