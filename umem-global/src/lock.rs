//! A minimal test-and-test-and-set spin lock (no allocation, no poisoning),
//! for umem-global's own short critical sections.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

pub struct Spin<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through the lock.
unsafe impl<T: Send> Sync for Spin<T> {}

pub struct Guard<'a, T> {
    lock: &'a Spin<T>,
}

impl<T> Spin<T> {
    pub const fn new(v: T) -> Self {
        Spin {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(v),
        }
    }

    pub fn lock(&self) -> Guard<'_, T> {
        self.raw_lock();
        Guard { lock: self }
    }

    /// Takes the lock without a guard (fork prepare handler).
    pub fn raw_lock(&self) {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                spins += 1;
                if spins < 64 {
                    core::hint::spin_loop();
                } else {
                    // SAFETY: sched_yield has no preconditions.
                    unsafe { libc::sched_yield() };
                }
            }
        }
    }

    /// Drops a lock taken by [`raw_lock`](Spin::raw_lock) (or held across
    /// fork by the parent).
    ///
    /// # Safety
    /// The caller must own the lock (or be the child of the fork that
    /// happened while the parent held it).
    pub unsafe fn raw_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

impl<T> core::ops::Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}
