//! The periodic update and reap (umem.c's `umem_update` / `umem_reap`): the *update
//! flag* that lets one update run at a time, the interval that paces it, the inline
//! update an alloc slow path runs when one is due (there is no update thread: creating
//! one inside malloc is unsafe), and what an update or a reap does to each cache.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use crate::cache::Cache;
use crate::clock::now_ms;
use crate::magazine_block;
use crate::percpu;
use crate::registry::{for_each_cache, try_for_each_cache};
use crate::slab::HASH_INITIAL;

static UPDATE_INTERVAL_MS: AtomicU64 = AtomicU64::new(10_000);
static NEXT_UPDATE_MS: AtomicU64 = AtomicU64::new(0);
/// The update flag: set while an update runs (and while fork's lockup holds everything).
static UPDATING: AtomicBool = AtomicBool::new(false);

/// Interval of the inline periodic update (`reap_interval`); 0 disables inline updates.
pub(crate) fn set_interval_ms(ms: u64) {
    UPDATE_INTERVAL_MS.store(ms, Ordering::Relaxed);
    NEXT_UPDATE_MS.store(now_ms().saturating_add(step_ms(ms)), Ordering::Relaxed);
}

/// The time between inline updates for an interval of `iv` ms: half of it. A depot
/// magazine goes back at the second update after it was last used (the first ends the
/// working-set period it was used in, the second finds it unused for a whole one), so
/// updates every half interval give memory back within one interval of its free.
fn step_ms(iv: u64) -> u64 {
    (iv / 2).max(1)
}

/// Called on alloc slow paths: run an update inline when it is due and nobody else runs
/// one. A thread with a block reads the clock only on every 64th call.
#[inline]
pub(crate) fn maybe_update() {
    let due = if percpu::enabled() {
        percpu::tick(magazine_block::CLOCK_EVERY)
    } else {
        magazine_block::clock_due()
    };
    if !due {
        return;
    }
    maybe_update_now();
}

/// [`maybe_update`] without the every-64th-call throttle (umem-global's large-block paths,
/// which cost far more than a clock read).
pub(crate) fn maybe_update_now() {
    let iv = UPDATE_INTERVAL_MS.load(Ordering::Relaxed);
    if iv == 0 {
        return;
    }
    let step = step_ms(iv);
    let now = now_ms();
    let next = NEXT_UPDATE_MS.load(Ordering::Relaxed);
    if next == 0 {
        NEXT_UPDATE_MS.store(now + step, Ordering::Relaxed);
        return;
    }
    if now < next {
        return;
    }
    // A thread that is exiting (dead block) or inside a purge holds the block-list lock:
    // don't start an update there.
    if magazine_block::current() == magazine_block::dead_block() {
        return;
    }
    if UPDATING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    NEXT_UPDATE_MS.store(now + step, Ordering::Relaxed);
    // No update ran for two steps or more (no slow path: the process was idle): the
    // update that would have run in between would have found every depot magazine unused,
    // so catch up — start two working-set periods, and this update frees them.
    if now >= next.saturating_add(step) {
        for_each_cache(&mut |c| c.depot_ws_update());
    }
    update_all();
    UPDATING.store(false, Ordering::Release);
}

/// Wait for the update flag and run an update.
pub(crate) fn update() {
    while UPDATING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    update_all();
    UPDATING.store(false, Ordering::Release);
}

fn update_all() {
    for_each_cache(&mut |c| c.update_one());
    umem_vmem::update();
    run_hook(false);
}

/// What runs after every update and reap-all, with the update flag held and no other
/// lock (see [`set_hook`]); null: nothing.
static HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Install `f`, run at the end of every update (`f(false)`) and of every [`try_reap_all`]
/// (`f(true)`), with the update flag held and no other lock: the layer above gives back
/// what it keeps itself (umem-global discards the free memory of its arenas there).
pub(crate) fn set_hook(f: fn(bool)) {
    HOOK.store(f as *mut (), Ordering::Release);
}

fn run_hook(full: bool) {
    let p = HOOK.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: only `set_hook` stores here, always a `fn(bool)`.
        let f: fn(bool) = unsafe { core::mem::transmute::<*mut (), fn(bool)>(p) };
        f(full);
    }
}

/// Reap everything that can be reaped, for an allocation that failed (libumem reaps
/// when its backend fails): the calling thread's magazines and every depot go back to
/// the slab layer, empty slabs to their arenas, then an update gives retained spans back
/// (and runs the hook with `true`). Other threads are asked to flush their magazines on
/// their next slow path.
///
/// Never waits: returns `false` (nothing done) when this thread may not reap here — it is
/// exiting or destroying a cache (its magazines are off and it may hold the block-list
/// lock), or the update flag is taken (an update, a reap-all or a fork's lockup is in
/// progress, possibly in this very thread, from a callback). So a failing allocation made
/// from inside a reap or an update cannot deadlock or recurse.
pub(crate) fn try_reap_all() -> bool {
    if magazine_block::current() == magazine_block::dead_block() {
        return false;
    }
    if UPDATING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    reap();
    for_each_cache(&mut |c| c.update_one());
    umem_vmem::update();
    run_hook(true);
    UPDATING.store(false, Ordering::Release);
    true
}

