//! Free (`vmem_free`, `vmem_xfree`): back from allocated to free,
//! coalescing with free neighbours, and giving an imported span that
//! became wholly free back to its source (unless the arena retains it,
//! `arena/import.rs`).
//!
//! Markers (the rotor and walkers) may separate two free segments; moving
//! one (`advance`, vmem.c's `vmem_advance`) coalesces what it separated.
//! Unlike vmem.c, a marker inside an otherwise wholly free imported span
//! does not keep the span (`release_past_markers`).

use super::{Inner, Vmem};
use crate::error::VmemError;
use crate::p2::{flist_of, round_up_nz};
use crate::seg::{a_insert_after, a_remove, Seg, T_ALLOC, T_FREE, T_HEAD, T_MARKER, T_SPAN};
use crate::source::QCacheFree;
use crate::types::Addr;
use core::ptr;
use core::sync::atomic::Ordering;

// -------------------------------------------------------------------------
// Free and xfree
// -------------------------------------------------------------------------

/// Whether [`Vmem::free`] checks frees of quantum-cached sizes (with debug
/// assertions; see `free`'s documentation and `docs/performance.md`).
const CHECK_QCACHE_FREES: bool = cfg!(debug_assertions);

impl Vmem {
    /// Free `[addr, addr + size)` allocated by [`alloc`](Vmem::alloc)
    /// (`vmem_free`). `size` must be the size allocated.
    ///
    /// Errors: `ZeroSize`, `NotAllocated`, `WrongSize`, `HandleAllocated`,
    /// and for quantum-cached sizes `DoubleFree`.
    ///
    /// **What is checked.** Sizes served by the segments are always checked
    /// exactly (the hash knows every allocated segment). Sizes served by a
    /// quantum cache are checked when umem-vmem is built with debug
    /// assertions (`QCache::free_checked`): the address must be an object
    /// the cache handed out that its slab layer still counts as allocated
    /// (one hash lookup under the cache's slab lock), and must not sit in
    /// the calling thread's magazines or the cache's depot (a scan of
    /// those: the cost grows with the depot). A refused free leaves
    /// everything unchanged and is diagnosed: `DoubleFree`, `WrongSize`
    /// (another quantum cache, or the segment layer, holds the address
    /// with another size), `HandleAllocated`, else `NotAllocated`. A
    /// segment of a cached size that came from `xalloc` is freed as
    /// `xfree` would free it. What is never caught: a double free of an
    /// object that sits in *another* thread's magazines (no thread reads
    /// another's magazines), and two threads freeing the same object at
    /// the same moment. Without debug assertions frees of cached sizes go
    /// to the cache unchecked, as in vmem.c (a bad one is undefined: the
    /// range may later be handed out twice).
    #[inline]
    pub fn free(&self, addr: Addr, size: usize) -> Result<(), VmemError> {
        if size.wrapping_sub(1) < self.qcache_max.load(Ordering::Acquire) {
            let i = (size - 1) >> self.qshift;
            // SAFETY: i < qcache_max / quantum, so the entry was published.
            if let Some(c) = unsafe { (*self.qcache.get())[i] } {
                if CHECK_QCACHE_FREES {
                    return match c.free_checked(addr) {
                        QCacheFree::Freed => Ok(()),
                        r => self.qcache_free_refused(addr, size, i, r),
                    };
                }
                c.free(addr);
                return Ok(());
            }
        }
        self.xfree(addr, size)
    }

    /// Diagnose a free of a quantum-cached size that cache `i` refused
    /// (`r`); nothing has changed yet.
    #[cold]
    #[inline(never)]
    fn qcache_free_refused(
        &self,
        addr: Addr,
        size: usize,
        i: usize,
        r: QCacheFree,
    ) -> Result<(), VmemError> {
        if r == QCacheFree::AlreadyFree {
            return Err(VmemError::DoubleFree { addr, size });
        }
        let n = self.qcache_max() >> self.qshift;
        for j in (0..n).filter(|&j| j != i) {
            // SAFETY: j < qcache_max / quantum, so the entry was published.
            if let Some(c) = unsafe { (*self.qcache.get())[j] } {
                if c.is_allocated(addr) {
                    return Err(VmemError::WrongSize {
                        addr,
                        size,
                        allocated: (j + 1) << self.qshift,
                    });
                }
            }
        }
        // Not a cached object: the segment layer answers (NotAllocated,
        // WrongSize, HandleAllocated — or frees an xalloc'd segment of this
        // size, which is what the caller meant). Quantum caches' slabs are
        // larger than qcache_max, so this never frees a slab.
        self.xfree(addr, size)
    }

