//! Giving memory back (libumem's `umem_reap` and what `malloc_trim` adds):
//! the reap-and-retry of a failed allocation, the full reap of
//! [`crate::reap`] and `malloc_trim`, and the discarding of free memory in
//! umem's own arenas that umem-slab's update runs as its hook.
//!
//! **Where freed memory sits** after a program frees its blocks: in the
//! threads' magazines and the caches' depots (until a reap or the working-set
//! update frees them), in slabs that are partly used, in arenas as free
//! segments of spans that something else still pins (a slab, a magazine, a
//! segment structure), in arenas' retained wholly free spans, and in the
//! large-block cache. A reap empties the magazines and depots; vmem's update
//! gives retained spans back; and [`discard_free`] hands the pages of every
//! free segment of umem's own arenas back to the kernel (`MADV_DONTNEED`),
//! so memory pinned only by address-space fragmentation is not resident.
//!
//! **Which arenas**: those whose free segments are umem's own private
//! anonymous memory — the internal tree (`heap`, vmem's and umem-slab's
//! metadata arenas, `umem_default`: every arena created up to and including
//! `umem_default`, so never an arena a program made through the C API) and
//! the class arenas. The large-block arenas discard every block as it is
//! freed already.

use crate::arenas::{self, ARENAS};
use crate::classes;
use crate::large;
use crate::source::PAGES;
use crate::sys::{self, PAGE};
use core::sync::atomic::{AtomicU64, Ordering};
use umem_vmem::{SegTypes, Vmem, WalkMode};

/// The periodic update discards free segments of at least this many bytes
/// (a reap or `malloc_trim` discards every free page).
pub const PERIODIC_DISCARD_MIN: usize = 64 << 10;

/// Bytes handed to `MADV_DONTNEED` by [`discard_free`] so far.
static DISCARDED: AtomicU64 = AtomicU64::new(0);

/// Whether `vm` is one of the class arenas.
fn is_class_arena(vm: &Vmem) -> bool {
    (0..classes::COUNT).any(|c| ARENAS.class_arena(c).is_some_and(|a| core::ptr::eq(a, vm)))
}

/// Discards the whole pages of every free segment of at least `min` bytes
/// in umem's own arenas (module comment); returns the bytes discarded.
/// Each arena is walked under its lock, so no segment can be allocated
/// while its pages are discarded; nothing but `madvise` runs under it.
pub fn discard_free(min: usize) -> usize {
    let Some(default) = ARENAS.default_arena() else {
        return 0;
    };
    let last_internal = default.id();
    let mut total = 0usize;
    umem_vmem::for_each_arena(&mut |vm| {
        if vm.id() > last_internal && !is_class_arena(vm) {
            return;
        }
        vm.walk(SegTypes::FREE, WalkMode::Locked, &mut |_, a, len| {
            if len < min {
                return;
            }
            let start = (a + PAGE - 1) & !(PAGE - 1);
            let end = (a + len) & !(PAGE - 1);
            if end > start {
                // SAFETY: a free segment of one of umem's own arenas, whose
                // memory is private anonymous memory umem mapped (or the
                // internal tree's static bootstrap memory) and that nobody
                // uses; the arena lock is held, so nobody can allocate it
                // before the call returns. Only whole pages inside it are
                // discarded.
                unsafe { sys::discard(start, end - start) };
                total += end - start;
            }
        });
    });
    DISCARDED.fetch_add(total as u64, Ordering::Relaxed);
    total
}

/// umem-slab's update hook (installed at init): after a periodic update
/// (`full` false) age the large-block cache (`large::age`: blocks unused
/// since the previous update go back) and discard free segments of
/// [`PERIODIC_DISCARD_MIN`] and more; after a reap-all (`full`), every free
/// page.
pub fn after_update(full: bool) {
    let min = if full { PAGE } else { PERIODIC_DISCARD_MIN };
    sys::keep_errno(|| {
        if !full {
            large::age();
        }
        discard_free(min);
    });
}

/// An allocation failed for want of memory: give back what can be given
/// (the large-block cache, then umem-slab's reap-all: the calling thread's
/// magazines, every depot, empty slabs, retained spans, free pages) so that
/// the caller can retry once. Returns `false` when there is nothing to retry
/// (umem is not initialised). Never waits for another reaper, so it cannot
/// deadlock: when a reap or update is in progress (maybe in this thread,
/// from a callback) it does not reap, and the retry sees what the other
/// reap freed. The caller must hold no umem lock. Keeps `errno`.
#[cold]
#[inline(never)]
pub fn reap_for_retry() -> bool {
    if !arenas::is_initialized() {
        return false;
    }
    sys::keep_errno(|| {
        large::drain_cache();
        umem_slab::try_reap_all();
    });
    true
}

/// The full reap of [`crate::reap`] and `malloc_trim`: the large-block
/// cache, every cache's magazines (the caller's; other threads' on their
/// next slow path; exited threads' went to the depots at their exit) and
/// depot, empty slabs, retained spans, and every free page of umem's own
/// arenas. Returns whether memory went back to the system (unmapped or
/// discarded). Waits for a running update.
pub fn trim() -> bool {
    if !arenas::is_initialized() {
        return false;
    }
    sys::keep_errno(|| {
        let mapped = PAGES.mapped.load(Ordering::Relaxed);
        let discarded = DISCARDED.load(Ordering::Relaxed);
        let unmaps = PAGES.unmaps.load(Ordering::Relaxed);
        large::drain_cache();
        if !umem_slab::reap_all() {
            // This thread cannot reap here (exiting, or inside a callback):
            // discard what is free anyway.
            discard_free(PAGE);
        }
        PAGES.mapped.load(Ordering::Relaxed) < mapped
            || PAGES.unmaps.load(Ordering::Relaxed) != unmaps
            || DISCARDED.load(Ordering::Relaxed) != discarded
    })
}
