//! The free path (libumem's `umem_free` and `free`) and how it finds a
//! block's owner with no size and no header.
//!
//! * hit ([`free_hit`]): the class from the region's slab map or from the
//!   page map's top byte, the class's `FREE_TABLE` entry (block-start test,
//!   inline index), the free key, then `umem_slab::hit_free`;
//! * miss (`free_miss`): the page map's small-class entry, the same tests
//!   (aborting now), the class's cache past its magazines;
//! * slow (`free_slow`): large blocks, bootstrap blocks, foreign pointers.
//!
//! Rust's `dealloc` knows the layout: [`free_sized`] takes the class from
//! it and reads the page map only for large blocks (and, with debug
//! assertions, to check the layout). [`owner`] classifies any pointer for
//! the out-of-line paths (`usable_size`, `realloc`).
//!
//! **Bad frees of small blocks** (issue 11, defect 4) abort with a message
//! naming the pointer and the class, in the default mode:
//! * *interior pointers*: the block-start test of the class's hit-table
//!   entry (`hit_tables::FreeSlot::is_start`): exact for every class (an
//!   `and`, a multiply and a compare with constant table words, in place of
//!   the alignment test it replaces): one-page colour-free slabs below 512
//!   bytes, hashed slabs aligned to their size rounded up to a power of two
//!   from 512 bytes;
//! * *double frees*: a freed block's first word gets the free key
//!   (`hit_tables::free_key`, `umem_slab::FREE_KEY_WORD`), cleared when the block
//!   is handed out again; a free that finds the key there takes
//!   `Cache::check_free`, which looks for the block in the thread's
//!   magazines, the depot and its slab's free list, and aborts if it is
//!   there (else the user's data matched the key by chance: the free goes
//!   on). Never-allocated chunks start with the key (`FREE_KEY` caches), so
//!   a free of one is caught the same way. The hit writes the key
//!   before its push; when the magazines have no room it answers
//!   `FreeHit::Marked` and the caller frees the block past the checks
//!   ([`free_marked`]), so no miss ever finds its own key. With per-CPU
//!   magazines (the default) `free_marked` tries the CPU's previous
//!   magazine first.
//!
//! * *frees where no slab lives* (a double free after the block's slab
//!   went back, its page perhaps discarded, key and all; a wild pointer
//!   into free class memory): the class caches' slab watch marks each
//!   slab's pages live while the slab exists and dead before and after
//!   (`caches::slab_watch`), in the page map and in the region's slab map.
//!   The hit reads one or the other to find the class, and a dead page
//!   gives it a slot on which it misses; the miss finds the dead entry and
//!   aborts (`dead_free`).
//!
//! Large blocks: their page-map entry is cleared on free, so a second free
//! or a free of an interior address finds no block start and is refused.

use crate::caches;
use crate::free_check::{check_and_mark, dead_free};
use crate::hit_tables;
use crate::pagemap::{self, PageKind};
use crate::region;
use crate::sys::{self, no_unwind, PAGE};
use crate::{boot, classes, debug, debug_large, debug_options, large};

/// What kind of pointer `p` is: by the page map, or `Boot`/`Foreign`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// In a slab of this size class.
    Small(usize),
    /// The start of a large block of this many bytes (its capacity).
    Large(usize),
    /// A bootstrap block.
    Boot,
    /// Not a pointer umem handed out.
    Foreign,
}

/// Classifies `p` by the page map.
#[inline]
pub fn owner(p: *const u8) -> Owner {
    let a = p as usize;
    match pagemap::lookup(a) {
        PageKind::Small(c) if a & (classes::align(c) - 1) == 0 => Owner::Small(c),
        PageKind::Large(n) | PageKind::Aligned(n) if a & (PAGE - 1) == 0 => Owner::Large(n * PAGE),
        _ if boot::owns(a) => Owner::Boot,
        _ => Owner::Foreign,
    }
}

/// Why a pointer could not be freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// umem did not hand out this pointer (or it is not a block's start).
    InvalidPointer(usize),
}

/// Frees a block without knowing its size (C `free`). `Err` for a pointer
/// umem does not own; the memory is then left alone.
///
/// # Safety
/// `p` is null, or a block umem handed out and not freed since, or any
/// other pointer umem never handed out (that is detected and refused).
#[inline(always)]
pub unsafe fn free(p: *mut u8) -> Result<(), FreeError> {
    // SAFETY: by the caller.
    unsafe {
        match free_hit(p) {
            FreeHit::Done => Ok(()),
            FreeHit::Miss => free_miss(p),
            FreeHit::Marked => {
                free_marked(p);
                Ok(())
            }
        }
    }
}

/// What [`free_hit`] did with a pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeHit {
    /// It went onto this thread's magazine: done.
    Done,
    /// Nothing was done: call [`free`] (which checks and frees, or refuses).
    Miss,
    /// A block of a made class that passed every check and now holds the
    /// free key, but the magazines had no room: call [`free_marked`].
    Marked,
}

