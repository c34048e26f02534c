//! The per-CPU magazine layer's slow paths: how a thread that missed on its CPU's slot
//! (`percpu.rs`) trades magazines with the depot, and the one place ([`Cache::with_my_slot`])
//! where every slow path asks for "my magazines" in either mode.
//!
//! **Take, work, put back.** A CPU's slot may be written only by critical sections on that
//! CPU, and the depot exchange (`magazine_layer.rs`) is far too long for one. So the slow
//! path first *takes* the slot's two magazines, each by an rseq exchange with 0 (now they
//! are the thread's own, in a `ThreadCache` on its stack; other threads on the CPU meanwhile
//! find the slot empty and go to the depot themselves), runs the very code of the
//! per-thread mode on that private thread cache (swap with the previous magazine, the depot
//! exchange, resizes, batch refill), and *puts back* the result, again by two exchanges.
//! Whatever it displaces there (another thread's magazines, installed meanwhile, or the
//! slot of another CPU when the thread migrated in between) is now its own and goes back to
//! the depot as a thread's magazines go at thread exit (`Cache::flush_slot`). A magazine is
//! thus always in exactly one place: a CPU slot, one thread's hands, or the depot.
//!
//! **Reaps** ask every CPU, as every thread in per-thread mode, to flush: the next slow path
//! on a CPU whose reap generation is old takes all of that CPU's slots and flushes them to
//! their depots (under the block-list lock, with the thread's magazines off, as a thread's
//! flush). `Cache::destroy` takes the destroyed cache's slot on every CPU directly: no thread
//! uses that cache then.

use core::sync::atomic::Ordering;

use crate::cache::Cache;
use crate::magazine::{reload, Magazine, ThreadCache};
use crate::magazine_block::{self, SLOTS_PER_CHUNK};
use crate::percpu::{self, LOADED, PREV, SLOT};
use crate::registry;
use crate::rseq;

// A cache's inline index (`id * 64`, `hit.rs`) is also its slot's offset in a CPU page: the
// per-CPU hits (`cpu_hit_alloc`/`cpu_hit_free`) take it as it is.
const _: () =
    assert!(percpu::SLOTS == SLOTS_PER_CHUNK && SLOT == core::mem::size_of::<ThreadCache>());

impl Cache {
    /// Whether this cache's magazines are per CPU.
    #[inline]
    pub(crate) fn on_cpu_layer(&self) -> bool {
        self.id != 0 && self.id < SLOTS_PER_CHUNK && percpu::enabled() && Self::cpu_fit(self.align)
    }

    /// Whether buffers aligned to `align` can be rounds of a CPU magazine, whose fences are
    /// tagged words (bit 0 set; `percpu.rs`): every buffer's bit 0 must be clear. A cache
    /// of odd buffers (a NOTOUCH cache of an integer arena with quantum 1) keeps per-thread
    /// magazines, reached through its slow paths (`registry.rs` gives it fast index 0).
    #[inline]
    pub(crate) fn cpu_fit(align: usize) -> bool {
        align % 2 == 0
    }

    /// Run `f` on the calling thread's magazines for this cache — its slot in its block
    /// (per-thread mode) or the current CPU's magazines taken into a private thread cache
    /// and put back afterwards (per-CPU mode). `None` (nothing run) when the thread has
    /// none: magazines off (exiting, flushing, destroying), no memory for a block, or no
    /// CPU number.
    pub(crate) fn with_my_slot<R>(&self, f: impl FnOnce(*mut ThreadCache) -> R) -> Option<R> {
        if !self.on_cpu_layer() {
            let slot = magazine_block::slot_for(self.id);
            return (!slot.is_null()).then(|| f(slot));
        }
        if magazine_block::current() == magazine_block::dead_block() {
            return None;
        }
        if percpu::flush_due(magazine_block::reap_gen()) {
            flush_this_cpu();
        }
        let mut tc = ThreadCache::EMPTY;
        // A thread with no CPU number yet registers its rseq area (where umem registers
        // them itself) and tries once more.
        let taken = self.cpu_take(&mut tc) || (rseq::register_thread() && self.cpu_take(&mut tc));
        if !taken {
            return None;
        }
        let r = f(&mut tc);
        // Shared counters: an atomic add only when there is something to add (a slow path
        // mostly counts on one side).
        for (n, to) in [
            (&tc.allocs, &self.folded_allocs),
            (&tc.frees, &self.folded_frees),
        ] {
            let n = n.load(Ordering::Relaxed);
            if n != 0 {
                to.fetch_add(n, Ordering::Relaxed);
            }
        }
        self.cpu_put(&mut tc);
        Some(r)
    }

    /// Many hits on this CPU's previous magazine (`hit.rs`): count a depot visit, which
    /// grows the magazines on traffic, and replace this CPU's magazines when they are of an
    /// older size (the depot's `lock_depot_for` does both). Only then do the new sizes reach
    /// a CPU whose loaded and previous magazines between them serve every operation.
    pub(crate) fn prev_traffic(&self) {
        if !self.on_cpu_layer() {
            return;
        }
        self.with_my_slot(|slot| {
            // SAFETY: our private copy of the CPU's magazines.
            drop(unsafe { self.lock_depot_for(slot) });
        });
    }

