//! The page map: a two-level radix tree from 4 KiB page number to what umem
//! put there ([`PageEntry`]), so that `free(ptr)` finds a block's size class
//! or size with no header in front of the block.
//!
//! User addresses on x86-64/aarch64 Linux fit in 48 bits, so a page number
//! has 36 bits: the top 18 index `ROOT` (a static array of leaf pointers,
//! 2 MiB of zero-filled bss of which only the touched entries cost memory),
//! the low 18 index a leaf of 2^18 `u32` entries (1 MiB of lazily touched
//! anonymous memory covering 1 GiB of address space). Leaves are created on
//! first use with a compare-and-swap, cut from chunks of 32 mapped at once,
//! and never freed.
//!
//! What is stored: a small-class entry on every page of a span owned by a
//! size-class arena; a large-block entry on the first page of a large block
//! only, and the block's noted length on its second page (an entry with tag
//! 0, read as "not a block start"); nothing on the other pages, so an
//! interior pointer is recognised as invalid.
//!
//! Writers store an entry before the memory is handed out and clear it
//! before the memory goes back; a reader only looks up pointers it was
//! handed, so relaxed atomics suffice (the hand-over itself orders them).

use crate::sys;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

const ADDR_BITS: u32 = 48;
const LEAF_BITS: u32 = 18;
const ROOT_BITS: u32 = ADDR_BITS - sys::PAGE_SHIFT - LEAF_BITS;
const LEAF_LEN: usize = 1 << LEAF_BITS;
const ROOT_LEN: usize = 1 << ROOT_BITS;

type Leaf = [PageSlot; LEAF_LEN];

#[allow(clippy::declare_interior_mutable_const)]
const NULL_LEAF: AtomicPtr<Leaf> = AtomicPtr::new(core::ptr::null_mut());
static ROOT: [AtomicPtr<Leaf>; ROOT_LEN] = [NULL_LEAF; ROOT_LEN];

/// Largest page count a large-block entry can hold.
pub const MAX_PAGES: usize = (1 << 30) - 1;

/// One page's entry as stored: a `u32` whose top two bits are a tag.
///
/// ```text
///  31 30 29    24 23                 0
/// | 0  0 |             0             |  not umem's (or inside a large block)
/// | 0  0 |      pages (30 bits)      |  2nd page of a large block: its noted length
/// | 0  0 | 0x3fffff << 6 |  class    |  a page of class `class` where no slab lives
/// | 0  1 | class |        0          |  a page of class `class`'s slabs
/// | 1  0 |      pages (30 bits)      |  1st page of a large block (umem_oversize)
/// | 1  1 |      pages (30 bits)      |  1st page of an aligned block (umem_memalign)
/// ```
///
/// The top byte ([`PageEntry::free_table_index`]) is `0x40 | class` for a
/// small-class page and something else for every other entry: `free`'s hit
/// path indexes a 256-entry table by it (`hit_tables::FREE_TABLE`, zero but
/// at the small-class bytes), so it needs no tag test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct PageEntry(u32);

impl PageEntry {
    const TAG: u32 = 0xC000_0000;
    const SMALL: u32 = 0x4000_0000;
    const LARGE: u32 = 0x8000_0000;
    const ALIGNED: u32 = 0xC000_0000;
    /// A dead class page, less its class (see [`PageEntry::dead`]).
    const DEAD: u32 = 0x3FFF_FF00;
    /// Where a small entry keeps its class: bits 24..30, just below the
    /// tag, so that the top byte alone says "small, class c".
    const CLASS_SHIFT: u32 = 24;

    /// Not memory umem handed out.
    pub const NONE: PageEntry = PageEntry(0);

    /// Every page of a span of class `class`'s arena (`class < 64`).
    #[inline(always)]
    pub const fn small(class: usize) -> PageEntry {
        PageEntry(Self::SMALL | (class as u32) << Self::CLASS_SHIFT)
    }
    /// The first page of a large block of `pages` pages from `umem_oversize`
    /// (`pages <= MAX_PAGES`).
    #[inline(always)]
    pub const fn large(pages: usize) -> PageEntry {
        PageEntry(Self::LARGE | pages as u32)
    }
    /// The first page of a block of `pages` pages from `umem_memalign`.
    #[inline(always)]
    pub const fn aligned(pages: usize) -> PageEntry {
        PageEntry(Self::ALIGNED | pages as u32)
    }
    /// A page of class `class`'s arena where no slab lives
    /// (`caches::slab_watch`): tag 0, not a
    /// block start, and its top byte (`0x3f`) finds no class in
    /// `FREE_TABLE`, so `free`'s hit misses and the miss names the class. (A
    /// noted length of `0x3fffff00 | class` pages, some 4 TiB, would read
    /// the same; no block is that large.)
    #[inline(always)]
    pub const fn dead(class: usize) -> PageEntry {
        PageEntry(Self::DEAD | class as u32)
    }
    /// The class of a [`PageEntry::dead`] entry.
    #[inline(always)]
    pub const fn dead_class(self) -> Option<usize> {
        if self.0 & !0x3f == Self::DEAD {
            Some((self.0 & 0x3f) as usize)
        } else {
            None
        }
    }
    /// A large block's second page: its last requested length, `pages`
    /// pages (tag 0: not a block start).
    #[inline(always)]
    pub const fn noted_len(pages: usize) -> PageEntry {
        PageEntry(pages as u32)
    }

