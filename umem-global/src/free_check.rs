//! The default mode's checks of a small block being freed past the magazine
//! hit (issue 11: interior and double frees without `UMEM_DEBUG`), shared by
//! `free.rs` and the debug path (`debug.rs`, for caches without `guards`).

use crate::caches;
use crate::classes;
use crate::hit_tables;
use crate::options;
use crate::sys;
use core::sync::atomic::Ordering;

/// The checks of a small block `a` of class `c` (cache `k`) being freed
/// past the hit, which abort naming `func`, the pointer and the class: a
/// block start (by the class's hit-table entry) that does not hold the free
/// key, or does and is allocated (`ClassCache::check_free`). Then marks it
/// with the key. Not with `UMEM_DEBUG` (the debug caches' own checks).
#[inline]
pub fn check_and_mark(func: &str, a: usize, c: usize, k: caches::ClassCache) {
    if options::DEBUG.load(Ordering::Relaxed) {
        // Debug caches check every free themselves (buftags), and their
        // chunks are not the grid the block-start test assumes.
        return;
    }
    let e = hit_tables::free_entry_of(c);
    let size = classes::size(c);
    let name = classes::NAMES[c];
    if !e.is_start(a) {
        sys::fatal(format_args!(
            "umem: {func}({a:#x}): not the start of a block: a pointer inside a {size}-byte block (class {name})"
        ));
    }
    let key = hit_tables::free_key();
    // SAFETY: a block start of class c's slab grid, or an aligned address on
    // one of the class's pages (the caller checked the page map): readable.
    if unsafe { *(a as *const usize) } == key {
        match k.check_free(a) {
            Ok(()) => {}
            Err(umem_slab::SlabError::DoubleFree { .. }) => sys::fatal(format_args!(
                "umem: {func}({a:#x}): double free of a {size}-byte block (class {name})"
            )),
            Err(umem_slab::SlabError::BadAddress { buffer, .. }) => sys::fatal(format_args!(
                "umem: {func}({a:#x}): not the start of a block: inside the {size}-byte block at {buffer:#x} (class {name})"
            )),
            Err(_) => sys::fatal(format_args!(
                "umem: {func}({a:#x}): not an allocated {size}-byte block of class {name} (freed already, or never allocated)"
            )),
        }
    }
    // SAFETY: as above; the block is ours to free, and its first word is
    // free-list state from now on.
    unsafe { *(a as *mut usize) = key };
}
