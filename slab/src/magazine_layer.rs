//! The magazine layer's exchanges with the depot (Bonwick & Adams 2001, section 3): a
//! thread cache that finds both its magazines empty (full) trades one with the depot's
//! full (empty) list; magazines are made, destroyed (their rounds destructed and freed to
//! the slab layer), grown on contention or traffic, and freed when they fall out of the
//! working set; a thread's magazines are flushed back to the depot.

use core::ptr::null_mut;
use core::sync::atomic::Ordering;

use crate::cache::Cache;
use crate::depot::{steal_min, Depot};
use crate::magazine::{magtype_index, reload, Magazine, ThreadCache, MAGTYPES};
use crate::magazine_block;
use crate::registry::internal_caches;
use umem_vmem::sync::SpinGuard;

impl Cache {
    /// Take every thread's magazines for this cache and empty the depot.
    pub(crate) fn purge_magazines(&self) {
        if self.id != 0 {
            // Magazines are destroyed under the block-list lock; with magazines off for the
            // calling thread, the frees this does (objects to slabs, magazines to their
            // caches) go straight to slab layers and never need the registry again.
            magazine_block::with_magazines_off(&mut || {
                magazine_block::for_each_slot(self.id, &mut |slot| {
                    // SAFETY: the block-list lock is held and (destroy contract) the owner is
                    // not using this slot.
                    unsafe {
                        self.fold_counters(slot);
                        self.drain_slot(slot);
                        (*slot).magsize = 0;
                    }
                });
            });
            self.cpu_purge();
        }
        self.depot_purge();
    }

    /// Magazine-layer allocation for the calling thread's `slot` (loaded, previous, depot).
    ///
    /// # Safety
    /// `slot` is the calling thread's slot for this cache.
    pub(crate) unsafe fn mag_alloc(&self, slot: *mut ThreadCache) -> Option<usize> {
        // SAFETY: the slot is ours (only we touch its magazine fields); magazines it points
        // to are ours; depot lists are manipulated under the depot lock.
        unsafe {
            loop {
                let s = &mut *slot;
                if s.rounds() > 0 {
                    return Some(s.take());
                }
                if s.prounds > 0 {
                    let (m, r) = (s.ploaded, s.prounds);
                    reload(s, m, r);
                    continue;
                }
                // The CPU's own list of full magazines first (`depot.rs`): asked before
                // the lock is taken, not under it.
                let group = crate::percpu::group_hint();
                let Some((mut d, mt)) = self.lock_depot_for(slot) else {
                    continue;
                };
                let s = &mut *slot;
                let cur = MAGTYPES[mt].rounds;
                let full = d.full.pop(group, steal_min(self.chunksize, self.hashed));
                if full.is_null() {
                    return None;
                }
                if !s.ploaded.is_null() {
                    d.empty.push(s.ploaded);
                    s.ploaded = null_mut();
                }
                drop(d);
                reload(s, full, cur);
            }
        }
    }

    /// Magazine-layer free. Returns false when the buffer must go to the slab layer.
    ///
    /// # Safety
    /// `slot` is the calling thread's slot for this cache.
    pub(crate) unsafe fn mag_free(&self, slot: *mut ThreadCache, addr: usize) -> bool {
        // SAFETY: as in mag_alloc. The slot is re-read through the raw pointer after every
        // call that may re-enter this cache (allocating a magazine from a magazine cache
        // that is this cache).
        unsafe {
            loop {
                let s = &mut *slot;
                if s.top < s.limit {
                    s.put(addr);
                    return true;
                }
                // The previous magazine has room: swap. Per thread it is then empty; per
                // CPU the hits also fill it, so it may be partly full — and only a full one
                // may go to the depot's full list below.
                if !s.ploaded.is_null() && s.prounds < s.magsize {
                    let (m, r) = (s.ploaded, s.prounds);
                    reload(s, m, r);
                    continue;
                }
                let group = crate::percpu::group_hint();
                let Some((mut d, mt)) = self.lock_depot_for(slot) else {
                    continue;
                };
                let s = &mut *slot;
                let empty = d.empty.pop();
                if !empty.is_null() {
                    if !s.ploaded.is_null() {
                        d.full.push(s.ploaded, group);
                        s.ploaded = null_mut();
                    }
                    drop(d);
                    reload(s, empty, 0);
                    continue;
                }
                drop(d);
                // No empty magazine: make one. This may re-enter this very cache when it
                // is the magazine cache of its own size.
                let mc = internal_caches().magazines[mt];
                let m = match mc.alloc_addr() {
                    Some(m) => m as *mut Magazine,
                    None => return false,
                };
                if crate::percpu::enabled() {
                    // A CPU magazine's rounds above its top are never tagged
                    // (`percpu.rs`): clear what the magazine cache's slab layer may
                    // have left in the fresh magazine (its encoded free-list link) —
                    // link word, rounds and the extra word of per-CPU mode (`create.rs`).
                    core::ptr::write_bytes(m as *mut usize, 0, MAGTYPES[mt].rounds + 2);
                }
                let mut d = self.depot.0.lock();
                if d.magtype == mt {
                    d.empty.push(m);
                    drop(d);
                } else {
                    drop(d);
                    mc.free_addr(m as usize);
                }
            }
        }
    }

