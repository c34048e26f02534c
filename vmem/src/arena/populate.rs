//! Populate (`vmem_populate`): keep the arena's reserve of segment
//! structures at `MINFREE` beyond the structures promised to imports in
//! flight, so that no operation ever finds the reserve empty while it holds
//! the arena lock.
//!
//! A short reserve is refilled from the global segment free list
//! (`segpool.rs`); when that is empty too, the one populating thread (the
//! owner of the **populate lock**) allocates a chunk of pages from
//! `vmem_seg` and carves it into structures. That allocation runs through
//! the populator arenas (`heap`, `vmem_internal`, `vmem_seg`), which may
//! then tap their `POPULATE_RESERVE` without populating again; the
//! populating thread restocks them afterwards. So recursion is bounded by
//! the depth of the internal tree. `trim_reserve` is the way back: surplus
//! structures go to the global list (or, for populators, the populator
//! pool) so that `update` can free whole chunks.
//!
//! Lock order: the populate lock is taken with no arena lock held; arena
//! locks and the segment-pool lock are taken under it.

use super::segs::{MINFREE, POPULATE_RESERVE};
use super::Vmem;
use crate::diag::vmem_fatal;
use crate::internal::{heap_arena, seg_arena};
use crate::seg::{Seg, SEG_SIZE};
use crate::segpool::{
    getseg_global, init_seg_chunk, pool_low, putseg_global, putseg_pool, putsegs_global,
};
use crate::sync::RawSpin;
use crate::sys::thread_id;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

// -------------------------------------------------------------------------
// The populate lock and the populator arenas
// -------------------------------------------------------------------------

/// Most populator arenas (heap, vmem_internal, vmem_seg).
pub(super) const MAX_POPULATORS: usize = 4;

/// The populate lock: one thread refills reserves from fresh pages at a
/// time. Held across calls (taken here, dropped at the end of `populate`;
/// `lockup` holds it across fork), so a raw lock.
pub(crate) static POPULATE_LOCK: RawSpin = RawSpin::new();
/// The owner of the populate lock (a thread id, 0 when free).
static POPULATE_OWNER: AtomicUsize = AtomicUsize::new(0);
static POPULATORS: [AtomicPtr<Vmem>; MAX_POPULATORS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_POPULATORS];
static NPOPULATORS: AtomicUsize = AtomicUsize::new(0);

/// The thread that holds the populate lock, 0 if none.
pub(crate) fn populating_thread() -> usize {
    POPULATE_OWNER.load(Ordering::Relaxed)
}

pub(super) fn populate_lock(me: usize) {
    POPULATE_LOCK.lock();
    POPULATE_OWNER.store(me, Ordering::Relaxed);
}

pub(super) fn populate_unlock() {
    POPULATE_OWNER.store(0, Ordering::Relaxed);
    // SAFETY: taken by `populate_lock` on this thread in the same
    // `populate` call.
    unsafe { POPULATE_LOCK.unlock() };
}

/// Forget the owner; `release` (fork) calls it before dropping the lock.
pub(crate) fn clear_populating_thread() {
    POPULATE_OWNER.store(0, Ordering::Relaxed);
}

pub(super) fn npopulators() -> usize {
    NPOPULATORS.load(Ordering::Acquire)
}

pub(super) fn populator(i: usize) -> &'static Vmem {
    // SAFETY: registered populators are live for the life of the process.
    unsafe { &*POPULATORS[i].load(Ordering::Acquire) }
}

/// Record a populator arena (bootstrap, while the tree is built).
pub(crate) fn register_populator(vm: &'static Vmem) {
    let i = NPOPULATORS.load(Ordering::Relaxed);
    if i >= MAX_POPULATORS {
        vmem_fatal(format_args!("too many populator arenas"));
    }
    POPULATORS[i].store(vm as *const Vmem as *mut Vmem, Ordering::Release);
    NPOPULATORS.store(i + 1, Ordering::Release);
}

// -------------------------------------------------------------------------
// Populate and its reverse
// -------------------------------------------------------------------------

impl Vmem {
    /// Move segment structures from the global free list (and, for a
    /// populator arena, the populator pool) into the reserve until it is not
    /// short or they run out; answers whether the reserve is full enough.
    /// Lock held.
    fn refill_from_global(&self, populator: bool) -> bool {
        // SAFETY: the caller holds the arena lock.
        let inner = unsafe { self.inner() };
        while inner.short() {
            match getseg_global(populator) {
                // SAFETY: lock held; a structure from the global list or the
                // pool is unused and nothing else refers to it.
                Some(s) => unsafe { inner.putseg(s) },
                None => break,
            }
        }
        !inner.short()
    }

