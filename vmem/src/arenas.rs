//! Every arena of the process: the arena list (creation order, guarded by
//! the arena-list lock), arena ids, and the process-wide operations that
//! walk it — `lockup`/`release` around fork (`vmem_lockup`,
//! `vmem_release`), `update` (`vmem_update`), `verify`, `for_each_arena`.
//!
//! Arena creation appends here and destruction unlinks
//! (`arena/create.rs`, `arena/lifecycle.rs`); the hash rescale takes the
//! list lock so that rescales never run during `lockup`
//! (`arena/hash.rs`). `lockup` takes every vmem lock, so this file names
//! them all: the populate lock (`arena/populate.rs`), the segment-pool
//! lock (`segpool.rs`) and the quantum-cache factory lock (`qcache.rs`).

use crate::arena::populate::{clear_populating_thread, POPULATE_LOCK};
use crate::arena::Vmem;
use crate::error::VmemError;
use crate::qcache::FACTORY;
use crate::segpool::{trim_free_segs, SEG_POOL};
use crate::sync::SpinLock;
use crate::sys::thread_id;
use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

// -------------------------------------------------------------------------
// The arena list and ids
// -------------------------------------------------------------------------

/// The arena list: its first and last arena (appends are O(1): a process
/// creates an arena per size class and more), linked through `Vmem::next`.
pub(crate) struct ArenaList {
    head: *mut Vmem,
    tail: *mut Vmem,
}

// SAFETY: the pointers name live arenas, which are `Sync`; the list is
// only read or changed with the lock held.
unsafe impl Send for ArenaList {}

/// The arena-list lock and the list (the first lock in vmem's order).
static ARENA_LIST: SpinLock<ArenaList> = SpinLock::new(ArenaList {
    head: ptr::null_mut(),
    tail: ptr::null_mut(),
});

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// The thread holding the arena-list lock where it may allocate or run a
/// caller's code under it (`update`, `verify`, `for_each_arena`, the hash
/// rescale, `lockup`), 0 otherwise: the reap hook
/// (`arena/reaphook.rs`) must not run on that thread.
static LIST_OWNER: AtomicUsize = AtomicUsize::new(0);

/// Marks the calling thread as the list-lock holder until dropped; declare
/// it after the guard so that it is dropped (the mark cleared) first.
struct OwnerMark;

impl OwnerMark {
    fn set() -> OwnerMark {
        LIST_OWNER.store(thread_id(), Ordering::Relaxed);
        OwnerMark
    }
}

impl Drop for OwnerMark {
    fn drop(&mut self) {
        LIST_OWNER.store(0, Ordering::Relaxed);
    }
}

/// Whether the calling thread holds the arena-list lock (as marked above).
pub(crate) fn list_held_here() -> bool {
    LIST_OWNER.load(Ordering::Relaxed) == thread_id()
}

/// A new arena id (creation order, from 1).
pub(crate) fn next_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Put a new arena at the end of the list.
pub(crate) fn list_append(vm: &'static Vmem) {
    let mut l = ARENA_LIST.lock();
    let p = vm as *const Vmem as *mut Vmem;
    if l.tail.is_null() {
        l.head = p;
    } else {
        // SAFETY: the tail is a live listed arena; list lock held.
        unsafe { (*l.tail).next.store(p, Ordering::Relaxed) };
    }
    l.tail = p;
}

/// Take an arena off the list.
pub(crate) fn list_remove(vm: &'static Vmem) {
    let mut l = ARENA_LIST.lock();
    let p = vm as *const Vmem as *mut Vmem;
    let next = vm.next.load(Ordering::Relaxed);
    let mut prev: *mut Vmem = ptr::null_mut();
    let mut cur = l.head;
    // SAFETY: arenas on the list are live; list lock held.
    unsafe {
        while !cur.is_null() && cur != p {
            prev = cur;
            cur = (*cur).next.load(Ordering::Relaxed);
        }
        if cur == p {
            if prev.is_null() {
                l.head = next;
            } else {
                (*prev).next.store(next, Ordering::Relaxed);
            }
            if l.tail == p {
                l.tail = prev;
            }
        }
    }
}

