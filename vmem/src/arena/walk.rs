//! Looking at an arena from outside: `walk` (`vmem_walk`, with the
//! reentrant mode's walker marker) and `contains` (`vmem_contains`).

use super::Vmem;
use crate::seg::{a_insert_after, Seg, T_ALLOC, T_FREE, T_SPAN, T_WALKER};
use crate::types::{Addr, SegType, SegTypes, WalkMode};
use core::ptr;

/// Resets the walker / unlocks if a walk callback unwinds.
pub(super) struct WalkGuard<'a> {
    vm: &'a Vmem,
    walker: *mut Seg,
    locked: bool,
}

impl Drop for WalkGuard<'_> {
    fn drop(&mut self) {
        if !self.locked {
            self.vm.lock();
        }
        if !self.walker.is_null() {
            // SAFETY: the walker is linked on this arena's list; lock held.
            unsafe { self.vm.advance(self.walker, ptr::null_mut()) };
        }
        self.vm.unlock();
    }
}

impl Vmem {
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
}