/// [`try_reap_all`] that waits for the update flag (for `malloc_trim`: never called with
/// umem locks held). `false` when this thread is exiting or destroying a cache, or the
/// flag stays taken for about 100,000 yields (a caller inside an update's callback would
/// otherwise wait for itself).
pub(crate) fn reap_all() -> bool {
    if magazine_block::current() == magazine_block::dead_block() {
        return false;
    }
    for _ in 0..100_000 {
        if try_reap_all() {
            return true;
        }
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
    false
}

/// Take the update flag for fork's lockup (yielding while an update runs), so that a
/// child never inherits an update "in progress" that nobody will finish.
pub(crate) fn lock_flag() {
    while UPDATING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// Drop the update flag taken by [`lock_flag`].
pub(crate) fn unlock_flag() {
    UPDATING.store(false, Ordering::Release);
}

/// [`reap`] under the update flag (waiting for it as [`update`] does), so that it never
/// runs beside an update or a [`try_reap_all`], and a failing allocation inside its
/// reclaim callbacks finds the flag taken instead of reaping again (which would take the
/// cache-list lock this thread holds).
pub(crate) fn reap_flagged() {
    while UPDATING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    reap();
    UPDATING.store(false, Ordering::Release);
}

/// Reap every cache: ask every thread to flush its magazines on its next slow path, then
/// reap each cache.
pub(crate) fn reap() {
    magazine_block::request_flush();
    for_each_cache(&mut |c| c.reap());
}

/// umem-vmem's reap hook (installed by `init`): an arena allocation is about to fail, so
/// reap every cache as [`reap`] does — reclaim callbacks, the calling thread's magazines,
/// every depot — and ask every thread to flush; vmem then retries the allocation once.
///
/// vmem calls it with no vmem lock held, never on its populating thread or under its
/// arena-list lock, and never while another hook runs. Here it must not wait for a lock
/// the allocating thread may hold (slab code never allocates from an arena while holding
/// a depot or slab-layer lock), so it does nothing when:
/// * the thread is exiting or flushing its magazines (its TLS names the dead block): it
///   holds the block-list lock, which a reap can need;
/// * the cache-list lock is held — by an `update()`/`reap()`/`for_each_cache` whose
///   callback (destructor, reclaim) is the allocating code, by fork's lockup, or briefly
///   by a cache being registered. It is tried, not waited for.
pub(crate) fn reap_hook() {
    if magazine_block::current() == magazine_block::dead_block() {
        return;
    }
    magazine_block::request_flush();
    try_for_each_cache(&mut |c| c.reap());
}

impl Cache {
    /// Reclaim what this cache holds: call the reclaim callback, return the calling
    /// thread's magazines to the depot, and free every depot magazine (objects go back
    /// to their slabs; empty slabs go back to the source arena). Magazines loaded in other
    /// threads stay there (they are flushed at those threads' exit). With per-CPU
    /// magazines, every CPU's go back (the calling thread visits each CPU it may run on).
    /// A reap running at the same time in another thread (a global [`reap`](crate::reap),
    /// or vmem's reap hook when an arena is full) may still be returning magazines it took
    /// off this depot when this one returns.
    pub fn reap(&self) {
        if let Some(r) = self.ops.reclaim {
            r(self.ops.private);
        }
        self.reaps.fetch_add(1, Ordering::Relaxed);
        if self.id != 0 {
            let t = magazine_block::current();
            if !t.is_null() && t != magazine_block::dead_block() {
                if self.on_cpu_layer() {
                    // Per CPU: every CPU's magazines, visiting each CPU.
                    percpu::on_each_cpu(&mut || {
                        // SAFETY: our private copy of the CPU's slot.
                        self.with_my_slot(|slot| unsafe { self.flush_slot(slot, false) });
                    });
                } else {
                    // SAFETY: our own slot; counters stay with the slot.
                    self.with_my_slot(|slot| unsafe { self.flush_slot(slot, false) });
                }
            }
        }
        self.depot_purge();
    }

    /// Periodic maintenance (`umem_cache_update` + the update-thread work): rescale the
    /// hash, update the depot working set and free magazines beyond it, grow magazines on
    /// depot contention.
    pub(crate) fn update_one(&self) {
        if self.hashed {
            let need = {
                let g = self.slab.0.lock();
                g.buftotal > 2 * (g.hash_mask + 1)
                    || (g.buftotal < g.hash_mask.div_ceil(2) && g.hash_mask + 1 > HASH_INITIAL)
            };
            if need {
                self.hash_rescale();
            }
        }
        self.depot_ws_update();
        let resize = self.depot.0.lock().contended(self.chunksize);
        if resize && self.id != 0 {
            self.magazine_resize();
        }
        self.depot_ws_reap();
    }
}
