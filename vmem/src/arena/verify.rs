//! The invariant checker behind [`Vmem::verify`](crate::Vmem::verify): walks
//! the address list, the freelists, the hash table, the span list and the
//! reserve of one arena (its lock held) and checks every invariant of the
//! crate's theory statement, bounding each traversal so that corruption
//! cannot hang it.

use super::hash::hash_index;
use super::Inner;
use crate::error::VmemError;
use crate::p2::{flist_of, round_up};
use crate::seg::{Seg, T_ALLOC, T_FREE, T_HEAD, T_MARKER, T_SPAN, T_WALKER};
use core::ptr;

impl Inner {
    /// The invariant checker (lock held).
    ///
    /// # Safety
    /// The arena lock is held.
    pub(super) unsafe fn verify(&mut self) -> Result<(), VmemError> {
        macro_rules! check {
            ($c:expr, $what:expr, $addr:expr) => {
                if !$c {
                    return Err(VmemError::Corrupt {
                        what: $what,
                        addr: $addr,
                    });
                }
            };
        }
        let q = self.quantum;
        let seg0: *mut Seg = &mut self.seg0;
        let rotor: *mut Seg = &mut self.rotor;
        // SAFETY: lock held; we bound every traversal by counts we derive
        // from a first bounded pass, so a corrupt cycle cannot hang us
        // beyond `LIMIT` steps.
        unsafe {
            const LIMIT: usize = 1 << 40;
            // Pass 1: address list.
            let mut n_alloc = 0usize;
            let mut n_handle = 0usize;
            let mut n_free = 0usize;
            let mut n_spans = 0usize;
            let mut n_rotor = 0usize;
            let mut inuse = 0u64;
            let mut free_sum = 0u64;
            let mut total = 0u64;
            let mut import = 0u64;
            let mut retained = 0u64;
            let mut span: *mut Seg = ptr::null_mut();
            let mut span_has_alloc = false;
            let mut cursor = 0usize;
            let mut prev_typ = T_HEAD;
            let mut steps = 0usize;
            let mut s = (*seg0).anext;
            check!(!(*seg0).aprev.is_null(), "seg0 unlinked", 0);
            let mut last_span_end: Option<usize> = None;
            loop {
                steps += 1;
                check!(steps < LIMIT, "address list does not close", 0);
                check!(
                    (*(*s).aprev).anext == s,
                    "address list links broken",
                    (*s).start
                );
                let t = (*s).typ;
                if t == T_SPAN || s == seg0 {
                    if !span.is_null() {
                        check!(
                            cursor == (*span).end,
                            "segments do not tile their span",
                            (*span).start
                        );
                        // A wholly free imported span goes back to the source
                        // (markers do not hold it) unless the arena retains
                        // it, within `retain_max` bytes in all.
                        if (*span).import && !span_has_alloc {
                            retained += ((*span).end - (*span).start) as u64;
                            check!(
                                retained <= self.retain_max as u64,
                                "imported span wholly free but not released",
                                (*span).start
                            );
                        }
                    }
                    if s == seg0 {
                        break;
                    }
                    check!((*s).start < (*s).end, "empty span", (*s).start);
                    check!(
                        ((*s).start | (*s).end) & (q - 1) == 0,
                        "misaligned span",
                        (*s).start
                    );
                    if !self.has_source {
                        if let Some(e) = last_span_end {
                            check!((*s).start >= e, "spans out of address order", (*s).start);
                        }
                        last_span_end = Some((*s).end);
                    }
                    n_spans += 1;
                    total += ((*s).end - (*s).start) as u64;
                    if (*s).import {
                        import += ((*s).end - (*s).start) as u64;
                    }
                    (*s).mark = 1;
                    span = s;
                    span_has_alloc = false;
                    cursor = (*s).start;
                } else if t & T_MARKER != 0 {
                    if s == rotor {
                        n_rotor += 1;
                    } else {
                        check!(t == T_WALKER, "unknown marker", (*s).start);
                    }
                } else {
                    check!(!span.is_null(), "segment before any span", (*s).start);
                    check!(t == T_ALLOC || t == T_FREE, "bad segment type", (*s).start);
                    check!(
                        (*s).start == cursor,
                        "segment out of address order or gap",
                        (*s).start
                    );
                    check!((*s).end > (*s).start, "empty segment", (*s).start);
                    let end = if t == T_ALLOC {
                        round_up((*s).end, q).unwrap_or(0)
                    } else {
                        (*s).end
                    };
                    check!(
                        (*s).start & (q - 1) == 0 && end & (q - 1) == 0,
                        "misaligned segment",
                        (*s).start
                    );
                    check!(end <= (*span).end, "segment past its span", (*s).start);
                    if t == T_FREE {
                        check!(prev_typ != T_FREE, "two adjacent free segments", (*s).start);
                        n_free += 1;
                        free_sum += (end - (*s).start) as u64;
                    } else {
                        n_alloc += 1;
                        if (*s).handle {
                            n_handle += 1;
                            check!(
                                ptr::eq((*s).owner, self.vm.cast()),
                                "handle segment of another arena",
                                (*s).start
                            );
                        }
                        span_has_alloc = true;
                        inuse += (end - (*s).start) as u64;
                    }
                    (*s).mark = 1;
                    cursor = end;
                }
                prev_typ = t;
                s = (*s).anext;
            }
            check!(n_rotor == 1, "rotor missing or duplicated", 0);
            // Pass 2: freelists and freemap.
            let mut listed = 0usize;
            for (i, &head) in self.freelist.iter().enumerate() {
                check!(
                    (self.freemap >> i) & 1 == (!head.is_null()) as u64,
                    "freemap does not match non-empty freelists",
                    i
                );
                let mut prev: *mut Seg = ptr::null_mut();
                let mut f = head;
                while !f.is_null() {
                    listed += 1;
                    check!(
                        listed <= n_free,
                        "freelist holds more than the free segments",
                        (*f).start
                    );
                    check!(
                        (*f).typ == T_FREE,
                        "non-free segment on a freelist",
                        (*f).start
                    );
                    check!(
                        (*f).mark == 1,
                        "freelist segment not on the address list once",
                        (*f).start
                    );
                    check!(
                        flist_of((*f).end - (*f).start) as usize == i,
                        "free segment on the wrong freelist",
                        (*f).start
                    );
                    check!((*f).kprev == prev, "freelist back link broken", (*f).start);
                    (*f).mark = 2;
                    prev = f;
                    f = (*f).knext;
                }
            }
            check!(
                listed == n_free,
                "free segment missing from the freelists",
                0
            );
            // Pass 3: hash table.
            let mut hashed = 0usize;
            let nb = self.hash_mask + 1;
            check!(
                nb.is_power_of_two() && 64 - nb.trailing_zeros() == self.hash_shift,
                "hash geometry",
                nb
            );
            for h in 0..nb {
                let mut a = *self.hash_table.add(h);
                while !a.is_null() {
                    hashed += 1;
                    check!(!(*a).handle, "handle segment in the hash", (*a).start);
                    check!(
                        hashed <= n_alloc - n_handle,
                        "hash holds more than the allocated segments",
                        (*a).start
                    );
                    check!(
                        (*a).typ == T_ALLOC,
                        "non-allocated segment in the hash",
                        (*a).start
                    );
                    check!(
                        (*a).mark == 1,
                        "hashed segment not on the address list once",
                        (*a).start
                    );
                    check!(
                        hash_index((*a).start, self.qshift, self.hash_shift) == h,
                        "segment in the wrong bucket",
                        (*a).start
                    );
                    (*a).mark = 2;
                    a = (*a).knext;
                }
            }
            check!(
                hashed == n_alloc - n_handle,
                "allocated segment missing from the hash",
                0
            );
            // Pass 4: span list.
            let mut nsp = 0usize;
            let mut k = (*seg0).knext;
            while k != seg0 {
                nsp += 1;
                check!(
                    nsp <= n_spans,
                    "span list longer than the spans",
                    (*k).start
                );
                check!(
                    (*k).typ == T_SPAN && (*k).mark == 1,
                    "span list holds a non-span",
                    (*k).start
                );
                check!(
                    (*(*k).kprev).knext == k,
                    "span list links broken",
                    (*k).start
                );
                (*k).mark = 2;
                k = (*k).knext;
            }
            check!(nsp == n_spans, "span missing from the span list", 0);
            // Pass 5: every mark must be 2 (1 for handle segments); reset them.
            let mut s = (*seg0).anext;
            while s != seg0 {
                if (*s).typ == T_ALLOC && (*s).handle {
                    // On no k-list: handle segments stay out of the hash.
                    check!((*s).mark == 1, "handle segment on a list", (*s).start);
                } else if (*s).typ & (T_ALLOC | T_FREE | T_SPAN) != 0 {
                    check!((*s).mark == 2, "segment not on its list", (*s).start);
                }
                (*s).mark = 0;
                s = (*s).anext;
            }
            // Reserve.
            let mut r = 0usize;
            let mut f = self.segfree;
            while !f.is_null() {
                r += 1;
                check!(r <= LIMIT, "reserve list does not end", 0);
                f = (*f).knext;
            }
            check!(r == self.nsegfree, "reserve count wrong", r);
            // Counters and kstats.
            check!(
                n_alloc - n_handle == self.nalloc,
                "allocated segment count wrong",
                n_alloc
            );
            check!(
                n_handle == self.nhandle,
                "handle segment count wrong",
                n_handle
            );
            check!(n_free == self.nfree, "free segment count wrong", n_free);
            check!(n_spans == self.nspans, "span count wrong", n_spans);
            check!(
                inuse == self.ks.mem_inuse,
                "kstat mem_inuse wrong",
                inuse as usize
            );
            check!(
                total == self.ks.mem_total,
                "kstat mem_total wrong",
                total as usize
            );
            check!(
                inuse + free_sum == total,
                "in use + free != total",
                total as usize
            );
            check!(
                import == self.ks.mem_import,
                "kstat mem_import wrong",
                import as usize
            );
            check!(
                self.ks.alloc.wrapping_sub(self.ks.free) == (self.nalloc + self.nhandle) as u64,
                "kstat alloc - free != allocated segments",
                self.nalloc + self.nhandle
            );
        }
        Ok(())
    }
}

