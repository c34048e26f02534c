//! The cache creation flags ([`CacheFlags`], libumem's `UMC_*`).

use core::ops::BitOr;

/// Cache creation flags (libumem's `UMC_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct CacheFlags(pub(crate) u32);

impl CacheFlags {
    /// No flags.
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
    /// Auditing (implies `DEBUG`; libumem's `UMF_AUDIT`): every buffer gets an external
    /// audit bufctl recording its last allocation and last free (thread, timestamp,
    /// stack from the stack hook, transaction count), readable with `Cache::audit` and
    /// `Cache::audit_detail` (`audit.rs`). Forces
    /// the hashed slab layout, as in libumem.
    pub const AUDIT: CacheFlags = CacheFlags(32);
    /// Free buffers carry a *free key* (issue 11: double and interior frees detected in
    /// the default mode). The cache's user writes [`FREE_KEY_WORD`](crate::FREE_KEY_WORD)
    /// into the first word of each buffer it frees and clears it on allocation, and calls
    /// [`Cache::check_free`](crate::Cache::check_free) when a buffer it is about to free
    /// already holds the key. For that the cache: starts every buffer of a new slab
    /// marked with the key (so a never-allocated buffer reads as free), gives buffers of
    /// one word two-word chunks (the key and the free-list link both fit, so a buffer
    /// free on its slab keeps the key), and makes no
    /// slab colouring (so a chunk start is a function of the address alone:
    /// [`Cache::grid`](crate::Cache::grid)). Only for caches whose free buffers may be
    /// written: no constructor or destructor, not `NOTOUCH` (`BadFlags` otherwise).
    pub const FREE_KEY: CacheFlags = CacheFlags(64);
    /// Internal: a vmem quantum cache (slab size from the arena's `qcache_max`).
    pub(crate) const QCACHE: CacheFlags = CacheFlags(1 << 16);

    /// Whether every flag of `other` is set.
    #[inline]
    pub const fn contains(self, other: CacheFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// The flags as bits.
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

/// The *free key* of [`CacheFlags::FREE_KEY`] caches: the word that marks a free buffer
/// (its first word). A constant, not a secret: it only sends a free that finds it to
/// the slow check ([`Cache::check_free`](crate::Cache::check_free)), which decides by
/// the cache's own records, so knowing it buys a program nothing but slower frees of
/// blocks it filled with it. It is a sign-extended 32-bit immediate, so the hit path
/// compares and stores it with no register and no load: an unlikely value as data (a
/// negative 32-bit number in a 64-bit word, and not a canonical user-space pointer).
pub const FREE_KEY_WORD: usize = 0x8b1f_5a3d_u32 as i32 as isize as usize;