    /// Free a segment from [`xalloc`](Vmem::xalloc) (`vmem_xfree`);
    /// bypasses quantum caches. Releases an imported span to the source as
    /// soon as it is wholly free.
    ///
    /// Errors: `ZeroSize`, `NotAllocated`, `WrongSize`.
    #[inline]
    pub fn xfree(&self, addr: Addr, size: usize) -> Result<(), VmemError> {
        if size == 0 {
            return Err(VmemError::ZeroSize);
        }
        self.lock();
        // SAFETY: lock held.
        let inner = unsafe { self.inner() };
        // SAFETY: lock held.
        let rel = match unsafe { inner.hash_delete(addr, size) } {
            // SAFETY: s was an allocated segment, now out of the hash.
            Ok(s) => unsafe { inner.free_seg(s) },
            Err(e) => {
                let e = match e {
                    VmemError::NotAllocated { .. } if inner.handle_seg_at(addr).is_some() => {
                        VmemError::HandleAllocated { addr, size }
                    }
                    e => e,
                };
                self.unlock();
                return Err(e);
            }
        };
        self.unlock();
        self.release_freed(rel);
        Ok(())
    }

    /// After a free (lock dropped): give the span it left wholly free, if
    /// any, back to the source.
    #[inline(always)]
    pub(super) fn release_freed(&self, rel: Option<(Addr, usize)>) {
        if let Some((a, n)) = rel {
            if let Some(src) = self.source {
                src.release(a, n);
            }
        }
    }
}

// -------------------------------------------------------------------------
// Coalescing
// -------------------------------------------------------------------------

impl Inner {
    /// Make the freed segment `s` (already out of the hash) free,
    /// coalescing with free neighbours. Returns the range of an imported
    /// span that became wholly free and was destroyed (to release).
    ///
    /// # Safety
    /// The arena lock is held; `s` is an allocated segment on the address
    /// list, already out of the hash (or a handle segment, already accounted
    /// for by `handle_delete`).
    #[inline(always)]
    pub(super) unsafe fn free_seg(&mut self, s: *mut Seg) -> Option<(Addr, usize)> {
        // SAFETY: s is a valid segment on the address list; lock held.
        unsafe {
            let q = self.quantum;
            (*s).end = round_up_nz((*s).end, q);
            let next = (*s).anext;
            let prev = (*s).aprev;
            let target;
            if (*next).typ == T_FREE {
                if (*prev).typ == T_FREE {
                    self.freelist_delete(next);
                    self.resize_free(prev, (*prev).start, (*next).end);
                    self.seg_destroy(next);
                    self.seg_destroy(s);
                    target = prev;
                } else {
                    self.resize_free(next, (*s).start, (*next).end);
                    self.seg_destroy(s);
                    target = next;
                }
            } else if (*prev).typ == T_FREE {
                self.resize_free(prev, (*prev).start, (*s).end);
                self.seg_destroy(s);
                target = prev;
            } else {
                self.freelist_insert(s);
                target = s;
            }
            if self.has_source {
                return self.maybe_release(target);
            }
            None
        }
    }

    /// Give the free segment `s` the range `[start, end)`, moving it to
    /// another freelist only when its size changes list.
    ///
    /// # Safety
    /// `s` is a free segment on its freelist; lock held.
    #[inline(always)]
    pub(super) unsafe fn resize_free(&mut self, s: *mut Seg, start: Addr, end: Addr) {
        // SAFETY: by the caller.
        unsafe {
            let moves = flist_of((*s).end - (*s).start) != flist_of(end - start);
            if moves {
                self.freelist_delete(s);
            }
            (*s).start = start;
            (*s).end = end;
            if moves {
                self.freelist_insert(s);
            }
        }
    }

    /// Absorb the free segment after the free segment `s` into `s`, which
    /// is re-filed on the freelist of its new size.
    ///
    /// # Safety
    /// `s` and its address-list successor are adjacent free segments; lock
    /// held.
    #[inline]
    pub(super) unsafe fn absorb_next_free(&mut self, s: *mut Seg) {
        // SAFETY: by the caller.
        unsafe {
            let n = (*s).anext;
            debug_assert!((*n).typ == T_FREE && (*s).end == (*n).start);
            self.freelist_delete(n);
            self.freelist_delete(s);
            (*s).end = (*n).end;
            self.freelist_insert(s);
            self.seg_destroy(n);
        }
    }
}

