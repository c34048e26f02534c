//! The default mode's checks of a small block being freed past the magazine
//! hit (issue 11: interior and double frees without `UMEM_DEBUG`), shared by
//! `free.rs` and the debug path (`debug.rs`, for caches without `guards`).

use crate::caches;
use crate::classes;
use crate::hit_tables;
use crate::options;
use crate::pagemap;
use crate::sys;
use core::sync::atomic::Ordering;

/// The checks of a small block `a` of class `c` (cache `k`) being freed
/// past the hit, which abort naming `func`, the pointer and the class: a
/// block start (`hit_tables::is_block_start`) on a live slab that does not hold the free
/// key, or does and is allocated (`ClassCache::check_free`). Then marks it
/// with the key. Not with `UMEM_DEBUG` (the debug caches' own checks).
#[inline]
pub fn check_and_mark(func: &str, a: usize, c: usize, k: caches::ClassCache, page_read: bool) {
    if options::DEBUG.load(Ordering::Relaxed) {
        // Debug caches check every free themselves (buftags), and their
        // chunks are not the grid the block-start test assumes.
        return;
    }
    let size = classes::size(c);
    let name = classes::NAMES[c];
    if !hit_tables::is_block_start(c, a) {
        sys::fatal(format_args!(
            "umem: {func}({a:#x}): not the start of a block: a pointer inside a {size}-byte block (class {name})"
        ));
    }
    if !page_read {
        // Its page says whether a slab lives there (`caches::slab_watch`);
        // the C path read the entry already (`page_read`), `dealloc`'s did
        // not.
        if let Some(d) = pagemap::entry(a).dead_class() {
            dead_free(func, a, d);
        }
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

/// A free of `a` on a page of class `c`'s arena where no slab lives
/// (`caches::slab_watch`): its block was freed and its slab given back (a
/// double free), or it never was one.
#[cold]
#[inline(never)]
pub fn dead_free(func: &str, a: usize, c: usize) -> ! {
    let (size, name) = (classes::size(c), classes::NAMES[c]);
    sys::fatal(format_args!(
        "umem: {func}({a:#x}): not an allocated {size}-byte block of class {name}: no slab holds it (a double free after its slab went back, or never allocated)"
    ))
}
