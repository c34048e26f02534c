//! The one spin lock of the allocator: [`RawSpin`] (a bare lock) and
//! [`SpinLock<T>`] (a lock that owns the data it protects).
//!
//! An allocator may not use `std::sync::Mutex`: it may allocate, it is not
//! `no_std`, and it cannot be taken and released across the `pthread_atfork`
//! handlers the way `lockup`/`release` need. Every lock of vmem (the arena
//! lock, the arena-list lock, the populate lock, the segment-pool lock, the
//! quantum-cache factory lock) and of the crates above it is one of these: a
//! test-and-test-and-set spin lock that spins briefly with `spin_loop`
//! hints and then gives the CPU away with `sched_yield`, so that a holder
//! preempted on a machine with few cores gets to run. It never allocates.
//!
//! This file depends on nothing else in the crate.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Spins (with `spin_loop` hints) before the waiter starts yielding.
const SPINS_BEFORE_YIELD: u32 = 64;

/// A spin lock with no data. Used where the lock must be held across
/// function calls — the fork `lockup`/`release` protocol, an arena lock
/// dropped and retaken around an import — which a guard cannot express.
pub struct RawSpin {
    locked: AtomicBool,
    /// Threads spinning in the slow path (diagnostics and tests).
    waiters: AtomicU32,
}

impl Default for RawSpin {
    fn default() -> Self {
        Self::new()
    }
}

impl RawSpin {
    /// An unlocked lock.
    pub const fn new() -> Self {
        RawSpin {
            locked: AtomicBool::new(false),
            waiters: AtomicU32::new(0),
        }
    }

    /// Take the lock if it is free; never waits. `false` when it is held
    /// (the "failed trylock" that slab's depot counts as contention).
    #[inline]
    pub fn try_lock(&self) -> bool {
        !self.locked.load(Ordering::Relaxed)
            && self
                .locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Take the lock, spinning and then yielding while another thread
    /// holds it.
    ///
    /// The first attempt is a bare compare-and-swap (no load before it, as
    /// `try_lock` has): the lock is almost always free, and this is on every
    /// arena operation. Waiters spin on loads only (`lock_spin`).
    #[inline]
    pub fn lock(&self) {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
    }

    /// Threads currently waiting in [`lock`](RawSpin::lock)'s slow path.
    pub fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed)
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self) {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        self.lock_spin();
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    fn lock_spin(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                spins += 1;
                if spins < SPINS_BEFORE_YIELD {
                    core::hint::spin_loop();
                } else {
                    // The holder may have been preempted: give the CPU away
                    // instead of burning the rest of our time slice.
                    // SAFETY: sched_yield has no preconditions.
                    unsafe {
                        libc::sched_yield();
                    }
                }
            }
            if self.try_lock() {
                return;
            }
        }
    }

    /// Release the lock.
    ///
    /// # Safety
    /// The lock is held, and the caller is entitled to release it: it took
    /// it with `lock`/`try_lock` (on any thread, as the fork protocol
    /// requires), and whatever the lock protects is consistent.
    #[inline]
    pub unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// A spin lock owning the `T` it protects; [`lock`](SpinLock::lock) returns
/// a guard that derefs to it.
pub struct SpinLock<T> {
    raw: RawSpin,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is serialised by `raw` (through a guard, or by a
// caller of `data_unlocked` who holds `raw`), so sharing the lock shares
// the `T` with one thread at a time: `T: Send` suffices.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the `T`.
unsafe impl<T: Send> Send for SpinLock<T> {}

/// Proof that a [`SpinLock`] is held: derefs to its data, releases the lock
/// when dropped.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> SpinLock<T> {
    /// An unlocked lock holding `v`.
    pub const fn new(v: T) -> Self {
        SpinLock {
            raw: RawSpin::new(),
            data: UnsafeCell::new(v),
        }
    }

    /// Take the lock.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.raw.lock();
        SpinGuard { lock: self }
    }

    /// Take the lock if it is free; never waits.
    #[inline]
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        if self.raw.try_lock() {
            Some(SpinGuard { lock: self })
        } else {
            None
        }
    }

    /// Lock, reporting whether the first attempt failed (the lock was
    /// contended).
    #[inline]
    pub fn lock_contended(&self) -> (SpinGuard<'_, T>, bool) {
        if self.raw.try_lock() {
            (SpinGuard { lock: self }, false)
        } else {
            self.raw.lock_slow();
            (SpinGuard { lock: self }, true)
        }
    }

    /// The lock itself, for holding it across calls (fork `lockup`).
    pub fn raw(&self) -> &RawSpin {
        &self.raw
    }

    /// Access the data without a guard.
    ///
    /// # Safety
    /// The caller holds the lock through [`raw`](SpinLock::raw) (fork
    /// lockup) or otherwise has exclusive access, and does not keep the
    /// reference past that.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn data_unlocked(&self) -> &mut T {
        // SAFETY: exclusive access, by the caller's contract.
        unsafe { &mut *self.data.get() }
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held, and `&mut self` that
        // this is the only reference through it.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard proves the lock is held; it is released once.
        unsafe { self.lock.raw.unlock() }
    }
}

/// Static storage that vmem's bootstrap writes before anything else can see
/// it: the static segment structures, the static arena slots, the source
/// `init` was given. Only the thread that builds the internal arenas (the
/// init state "being built", see `bootstrap.rs`) writes through it; once
/// the tree is published, the contents are either read-only or owned by
/// the arenas and segment lists they were handed to, whose own locks then
/// guard them. Not a lock: each use states why its access is exclusive.
pub(crate) struct BootCell<T>(UnsafeCell<T>);

// SAFETY: writes happen only during bootstrap, by one thread, before the
// contents are published with a release store; later accesses are reads,
// or go through the locks of the structures built in the storage.
unsafe impl<T> Sync for BootCell<T> {}

impl<T> BootCell<T> {
    /// Storage holding `v`.
    pub(crate) const fn new(v: T) -> Self {
        BootCell(UnsafeCell::new(v))
    }

    /// A pointer to the contents (dereferencing it is the caller's
    /// argument to make).
    pub(crate) const fn get(&self) -> *mut T {
        self.0.get()
    }
}
