//! Public value types: flags, callbacks, errors, statistics.

use core::fmt;
use core::ops::BitOr;
use core::ptr::NonNull;

/// Cache creation flags (libumem's `UMC_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct CacheFlags(pub(crate) u32);

impl CacheFlags {
    pub const NONE: CacheFlags = CacheFlags(0);
    /// No magazine layer: every alloc/free goes to the slab layer under its lock
    /// (`UMC_NOMAGAZINE`).
    pub const NOMAGAZINE: CacheFlags = CacheFlags(1);
    /// The allocator never reads or writes the buffers: external bufctls, no free-list links,
    /// no debugging patterns (`UMC_NOTOUCH`; quantum caches, integer arenas).
    pub const NOTOUCH: CacheFlags = CacheFlags(2);
    /// Never apply debugging to this cache even when debugging is on (`UMC_NODEBUG`).
    pub const NODEBUG: CacheFlags = CacheFlags(4);
    /// Force the in-slab layout (slab header in the page, free list through the buffers),
    /// for internal metadata caches (`UMC_NOHASH`). Invalid with `NOTOUCH`.
    pub const NOHASH: CacheFlags = CacheFlags(8);
    /// Debugging: redzone + buftag after each buffer, `0xdeadbeef` fill of free buffers
    /// verified on allocation, redzone and double-free checks on free (libumem's
    /// `UMEM_DEBUG=guards,contents` subset). Objects are destroyed on every free in such a
    /// cache, as in libumem, so that the fill can be verified.
    pub const DEBUG: CacheFlags = CacheFlags(16);
    /// Auditing (implies `DEBUG`; libumem's `UMF_AUDIT` without stack traces yet): every
    /// buffer gets an external audit bufctl recording the last transaction (allocated or
    /// freed, thread, timestamp, transaction count), readable with `Cache::audit`. Forces
    /// the hashed slab layout, as in libumem.
    pub const AUDIT: CacheFlags = CacheFlags(32);
    /// Internal: a vmem quantum cache (slab size from the arena's `qcache_max`).
    pub(crate) const QCACHE: CacheFlags = CacheFlags(1 << 16);

    #[inline]
    pub const fn contains(self, other: CacheFlags) -> bool {
        self.0 & other.0 == other.0
    }
    #[inline]
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl BitOr for CacheFlags {
    type Output = CacheFlags;
    fn bitor(self, rhs: CacheFlags) -> CacheFlags {
        CacheFlags(self.0 | rhs.0)
    }
}

/// Object constructor: returns `false` when the object cannot be constructed (the
/// allocation then fails).
pub type CtorFn = fn(buf: NonNull<u8>, private: *mut ()) -> bool;
/// Object destructor.
pub type DtorFn = fn(buf: NonNull<u8>, private: *mut ());
/// Reclaim callback: an advisory plea to give memory back, called by `reap`.
pub type ReclaimFn = fn(private: *mut ());

/// The object-cache callbacks (libumem's constructor, destructor, reclaim and private
/// argument). The constructed-state contract: an object in the cache (slab layer excluded)
/// stays constructed; the constructor runs when a buffer leaves the slab layer, the
/// destructor only when it goes back to it.
#[derive(Clone, Copy, Debug)]
pub struct CacheOps {
    pub ctor: Option<CtorFn>,
    pub dtor: Option<DtorFn>,
    pub reclaim: Option<ReclaimFn>,
    pub private: *mut (),
}

// SAFETY: the private pointer is handed back to the callbacks only; whoever creates the
// cache promises the callbacks may run on any thread (as with libumem).
unsafe impl Send for CacheOps {}
// SAFETY: as above.
unsafe impl Sync for CacheOps {}

impl CacheOps {
    pub const NONE: CacheOps = CacheOps {
        ctor: None,
        dtor: None,
        reclaim: None,
        private: core::ptr::null_mut(),
    };

    /// Callbacks as methods of a `'static` object (the trait-object form).
    pub fn from_object<T: ObjectOps>(obj: &'static T) -> CacheOps {
        fn ctor<T: ObjectOps>(b: NonNull<u8>, p: *mut ()) -> bool {
            // SAFETY: `p` was made from a `&'static T` below.
            unsafe { &*(p as *const T) }.construct(b)
        }
        fn dtor<T: ObjectOps>(b: NonNull<u8>, p: *mut ()) {
            // SAFETY: as above.
            unsafe { &*(p as *const T) }.destruct(b)
        }
        fn reclaim<T: ObjectOps>(p: *mut ()) {
            // SAFETY: as above.
            unsafe { &*(p as *const T) }.reclaim()
        }
        CacheOps {
            ctor: if T::HAS_CTOR { Some(ctor::<T>) } else { None },
            dtor: if T::HAS_DTOR { Some(dtor::<T>) } else { None },
            reclaim: if T::HAS_RECLAIM {
                Some(reclaim::<T>)
            } else {
                None
            },
            private: obj as *const T as *mut (),
        }
    }
}

/// Object callbacks as a trait (see [`CacheOps::from_object`]).
pub trait ObjectOps: Sync + 'static {
    const HAS_CTOR: bool = true;
    const HAS_DTOR: bool = true;
    const HAS_RECLAIM: bool = false;
    fn construct(&self, _buf: NonNull<u8>) -> bool {
        true
    }
    fn destruct(&self, _buf: NonNull<u8>) {}
    fn reclaim(&self) {}
}

