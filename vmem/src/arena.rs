//! The arena: `Vmem`, its segment layer and its public operations.
//!
//! Raw-pointer work on segments happens under the arena lock through
//! `Inner` (see `seg.rs` for the list primitives). A `&mut Inner` is only
//! ever formed while the lock is held and never kept across a point where
//! the lock is dropped (populate, import, release, reentrant walk).

use crate::error::VmemError;
use crate::lock::{thread_id, SpinLock};
use crate::seg::{
    a_insert_after, a_remove, crosses, flist_of, k_insert_after, k_remove, phase_up, round_up,
    same_highbit, Seg, SEG_SIZE, T_ALLOC, T_FREE, T_HEAD, T_MARKER, T_ROTOR, T_SPAN, T_WALKER,
};
use crate::source::{QCache, Source};
use crate::tree;
use crate::types::{CreateFlags, Policy, SegType, SegTypes, VmemStats, WalkMode, XAllocRequest};
use crate::{Addr, NAME_MAX, QCACHE_MAX_CACHES};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

mod handle;
mod verify;

pub use handle::SegHandle;

/// Number of power-of-two freelists.
const FREELISTS: usize = usize::BITS as usize;
/// Buckets of the hash table embedded in the arena.
pub(crate) const HASH_INITIAL: usize = 16;

/// Segment structures needed to create a span (marker + free segment).
const SEGS_PER_SPAN_CREATE: usize = 2;
/// Worst case for allocating from the middle of a segment.
const SEGS_PER_MIDDLE_ALLOC: usize = 2;
/// Worst case of one operation: import a span and allocate from its middle.
const SEGS_PER_ALLOC_MAX: usize = SEGS_PER_SPAN_CREATE + SEGS_PER_MIDDLE_ALLOC;
/// What a populator arena may use while the populating thread allocates a
/// page of segments through it (one allocation per arena on the way down).
pub(crate) const POPULATE_RESERVE: usize = 4;
/// Segment structures every arena holds before any operation.
pub(crate) const MINFREE: usize = POPULATE_RESERVE + SEGS_PER_ALLOC_MAX;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// What the segment layer's allocations return: the address and its
/// segment (kept only by handle allocations).
type Got = Result<(Addr, *mut Seg), VmemError>;
/// Internal arenas' import chunks from this size on are aligned to it.
const HUGE_CHUNK: usize = 2 << 20;

#[derive(Clone, Copy, Default)]
struct Kstat {
    mem_inuse: u64,
    mem_total: u64,
    mem_import: u64,
    alloc: u64,
    free: u64,
    fail: u64,
    import: u64,
    import_fail: u64,
    release: u64,
    search: u64,
    lookup: u64,
    populate: u64,
    populate_fail: u64,
    contains: u64,
    contains_search: u64,
    hash_rescale: u64,
}

/// Everything the arena lock protects.
pub(crate) struct Inner {
    freemap: u64,
    qshift: u32,
    hash_shift: u32,
    hash_table: *mut *mut Seg,
    hash_mask: usize,
    /// Live allocated segments above which the hash asks to grow.
    grow_at: usize,
    segfree: *mut Seg,
    nsegfree: usize,
    /// Structures promised to imports in flight (lock dropped); the reserve
    /// must cover MINFREE beyond them.
    nsegresv: usize,
    /// Allocated segments in the hash (from `alloc`/`xalloc`/`extend_alloc`).
    nalloc: usize,
    /// Allocated segments held by handles (`alloc_handle`; not hashed).
    nhandle: usize,
    nfree: usize,
    nspans: usize,
    /// The arena this is the inside of (owner of its handle segments).
    vm: *const Vmem,
    has_source: bool,
    /// Bytes of wholly free imported spans the arena may keep instead of
    /// releasing them at once (hysteresis; `heap` only by default).
    retain_max: usize,
    quantum: usize,
    ks: Kstat,
    freelist: [*mut Seg; FREELISTS],
    /// Sentinel of the address list and of the span list.
    seg0: Seg,
    rotor: Seg,
    hash0: [*mut Seg; HASH_INITIAL],
}

/// A vmem arena. Always used through a `&'static Vmem` handed out by
/// [`Vmem::create`]; the structure itself lives in memory from the
/// `vmem_vmem` internal arena.
#[repr(C, align(64))]
pub struct Vmem {
    lock: SpinLock,
    qcache_max: AtomicUsize,
    quantum: usize,
    qshift: u32,
    id: u32,
    inner: UnsafeCell<Inner>,
    source: Option<&'static dyn Source>,
    source_quantum: usize,
    import_min: usize,
    cflags: CreateFlags,
    qcache: UnsafeCell<[Option<&'static dyn QCache>; QCACHE_MAX_CACHES]>,
    /// Next arena on the arena list (protected by the list lock).
    pub(crate) next: AtomicPtr<Vmem>,
    name: [u8; NAME_MAX + 1],
    name_len: u8,
}

// SAFETY: all mutable state is behind the arena lock (`inner`), written
// once before publication (`qcache`, published by the `qcache_max`
// release store), or atomic.
unsafe impl Sync for Vmem {}
// SAFETY: as above; a Vmem is never moved once created.
unsafe impl Send for Vmem {}
// Every operation is atomic with respect to unwinding: nothing panics while
// the arena lock is held (broken invariants abort), so an arena seen across
// a caught panic is consistent.
impl core::panic::RefUnwindSafe for Vmem {}
impl core::panic::UnwindSafe for Vmem {}

/// Arguments of the internal create.
pub(crate) struct CreateArgs<'a> {
    pub name: &'a str,
    pub span: Option<(Addr, usize)>,
    pub quantum: usize,
    pub source: Option<&'static dyn Source>,
    pub qcache_max: usize,
    pub flags: CreateFlags,
    /// Where to build the structure (the static early arenas), else from
    /// `vmem_vmem`.
    pub mem: Option<*mut Vmem>,
    /// Smallest import (internal arenas import in chunks).
    pub import_min: usize,
    /// Initial `retain_max` (see [`Vmem::set_retain`]).
    pub retain: usize,
}

/// Live allocated segments above which a table of `buckets` grows: a
/// load of 1/2 (the embedded table fills up first), so a rescale to twice
/// the live count keeps the load between 1/4 and 1/2.
fn grow_limit(buckets: usize) -> usize {
    if buckets <= HASH_INITIAL {
        buckets
    } else {
        buckets / 2
    }
}

#[inline(always)]
fn hash_index(addr: Addr, qshift: u32, hash_shift: u32) -> usize {
    (((addr >> qshift) as u64).wrapping_mul(GOLDEN) >> hash_shift) as usize
}

impl Inner {
    /// Whether the reserve is below what one operation may need.
    #[inline(always)]
    fn short(&self) -> bool {
        self.nsegfree < MINFREE + self.nsegresv
    }

    #[inline(always)]
    unsafe fn getseg(&mut self) -> *mut Seg {
        let s = self.segfree;
        if s.is_null() {
            tree::fatal(format_args!(
                "segment reserve empty (populate invariant broken)"
            ));
        }
        // SAFETY: `s` is a reserve structure owned by this arena.
        self.segfree = unsafe { (*s).knext };
        self.nsegfree -= 1;
        s
    }

    #[inline(always)]
    pub(crate) unsafe fn putseg(&mut self, s: *mut Seg) {
        // SAFETY: caller hands over an unused segment structure.
        unsafe { (*s).knext = self.segfree };
        self.segfree = s;
        self.nsegfree += 1;
    }

