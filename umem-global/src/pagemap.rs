//! The page map: a two-level radix tree from 4 KiB page number to what umem
//! put there, so that `free(ptr)` finds a block's size class or size with
//! no header in front of the block.
//!
//! User addresses on x86-64/aarch64 Linux fit in 48 bits, so a page number
//! has 36 bits: the top 18 index `ROOT` (a static array of leaf pointers,
//! 2 MiB of zero-filled bss of which only the touched entries cost memory),
//! the low 18 index a leaf of 2^18 `u32` entries (1 MiB of lazily touched
//! anonymous memory covering 1 GiB of address space). Leaves are created on
//! first use with a compare-and-swap, cut from chunks of 32 mapped at once,
//! and never freed.
//!
//! Entry values (see [`Entry`]): 0 = not umem's; `SMALL | class` on every
//! page of a span owned by a size-class arena; `LARGE | pages` /
//! `ALIGNED | pages` on the first page of a large block only (its other
//! pages stay 0, so an interior pointer is recognised as invalid).
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

type Leaf = [AtomicU32; LEAF_LEN];

#[allow(clippy::declare_interior_mutable_const)]
const NULL_LEAF: AtomicPtr<Leaf> = AtomicPtr::new(core::ptr::null_mut());
static ROOT: [AtomicPtr<Leaf>; ROOT_LEN] = [NULL_LEAF; ROOT_LEN];

pub const SMALL: u32 = 0x4000_0000;
pub const LARGE: u32 = 0x8000_0000;
pub const ALIGNED: u32 = 0xC000_0000;
pub const TAG: u32 = 0xC000_0000;
/// Largest page count a large-block entry can hold.
pub const MAX_PAGES: usize = (1 << 30) - 1;

/// A decoded page-map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Not memory umem handed out (or not the start of a large block).
    None,
    /// Inside a slab of size class `class`.
    Small(usize),
    /// Start of a large block of `pages` pages from `umem_oversize`.
    Large(usize),
    /// Start of a block of `pages` pages from `umem_memalign`.
    Aligned(usize),
}

#[inline]
fn split(addr: usize) -> Option<(usize, usize)> {
    if addr >> ADDR_BITS != 0 {
        return None;
    }
    let pn = addr >> sys::PAGE_SHIFT;
    Some((pn >> LEAF_BITS, pn & (LEAF_LEN - 1)))
}

/// Whether the map can describe `[addr, addr + len)` (below 2^48).
pub fn in_range(addr: usize, len: usize) -> bool {
    addr.checked_add(len).is_some_and(|e| e <= 1 << ADDR_BITS)
}

/// The raw entry for the page holding `addr`.
#[inline]
pub fn raw(addr: usize) -> u32 {
    slot(addr).map_or(0, |e| e.load(Ordering::Relaxed))
}

/// The slot of the page holding `addr`, if its leaf exists.
#[inline]
pub fn slot(addr: usize) -> Option<&'static AtomicU32> {
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
pub fn lookup(addr: usize) -> Entry {
    decode(raw(addr))
}

#[inline]
pub fn decode(v: u32) -> Entry {
    match v & TAG {
        0 => Entry::None,
        SMALL => Entry::Small(small_class(v)),
        LARGE => Entry::Large((v & !TAG) as usize),
        _ => Entry::Aligned((v & !TAG) as usize),
    }
}

/// Leaves are cut from chunks of [`POOL_LEAVES`] leaves mapped at once
/// (address space: a leaf's pages cost memory only once written), so a
/// process whose classes are spread over the class region — one leaf per
/// class's slice — makes one `mmap` per 32 leaves instead of one per leaf.
const POOL_LEAVES: usize = 32;
const LEAF_BYTES: usize = core::mem::size_of::<Leaf>();

/// The current chunk's unused part, `[next, end)`. A leaf lock: taken last
/// (by `prefork` after every other lock), and nothing is taken under it.
pub static POOL: umem_slab::SpinLock<(usize, usize)> = umem_slab::SpinLock::new((0, 0));

/// A fresh zeroed leaf from the pool; `None` when no memory can be mapped.
fn take_leaf() -> Option<*mut Leaf> {
    let mut p = POOL.lock();
    if p.0 == p.1 {
        let chunk = sys::map(POOL_LEAVES * LEAF_BYTES)?;
        *p = (chunk, chunk + POOL_LEAVES * LEAF_BYTES);
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
    // memory, a valid `[AtomicU32; LEAF_LEN]`.
    Some(unsafe { &*leaf })
}

/// Stores `value` for the page holding `addr`. `false` if the map could not
/// get memory for a leaf or the address is out of range.
pub fn set(addr: usize, value: u32) -> bool {
    let Some((r, l)) = split(addr) else {
        return false;
    };
    match leaf_for(r) {
        Some(leaf) => {
            leaf[l].store(value, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// Stores `value` for every page of `[addr, addr + len)` (page aligned).
pub fn set_range(addr: usize, len: usize, value: u32) -> bool {
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
            leaf[l].store(value, Ordering::Relaxed);
            l += 1;
            a += sys::PAGE;
        }
    }
    true
}

/// Where a small-class entry keeps its class: bits 24..30, just below the
/// tag, so that an entry's top byte alone says "small, class c" (the `free`
/// hit path indexes a 256-entry table by it; every other top byte, of a
/// large block, an aligned block, a noted length or nothing, finds zero).
pub const CLASS_SHIFT: u32 = 24;

/// Encodes a small-class entry (`class < 64`).
pub const fn small(class: usize) -> u32 {
    SMALL | (class as u32) << CLASS_SHIFT
}

/// The class of a small-class entry.
#[inline(always)]
pub const fn small_class(v: u32) -> usize {
    ((v & !TAG) >> CLASS_SHIFT) as usize
}
