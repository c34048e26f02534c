//! `umem_alloc`, `umem_zalloc`, `umem_free`, `umem_alloc_align`,
//! `umem_free_align` and `umem_reap`.
//!
//! Blocks come from umem-global through [`Umem`] (`GlobalAlloc`) with the
//! layout `(size, UMEM_ALIGN)`: size classes up to 128 KiB, large blocks
//! above, exactly what `malloc` uses, so `umem_free` knows the block from
//! its size without a lookup (libumem's contract: the size must be the one
//! allocated). `umem_alloc(0, …)` is NULL and `umem_free(NULL, 0)` does
//! nothing, as the man page says. Aligned blocks (`umem_alloc_align`, any
//! power of two; 0 or less than 8 means 8) are freed by address through
//! the page map, since `umem_free_align` is not told the alignment.
//!
//! Under `UMEM_DEBUG` (see the module above) `umem_free` checks the size
//! against the block and `umem_free_align` checks that the block is umem's
//! and at least that long; both abort with a message naming the buffer.
//! Without it, a wrong size is undefined behaviour, as in libumem.

use super::{debugging, inject, retry};
use crate::GLOBAL;
use core::alloc::{GlobalAlloc, Layout};
use core::ffi::{c_int, c_void};
use core::ptr::null_mut;
use umem_global::preload_abi::{classes, sys, FreeError};

/// libumem's `UMEM_ALIGN`: the alignment of every `umem_alloc` block.
pub const UMEM_ALIGN: usize = 8;

/// Allocates with libumem's failure policy (mtbf, reap, nofail callback).
fn alloc_with_policy(size: usize, align: usize, flags: c_int, zero: bool) -> *mut c_void {
    if size == 0 {
        return null_mut();
    }
    let layout = Layout::from_size_align(size, align).ok();
    let mut round = 0;
    loop {
        if let Some(l) = layout {
            if !inject(flags) {
                // SAFETY: `l` has a non-zero size.
                let p = unsafe {
                    if zero {
                        GLOBAL.alloc_zeroed(l)
                    } else {
                        GLOBAL.alloc(l)
                    }
                };
                if !p.is_null() {
                    return p.cast();
                }
            }
        }
        if !retry(flags, &mut round) {
            return null_mut();
        }
    }
}

/// `umem_alloc(size, flags)`.
#[no_mangle]
pub extern "C" fn umem_alloc(size: usize, flags: c_int) -> *mut c_void {
    alloc_with_policy(size, UMEM_ALIGN, flags, false)
}

/// `umem_zalloc(size, flags)`.
#[no_mangle]
pub extern "C" fn umem_zalloc(size: usize, flags: c_int) -> *mut c_void {
    alloc_with_policy(size, UMEM_ALIGN, flags, true)
}

/// `umem_alloc_align(size, align, flags)`: NULL for size 0 or an
/// alignment that is not a power of two (libumem's checks).
#[no_mangle]
pub extern "C" fn umem_alloc_align(size: usize, align: usize, flags: c_int) -> *mut c_void {
    if align & align.wrapping_sub(1) != 0 {
        return null_mut();
    }
    alloc_with_policy(size, align.max(UMEM_ALIGN), flags, false)
}

/// The usable size umem gives a `umem_alloc(size)` block: its size class,
/// or its length rounded up to pages for a large block.
fn expected_usable(size: usize) -> usize {
    match classes::layout_class(size, UMEM_ALIGN) {
        Some(c) => classes::size(c),
        None => size.div_ceil(sys::PAGE) * sys::PAGE,
    }
}

#[cold]
fn bad_free(func: &str, p: *mut c_void, size: usize, why: core::fmt::Arguments<'_>) -> ! {
    sys::fatal(format_args!("umem: {func}({p:p}, {size}): {why}"))
}

/// `umem_free(buf, size)`: `size` must be the size allocated.
///
/// # Safety
/// `buf` was returned by `umem_alloc`/`umem_zalloc` with this `size` and is
/// not used afterwards (checked under `UMEM_DEBUG`).
#[no_mangle]
pub unsafe extern "C" fn umem_free(buf: *mut c_void, size: usize) {
    if buf.is_null() {
        if size == 0 {
            return;
        }
        bad_free("umem_free", buf, size, format_args!("NULL buffer"));
    }
    let Some(layout) = Layout::from_size_align(size, UMEM_ALIGN)
        .ok()
        .filter(|_| size != 0)
    else {
        bad_free(
            "umem_free",
            buf,
            size,
            format_args!("no umem_alloc block has this size"),
        );
    };
    let requested = umem_global::preload_abi::debug::requested_size(buf.cast());
    if debugging() && requested != Some(size) {
        let want = expected_usable(size);
        match umem_global::preload_abi::usable_size(buf.cast()) {
            None => bad_free(
                "umem_free",
                buf,
                size,
                format_args!("not a buffer from umem_alloc (umem did not hand it out, or not its start)"),
            ),
            Some(have) if have != want => bad_free(
                "umem_free",
                buf,
                size,
                format_args!(
                    "wrong size: the buffer is a {have}-byte block, a {size}-byte allocation is a {want}-byte block"
                ),
            ),
            Some(_) => {}
        }
        if let Some(r) = requested {
            bad_free(
                "umem_free",
                buf,
                size,
                format_args!("wrong size: the buffer was allocated with {r} bytes"),
            );
        }
    }
    // SAFETY: by the caller, `buf` is a live block allocated with `layout`.
    unsafe { GLOBAL.dealloc(buf.cast(), layout) }
}

/// `umem_free_align(buf, size)`.
///
/// # Safety
/// `buf` was returned by `umem_alloc_align` with this `size` and is not
/// used afterwards.
#[no_mangle]
pub unsafe extern "C" fn umem_free_align(buf: *mut c_void, size: usize) {
    if buf.is_null() {
        if size == 0 {
            return;
        }
        bad_free("umem_free_align", buf, size, format_args!("NULL buffer"));
    }
    if debugging() {
        match umem_global::preload_abi::usable_size(buf.cast()) {
            None => bad_free(
                "umem_free_align",
                buf,
                size,
                format_args!("not a buffer from umem_alloc_align"),
            ),
            Some(have) if have < size => bad_free(
                "umem_free_align",
                buf,
                size,
                format_args!("wrong size: the buffer has only {have} bytes"),
            ),
            Some(_) => {}
        }
    }
    // SAFETY: by the caller, a live umem block.
    if let Err(FreeError::InvalidPointer(_)) = unsafe { umem_global::preload_abi::free(buf.cast()) }
    {
        bad_free(
            "umem_free_align",
            buf,
            size,
            format_args!("not a buffer from umem_alloc_align"),
        );
    }
}

/// `umem_reap()`: gives back every cached object, magazine and free large
/// block that can go (reclaim callbacks of object caches included).
#[no_mangle]
pub extern "C" fn umem_reap() {
    umem_global::reap();
}
