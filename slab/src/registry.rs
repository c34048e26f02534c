//! Which caches exist: the cache list (under the *cache-list lock*, umem.c's
//! `umem_cache_lock`), the cache ids that name each cache's slot in every thread's
//! magazine block, the internal caches umem-slab itself allocates from, and fork's
//! [`lockup_caches`] / [`release_caches`].

use core::cell::UnsafeCell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::cache::Cache;
use crate::diag::fatal;
use crate::magazine::ThreadCache;
use crate::magazine_block::{self, MAX_IDS};
use umem_vmem::sync::SpinLock;

struct CacheList {
    head: *mut Cache,
    count: usize,
    /// Ids in use (bit `id % 64` of word `id / 64`); id 0 is never given out.
    ids: [u64; MAX_IDS / 64],
}
// SAFETY: pointers followed only under the lock.
unsafe impl Send for CacheList {}

impl CacheList {
    /// Put `cp` at the head of the list.
    ///
    /// # Safety
    /// `cp` is a live cache on no list; the list's lock is held (`&mut self`).
    unsafe fn push_front(&mut self, cp: *mut Cache) {
        // SAFETY: by the caller.
        unsafe {
            let links = &mut *(*cp).links.get();
            links.next = self.head;
            links.prev = null_mut();
            if !self.head.is_null() {
                (*(*self.head).links.get()).prev = cp;
            }
        }
        self.head = cp;
        self.count += 1;
    }
}

static CACHE_LIST: SpinLock<CacheList> = SpinLock::new(CacheList {
    head: null_mut(),
    count: 0,
    ids: [0; MAX_IDS / 64],
});

/// Cache of each id (null when the id is free).
#[allow(clippy::declare_interior_mutable_const)]
const NULL_CACHE: AtomicPtr<Cache> = AtomicPtr::new(null_mut());
static IDS: [AtomicPtr<Cache>; MAX_IDS] = [NULL_CACHE; MAX_IDS];

/// Put the new cache `cp` on the cache list. When `wants_id` (a cache with magazines),
/// give it the lowest free id (0 when all are taken), set its fast index (the id, or 0 for
/// a `debug` cache, which must not hit) and publish it under that id.
///
/// # Safety
/// `cp` is a fully built cache that nobody else can see yet.
pub(crate) unsafe fn register(cp: *mut Cache, wants_id: bool, debug: bool) {
    let mut l = CACHE_LIST.lock();
    if wants_id {
        let mut id = 0;
        for (w, word) in l.ids.iter_mut().enumerate() {
            let free = !*word & if w == 0 { !1u64 } else { !0u64 };
            if free != 0 {
                let b = free.trailing_zeros() as usize;
                *word |= 1 << b;
                id = w * 64 + b;
                break;
            }
        }
        // SAFETY: not yet visible to anyone else.
        unsafe {
            (*cp).id = id;
            // A cache whose buffers may be odd keeps per-thread magazines, reached through
            // its slow paths, where the hits go per CPU (`percpu_layer.rs`).
            let odd = crate::percpu::enabled() && !Cache::cpu_fit((*cp).align);
            (*cp).fast_index = if debug || odd { 0 } else { id };
        }
        if id != 0 {
            IDS[id].store(cp, Ordering::Release);
        }
    }
    // SAFETY: the fresh cache is on no list; CACHE_LIST held.
    unsafe { l.push_front(cp) };
}

/// Take `c` off the cache list (so that update() no longer visits it).
pub(crate) fn unlink(c: &Cache) {
    let mut l = CACHE_LIST.lock();
    // SAFETY: list manipulation under CACHE_LIST.
    unsafe {
        let links = &mut *c.links.get();
        if links.prev.is_null() {
            l.head = links.next;
        } else {
            (*(*links.prev).links.get()).next = links.next;
        }
        if !links.next.is_null() {
            (*(*links.next).links.get()).prev = links.prev;
        }
        links.next = null_mut();
        links.prev = null_mut();
    }
    l.count -= 1;
}

/// Put `c` back on the list after [`unlink`].
pub(crate) fn relink(c: &Cache) {
    let mut l = CACHE_LIST.lock();
    // SAFETY: relink follows unlink (on no list); CACHE_LIST held.
    unsafe { l.push_front(c as *const Cache as *mut Cache) };
}

/// Free id `id` (of a cache being destroyed, already unlinked).
pub(crate) fn release_id(id: usize) {
    if id != 0 {
        IDS[id].store(null_mut(), Ordering::Release);
        let mut l = CACHE_LIST.lock();
        l.ids[id / 64] &= !(1u64 << (id % 64));
    }
}

/// The cache with id `id`.
pub(crate) fn cache_by_id(id: usize) -> Option<&'static Cache> {
    let p = IDS.get(id)?.load(Ordering::Acquire);
    // SAFETY: ids are published after the cache is built and cleared before it is freed.
    unsafe { p.as_ref() }
}