/// A cache name held by value (errors outlive caches).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheName {
    pub(crate) bytes: [u8; crate::cache::NAME_LEN],
    pub(crate) len: u8,
}

impl CacheName {
    pub(crate) fn new(s: &str) -> CacheName {
        let mut bytes = [0u8; crate::cache::NAME_LEN];
        let mut len = s.len().min(crate::cache::NAME_LEN);
        while !s.is_char_boundary(len) {
            len -= 1;
        }
        bytes[..len].copy_from_slice(&s.as_bytes()[..len]);
        CacheName {
            bytes,
            len: len as u8,
        }
    }
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl fmt::Debug for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
impl fmt::Display for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the slab allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabError {
    /// `Cache::create` with a zero size.
    ZeroSize,
    /// Alignment not a power of two, or larger than the source arena can guarantee.
    BadAlign { align: usize, max: usize },
    /// Size too large (chunk size overflows or no slab layout fits).
    TooLarge { size: usize },
    /// Contradictory flags (`NOTOUCH` with `NOHASH`, or an internal flag).
    BadFlags { flags: u32 },
    /// The metadata arenas or the source arena are exhausted.
    NoMemory,
    /// The address is not a buffer of any slab of any cache.
    NotOwned { addr: usize, cache: CacheName },
    /// The buffer belongs to another cache.
    WrongCache {
        addr: usize,
        cache: CacheName,
        owner: CacheName,
    },
    /// The address is inside a buffer of this cache but not at its start.
    BadAddress {
        addr: usize,
        buffer: usize,
        cache: CacheName,
    },
    /// The buffer is already free (on its slab's free list, in a magazine, or marked free
    /// in its debug buftag).
    DoubleFree { addr: usize, cache: CacheName },
    /// Debugging found a write past the end of the buffer.
    Redzone { addr: usize, cache: CacheName },
    /// Debugging found a write to a free buffer.
    ModifiedAfterFree {
        addr: usize,
        offset: usize,
        cache: CacheName,
    },
    /// `destroy` of a cache that still has allocated objects (the cache stays usable).
    NotEmpty { live: usize, cache: CacheName },
    /// `verify` found a broken invariant.
    Corrupt {
        what: &'static str,
        addr: usize,
        cache: CacheName,
    },
}

impl fmt::Display for SlabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SlabError::*;
        match self {
            ZeroSize => write!(f, "cache buffer size is zero"),
            BadAlign { align, max } => write!(
                f,
                "alignment {align:#x} is not a power of two or exceeds {max:#x}"
            ),
            TooLarge { size } => write!(f, "buffer size {size:#x} too large"),
            BadFlags { flags } => write!(f, "invalid cache flags {flags:#x}"),
            NoMemory => write!(f, "out of memory for cache metadata"),
            NotOwned { addr, cache } => {
                write!(f, "free of {addr:#x} to cache {cache}: no slab owns it")
            }
            WrongCache { addr, cache, owner } => write!(
                f,
                "free of {addr:#x} to cache {cache}: buffer belongs to cache {owner}"
            ),
            BadAddress {
                addr,
                buffer,
                cache,
            } => write!(
                f,
                "free of {addr:#x} to cache {cache}: not a buffer start (buffer at {buffer:#x})"
            ),
            DoubleFree { addr, cache } => {
                write!(f, "duplicate free of {addr:#x} to cache {cache}")
            }
            Redzone { addr, cache } => write!(
                f,
                "redzone violation: write past the end of {addr:#x} in cache {cache}"
            ),
            ModifiedAfterFree {
                addr,
                offset,
                cache,
            } => write!(
                f,
                "buffer {addr:#x} of cache {cache} modified after being freed (offset {offset:#x})"
            ),
            NotEmpty { live, cache } => {
                write!(f, "destroy of cache {cache} with {live} live buffers")
            }
            Corrupt { what, addr, cache } => {
                write!(f, "cache {cache} corrupt at {addr:#x}: {what}")
            }
        }
    }
}

impl std::error::Error for SlabError {}

/// Per-cache statistics (libumem's kstats / `::umastat` columns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    pub buf_size: usize,
    pub align: usize,
    pub chunk_size: usize,
    pub slab_size: usize,
    /// Buffers in all slabs.
    pub buf_total: usize,
    /// Buffers out of the slab layer (held by clients or by magazines).
    pub buf_slab_alloc: usize,
    /// Buffers held by clients (allocs - frees over all threads).
    pub buf_inuse: u64,
    /// Constructed buffers held in depot magazines.
    pub buf_depot: usize,
    pub alloc: u64,
    pub free: u64,
    pub alloc_fail: u64,
    pub slabs: usize,
    pub slab_create: u64,
    pub slab_destroy: u64,
    pub slab_alloc: u64,
    pub slab_free: u64,
    pub depot_full: usize,
    pub depot_empty: usize,
    pub depot_contention: u64,
    pub mag_size: usize,
    pub mag_resize: u64,
    pub hash_size: usize,
    pub hash_rescale: u64,
    pub hash_lookup_depth: u64,
    /// Bytes of slabs taken from the source arena.
    pub mem_total: usize,
    pub reap: u64,
}

/// The last transaction recorded for a buffer of an `AUDIT` cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// `true` when the last transaction was an allocation.
    pub allocated: bool,
    /// `pthread_self()` of the thread that made it.
    pub thread: usize,
    /// CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// Number of allocations and frees of this buffer since its slab was made.
    pub transactions: u64,
}
