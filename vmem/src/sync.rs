//! The one spin lock of the allocator: [`RawSpin`] (a bare lock) and
//! [`SpinLock<T>`] (a lock that owns the data it protects).
//!
//! An allocator may not use `std::sync::Mutex`: it may allocate, it is not
//! `no_std`, and it cannot be taken and released across the `pthread_atfork`
//! handlers the way `lockup`/`release` need. Every lock of vmem (the arena
//! lock, the arena-list lock, the populate lock, the segment-pool lock, the
//! quantum-cache factory lock) and of the crates above it is one of these: a
//! test-and-test-and-set lock that spins briefly with `spin_loop` hints and
//! then sleeps on a futex until the holder wakes it (the three-state mutex
//! of Drepper's "Futexes are tricky", as glibc's and parking_lot's locks
//! do). It never allocates, and every step (a compare-and-swap, an
//! exchange, the `futex` system call) is async-signal-safe, so fork
//! handlers take and release these locks as before.
//!
//! **States:** 0 free, 1 held, 2 held and maybe someone sleeps. Taking it
//! uncontended is one compare-and-swap 0 → 1; releasing it is one locked
//! decrement, and only when it was 2 a store of 0 and a `FUTEX_WAKE` of one
//! sleeper. A waiter
//! spins [`SPINS_BEFORE_SLEEP`] times on loads (a holder that runs on the
//! other core is usually out within that), then exchanges in 2 and, while
//! the lock stays taken, sleeps with `FUTEX_WAIT` on the value 2.
//!
//! **Why not spin-then-yield** (what this lock did before): with more
//! threads than cores, `sched_yield` only helps when the holder is runnable
//! on this core, and a waiter that yields keeps being rescheduled to find
//! the lock still held — a reproduction of sh6bench's growth-and-free
//! pattern with 8 threads on 2 cores made 57,000 context switches that way.
//! A sleeping waiter costs nothing until the holder lets go.
//!
//! Outside Linux there is no futex: the sleep phase yields instead.
//!
//! This file depends on nothing else in the crate.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

/// Spins (with `spin_loop` hints) before the waiter goes to sleep.
pub const SPINS_BEFORE_SLEEP: u32 = 100;

/// Lock states (module comment).
const FREE: u32 = 0;
const HELD: u32 = 1;
const SLEEPERS: u32 = 2;

/// Sleeps while `*word == val` (or until woken, or spuriously).
#[cfg(target_os = "linux")]
fn futex_wait(word: &AtomicU32, val: u32) {
    // SAFETY: `word` is a live, aligned u32 for the duration of the call;
    // FUTEX_WAIT only reads it; a null timeout means no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            val,
            core::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes one thread sleeping on `word`.
#[cfg(target_os = "linux")]
fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE does not touch it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn futex_wait(_word: &AtomicU32, _val: u32) {
    // SAFETY: sched_yield has no preconditions.
    unsafe {
        libc::sched_yield();
    }
}

#[cfg(not(target_os = "linux"))]
fn futex_wake(_word: &AtomicU32) {}

/// A spin lock with no data. Used where the lock must be held across
/// function calls — the fork `lockup`/`release` protocol, an arena lock
/// dropped and retaken around an import — which a guard cannot express.
pub struct RawSpin {
    /// [`FREE`], [`HELD`] or [`SLEEPERS`].
    state: AtomicU32,
    /// Threads waiting in the slow path (diagnostics and tests).
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
            state: AtomicU32::new(FREE),
            waiters: AtomicU32::new(0),
        }
    }

    /// Take the lock if it is free; never waits. `false` when it is held
    /// (the "failed trylock" that slab's depot counts as contention).
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.state.load(Ordering::Relaxed) == FREE
            && self
                .state
                .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Take the lock, spinning and then sleeping while another thread
    /// holds it.
    ///
    /// The first attempt is a bare compare-and-swap (no load before it, as
    /// `try_lock` has): the lock is almost always free, and this is on every
    /// arena operation. Waiters spin on loads only (`lock_spin`).
    #[inline]
    pub fn lock(&self) {
        if self
            .state
            .compare_exchange_weak(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
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
        for _ in 0..SPINS_BEFORE_SLEEP {
            if self.try_lock() {
                return;
            }
            core::hint::spin_loop();
        }
        // Sleep phase: announce a sleeper (state 2) and sleep while it is
        // held. Taking it here leaves state 2, so its release wakes one
        // more sleeper than may exist: a spurious wake, never a lost one.
        while self.state.swap(SLEEPERS, Ordering::Acquire) != FREE {
            futex_wait(&self.state, SLEEPERS);
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
        // One locked decrement: 1 -> 0 is the whole uncontended release
        // (Drepper's second mutex); from 2 it leaves 1, still held, and
        // the slow path frees it and wakes a sleeper.
        if self.state.fetch_sub(1, Ordering::Release) != HELD {
            self.unlock_wake();
        }
    }

    /// The release when sleepers may wait: free the lock, wake one.
    #[cold]
    #[inline(never)]
    fn unlock_wake(&self) {
        self.state.store(FREE, Ordering::Release);
        futex_wake(&self.state);
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
