//! The hit paths' own tables: what a magazine hit needs, so that `malloc`
//! and `free` never load a cache pointer on a hit.
//!
//! * [`ALLOC_TABLE`] (libumem's `umem_alloc_table`, for the C ABI's 16-byte
//!   alignment): per 16-byte granule of a size up to
//!   [`classes::C_TABLE_MAX`], the [`InlineIndex`] of its class's cache.
//! * `FREE_TABLE`: a [`FreeEntry`] per class (and the multiplier of its
//!   block-start test beside it, on the same cache line), indexed by a page-map entry's
//!   top byte (`0x40 | class`, [`PageEntry::free_table_index`]); every other
//!   byte finds the zero entry, on which every hit misses. So `free` indexes it by the page map's
//!   top byte with no tag test, and by `0x40 | class` (a constant
//!   displacement) when the class comes from the region.
//!
//! Both are zero (every hit misses into the slow path, which initialises and
//! makes the class) until [`publish`] fills a class's entries, when its
//! cache is made. An [`InlineIndex`] is the byte offset of the cache's slot
//! in a thread's block (0, the reserved slot, always misses).

use crate::classes;
use crate::pagemap::PageEntry;
use crate::sys::PAGE;
use core::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use umem_slab::{InlineIndex, SlabGrid};

#[allow(clippy::declare_interior_mutable_const)]
const NO_ALLOC_ENTRY: AtomicU16 = AtomicU16::new(0);
/// Per 16-byte granule of a `malloc` size up to `C_TABLE_MAX`: the raw
/// [`InlineIndex`] of its class's cache (0 until the class is made).
static ALLOC_TABLE: [AtomicU16; classes::C_TABLE_MAX / 16 + 1] =
    [NO_ALLOC_ENTRY; classes::C_TABLE_MAX / 16 + 1];

/// A `FREE_TABLE` entry, packed in a `u64`, with the multiplier `m` of its
/// block-start test in the next word:
///
/// ```text
///  63       48 47     22 21   16 15            0
/// | limit     | 0       | shift | inline index  |   class made
/// | 0         | 0       | 0     | 0             |   a miss: not a class page, or class not made yet
/// ```
///
/// **The block-start test** ([`FreeEntry::is_start`]): `a` may be one of the
/// class's blocks iff `rotr((a mod PAGE) * m, shift) < limit`. For a class
/// whose slabs are one page with no colouring (`umem_slab::Cache::grid`:
/// every class below 512 bytes), `chunk = odd << shift` and `m` is `odd`'s
/// inverse modulo 2^64, so the rotated product is the block's index in its
/// slab for a multiple of the chunk size and huge otherwise (Granlund and
/// Montgomery's divisibility test): one test catches both an interior
/// pointer and one into the slab's record, with no division and no load
/// but this entry. For other classes it is the alignment test: `m = 1`,
/// `shift = log2(align)`, `limit = PAGE >> shift`. The zero entry's limit
/// is 0: every test fails, so the hit misses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct FreeEntry(u64);

impl FreeEntry {
    /// The entry of a class whose buffers are `align`-aligned and whose
    /// cache's inline index is `ii`, checked for alignment only (its
    /// multiplier is 1).
    #[inline]
    pub const fn new(align: usize, ii: InlineIndex) -> FreeEntry {
        let shift = align.trailing_zeros() as u64;
        FreeEntry(((PAGE as u64 >> shift) << 48) | (shift << 16) | ii.raw() as u64)
    }

    /// The entry of a class whose slabs are the page grid `g` (one page,
    /// no colouring), with its multiplier.
    pub const fn grid(g: SlabGrid, ii: InlineIndex) -> (FreeEntry, u64) {
        let shift = g.chunk_size.trailing_zeros() as u64;
        let odd = (g.chunk_size >> shift) as u64;
        // Newton's iteration for odd's inverse modulo 2^64 (from 3 bits).
        let mut m = odd;
        let mut i = 0;
        while i < 6 {
            m = m.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(m)));
            i += 1;
        }
        (
            FreeEntry(((g.chunks as u64) << 48) | (shift << 16) | ii.raw() as u64),
            m,
        )
    }

    /// Whether `a` is off the class's alignment (so certainly not one of
    /// its blocks: the hit misses and the slow path decides).
    #[cfg(test)]
    pub const fn misaligned(self, a: usize) -> bool {
        a as u64 & ((1u64 << ((self.0 >> 16) & 63)) - 1) != 0
    }

    /// The block-start test (see the type): `false` when `a` is certainly
    /// not a block of the class, `m` the multiplier stored beside the entry.
    #[inline(always)]
    pub const fn is_start(self, a: usize, m: u64) -> bool {
        ((a & (PAGE - 1)) as u64)
            .wrapping_mul(m)
            .rotate_right((self.0 >> 16) as u32 & 63)
            < self.0 >> 48
    }

    /// Bits 0..16: the class cache's inline index ([`InlineIndex::MISS`]
    /// for the zero entry).
    #[inline(always)]
    pub const fn inline_index(self) -> InlineIndex {
        // SAFETY: the low 16 bits were stored from an `InlineIndex`'s `raw`
        // by `new`, or are 0 (the zero entry of a table).
        unsafe { InlineIndex::from_raw(self.0 as u16) }
    }
}

