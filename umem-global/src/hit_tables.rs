//! The hit paths' own tables: what a magazine hit needs, so that `malloc`
//! and `free` never load a cache pointer on a hit.
//!
//! * [`ALLOC_TABLE`] (libumem's `umem_alloc_table`, for the C ABI's 16-byte
//!   alignment): per 16-byte granule of a size up to
//!   [`classes::C_TABLE_MAX`], the [`InlineIndex`] of its class's cache.
//! * `FREE_TABLE`: a [`FreeSlot`] per class (its [`FreeEntry`] and the two
//!   words of its block-start test, on one cache line), indexed by a page-map entry's
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
    #[cfg(test)]
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

/// The block-start test of a class whose blocks are `chunk` bytes apart
/// from the start of each page, `chunks` of them per page: the multiplier
/// `m` and the bound `t` such that, for `o = a mod PAGE`, `o * m mod 2^64
/// < t` exactly when `o = k * chunk` with `k < chunks`.
///
/// With `m = floor(2^64 / chunk) + 1`, `m * chunk = 2^64 + r` with
/// `1 <= r <= chunk`; so for `o = k * chunk + j` (`0 <= j < chunk`),
/// `o * m ≡ k * r + j * m`: below `chunks * r` when `j = 0` and `k <
/// chunks`, and at least `m` (about `2^64 / chunk`, far above it) when
/// `j > 0`, with no wrap since `o < PAGE`. (Lemire, Kaser and Kurz's
/// divisibility test, with the index bound folded into the compare.) One
/// multiply and one compare: an interior pointer, or one into the slab's
/// record at the end of its page, fails it. For a class checked for
/// alignment only, `chunk` is the alignment and `chunks = PAGE / align`.
pub const fn start_test(chunk: usize, chunks: usize) -> (u64, u64) {
    let m = ((1u128 << 64) / chunk as u128) as u64 + 1;
    let r = m.wrapping_mul(chunk as u64);
    (m, chunks as u64 * r)
}

/// Bytes of umem-slab's `Slab` record at the end of an in-slab slab (checked
/// against each class cache's [`SlabGrid`] when the class is made).
const SLAB_RECORD: usize = 64;

/// The one-page slab grid umem-slab gives class `c` with `FREE_KEY` and no
/// debugging: chunks of the class size (a multiple of its alignment) from
/// the page's start, the slab record at its end; `None` for the classes of
/// 512 bytes and more (hashed slabs, not one page).
pub const fn class_grid(c: usize) -> Option<SlabGrid> {
    let size = classes::SIZES[c];
    if size >= PAGE / 8 {
        return None;
    }
    Some(SlabGrid {
        slab_size: PAGE,
        chunk_size: size,
        chunks: (PAGE - SLAB_RECORD) / size,
    })
}

/// A `FREE_TABLE` slot: the class's [`FreeEntry`] and its block-start
/// test ([`start_test`]); 32 bytes, two slots per cache line. The test's
/// words are constants (from [`class_grid`]), so the hit reads them as
/// memory operands of its `imul` and `cmp`. A slot of no class fails the
/// test (so the hit misses).
#[repr(C, align(32))]
pub struct FreeSlot {
    entry: AtomicU64,
    mul: u64,
    bound: u64,
}

impl FreeSlot {
    /// The class cache's inline index ([`InlineIndex::MISS`] for a zero
    /// slot).
    #[inline(always)]
    pub fn inline_index(&self) -> InlineIndex {
        FreeEntry(self.entry.load(Ordering::Relaxed)).inline_index()
    }