    /// Take the current CPU's magazines of this cache into `tc` (empty); `false` when the
    /// thread has no CPU number.
    fn cpu_take(&self, tc: &mut ThreadCache) -> bool {
        let off = self.id * SLOT;
        let none = percpu::none();
        // SAFETY: per-CPU mode, an inline id; we take over the magazines we get.
        let Some(l) = (unsafe { percpu::exchange(off, LOADED, none, none) }) else {
            return false;
        };
        // SAFETY: as above.
        let p = unsafe { percpu::exchange(off, PREV, none, none) }.unwrap_or(none);
        // SAFETY: both magazines are ours now.
        let ((lm, lr, lc), (pm, pr, pc)) = unsafe { (percpu::unpack(l), percpu::unpack(p)) };
        tc.magsize = if lm.is_null() { pc } else { lc };
        tc.set_loaded(lm, lr);
        if !pm.is_null() && (lm.is_null() || pc == lc) {
            tc.ploaded = pm;
            tc.prounds = pr;
        } else if !pm.is_null() {
            // Two CPUs' magazines of different sizes (a migration across a resize).
            self.give_back(pm, pr, pc);
        }
        // The per-CPU hits fill and drain the previous magazine too, so it may be partly
        // full; the depot exchange (`mag_free`) sends a previous magazine to the *full*
        // list when the loaded one is full. Keep the partial one loaded: it has room and
        // rounds, so the exchange never sees it as previous.
        if tc.prounds != 0 && tc.prounds < tc.magsize {
            let (m, r) = (tc.ploaded, tc.prounds);
            reload(tc, m, r);
        }
        true
    }

    /// Put `tc`'s magazines into the current CPU's slot; what was there goes back to the
    /// depot (or is destroyed, as at a thread's exit).
    fn cpu_put(&self, tc: &mut ThreadCache) {
        let off = self.id * SLOT;
        let cap = tc.magsize;
        // SAFETY: our magazines (of `cap` rounds, zeroed when made: `mag_free`).
        let (l, p) = unsafe {
            (
                percpu::pack(tc.loaded, tc.rounds(), cap),
                percpu::pack(tc.ploaded, tc.prounds, cap),
            )
        };
        // SAFETY: per-CPU mode, an inline id; we hand over our magazines and take over
        // the ones we displace.
        let Some(old_l) = (unsafe { percpu::exchange(off, LOADED, l, percpu::base_of(tc.loaded)) })
        else {
            // No CPU number any more: back to the depot.
            // SAFETY: `tc` is ours alone.
            unsafe { self.flush_slot(tc, false) };
            return;
        };
        // SAFETY: as above. Not installed: ours still, back to the depot below.
        let old_p =
            unsafe { percpu::exchange(off, PREV, p, percpu::base_of(tc.ploaded)) }.unwrap_or(p);
        // SAFETY: the displaced magazines are ours now.
        unsafe {
            let (m, r, c) = percpu::unpack(old_l);
            self.give_back(m, r, c);
            let (m, r, c) = percpu::unpack(old_p);
            self.give_back(m, r, c);
        }
    }

    /// A magazine the thread took over and cannot keep: to the depot when it is
    /// full or empty and of the current size, else destroyed.
    fn give_back(&self, m: *mut Magazine, r: usize, c: usize) {
        if m.is_null() {
            return;
        }
        let mut tc = ThreadCache::holding(m, r, c);
        // SAFETY: `tc` is ours alone.
        unsafe { self.flush_slot(&mut tc, false) };
    }

    /// `Cache::destroy`: take and drain this cache's magazines on every CPU, and fold
    /// their counts into the cache.
    pub(crate) fn cpu_purge(&self) {
        if !self.on_cpu_layer() {
            return;
        }
        magazine_block::with_block_list_locked(&mut || {
            // SAFETY: destroy contract: no thread uses this cache meanwhile.
            unsafe {
                percpu::take_all(self.id * SLOT, &mut |l, p, pops, pushes| {
                    self.folded_allocs.fetch_add(pops, Ordering::Relaxed);
                    self.folded_frees.fetch_add(pushes, Ordering::Relaxed);
                    for w in [l, p] {
                        let (m, r, c) = percpu::unpack(w);
                        self.drain_slot(&mut ThreadCache::holding(m, r, c));
                    }
                });
            }
        });
    }

    /// Rounds in this cache's CPU magazines (all CPUs) and the hits counted there.
    pub(crate) fn cpu_occupancy(&self) -> (usize, u64, u64) {
        if !self.on_cpu_layer() {
            return (0, 0, 0);
        }
        percpu::occupancy(self.id * SLOT)
    }

    /// Rounds in this cache's magazines on each CPU, into `out`; the number of CPUs (0 in
    /// per-thread mode and for caches with per-thread magazines).
    pub fn cpu_rounds(&self, out: &mut [usize]) -> usize {
        if !self.on_cpu_layer() {
            return 0;
        }
        percpu::occupancy_per_cpu(self.id * SLOT, out)
    }
}

/// A reap asked every CPU to flush: give back all of the current CPU's magazines (each
/// cache's slot, taken by exchanges) to their depots, with this thread's magazines off and
/// under the block-list lock as a thread's flush.
fn flush_this_cpu() {
    magazine_block::with_magazines_off(&mut || {
        magazine_block::with_block_list_locked(&mut || {
            for id in 1..SLOTS_PER_CHUNK {
                let Some(c) = registry::cache_by_id(id) else {
                    continue;
                };
                let mut tc = ThreadCache::EMPTY;
                if c.cpu_take(&mut tc) {
                    // SAFETY: `tc` is ours alone.
                    unsafe { c.flush_slot(&mut tc, false) };
                }
            }
        });
    });
}