    /// The depot lock for `slot`'s next exchange with the depot, and the current
    /// magazine type. Counts contention; first resizes the magazines when depot traffic
    /// calls for it, or drains a slot whose magazines have an old size: then `None`
    /// (nothing held), and the caller looks at its slot again.
    ///
    /// # Safety
    /// `slot` is the calling thread's slot for this cache.
    pub(crate) unsafe fn lock_depot_for(
        &self,
        slot: *mut ThreadCache,
    ) -> Option<(SpinGuard<'_, Depot>, usize)> {
        let (mut d, contended) = self.depot.0.lock_contended();
        if contended {
            d.contention += 1;
        }
        if d.note_visit(self.grow_on_traffic) {
            drop(d);
            self.magazine_resize();
            return None;
        }
        let mt = d.magtype;
        let cur = MAGTYPES[mt].rounds;
        // SAFETY: by the caller the slot is ours.
        unsafe {
            if (*slot).magsize != cur {
                drop(d);
                self.drain_slot(slot);
                (*slot).magsize = cur;
                return None;
            }
        }
        Some((d, mt))
    }

    /// Destroy the slot's magazines (their rounds go back to the slab layer).
    ///
    /// # Safety
    /// `slot` is the calling thread's slot for this cache, or one nobody uses.
    pub(crate) unsafe fn drain_slot(&self, slot: *mut ThreadCache) {
        // SAFETY: by the caller.
        unsafe {
            let s = &mut *slot;
            let (l, r, p, pr, ms) = (s.loaded, s.rounds(), s.ploaded, s.prounds, s.magsize);
            s.set_loaded(null_mut(), 0);
            s.ploaded = null_mut();
            s.prounds = 0;
            if ms != 0 {
                let idx = magtype_index(ms);
                if !l.is_null() {
                    self.magazine_destroy(l, r, idx);
                }
                if !p.is_null() {
                    self.magazine_destroy(p, pr, idx);
                }
            }
        }
    }

    /// Return a slot's magazines to the depot (full and empty ones as they are; partly
    /// filled ones are destroyed), fold its counters, and reset it.
    ///
    /// # Safety
    /// `slot` is this cache's slot in a block that no thread is using concurrently for
    /// this cache (the calling thread's own, or a retiring one under the block-list lock).
    pub(crate) unsafe fn flush_slot(&self, slot: *mut ThreadCache, fold: bool) {
        // SAFETY: by the caller.
        unsafe {
            if fold {
                self.fold_counters(slot);
            }
            let s = &mut *slot;
            if s.magsize == 0 {
                return;
            }
            let idx = magtype_index(s.magsize);
            let mut destroy: [(*mut Magazine, usize); 2] = [(null_mut(), 0); 2];
            let group = crate::percpu::group_hint();
            {
                let mut d = self.depot.0.lock();
                let same = d.magtype == idx;
                for (k, (m, r)) in [(s.loaded, s.rounds()), (s.ploaded, s.prounds)]
                    .into_iter()
                    .enumerate()
                {
                    if m.is_null() {
                        continue;
                    }
                    if same && r == s.magsize {
                        d.full.push(m, group);
                    } else if same && r == 0 {
                        d.empty.push(m);
                    } else {
                        destroy[k] = (m, r);
                    }
                }
            }
            s.set_loaded(null_mut(), 0);
            s.ploaded = null_mut();
            s.prounds = 0;
            s.magsize = 0;
            for (m, r) in destroy {
                if !m.is_null() {
                    self.magazine_destroy(m, r, idx);
                }
            }
        }
    }

