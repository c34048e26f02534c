//! `realloc` for the C ABI (Rust's is in `global_alloc.rs`): in place where
//! the size class or the large block allows, and **reserved room** for
//! blocks that keep growing, so that a buffer grown by small steps is copied
//! a few times instead of at every size class.
//!
//! The room policy ([`room_for_move`]):
//!
//! * a small block that grows gets twice its old size (up to
//!   [`REALLOC_GROW_LARGE`]);
//! * growing to that or more makes it a large block with room
//!   ([`realloc_room`]: 64×, at least 1 MiB, 8× above 1 MiB) to grow in
//!   place — address space only, `MAP_NORESERVE` and untouched — but only
//!   while address space and commit charge are not scarce (no `RLIMIT_AS`,
//!   `vm.overcommit_memory` not 2: `sys::room_is_scarce`). When they are,
//!   the block gets just its size (page count rounded up to a power of two,
//!   so capacity doubles and copies stay amortised O(1)), so reserved room
//!   can never use up what a later allocation needs;
//! * when the room cannot be had, the block is served at its size.
//!
//! Granting room only to blocks that grew twice was measured and rejected:
//! the extra move made `mbench grow` about 15% slower, and where address
//! space is not limited the room costs neither memory nor commit charge.
//! The in-place step is inlined into `realloc` and reads one page-map slot
//! (numbers in `docs/performance.md`).

use crate::alloc::alloc;
use crate::free::{free, owner, FreeError, Owner};
use crate::pagemap;
use crate::sys::{no_unwind, PAGE};
use crate::{boot, classes, large};

/// Growing reallocs at or above this size get a large block (C ABI only:
/// Rust's `dealloc` derives the class from the layout).
pub const REALLOC_GROW_LARGE: usize = 4 * 1024;

/// Capacity reserved for a block that a C `realloc` grows into a large
/// block (when room is not scarce, [`room_for_move`]): 64 times the size
/// and at least 1 MiB up to 1 MiB, 8 times above (at most 1 GiB more).
/// The pages are `MAP_NORESERVE` and untouched until used, so this is
/// address space, not memory; a block that keeps growing is copied about
/// once per 64× (8×) of growth instead of at every power of two.
#[inline]
pub fn realloc_room(size: usize) -> usize {
    if size <= 1 << 20 {
        (size * 64).max(1 << 20)
    } else {
        size.saturating_mul(8).min(size.saturating_add(1 << 30))
    }
}

/// The capacity to ask for when `realloc` moves a block to `size` bytes
/// (at least [`REALLOC_GROW_LARGE`]; see the module comment):
/// [`realloc_room`] unless room is scarce, else `size`.
#[inline]
pub fn room_for_move(size: usize) -> usize {
    if crate::sys::room_is_scarce() {
        size
    } else {
        realloc_room(size)
    }
}

/// Resizes a block (C `realloc` core; `p` non-null, `size` > 0). In place
/// when the size class or the large block allows. `Ok(null)` when memory is
/// exhausted (the old block is untouched); `Err` for a foreign pointer.
///
/// # Safety
/// As for [`free`]; on success the old block must no longer be used.
#[inline]
pub unsafe fn realloc(p: *mut u8, size: usize, align: usize) -> Result<*mut u8, FreeError> {
    if crate::debug_options::debug_path() {
        // SAFETY: by the caller.
        return Ok(no_unwind(|| unsafe {
            crate::debug::realloc(p, size, align)
        }));
    }
    // The in-place cases first, inlined into the caller: a small block
    // whose class still fits, and a large block growing within its room
    // (what a buffer grown by many small reallocs does at every step).
    let a = p as usize;
    let e = pagemap::entry(a);
    if e.is_small() {
        let c = e.small_class();
        let cs = classes::size(c);
        if a & (classes::align(c) - 1) == 0
            && size <= cs
            && size >= cs / 2
            && classes::align(c) >= align
        {
            return Ok(p);
        }
    } else if e.is_large()
        && a & (PAGE - 1) == 0
        && large::resize_in_place(a, e.pages() * PAGE, size)
    {
        return Ok(p);
    }
    // SAFETY: by the caller.
    unsafe { realloc_move(p, size, align) }
}

/// The rest of [`realloc`]: the remaining in-place cases and the moves.
///
/// # Safety
/// As for [`realloc`].
#[inline(never)]
unsafe fn realloc_move(p: *mut u8, size: usize, align: usize) -> Result<*mut u8, FreeError> {
    no_unwind(|| {
        let old = match owner(p) {
            Owner::Small(c) => {
                let cs = classes::size(c);
                if size <= cs && classes::align(c) >= align {
                    match classes::layout_class(size, align) {
                        Some(nc) if nc == c || size >= cs / 2 => return Ok(p),
                        _ => {}
                    }
                }
                cs
            }
            Owner::Large(n) => {
                // Aligned blocks (memalign) come here; their in-place rule is
                // the one in `realloc`.
                if large::resize_in_place(p as usize, n, size) {
                    return Ok(p);
                }
                // The block's usable length (what `malloc_usable_size` said),
                // not its reserved capacity, is what the program may have written.
                large::len_of(p as usize, n)
            }
            // SAFETY: a bootstrap block has its header.
            Owner::Boot => unsafe { boot::size_of(p as usize) },
            Owner::Foreign => return Err(FreeError::InvalidPointer(p as usize)),
        };
        let q = if size > old && size >= REALLOC_GROW_LARGE && align <= PAGE {
            // Past REALLOC_GROW_LARGE: a large block with room to grow in
            // place unless room is scarce (`room_for_move`); `alloc_room`
            // falls back to `size` when the room cannot be had, and when even
            // that fails, reap everything and try once more.
            let room = room_for_move(size);
            let q = large::alloc_room(size, room, align, false);
            if q.is_null() && large::servable(size) && crate::reclaim::reap_for_retry() {
                large::alloc_room(size, room, align, false)
            } else {
                q
            }
        } else if size > old {
            // A small block that grows by realloc is likely to grow again: give
            // it twice its old size (up to REALLOC_GROW_LARGE) so that growth in
            // small steps copies at each doubling, not at every size class.
            // Only blocks that are actually growing pay the extra room.
            let want = size
                .max(old.saturating_mul(2))
                .min(REALLOC_GROW_LARGE.max(size));
            match alloc(want, align, false) {
                q if q.is_null() => alloc(size, align, false),
                q => q,
            }
        } else {
            alloc(size, align, false)
        };
        if q.is_null() {
            return Ok(q);
        }
        // SAFETY: both blocks are live and distinct; `min(old, size)` bytes are
        // inside both.
        unsafe {
            core::ptr::copy_nonoverlapping(p, q, old.min(size));
            free(p)?;
        }
        Ok(q)
    })
}
