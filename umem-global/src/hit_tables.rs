//! The hit paths' own tables: what a magazine hit needs, so that `malloc`
//! and `free` never load a cache pointer on a hit.
//!
//! * [`ALLOC_TABLE`] (libumem's `umem_alloc_table`, for the C ABI's 16-byte
//!   alignment): per 16-byte granule of a size up to
//!   [`classes::C_TABLE_MAX`], the [`InlineIndex`] of its class's cache.
//! * `FREE_TABLE`: a [`FreeEntry`] per class, indexed by a page-map entry's
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
use core::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use umem_slab::InlineIndex;

#[allow(clippy::declare_interior_mutable_const)]
const NO_ALLOC_ENTRY: AtomicU16 = AtomicU16::new(0);
/// Per 16-byte granule of a `malloc` size up to `C_TABLE_MAX`: the raw
/// [`InlineIndex`] of its class's cache (0 until the class is made).
static ALLOC_TABLE: [AtomicU16; classes::C_TABLE_MAX / 16 + 1] =
    [NO_ALLOC_ENTRY; classes::C_TABLE_MAX / 16 + 1];

/// A `FREE_TABLE` entry, packed in a `u64`:
///
/// ```text
///  63            16 15            0
/// | align - 1      | inline index  |   class made: its alignment mask and slot
/// | 0              | 0             |   a miss: not a class page, or class not made yet
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct FreeEntry(u64);

impl FreeEntry {
    /// The entry of a class whose buffers are `align`-aligned and whose
    /// cache's inline index is `ii`.
    #[inline]
    pub const fn new(align: usize, ii: InlineIndex) -> FreeEntry {
        FreeEntry(((align as u64 - 1) << 16) | ii.raw() as u64)
    }

    /// Bits 16..: whether `a` is off the class's alignment (so certainly not
    /// one of its blocks: the hit misses and the slow path decides).
    #[inline(always)]
    pub const fn misaligned(self, a: usize) -> bool {
        a as u64 & (self.0 >> 16) != 0
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

#[allow(clippy::declare_interior_mutable_const)]
const NO_FREE_ENTRY: AtomicU64 = AtomicU64::new(0);
/// By a page-map entry's top byte: the [`FreeEntry`] of the class of a
/// small-class entry, zero for every other byte.
static FREE_TABLE: [AtomicU64; 256] = [NO_FREE_ENTRY; 256];
const _: () = assert!(classes::COUNT <= 64);

/// The slot of class `c`'s entry (`0x40 | c`).
#[inline(always)]
fn free_slot(c: usize) -> &'static AtomicU64 {
    &FREE_TABLE[PageEntry::small(c & 63).free_table_index()]
}

/// Class `c`'s [`FreeEntry`].
#[inline(always)]
pub fn free_entry_of(c: usize) -> FreeEntry {
    FreeEntry(free_slot(c).load(Ordering::Relaxed))
}

/// The [`FreeEntry`] for a page whose entry is `e` (the zero entry unless
/// `e` is a small-class entry of a class already made).
#[inline(always)]
pub fn free_entry_at(e: PageEntry) -> FreeEntry {
    FreeEntry(FREE_TABLE[e.free_table_index()].load(Ordering::Relaxed))
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

/// Fills class `c`'s entries, once its cache (inline index `ii`) exists.
pub fn publish(c: usize, ii: InlineIndex) {
    free_slot(c).store(FreeEntry::new(classes::align(c), ii).0, Ordering::Relaxed);
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
}
