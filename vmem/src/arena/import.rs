//! Spans from outside the arena: import from the source when short
//! (`vmem_import`), spans added by the caller (`vmem_add`,
//! `_vmem_extend_alloc`, `vmem_extend_unlocked`), and the retained spans
//! (hysteresis, not in vmem.c) an arena may keep instead of releasing them
//! at once (`set_retain`, `trim_retained`).

use super::fit::{SegAllocResult, ValidatedRequest};
use super::segs::{SEGS_PER_ALLOC_MAX, SEGS_PER_SPAN_CREATE};
use super::{Inner, Vmem};
use crate::diag::vmem_fatal;
use crate::error::VmemError;
use crate::p2::round_up;
use crate::seg::{k_remove, Seg, T_FREE};
use crate::source::Source;
use crate::types::Addr;

/// Internal arenas' import chunks from this size on are aligned to it.
pub(super) const HUGE_CHUNK: usize = 2 << 20;

// -------------------------------------------------------------------------
// Import from the source
// -------------------------------------------------------------------------

impl Vmem {
    /// Import a span big enough for `r` and allocate from it. Called and
    /// returns with the lock held on failure; on success the lock is
    /// dropped.
    pub(super) fn import_span<const H: bool>(
        &self,
        src: &'static dyn Source,
        r: &ValidatedRequest,
    ) -> SegAllocResult {
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
            vmem_fatal(format_args!(
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
}

// -------------------------------------------------------------------------
// Adding spans: add and extend_alloc
// -------------------------------------------------------------------------

/// Validate a span for `add`/`extend_alloc`/`create`.
pub(super) fn check_span(addr: Addr, size: usize, q: usize) -> Result<(), VmemError> {
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

impl Vmem {
    /// Take the arena lock with segment structures for a new span on hand and
    /// `[addr, addr + size)` overlapping no span; on `Ok` the lock is held, on
    /// error it is not (`add` and `extend_alloc`).
    pub(super) fn lock_for_new_span(&self, addr: Addr, size: usize) -> Result<(), VmemError> {
        if !self.lock_with_metadata() {
            return Err(VmemError::NoMetadata);
        }
        // SAFETY: lock held.
        let overlap = unsafe { self.inner() }.find_overlap(addr, addr + size);
        if let Some((existing, existing_size)) = overlap {
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
}

impl Inner {
    /// The first span overlapping `[start, end)`.
    pub(super) fn find_overlap(&self, start: Addr, end: Addr) -> Option<(Addr, usize)> {
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
    ///
    /// # Safety
    /// The arena lock is held, the arena has no source (its spans are
    /// sorted), the reserve is not short, and `[addr, endaddr)` overlaps no
    /// span.
    pub(super) unsafe fn extend(&mut self, addr: Addr, endaddr: Addr) -> *mut Seg {
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
}

// -------------------------------------------------------------------------
// Retained spans
// -------------------------------------------------------------------------

impl Vmem {
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
        pub(super) const BATCH: usize = 16;
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
}