impl Vmem {
    /// Move the marker `walker` (rotor or walker) after `afterme` (or take it
    /// off the list if null), coalescing the neighbours it separated and
    /// releasing an imported span that became wholly free
    /// (`vmem_advance`). May drop and retake the lock.
    ///
    /// # Safety
    /// Lock held; `walker` is a marker on this arena's list; `afterme` is
    /// null or a segment on it.
    pub(crate) unsafe fn advance(&self, walker: *mut Seg, afterme: *mut Seg) {
        // SAFETY: per the contract.
        unsafe {
            let inner = self.inner();
            let vprev = (*walker).aprev;
            let vnext = (*walker).anext;
            a_remove(walker);
            if !afterme.is_null() {
                a_insert_after(afterme, walker);
            }
            let mut vsp = ptr::null_mut();
            if (*vprev).typ == T_FREE {
                if (*vnext).typ == T_FREE {
                    inner.absorb_next_free(vprev);
                }
                vsp = vprev;
            } else if (*vnext).typ == T_FREE {
                vsp = vnext;
            }
            if !vsp.is_null() && inner.has_source {
                if let Some((a, n)) = inner.maybe_release(vsp) {
                    self.unlock();
                    if let Some(src) = self.source {
                        src.release(a, n);
                    }
                    self.lock();
                }
            }
        }
    }
}

// -------------------------------------------------------------------------
// Releasing wholly free imported spans
// -------------------------------------------------------------------------

impl Inner {
    /// If the free segment `vsp` is a whole imported span, destroy the span
    /// and return its range for release to the source.
    ///
    /// # Safety
    /// The arena lock is held and `vsp` is a free segment on the list.
    #[inline]
    pub(super) unsafe fn maybe_release(&mut self, vsp: *mut Seg) -> Option<(Addr, usize)> {
        // SAFETY: vsp is a free segment on the list; lock held.
        unsafe {
            let span = (*vsp).aprev;
            let next = (*vsp).anext;
            if (*span).typ == T_SPAN && (*next).typ & (T_SPAN | T_HEAD) != 0 {
                if !(*span).import {
                    return None;
                }
                let a = (*vsp).start;
                let n = (*vsp).end - a;
                // Hysteresis: keep the span while the arena's free bytes
                // (this span included) stay within `retain_max`, so the
                // sum of retained spans never exceeds it.
                if self.ks.mem_total - self.ks.mem_inuse <= self.retain_max as u64 {
                    return None;
                }
                debug_assert!((*span).start == a && (*span).end == a + n);
                self.freelist_delete(vsp);
                self.span_destroy(vsp);
                self.ks.release += 1;
                return Some((a, n));
            }
            if ((*span).typ | (*next).typ) & T_MARKER != 0 {
                return self.release_past_markers(vsp);
            }
            None
        }
    }

    /// The rotor or a walker sits inside the span of the free segment `vsp`
    /// and may be all that keeps the span from being wholly free: if so,
    /// move the markers in front of the span marker, coalesce, and destroy
    /// the span (vmem.c would keep the span until the marker moves on).
    ///
    /// # Safety
    /// The arena lock is held and `vsp` is a free segment on the list.
    #[cold]
    pub(super) unsafe fn release_past_markers(&mut self, vsp: *mut Seg) -> Option<(Addr, usize)> {
        // SAFETY: lock held; all pointers are on the address list.
        unsafe {
            let mut span = (*vsp).aprev;
            while (*span).typ & (T_MARKER | T_FREE) != 0 {
                span = (*span).aprev;
            }
            if (*span).typ != T_SPAN || !(*span).import {
                return None;
            }
            let mut s = (*span).anext;
            while (*s).typ & (T_SPAN | T_HEAD) == 0 {
                if (*s).typ == T_ALLOC {
                    return None;
                }
                s = (*s).anext;
            }
            let mut s = (*span).anext;
            while (*s).typ & (T_SPAN | T_HEAD) == 0 {
                let n = (*s).anext;
                if (*s).typ & T_MARKER != 0 {
                    a_remove(s);
                    a_insert_after((*span).aprev, s);
                }
                s = n;
            }
            let first = (*span).anext;
            debug_assert!((*first).typ == T_FREE);
            loop {
                let n = (*first).anext;
                if (*n).typ != T_FREE {
                    break;
                }
                self.absorb_next_free(first);
            }
            let a = (*first).start;
            let n = (*first).end - a;
            debug_assert!((*span).start == a && (*span).end == a + n);
            self.freelist_delete(first);
            self.span_destroy(first);
            self.ks.release += 1;
            Some((a, n))
        }
    }
}
