//! The arena: the [`Vmem`] type, the state its lock protects ([`Inner`]),
//! its accessors and kstats, and its [`Source`] face (arenas import from
//! arenas).
//!
//! This file holds the data; the operations on it live in the child files,
//! one concept each, in the order a request meets them:
//!
//! * `arena/segs.rs` — the segment layer's bricks: the arena's reserve of
//!   segment structures, segment and span create/destroy, the freelists
//!   and their bitmap;
//! * `arena/hash.rs` — the allocated-segment hash table and its rescale;
//! * `arena/fit.rs` — allocation: instant, best, first and next fit, and
//!   `xalloc`'s constraints;
//! * `arena/free.rs` — free and `xfree`, coalescing, and the release of
//!   wholly free imported spans;
//! * `arena/import.rs` — spans from outside: import from the source, `add`,
//!   `extend_alloc`, retained spans;
//! * `arena/populate.rs` — refilling the reserve from the segment pool
//!   (`vmem_populate`), and giving surplus back;
//! * `arena/create.rs` and `arena/lifecycle.rs` — building and tearing down
//!   an arena (`vmem_create`, `vmem_destroy`);
//! * `arena/walk.rs` — `walk` and `contains`;
//! * `arena/handle.rs` — handle allocations ([`SegHandle`](crate::SegHandle));
//! * `arena/verify.rs` — the invariant checker behind [`Vmem::verify`].
//!
//! Raw-pointer work on segments happens under the arena lock through
//! `Inner` (see `seg.rs` for the list primitives). A `&mut Inner` is only
//! ever formed while the lock is held and never kept across a point where
//! the lock is dropped (populate, import, release, reentrant walk).
//!
//! This file uses only the layers below the arena (`seg.rs`, `source.rs`,
//! `sync.rs`, `types.rs`, `diag.rs`); the child files use it.

use crate::diag::vmem_fatal;
use crate::error::VmemError;
use crate::seg::Seg;
use crate::source::{QCache, Source};
use crate::sync::RawSpin;
use crate::types::{
    Addr, CreateFlags, SegType, SegTypes, VmemStats, XAllocRequest, NAME_MAX, QCACHE_MAX_CACHES,
};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

pub(crate) mod create;
mod fit;
mod free;
pub(crate) mod handle;
mod hash;
mod import;
mod lifecycle;
pub(crate) mod populate;
pub(crate) mod reaphook;
pub(crate) mod segs;
mod verify;
mod walk;

// -------------------------------------------------------------------------
// The arena structure
// -------------------------------------------------------------------------

/// Number of power-of-two freelists.
const FREELISTS: usize = usize::BITS as usize;

/// Buckets of the hash table embedded in the arena.
pub(crate) const HASH_INITIAL: usize = 16;

const _: () = assert!(HASH_INITIAL.is_power_of_two());

#[derive(Clone, Copy, Default)]
struct Kstat {
    mem_inuse: u64,
    mem_total: u64,
    mem_import: u64,
    alloc: u64,
    free: u64,
    fail: u64,
    import: u64,
    import_fail: u64,
    release: u64,
    search: u64,
    lookup: u64,
    populate: u64,
    populate_fail: u64,
    contains: u64,
    contains_search: u64,
    hash_rescale: u64,
}

/// Everything the arena lock protects.
pub(crate) struct Inner {
    freemap: u64,
    qshift: u32,
    hash_shift: u32,
    hash_table: *mut *mut Seg,
    hash_mask: usize,
    /// Live allocated segments above which the hash asks to grow.
    grow_at: usize,
    segfree: *mut Seg,
    nsegfree: usize,
    /// Structures promised to imports in flight (lock dropped); the reserve
    /// must cover MINFREE beyond them.
    nsegresv: usize,
    /// Allocated segments in the hash (from `alloc`/`xalloc`/`extend_alloc`).
    nalloc: usize,
    /// Allocated segments held by handles (`alloc_handle`; not hashed).
    nhandle: usize,
    nfree: usize,
    nspans: usize,
    /// The arena this is the inside of (owner of its handle segments).
    vm: *const Vmem,
    has_source: bool,
    /// Bytes of wholly free imported spans the arena may keep instead of
    /// releasing them at once (hysteresis; `heap` only by default).
    retain_max: usize,
    quantum: usize,
    ks: Kstat,
    freelist: [*mut Seg; FREELISTS],
    /// Sentinel of the address list and of the span list.
    seg0: Seg,
    rotor: Seg,
    hash0: [*mut Seg; HASH_INITIAL],
}

