//! The segment layer's bricks (vmem.c's `vmem_getseg`/`vmem_putseg`,
//! `vmem_seg_create`/`vmem_seg_destroy`, `vmem_freelist_insert`/`delete`,
//! `vmem_span_create`/`vmem_span_destroy`): taking structures from the
//! arena's reserve, linking segments on the address list, filing free
//! segments on the power-of-two freelists (and their bitmap, `freemap`),
//! and making and unmaking spans.
//!
//! Also the reserve arithmetic: how many structures one operation may need
//! (`MINFREE`), which `arena/populate.rs` keeps on hand. Everything here runs
//! with the arena lock held and never drops it.

use super::Inner;
use crate::diag::vmem_fatal;
use crate::p2::flist_of;
use crate::seg::{
    a_insert_after, a_remove, k_insert_after, k_remove, Seg, T_FREE, T_MARKER, T_SPAN,
};
use crate::types::Addr;
use core::ptr;

// -------------------------------------------------------------------------
// The reserve: how many segment structures an operation may need
// -------------------------------------------------------------------------

/// Segment structures needed to create a span (marker + free segment).
pub(super) const SEGS_PER_SPAN_CREATE: usize = 2;

/// Worst case for allocating from the middle of a segment.
pub(super) const SEGS_PER_MIDDLE_ALLOC: usize = 2;

/// Worst case of one operation: import a span and allocate from its middle.
pub(super) const SEGS_PER_ALLOC_MAX: usize = SEGS_PER_SPAN_CREATE + SEGS_PER_MIDDLE_ALLOC;

/// What a populator arena may use while the populating thread allocates a
/// page of segments through it (one allocation per arena on the way down).
pub(crate) const POPULATE_RESERVE: usize = 4;

/// Segment structures every arena holds before any operation.
pub(crate) const MINFREE: usize = POPULATE_RESERVE + SEGS_PER_ALLOC_MAX;

impl Inner {
    /// Whether the reserve is below what one operation may need.
    #[inline(always)]
    pub(super) fn short(&self) -> bool {
        self.nsegfree < MINFREE + self.nsegresv
    }

    /// Take a structure from the reserve (`vmem_getseg`); a broken populate
    /// invariant (an empty reserve) is fatal.
    ///
    /// # Safety
    /// The arena lock is held.
    #[inline(always)]
    pub(super) unsafe fn getseg(&mut self) -> *mut Seg {
        let s = self.segfree;
        if s.is_null() {
            vmem_fatal(format_args!(
                "segment reserve empty (populate invariant broken)"
            ));
        }
        // SAFETY: `s` is a reserve structure owned by this arena.
        self.segfree = unsafe { (*s).knext };
        self.nsegfree -= 1;
        s
    }

    /// Give an unused structure to the reserve (`vmem_putseg`).
    ///
    /// # Safety
    /// The arena lock is held and `s` is an unused segment structure that
    /// nothing else refers to (it becomes the arena's).
    #[inline(always)]
    pub(crate) unsafe fn putseg(&mut self, s: *mut Seg) {
        // SAFETY: caller hands over an unused segment structure.
        unsafe { (*s).knext = self.segfree };
        self.segfree = s;
        self.nsegfree += 1;
    }
}

// -------------------------------------------------------------------------
// Segments on the address list
// -------------------------------------------------------------------------

impl Inner {
    /// A new segment `[start, end)` after `prev` on the address list.
    ///
    /// # Safety
    /// The arena lock is held, `prev` is on the address list, and the reserve
    /// is not empty.
    #[inline(always)]
    pub(super) unsafe fn seg_create(&mut self, prev: *mut Seg, start: Addr, end: Addr) -> *mut Seg {
        // SAFETY: getseg returns an owned structure; prev is on the list.
        unsafe {
            let s = self.getseg();
            (*s).start = start;
            (*s).end = end;
            (*s).typ = 0;
            (*s).import = false;
            (*s).mark = 0;
            a_insert_after(prev, s);
            s
        }
    }

    /// Unlink `s` from the address list and give it back to the reserve.
    ///
    /// # Safety
    /// The arena lock is held; `s` is on the address list and on no k-list,
    /// and is not a marker.
    #[inline(always)]
    pub(super) unsafe fn seg_destroy(&mut self, s: *mut Seg) {
        // SAFETY: s is on the address list and no other list.
        unsafe {
            debug_assert!((*s).typ & T_MARKER == 0);
            a_remove(s);
            self.putseg(s);
        }
    }
}

