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

/// A magazine: a link word, `rounds` buffer addresses and one extra word above the last
/// round (the upper fence per CPU, `percpu.rs`; the back link of the depot's full list,
/// `depot.rs`).
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
/// The loaded magazine is kept as pointers, so that the hit moves one pointer: `top` is the
/// address of its top round, or `loaded` itself (its link word) when it is empty; `limit`
/// the address of its last round (`loaded` when there is none). So a pop is "`top !=
/// loaded`: take `*top`, step `top` down" and a push "`top < limit`: step `top` up, store",
/// with no index arithmetic.
///
/// Invariants (owner thread): `loaded <= top <= limit`, all three null when `loaded` is
/// null, so the hit path needs no null test; its fill is [`ThreadCache::rounds`];
/// `prounds` is the fill of `ploaded` (0 when it is null); both magazines have `magsize`
/// rounds of capacity. Only the owner thread touches the magazine fields;
/// `allocs`/`frees` are written by the owner with a plain relaxed load and store
/// ([`bump`]) so that `stats()` can read them elsewhere.
#[repr(C, align(64))]
pub(crate) struct ThreadCache {
    pub top: *mut usize,
    pub loaded: *mut Magazine,
    pub limit: *mut usize,
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
        top: null_mut(),
        loaded: null_mut(),
        limit: null_mut(),
        ploaded: null_mut(),
        prounds: 0,
        magsize: 0,
        allocs: AtomicU64::new(0),
        frees: AtomicU64::new(0),
    };
}

impl ThreadCache {
    /// A private thread cache whose loaded magazine is `mag` (null: none) with `rounds` of
    /// `magsize` rounds: how a magazine taken from a CPU slot is handed to the code that
    /// works on a thread's magazines (`percpu_layer.rs`).
    pub(crate) fn holding(mag: *mut Magazine, rounds: usize, magsize: usize) -> ThreadCache {
        let mut tc = ThreadCache::EMPTY;
        tc.magsize = magsize;
        tc.set_loaded(mag, rounds);
        tc
    }

    /// Rounds in the loaded magazine.
    #[inline(always)]
    pub(crate) fn rounds(&self) -> usize {
        (self.top as usize - self.loaded as usize) / core::mem::size_of::<usize>()
    }

    /// Makes `mag` (null: none) the loaded magazine, holding `rounds` rounds, with
    /// `magsize` rounds of capacity (the previous magazine is left alone).
    #[inline(always)]
    pub(crate) fn set_loaded(&mut self, mag: *mut Magazine, rounds: usize) {
        let base = mag as *mut usize;
        self.loaded = mag;
        if mag.is_null() {
            self.top = null_mut();
            self.limit = null_mut();
        } else {
            self.top = base.wrapping_add(rounds);
            self.limit = base.wrapping_add(self.magsize);
        }
    }

    /// Takes the top round of the loaded magazine, which has one.
    ///
    /// # Safety
    /// `self.rounds() > 0`, and the slot is the calling thread's.
    #[inline(always)]
    pub(crate) unsafe fn take(&mut self) -> usize {
        let t = self.top;
        // SAFETY: `loaded < top <= limit`: `top` is a round of the loaded magazine.
        unsafe {
            self.top = t.sub(1);
            *t
        }
    }

    /// Stores `addr` as the new top round of the loaded magazine, which has room.
    ///
    /// # Safety
    /// `self.top < self.limit`, and the slot is the calling thread's.
    #[inline(always)]
    pub(crate) unsafe fn put(&mut self, addr: usize) {
        // SAFETY: `top < limit`: the next word is a round of the loaded magazine.
        unsafe {
            let t = self.top.add(1);
            *t = addr;
            self.top = t;
        }
    }
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
    // SAFETY: by the caller the slot is ours; `top != loaded` means the loaded magazine has
    // a round, and `prounds > 0` that the previous one holds that many.
    unsafe {
        let s = &mut *slot;
        let t = s.top;
        if t != s.loaded as *mut usize {
            s.top = t.sub(1);
            bump(&s.allocs);
            return Some(*t);
        }
        if s.prounds == 0 {
            return None;
        }
        // The loaded magazine is empty, so it is `t` itself (`top == loaded`): swap it
        // with the previous one, reading `loaded` only for the compare above.
        let (m, r) = (s.ploaded, s.prounds);
        s.ploaded = t as *mut Magazine;
        s.prounds = 0;
        s.set_loaded(m, r);
        bump(&s.allocs);
        Some(s.take())
    }
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
    // SAFETY: by the caller; `top < limit` means `loaded` has room for one more.
    unsafe {
        let s = &mut *slot;
        let t = s.top;
        if t < s.limit {
            let t = t.add(1);
            *t = addr;
            s.top = t;
            bump(&s.frees);
            return true;
        }
        if s.ploaded.is_null() || s.prounds != 0 {
            return false;
        }
        let m = s.ploaded;
        reload(s, m, 0);
        s.put(addr);
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
    s.prounds = s.rounds();
    s.set_loaded(mag, rounds);
}
