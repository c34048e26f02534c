//! The size classes' slab caches (libumem's `umem_alloc_<n>` caches): the
//! per-class table of cache pointer and fast index, and the making of a
//! class on its first allocation (its arena, its cache, its hit-table
//! entries), under [`CLASS_LOCK`].
//!
//! Classes are made on first use rather than all 46 at init, which cost
//! about half of the first `malloc` of every process however few sizes it
//! uses (`docs/performance.md`).

use crate::arenas::{self, ARENAS};
use crate::classes;
use crate::hit_tables;
use crate::options;
use crate::pagemap::{self, PageEntry};
use crate::region;
use crate::source::ClassSource;
use crate::sys::PAGE;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use umem_slab::{Cache, CacheFlags, CacheOps, FastIndex, InlineIndex};
use umem_vmem::{CreateFlags, Source, Vmem};

/// A class's cache and its fast index side by side (one cache line holds
/// four classes), so the paths past the magazine hit do not first load the
/// cache to find its index.
#[repr(C, align(16))]
struct ClassSlot {
    cache: AtomicPtr<Cache>,
    /// `cache.fast_index()` as a word, stored before `cache` is published.
    fast: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_CLASS: ClassSlot = ClassSlot {
    cache: AtomicPtr::new(null_mut()),
    fast: AtomicUsize::new(0),
};
static CLASS_CACHES: [ClassSlot; classes::COUNT] = [NO_CLASS; classes::COUNT];

/// A class's cache with its fast index, read together from the table: what
/// the cache's `alloc_with`/`free_with` take.
#[derive(Clone, Copy)]
pub struct ClassCache {
    cache: &'static Cache,
    fast: FastIndex,
}

impl ClassCache {
    /// A buffer from the cache past the magazine hit (`None`: no memory).
    #[inline(always)]
    pub fn alloc(self) -> Option<*mut u8> {
        debug_assert_eq!(self.fast, self.cache.fast_index());
        // SAFETY: `fast` was stored from this cache's fast index
        // (`class_or_create`).
        unsafe { self.cache.alloc_with(self.fast) }.map(NonNull::as_ptr)
    }

    /// The cache's slow check of a block that is being freed and already
    /// holds the free key (`umem_slab::Cache::check_free`).
    #[cold]
    pub fn check_free(self, a: usize) -> Result<(), umem_slab::SlabError> {
        self.cache.check_free(a)
    }

