//! The allocation path (libumem's `umem_alloc` and `malloc`): the magazine
//! hit inline, everything else out of line.
//!
//! * hit: [`c_alloc_hit`] (C sizes up to 1 KiB: one `ALLOC_TABLE` load) or
//!   the class's `FREE_TABLE` entry ([`alloc`]), then `umem_slab::hit_alloc`;
//! * miss (`*_miss`): the class's cache past its magazines;
//! * slow (`alloc_slow`): initialisation, the bootstrap arena during it, a
//!   class's first allocation, large blocks.

use crate::arenas::{self, FAILED};
use crate::caches::{self, ClassCache};
use crate::hit_tables;
use crate::init::ensure_init;
use crate::sys::no_unwind;
use crate::{boot, classes, debug, debug_options, large, reclaim};
use core::ptr::null_mut;
use core::sync::atomic::Ordering;
use umem_slab::InlineIndex;

/// Allocates `size` bytes aligned to `align` (a power of two). Null on
/// failure. The block is zeroed when `zero`.
///
/// As in [`c_alloc`], only the magazine hit is inline.
#[inline(always)]
pub fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    if let Some(c) = classes::layout_class(size, align) {
        if let Some(p) = hit_alloc_at(hit_tables::free_entry_of(c).inline_index()) {
            return zeroed_if(p, size, zero);
        }
    }
    alloc_miss(size, align, zero)
}

/// The magazine hit at the inline index `ii` (from a hit table).
///
/// The block's first word is cleared: it held the free key (`free.rs`).
#[inline(always)]
fn hit_alloc_at(ii: InlineIndex) -> Option<*mut u8> {
    // SAFETY: the hit tables hold inline indices of the class caches (or
    // MISS), stored when each class's cache is made; a block handed out is
    // ours to write.
    unsafe { umem_slab::hit_alloc(ii).map(|a| unclaim(a as *mut u8)) }
}

/// The rest of the per-CPU hit at the inline index `ii`, which the miss
/// paths try first: the CPU's loaded magazine again, then its previous
/// one (`umem_slab::cpu_hit_alloc`). `None` per thread, for `MISS` (every
/// index under `UMEM_DEBUG`) and when the CPU's magazines are empty.
#[inline(always)]
fn cpu_hit_alloc_at(ii: InlineIndex) -> Option<*mut u8> {
    // SAFETY: as in hit_alloc_at.
    unsafe { umem_slab::cpu_hit_alloc(ii).map(|a| unclaim(a as *mut u8)) }
}

/// Clears the free key from the first word of block `p`, just handed out.
///
/// # Safety
/// `p` is a fresh block of a class cache (at least 8 bytes).
#[inline(always)]
unsafe fn unclaim(p: *mut u8) -> *mut u8 {
    // SAFETY: by the caller.
    unsafe { *(p as *mut usize) = 0 };
    p
}

/// `p`, a fresh block of at least `size` bytes (or null), zeroed when
/// `zero`.
#[inline(always)]
fn zeroed_if(p: *mut u8, size: usize, zero: bool) -> *mut u8 {
    if zero && !p.is_null() {
        // SAFETY: a fresh block of at least `size` bytes.
        unsafe { core::ptr::write_bytes(p, 0, size) };
    }
    p
}

/// A block of `size` bytes from cache `k` past the magazine hit (or null),
/// zeroed when `zero`.
#[inline(always)]
fn cache_alloc(k: ClassCache, size: usize, zero: bool) -> *mut u8 {
    // SAFETY: a fresh block of the class cache.
    let p = k.alloc().map_or(null_mut(), |p| unsafe { unclaim(p) });
    zeroed_if(p, size, zero)
}

/// Class `c`'s block from its cache, past the magazine hit; `None` when the
/// cache does not exist (yet).
#[inline(always)]
fn class_alloc(c: usize, size: usize, zero: bool) -> Option<*mut u8> {
    caches::class_cache(c).map(|k| cache_alloc(k, size, zero))
}

/// [`alloc`] past the magazine hit.
#[inline(never)]
fn alloc_miss(size: usize, align: usize, zero: bool) -> *mut u8 {
    if debug_options::debug_path() {
        return no_unwind(|| debug::alloc(size, align, zero));
    }
    if let Some(c) = classes::layout_class(size, align) {
        if let Some(p) = cpu_hit_alloc_at(hit_tables::free_entry_of(c).inline_index()) {
            return zeroed_if(p, size, zero);
        }
    }
    no_unwind(|| match alloc_once(size, align, zero) {
        p if p.is_null() => alloc_retry(size, align, zero, false),
        p => p,
    })
}

