//! Magazines (Bonwick & Adams 2001, section 3): the magazine types table, the
//! [`Magazine`] itself, and a thread's pair of magazines for one cache
//! ([`ThreadCache`], umem.c's `umem_cpu_cache_t`) with the operations of the hit path:
//! [`pop`], [`push`] and [`reload`].
//!
//! The hit path is written so that it inlines completely into its callers: no calls, so
//! a caller whose hit ends here needs no stack frame (that is the reason for every
//! `#[inline(always)]` in this file and in `hit.rs`).

use core::ptr::null_mut;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::diag::fatal;

/// A magazine type `{rounds, align, minbuf, maxbuf}` (libumem's `umem_magtype_t`): caches
/// whose chunks are larger than `minbuf` start with this type; a resize stops growing at
/// the first type whose `maxbuf` the chunk size reaches.
pub(crate) struct MagType {
    pub rounds: usize,
    pub align: usize,
    pub minbuf: usize,
    pub maxbuf: usize,
}

pub(crate) const MAGTYPES: [MagType; 9] = [
    MagType {
        rounds: 1,
        align: 8,
        minbuf: 3200,
        maxbuf: 65536,
    },
    MagType {
        rounds: 3,
        align: 16,
        minbuf: 256,
        maxbuf: 32768,
    },
    MagType {
        rounds: 7,
        align: 32,
        minbuf: 64,
        maxbuf: 16384,
    },
    MagType {
        rounds: 15,
        align: 64,
        minbuf: 0,
        maxbuf: 8192,
    },
    MagType {
        rounds: 31,
        align: 64,
        minbuf: 0,
        maxbuf: 4096,
    },
    MagType {
        rounds: 47,
        align: 64,
        minbuf: 0,
        maxbuf: 2048,
    },
    MagType {
        rounds: 63,
        align: 64,
        minbuf: 0,
        maxbuf: 1024,
    },
    MagType {
        rounds: 95,
        align: 64,
        minbuf: 0,
        maxbuf: 512,
    },
    MagType {
        rounds: 143,
        align: 64,
        minbuf: 0,
        maxbuf: 0,
    },
];

/// The index in [`MAGTYPES`] of the type with `rounds` rounds (aborts if there is none).
pub(crate) fn magtype_index(rounds: usize) -> usize {
    MAGTYPES
        .iter()
        .position(|m| m.rounds == rounds)
        .unwrap_or_else(|| fatal("umem-slab: bad magazine size"))
}

/// A magazine: a link word followed by `rounds` buffer addresses.
#[repr(C)]
pub(crate) struct Magazine {
    pub(crate) next: *mut Magazine,
}

impl Magazine {
    /// # Safety
    /// `m` is a magazine with more than `i` rounds of capacity.
    #[inline(always)]
    pub(crate) unsafe fn round(m: *mut Magazine, i: usize) -> *mut usize {
        // SAFETY: rounds follow the link word; in bounds by the caller's promise.
        unsafe { (m as *mut usize).add(1 + i) }
    }
}

/// One thread's magazines for one cache (the per-thread analogue of umem.c's
/// `umem_cpu_cache_t`): a *loaded* and a *previous* magazine with their fills. It lives in
/// a slot of the thread's magazine block (`magazine_block.rs`).
///
/// Invariants (owner thread): `cap` is the capacity of `loaded` (0 when `loaded` is null),
/// so the hit path needs no null test; `0 <= rounds <= cap`; `prounds` is the fill of
/// `ploaded` (0 when it is null); both magazines have `magsize` rounds of capacity. Only
/// the owner thread touches the magazine fields; `allocs`/`frees` are written by the owner
/// with a plain relaxed load and store ([`bump`]) so that `stats()` can read them
/// elsewhere.
#[repr(C, align(64))]
pub(crate) struct ThreadCache {
    pub loaded: *mut Magazine,
    pub rounds: usize,
    pub cap: usize,
    pub ploaded: *mut Magazine,
    pub prounds: usize,
    pub magsize: usize,
    pub allocs: AtomicU64,
    pub frees: AtomicU64,
}