/// A `FREE_TABLE` slot: the entry and its multiplier, on one cache line.
#[repr(C, align(16))]
struct FreeSlot {
    entry: AtomicU64,
    mul: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_FREE_SLOT: FreeSlot = FreeSlot {
    entry: AtomicU64::new(0),
    mul: AtomicU64::new(0),
};
/// By a page-map entry's top byte: the [`FreeEntry`] of the class of a
/// small-class entry, zero for every other byte.
static FREE_TABLE: [FreeSlot; 256] = [NO_FREE_SLOT; 256];
const _: () = assert!(classes::COUNT <= 64);

/// The slot of class `c`'s entry (`0x40 | c`).
#[inline(always)]
fn free_slot(c: usize) -> &'static FreeSlot {
    &FREE_TABLE[PageEntry::small(c & 63).free_table_index()]
}

#[inline(always)]
fn read(s: &FreeSlot) -> (FreeEntry, u64) {
    (
        FreeEntry(s.entry.load(Ordering::Relaxed)),
        s.mul.load(Ordering::Relaxed),
    )
}

/// Class `c`'s [`FreeEntry`] and its multiplier.
#[inline(always)]
pub fn free_entry_of(c: usize) -> (FreeEntry, u64) {
    read(free_slot(c))
}

/// The [`FreeEntry`] (and multiplier) for a page whose entry is `e` (the
/// zero entry unless `e` is a small-class entry of a class already made).
#[inline(always)]
pub fn free_entry_at(e: PageEntry) -> (FreeEntry, u64) {
    read(&FREE_TABLE[e.free_table_index()])
}

/// The *free key* (issue 11, defect 4): `umem_slab::process_secret()`,
/// written into the first word of every small block when it is freed and
/// cleared when it is handed out, so that a free finding it already there
/// takes the slow check for a double free (`free.rs`). The class caches are
/// made with `CacheFlags::FREE_KEY`, which marks never-allocated chunks
/// with it too. 0 until the first class is made (no block exists before).
static FREE_KEY: AtomicUsize = AtomicUsize::new(0);

/// The free key (see [`FREE_KEY`]).
#[inline(always)]
pub fn free_key() -> usize {
    FREE_KEY.load(Ordering::Relaxed)
}

/// Sets the free key (before the first class's entries are published).
pub fn init_free_key() {
    FREE_KEY.store(umem_slab::process_secret(), Ordering::Relaxed);
}

/// The inline index of the cache of `malloc` size `size`'s class
/// (`size <= C_TABLE_MAX`; [`InlineIndex::MISS`] until the class is made).
#[inline(always)]
pub fn alloc_index(size: usize) -> InlineIndex {
    debug_assert!(size <= classes::C_TABLE_MAX);
    let raw = ALLOC_TABLE[(size + 15) >> 4].load(Ordering::Relaxed);
    // SAFETY: ALLOC_TABLE holds `InlineIndex` raws (`publish`) or 0.
    unsafe { InlineIndex::from_raw(raw) }
}

/// Fills class `c`'s entries, once its cache (inline index `ii`, slab grid
/// `grid`) exists. A grid of one page gives the exact block-start test;
/// any other class is tested for alignment only.
pub fn publish(c: usize, ii: InlineIndex, grid: Option<SlabGrid>) {
    let (e, m) = match grid {
        Some(g) if g.slab_size == PAGE => FreeEntry::grid(g, ii),
        _ => (FreeEntry::new(classes::align(c), ii), 1),
    };
    let s = free_slot(c);
    s.mul.store(m, Ordering::Relaxed);
    s.entry.store(e.0, Ordering::Relaxed);
    for (g, h) in ALLOC_TABLE.iter().enumerate() {
        if classes::c_small_size_class(g * 16) == c {
            h.store(ii.raw(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_entries_decode_to_what_they_encode() {
        // SAFETY: a made-up index, only decoded here, never used for a hit.
        let ii = unsafe { InlineIndex::from_raw(0x1230) };
        let e = FreeEntry::new(64, ii);
        assert_eq!(e.inline_index(), ii);
        assert!(!e.misaligned(0x1000) && !e.misaligned(0x1040));
        assert!(e.misaligned(0x1010) && e.misaligned(0x1001));
        // The zero entry (a class not made, or not a class page): the
        // alignment test passes and the inline index always misses.
        assert_eq!(FreeEntry(0).inline_index(), InlineIndex::MISS);
        assert!(!FreeEntry(0).misaligned(0x1001));
    }

    #[test]
    fn block_start_test_is_exact() {
        // SAFETY: a made-up index, only decoded here, never used for a hit.
        let ii = unsafe { InlineIndex::from_raw(0x40) };
        // The zero entry fails every test (a miss).
        assert!(!FreeEntry(0).is_start(0x1000, 0));
        for &cs in classes::SIZES.iter().filter(|&&s| s < 512) {
            let chunks = (PAGE - 64) / cs;
            let g = SlabGrid {
                slab_size: PAGE,
                chunk_size: cs,
                chunks,
            };
            let (e, m) = FreeEntry::grid(g, ii);
            assert_eq!(e.inline_index(), ii);
            for page in [0x7f12_3456_7000usize, 0x1000] {
                for o in 0..PAGE {
                    let want = o % cs == 0 && o / cs < chunks;
                    assert_eq!(e.is_start(page + o, m), want, "class {cs} offset {o}");
                }
            }
        }
        // Alignment-only entries: exactly the aligned addresses.
        for align in [8usize, 16, 64, 512, 4096] {
            let e = FreeEntry::new(align, ii);
            for o in 0..2 * PAGE {
                assert_eq!(e.is_start(0x5000_0000 + o, 1), o % align == 0);
                assert_eq!(e.misaligned(0x5000_0000 + o), o % align != 0);
            }
        }
    }
}
