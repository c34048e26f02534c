//! The hit paths' own tables: what a magazine hit needs, so that `malloc`
//! and `free` never load a cache pointer on a hit.
//!
//! * [`ALLOC_TABLE`] (libumem's `umem_alloc_table`): per 8-byte granule of a
//!   `malloc` size up to [`classes::C_TABLE_MAX`], the [`InlineIndex`] of its
//!   class's cache.
//! * `FREE_TABLE`: per class, its cache's [`InlineIndex`] and the two
//!   words of its block-start test, indexed by a page-map entry's top byte
//!   (`0x40 | class`, [`PageEntry::free_table_index`]; a [`FreeSlot`]);
//!   every other byte finds a slot on which every hit misses. So `free`
//!   indexes it by the page map's top byte with no tag test, and by
//!   `0x40 | class` when the class comes from the region.
//!
//! Both are zero (every hit misses into the slow path, which initialises and
//! makes the class) until [`publish`] fills a class's entries, when its
//! cache is made. An [`InlineIndex`] is the byte offset of the cache's slot
//! in a thread's block (0, the reserved slot, always misses).

use crate::classes;
use crate::pagemap::PageEntry;
use crate::sys::PAGE;
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};
use umem_slab::{InlineIndex, SlabGrid};

#[allow(clippy::declare_interior_mutable_const)]
const NO_ALLOC_ENTRY: AtomicUsize = AtomicUsize::new(0);
/// Per 8-byte granule of a `malloc` size up to `C_TABLE_MAX`: the
/// [`InlineIndex::word`] of its class's cache (0 until the class is made).
static ALLOC_TABLE: [AtomicUsize; classes::C_TABLE_MAX / 8 + 1] =
    [NO_ALLOC_ENTRY; classes::C_TABLE_MAX / 8 + 1];

/// The block-start test of a class whose blocks are `chunk` bytes apart
/// from the start of each page, `chunks` of them per page: the multiplier
/// `m` and the bound `t` such that, for `o = a mod PAGE`, `o * m mod 2^64
/// < t` exactly when `o = k * chunk` with `k < chunks`.
///
/// With `m = floor(2^64 / chunk) + 1`, `m * chunk = 2^64 + r` with
/// `1 <= r <= chunk`; so for `o = k * chunk + j` (`0 <= j < chunk`),
/// `o * m ≡ k * r + j * m`: below `chunks * r` when `j = 0` and `k <
/// chunks`, and at least `m` (about `2^64 / chunk`, far above it) when
/// `j > 0`, with no wrap since `o` is below the grid's period (a page, or
/// at most 256 KiB for a hashed class), far below `m`. (Lemire, Kaser and Kurz's
/// divisibility test, with the index bound folded into the compare.) One
/// multiply and one compare: an interior pointer, or one into the slab's
/// record at the end of its page (or past a hashed slab's end), fails it.
/// For an alignment test, `chunk` is the alignment and `chunks = PAGE /
/// align`.
pub const fn start_test(chunk: usize, chunks: usize) -> (u64, u64) {
    let m = ((1u128 << 64) / chunk as u128) as u64 + 1;
    let r = m.wrapping_mul(chunk as u64);
    (m, chunks as u64 * r)
}

/// Bytes of umem-slab's `Slab` record at the end of an in-slab slab (checked
/// against each class cache's [`SlabGrid`] when the class is made).
const SLAB_RECORD: usize = 64;
/// Bytes after the record of a slab of one-word chunks: its free map (a
/// free 8-byte chunk holds the free key and has no room for a link).
const FREE_MAP: usize = 64;

/// The slab grid umem-slab gives class `c` with `FREE_KEY` and no
/// debugging. Below 512 bytes: one-page in-slab slabs, chunks of the class
/// size (a multiple of its alignment) from the page's start, the slab
/// record at its end (and, for the 8-byte class, the slab's free map after
/// it). From 512 bytes: hashed slabs of `umem_slab::hashed_slab_size` bytes
/// (page quantum), aligned to that size rounded up to a power of two (the
/// grid's period), chunks from the slab's start.
pub const fn class_grid(c: usize) -> SlabGrid {
    let size = classes::SIZES[c];
    if size < PAGE / 8 {
        let end = if size == 8 {
            SLAB_RECORD + FREE_MAP
        } else {
            SLAB_RECORD
        };
        return SlabGrid {
            slab_size: PAGE,
            chunk_size: size,
            chunks: (PAGE - end) / size,
        };
    }
    let s = match umem_slab::hashed_slab_size(size, PAGE) {
        Some(s) => s,
        None => panic!("class too large for a slab"),
    };
    SlabGrid {
        slab_size: s.next_power_of_two(),
        chunk_size: size,
        chunks: s / size,
    }
}