impl ThreadCache {
    /// A thread cache with no magazines (every hit on it misses).
    #[allow(clippy::declare_interior_mutable_const)]
    pub(crate) const EMPTY: ThreadCache = ThreadCache {
        loaded: null_mut(),
        rounds: 0,
        cap: 0,
        ploaded: null_mut(),
        prounds: 0,
        magsize: 0,
        allocs: AtomicU64::new(0),
        frees: AtomicU64::new(0),
    };
}

/// Pops the top round of `slot`'s loaded magazine, first exchanging an empty loaded
/// magazine for a full previous one: the whole magazine-layer hit, both of its cases as
/// in the paper (a working set a little larger than one magazine swaps the two on every
/// pass, and that swap must not cost a slow-path trip).
///
/// # Safety
/// `slot` is a slot of the calling thread's block, or null when `MAY_BE_NULL`.
#[inline(always)]
pub(crate) unsafe fn pop<const MAY_BE_NULL: bool>(slot: *mut ThreadCache) -> Option<usize> {
    if MAY_BE_NULL && slot.is_null() {
        return None;
    }
    // SAFETY: by the caller the slot is ours; when `rounds > 0`, `loaded` is a magazine
    // holding that many rounds, and likewise `ploaded` with `prounds`.
    unsafe {
        let s = &mut *slot;
        if s.rounds != 0 {
            return Some(take_round(s));
        }
        if s.prounds == 0 {
            return None;
        }
        let (m, r) = (s.ploaded, s.prounds);
        reload(s, m, r);
        Some(take_round(s))
    }
}

/// The top round of a loaded magazine that has one.
///
/// # Safety
/// `s` is the calling thread's slot and `s.rounds > 0`.
#[inline(always)]
unsafe fn take_round(s: &mut ThreadCache) -> usize {
    let r = s.rounds;
    s.rounds = r - 1;
    // SAFETY: by the caller `loaded` holds `r` rounds; round `r - 1` is the magazine's
    // word `r` (after the link word), read from the magazine pointer and the old count
    // (one scaled load, no address arithmetic).
    let buf = unsafe { *(s.loaded as *const usize).add(r) };
    bump(&s.allocs);
    buf
}

/// Pushes `addr` onto `slot`'s loaded magazine, first exchanging a full loaded magazine
/// for an empty previous one; `false` (nothing done) when neither has room.
///
/// # Safety
/// As [`pop`]; `addr` is a free buffer of the slot's cache.
#[inline(always)]
pub(crate) unsafe fn push<const MAY_BE_NULL: bool>(slot: *mut ThreadCache, addr: usize) -> bool {
    if MAY_BE_NULL && slot.is_null() {
        return false;
    }
    // SAFETY: by the caller; `rounds < cap` means `loaded` has room for one more.
    unsafe {
        let s = &mut *slot;
        if s.rounds >= s.cap {
            if s.ploaded.is_null() || s.prounds != 0 {
                return false;
            }
            let m = s.ploaded;
            reload(s, m, 0);
        }
        let r = s.rounds;
        *Magazine::round(s.loaded, r) = addr;
        s.rounds = r + 1;
        bump(&s.frees);
        true
    }
}

#[inline(always)]
pub(crate) fn bump(c: &AtomicU64) {
    // Owner-only counter: a plain load/store pair, readable (racily, atomically) elsewhere.
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Make `mag` (with `rounds` rounds) the loaded magazine; the loaded one becomes previous.
#[inline(always)]
pub(crate) fn reload(s: &mut ThreadCache, mag: *mut Magazine, rounds: usize) {
    s.ploaded = s.loaded;
    s.prounds = s.rounds;
    s.loaded = mag;
    s.rounds = rounds;
    s.cap = if mag.is_null() { 0 } else { s.magsize };
}
