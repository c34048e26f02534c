//! The object cache type ([`Cache`], libumem's `umem_cache_t`): its fields, what each is
//! for, and its simple accessors. Its behaviour is spread over the files named after each
//! concept, each adding an `impl Cache` block: `hit.rs` (the hit paths), `miss.rs` (the
//! slow paths), `magazine_layer.rs` (exchanges with the depot), `slab_layer.rs`,
//! `debug.rs`, `create.rs` (creation and destruction), `update.rs` (update and reap),
//! `verify.rs` (checked free and `verify`) and `stats.rs`.

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use umem_vmem::Vmem;

use crate::depot::Depot;
use crate::error::CacheName;
use crate::flags::CacheFlags;
use crate::magazine::ThreadCache;
use crate::ops::CacheOps;
use crate::slab::{ChunkDivisor, Slab, SlabLayer};
use umem_vmem::sync::SpinLock;

/// A value alone on its cache line(s), so that two locks never share a line.
#[repr(C, align(64))]
pub(crate) struct Padded<T>(pub T);

/// A cache's links on the cache list (under the cache-list lock).
pub(crate) struct Links {
    pub next: *mut Cache,
    pub prev: *mut Cache,
}

/// An object cache (`umem_cache_t`). Lives in memory from the `umem_cache` arena; handed
/// out as `&'static Cache` until [`Cache::destroy`].
#[repr(C, align(64))]
pub struct Cache {
    // Read by the hit path.
    pub(crate) fast_index: usize,
    pub(crate) id: usize,
    pub(crate) flags: u32,
    pub(crate) chunksize: usize,
    pub(crate) bufsize: usize,
    pub(crate) align: usize,
    /// Slab size; for a quantum cache set at its first slab (the arena publishes
    /// `qcache_max` only after its qcaches are made).
    pub(crate) slabsize_: AtomicUsize,
    /// Offset of the free-list link inside a free buffer (small caches).
    pub(crate) link_off: usize,
    /// Offset of the debug buftag (0 when none).
    pub(crate) buftag_off: usize,
    /// "Is this offset a multiple of `chunksize`" without a division (free-list checks).
    pub(crate) chunk_div: ChunkDivisor,
    pub(crate) maxcolor_: AtomicUsize,
    pub(crate) hash_shift: u32,
    pub(crate) hashed: bool,
    /// An in-slab cache whose slabs keep a free map, not a linked free list (`slab.rs`).
    pub(crate) free_map: bool,
    /// Bytes an in-slab slab keeps at its end: the `Slab` record (`SLAB_HDR`), and the
    /// free map after it (`MAP_HDR`).
    pub(crate) slab_hdr: usize,
    pub(crate) audit: bool,
    /// `CacheFlags::FREE_KEY`: new in-slab chunks start marked with the free key.
    pub(crate) free_key: bool,
    /// The slab-watch cookie (`slab_watch.rs`; 0: not watched).
    pub(crate) watch: AtomicUsize,
    pub(crate) slab_xalloc: bool,
    pub(crate) qcache: bool,
    /// Caches created after `init` (not the internal ones, not quantum caches) without
    /// constructor or destructor grow their magazines on depot traffic as well as on
    /// contention (a resize destroys cached objects, which costs a constructed cache more).
    pub(crate) grow_on_traffic: bool,
    pub(crate) ops: CacheOps,
    pub(crate) source: &'static Vmem,
    pub(crate) name: CacheName,
    pub(crate) slow_allocs: AtomicU64,
    pub(crate) slow_frees: AtomicU64,
    pub(crate) folded_allocs: AtomicU64,
    pub(crate) folded_frees: AtomicU64,
    pub(crate) alloc_fail: AtomicU64,
    pub(crate) reaps: AtomicU64,
    pub(crate) links: UnsafeCell<Links>,
    pub(crate) depot: Padded<SpinLock<Depot>>,
    pub(crate) slab: Padded<SpinLock<SlabLayer>>,
}