    /// Free the `rounds` objects of `m` to the slab layer (destructing them) and free the
    /// magazine itself.
    ///
    /// # Safety
    /// `m` is a magazine of type `idx` owned by the caller, with `rounds` valid rounds.
    unsafe fn magazine_destroy(&self, m: *mut Magazine, rounds: usize, idx: usize) {
        if rounds > 0 {
            // SAFETY: by the caller, the rounds are `rounds` consecutive words of `m`.
            let bufs = unsafe { core::slice::from_raw_parts(Magazine::round(m, 0), rounds) };
            if self.buftag_off == 0 {
                for &buf in bufs {
                    self.destruct(buf);
                }
            }
            // One batch: the slab lock is taken once, not once a round.
            self.slab_free_batch_trusted(bufs);
        }
        let mc = internal_caches().magazines[idx];
        if mc.buftag_off == 0 {
            // Straight to the magazine cache's slab layer (counted as a free, as its free
            // slow path counts one), not onto that cache's own magazines: a reap or a
            // working-set update then gives the magazine's memory back in the same step,
            // instead of parking it in the magazine cache's depot for another period.
            mc.slow_frees.fetch_add(1, Ordering::Relaxed);
            mc.slab_free_trusted(m as usize);
        } else {
            // SAFETY: magazines of type idx come from that magazine cache.
            unsafe { mc.free_addr(m as usize) };
        }
    }

    /// Start a new working-set interval (`umem_depot_ws_update`).
    pub(crate) fn depot_ws_update(&self) {
        self.depot.0.lock().ws_update();
    }

    /// Free the magazines that stayed unused for a whole interval.
    pub(crate) fn depot_ws_reap(&self) {
        for full in [true, false] {
            let mut n = {
                let d = self.depot.0.lock();
                if full {
                    d.full.ws.reapable()
                } else {
                    d.empty.ws.reapable()
                }
            };
            while n > 0 {
                n -= 1;
                let (m, idx) = {
                    let mut d = self.depot.0.lock();
                    let idx = d.magtype;
                    let m = if full {
                        d.full.pop(0, 1)
                    } else {
                        d.empty.pop()
                    };
                    (m, idx)
                };
                if m.is_null() {
                    break;
                }
                let r = if full { MAGTYPES[idx].rounds } else { 0 };
                // SAFETY: popped from the depot, now ours.
                unsafe { self.magazine_destroy(m, r, idx) };
            }
        }
    }

    pub(crate) fn depot_purge(&self) {
        self.depot_ws_update();
        self.depot_ws_update();
        self.depot_ws_reap();
    }

    /// Grow the magazine size (on depot contention): switch the depot to the next type and
    /// destroy every magazine of the old type it holds. Threads switch lazily: a slot whose
    /// size differs from the depot's drains its magazines on its next depot visit.
    pub(crate) fn magazine_resize(&self) {
        let Some((mut fulls, mut empties, old)) = self.depot.0.lock().grow(self.chunksize) else {
            return;
        };
        loop {
            let m = fulls.pop(0, 1);
            if m.is_null() {
                break;
            }
            // SAFETY: taken off the depot.
            unsafe { self.magazine_destroy(m, MAGTYPES[old].rounds, old) };
        }
        loop {
            let m = empties.pop();
            if m.is_null() {
                break;
            }
            // SAFETY: taken off the depot.
            unsafe { self.magazine_destroy(m, 0, old) };
        }
    }
}

/// Test hook: run `f` while holding the depot lock of `c` (forces depot contention).
pub(crate) fn with_depot_locked(c: &Cache, f: &mut dyn FnMut(&dyn Fn() -> u32)) {
    let _g = c.depot.0.lock();
    let waiters = || c.depot.0.raw().waiters();
    f(&waiters);
}