/// The `FREE_TABLE`: per page-map top byte, four words in four arrays (so
/// that one base register and the byte, scaled by 8, reach all four): the
/// class cache's [`InlineIndex`] word and the three words of the class's
/// block-start test: the grid's period mask and [`start_test`]'s
/// multiplier and bound, read as memory operands of the hit's `and`,
/// `imul` and `cmp`. The index is a whole word, so the hit loads it with
/// no zero-extension. A byte of no class has a test no address passes (so
/// the hit misses). The test words are constants, from [`class_grid`]
/// (which [`publish`] checks against each class cache's grid), but for the
/// bound of a class made under debugging, which [`publish`] sets to 0 (no
/// address passes: the hit never touches a debug block).
#[repr(C, align(64))]
struct FreeTable {
    ii: [AtomicUsize; 256],
    mask: [u64; 256],
    mul: [u64; 256],
    bound: UnsafeCell<[u64; 256]>,
}

// SAFETY: `ii` is atomic and `mask`/`mul` are never written. `bound` is
// written only by `publish`, under the class lock, for the class being made,
// before any block of that class exists; it is read by `FreeSlot::is_start`
// for a pointer being freed, and a slot of class `c` is reached only through
// a page-map entry or a region stripe of class `c`. A block of class `c`
// reaches `free` through the program's own hand-over from the `malloc` that
// returned it, which came after `publish` (that allocation found the class
// made): the write happens-before the read, as for the page map's entries.
// A pointer umem never handed out that falls in class `c`'s stripe before
// the class is made is undefined behaviour of the program (`free` of a
// pointer no allocator returned).
unsafe impl Sync for FreeTable {}

/// A class's place in the `FREE_TABLE` (a page-map top byte: `0x40 | c`
/// for class `c`, anything else for no class).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeSlot(usize);

impl FreeSlot {
    /// The class cache's inline index ([`InlineIndex::MISS`] for a slot of
    /// no class, or of a class not made yet).
    #[inline(always)]
    pub fn inline_index(self) -> InlineIndex {
        // SAFETY: `self.0 < 256` (every constructor masks it so); the word
        // was stored from an `InlineIndex`'s `word` by `publish`, or is 0.
        unsafe {
            InlineIndex::from_word(FREE_TABLE.ii.get_unchecked(self.0).load(Ordering::Relaxed))
        }
    }