    /// Tag `01`: a page of a small class's slabs.
    #[inline(always)]
    pub const fn is_small(self) -> bool {
        self.0 & Self::TAG == Self::SMALL
    }
    /// Tag `10`: the first page of a large block from `umem_oversize`.
    #[inline(always)]
    pub const fn is_large(self) -> bool {
        self.0 & Self::TAG == Self::LARGE
    }
    /// The class of a small entry ([`PageEntry::is_small`]).
    #[inline(always)]
    pub const fn small_class(self) -> usize {
        ((self.0 & !Self::TAG) >> Self::CLASS_SHIFT) as usize
    }
    /// The low 30 bits: the page count of a large or aligned entry, or the
    /// length in pages of a noted-length entry (0: none noted).
    #[inline(always)]
    pub const fn pages(self) -> usize {
        (self.0 & !Self::TAG) as usize
    }
    /// The top byte: `0x40 | class` for a small entry, the index of a zero
    /// `FREE_TABLE` entry for every other.
    #[inline(always)]
    pub const fn free_table_index(self) -> usize {
        (self.0 >> Self::CLASS_SHIFT) as usize
    }

    /// The entry decoded.
    #[inline]
    pub const fn decode(self) -> PageKind {
        match self.0 & Self::TAG {
            0 => PageKind::None,
            Self::SMALL => PageKind::Small(self.small_class()),
            Self::LARGE => PageKind::Large(self.pages()),
            _ => PageKind::Aligned(self.pages()),
        }
    }
}

/// A decoded [`PageEntry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    /// Not memory umem handed out (or not the start of a large block).
    None,
    /// Inside a slab of size class `class`.
    Small(usize),
    /// Start of a large block of `pages` pages from `umem_oversize`.
    Large(usize),
    /// Start of a block of `pages` pages from `umem_memalign`.
    Aligned(usize),
}

/// One page's slot in a leaf.
#[repr(transparent)]
pub struct PageSlot(AtomicU32);

impl PageSlot {
    /// The entry (relaxed: see the module comment).
    #[inline(always)]
    pub fn load(&self) -> PageEntry {
        PageEntry(self.0.load(Ordering::Relaxed))
    }
    /// Stores `e` (relaxed).
    #[inline(always)]
    pub fn store(&self, e: PageEntry) {
        self.0.store(e.0, Ordering::Relaxed)
    }
}

/// The root and leaf indices of `addr`, or `None` above 2^48. (The root
/// index is shifted out first and compared with `ROOT_LEN`: one shift and
/// a compare, where testing `addr >> 48` would take a second shift.)
#[inline(always)]
fn split(addr: usize) -> Option<(usize, usize)> {
    let r = addr >> (sys::PAGE_SHIFT + LEAF_BITS);
    if r >= ROOT_LEN {
        return None;
    }
    Some((r, (addr >> sys::PAGE_SHIFT) & (LEAF_LEN - 1)))
}

/// Whether the map can describe `[addr, addr + len)` (below 2^48).
pub fn in_range(addr: usize, len: usize) -> bool {
    addr.checked_add(len).is_some_and(|e| e <= 1 << ADDR_BITS)
}

/// The entry for the page holding `addr` ([`PageEntry::NONE`] where there
/// is no leaf).
#[inline]
pub fn entry(addr: usize) -> PageEntry {
    slot(addr).map_or(PageEntry::NONE, PageSlot::load)
}

/// The slot of the page holding `addr`, if its leaf exists.
#[inline]
pub fn slot(addr: usize) -> Option<&'static PageSlot> {
    let (r, l) = split(addr)?;
    let leaf = ROOT[r].load(Ordering::Acquire);
    if leaf.is_null() {
        return None;
    }
    // SAFETY: leaves are never freed and `l < LEAF_LEN`.
    Some(unsafe { &(*leaf)[l] })
}

/// The decoded entry for the page holding `addr`.
#[inline]
pub fn lookup(addr: usize) -> PageKind {
    entry(addr).decode()
}

/// Leaves are cut from chunks of [`POOL_LEAVES`] leaves mapped at once
/// (address space: a leaf's pages cost memory only once written), so a
/// process whose memory is spread over the address space (the class region,
/// large blocks, `umem_default`) makes one `mmap` per 32 leaves instead of
/// one per leaf — unless address space or commit is scarce
/// (`sys::room_is_scarce`): then one leaf per `mmap`.
const POOL_LEAVES: usize = 32;
const LEAF_BYTES: usize = core::mem::size_of::<Leaf>();

