//! The free path (libumem's `umem_free` and `free`) and how it finds a
//! block's owner with no size and no header.
//!
//! * hit ([`free_hit`]): the class from the address (region) or from the
//!   page map's top byte, the class's `FREE_TABLE` entry (alignment test,
//!   inline index), then `umem_slab::hit_free`;
//! * miss (`free_miss`): the page map's small-class entry, the class's
//!   cache past its magazines;
//! * slow (`free_slow`): large blocks, bootstrap blocks, foreign pointers.
//!
//! Rust's `dealloc` knows the layout: [`free_sized`] takes the class from
//! it and reads the page map only for large blocks (and, with debug
//! assertions, to check the layout). [`owner`] classifies any pointer for
//! the out-of-line paths (`usable_size`, `realloc`).

use crate::caches;
use crate::hit_tables;
use crate::pagemap::{self, PageKind};
use crate::region;
use crate::sys::{self, no_unwind, PAGE};
use crate::{boot, classes, large};

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
        if free_hit(p) {
            return Ok(());
        }
        free_miss(p)
    }
}

/// The magazine hit of [`free`] alone: `true` when `p` went onto this
/// thread's magazine, `false` when nothing was done (then call [`free`]).
/// It makes no calls (crate doc, section 2).
///
/// # Safety
/// As for [`free`].
#[inline(always)]
pub unsafe fn free_hit(p: *mut u8) -> bool {
    let a = p as usize;
    let e = match region::stripe_class(a) {
        Some(c) => hit_tables::free_entry_of(c),
        // Outside the region (no region, no stripe left, a large block): by
        // the page map's entry.
        None => {
            let Some(slot) = pagemap::slot(a) else {
                return false;
            };
            hit_tables::free_entry_at(slot.load())
        }
    };
    if e.misaligned(a) {
        return false;
    }
    // SAFETY: `a` is in one of class c's stripes, which only class c's
    // arena imports from, or on a page the page map gives to class c; and
    // aligned like its buffers: by the caller's contract a block of class c
    // (region.rs says what this trusts). The entry holds the class cache's
    // inline index (or MISS).
    unsafe { umem_slab::hit_free(e.inline_index(), a) }
}

/// [`free`] past the magazine hit.
///
/// # Safety
/// As for [`free`].
#[inline(never)]
unsafe fn free_miss(p: *mut u8) -> Result<(), FreeError> {
    no_unwind(|| {
        let a = p as usize;
        let e = pagemap::entry(a);
        if e.is_small() {
            // Every buffer of class c is aligned to the class's alignment,
            // so a misaligned pointer is certainly not a block start.
            let c = e.small_class();
            if a & (classes::align(c) - 1) == 0 {
                if let Some(k) = caches::class_cache(c) {
                    // SAFETY: the page belongs to class c's slabs and `a` is
                    // aligned like its buffers.
                    unsafe { k.free(p) };
                    return Ok(());
                }
            }
            return Err(FreeError::InvalidPointer(a));
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
        Owner::Foreign => None,
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
            && !(matches!(owner(p), Owner::Small(pc) if pc == c) || boot::owns(p as usize))
        {
            layout_mismatch(p, size, align);
        }
        // Blocks of the bootstrap arena (handed out during init) are never
        // freed: they must not reach a magazine or a slab.
        if boot::owns(p as usize) {
            return;
        }
        let ii = hit_tables::free_entry_of(c).inline_index();
        // SAFETY: the caller's contract: a block of class c; the entry holds
        // that class cache's inline index (or MISS).
        if unsafe { umem_slab::hit_free(ii, p as usize) } {
            return;
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
        if let Some(k) = classes::layout_class(size, align).and_then(caches::class_cache) {
            // SAFETY: the caller's contract: a block of the class's cache.
            unsafe { k.free(p) };
            return;
        }
        if let Err(FreeError::InvalidPointer(a)) = free_slow(p) {
            sys::fatal(format_args!(
                "umem: dealloc(): invalid pointer {a:#x} (size {size}, align {align})"
            ));
        }
    })
}