    /// Whether `a` may be a block of the class: exactly its block starts
    /// (offset in the grid's period a multiple of the chunk size, below the
    /// chunks' end; see [`start_test`]).
    #[inline(always)]
    pub fn is_start(self, a: usize) -> bool {
        // SAFETY: `self.0 < 256`, as in `inline_index`; the bound is read in
        // place with a plain load, ordered after its one write (`FreeTable`'s
        // Sync impl).
        let (k, m, t) = unsafe {
            (
                *FREE_TABLE.mask.get_unchecked(self.0),
                *FREE_TABLE.mul.get_unchecked(self.0),
                FREE_TABLE.bound.get().cast::<u64>().add(self.0).read(),
            )
        };
        (a as u64 & k).wrapping_mul(m) < t
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_II: AtomicUsize = AtomicUsize::new(0);

const fn build_free_table() -> FreeTable {
    let mut mask = [0; 256];
    let mut mul = [0; 256];
    let mut bound = [0; 256];
    let mut c = 0;
    while c < classes::COUNT {
        let (k, m, b) = MISS_TEST[c];
        let i = PageEntry::small(c).free_table_index();
        mask[i] = k;
        mul[i] = m;
        bound[i] = b;
        c += 1;
    }
    FreeTable {
        ii: [NO_II; 256],
        mask,
        mul,
        bound: UnsafeCell::new(bound),
    }
}

/// Per class, its exact block-start test (mask, multiplier, bound), as the
/// miss path applies it (the hit's is the same, unless `publish` turned the
/// class's hit off).
const MISS_TEST: [(u64, u64, u64); classes::COUNT] = {
    let mut t = [(0u64, 0u64, 0u64); classes::COUNT];
    let mut c = 0;
    while c < classes::COUNT {
        let g = class_grid(c);
        let (m, b) = start_test(g.chunk_size, g.chunks);
        t[c] = (g.slab_size as u64 - 1, m, b);
        c += 1;
    }
    t
};

/// Whether `a` is a block start of class `c` (the miss path's test: exact
/// for every class, the one-block ones included).
#[inline]
pub fn is_block_start(c: usize, a: usize) -> bool {
    let (k, m, b) = MISS_TEST[c];
    (a as u64 & k).wrapping_mul(m) < b
}

/// By a page-map entry's top byte: class `c`'s words at `0x40 | c`, a
/// slot of no class for every other byte.
static FREE_TABLE: FreeTable = build_free_table();
const _: () = assert!(classes::COUNT <= 64);

/// Class `c`'s [`FreeSlot`] (`0x40 | c`).
#[inline(always)]
pub fn free_entry_of(c: usize) -> FreeSlot {
    FreeSlot(PageEntry::small(c & 63).free_table_index() & 255)
}

/// The [`FreeSlot`] for a page whose entry is `e` (a slot of no class
/// unless `e` is a small-class entry).
#[inline(always)]
pub fn free_entry_at(e: PageEntry) -> FreeSlot {
    FreeSlot(e.free_table_index() & 255)
}

/// The block-start test of the class whose cache has inline index word
/// `w`, as a row of 64 bytes (one `InlineIndex` stride) so that the word
/// itself is the row's byte offset in `FREE_ROWS`: the region hit goes from
/// the slab map's word to the test with no scaling and no class number
/// (`region::inline_word`). Row 0 (the index that always misses, the slab
/// map's word where no slab lives) and the rows of no class cache have a
/// test no address passes.
#[repr(C, align(64))]
struct FreeRow {
    mask: u64,
    mul: u64,
    bound: u64,
}
const _: () = assert!(core::mem::size_of::<FreeRow>() == umem_slab::INLINE_STRIDE);

/// `FREE_ROWS`: one [`FreeRow`] per inline slot, filled by [`publish`].
#[repr(C, align(64))]
struct FreeRows(UnsafeCell<[FreeRow; umem_slab::INLINE_END / umem_slab::INLINE_STRIDE]>);

// SAFETY: a row is written only by `publish`, once, under the class lock,
// for the class being made, bound last; the hit reads a row only for a word
// the slab map holds, which a slab's birth wrote, and a block of the slab
// reaches `free` through the program's hand-over from the `malloc` that
// found the class made (after `publish`): the write happens-before the
// read. A row read while it is written (a free of a pointer no allocation
// returned, racing with the class's making) has bound 0: a miss.
unsafe impl Sync for FreeRows {}

static FREE_ROWS: FreeRows = {
    const R: FreeRow = FreeRow {
        mask: 0,
        mul: 0,
        bound: 0,
    };
    FreeRows(UnsafeCell::new(
        [R; umem_slab::INLINE_END / umem_slab::INLINE_STRIDE],
    ))
};

/// Whether `a` passes the block-start test of the class whose cache has
/// inline index word `w` (a slab-map word: `region::inline_word`). Always
/// false for `w` = 0 (no slab lives on the page) and for a class whose hit
/// is off.
///
/// # Safety
/// `w` is an `InlineIndex` word (a multiple of `umem_slab::INLINE_STRIDE`
/// below `umem_slab::INLINE_END`): what the slab map holds.
#[inline(always)]
pub unsafe fn row_is_start(w: usize, a: usize) -> bool {
    // SAFETY: by the caller, `w` is a row's byte offset in FREE_ROWS; rows
    // are read in place (see `FreeRows`' Sync).
    let r = unsafe { &*(FREE_ROWS.0.get().cast::<u8>().add(w) as *const FreeRow) };
    (a as u64 & r.mask).wrapping_mul(r.mul) < r.bound
}

/// The *free key* (issue 11, defect 4): `umem_slab::FREE_KEY_WORD`,
/// written into the first word of every small block when it is freed and
/// cleared when it is handed out, so that a free finding it already there
/// takes the slow check for a double free (`free.rs`). The class caches are
/// made with `CacheFlags::FREE_KEY`, which marks never-allocated chunks
/// with it too. A constant (a 32-bit immediate to the hit path's compare
/// and store); see `FREE_KEY_WORD` for why it need not be secret.
#[inline(always)]
pub fn free_key() -> usize {
    umem_slab::FREE_KEY_WORD
}

/// The inline index of the cache of `malloc` size `size`'s class
/// (`size <= C_TABLE_MAX`; [`InlineIndex::MISS`] until the class is made).
#[inline(always)]
pub fn alloc_index(size: usize) -> InlineIndex {
    debug_assert!(size <= classes::C_TABLE_MAX);
    let w = ALLOC_TABLE[(size + 7) >> 3].load(Ordering::Relaxed);
    // SAFETY: ALLOC_TABLE holds `InlineIndex` words (`publish`) or 0.
    unsafe { InlineIndex::from_word(w) }
}

/// Fills class `c`'s entries, once its cache (inline index `ii`, slab grid
/// `grid`; `debug`: made with umem-slab's debug layout) exists. Without
/// debugging its grid must be the one the block-start test assumes
/// ([`class_grid`]): anything else aborts here rather than refuse good
/// frees later. (A debug cache never hits; its frees take the miss path,
/// which tests by the cache's real grid.) `no_hit` (any `UMEM_DEBUG` or
/// `UMEM_LOGGING` word: every allocation and free takes `debug.rs`): no
/// address passes the class's free block-start test, so the free hit misses
/// at once and never writes its free key into a block (the key goes in
/// before the push, which `ii` = MISS would fail).
///
/// Called under `caches::CLASS_LOCK`, once per class, before any block of
/// the class exists.
pub fn publish(c: usize, ii: InlineIndex, grid: Option<SlabGrid>, debug: bool, no_hit: bool) {
    if !debug && grid != Some(class_grid(c)) {
        crate::sys::fatal(format_args!(
            "umem: class {}: slab grid {grid:?} is not the hit table's {:?}",
            classes::NAMES[c],
            class_grid(c)
        ));
    }
    if no_hit {
        // SAFETY: see `FreeTable`'s Sync: the one writer of this class's
        // bound (under the class lock), before any block of the class
        // exists; `free_entry_of` masks the index below 256.
        unsafe {
            FREE_TABLE
                .bound
                .get()
                .cast::<u64>()
                .add(free_entry_of(c).0)
                .write(0)
        };
    }
    FREE_TABLE.ii[free_entry_of(c).0].store(ii.word(), Ordering::Relaxed);
    if ii != InlineIndex::MISS {
        let (mask, mul, bound) = MISS_TEST[c];
        // SAFETY: see `FreeRows`' Sync: the one writer of this index's row
        // (the class lock is held; the index is the new cache's alone),
        // before any slab of the class exists; `ii` is below INLINE_END.
        // The bound last: a row read half-written has bound 0 (no address
        // passes), never a bound with no mask and multiplier.
        unsafe {
            let r = FREE_ROWS
                .0
                .get()
                .cast::<FreeRow>()
                .add(ii.word() / umem_slab::INLINE_STRIDE);
            ptr::write_volatile(&raw mut (*r).mask, mask);
            ptr::write_volatile(&raw mut (*r).mul, mul);
            core::sync::atomic::fence(Ordering::Release);
            ptr::write_volatile(&raw mut (*r).bound, if no_hit { 0 } else { bound });
        };
    }
    for (g, h) in ALLOC_TABLE.iter().enumerate() {
        if classes::size_class(g * 8) == c {
            h.store(ii.word(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_slots_start_empty() {
        // A slot of no class, or of a class not made yet: the inline index
        // always misses.
        assert_eq!(FreeSlot(0).inline_index(), InlineIndex::MISS);
        assert_eq!(FreeSlot(255).inline_index(), InlineIndex::MISS);
        assert_eq!(free_entry_at(PageEntry::NONE), FreeSlot(0));
        assert_eq!(free_entry_of(3), free_entry_at(PageEntry::small(3)));
    }

    #[test]
    fn block_start_test_is_exact() {
        // A slot of no class fails every test (a miss).
        assert!(!FreeSlot(0).is_start(0x1000));
        struct Test(u64, u64);
        impl Test {
            fn is_start(&self, a: usize) -> bool {
                ((a & (PAGE - 1)) as u64).wrapping_mul(self.0) < self.1
            }
        }
        let slot = |(m, t): (u64, u64)| Test(m, t);
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
        // The table holds every class's test, exact over its grid's period
        // (a page below 512 bytes; the hashed classes' power of two).
        for c in 0..classes::COUNT {
            let g = class_grid(c);
            assert!(g.slab_size.is_power_of_two() && g.chunks >= 1);
            assert!(g.chunks * g.chunk_size <= g.slab_size);
            let e = free_entry_of(c);
            let step = if g.slab_size > PAGE { 8 } else { 1 };
            for base in [0x7f00_0000_0000usize, 0x4000_0000] {
                for o in (0..2 * g.slab_size).step_by(step) {
                    let p = o % g.slab_size;
                    let want = p % g.chunk_size == 0 && p / g.chunk_size < g.chunks;
                    assert_eq!(is_block_start(c, base + o), want, "class {c} offset {o}");
                    // The hit: the same.
                    assert_eq!(e.is_start(base + o), want, "class {c} offset {o}");
                }
            }
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
