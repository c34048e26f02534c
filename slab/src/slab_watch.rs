//! Slab watching: telling a cache's owner where its slabs live.
//!
//! A slab's memory belongs to its cache only from `slab_create` to `slab_destroy`; before
//! and after, it is free memory of the source arena, which may discard it (its pages then
//! read as zeros) or hand it to another slab. An owner that answers questions about an
//! address without asking the cache — umem-global's `free` takes a block's class from the
//! address and pushes the block onto a magazine with no lookup — needs to know whether a
//! slab lives there: a free into memory where no slab lives is a double free after the
//! slab went back (or a wild free), and must not reach a magazine.
//!
//! So a cache can be *watched*: [`Cache::watch_slabs`] gives it a non-zero cookie, and
//! from then on every slab it makes is announced to the hook ([`set_slab_watch_hook`])
//! as live after its memory is ready and before any of its buffers can be handed out,
//! and every slab it destroys as dead before its memory goes back to the arena (so a
//! slab made on the same memory later is announced live after this slab's death). The
//! hook runs under the cache's slab lock: it must take no lock and allocate nothing.

use crate::cache::Cache;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Told of each slab a watched cache makes (`live`) or destroys (`!live`): the cookie the
/// cache was given, and the slab's memory (`mem`, `len` bytes).
pub type SlabWatchHook = fn(cookie: u32, mem: usize, len: usize, live: bool);

static HOOK: AtomicUsize = AtomicUsize::new(0);

/// Installs the hook that watched caches announce their slabs to.
pub fn set_slab_watch_hook(hook: SlabWatchHook) {
    HOOK.store(hook as usize, Ordering::Release);
}

impl Cache {
    /// Announces this cache's slabs to the slab-watch hook from now on, with `cookie`
    /// (non-zero; 0 stops the announcements). Call it before the cache makes its first
    /// slab, or the slabs made before go unannounced.
    pub fn watch_slabs(&self, cookie: u32) {
        self.watch.store(cookie as usize, Ordering::Release);
    }

    /// Tells the hook that the slab at `mem` (a slab's worth of this cache's bytes) is
    /// live or dead, if this cache is watched.
    #[inline]
    pub(crate) fn announce_slab(&self, mem: usize, live: bool) {
        let cookie = self.watch.load(Ordering::Acquire);
        if cookie == 0 {
            return;
        }
        let w = HOOK.load(Ordering::Acquire);
        if w == 0 {
            return;
        }
        // SAFETY: the only non-zero value stored is a `SlabWatchHook` (set_slab_watch_hook).
        let hook = unsafe { core::mem::transmute::<usize, SlabWatchHook>(w) };
        hook(cookie as u32, mem, self.slabsize(), live);
    }
}