// -------------------------------------------------------------------------
// Freelists and the freemap
// -------------------------------------------------------------------------

impl Inner {
    /// Make `s` free and file it on the freelist of its size
    /// (`vmem_freelist_insert`), setting its freemap bit.
    ///
    /// # Safety
    /// The arena lock is held; `s` is a segment on the address list, on no
    /// k-list, with `start < end`.
    #[inline(always)]
    pub(super) unsafe fn freelist_insert(&mut self, s: *mut Seg) {
        // SAFETY: s is a valid segment not on any k-list.
        unsafe {
            let idx = flist_of((*s).end - (*s).start) as usize;
            let head = *self.freelist.get_unchecked(idx);
            (*s).typ = T_FREE;
            (*s).kprev = ptr::null_mut();
            (*s).knext = head;
            if !head.is_null() {
                (*head).kprev = s;
            }
            *self.freelist.get_unchecked_mut(idx) = s;
            self.freemap |= 1u64 << idx;
            self.nfree += 1;
        }
    }

    /// Take the free segment `s` off its freelist (`vmem_freelist_delete`),
    /// clearing the freemap bit of a list it empties.
    ///
    /// # Safety
    /// The arena lock is held and `s` is on the freelist of its current size.
    #[inline(always)]
    pub(super) unsafe fn freelist_delete(&mut self, s: *mut Seg) {
        // SAFETY: s is on the freelist of its current size.
        unsafe {
            debug_assert!((*s).typ == T_FREE);
            let idx = flist_of((*s).end - (*s).start) as usize;
            let prev = (*s).kprev;
            let next = (*s).knext;
            if prev.is_null() {
                *self.freelist.get_unchecked_mut(idx) = next;
                if next.is_null() {
                    self.freemap &= !(1u64 << idx);
                }
            } else {
                (*prev).knext = next;
            }
            if !next.is_null() {
                (*next).kprev = prev;
            }
            self.nfree -= 1;
        }
    }
}

// -------------------------------------------------------------------------
// Spans
// -------------------------------------------------------------------------

impl Inner {
    /// Add the span `[start, start + size)`; returns its free segment.
    ///
    /// # Safety
    /// The arena lock is held, the reserve holds the two structures a span
    /// needs, and `[start, start + size)` overlaps no span and does not wrap.
    pub(super) unsafe fn span_create(
        &mut self,
        start: Addr,
        size: usize,
        import: bool,
    ) -> *mut Seg {
        // SAFETY: lock held, MINFREE segments available.
        unsafe {
            let end = start + size;
            let seg0: *mut Seg = &mut self.seg0;
            let mut knext = seg0;
            if !import && !self.has_source {
                // Non-imported spans are kept sorted (search from the top:
                // new spans are usually higher).
                let mut kprev = (*seg0).kprev;
                while kprev != seg0 {
                    if (*kprev).end <= start {
                        break;
                    }
                    kprev = (*kprev).kprev;
                }
                knext = (*kprev).knext;
            }
            let span = self.seg_create((*knext).aprev, start, end);
            (*span).typ = T_SPAN;
            (*span).import = import;
            k_insert_after((*knext).kprev, span);
            let f = self.seg_create(span, start, end);
            self.freelist_insert(f);
            self.ks.mem_total += size as u64;
            if import {
                self.ks.mem_import += size as u64;
            }
            self.nspans += 1;
            f
        }
    }

    /// Destroy the span whose whole free segment is `vsp` (off the freelist).
    ///
    /// # Safety
    /// The arena lock is held; `vsp` is the one free segment of its span,
    /// directly after the span marker, already off its freelist.
    pub(super) unsafe fn span_destroy(&mut self, vsp: *mut Seg) {
        // SAFETY: vsp follows its span marker; lock held.
        unsafe {
            let span = (*vsp).aprev;
            debug_assert!((*span).typ == T_SPAN);
            let size = ((*vsp).end - (*vsp).start) as u64;
            if (*span).import {
                self.ks.mem_import -= size;
            }
            self.ks.mem_total -= size;
            k_remove(span);
            self.seg_destroy(vsp);
            self.seg_destroy(span);
            self.nspans -= 1;
        }
    }
}