// SAFETY: all mutable state is behind the depot/slab spin locks, atomics, or the cache-list
// lock (`links`).
unsafe impl Sync for Cache {}
// SAFETY: as above.
unsafe impl Send for Cache {}

impl Cache {
    /// Slab size (bytes of source memory per slab; 0 for a quantum cache before its first
    /// slab).
    #[inline(always)]
    pub(crate) fn slabsize(&self) -> usize {
        self.slabsize_.load(Ordering::Relaxed)
    }

    /// The largest colour (offset of a slab's first buffer) this cache uses.
    #[inline(always)]
    pub(crate) fn maxcolor(&self) -> usize {
        self.maxcolor_.load(Ordering::Relaxed)
    }

    /// The record of the in-slab slab holding address `a` (in-slab slabs are aligned to
    /// their size; the record is `slab_hdr` bytes before the slab's end). Only an address:
    /// trusted once its owner tag says so ([`Slab::owned_by`]).
    #[inline(always)]
    pub(crate) fn record_of(&self, a: usize) -> *mut Slab {
        let size = self.slabsize();
        ((a & !(size - 1)) + size - self.slab_hdr) as *mut Slab
    }

    /// This cache's identity as stored in its slabs and audit bufctls.
    #[inline(always)]
    pub(crate) fn owner(&self) -> *const () {
        self as *const Cache as *const ()
    }

    /// Run the constructor on `buf`; `false` when it failed.
    #[inline]
    pub(crate) fn construct(&self, buf: usize) -> bool {
        match self.ops.ctor {
            // SAFETY: buffers of caches with callbacks are real memory (never address 0).
            Some(c) => c(
                unsafe { NonNull::new_unchecked(buf as *mut u8) },
                self.ops.private,
            ),
            None => true,
        }
    }

    /// Run the destructor on `buf`.
    #[inline]
    pub(crate) fn destruct(&self, buf: usize) {
        if let Some(d) = self.ops.dtor {
            // SAFETY: as in construct.
            d(
                unsafe { NonNull::new_unchecked(buf as *mut u8) },
                self.ops.private,
            )
        }
    }

    /// Fold a thread cache's counters into the cache and zero them.
    ///
    /// # Safety
    /// `tc` is a live thread cache of this cache, not concurrently used by its owner.
    pub(crate) unsafe fn fold_counters(&self, tc: *mut ThreadCache) {
        // SAFETY: by the caller.
        let s = unsafe { &*tc };
        let a = s.allocs.swap(0, Ordering::Relaxed);
        let f = s.frees.swap(0, Ordering::Relaxed);
        self.folded_allocs.fetch_add(a, Ordering::Relaxed);
        self.folded_frees.fetch_add(f, Ordering::Relaxed);
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }
    /// The buffer size asked for at creation.
    pub fn buf_size(&self) -> usize {
        self.bufsize
    }
    /// The buffers' alignment.
    pub fn align(&self) -> usize {
        self.align
    }
    /// Bytes from one buffer to the next in a slab (buffer, buftag, padding).
    pub fn chunk_size(&self) -> usize {
        self.chunksize
    }
    /// Bytes of source memory per slab.
    pub fn slab_size(&self) -> usize {
        self.slabsize()
    }
    /// The creation flags (after the adjustments creation makes).
    pub fn flags(&self) -> CacheFlags {
        CacheFlags(self.flags & 0xffff)
    }
    /// The arena slabs come from.
    pub fn source(&self) -> &'static Vmem {
        self.source
    }
    /// Buffers in a slab of minimum colour.
    pub fn buffers_per_slab(&self) -> usize {
        if self.hashed {
            self.slabsize() / self.chunksize
        } else {
            (self.slabsize() - self.slab_hdr) / self.chunksize
        }
    }
    /// Whether slabs use external bufctls and the hash (vs. in-slab header and free list).
    pub fn is_hashed(&self) -> bool {
        self.hashed
    }
}