/// The magazine hit of [`free`] alone ([`FreeHit`] says what was done and
/// what to call next). It makes no calls (crate doc, section 2).
///
/// # Safety
/// As for [`free`].
#[inline(always)]
pub unsafe fn free_hit(p: *mut u8) -> FreeHit {
    let a = p as usize;
    // In the region: by the slab map's word, the class cache's inline index
    // where a slab of the class lives (0 where none does, on which every
    // test fails).
    if let Some(w) = region::inline_word(a) {
        // SAFETY: a slab-map word is an inline index word.
        if !unsafe { hit_tables::row_is_start(w, a) } {
            return FreeHit::Miss;
        }
        // SAFETY: `a` is a chunk start of the slab grid of the class whose
        // live slab is on its page (the map names its cache): by the
        // caller's contract a block of that class (region.rs says what this
        // trusts); `w` is its cache's inline index.
        return unsafe { mark_and_push(umem_slab::InlineIndex::from_word(w), a) };
    }
    // Outside the region (no region, no stripe left, a large block): by the
    // page map's entry.
    let Some(slot) = pagemap::slot(a) else {
        return FreeHit::Miss;
    };
    let e = hit_tables::free_entry_at(slot.load());
    if !e.is_start(a) {
        return FreeHit::Miss;
    }
    // SAFETY: `a` is on a page the page map gives to a live slab of class
    // c, and a chunk start of its slab grid: by the caller's contract a
    // block of class c. The slot holds the class cache's inline index (or
    // MISS).
    unsafe { mark_and_push(e.inline_index(), a) }
}

/// The free key test and the magazine push of a hit: [`FreeHit::Miss`]
/// (block unchanged) when block `a`'s first word holds the free key already
/// (perhaps a double free: the miss path checks); else it marks the block
/// with the key and pushes it: [`FreeHit::Done`], or [`FreeHit::Marked`]
/// when the magazines have no room (the key stays: [`free_marked`] frees
/// the block past its checks, so no miss finds its own key). The key goes
/// in before the push, so the hit needs no register for it and no second
/// path after the push.
///
/// # Safety
/// `a` is a block start of the class whose cache's inline index is `ii`,
/// and the caller's to free: its first word is readable and, once pushed,
/// ours to mark.
#[inline(always)]
unsafe fn mark_and_push(ii: umem_slab::InlineIndex, a: usize) -> FreeHit {
    let key = hit_tables::free_key();
    let w = a as *mut usize;
    // SAFETY: by the caller.
    unsafe {
        if *w == key {
            return FreeHit::Miss;
        }
        *w = key;
        if umem_slab::hit_free(ii, a) {
            FreeHit::Done
        } else {
            FreeHit::Marked
        }
    }
}

/// Frees a block that [`free_hit`] answered [`FreeHit::Marked`] for: it
/// passed the block-start and free-key checks and holds the key; its class
/// cache takes it past the magazine hit.
///
/// # Safety
/// `p` had [`FreeHit::Marked`] from [`free_hit`] just now.
#[inline(never)]
pub unsafe fn free_marked(p: *mut u8) {
    no_unwind(|| {
        if debug_options::debug_path() {
            // Not reached under debugging (`hit_tables::publish` gives the
            // hit no block start to pass, so it never marks a debug block);
            // should a hit mark one anyway, the debug path frees it (a marked
            // block reads as allocated to its checks). SAFETY: by the caller.
            unsafe { debug::free(p) };
            return;
        }
        let a = p as usize;
        let c = match region::stripe_class(a) {
            Some(c) => c,
            None => pagemap::entry(a).small_class(),
        };
        // The rest of the per-CPU hit (`umem_slab::cpu_hit_free`): the
        // CPU's previous magazine, which the inline hit does not try.
        // SAFETY: a checked block start of class c holding the key, not free;
        // the slot holds that class cache's inline index (or MISS).
        if unsafe { umem_slab::cpu_hit_free(hit_tables::free_entry_of(c).inline_index(), a) } {
            return;
        }
        let Some(k) = caches::class_cache(c) else {
            sys::fatal(format_args!("umem: free({a:#x}): class {c} has no cache"));
        };
        // SAFETY: a checked block start of class c, not free (free_hit).
        unsafe { k.free(p) };
    })
}