    /// A new segment `[start, end)` after `prev` on the address list.
    #[inline(always)]
    unsafe fn seg_create(&mut self, prev: *mut Seg, start: Addr, end: Addr) -> *mut Seg {
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

    #[inline(always)]
    unsafe fn seg_destroy(&mut self, s: *mut Seg) {
        // SAFETY: s is on the address list and no other list.
        unsafe {
            debug_assert!((*s).typ & T_MARKER == 0);
            a_remove(s);
            self.putseg(s);
        }
    }

    #[inline(always)]
    unsafe fn freelist_insert(&mut self, s: *mut Seg) {
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

    #[inline(always)]
    unsafe fn freelist_delete(&mut self, s: *mut Seg) {
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

    #[inline(always)]
    fn bucket(&self, addr: Addr) -> *mut *mut Seg {
        // SAFETY: the index is masked to the table size.
        unsafe {
            self.hash_table
                .add(hash_index(addr, self.qshift, self.hash_shift))
        }
    }

    /// Make `s` allocated: into the hash, or (`H`, a handle allocation)
    /// marked as a handle segment of this arena and on no k-list.
    #[inline(always)]
    unsafe fn alloc_insert<const H: bool>(&mut self, s: *mut Seg, realsize: usize) {
        // SAFETY: s is a valid segment leaving every k-list.
        unsafe {
            (*s).typ = T_ALLOC;
            (*s).handle = H;
            if H {
                (*s).owner = self.vm;
                (*s).knext = ptr::null_mut();
                self.nhandle += 1;
            } else {
                let b = self.bucket((*s).start);
                (*s).knext = *b;
                *b = s;
                self.nalloc += 1;
            }
        }
        self.ks.alloc += 1;
        self.ks.mem_inuse += realsize as u64;
    }

    /// Account for the free of the handle segment `s` (the handle's
    /// counterpart of `hash_delete`); `free_seg` does the rest.
    #[inline(always)]
    unsafe fn handle_delete(&mut self, s: *mut Seg) {
        // SAFETY: s is an allocated handle segment of this arena.
        unsafe {
            debug_assert!((*s).typ == T_ALLOC && (*s).handle);
            let real = ((*s).end - (*s).start + self.quantum - 1) & !(self.quantum - 1);
            self.ks.mem_inuse -= real as u64;
        }
        self.ks.free += 1;
        self.nhandle -= 1;
    }

    /// The allocated handle segment starting at `addr`, if there is one
    /// (linear in the segments of its span: only `free`'s error path asks).
    #[cold]
    fn handle_seg_at(&self, addr: Addr) -> Option<*mut Seg> {
        if self.nhandle == 0 {
            return None;
        }
        let seg0: *const Seg = &self.seg0;
        // SAFETY: lock held; the span and address lists are well formed.
        unsafe {
            let mut span = self.seg0.knext as *const Seg;
            while span != seg0 {
                if (*span).start <= addr && addr < (*span).end {
                    let mut s = (*span).anext;
                    while (*s).typ & (T_SPAN | T_HEAD) == 0 {
                        if (*s).typ == T_ALLOC && (*s).start == addr {
                            return if (*s).handle { Some(s) } else { None };
                        }
                        if (*s).typ & T_MARKER == 0 && (*s).start > addr {
                            return None;
                        }
                        s = (*s).anext;
                    }
                    return None;
                }
                span = (*span).knext;
            }
        }
        None
    }

    #[inline(always)]
    unsafe fn hash_delete(&mut self, addr: Addr, size: usize) -> Result<*mut Seg, VmemError> {
        let mut pp = self.bucket(addr);
        // SAFETY: every chain holds valid allocated segments.
        unsafe {
            loop {
                let s = *pp;
                if s.is_null() {
                    return Err(VmemError::NotAllocated { addr, size });
                }
                if (*s).start == addr {
                    let allocated = (*s).end - addr;
                    if allocated != size {
                        return Err(VmemError::WrongSize {
                            addr,
                            size,
                            allocated,
                        });
                    }
                    *pp = (*s).knext;
                    self.ks.free += 1;
                    self.ks.mem_inuse -= ((size + self.quantum - 1) & !(self.quantum - 1)) as u64;
                    self.nalloc -= 1;
                    return Ok(s);
                }
                self.ks.lookup += 1;
                pp = &mut (*s).knext;
            }
        }
    }

    /// Allocate `[addr, addr + size)` (occupying `realsize`) from the free
    /// segment `vsp`; leftovers go back on the freelists.
    #[inline(always)]
    unsafe fn seg_alloc<const H: bool>(
        &mut self,
        vsp: *mut Seg,
        addr: Addr,
        size: usize,
        realsize: usize,
    ) -> *mut Seg {
        // SAFETY: vsp is a free segment containing the range; lock held.
        unsafe {
            let vs_start = (*vsp).start;
            let vs_end = (*vsp).end;
            let vs_size = vs_end - vs_start;
            let addr_end = addr + realsize;
            debug_assert!((*vsp).typ == T_FREE);
            debug_assert!(addr >= vs_start && addr_end <= vs_end);
            if addr == vs_start && vs_size != realsize && same_highbit(vs_size, vs_size - realsize)
            {
                // The remainder stays on the same freelist: just trim it.
                (*vsp).start = addr_end;
                let s = self.seg_create((*vsp).aprev, addr, addr + size);
                self.alloc_insert::<H>(s, realsize);
                return s;
            }
            self.freelist_delete(vsp);
            if vs_end != addr_end {
                let r = self.seg_create(vsp, addr_end, vs_end);
                self.freelist_insert(r);
            }
            if vs_start != addr {
                let l = self.seg_create((*vsp).aprev, vs_start, addr);
                self.freelist_insert(l);
            }
            (*vsp).start = addr;
            (*vsp).end = addr + size;
            self.alloc_insert::<H>(vsp, realsize);
            vsp
        }
    }

    /// Give the free segment `s` the range `[start, end)`, moving it to
    /// another freelist only when its size changes list.
    ///
    /// # Safety
    /// `s` is a free segment on its freelist; lock held.
    #[inline(always)]
    unsafe fn resize_free(&mut self, s: *mut Seg, start: Addr, end: Addr) {
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
    unsafe fn absorb_next_free(&mut self, s: *mut Seg) {
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

    /// Make the freed segment `s` (already out of the hash) free,
    /// coalescing with free neighbours. Returns the range of an imported
    /// span that became wholly free and was destroyed (to release).
    #[inline(always)]
    unsafe fn free_seg(&mut self, s: *mut Seg) -> Option<(Addr, usize)> {
        // SAFETY: s is a valid segment on the address list; lock held.
        unsafe {
            let q = self.quantum;
            (*s).end = ((*s).end + q - 1) & !(q - 1);
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

    /// If the free segment `vsp` is a whole imported span, destroy the span
    /// and return its range for release to the source.
    #[inline]
    unsafe fn maybe_release(&mut self, vsp: *mut Seg) -> Option<(Addr, usize)> {
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
    #[cold]
    unsafe fn release_past_markers(&mut self, vsp: *mut Seg) -> Option<(Addr, usize)> {
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

    /// Add the span `[start, start + size)`; returns its free segment.
    unsafe fn span_create(&mut self, start: Addr, size: usize, import: bool) -> *mut Seg {
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
    unsafe fn span_destroy(&mut self, vsp: *mut Seg) {
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

    /// The first span overlapping `[start, end)`.
    fn find_overlap(&self, start: Addr, end: Addr) -> Option<(Addr, usize)> {
        let seg0: *const Seg = &self.seg0;
        // SAFETY: the span list is well formed under the lock.
        unsafe {
            let mut s = self.seg0.knext as *const Seg;
            while s != seg0 {
                if (*s).start < end && start < (*s).end {
                    return Some(((*s).start, (*s).end - (*s).start));
                }
                s = (*s).knext;
            }
        }
        None
    }

    /// `vmem_extend_unlocked`: add `[addr, endaddr)` to an arena without a
    /// source, joining or growing adjacent spans. Returns the free segment
    /// holding the new range.
    unsafe fn extend(&mut self, addr: Addr, endaddr: Addr) -> *mut Seg {
        // SAFETY: lock held, MINFREE segments, spans sorted (no source).
        unsafe {
            let end: *mut Seg = &mut self.seg0;
            let mut span = (*end).kprev;
            while span != end {
                if (*span).end == addr || (*span).start == endaddr {
                    break;
                }
                span = (*span).kprev;
            }
            if span == end {
                return self.span_create(addr, endaddr - addr, false);
            }
            let vsp;
            let prevspan = (*span).kprev;
            if prevspan != end && (*prevspan).end == addr && (*span).start == endaddr {
                // Join [x, addr) and [endaddr, y) into [x, y).
                let nextseg = (*span).anext;
                let prevseg = (*span).aprev;
                (*prevspan).end = (*span).end;
                k_remove(span);
                self.nspans -= 1;
                if (*prevseg).typ == T_FREE && (*nextseg).typ == T_FREE {
                    self.freelist_delete(prevseg);
                    self.freelist_delete(nextseg);
                    (*prevseg).end = (*nextseg).end;
                    self.seg_destroy(nextseg);
                    self.seg_destroy(span);
                    vsp = prevseg;
                } else if (*prevseg).typ == T_FREE {
                    self.freelist_delete(prevseg);
                    (*prevseg).end = endaddr;
                    self.seg_destroy(span);
                    vsp = prevseg;
                } else if (*nextseg).typ == T_FREE {
                    self.freelist_delete(nextseg);
                    (*nextseg).start = addr;
                    self.seg_destroy(span);
                    vsp = nextseg;
                } else {
                    // The old marker becomes the free segment [addr, endaddr).
                    (*span).start = addr;
                    (*span).end = endaddr;
                    (*span).import = false;
                    vsp = span;
                }
            } else if (*span).end == addr {
                // Grow [x, addr) to [x, endaddr).
                let oldseg = (*(*span).knext).aprev;
                (*span).end = endaddr;
                if (*oldseg).typ == T_FREE {
                    self.freelist_delete(oldseg);
                    (*oldseg).end = endaddr;
                    vsp = oldseg;
                } else {
                    vsp = self.seg_create(oldseg, addr, endaddr);
                }
            } else {
                // Grow [endaddr, y) down to [addr, y).
                let oldseg = (*span).anext;
                (*span).start = addr;
                if (*oldseg).typ == T_FREE {
                    self.freelist_delete(oldseg);
                    (*oldseg).start = addr;
                    vsp = oldseg;
                } else {
                    vsp = self.seg_create(span, addr, endaddr);
                }
            }
            self.freelist_insert(vsp);
            self.ks.mem_total += (endaddr - addr) as u64;
            vsp
        }
    }

    /// Search the freelists for a segment satisfying the constraints.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn find(
        &mut self,
        size: usize,
        align: usize,
        phase: usize,
        nocross: usize,
        minaddr: Addr,
        maxaddr: Option<Addr>,
        policy: Policy,
    ) -> Option<(*mut Seg, Addr)> {
        let hb = flist_of(size);
        let start_list = if size.is_power_of_two()
            || matches!(policy, Policy::BestFit | Policy::FirstFit | Policy::NextFit)
            || hb + 1 >= FREELISTS as u32
            || (self.freemap >> (hb + 1)) == 0
        {
            hb
        } else {
            hb + 1
        };
        let hi_last = match maxaddr {
            Some(m) => m - 1,
            None => usize::MAX,
        };
        if start_list == hb + 1 {
            // Instant fit: the floor-list head first, as in `alloc_instant`.
            let head = self.freelist[hb as usize];
            if !head.is_null() {
                self.ks.search += 1;
                // SAFETY: a non-null head is a free segment (lock held).
                if let Some(a) = unsafe { fit(head, size, align, phase, nocross, minaddr, hi_last) }
                {
                    return Some((head, a));
                }
            }
        }
        let mut map = self.freemap & (!0u64 << start_list);
        let mut best: *mut Seg = ptr::null_mut();
        let mut best_addr = 0;
        let mut best_size = usize::MAX;
        // SAFETY: freelists are well formed under the lock.
        unsafe {
            'lists: while map != 0 {
                if !best.is_null() {
                    break;
                }
                let fl = map.trailing_zeros() as usize;
                map &= map - 1;
                let mut s = self.freelist[fl];
                while !s.is_null() {
                    self.ks.search += 1;
                    let s_size = (*s).end - (*s).start;
                    if s_size < best_size {
                        if let Some(a) = fit(s, size, align, phase, nocross, minaddr, hi_last) {
                            best = s;
                            best_addr = a;
                            best_size = s_size;
                            if policy != Policy::BestFit
                                || s_size == round_up(size, self.quantum).unwrap_or(0)
                            {
                                break 'lists;
                            }
                        }
                    }
                    s = (*s).knext;
                }
            }
        }
        if best.is_null() && start_list == hb + 1 && (self.freemap >> hb) & 1 != 0 {
            // Instant fit only looked where every segment is big enough;
            // before giving up, try the list that may hold a fit.
            let mut s = self.freelist[hb as usize];
            // SAFETY: freelists are well formed under the lock.
            unsafe {
                while !s.is_null() {
                    self.ks.search += 1;
                    if let Some(a) = fit(s, size, align, phase, nocross, minaddr, hi_last) {
                        return Some((s, a));
                    }
                    s = (*s).knext;
                }
            }
        }
        if best.is_null() {
            None
        } else {
            Some((best, best_addr))
        }
    }
}

/// Where in the free segment `s` a request fits, if it does.
#[inline]
unsafe fn fit(
    s: *const Seg,
    size: usize,
    align: usize,
    phase: usize,
    nocross: usize,
    minaddr: Addr,
    hi_last: Addr,
) -> Option<Addr> {
    // SAFETY: s is a valid segment.
    let (s_start, s_last) = unsafe { ((*s).start, (*s).end - 1) };
    if s_last < minaddr || s_start > hi_last {
        return None;
    }
    let start = s_start.max(minaddr);
    let last = s_last.min(hi_last);
    let mut a = phase_up(start, align, phase)?;
    if crosses(a, a.checked_add(size - 1)?, nocross) {
        let to_boundary = a.wrapping_neg() & (nocross - 1);
        a = a.checked_add(round_up(to_boundary, align)?)?;
    }
    if a.checked_add(size - 1)? <= last {
        debug_assert!(a >= start);
        Some(a)
    } else {
        None
    }
}

/// Validated `xalloc` parameters.
#[derive(Clone, Copy)]
struct XReq {
    size: usize,
    realsize: usize,
    align: usize,
    phase: usize,
    nocross: usize,
    minaddr: Addr,
    maxaddr: Option<Addr>,
    policy: Policy,
}

impl XReq {
    /// An unconstrained request (quantum alignment, anywhere) with `policy`.
    fn plain(size: usize, realsize: usize, quantum: usize, policy: Policy) -> XReq {
        XReq {
            size,
            realsize,
            align: quantum,
            phase: 0,
            nocross: 0,
            minaddr: 0,
            maxaddr: None,
            policy,
        }
    }
}

/// Resets the walker / unlocks if a walk callback unwinds.
struct WalkGuard<'a> {
    vm: &'a Vmem,
    walker: *mut Seg,
    locked: bool,
}

impl Drop for WalkGuard<'_> {
    fn drop(&mut self) {
        if !self.locked {
            self.vm.lock.lock();
        }
        if !self.walker.is_null() {
            // SAFETY: the walker is linked on this arena's list; lock held.
            unsafe { self.vm.advance(self.walker, ptr::null_mut()) };
        }
        self.vm.lock.unlock();
    }
}

impl Vmem {
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn inner(&self) -> &mut Inner {
        // SAFETY: caller holds the arena lock and keeps the borrow short.
        unsafe { &mut *self.inner.get() }
    }

    #[inline(always)]
    pub(crate) fn lock(&self) {
        self.lock.lock();
    }

    #[inline(always)]
    pub(crate) fn unlock(&self) {
        self.lock.unlock();
    }

    pub(crate) fn is_populator(&self) -> bool {
        self.cflags.contains(CreateFlags::POPULATOR)
    }

    /// Create an arena (`vmem_create`).
    ///
    /// * `name`: for kstats and messages (truncated to [`NAME_MAX`] bytes).
    /// * `span`: an initial span `(base, size)` added as by [`add`](Vmem::add).
    /// * `quantum`: the unit (a power of two); every allocation is a multiple
    ///   of it in placement and alignment.
    /// * `source`: where to import spans from when short (released back when
    ///   wholly free).
    /// * `qcache_max`: sizes up to this (rounded down to a quantum multiple,
    ///   at most 16 quanta) are served by quantum caches if a
    ///   [`QCacheFactory`](crate::QCacheFactory) is installed.
    ///
    /// With feature `std` the internal tree is built on first use with the
    /// built-in mmap source if [`init`](crate::init) was not called.
    pub fn create(
        name: &str,
        span: Option<(Addr, usize)>,
        quantum: usize,
        source: Option<&'static dyn Source>,
        qcache_max: usize,
        flags: CreateFlags,
    ) -> Result<&'static Vmem, VmemError> {
        tree::ensure_init()?;
        let flags = CreateFlags::from_bits(flags.bits() & !CreateFlags::POPULATOR.bits());
        Self::create_common(CreateArgs {
            name,
            span,
            quantum,
            source,
            qcache_max,
            flags,
            mem: None,
            import_min: 0,
            retain: 0,
        })
    }

    pub(crate) fn create_common(a: CreateArgs<'_>) -> Result<&'static Vmem, VmemError> {
        let q = a.quantum;
        if q == 0 || !q.is_power_of_two() {
            return Err(VmemError::BadQuantum { quantum: q });
        }
        if let Some((base, size)) = a.span {
            check_span(base, size, q)?;
        }
        let p = match a.mem {
            Some(p) => p,
            None => tree::alloc_vmem_struct()?,
        };
        let mut name = [0u8; NAME_MAX + 1];
        let mut n = a.name.len().min(NAME_MAX);
        while !a.name.is_char_boundary(n) {
            n -= 1;
        }
        name[..n].copy_from_slice(&a.name.as_bytes()[..n]);
        let source_quantum = a.source.map_or(1, |s| s.quantum().max(1));
        let qshift = q.trailing_zeros();
        let vm = Vmem {
            lock: SpinLock::new(),
            qcache_max: AtomicUsize::new(0),
            quantum: q,
            qshift,
            id: tree::next_id(),
            inner: UnsafeCell::new(Inner {
                freemap: 0,
                qshift,
                hash_shift: 64 - HASH_INITIAL.trailing_zeros(),
                hash_table: ptr::null_mut(),
                hash_mask: HASH_INITIAL - 1,
                grow_at: HASH_INITIAL,
                segfree: ptr::null_mut(),
                nsegfree: 0,
                nsegresv: 0,
                nalloc: 0,
                nhandle: 0,
                nfree: 0,
                nspans: 0,
                vm: ptr::null(),
                has_source: a.source.is_some(),
                retain_max: a.retain,
                quantum: q,
                ks: Kstat::default(),
                freelist: [ptr::null_mut(); FREELISTS],
                seg0: Seg::empty(T_HEAD),
                rotor: Seg::empty(T_ROTOR),
                hash0: [ptr::null_mut(); HASH_INITIAL],
            }),
            source: a.source,
            source_quantum,
            import_min: a.import_min,
            cflags: a.flags,
            qcache: UnsafeCell::new([None; QCACHE_MAX_CACHES]),
            next: AtomicPtr::new(ptr::null_mut()),
            name,
            name_len: n as u8,
        };
        // SAFETY: p is fresh, suitably aligned memory for a Vmem (static
        // early slot or from vmem_vmem, which is 64-aligned); we link the
        // self-referential sentinels once it is in place.
        let vm: &'static Vmem = unsafe {
            ptr::write(p, vm);
            let inner = &mut *(*p).inner.get();
            let seg0: *mut Seg = &mut inner.seg0;
            (*seg0).anext = seg0;
            (*seg0).aprev = seg0;
            (*seg0).knext = seg0;
            (*seg0).kprev = seg0;
            let rotor: *mut Seg = &mut inner.rotor;
            a_insert_after(seg0, rotor);
            inner.hash_table = inner.hash0.as_mut_ptr();
            inner.vm = p;
            &*p
        };
        if vm.is_populator() {
            tree::register_populator(vm);
            vm.lock();
            let ok = vm.populate();
            vm.unlock();
            if !ok {
                tree::fatal(format_args!(
                    "cannot populate populator arena {}",
                    vm.name()
                ));
            }
        }
        if let Some((base, size)) = a.span {
            if let Err(e) = vm.add(base, size) {
                // SAFETY: nobody else has seen the arena yet.
                unsafe { vm.teardown(false) };
                return Err(e);
            }
        }
        tree::list_append(vm);
        if a.qcache_max >= q && !a.flags.contains(CreateFlags::NO_QCACHE) {
            vm.make_qcaches(a.qcache_max);
        }
        Ok(vm)
    }

    fn make_qcaches(&'static self, qcache_max: usize) {
        let Some(factory) = tree::qcache_factory() else {
            return;
        };
        let n = (qcache_max >> self.qshift).min(QCACHE_MAX_CACHES);
        let mut made = 0;
        for i in 0..n {
            let objsize = (i + 1) * self.quantum;
            let mut buf = tree::StackStr::<64>::new();
            let _ = core::fmt::write(&mut buf, format_args!("{}_{}", self.name(), objsize));
            match factory.create(self, objsize, buf.as_str()) {
                Some(c) => {
                    // SAFETY: the qcache array is written only here, before
                    // qcache_max publishes it; readers only read entries
                    // below qcache_max.
                    unsafe { (*self.qcache.get())[i] = Some(c) };
                    made = i + 1;
                }
                None => break,
            }
        }
        self.qcache_max
            .store(made * self.quantum, Ordering::Release);
    }

    /// Destroy the arena (`vmem_destroy`): destroys its quantum caches,
    /// releases its imported spans to the source (whatever is still
    /// allocated in them is leaked with them), returns all its segment
    /// structures and its hash table to vmem, and frees the `Vmem`.
    /// Returns the number of units still allocated (leaked).
    ///
    /// Allocations still held by [`SegHandle`]s are leaked like the rest.
    ///
    /// # Safety
    /// No other thread may be using the arena, no arena may still import
    /// from it, it must not be one of vmem's internal arenas (`heap`,
    /// `vmem_*`), and neither the `&'static Vmem` nor any [`SegHandle`]
    /// it allocated may be used afterwards (not even given to another
    /// arena's `free_handle`: its segment structure is recycled).
    pub unsafe fn destroy(&'static self) -> usize {
        tree::list_remove(self);
        let nq = self.qcache_max.swap(0, Ordering::AcqRel) >> self.qshift;
        for i in 0..nq {
            // SAFETY: entries below the old qcache_max were set at create.
            if let Some(c) = unsafe { (*self.qcache.get())[i] } {
                // SAFETY: caller guarantees nobody uses the arena any more.
                unsafe { c.destroy() };
            }
        }
        // SAFETY: as above.
        unsafe { self.teardown(true) }
    }

    /// Release everything the arena holds and free the structure.
    unsafe fn teardown(&'static self, release_imports: bool) -> usize {
        self.lock();
        // SAFETY: lock held.
        let leaked = unsafe { self.inner().ks.mem_inuse } as usize;
        // Release imported spans whole.
        if release_imports {
            loop {
                // SAFETY: lock held; span list well formed.
                let found = unsafe {
                    let inner = self.inner();
                    let seg0: *mut Seg = &mut inner.seg0;
                    let mut s = (*seg0).knext;
                    while s != seg0 && !(*s).import {
                        s = (*s).knext;
                    }
                    if s == seg0 {
                        None
                    } else {
                        let (a, n) = ((*s).start, (*s).end - (*s).start);
                        inner.drop_span_segments(s);
                        Some((a, n))
                    }
                };
                match found {
                    Some((a, n)) => {
                        self.unlock();
                        if let Some(src) = self.source {
                            src.release(a, n);
                        }
                        self.lock();
                    }
                    None => break,
                }
            }
        }
        // SAFETY: lock held; nobody else uses the arena.
        let (table, tsize) = unsafe {
            let inner = self.inner();
            let seg0: *mut Seg = &mut inner.seg0;
            let rotor: *mut Seg = &mut inner.rotor;
            a_remove(rotor);
            // Chain every structure (segments, then the reserve) and give
            // the chain to the global list in one go.
            let mut head = inner.segfree;
            let mut s = (*seg0).anext;
            while s != seg0 {
                let next = (*s).anext;
                debug_assert!((*s).typ & T_WALKER == 0);
                (*s).knext = head;
                head = s;
                s = next;
            }
            inner.segfree = ptr::null_mut();
            inner.nsegfree = 0;
            tree::putsegs_global(head);
            let t = if inner.hash_table != inner.hash0.as_mut_ptr() {
                Some(inner.hash_table)
            } else {
                None
            };
            (t, inner.hash_mask + 1)
        };
        self.unlock();
        if let Some(t) = table {
            tree::free_hash_table(t, tsize);
        }
        tree::free_vmem_struct(self as *const Vmem as *mut Vmem);
        leaked
    }

    /// Allocate `size` units with `policy` (`vmem_alloc`). Sizes up to
    /// `qcache_max` go to the quantum caches when the arena has them
    /// (whatever the policy). Free with [`free`](Vmem::free).
    ///
    /// Errors: `ZeroSize`, `SizeOverflow`, `Exhausted`, `NoMetadata`.
    #[inline]
    pub fn alloc(&self, size: usize, policy: Policy) -> Result<Addr, VmemError> {
        if size.wrapping_sub(1) < self.qcache_max.load(Ordering::Acquire) {
            return self.qcache_alloc(size);
        }
        self.alloc_seg::<false>(size, policy).map(|(a, _)| a)
    }

    /// The segment layer's `alloc` (no quantum caches): `H` makes it a
    /// handle allocation (not hashed). Returns the address and segment.
    #[inline(always)]
    fn alloc_seg<const H: bool>(&self, size: usize, policy: Policy) -> Got {
        match policy {
            Policy::InstantFit => self.alloc_instant::<H>(size),
            Policy::NextFit => self.alloc_nextfit::<H>(size),
            Policy::BestFit | Policy::FirstFit => {
                let realsize = self.realsize(size)?;
                self.xalloc_impl::<H>(XReq::plain(size, realsize, self.quantum, policy))
            }
        }
    }

    #[inline(always)]
    fn realsize(&self, size: usize) -> Result<usize, VmemError> {
        if size == 0 {
            return Err(VmemError::ZeroSize);
        }
        round_up(size, self.quantum).ok_or(VmemError::SizeOverflow { size })
    }

    #[cold]
    fn qcache_alloc(&self, size: usize) -> Result<Addr, VmemError> {
        let i = (size - 1) >> self.qshift;
        // SAFETY: i < qcache_max / quantum, so the entry was published.
        let c = unsafe { (*self.qcache.get())[i] };
        let Some(c) = c else {
            return Err(VmemError::Exhausted { size });
        };
        if let Some(a) = c.alloc() {
            return Ok(a);
        }
        self.reap();
        c.alloc().ok_or(VmemError::Exhausted { size })
    }

    /// Instant fit, unconstrained: the hot path.
    #[inline]
    fn alloc_instant<const H: bool>(&self, size: usize) -> Got {
        let realsize = self.realsize(size)?;
        self.lock();
        // SAFETY: lock held.
        if unsafe { self.inner().short() } && !self.populate() {
            self.unlock();
            return self.fail_nometa();
        }
        // SAFETY: lock held (re-derived after populate).
        let inner = unsafe { self.inner() };
        let hb = flist_of(realsize);
        let first = if realsize.is_power_of_two() {
            hb
        } else {
            // Floor-list head fit (a deviation from vmem.c, still O(1)):
            // the head of list floor(log2 size) — typically the hole the
            // last free of this size made — is taken if it is big enough,
            // so a free+alloc pair of a non-power-of-two size reuses the
            // hole instead of splitting a bigger segment and coalescing.
            // SAFETY: lock held; a set freemap bit means a non-empty list.
            unsafe {
                if inner.freemap & (1u64 << hb) != 0 {
                    let head = *inner.freelist.get_unchecked(hb as usize);
                    if (*head).end - (*head).start >= realsize {
                        let addr = (*head).start;
                        let s = inner.seg_alloc::<H>(head, addr, size, realsize);
                        inner.ks.search += 1;
                        let grow = !H && inner.nalloc > inner.grow_at;
                        self.unlock();
                        if grow {
                            self.grow_hash();
                        }
                        return Ok((addr, s));
                    }
                }
            }
            hb + 1
        };
        let map = if first < 64 {
            inner.freemap & (!0u64 << first)
        } else {
            0
        };
        if map == 0 {
            self.unlock();
            return self.xalloc_impl::<H>(XReq::plain(
                size,
                realsize,
                self.quantum,
                Policy::InstantFit,
            ));
        }
        let fl = map.trailing_zeros() as usize;
        // SAFETY: freemap bit set => list non-empty; lock held.
        let (addr, s) = unsafe {
            let vsp = *inner.freelist.get_unchecked(fl);
            let addr = (*vsp).start;
            (addr, inner.seg_alloc::<H>(vsp, addr, size, realsize))
        };
        inner.ks.search += 1;
        let grow = !H && inner.nalloc > inner.grow_at;
        self.unlock();
        if grow {
            self.grow_hash();
        }
        Ok((addr, s))
    }

    #[cold]
    fn fail_nometa<T>(&self) -> Result<T, VmemError> {
        self.lock();
        // SAFETY: lock held.
        unsafe { self.inner().ks.fail += 1 };
        self.unlock();
        Err(VmemError::NoMetadata)
    }

    /// Next fit (`vmem_nextfit_alloc`).
    fn alloc_nextfit<const H: bool>(&self, size: usize) -> Got {
        let realsize = self.realsize(size)?;
        self.lock();
        // SAFETY: lock held.
        if unsafe { self.inner().short() } && !self.populate() {
            self.unlock();
            return self.fail_nometa();
        }
        // SAFETY: lock held throughout; `advance` may drop and retake it,
        // after which we only follow pointers from the rotor again.
        unsafe {
            let inner = self.inner();
            let rotor: *mut Seg = &mut inner.rotor;
            let mut vsp = (*rotor).anext;
            inner.ks.search += 1;
            if (*vsp).typ == T_FREE {
                let vs_size = (*vsp).end - (*vsp).start;
                if vs_size > realsize && same_highbit(vs_size, vs_size - realsize) {
                    // Common case: carve from the segment after the rotor
                    // and put the new segment behind the rotor.
                    let addr = (*vsp).start;
                    (*vsp).start = addr + realsize;
                    let s = inner.seg_create((*rotor).aprev, addr, addr + size);
                    inner.alloc_insert::<H>(s, realsize);
                    let grow = !H && inner.nalloc > inner.grow_at;
                    self.unlock();
                    if grow {
                        self.grow_hash();
                    }
                    return Ok((addr, s));
                }
            }
            loop {
                if (*vsp).typ == T_FREE && (*vsp).end - (*vsp).start >= realsize {
                    break;
                }
                vsp = (*vsp).anext;
                self.inner().ks.search += 1;
                if vsp == rotor {
                    // Full circle: the rotor may be splitting the only fit.
                    self.advance(rotor, (*rotor).anext);
                    vsp = (*rotor).aprev;
                    if (*vsp).typ == T_FREE && (*vsp).end - (*vsp).start >= realsize {
                        break;
                    }
                    self.unlock();
                    return self.xalloc_impl::<H>(XReq::plain(
                        size,
                        realsize,
                        self.quantum,
                        Policy::FirstFit,
                    ));
                }
            }
            let inner = self.inner();
            let addr = (*vsp).start;
            let s = inner.seg_alloc::<H>(vsp, addr, size, realsize);
            self.advance(rotor, s);
            let inner = self.inner();
            let grow = !H && inner.nalloc > inner.grow_at;
            self.unlock();
            if grow {
                self.grow_hash();
            }
            Ok((addr, s))
        }
    }

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

    /// Free `[addr, addr + size)` allocated by [`alloc`](Vmem::alloc)
    /// (`vmem_free`). `size` must be the size allocated.
    ///
    /// Errors: `ZeroSize`, `NotAllocated`, `WrongSize`. Frees of sizes
    /// served by a quantum cache go to the cache and are checked by it.
    #[inline]
    pub fn free(&self, addr: Addr, size: usize) -> Result<(), VmemError> {
        if size.wrapping_sub(1) < self.qcache_max.load(Ordering::Acquire) {
            let i = (size - 1) >> self.qshift;
            // SAFETY: i < qcache_max / quantum, so the entry was published.
            if let Some(c) = unsafe { (*self.qcache.get())[i] } {
                c.free(addr);
                return Ok(());
            }
        }
        self.xfree(addr, size)
    }

    /// Constrained allocation (`vmem_xalloc`); never uses quantum caches.
    /// Free with [`xfree`](Vmem::xfree). Imports from the source only when
    /// the request has no `nocross`/`minaddr`/`maxaddr` constraint.
    ///
    /// Errors: `ZeroSize`, `SizeOverflow`, `BadAlign`, `BadPhase`,
    /// `BadNocross`, `NocrossTooSmall`, `BadAddrRange`, `Exhausted`,
    /// `NoMetadata`.
    pub fn xalloc(&self, req: &XAllocRequest) -> Result<Addr, VmemError> {
        self.xalloc_seg::<false>(req).map(|(a, _)| a)
    }

    /// `xalloc`, or (`H`) its handle allocation.
    #[inline(always)]
    fn xalloc_seg<const H: bool>(&self, req: &XAllocRequest) -> Got {
        let r = self.check_xreq(req)?;
        if r.align == self.quantum
            && r.phase == 0
            && r.nocross == 0
            && r.minaddr == 0
            && r.maxaddr.is_none()
            && r.policy == Policy::InstantFit
        {
            return self.alloc_instant::<H>(r.size);
        }
        self.xalloc_impl::<H>(r)
    }

    fn check_xreq(&self, req: &XAllocRequest) -> Result<XReq, VmemError> {
        let q = self.quantum;
        let size = req.size;
        let realsize = self.realsize(size)?;
        let align = if req.align == 0 { q } else { req.align };
        if !align.is_power_of_two() || align & (q - 1) != 0 {
            return Err(VmemError::BadAlign { align, quantum: q });
        }
        let phase = req.phase;
        if phase & (q - 1) != 0 || phase >= align {
            return Err(VmemError::BadPhase { phase, align });
        }
        let nocross = req.nocross;
        if nocross != 0 {
            if !nocross.is_power_of_two() || nocross & (q - 1) != 0 {
                return Err(VmemError::BadNocross {
                    nocross,
                    quantum: q,
                });
            }
            let need = phase.checked_add(size).and_then(|v| round_up(v, align));
            if align > nocross || need.is_none_or(|v| v > nocross) {
                return Err(VmemError::NocrossTooSmall {
                    nocross,
                    size,
                    align,
                    phase,
                });
            }
        }
        let minaddr = req.minaddr.unwrap_or(0);
        if let Some(maxaddr) = req.maxaddr {
            if minaddr >= maxaddr || maxaddr - minaddr < size {
                return Err(VmemError::BadAddrRange {
                    minaddr,
                    maxaddr,
                    size,
                });
            }
        }
        let policy = if req.policy == Policy::NextFit {
            Policy::FirstFit
        } else {
            req.policy
        };
        Ok(XReq {
            size,
            realsize,
            align,
            phase,
            nocross,
            minaddr,
            maxaddr: req.maxaddr,
            policy,
        })
    }

    /// The general search, with import from the source and quantum-cache
    /// reaping when short.
    fn xalloc_impl<const H: bool>(&self, r: XReq) -> Got {
        let mut reaped = false;
        self.lock();
        loop {
            // SAFETY: lock held.
            if unsafe { self.inner().short() } && !self.populate() {
                self.unlock();
                return self.fail_nometa();
            }
            // SAFETY: lock held.
            let inner = unsafe { self.inner() };
            // SAFETY: lock held.
            let found = unsafe {
                inner.find(
                    r.size, r.align, r.phase, r.nocross, r.minaddr, r.maxaddr, r.policy,
                )
            };
            if let Some((seg, addr)) = found {
                // SAFETY: seg is a free segment containing the fit.
                let s = unsafe { inner.seg_alloc::<H>(seg, addr, r.size, r.realsize) };
                let grow = !H && inner.nalloc > inner.grow_at;
                self.unlock();
                if grow {
                    self.grow_hash();
                }
                debug_assert!(addr % r.align == r.phase);
                debug_assert!(!crosses(addr, addr + r.size - 1, r.nocross));
                debug_assert!(addr >= r.minaddr);
                debug_assert!(r.maxaddr.is_none_or(|m| addr + r.size <= m));
                return Ok((addr, s));
            }
            if let Some(src) = self.source {
                if r.nocross == 0 && r.minaddr == 0 && r.maxaddr.is_none() {
                    match self.import_span::<H>(src, &r) {
                        Ok(got) => return Ok(got),
                        Err(VmemError::SizeOverflow { size }) => {
                            self.unlock();
                            return Err(VmemError::SizeOverflow { size });
                        }
                        Err(_) => {}
                    }
                }
            }
            if !reaped && self.qcache_max.load(Ordering::Relaxed) != 0 {
                reaped = true;
                self.unlock();
                self.reap();
                self.lock();
                continue;
            }
            // SAFETY: lock held.
            unsafe { self.inner().ks.fail += 1 };
            self.unlock();
            return Err(VmemError::Exhausted { size: r.size });
        }
    }

    /// Import a span big enough for `r` and allocate from it. Called and
    /// returns with the lock held on failure; on success the lock is
    /// dropped.
    fn import_span<const H: bool>(&self, src: &'static dyn Source, r: &XReq) -> Got {
        let mut imp_align = r.align.max(self.source_quantum).max(self.quantum);
        let mut min = self.import_min;
        if min != 0 {
            // Internal arenas import in chunks that grow with them (a
            // quarter of what they hold, up to 2 MiB, so that one
            // long-lived allocation cannot keep a huge chunk from going
            // back); chunks of 2 MiB or more are 2 MiB aligned so the page source can back them with
            // huge pages (fewer TLB misses on segments and hash tables).
            // SAFETY: lock held.
            let total = unsafe { self.inner().ks.mem_total } as usize;
            min = min.max((total / 4).min(HUGE_CHUNK));
            if r.size.max(min) >= HUGE_CHUNK {
                min = round_up(min, HUGE_CHUNK).unwrap_or(min);
                imp_align = imp_align.max(HUGE_CHUNK);
            }
        }
        let asize = r
            .size
            .checked_add(r.phase)
            .and_then(|v| round_up(v.max(min), imp_align))
            .ok_or(VmemError::SizeOverflow { size: r.size })?;
        let resv = if asize == r.realsize && r.phase == 0 {
            SEGS_PER_SPAN_CREATE
        } else {
            SEGS_PER_ALLOC_MAX
        };
        // SAFETY: lock held.
        unsafe { self.inner().nsegresv += resv };
        self.unlock();
        let got = src.import(asize, imp_align);
        self.lock();
        // SAFETY: lock held.
        let inner = unsafe { self.inner() };
        inner.nsegresv -= resv;
        let Some(va) = got else {
            inner.ks.import_fail += 1;
            return Err(VmemError::Exhausted { size: r.size });
        };
        if va & (imp_align - 1) != 0 || va.checked_add(asize).is_none() {
            tree::fatal(format_args!(
                "arena {}: source returned misaligned or wrapping span {:#x}+{:#x} (align {:#x})",
                self.name(),
                va,
                asize,
                imp_align
            ));
        }
        inner.ks.import += 1;
        // SAFETY: lock held, reservation claimed back.
        unsafe {
            let seg = inner.span_create(va, asize, true);
            let addr = va + r.phase;
            let s = inner.seg_alloc::<H>(seg, addr, r.size, r.realsize);
            let grow = !H && inner.nalloc > inner.grow_at;
            self.unlock();
            if grow {
                self.grow_hash();
            }
            Ok((addr, s))
        }
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
    fn release_freed(&self, rel: Option<(Addr, usize)>) {
        if let Some((a, n)) = rel {
            if let Some(src) = self.source {
                src.release(a, n);
            }
        }
    }

    /// Take the arena lock with segment structures for a new span on hand and
    /// `[addr, addr + size)` overlapping no span; on `Ok` the lock is held, on
    /// error it is not (`add` and `extend_alloc`).
    fn lock_for_new_span(&self, addr: Addr, size: usize) -> Result<(), VmemError> {
        self.lock();
        // SAFETY: lock held.
        if unsafe { self.inner().short() } && !self.populate() {
            self.unlock();
            return Err(VmemError::NoMetadata);
        }
        // SAFETY: lock held.
        if let Some((existing, existing_size)) =
            unsafe { self.inner() }.find_overlap(addr, addr + size)
        {
            self.unlock();
            return Err(VmemError::SpanOverlap {
                addr,
                size,
                existing,
                existing_size,
            });
        }
        Ok(())
    }

    /// Add the span `[addr, addr + size)` to the arena (`vmem_add`).
    /// Returns `addr`. Errors: `ZeroSize`, `SpanMisaligned`, `SpanOverflow`,
    /// `SpanOverlap`, `NoMetadata`.
    pub fn add(&self, addr: Addr, size: usize) -> Result<Addr, VmemError> {
        check_span(addr, size, self.quantum)?;
        self.lock_for_new_span(addr, size)?;
        // SAFETY: lock held (taken by `lock_for_new_span`).
        let inner = unsafe { self.inner() };
        // SAFETY: lock held, segments available.
        unsafe { inner.span_create(addr, size, false) };
        self.unlock();
        Ok(addr)
    }

    /// Add `[addr, addr + size)`, merging it with an adjacent span of an
    /// arena without a source (growing the last span, joining two), and
    /// allocate `alloc` units at the start of the resulting free segment
    /// (`_vmem_extend_alloc`; the free tail of the previous span is used
    /// first, so the result may be below `addr`). Free the result with
    /// [`xfree`](Vmem::xfree) and size `alloc`.
    ///
    /// Errors: as [`add`](Vmem::add), and `BadExtendAlloc`.
    pub fn extend_alloc(&self, addr: Addr, size: usize, alloc: usize) -> Result<Addr, VmemError> {
        check_span(addr, size, self.quantum)?;
        if alloc == 0 || alloc > size || alloc & (self.quantum - 1) != 0 {
            return Err(VmemError::BadExtendAlloc { size, alloc });
        }
        self.lock_for_new_span(addr, size)?;
        // SAFETY: lock held (taken by `lock_for_new_span`).
        let inner = unsafe { self.inner() };
        // SAFETY: lock held, segments available.
        let a = unsafe {
            let vsp = if inner.has_source {
                inner.span_create(addr, size, false)
            } else {
                inner.extend(addr, addr + size)
            };
            let a = (*vsp).start;
            inner.seg_alloc::<false>(vsp, a, alloc, alloc);
            a
        };
        let grow = inner.nalloc > inner.grow_at;
        self.unlock();
        if grow {
            self.grow_hash();
        }
        Ok(a)
    }

    /// Whether `[addr, addr + size)` lies inside one span of the arena
    /// (`vmem_contains`). False for `size == 0` or a wrapping range.
    pub fn contains(&self, addr: Addr, size: usize) -> bool {
        let Some(end) = addr.checked_add(size) else {
            return false;
        };
        if size == 0 {
            return false;
        }
        self.lock();
        // SAFETY: lock held.
        let inner = unsafe { self.inner() };
        inner.ks.contains += 1;
        let seg0: *const Seg = &inner.seg0;
        let mut found = false;
        // SAFETY: span list well formed under the lock.
        unsafe {
            let mut s = inner.seg0.knext as *const Seg;
            while s != seg0 {
                inner.ks.contains_search += 1;
                if addr >= (*s).start && end <= (*s).end {
                    found = true;
                    break;
                }
                s = (*s).knext;
            }
        }
        self.unlock();
        found
    }

    /// Call `f(type, start, size)` for every segment whose type is in
    /// `types`, in address order within each span (`vmem_walk`). Allocated
    /// segments report the size they were allocated with. See [`WalkMode`]
    /// for the locking.
    pub fn walk(&self, types: SegTypes, mode: WalkMode, f: &mut dyn FnMut(SegType, Addr, usize)) {
        let seg_type = |t: u8| match t {
            T_ALLOC => Some(SegType::Alloc),
            T_FREE => Some(SegType::Free),
            T_SPAN => Some(SegType::Span),
            _ => None,
        };
        self.lock();
        let mut guard = WalkGuard {
            vm: self,
            walker: ptr::null_mut(),
            locked: true,
        };
        // SAFETY: lock held whenever we touch the list; the walker marker
        // lives on this stack frame and is unlinked (by the guard if `f`
        // unwinds) before the frame goes.
        unsafe {
            let seg0: *mut Seg = &mut self.inner().seg0;
            match mode {
                WalkMode::Locked => {
                    let mut s = (*seg0).anext;
                    while s != seg0 {
                        if let Some(t) = seg_type((*s).typ) {
                            if types.has(t) {
                                f(t, (*s).start, (*s).end - (*s).start);
                            }
                        }
                        s = (*s).anext;
                    }
                }
                WalkMode::Reentrant => {
                    let mut walker = Seg::empty(T_WALKER);
                    let w: *mut Seg = &mut walker;
                    a_insert_after(seg0, w);
                    guard.walker = w;
                    let mut s = (*w).anext;
                    while s != seg0 {
                        match seg_type((*s).typ) {
                            Some(t) if types.has(t) => {
                                let (a, n) = ((*s).start, (*s).end - (*s).start);
                                self.advance(w, s);
                                self.unlock();
                                guard.locked = false;
                                f(t, a, n);
                                self.lock();
                                guard.locked = true;
                                s = (*w).anext;
                            }
                            _ => s = (*s).anext,
                        }
                    }
                }
            }
        }
        drop(guard);
    }

    /// Units in segments of the given types (`vmem_size`): `ALLOC` = in use,
    /// `FREE` = available, `ALLOC_FREE` = total; `SPAN` adds the total of
    /// all spans (so `SPAN` alone is the total too).
    pub fn size(&self, types: SegTypes) -> usize {
        self.lock();
        // SAFETY: lock held.
        let ks = unsafe { self.inner().ks };
        self.unlock();
        let mut n = 0u64;
        if types.has(SegType::Alloc) {
            n += ks.mem_inuse;
        }
        if types.has(SegType::Free) {
            n += ks.mem_total - ks.mem_inuse;
        }
        if types.has(SegType::Span) {
            n += ks.mem_total;
        }
        n as usize
    }

    /// A snapshot of the kstats.
    pub fn stats(&self) -> VmemStats {
        self.lock();
        // SAFETY: lock held.
        let inner = unsafe { self.inner() };
        let ks = inner.ks;
        let s = VmemStats {
            mem_inuse: ks.mem_inuse,
            mem_total: ks.mem_total,
            mem_import: ks.mem_import,
            alloc: ks.alloc,
            free: ks.free,
            fail: ks.fail,
            import: ks.import,
            import_fail: ks.import_fail,
            release: ks.release,
            search: ks.search,
            lookup: ks.lookup,
            populate: ks.populate,
            populate_fail: ks.populate_fail,
            contains: ks.contains,
            contains_search: ks.contains_search,
            hash_rescale: ks.hash_rescale,
            hash_size: inner.hash_mask + 1,
            spans: inner.nspans,
            alloc_segs: inner.nalloc + inner.nhandle,
            handle_segs: inner.nhandle,
            free_segs: inner.nfree,
            reserve_segs: inner.nsegfree,
            id: self.id,
            source_id: self.source.map_or(0, |s| s.source_id()),
        };
        self.unlock();
        s
    }

    /// Walk every structure of the arena under its lock and check the
    /// invariants listed in the crate's theory statement. Returns the first
    /// violation as `VmemError::Corrupt`.
    pub fn verify(&self) -> Result<(), VmemError> {
        self.lock();
        // SAFETY: lock held for the whole check.
        let r = unsafe { self.inner().verify() };
        self.unlock();
        r
    }

    /// The arena's name.
    pub fn name(&self) -> &str {
        let b = &self.name[..self.name_len as usize];
        core::str::from_utf8(b).unwrap_or("?")
    }

    /// The quantum.
    #[inline]
    pub fn quantum(&self) -> usize {
        self.quantum
    }

    /// The largest size served by quantum caches (0 if none).
    #[inline]
    pub fn qcache_max(&self) -> usize {
        self.qcache_max.load(Ordering::Acquire)
    }

    /// The quantum cache serving `size`, if any.
    pub fn qcache_for(&self, size: usize) -> Option<&'static dyn QCache> {
        if size.wrapping_sub(1) < self.qcache_max() {
            // SAFETY: index below qcache_max: published entry.
            unsafe { (*self.qcache.get())[(size - 1) >> self.qshift] }
        } else {
            None
        }
    }

    /// The arena's id (creation order, from 1).
    #[inline]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The source, if any.
    pub fn source(&self) -> Option<&'static dyn Source> {
        self.source
    }

    /// Return quantum caches' cached objects to the arena.
    pub fn reap(&self) {
        let n = self.qcache_max() >> self.qshift;
        for i in 0..n {
            // SAFETY: published entries.
            if let Some(c) = unsafe { (*self.qcache.get())[i] } {
                c.reap();
            }
        }
    }

    /// Move reserve structures beyond twice what an operation may need to
    /// the global list (an arena that shrank keeps every structure its
    /// segments gave back), so `update` can give their pages back; a
    /// populator's go to the populator pool.
    pub(crate) fn trim_reserve(&self) {
        let mut chain: *mut Seg = ptr::null_mut();
        self.lock();
        // SAFETY: lock held; reserve structures are unused.
        unsafe {
            let inner = self.inner();
            while inner.nsegfree > 2 * MINFREE + inner.nsegresv {
                let s = inner.getseg();
                (*s).knext = chain;
                chain = s;
            }
        }
        self.unlock();
        if self.is_populator() {
            // Populators' structures come from (and go back to) the pool.
            while !chain.is_null() {
                // SAFETY: an unused structure of the chain.
                let next = unsafe { (*chain).knext };
                tree::putseg_pool(chain);
                chain = next;
            }
        } else {
            tree::putsegs_global(chain);
        }
    }

    /// Let the arena keep up to `bytes` of wholly free imported spans
    /// instead of releasing each to the source as soon as it is wholly free
    /// (hysteresis: an allocation pattern oscillating across a span
    /// boundary no longer imports and releases every time). 0 (the default
    /// for [`create`](Vmem::create)) releases at once, as vmem.c does;
    /// `heap` keeps [`HEAP_RETAIN`](crate::HEAP_RETAIN). Lowering the limit
    /// gives the excess back before returning; [`update`](crate::update)
    /// gives every retained span back.
    pub fn set_retain(&self, bytes: usize) {
        self.trim_retained(bytes, Some(bytes));
    }

    /// The current [`set_retain`](Vmem::set_retain) limit.
    pub fn retain(&self) -> usize {
        self.lock();
        // SAFETY: lock held.
        let r = unsafe { self.inner().retain_max };
        self.unlock();
        r
    }

    /// Give retained (wholly free imported) spans back to the source until
    /// at most `keep` bytes of them remain; then, if `new_max` is given,
    /// make it the limit (in the same lock hold, so the limit never drops
    /// below what is retained). Returns the bytes given back.
    pub(crate) fn trim_retained(&self, keep: usize, new_max: Option<usize>) -> usize {
        const BATCH: usize = 16;
        let mut given = 0;
        loop {
            let mut out = [(0usize, 0usize); BATCH];
            let mut nout = 0;
            self.lock();
            // SAFETY: lock held; the span list is well formed.
            let done = unsafe {
                let inner = self.inner();
                let seg0: *mut Seg = &mut inner.seg0;
                let mut retained = 0usize;
                let mut s = (*seg0).knext;
                while s != seg0 {
                    let f = (*s).anext;
                    if (*s).import && (*f).typ == T_FREE && (*f).end == (*s).end {
                        retained += (*s).end - (*s).start;
                    }
                    s = (*s).knext;
                }
                let mut s = (*seg0).knext;
                while retained > keep && nout < BATCH && s != seg0 {
                    let next = (*s).knext;
                    let f = (*s).anext;
                    if (*s).import && (*f).typ == T_FREE && (*f).end == (*s).end {
                        let (a, n) = ((*s).start, (*s).end - (*s).start);
                        inner.freelist_delete(f);
                        inner.span_destroy(f);
                        inner.ks.release += 1;
                        out[nout] = (a, n);
                        nout += 1;
                        retained -= n;
                    }
                    s = next;
                }
                if retained <= keep {
                    if let Some(m) = new_max {
                        inner.retain_max = m;
                    }
                    true
                } else {
                    false
                }
            };
            self.unlock();
            for &(a, n) in &out[..nout] {
                if let Some(src) = self.source {
                    src.release(a, n);
                }
                given += n;
            }
            if done {
                return given;
            }
        }
    }

    /// Resize the hash table to keep chains near length 1
    /// (`vmem_hash_rescale`); `update()` does it for every arena.
    pub fn rescale(&self) {
        tree::with_list_lock(|| self.rescale_list_held(false));
    }

    /// Grow the hash after an allocation pushed it past `grow_at`.
    #[cold]
    #[inline(never)]
    fn grow_hash(&self) {
        if tree::populating_thread() == thread_id() {
            return;
        }
        if tree::try_with_list_lock(|| self.rescale_list_held(true)).is_none() {
            // Someone holds the list lock (update, create, another rescale);
            // we will ask again on a later allocation.
        }
    }

    /// The rescale itself; the caller holds the arena-list lock.
    pub(crate) fn rescale_list_held(&self, grow_only: bool) {
        self.lock();
        // SAFETY: lock held.
        let (n, old) = unsafe {
            let i = self.inner();
            (i.nalloc, i.hash_mask + 1)
        };
        self.unlock();
        // Aim at a load of 1/4 to 1/2: each extra chain step on a free is
        // a cache miss once the arena is big.
        let target = n
            .saturating_mul(2)
            .max(1)
            .next_power_of_two()
            .max(HASH_INITIAL);
        let limit = grow_limit(old);
        let want = if grow_only {
            n > limit
        } else {
            n > limit || (target < old && n.saturating_mul(8) < old)
        };
        if !want {
            if grow_only {
                self.lock();
                // SAFETY: lock held.
                unsafe { self.inner().grow_at = limit };
                self.unlock();
            }
            return;
        }
        let Some(table) = tree::alloc_hash_table(target) else {
            self.lock();
            // SAFETY: lock held. Back off so we do not retry on every alloc.
            unsafe {
                let i = self.inner();
                i.grow_at = i.grow_at.saturating_mul(2);
            }
            self.unlock();
            return;
        };
        self.lock();
        // SAFETY: lock held; `table` holds `target` null buckets.
        let (old_table, old_size, was_embedded) = unsafe {
            let i = self.inner();
            let old_table = i.hash_table;
            let old_size = i.hash_mask + 1;
            let was_embedded = old_table == i.hash0.as_mut_ptr();
            i.hash_table = table;
            i.hash_mask = target - 1;
            i.hash_shift = 64 - target.trailing_zeros();
            i.grow_at = grow_limit(target);
            for h in 0..old_size {
                let mut s = *old_table.add(h);
                while !s.is_null() {
                    let next = (*s).knext;
                    let b = i.bucket((*s).start);
                    (*s).knext = *b;
                    *b = s;
                    s = next;
                }
                *old_table.add(h) = ptr::null_mut();
            }
            i.ks.hash_rescale += 1;
            (old_table, old_size, was_embedded)
        };
        self.unlock();
        if !was_embedded {
            tree::free_hash_table(old_table, old_size);
        }
    }

    /// Refill the reserve of segment structures to MINFREE
    /// (`vmem_populate`). Called and returns with the lock held; may drop it.
    #[cold]
    #[inline(never)]
    pub(crate) fn populate(&self) -> bool {
        let pop = self.is_populator();
        // SAFETY: lock held on entry.
        unsafe {
            let inner = self.inner();
            while inner.short() {
                match tree::getseg_global(pop) {
                    Some(s) => inner.putseg(s),
                    None => break,
                }
            }
            if !inner.short() {
                return true;
            }
        }
        let me = thread_id();
        if tree::populating_thread() == me {
            // We are the populating thread, deep in the tree: tap the
            // reserve. Only populator arenas are entered here; a page
            // source that called back into another arena could exhaust
            // its reserve, which `getseg` reports (fatal) rather than
            // deadlocking on the populate lock we hold.
            return true;
        }
        let Some(seg_arena) = tree::seg_arena() else {
            // SAFETY: lock held.
            unsafe { self.inner().ks.populate_fail += 1 };
            return false;
        };
        self.unlock();
        tree::populate_lock(me);
        self.lock();
        // SAFETY: lock held. Another thread may have refilled the global
        // list while we waited.
        unsafe {
            let inner = self.inner();
            while inner.short() {
                match tree::getseg_global(pop) {
                    Some(s) => inner.putseg(s),
                    None => break,
                }
            }
            if !inner.short() {
                tree::populate_unlock();
                return true;
            }
        }
        self.unlock();
        let npop = tree::npopulators();
        // Big arenas take segments a few pages at a time (the surplus goes
        // to the global list for everybody).
        let scale = {
            self.lock();
            // SAFETY: lock held.
            let n = unsafe { self.inner().nalloc + self.inner().nhandle + self.inner().nfree };
            self.unlock();
            (n / 2048).clamp(1, 16)
        };
        let want = (MINFREE + npop * POPULATE_RESERVE) * scale;
        // Each page of the chunk starts with a chunk header (one structure's
        // room) so that `update` can find the chunk of a free structure and
        // give wholly free chunks back (see `tree::trim_free_segs`).
        let page = seg_arena.quantum;
        let per_page = page / SEG_SIZE - 1;
        let size = want.div_ceil(per_page) * page;
        let mut nseg = size / page * per_page;
        // When the populator pool runs low this chunk is pinned (never
        // given back) and its surplus refills the pool.
        // Pinned chunks come straight from `heap` (a span of their own),
        // so they never keep a big `vmem_internal` chunk from going back.
        let pinned = tree::pool_low();
        let from = match tree::heap_arena() {
            Some(h) if pinned => h,
            _ => seg_arena,
        };
        let p = match from.alloc_instant::<false>(size) {
            Ok((p, _)) => p,
            Err(_) => {
                tree::populate_unlock();
                self.lock();
                // SAFETY: lock held.
                unsafe { self.inner().ks.populate_fail += 1 };
                return false;
            }
        };
        // SAFETY: fresh, writable, page-aligned memory from vmem_seg.
        unsafe { tree::init_seg_chunk(p, size, page, pinned) };
        let seg_at =
            |i: usize| (p + (i / per_page) * page + (i % per_page + 1) * SEG_SIZE) as *mut Seg;
        // Restock the populators that may have tapped their reserves.
        for i in 0..npop {
            let pa = tree::populator(i);
            pa.lock();
            // SAFETY: pa's lock held; the structures are fresh memory from
            // vmem_seg, each used once.
            unsafe {
                let pi = pa.inner();
                while pi.nsegfree < POPULATE_RESERVE + pi.nsegresv {
                    // From the pool (pinned chunks) when it has some, so
                    // that ordinary chunks are not pinned by reserves.
                    let s = if pinned {
                        None
                    } else {
                        tree::getseg_global(true)
                    };
                    if let Some(s) = s {
                        pi.putseg(s);
                    } else if nseg > 0 {
                        nseg -= 1;
                        pi.putseg(seg_at(nseg));
                    } else {
                        break;
                    }
                }
            }
            pa.unlock();
        }
        self.lock();
        // SAFETY: lock held; fresh structures.
        unsafe {
            let inner = self.inner();
            while inner.short() {
                let s = if pop && !pinned {
                    tree::getseg_global(true)
                } else {
                    None
                };
                if let Some(s) = s {
                    inner.putseg(s);
                } else if nseg > 0 {
                    nseg -= 1;
                    inner.putseg(seg_at(nseg));
                } else {
                    break;
                }
            }
            inner.ks.populate += 1;
        }
        tree::populate_unlock();
        while nseg > 0 {
            nseg -= 1;
            if pinned {
                tree::putseg_pool(seg_at(nseg));
            } else {
                tree::putseg_global(seg_at(nseg));
            }
        }
        // SAFETY: lock held.
        unsafe { !self.inner().short() }
    }
}

impl Inner {
    /// Remove every segment of the span `span` (used by destroy).
    unsafe fn drop_span_segments(&mut self, span: *mut Seg) {
        // SAFETY: lock held; span is a marker on the list.
        unsafe {
            let mut s = (*span).anext;
            while (*s).typ & (T_SPAN | T_HEAD) == 0 {
                let next = (*s).anext;
                match (*s).typ {
                    T_FREE => {
                        self.freelist_delete(s);
                        self.seg_destroy(s);
                    }
                    T_ALLOC => {
                        if (*s).handle {
                            // Not hashed (its handle must never be used again:
                            // `destroy`'s contract).
                            self.nhandle -= 1;
                        } else {
                            // Unhash the leaked segment.
                            let mut pp = self.bucket((*s).start);
                            while *pp != s {
                                pp = &mut (**pp).knext;
                            }
                            *pp = (*s).knext;
                            self.nalloc -= 1;
                        }
                        let real = round_up((*s).end - (*s).start, self.quantum).unwrap_or(0);
                        self.ks.mem_inuse -= real as u64;
                        self.seg_destroy(s);
                    }
                    _ => {}
                }
                s = next;
            }
            let size = ((*span).end - (*span).start) as u64;
            if (*span).import {
                self.ks.mem_import -= size;
            }
            self.ks.mem_total -= size;
            k_remove(span);
            self.seg_destroy(span);
            self.nspans -= 1;
        }
    }
}

/// Validate a span for `add`/`extend_alloc`/`create`.
fn check_span(addr: Addr, size: usize, q: usize) -> Result<(), VmemError> {
    if size == 0 {
        return Err(VmemError::ZeroSize);
    }
    if (addr | size) & (q - 1) != 0 {
        return Err(VmemError::SpanMisaligned {
            addr,
            size,
            quantum: q,
        });
    }
    if addr.checked_add(size).is_none() {
        return Err(VmemError::SpanOverflow { addr, size });
    }
    Ok(())
}

impl Source for Vmem {
    /// `xalloc(size, align = max(align, quantum))`.
    fn import(&self, size: usize, align: usize) -> Option<Addr> {
        let align = align.max(self.quantum);
        self.xalloc(&XAllocRequest::new(size).align(align)).ok()
    }
    /// `xfree(addr, size)`; aborts with a message if the range was not
    /// imported whole, as vmem.c panics on a bad free.
    fn release(&self, addr: Addr, size: usize) {
        if let Err(e) = self.xfree(addr, size) {
            tree::fatal(format_args!("release to arena {}: {}", self.name(), e));
        }
    }
    fn quantum(&self) -> usize {
        self.quantum
    }
    fn source_id(&self) -> u32 {
        self.id
    }
}

impl core::fmt::Debug for Vmem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vmem")
            .field("name", &self.name())
            .field("id", &self.id())
            .finish()
    }
}
