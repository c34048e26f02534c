//! Allocation (`vmem_alloc`, `vmem_xalloc`): the fit policies of the
//! paper's section 4.4 and the constraints of `xalloc`.
//!
//! * **Instant fit** (`alloc_instant`, the hot path): the head of the
//!   lowest non-empty freelist whose members are all large enough — one
//!   `trailing_zeros` on the freemap — after a look at the head of the
//!   floor list (a deviation from vmem.c, see the crate's theory statement).
//! * **Next fit** (`alloc_nextfit`): the first free segment after the rotor.
//! * **Best fit**, **first fit** and every constrained request go through
//!   `xalloc_impl`, whose freelist search is `Inner::find` and whose
//!   placement test is `fit`; when nothing fits it imports from the source
//!   (`arena/import.rs`) or reaps the quantum caches and retries.
//!
//! `Inner::seg_alloc` carves the chosen range out of its free segment.
//! Sizes up to `qcache_max` go to the quantum caches first.

use super::reaphook;
use super::{Inner, Vmem, FREELISTS};
use crate::error::VmemError;
use crate::p2::{crosses, flist_of, phase_up, round_up, same_highbit};
use crate::seg::{Seg, T_FREE};
use crate::types::{Addr, Policy, XAllocRequest};
use core::ptr;
use core::sync::atomic::Ordering;

/// What the segment layer's allocations return: the address and its
/// segment (kept only by handle allocations).
pub(super) type SegAllocResult = Result<(Addr, *mut Seg), VmemError>;

// -------------------------------------------------------------------------
// Requests
// -------------------------------------------------------------------------

/// Validated `xalloc` parameters.
#[derive(Clone, Copy)]
pub(super) struct ValidatedRequest {
    pub(super) size: usize,
    pub(super) realsize: usize,
    pub(super) align: usize,
    pub(super) phase: usize,
    pub(super) nocross: usize,
    pub(super) minaddr: Addr,
    pub(super) maxaddr: Option<Addr>,
    pub(super) policy: Policy,
}

impl ValidatedRequest {
    /// An unconstrained request (quantum alignment, anywhere) with `policy`.
    pub(super) fn plain(
        size: usize,
        realsize: usize,
        quantum: usize,
        policy: Policy,
    ) -> ValidatedRequest {
        ValidatedRequest {
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

impl Vmem {
    #[inline(always)]
    pub(super) fn realsize(&self, size: usize) -> Result<usize, VmemError> {
        if size == 0 {
            return Err(VmemError::ZeroSize);
        }
        round_up(size, self.quantum).ok_or(VmemError::SizeOverflow { size })
    }

    pub(super) fn check_xreq(&self, req: &XAllocRequest) -> Result<ValidatedRequest, VmemError> {
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
        Ok(ValidatedRequest {
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
}

// -------------------------------------------------------------------------
// Carving a free segment
// -------------------------------------------------------------------------

impl Inner {
    /// Allocate `[addr, addr + size)` (occupying `realsize`) from the free
    /// segment `vsp`; leftovers go back on the freelists.
    ///
    /// # Safety
    /// The arena lock is held, `vsp` is a free segment containing
    /// `[addr, addr + realsize)`, and the reserve holds the two structures a
    /// split may need (`short()` is false).
    #[inline(always)]
    pub(super) unsafe fn seg_alloc<const H: bool>(
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
}

// -------------------------------------------------------------------------
// Instant fit and next fit: the unconstrained entry points
// -------------------------------------------------------------------------

impl Vmem {
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
    pub(super) fn alloc_seg<const H: bool>(&self, size: usize, policy: Policy) -> SegAllocResult {
        match policy {
            Policy::InstantFit => self.alloc_instant::<H>(size),
            Policy::NextFit => self.alloc_nextfit::<H>(size),
            Policy::BestFit | Policy::FirstFit => {
                let realsize = self.realsize(size)?;
                self.alloc_general::<H>(size, realsize, policy)
            }
        }
    }

    #[cold]
    pub(super) fn qcache_alloc(&self, size: usize) -> Result<Addr, VmemError> {
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

    /// The general search for an unconstrained request of `size` bytes
    /// (`realsize` once rounded): what the fast fits fall back to.
    #[inline]
    fn alloc_general<const H: bool>(
        &self,
        size: usize,
        realsize: usize,
        policy: Policy,
    ) -> SegAllocResult {
        self.xalloc_impl::<H>(ValidatedRequest::plain(
            size,
            realsize,
            self.quantum,
            policy,
        ))
    }

    /// Takes the arena lock with segment structures at hand and answers
    /// `true`; when none can be had, drops the lock and answers `false`, and
    /// the caller goes to the general path, which reaps (the reap hook) and
    /// retries.
    #[inline(always)]
    pub(super) fn lock_with_metadata(&self) -> bool {
        self.lock();
        // SAFETY: lock held.
        if unsafe { self.inner().short() } && !self.populate() {
            self.unlock();
            return false;
        }
        true
    }

    /// Instant fit, unconstrained: the hot path.
    #[inline]
    pub(super) fn alloc_instant<const H: bool>(&self, size: usize) -> SegAllocResult {
        let realsize = self.realsize(size)?;
        if !self.lock_with_metadata() {
            return self.alloc_general::<H>(size, realsize, Policy::InstantFit);
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
            return self.alloc_general::<H>(size, realsize, Policy::InstantFit);
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
    pub(super) fn fail_nometa<T>(&self) -> Result<T, VmemError> {
        self.lock();
        // SAFETY: lock held.
        unsafe { self.inner().ks.fail += 1 };
        self.unlock();
        Err(VmemError::NoMetadata)
    }

    /// Next fit (`vmem_nextfit_alloc`).
    pub(super) fn alloc_nextfit<const H: bool>(&self, size: usize) -> SegAllocResult {
        let realsize = self.realsize(size)?;
        if !self.lock_with_metadata() {
            return self.alloc_general::<H>(size, realsize, Policy::FirstFit);
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
                    return self.xalloc_impl::<H>(ValidatedRequest::plain(
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
}

// -------------------------------------------------------------------------
// Best fit, first fit and constrained allocation (xalloc)
// -------------------------------------------------------------------------

impl Vmem {
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
    pub(super) fn xalloc_seg<const H: bool>(&self, req: &XAllocRequest) -> SegAllocResult {
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

    /// The general search, with import from the source and quantum-cache
    /// reaping when short.
    pub(super) fn xalloc_impl<const H: bool>(&self, r: ValidatedRequest) -> SegAllocResult {
        let mut reaped = false;
        let mut hooked = false;
        let gen = reaphook::generation();
        self.lock();
        loop {
            // SAFETY: lock held.
            if unsafe { self.inner().short() } && !self.populate() {
                self.unlock();
                if !hooked {
                    hooked = true;
                    if reaphook::reap_before_failing(gen) {
                        self.lock();
                        continue;
                    }
                }
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
            if !hooked {
                // The whole process's caches (umem_reap), then once more.
                hooked = true;
                self.unlock();
                let retry = reaphook::reap_before_failing(gen);
                self.lock();
                if retry {
                    continue;
                }
            }
            // SAFETY: lock held.
            unsafe { self.inner().ks.fail += 1 };
            self.unlock();
            return Err(VmemError::Exhausted { size: r.size });
        }
    }
}

impl Inner {
    /// Search the freelists for a segment satisfying the constraints.
    ///
    /// # Safety
    /// The arena lock is held.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) unsafe fn find(
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
///
/// # Safety
/// `s` points to a valid segment (the arena lock is held).
#[inline]
pub(super) unsafe fn fit(
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