/// [`free`] past the magazine hit: what to call when [`free_hit`]
/// answered [`FreeHit::Miss`] (it does not try the hit again).
///
/// # Safety
/// As for [`free`].
#[inline(never)]
pub unsafe fn free_miss(p: *mut u8) -> Result<(), FreeError> {
    no_unwind(|| {
        if debug_options::debug_path() {
            // SAFETY: by the caller.
            unsafe { debug::free(p) };
            return Ok(());
        }
        let a = p as usize;
        let e = pagemap::entry(a);
        if e.is_small() {
            // Every buffer of class c is aligned to the class's alignment,
            // so a misaligned pointer is certainly not a block start.
            let c = e.small_class();
            if a & (classes::align(c) - 1) == 0 {
                if let Some(k) = caches::class_cache(c) {
                    check_and_mark("free", a, c, k, true);
                    // SAFETY: the page belongs to class c's slabs and `a` is
                    // a block start of it that is not free (checked above).
                    unsafe { k.free(p) };
                    return Ok(());
                }
            }
            return Err(FreeError::InvalidPointer(a));
        }
        if let Some(c) = e.dead_class() {
            dead_free("free", a, c);
        }
        free_slow(p)
    })
}

/// Null, large blocks, bootstrap blocks (ignored) and foreign pointers.
#[cold]
fn free_slow(p: *mut u8) -> Result<(), FreeError> {
    let a = p as usize;
    if p.is_null() {
        return Ok(());
    }
    match pagemap::lookup(a) {
        e @ (PageKind::Large(_) | PageKind::Aligned(_)) if a & (PAGE - 1) == 0 => {
            large::free(a, e);
            Ok(())
        }
        _ if boot::owns(a) => Ok(()),
        _ => Err(FreeError::InvalidPointer(a)),
    }
}

/// Usable size of a block umem handed out; `None` for a foreign pointer.
pub fn usable_size(p: *const u8) -> Option<usize> {
    match owner(p) {
        Owner::Small(c) => Some(classes::size(c)),
        Owner::Large(n) => Some(large::len_of(p as usize, n)),
        // SAFETY: a bootstrap block has its header.
        Owner::Boot => Some(unsafe { boot::size_of(p as usize) }),
        Owner::Foreign => debug_large::lookup(p as usize).map(|b| match b.kind {
            debug_large::Kind::Firewall => b.size,
            _ => b.len,
        }),
    }
}

/// Frees a block whose layout is known (Rust `dealloc`).
///
/// # Safety
/// `p` must have been returned by `alloc` (or `Umem`) with this size and
/// alignment, and not freed since.
#[inline(always)]
pub unsafe fn free_sized(p: *mut u8, size: usize, align: usize) {
    if let Some(c) = classes::layout_class(size, align) {
        // With debug assertions, check the layout against the page map and
        // abort with a message (as libumem's debug mode does for a bad
        // free; a panic here would unwind out of `dealloc`).
        if cfg!(debug_assertions)
            && !debug_options::debug_path()
            && !(matches!(owner(p), Owner::Small(pc) if pc == c) || boot::owns(p as usize))
        {
            layout_mismatch(p, size, align);
        }
        // Blocks of the bootstrap arena (handed out during init) are never
        // freed: they must not reach a magazine or a slab.
        if boot::owns(p as usize) {
            return;
        }
        let e = hit_tables::free_entry_of(c);
        let a = p as usize;
        // SAFETY: the caller's contract: a block of class c, so its first
        // word is readable and, once pushed, ours to mark; the slot holds
        // that class cache's inline index (or MISS).
        if e.is_start(a) {
            // SAFETY: as above.
            match unsafe { mark_and_push(e.inline_index(), a) } {
                FreeHit::Done => return,
                FreeHit::Miss => {}
                FreeHit::Marked => {
                    // SAFETY: just marked by the hit.
                    unsafe { free_marked(p) };
                    return;
                }
            }
        }
    }
    // SAFETY: by the caller.
    unsafe { free_sized_miss(p, size, align) }
}

#[cold]
#[inline(never)]
fn layout_mismatch(p: *mut u8, size: usize, align: usize) -> ! {
    sys::fatal(format_args!(
        "umem: dealloc({p:p}, size {size}, align {align}) does not match the block"
    ))
}

/// [`free_sized`] past the magazine hit (never with a bootstrap block).
///
/// # Safety
/// As for [`free_sized`].
#[inline(never)]
unsafe fn free_sized_miss(p: *mut u8, size: usize, align: usize) {
    no_unwind(|| {
        if debug_options::debug_path() {
            // SAFETY: by the caller.
            unsafe { debug::free(p) };
            return;
        }
        if let Some(c) = classes::layout_class(size, align) {
            if let Some(k) = caches::class_cache(c) {
                check_and_mark("dealloc", p as usize, c, k, false);
                // SAFETY: the caller's contract: a block of the class's cache
                // (and not a free one: checked above).
                unsafe { k.free(p) };
                return;
            }
        }
        if let Err(FreeError::InvalidPointer(a)) = free_slow(p) {
            sys::fatal(format_args!(
                "umem: dealloc(): invalid pointer {a:#x} (size {size}, align {align})"
            ));
        }
    })
}