/// The [`FlushFn`](magazine_block::FlushFn) the magazine block calls for each thread
/// cache it flushes: give it back to its cache's depot, counters folded.
///
/// # Safety
/// As `FlushFn`.
pub(crate) unsafe fn flush_thread_cache(id: usize, tc: *mut ThreadCache) {
    if let Some(cp) = cache_by_id(id) {
        // SAFETY: by the caller nobody uses `tc` meanwhile.
        unsafe { cp.flush_slot(tc, true) };
    }
}

/// Call `f` on every cache (cache-list lock held: `f` must not create or destroy caches).
pub fn for_each_cache(f: &mut dyn FnMut(&'static Cache)) {
    let l = CACHE_LIST.lock();
    let mut cp = l.head;
    while !cp.is_null() {
        // SAFETY: live under CACHE_LIST.
        let c = unsafe { &*cp };
        f(c);
        // SAFETY: as above.
        cp = unsafe { (*c.links.get()).next };
    }
}

/// [`for_each_cache`] if the cache-list lock is free now; `false` (nothing called) if
/// anyone holds it — possibly the calling thread (the reap hook, `update.rs`).
pub(crate) fn try_for_each_cache(f: &mut dyn FnMut(&'static Cache)) -> bool {
    let Some(l) = CACHE_LIST.try_lock() else {
        return false;
    };
    let mut cp = l.head;
    while !cp.is_null() {
        // SAFETY: live under CACHE_LIST.
        let c = unsafe { &*cp };
        f(c);
        // SAFETY: as above.
        cp = unsafe { (*c.links.get()).next };
    }
    true
}

/// The first cache for which `pred` holds (cache-list lock held meanwhile).
pub(crate) fn find_cache(pred: &mut dyn FnMut(&Cache) -> bool) -> Option<&'static Cache> {
    let l = CACHE_LIST.lock();
    let mut cp = l.head;
    while !cp.is_null() {
        // SAFETY: caches on the list are live under CACHE_LIST.
        let c = unsafe { &*cp };
        if pred(c) {
            return Some(c);
        }
        // SAFETY: as above.
        cp = unsafe { (*c.links.get()).next };
    }
    None
}

/// Number of caches on the list.
pub(crate) fn cache_count() -> usize {
    CACHE_LIST.lock().count
}

/// Fork: take the cache-list lock, the block-list lock, then each cache's depot and slab
/// locks in list order (the documented lock order).
pub(crate) fn lockup_caches() {
    CACHE_LIST.raw().lock();
    magazine_block::block_list_lock_raw().lock();
    // SAFETY: CACHE_LIST held (raw).
    let mut cp = unsafe { CACHE_LIST.data_unlocked().head };
    while !cp.is_null() {
        // SAFETY: live under CACHE_LIST.
        let c = unsafe { &*cp };
        c.depot.0.raw().lock();
        c.slab.0.raw().lock();
        // SAFETY: as above.
        cp = unsafe { (*c.links.get()).next };
    }
}

/// Drop what [`lockup_caches`] took.
///
/// # Safety
/// After `lockup_caches`, by the same or the forked child thread.
pub(crate) unsafe fn release_caches() {
    // SAFETY: lockup holds CACHE_LIST.
    let mut cp = unsafe { CACHE_LIST.data_unlocked().head };
    while !cp.is_null() {
        // SAFETY: live under CACHE_LIST; locks taken by lockup.
        unsafe {
            let c = &*cp;
            c.slab.0.raw().unlock();
            c.depot.0.raw().unlock();
            cp = (*c.links.get()).next;
        }
    }
    // SAFETY: taken by lockup.
    unsafe {
        magazine_block::block_list_lock_raw().unlock();
        CACHE_LIST.raw().unlock();
    }
}

/// The internal caches (all in-slab, so they never need bufctls themselves).
pub(crate) struct InternalCaches {
    /// `umem_magazine_{1..143}`, one per magazine type.
    pub magazines: [&'static Cache; 9],
    /// `umem_slab_cache`: `Slab` records of hashed caches.
    pub slabs: &'static Cache,
    /// `umem_bufctl_cache`.
    pub bufctls: &'static Cache,
    /// `umem_bufctl_audit_cache`: bufctls of `AUDIT` caches.
    pub audit_bufctls: &'static Cache,
}

struct InternalCell(UnsafeCell<Option<InternalCaches>>);
// SAFETY: written once by the initialising thread before `init` publishes READY
// (Release); read only after a cache exists, so after that write (see `internal_caches`).
unsafe impl Sync for InternalCell {}
static INTERNAL: InternalCell = InternalCell(UnsafeCell::new(None));

/// Record the internal caches.
///
/// # Safety
/// Called once, by the thread running `init`, before READY is published.
pub(crate) unsafe fn set_internal_caches(c: InternalCaches) {
    // SAFETY: by the caller nobody reads the cell yet.
    unsafe { *INTERNAL.0.get() = Some(c) };
}

/// The internal caches (aborts before `init` made them).
#[inline]
pub(crate) fn internal_caches() -> &'static InternalCaches {
    // SAFETY: only called after init completed (every cache exists only after init; the
    // internal caches never need them during init: they are in-slab and have no
    // magazines before READY).
    unsafe {
        match &*INTERNAL.0.get() {
            Some(g) => g,
            None => fatal("umem-slab: used before init"),
        }
    }
}