/// The current chunk's unused part, `[next, end)`. A leaf lock: taken last
/// (by `prefork` after every other lock), and nothing is taken under it.
pub static POOL: umem_slab::SpinLock<(usize, usize)> = umem_slab::SpinLock::new((0, 0));

/// A fresh zeroed leaf from the pool; `None` when no memory can be mapped.
fn take_leaf() -> Option<*mut Leaf> {
    let mut p = POOL.lock();
    if p.0 == p.1 {
        // Where address space or commit is scarce (`RLIMIT_AS`, strict
        // overcommit, which charges these writable pages in full), one leaf
        // at a time: 32 leaves are tens of MiB nobody may ever use.
        let n = if sys::room_is_scarce() {
            1
        } else {
            POOL_LEAVES
        };
        let chunk = sys::map(n * LEAF_BYTES)?;
        *p = (chunk, chunk + n * LEAF_BYTES);
    }
    let leaf = p.0;
    p.0 += LEAF_BYTES;
    Some(leaf as *mut Leaf)
}

/// Puts back a leaf [`take_leaf`] just handed out and nobody saw, if it is
/// still the last one taken (else it stays unused: 1 MiB of address space).
fn untake_leaf(leaf: *mut Leaf) {
    let mut p = POOL.lock();
    if p.0 == leaf as usize + LEAF_BYTES {
        p.0 = leaf as usize;
    }
}

fn leaf_for(r: usize) -> Option<&'static Leaf> {
    let mut leaf = ROOT[r].load(Ordering::Acquire);
    if leaf.is_null() {
        let fresh = take_leaf()?;
        match ROOT[r].compare_exchange(
            core::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => leaf = fresh,
            Err(other) => {
                // Never published: still all zero.
                untake_leaf(fresh);
                leaf = other;
            }
        }
    }
    // SAFETY: non-null leaves point to live, never-freed, zero-initialised
    // memory, a valid `[PageSlot; LEAF_LEN]` (every entry `NONE`).
    Some(unsafe { &*leaf })
}

/// Stores `value` for the page holding `addr`. `false` if the map could not
/// get memory for a leaf or the address is out of range.
pub fn set(addr: usize, value: PageEntry) -> bool {
    let Some((r, l)) = split(addr) else {
        return false;
    };
    match leaf_for(r) {
        Some(leaf) => {
            leaf[l].store(value);
            true
        }
        None => false,
    }
}

/// Stores `value` for every page of `[addr, addr + len)` (page aligned).
pub fn set_range(addr: usize, len: usize, value: PageEntry) -> bool {
    if !in_range(addr, len) {
        return false;
    }
    let mut a = addr;
    let end = addr + len;
    while a < end {
        let (r, mut l) = split(a).unwrap();
        let Some(leaf) = leaf_for(r) else {
            return false;
        };
        while l < LEAF_LEN && a < end {
            leaf[l].store(value);
            l += 1;
            a += sys::PAGE;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_entries_name_their_class_and_miss() {
        for c in 0..64 {
            let e = PageEntry::dead(c);
            assert_eq!(e.dead_class(), Some(c));
            assert_eq!(e.decode(), PageKind::None);
            assert!(!e.is_small());
            assert!(!(0x40..0x80).contains(&e.free_table_index()));
            assert_eq!(PageEntry::small(c).dead_class(), None);
        }
        assert_eq!(PageEntry::NONE.dead_class(), None);
        assert_eq!(PageEntry::noted_len(5).dead_class(), None);
    }

    #[test]
    fn entries_decode_to_what_they_encode() {
        assert_eq!(PageEntry::NONE.decode(), PageKind::None);
        for c in [0, 1, 45, 63] {
            let e = PageEntry::small(c);
            assert!(e.is_small() && !e.is_large());
            assert_eq!(e.decode(), PageKind::Small(c));
            assert_eq!(e.free_table_index(), 0x40 | c);
        }
        for p in [1, 2, 1000, MAX_PAGES] {
            let l = PageEntry::large(p);
            assert!(l.is_large() && !l.is_small());
            assert_eq!(l.decode(), PageKind::Large(p));
            let a = PageEntry::aligned(p);
            assert!(!a.is_large() && !a.is_small());
            assert_eq!(a.decode(), PageKind::Aligned(p));
            let n = PageEntry::noted_len(p);
            assert_eq!((n.decode(), n.pages()), (PageKind::None, p));
            // Only small entries have a top byte in 0x40..0x80.
            for e in [l, a, n] {
                assert!(!(0x40..0x80).contains(&e.free_table_index()));
            }
        }
    }
}