/// The checker must be able to fail: corrupt each structure on purpose and
/// expect the matching complaint.
#[cfg(all(test, feature = "std"))]
mod tests {
    use crate::seg::{Seg, T_ALLOC, T_FREE};
    use crate::{CreateFlags, Policy, Vmem, VmemError};
    use core::cell::Cell;

    fn expect(
        vm: &Vmem,
        what: &str,
        corrupt: impl FnOnce(&mut super::Inner),
        restore: impl FnOnce(&mut super::Inner),
    ) {
        vm.lock();
        // SAFETY: lock held; we restore what we break before unlocking.
        let r = unsafe {
            let i = vm.inner();
            corrupt(i);
            let r = i.verify();
            restore(i);
            // Clear the scratch marks a failed pass may have left.
            let seg0: *mut Seg = &mut i.seg0;
            let mut s = (*seg0).anext;
            while s != seg0 {
                (*s).mark = 0;
                s = (*s).anext;
            }
            r
        };
        vm.unlock();
        match r {
            Err(VmemError::Corrupt { what: w, .. }) => assert_eq!(w, what),
            other => panic!("expected Corrupt({what}), got {other:?}"),
        }
        vm.verify().expect("restored");
    }

    /// A 64 KiB arena of quantum 16 at 0x10000, without a source.
    fn small_arena(name: &str) -> &'static Vmem {
        Vmem::create(
            name,
            Some((0x10000, 0x10000)),
            16,
            None,
            0,
            CreateFlags::NONE,
        )
        .unwrap()
    }

    #[test]
    fn verify_catches_corruption() {
        let vm = small_arena("corrupt");
        let a = vm.alloc(64, Policy::InstantFit).unwrap();
        let b = vm.alloc(32, Policy::InstantFit).unwrap();
        let c = vm.alloc(48, Policy::InstantFit).unwrap();
        vm.free(b, 32).unwrap();
        vm.verify().unwrap();

        expect(
            vm,
            "freemap does not match non-empty freelists",
            |i| i.freemap ^= 1 << 40,
            |i| i.freemap ^= 1 << 40,
        );
        expect(
            vm,
            "kstat mem_inuse wrong",
            |i| i.ks.mem_inuse += 16,
            |i| i.ks.mem_inuse -= 16,
        );
        expect(
            vm,
            "kstat mem_total wrong",
            |i| i.ks.mem_total += 16,
            |i| i.ks.mem_total -= 16,
        );
        expect(
            vm,
            "kstat alloc - free != allocated segments",
            |i| i.ks.free += 1,
            |i| i.ks.free -= 1,
        );
        expect(
            vm,
            "reserve count wrong",
            |i| i.nsegfree += 1,
            |i| i.nsegfree -= 1,
        );
        expect(
            vm,
            "free segment count wrong",
            |i| i.nfree += 1,
            |i| i.nfree -= 1,
        );
        // Take an allocated segment out of its hash bucket.
        let saved: Cell<(*mut *mut Seg, *mut Seg)> =
            Cell::new((core::ptr::null_mut(), core::ptr::null_mut()));
        expect(
            vm,
            "allocated segment missing from the hash",
            // SAFETY: `expect` holds the arena lock while it runs this; `a` is allocated, so
            // its bucket's chain is valid and holds it.
            |i| unsafe {
                let bk = i.bucket(a);
                let s = *bk;
                assert_eq!((*s).start, a);
                saved.set((bk, s));
                *bk = (*s).knext;
            },
            // SAFETY: lock held (in `expect`); `saved` is the bucket and segment unlinked
            // just above, put back as they were.
            |_| unsafe {
                let (bk, s) = saved.get();
                (*s).knext = *bk;
                *bk = s;
            },
        );
        // A segment whose end no longer meets its neighbour.
        let seg: Cell<*mut Seg> = Cell::new(core::ptr::null_mut());
        expect(
            vm,
            "segment out of address order or gap",
            // SAFETY: lock held (in `expect`); `c` is allocated and hashed, so its bucket's
            // head is a valid segment.
            |i| unsafe {
                seg.set(*i.bucket(c));
                (*seg.get()).start += 16;
            },
            // SAFETY: lock held; the segment saved just above, its `start` restored.
            |_| unsafe { (*seg.get()).start -= 16 },
        );
        // A free segment that claims to be allocated.
        expect(
            vm,
            "freelist holds more than the free segments",
            // SAFETY: lock held (in `expect`); a non-empty freelist's head is a valid free
            // segment.
            |i| unsafe {
                let mut f = core::ptr::null_mut();
                for &h in i.freelist.iter() {
                    if !h.is_null() {
                        f = h;
                    }
                }
                // Leave the freelists alone; only the type lies.
                seg.set(f);
                (*f).typ = T_ALLOC;
            },
            // SAFETY: lock held; the segment saved just above, its type restored.
            |_| unsafe { (*seg.get()).typ = T_FREE },
        );
        vm.free(a, 64).unwrap();
        vm.free(c, 48).unwrap();
        vm.verify().unwrap();
        // SAFETY: no other thread uses this arena, nothing is allocated from it any more,
        // and it is not used afterwards.
        unsafe { assert_eq!(vm.destroy(), 0) };
    }

    #[test]
    fn verify_catches_handle_corruption() {
        let vm = small_arena("corrupt_h");
        let a = vm.alloc(64, Policy::InstantFit).unwrap();
        let h = vm.alloc_handle(32, Policy::InstantFit).unwrap();
        let b = vm.alloc(48, Policy::InstantFit).unwrap();
        vm.verify().unwrap();
        let hs: Cell<*mut Seg> = Cell::new(core::ptr::null_mut());
        // SAFETY: called only from `expect`'s closures (lock held); the handle's segment
        // is on the address list, so the walk from `seg0` reaches it.
        let find = |i: &mut super::Inner| unsafe {
            let seg0: *mut Seg = &mut i.seg0;
            let mut s = (*seg0).anext;
            while (*s).start != h.addr() || (*s).typ != T_ALLOC {
                s = (*s).anext;
            }
            assert!((*s).handle);
            hs.set(s);
        };
        expect(
            vm,
            "handle segment count wrong",
            |i| i.nhandle += 1,
            |i| i.nhandle -= 1,
        );
        expect(
            vm,
            "allocated segment count wrong",
            |i| {
                i.nhandle -= 1;
                i.nalloc += 1;
            },
            |i| {
                i.nhandle += 1;
                i.nalloc -= 1;
            },
        );
        expect(
            vm,
            "handle segment of another arena",
            |i| {
                find(i);
                // SAFETY: lock held (in `expect`); `find` just stored the handle's live segment.
                unsafe { (*hs.get()).owner = core::ptr::null() };
            },
            // SAFETY: lock held; the segment found above, its owner restored.
            |i| unsafe { (*hs.get()).owner = i.vm.cast() },
        );
        // A handle segment pushed into its hash bucket.
        expect(
            vm,
            "handle segment in the hash",
            // SAFETY: lock held (in `expect`); the handle's segment is valid and on no
            // k-list, and its bucket's chain is valid.
            |i| unsafe {
                find(i);
                let bk = i.bucket(h.addr());
                (*hs.get()).knext = *bk;
                *bk = hs.get();
            },
            // SAFETY: lock held; undo the push just above (the segment is the bucket's head).
            |i| unsafe {
                let bk = i.bucket(h.addr());
                *bk = (*hs.get()).knext;
                (*hs.get()).knext = core::ptr::null_mut();
            },
        );
        // An address segment that claims to be a handle segment.
        let sa: Cell<*mut Seg> = Cell::new(core::ptr::null_mut());
        expect(
            vm,
            "handle segment in the hash",
            // SAFETY: lock held (in `expect`); `a` is allocated and was hashed last, so it is
            // its bucket's head.
            |i| unsafe {
                sa.set(*i.bucket(a));
                assert_eq!((*sa.get()).start, a);
                (*sa.get()).handle = true;
                (*sa.get()).owner = i.vm.cast();
                i.nhandle += 1;
                i.nalloc -= 1;
            },
            // SAFETY: lock held; the segment and counts changed just above, restored.
            |i| unsafe {
                (*sa.get()).handle = false;
                i.nhandle -= 1;
                i.nalloc += 1;
            },
        );
        vm.free_handle(h).unwrap();
        vm.free(a, 64).unwrap();
        vm.free(b, 48).unwrap();
        vm.verify().unwrap();
        // SAFETY: no other thread uses this arena, nothing is allocated from it any more
        // (the handle was freed), and it is not used afterwards.
        unsafe { assert_eq!(vm.destroy(), 0) };
    }
}