/// Call `f` for every listed arena; `l` is the locked list.
fn each_listed(l: &ArenaList, f: &mut dyn FnMut(&'static Vmem)) {
    let mut cur = l.head;
    while !cur.is_null() {
        // SAFETY: list lock held by the caller; listed arenas are live.
        let vm: &'static Vmem = unsafe { &*cur };
        f(vm);
        cur = vm.next.load(Ordering::Relaxed);
    }
}

/// Run `f` holding the arena-list lock.
pub(crate) fn with_list_lock<R>(f: impl FnOnce() -> R) -> R {
    let _list = ARENA_LIST.lock();
    let _mark = OwnerMark::set();
    f()
}

/// Run `f` holding the arena-list lock if it is free; `None` if not.
pub(crate) fn try_with_list_lock<R>(f: impl FnOnce() -> R) -> Option<R> {
    let _list = ARENA_LIST.try_lock()?;
    let _mark = OwnerMark::set();
    Some(f())
}

// -------------------------------------------------------------------------
// Fork: lockup and release
// -------------------------------------------------------------------------

/// Take every vmem lock in the fixed order (arena list, populate lock, each
/// arena in creation order, segment pool, quantum-cache factory) —
/// `vmem_lockup`, for the `pthread_atfork` prepare handler.
pub fn lockup() {
    ARENA_LIST.raw().lock();
    LIST_OWNER.store(thread_id(), Ordering::Relaxed);
    POPULATE_LOCK.lock();
    // SAFETY: the list lock is held (taken just above, kept until
    // `release`).
    each_listed(unsafe { ARENA_LIST.data_unlocked() }, &mut |vm| vm.lock());
    SEG_POOL.raw().lock();
    FACTORY.raw().lock();
}

/// Drop every lock [`lockup`] took (`vmem_release`), in the parent and in the
/// child after fork.
///
/// # Safety
/// Must follow a [`lockup`] by the same thread (or be its forked child).
pub unsafe fn release() {
    // SAFETY: `lockup` took these locks (the contract), and this thread
    // (or the forked child of it, alone in its process) still holds them.
    unsafe {
        FACTORY.raw().unlock();
        SEG_POOL.raw().unlock();
        each_listed(ARENA_LIST.data_unlocked(), &mut |vm| vm.unlock());
        clear_populating_thread();
        POPULATE_LOCK.unlock();
        LIST_OWNER.store(0, Ordering::Relaxed);
        ARENA_LIST.raw().unlock();
    }
}

// -------------------------------------------------------------------------
// Maintenance over every arena
// -------------------------------------------------------------------------

/// Periodic maintenance (`vmem_update`): rescale every arena's hash table
/// (grow or shrink toward one segment per bucket), give surplus segment
/// structures and wholly free chunks of them back, and give every wholly
/// free imported span an arena retained (see [`Vmem::set_retain`]) back to
/// its source.
pub fn update() {
    let l = ARENA_LIST.lock();
    let _mark = OwnerMark::set();
    each_listed(&l, &mut |vm| {
        vm.rescale_list_held(false);
        vm.trim_reserve();
    });
    trim_free_segs();
    // Freed chunks gave their describing structures to populators.
    each_listed(&l, &mut |vm| {
        if vm.is_populator() {
            vm.trim_reserve();
        }
    });
    // Sources come before their importers on the list, so a span an
    // importer gives back may land in a source trimmed already: repeat
    // until a pass gives nothing back (at most the depth of the tree).
    loop {
        let mut n = 0;
        each_listed(&l, &mut |vm| n += vm.trim_retained(0, None));
        if n == 0 {
            break;
        }
    }
}

/// [`Vmem::verify`] every arena; the first error found.
pub fn verify() -> Result<(), VmemError> {
    let mut r = Ok(());
    let l = ARENA_LIST.lock();
    let _mark = OwnerMark::set();
    each_listed(&l, &mut |vm| {
        if r.is_ok() {
            r = vm.verify();
        }
    });
    r
}

/// Call `f` for every arena, in creation order, holding the arena-list lock
/// (so `f` must not create or destroy arenas).
pub fn for_each_arena(f: &mut dyn FnMut(&'static Vmem)) {
    let l = ARENA_LIST.lock();
    let _mark = OwnerMark::set();
    each_listed(&l, f);
}

/// Testing aid: the number of arenas on the list.
pub fn arena_count() -> usize {
    let mut n = 0;
    for_each_arena(&mut |_| n += 1);
    n
}
