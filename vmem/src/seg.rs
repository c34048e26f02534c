//! Segment structures (`vmem_seg`) and the raw list operations on them.
//!
//! A segment is on the arena's address-ordered list through `anext`/`aprev`
//! (a circular list whose sentinel is the arena's `seg0`), and on at most one
//! "k" list through `knext`/`kprev`: a freelist (free segments, NULL
//! terminated, heads in the arena), the span list (span markers, circular
//! through `seg0`), a hash chain (allocated segments, `knext` only), an
//! arena's reserve (unused structures, `knext` only), or the segment pool
//! (`segpool.rs`: the global free list through `knext`/`kprev`, the
//! populator pool through `knext`).
//!
//! Everything here works on raw pointers; callers hold the owning arena's
//! lock (or own the structures exclusively during creation/destruction).
//! Segments sit below arenas: this file uses only `types.rs`.

use crate::types::Addr;
use core::ptr;

pub(crate) const T_ALLOC: u8 = 1;
pub(crate) const T_FREE: u8 = 2;
pub(crate) const T_SPAN: u8 = 4;
pub(crate) const T_ROTOR: u8 = 8;
pub(crate) const T_WALKER: u8 = 16;
/// The list sentinel `seg0` (also the span-list sentinel).
pub(crate) const T_HEAD: u8 = 32;
/// Rotor or walker: markers that occupy no range.
pub(crate) const T_MARKER: u8 = T_ROTOR | T_WALKER;

/// One cache line each: a segment never straddles two lines.
#[repr(C, align(64))]
pub(crate) struct Seg {
    pub(crate) start: Addr,
    /// Exclusive end. For allocated segments the exact end of the request
    /// (the segment occupies it rounded up to the quantum).
    pub(crate) end: Addr,
    pub(crate) anext: *mut Seg,
    pub(crate) aprev: *mut Seg,
    pub(crate) knext: *mut Seg,
    pub(crate) kprev: *mut Seg,
    /// Handle segments (`handle`): the arena (`*const Vmem`) that allocated
    /// it, so that `free_handle` on another arena is refused. Unused
    /// otherwise. Type-erased because segments sit below arenas: this file
    /// does not name the arena type.
    pub(crate) owner: *const (),
    pub(crate) typ: u8,
    /// Span markers: the span was imported from the source.
    pub(crate) import: bool,
    /// Scratch for `verify` (0 outside it).
    pub(crate) mark: u8,
    /// Allocated segments: allocated through a handle (`alloc_handle`), so
    /// not in the hash table. Meaningless for other types.
    pub(crate) handle: bool,
}

/// Bytes per segment structure, as carved by populate.
pub(crate) const SEG_SIZE: usize = core::mem::size_of::<Seg>();
const _: () = assert!(SEG_SIZE == 64, "a segment is one cache line");

impl Seg {
    pub(crate) const fn empty(typ: u8) -> Seg {
        Seg {
            start: 0,
            end: 0,
            anext: ptr::null_mut(),
            aprev: ptr::null_mut(),
            knext: ptr::null_mut(),
            kprev: ptr::null_mut(),
            owner: ptr::null(),
            typ,
            import: false,
            mark: 0,
            handle: false,
        }
    }
}

/// Insert `s` after `prev` on the address list.
///
/// # Safety
/// `prev` is on a well-formed address list, `s` is on none; lock held.
#[inline(always)]
pub(crate) unsafe fn a_insert_after(prev: *mut Seg, s: *mut Seg) {
    // SAFETY: caller guarantees both pointers are valid segments.
    unsafe {
        let next = (*prev).anext;
        (*s).anext = next;
        (*s).aprev = prev;
        (*prev).anext = s;
        (*next).aprev = s;
    }
}

/// Remove `s` from the address list.
///
/// # Safety
/// `s` is on a well-formed address list; lock held.
#[inline(always)]
pub(crate) unsafe fn a_remove(s: *mut Seg) {
    // SAFETY: caller guarantees `s` and its neighbours are valid.
    unsafe {
        let prev = (*s).aprev;
        let next = (*s).anext;
        (*prev).anext = next;
        (*next).aprev = prev;
    }
}

/// Insert `s` after `prev` on a circular k-list (the span list).
///
/// # Safety
/// As for `a_insert_after`, on the k links.
#[inline]
pub(crate) unsafe fn k_insert_after(prev: *mut Seg, s: *mut Seg) {
    // SAFETY: caller guarantees both pointers are valid segments.
    unsafe {
        let next = (*prev).knext;
        (*s).knext = next;
        (*s).kprev = prev;
        (*prev).knext = s;
        (*next).kprev = s;
    }
}

/// Remove `s` from a circular k-list.
///
/// # Safety
/// As for `a_remove`, on the k links.
#[inline]
pub(crate) unsafe fn k_remove(s: *mut Seg) {
    // SAFETY: caller guarantees `s` and its neighbours are valid.
    unsafe {
        let prev = (*s).kprev;
        let next = (*s).knext;
        (*prev).knext = next;
        (*next).kprev = prev;
    }
}