/// A vmem arena. Always used through a `&'static Vmem` handed out by
/// [`Vmem::create`]; the structure itself lives in memory from the
/// `vmem_vmem` internal arena.
#[repr(C, align(64))]
pub struct Vmem {
    lock: RawSpin,
    qcache_max: AtomicUsize,
    quantum: usize,
    qshift: u32,
    id: u32,
    inner: UnsafeCell<Inner>,
    source: Option<&'static dyn Source>,
    source_quantum: usize,
    import_min: usize,
    cflags: CreateFlags,
    qcache: UnsafeCell<[Option<&'static dyn QCache>; QCACHE_MAX_CACHES]>,
    /// After a rescale found no table: allocations over the grow limit to
    /// let pass before trying again (`arena/hash.rs`; 0 when none failed).
    grow_wait: AtomicUsize,
    /// Next arena on the arena list (protected by the list lock).
    pub(crate) next: AtomicPtr<Vmem>,
    name: [u8; NAME_MAX + 1],
    name_len: u8,
}

// SAFETY: all mutable state is behind the arena lock (`inner`), written
// once before publication (`qcache`, published by the `qcache_max`
// release store), or atomic.
unsafe impl Sync for Vmem {}

// SAFETY: as above; a Vmem is never moved once created.
unsafe impl Send for Vmem {}

// Every operation is atomic with respect to unwinding: nothing panics while
// the arena lock is held (broken invariants abort), so an arena seen across
// a caught panic is consistent.
impl core::panic::RefUnwindSafe for Vmem {}

impl core::panic::UnwindSafe for Vmem {}

// -------------------------------------------------------------------------
// The arena lock and accessors
// -------------------------------------------------------------------------

impl Vmem {
    /// The state the arena lock protects.
    ///
    /// # Safety
    /// The caller holds the arena lock and does not keep the reference past
    /// a point where the lock is dropped (nor form a second one meanwhile).
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn inner(&self) -> &mut Inner {
        // SAFETY: caller holds the arena lock and keeps the borrow short.
        unsafe { &mut *self.inner.get() }
    }

    #[inline(always)]
    pub(crate) fn lock(&self) {
        self.lock.lock();
    }

    /// Drop the arena lock. Every caller in this crate pairs it with its
    /// own `lock()` (or, in `release`, with `lockup`'s), the crate-wide
    /// discipline that `inner()`'s contract relies on.
    #[inline(always)]
    pub(crate) fn unlock(&self) {
        // SAFETY: the caller took the lock (the discipline above), and the
        // arena's state is consistent whenever the lock is dropped.
        unsafe { self.lock.unlock() };
    }

    pub(crate) fn is_populator(&self) -> bool {
        self.cflags.contains(CreateFlags::POPULATOR)
    }

    /// The arena's name.
    pub fn name(&self) -> &str {
        let b = &self.name[..self.name_len as usize];
        core::str::from_utf8(b).unwrap_or("?")
    }

    /// The quantum.
    #[inline]
    pub fn quantum(&self) -> usize {
        self.quantum
    }

    /// The largest size served by quantum caches (0 if none).
    #[inline]
    pub fn qcache_max(&self) -> usize {
        self.qcache_max.load(Ordering::Acquire)
    }