    /// Whether `a` may be a block of the class: exactly its block starts for
    /// a class below 512 bytes (one-page, colour-free slabs), its aligned
    /// addresses for the others (see [`start_test`]).
    #[inline(always)]
    pub fn is_start(&self, a: usize) -> bool {
        ((a & (PAGE - 1)) as u64).wrapping_mul(self.mul) < self.bound
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_FREE_SLOT: FreeSlot = FreeSlot {
    entry: AtomicU64::new(0),
    mul: 0,
    bound: 0,
};

/// The test words of class `c`'s slot: its grid, or its alignment.
const fn class_test(c: usize) -> (u64, u64) {
    match class_grid(c) {
        Some(g) => start_test(g.chunk_size, g.chunks),
        None => {
            let align = classes::natural_align(c);
            start_test(align, PAGE / align)
        }
    }
}

const fn build_free_table() -> [FreeSlot; 256] {
    let mut t = [NO_FREE_SLOT; 256];
    let mut c = 0;
    while c < classes::COUNT {
        let (m, b) = class_test(c);
        let i = PageEntry::small(c).free_table_index();
        t[i] = FreeSlot {
            entry: AtomicU64::new(0),
            mul: m,
            bound: b,
        };
        c += 1;
    }
    t
}

/// By a page-map entry's top byte: the [`FreeSlot`] of the class of a
/// small-class entry, a slot of no class for every other byte.
static FREE_TABLE: [FreeSlot; 256] = build_free_table();
const _: () = assert!(classes::COUNT <= 64);

/// The slot of class `c`'s entry (`0x40 | c`).
#[inline(always)]
fn free_slot(c: usize) -> &'static FreeSlot {
    &FREE_TABLE[PageEntry::small(c & 63).free_table_index()]
}

/// Class `c`'s [`FreeSlot`].
#[inline(always)]
pub fn free_entry_of(c: usize) -> &'static FreeSlot {
    free_slot(c)
}

/// The [`FreeSlot`] for a page whose entry is `e` (a zero slot unless `e`
/// is a small-class entry of a class already made).
#[inline(always)]
pub fn free_entry_at(e: PageEntry) -> &'static FreeSlot {
    &FREE_TABLE[e.free_table_index()]
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
/// `grid`; `debug`: made with umem-slab's debug layout) exists. Without
/// debugging its grid must be the one the block-start test assumes
/// ([`class_grid`]): anything else aborts here rather than refuse good
/// frees later. (A debug cache never hits; its frees take the miss path,
/// which tests by the cache's real grid.)
pub fn publish(c: usize, ii: InlineIndex, grid: Option<SlabGrid>, debug: bool) {
    if !debug && grid != class_grid(c) {
        crate::sys::fatal(format_args!(
            "umem: class {}: slab grid {grid:?} is not the hit table's {:?}",
            classes::NAMES[c],
            class_grid(c)
        ));
    }
    let s = free_slot(c);
    s.entry
        .store(FreeEntry::new(classes::align(c), ii).0, Ordering::Relaxed);
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
        // A zero slot fails every test (a miss).
        assert!(!FREE_TABLE[0].is_start(0x1000));
        let slot = |(m, t): (u64, u64)| FreeSlot {
            entry: AtomicU64::new(0),
            mul: m,
            bound: t,
        };
        // Every class's one-page grid (64 bytes of slab record at the end).
        for &cs in classes::SIZES.iter().filter(|&&s| s < 512) {
            let chunks = (PAGE - 64) / cs;
            let s = slot(start_test(cs, chunks));
            for page in [0x7f12_3456_7000usize, 0x1000] {
                for o in 0..PAGE {
                    let want = o % cs == 0 && o / cs < chunks;
                    assert_eq!(s.is_start(page + o), want, "class {cs} offset {o}");
                }
            }
        }
        // The table holds every class's test.
        for c in 0..classes::COUNT {
            assert_eq!(free_slot(c).mul, class_test(c).0);
            assert_eq!(free_slot(c).bound, class_test(c).1);
        }
        // Alignment-only entries: exactly the aligned addresses.
        for align in [8usize, 16, 64, 512, 4096] {
            let s = slot(start_test(align, PAGE / align));
            for o in 0..2 * PAGE {
                assert_eq!(s.is_start(0x5000_0000 + o), o % align == 0, "{align} {o}");
            }
        }
    }
}