    /// Frees `p` to the cache past the magazine hit.
    ///
    /// # Safety
    /// `p` must be a live buffer of this cache.
    #[inline(always)]
    pub unsafe fn free(self, p: *mut u8) {
        debug_assert_eq!(self.fast, self.cache.fast_index());
        // SAFETY: per the caller, `p` is a live non-null buffer of the
        // cache; `fast` is the cache's fast index.
        unsafe { self.cache.free_with(self.fast, NonNull::new_unchecked(p)) }
    }
}

/// Class `c`'s cache, if it is made.
#[inline]
pub fn cache_of(c: usize) -> Option<&'static Cache> {
    let p = CLASS_CACHES[c].cache.load(Ordering::Acquire);
    // SAFETY: published once from a `&'static Cache` and never destroyed.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Class `c`'s cache with its fast index, if the class is made.
#[inline(always)]
pub fn class_cache(c: usize) -> Option<ClassCache> {
    let e = &CLASS_CACHES[c];
    let p = e.cache.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: published once from a `&'static Cache` (after its fast index,
    // with Release) and never destroyed.
    let cache = unsafe { &*p };
    Some(ClassCache {
        cache,
        fast: FastIndex::from_raw(e.fast.load(Ordering::Relaxed)),
    })
}

static CLASS_SOURCES: [ClassSource; classes::COUNT] = {
    const S: ClassSource = ClassSource { class: 0 };
    let mut t = [S; classes::COUNT];
    let mut c = 0;
    while c < classes::COUNT {
        t[c] = ClassSource { class: c };
        c += 1;
    }
    t
};

/// The class caches' slab watch (umem-slab's `set_slab_watch_hook`; a
/// class cache's cookie is its class and inline index, [`watch_cookie`]):
/// a slab's pages are marked live in the page map (with its class) and in
/// the region's slab map (with its cache's inline index) while it lives,
/// dead before and after (`ClassSource` marks a span dead when the class
/// arena imports it). So every free path knows whether a slab lives where a
/// block is freed: the region hit by the slab map (`region::inline_word`), the
/// page-map hit and the miss by the page map (a dead entry finds a slot on
/// which every hit misses, and the miss aborts: `free_check::dead_free`).
fn slab_watch(cookie: u32, mem: usize, len: usize, live: bool) {
    let (c, ii) = watch_cookie_parts(cookie);
    let e = if live {
        PageEntry::small(c)
    } else {
        PageEntry::dead(c)
    };
    // The class arena's span put leaves under every page of it already.
    pagemap::set_range(mem, len, e);
    region::mark_slab(mem, len, if live { ii } else { 0 });
}

/// A class cache's slab-watch cookie: its class + 1 (never 0) and, above
/// it, its inline index word (what the slab map holds where its slabs
/// live; 0 when its hit is off).
fn watch_cookie(c: usize, ii: InlineIndex) -> u32 {
    const _: () = assert!(umem_slab::INLINE_END << 8 <= 1 << 32);
    ((ii.word() << 8) | (c + 1)) as u32
}

/// The class and the inline index word of a [`watch_cookie`].
fn watch_cookie_parts(cookie: u32) -> (usize, usize) {
    ((cookie & 0xff) as usize - 1, (cookie >> 8) as usize)
}

/// Installs the class caches' slab watch (init, before any class exists).
pub fn init_slab_watch() {
    umem_slab::set_slab_watch_hook(slab_watch);
}

/// Serialises the making of classes ([`class_or_create`]). Lock order:
/// after the large-block cache lock, before every umem-slab and umem-vmem
/// lock (making a class takes those); `prefork` takes it in that place.
pub static CLASS_LOCK: umem_slab::SpinLock<()> = umem_slab::SpinLock::new(());

/// The class cache for `umem_alloc_<n>` (magazines unless `nomagazines`,
/// the debug layout with `UMEM_DEBUG`; always `FREE_KEY`: colour-free
/// slabs, never-allocated chunks marked free, for `free.rs`'s checks).
fn create_cache(c: usize, arena: &'static Vmem) -> Option<&'static Cache> {
    let mut flags = if options::NOMAGAZINES.load(Ordering::Relaxed) {
        CacheFlags::NOMAGAZINE | CacheFlags::FREE_KEY
    } else {
        CacheFlags::FREE_KEY
    };
    if options::DEBUG.load(Ordering::Relaxed) {
        flags = flags | CacheFlags::DEBUG;
    }
    if options::AUDIT.load(Ordering::Relaxed) {
        flags = flags | CacheFlags::AUDIT;
    }
    Cache::create(
        classes::NAMES[c],
        classes::size(c),
        classes::align(c),
        CacheOps::NONE,
        arena,
        flags,
    )
    .ok()
}

/// Class `c`'s cache, made now (arena, cache, hit-table entries) if this is
/// the class's first allocation; `None` if that fails (no memory).
#[cold]
#[inline(never)]
pub fn class_or_create(c: usize) -> Option<ClassCache> {
    if let Some(k) = class_cache(c) {
        return Some(k);
    }
    let _g = CLASS_LOCK.lock();
    // A failing allocation while the class is made must not run the reap hook: a reclaim
    // callback it calls may malloc a class not made yet and wait for CLASS_LOCK (ours).
    let _no_reap = umem_vmem::ReapHookOff::new();
    if let Some(k) = class_cache(c) {
        return Some(k);
    }
    let src: &'static dyn Source = &CLASS_SOURCES[c];
    let arena = Vmem::create(
        classes::NAMES[c],
        None,
        PAGE,
        Some(src),
        0,
        CreateFlags::NO_QCACHE,
    )
    .ok()?;
    if region::base().is_some() {
        // Spans going back to the region are discarded: keep some (the
        // heap's retention does this for spans going to umem_default).
        arena.set_retain(region::CLASS_RETAIN);
    }
    arenas::publish(&ARENAS.class[c], arena);
    let cache = create_cache(c, arena)?;
    // Under UMEM_DEBUG every allocation and free takes the debug path
    // (`debug.rs`): the hit tables get no index.
    let ii = if crate::debug_options::debug_path() {
        InlineIndex::MISS
    } else {
        cache.fast_index().inline()
    };
    // Before the cache is published, so that every slab it makes is told.
    cache.watch_slabs(watch_cookie(c, ii));
    let slot = &CLASS_CACHES[c];
    slot.fast.store(cache.fast_index().raw(), Ordering::Relaxed);
    slot.cache
        .store(cache as *const Cache as *mut Cache, Ordering::Release);
    hit_tables::publish(
        c,
        ii,
        cache.grid(),
        options::DEBUG.load(Ordering::Relaxed),
        crate::debug_options::debug_path(),
    );
    class_cache(c)
}