    /// Refill the reserve of segment structures to MINFREE
    /// (`vmem_populate`). Called and returns with the lock held; may drop it.
    #[cold]
    #[inline(never)]
    pub(crate) fn populate(&self) -> bool {
        let pop = self.is_populator();
        if self.refill_from_global(pop) {
            return true;
        }
        let me = thread_id();
        if populating_thread() == me {
            // We are the populating thread, deep in the tree: tap the
            // reserve. Only populator arenas are entered here; a page
            // source that called back into another arena could exhaust
            // its reserve, which `getseg` reports (fatal) rather than
            // deadlocking on the populate lock we hold.
            return true;
        }
        let Some(seg_arena) = seg_arena() else {
            // SAFETY: lock held.
            unsafe { self.inner().ks.populate_fail += 1 };
            return false;
        };
        self.unlock();
        populate_lock(me);
        self.lock();
        // Another thread may have refilled the global list while we waited.
        if self.refill_from_global(pop) {
            populate_unlock();
            return true;
        }
        self.unlock();
        let npop = npopulators();
        // Big arenas take segments a few pages at a time (the surplus goes
        // to the global list for everybody).
        let scale = {
            self.lock();
            // SAFETY: lock held.
            let n = unsafe { self.inner().nalloc + self.inner().nhandle + self.inner().nfree };
            self.unlock();
            (n / 2048).clamp(1, 16)
        };
        let want = (MINFREE + npop * POPULATE_RESERVE) * scale;
        // Each page of the chunk starts with a chunk header (one structure's
        // room) so that `update` can find the chunk of a free structure and
        // give wholly free chunks back (see `segpool.rs`).
        let page = seg_arena.quantum;
        let per_page = page / SEG_SIZE - 1;
        let size = want.div_ceil(per_page) * page;
        let mut nseg = size / page * per_page;
        // When the populator pool runs low this chunk is pinned (never
        // given back) and its surplus refills the pool.
        // Pinned chunks come straight from `heap` (a span of their own),
        // so they never keep a big `vmem_internal` chunk from going back.
        let pinned = pool_low();
        let from = match heap_arena() {
            Some(h) if pinned => h,
            _ => seg_arena,
        };
        let p = match from.alloc_instant::<false>(size) {
            Ok((p, _)) => p,
            Err(_) => {
                populate_unlock();
                self.lock();
                // SAFETY: lock held.
                unsafe { self.inner().ks.populate_fail += 1 };
                return false;
            }
        };
        // SAFETY: fresh, writable, page-aligned memory from vmem_seg.
        unsafe { init_seg_chunk(p, size, page, pinned) };
        let seg_at =
            |i: usize| (p + (i / per_page) * page + (i % per_page + 1) * SEG_SIZE) as *mut Seg;
        // Restock the populators that may have tapped their reserves.
        for i in 0..npop {
            let pa = populator(i);
            pa.lock();
            // SAFETY: pa's lock held; the structures are fresh memory from
            // vmem_seg, each used once.
            unsafe {
                let pi = pa.inner();
                while pi.nsegfree < POPULATE_RESERVE + pi.nsegresv {
                    // From the pool (pinned chunks) when it has some, so
                    // that ordinary chunks are not pinned by reserves.
                    let s = if pinned { None } else { getseg_global(true) };
                    if let Some(s) = s {
                        pi.putseg(s);
                    } else if nseg > 0 {
                        nseg -= 1;
                        pi.putseg(seg_at(nseg));
                    } else {
                        break;
                    }
                }
            }
            pa.unlock();
        }
        self.lock();
        // SAFETY: lock held; fresh structures.
        unsafe {
            let inner = self.inner();
            while inner.short() {
                let s = if pop && !pinned {
                    getseg_global(true)
                } else {
                    None
                };
                if let Some(s) = s {
                    inner.putseg(s);
                } else if nseg > 0 {
                    nseg -= 1;
                    inner.putseg(seg_at(nseg));
                } else {
                    break;
                }
            }
            inner.ks.populate += 1;
        }
        populate_unlock();
        while nseg > 0 {
            nseg -= 1;
            if pinned {
                putseg_pool(seg_at(nseg));
            } else {
                putseg_global(seg_at(nseg));
            }
        }
        // SAFETY: lock held.
        unsafe { !self.inner().short() }
    }

    /// Move reserve structures beyond twice what an operation may need to
    /// the global list (an arena that shrank keeps every structure its
    /// segments gave back), so `update` can give their pages back; a
    /// populator's go to the populator pool.
    pub(crate) fn trim_reserve(&self) {
        let mut chain: *mut Seg = ptr::null_mut();
        self.lock();
        // SAFETY: lock held; reserve structures are unused.
        unsafe {
            let inner = self.inner();
            while inner.nsegfree > 2 * MINFREE + inner.nsegresv {
                let s = inner.getseg();
                (*s).knext = chain;
                chain = s;
            }
        }
        self.unlock();
        if self.is_populator() {
            // Populators' structures come from (and go back to) the pool.
            while !chain.is_null() {
                // SAFETY: an unused structure of the chain.
                let next = unsafe { (*chain).knext };
                putseg_pool(chain);
                chain = next;
            }
        } else {
            putsegs_global(chain);
        }
    }
}