/// [`alloc_miss`]'s one try.
#[inline(always)]
fn alloc_once(size: usize, align: usize, zero: bool) -> *mut u8 {
    classes::layout_class(size, align)
        .and_then(|c| class_alloc(c, size, zero))
        .unwrap_or_else(|| alloc_slow(size, align, zero))
}

/// An allocation failed (its slab, its class's making, its large block):
/// reap everything that can be reaped (`reclaim.rs`) and try once more, as
/// libumem does when its backend fails. Bounded: one reap, one retry.
#[cold]
#[inline(never)]
fn alloc_retry(size: usize, align: usize, zero: bool, c_abi: bool) -> *mut u8 {
    // A request no block can serve fails without a reap.
    if large::pages_for(size).is_none() || !reclaim::reap_for_retry() {
        return null_mut();
    }
    if c_abi {
        c_alloc_once(size, zero)
    } else {
        alloc_once(size, align, zero)
    }
}

/// [`alloc`] for the C ABI's default alignment (`malloc`, `calloc`): 16
/// bytes, or 8 for a block of at most 8 bytes (`classes.rs`). Every class
/// is aligned so, so the class comes straight from the size table. Only the
/// magazine hit is inline.
#[inline(always)]
pub fn c_alloc(size: usize, zero: bool) -> *mut u8 {
    match c_alloc_hit(size) {
        Some(p) => zeroed_if(p, size, zero),
        None => c_alloc_miss(size, zero),
    }
}

/// The magazine hit of [`c_alloc`] alone (sizes up to 1 KiB; `None`: call
/// [`c_alloc`]). It makes no calls (crate doc, section 2).
#[inline(always)]
pub fn c_alloc_hit(size: usize) -> Option<*mut u8> {
    if size > classes::C_TABLE_MAX {
        return None;
    }
    hit_alloc_at(hit_tables::alloc_index(size))
}

/// The rest of the per-CPU hit of [`c_alloc`] (`None`: call [`c_alloc`]):
/// what a C entry point tries first when [`c_alloc_hit`] missed — the CPU's
/// previous magazine (per thread this is one load and a branch).
#[inline(always)]
pub fn c_alloc_cpu_hit(size: usize) -> Option<*mut u8> {
    if size > classes::C_TABLE_MAX {
        return None;
    }
    cpu_hit_alloc_at(hit_tables::alloc_index(size))
}

/// [`c_alloc`] past the magazine hit: the slow paths, sizes above 1 KiB,
/// and calls before init.
#[inline(never)]
fn c_alloc_miss(size: usize, zero: bool) -> *mut u8 {
    if debug_options::debug_path() {
        // 16 for every size under debugging: an 8-byte request then gets a
        // 16-byte class, whose debug chunk leaves redzone bytes after it, so
        // a one-byte overrun is reported at its byte (the 8-byte class's
        // buftag follows the buffer with no slack).
        return no_unwind(|| debug::alloc(size, 16, zero));
    }
    if let Some(p) = c_alloc_cpu_hit(size) {
        return zeroed_if(p, size, zero);
    }
    no_unwind(|| match c_alloc_once(size, zero) {
        p if p.is_null() => alloc_retry(size, classes::c_align(size), zero, true),
        p => p,
    })
}

/// [`c_alloc_miss`]'s one try.
#[inline(always)]
fn c_alloc_once(size: usize, zero: bool) -> *mut u8 {
    if size <= classes::MAX_SMALL {
        if let Some(p) = class_alloc(classes::size_class(size), size, zero) {
            return p;
        }
    }
    alloc_slow(size, classes::c_align(size), zero)
}

/// Initialisation, the bootstrap arena, a class's first allocation, and
/// large blocks.
#[cold]
#[inline(never)]
fn alloc_slow(size: usize, align: usize, zero: bool) -> *mut u8 {
    if !ensure_init() {
        if arenas::STATE.load(Ordering::Acquire) == FAILED {
            return null_mut();
        }
        return boot::alloc(size, align);
    }
    if debug_options::debug_path() {
        // The process's first allocation, made before UMEM_DEBUG was read.
        return debug::alloc(size, align, zero);
    }
    if let Some(c) = classes::layout_class(size, align) {
        // The class's first allocation (or its cache could not be made).
        return caches::class_or_create(c).map_or(null_mut(), |k| cache_alloc(k, size, zero));
    }
    large::alloc(size, align, zero)
}
