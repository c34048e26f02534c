//! Spin locks for the slab allocator.
//!
//! The allocator may not use `std::sync::Mutex` (it can allocate and is not fork-safe to
//! take from an atfork handler in every libc), so every lock here is a test-and-test-and-set
//! spin lock that yields the CPU after a short spin. `try_lock` is what the depot uses to
//! count contention (Bonwick's "failed trylock" signal for magazine resizing).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// A raw spin lock with no data: for the fork `lockup`/`release` protocol the lock has to be
/// held across function calls, which a guard cannot express.
pub struct RawSpin {
    locked: AtomicBool,
    /// Threads spinning in `lock_slow` (diagnostics and tests).
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

    /// Take the lock if it is free; `false` (nothing taken) if it is held.
    #[inline]
    pub fn try_lock(&self) -> bool {
        !self.locked.load(Ordering::Relaxed)
            && self
                .locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Take the lock, spinning (then yielding) while it is held.
    #[inline]
    pub fn lock(&self) {
        if self.try_lock() {
            return;
        }
        self.lock_slow();
    }

    /// Threads currently waiting in `lock` (diagnostics and tests).
    pub fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed)
    }

    #[cold]
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
                if spins < 64 {
                    core::hint::spin_loop();
                } else {
                    // The holder may have been preempted (2 cores, many threads): give the
                    // CPU away instead of burning the rest of our time slice.
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
    /// The caller must hold the lock (taken by `lock`/`try_lock` on any thread, as the fork
    /// protocol requires).
    #[inline]
    pub unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// A spin lock protecting a `T`.
pub struct SpinLock<T> {
    raw: RawSpin,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is serialised by `raw`.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SpinLock<T> {}

/// Proof that a [`SpinLock`] is held; derefs to the data and unlocks when dropped.
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

    /// Lock, reporting whether the first attempt failed (the lock was contended).
    #[inline]
    pub fn lock_contended(&self) -> (SpinGuard<'_, T>, bool) {
        if self.raw.try_lock() {
            (SpinGuard { lock: self }, false)
        } else {
            self.raw.lock_slow();
            (SpinGuard { lock: self }, true)
        }
    }

    /// The underlying raw lock (for fork's lockup, which holds it across calls).
    pub fn raw(&self) -> &RawSpin {
        &self.raw
    }

    /// Access the data without locking.
    ///
    /// # Safety
    /// The caller must hold the lock through `raw()` (fork lockup) or otherwise have
    /// exclusive access.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn data_unlocked(&self) -> &mut T {
        // SAFETY: by the caller.
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
        // SAFETY: the guard proves the lock is held, exclusively.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard proves the lock is held.
        unsafe { self.lock.raw.unlock() }
    }
}