    /// The quantum cache serving `size`, if any.
    pub fn qcache_for(&self, size: usize) -> Option<&'static dyn QCache> {
        if size.wrapping_sub(1) < self.qcache_max() {
            // SAFETY: index below qcache_max: published entry.
            unsafe { (*self.qcache.get())[(size - 1) >> self.qshift] }
        } else {
            None
        }
    }

    /// The arena's id (creation order, from 1).
    #[inline]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The source, if any.
    pub fn source(&self) -> Option<&'static dyn Source> {
        self.source
    }

    /// Return quantum caches' cached objects to the arena.
    pub fn reap(&self) {
        let n = self.qcache_max() >> self.qshift;
        for i in 0..n {
            // SAFETY: published entries.
            if let Some(c) = unsafe { (*self.qcache.get())[i] } {
                c.reap();
            }
        }
    }

    /// Units in segments of the given types (`vmem_size`): `ALLOC` = in use,
    /// `FREE` = available, `ALLOC_FREE` = total; `SPAN` adds the total of
    /// all spans (so `SPAN` alone is the total too).
    pub fn size(&self, types: SegTypes) -> usize {
        self.lock();
        // SAFETY: lock held.
        let ks = unsafe { self.inner().ks };
        self.unlock();
        let mut n = 0u64;
        if types.has(SegType::Alloc) {
            n += ks.mem_inuse;
        }
        if types.has(SegType::Free) {
            n += ks.mem_total - ks.mem_inuse;
        }
        if types.has(SegType::Span) {
            n += ks.mem_total;
        }
        n as usize
    }

    /// A snapshot of the kstats.
    pub fn stats(&self) -> VmemStats {
        self.lock();
        // SAFETY: lock held.
        let inner = unsafe { self.inner() };
        let ks = inner.ks;
        let s = VmemStats {
            mem_inuse: ks.mem_inuse,
            mem_total: ks.mem_total,
            mem_import: ks.mem_import,
            alloc: ks.alloc,
            free: ks.free,
            fail: ks.fail,
            import: ks.import,
            import_fail: ks.import_fail,
            release: ks.release,
            search: ks.search,
            lookup: ks.lookup,
            populate: ks.populate,
            populate_fail: ks.populate_fail,
            contains: ks.contains,
            contains_search: ks.contains_search,
            hash_rescale: ks.hash_rescale,
            hash_size: inner.hash_mask + 1,
            spans: inner.nspans,
            alloc_segs: inner.nalloc + inner.nhandle,
            handle_segs: inner.nhandle,
            free_segs: inner.nfree,
            reserve_segs: inner.nsegfree,
            id: self.id,
            source_id: self.source.map_or(0, |s| s.source_id()),
        };
        self.unlock();
        s
    }

    /// Walk every structure of the arena under its lock and check the
    /// invariants listed in the crate's theory statement. Returns the first
    /// violation as `VmemError::Corrupt`.
    pub fn verify(&self) -> Result<(), VmemError> {
        self.lock();
        // SAFETY: lock held for the whole check.
        let r = unsafe { self.inner().verify() };
        self.unlock();
        r
    }
}

// -------------------------------------------------------------------------
// Arenas import from arenas
// -------------------------------------------------------------------------

impl Source for Vmem {
    /// `xalloc(size, align = max(align, quantum))`.
    fn import(&self, size: usize, align: usize) -> Option<Addr> {
        let align = align.max(self.quantum);
        self.xalloc(&XAllocRequest::new(size).align(align)).ok()
    }

    /// `xfree(addr, size)`; aborts with a message if the range was not
    /// imported whole, as vmem.c panics on a bad free.
    fn release(&self, addr: Addr, size: usize) {
        if let Err(e) = self.xfree(addr, size) {
            vmem_fatal(format_args!("release to arena {}: {}", self.name(), e));
        }
    }

    fn quantum(&self) -> usize {
        self.quantum
    }

    fn source_id(&self) -> u32 {
        self.id
    }
}

impl core::fmt::Debug for Vmem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vmem")
            .field("name", &self.name())
            .field("id", &self.id())
            .finish()
    }
}
