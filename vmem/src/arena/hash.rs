//! The allocated-segment hash table (`vmem_hash_insert`/`vmem_hash_delete`,
//! `vmem_hash_rescale`): how `free` finds the segment of an address in
//! O(1).
//!
//! Keyed by start address (`addr >> log2(quantum)`, runs of it hashed),
//! chained through the segments' `knext`. An arena starts with the 16-bucket
//! table embedded in `Inner`; the allocating thread that pushes the live
//! count past the grow limit rescales it after dropping the arena lock
//! (`grow_hash`), and `update()` grows or shrinks every table
//! (`rescale_list_held`). New tables come from the `vmem_hash` arena
//! (`internal.rs`). Handle segments are never hashed (`arena/handle.rs`).
//!
//! Growth is deferred, never given up. When the list lock is busy the
//! allocation simply returns, and the next one over the limit asks again.
//! When no table can be had, the arena lets as many further allocations
//! over the limit pass as its table has buckets (`grow_wait`, so the failed
//! tries cost O(1) per allocation) and then tries again, whether or not the
//! live count has moved: an arena that stays at a plateau after a moment of
//! memory pressure still gets its table. (Raising the limit instead would
//! leave such an arena with long chains for good.) The allocation fast
//! paths only compare the live count with the limit; the waiting is
//! counted here, on the cold path.

use super::{Inner, Vmem, HASH_INITIAL};
use crate::arena::populate::populating_thread;
use crate::arenas::{try_with_list_lock, with_list_lock};
use crate::error::VmemError;
use crate::internal::{alloc_hash_table, free_hash_table};
use crate::p2::round_up_nz;
use crate::seg::{Seg, T_ALLOC};
use crate::sys::thread_id;
use crate::types::Addr;
use core::ptr;
use core::sync::atomic::Ordering;

// -------------------------------------------------------------------------
// Hashing
// -------------------------------------------------------------------------

/// Live allocated segments above which a table of `buckets` grows: a
/// load of 1/2 (the embedded table fills up first), so a rescale to twice
/// the live count keeps the load between 1/4 and 1/2.
pub(super) fn grow_limit(buckets: usize) -> usize {
    if buckets <= HASH_INITIAL {
        buckets
    } else {
        buckets / 2
    }
}

/// Quanta per run that keeps address order in the hash (see [`hash_index`]).
const RUN_SHIFT: u32 = 6;

/// The bucket of a segment starting at `addr` in a table of `2^(64 - hash_shift)`
/// buckets: its quantum number `k = addr >> qshift` plus a multiplicative hash of its
/// *run* (`k >> 6`, 64 quanta). Within a run consecutive quanta go to consecutive buckets,
/// so an arena that hands out segments in address order (a growing slab cache's pages)
/// inserts into one cache line of buckets after another: a multiplicative hash of `k`
/// itself sent every insert to a random, cold bucket (57% of a growing heap's
/// `vmem_alloc` samples, on that one load). Each run starts at a random bucket, so any
/// pattern of addresses spreads over the table at the granularity of runs (illumos's
/// `VMEM_HASH_INDEX` adds `k`'s higher bits instead: address order too, but a pattern
/// aligned with the table's size is left to the fold).
#[inline(always)]
pub(super) fn hash_index(addr: Addr, qshift: u32, hash_shift: u32) -> usize {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    let k = (addr >> qshift) as u64;
    let run = (k >> RUN_SHIFT).wrapping_mul(GOLDEN) >> hash_shift;
    (k.wrapping_add(run) & (u64::MAX >> hash_shift)) as usize
}

// -------------------------------------------------------------------------
// Insert and delete
// -------------------------------------------------------------------------

impl Inner {
    #[inline(always)]
    pub(super) fn bucket(&self, addr: Addr) -> *mut *mut Seg {
        // SAFETY: the index is masked to the table size.
        unsafe {
            self.hash_table
                .add(hash_index(addr, self.qshift, self.hash_shift))
        }
    }

    /// Make `s` allocated: into the hash, or (`H`, a handle allocation)
    /// marked as a handle segment of this arena and on no k-list.
    ///
    /// # Safety
    /// The arena lock is held; `s` is a segment on the address list and on no
    /// k-list.
    #[inline(always)]
    pub(super) unsafe fn alloc_insert<const H: bool>(&mut self, s: *mut Seg, realsize: usize) {
        // SAFETY: s is a valid segment leaving every k-list.
        unsafe {
            (*s).typ = T_ALLOC;
            (*s).handle = H;
            if H {
                (*s).owner = self.vm.cast();
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

    /// Take the allocated segment at `addr` out of the hash, checking its size
    /// (`vmem_hash_delete`).
    ///
    /// # Safety
    /// The arena lock is held.
    #[inline(always)]
    pub(super) unsafe fn hash_delete(
        &mut self,
        addr: Addr,
        size: usize,
    ) -> Result<*mut Seg, VmemError> {
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
                    self.ks.mem_inuse -= round_up_nz(size, self.quantum) as u64;
                    self.nalloc -= 1;
                    return Ok(s);
                }
                self.ks.lookup += 1;
                pp = &mut (*s).knext;
            }
        }
    }
}

// -------------------------------------------------------------------------
// Rescale
// -------------------------------------------------------------------------

impl Vmem {
    /// Resize the hash table to keep chains near length 1
    /// (`vmem_hash_rescale`); `update()` does it for every arena.
    pub fn rescale(&self) {
        with_list_lock(|| self.rescale_list_held(false));
    }

    /// Grow the hash after an allocation pushed it past `grow_at`.
    #[cold]
    #[inline(never)]
    pub(super) fn grow_hash(&self) {
        if populating_thread() == thread_id() {
            return;
        }
        // A plain load and store: a decrement lost to a race only makes
        // the wait a little longer, and a seen non-zero never wraps.
        let wait = self.grow_wait.load(Ordering::Relaxed);
        if wait != 0 {
            self.grow_wait.store(wait - 1, Ordering::Relaxed);
            return;
        }
        if try_with_list_lock(|| self.rescale_list_held(true)).is_none() {
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
        let table = if table_refused(self) {
            None
        } else {
            alloc_hash_table(target)
        };
        let Some(table) = table else {
            // A growth is not tried on every allocation: let `old` more
            // over the limit pass (frees between them or not), then try
            // again. (A failed shrink leaves the bigger table; no wait.)
            if target > old {
                self.grow_wait.store(old, Ordering::Relaxed);
            }
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
        self.grow_wait.store(0, Ordering::Relaxed);
        if !was_embedded {
            free_hash_table(old_table, old_size);
        }
    }
}

/// Whether a test made `vmem_hash` refuse `vm` its next table; never
/// outside the crate's tests.
#[cfg(not(test))]
#[inline(always)]
fn table_refused(_vm: &Vmem) -> bool {
    false
}

#[cfg(test)]
use tests::table_refused;

#[cfg(test)]
mod tests {
    use super::Vmem;
    use crate::types::{Addr, CreateFlags, Policy};
    use core::ptr;
    use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

    /// The arena whose tables are refused (null: none), and how many
    /// rescales were refused one.
    static REFUSE: AtomicPtr<Vmem> = AtomicPtr::new(ptr::null_mut());
    static REFUSED: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn table_refused(vm: &Vmem) -> bool {
        let refuse = ptr::eq(REFUSE.load(Ordering::Acquire), vm);
        if refuse {
            REFUSED.fetch_add(1, Ordering::Relaxed);
        }
        refuse
    }

    /// Consecutive quanta of a run go to consecutive buckets (one line of buckets after
    /// another for segments handed out in address order), and segments of a fixed size
    /// of several quanta, or strides that are multiples of the table, still spread over
    /// many buckets instead of piling onto a few.
    #[test]
    fn the_hash_keeps_address_order_and_spreads_strides() {
        use super::hash_index;
        let (q, shift) = (12, 64 - 10); // 4 KiB quanta, 1,024 buckets
        let base = 0x7f12_3440_0000usize; // a multiple of 64 quanta
        for run in 0..8 {
            let b = base + (run << (q + 6));
            let first = hash_index(b, q, shift);
            for i in 1..64 {
                assert_eq!(hash_index(b + (i << q), q, shift), (first + i) % 1024);
            }
        }
        for stride in [2usize, 4, 16, 1024, 1 << 20] {
            let mut seen = std::collections::HashSet::new();
            for i in 0..512 {
                seen.insert(hash_index(base + i * (stride << q), q, shift));
            }
            assert!(seen.len() >= 256, "stride {stride}: {} buckets", seen.len());
        }
    }

    /// An arena that climbs while no table can be had and then stays at a
    /// plateau (as many allocations as frees) after the pressure is gone
    /// still gets its table: failed growth is tried again after a number of
    /// allocations, not only once the live count has passed a raised limit.
    #[test]
    fn growth_resumes_at_a_plateau_after_failed_tables() {
        // A process of its own: no other test may hold the list lock and
        // defer the growth this test waits for.
        umem_testkit::run_alone("plateau", || {
            let a = Vmem::create(
                "plateau",
                Some((0x1000_0000, 1 << 24)),
                1,
                None,
                0,
                CreateFlags::NONE,
            )
            .unwrap();
            let live = 100;
            REFUSE.store(a as *const Vmem as *mut Vmem, Ordering::Release);
            let mut v: Vec<Addr> = (0..live)
                .map(|_| a.alloc(1, Policy::InstantFit).unwrap())
                .collect();
            assert!(REFUSED.load(Ordering::Relaxed) >= 3, "tables refused");
            assert_eq!(a.stats().hash_size, 16, "nothing grew while refused");
            REFUSE.store(ptr::null_mut(), Ordering::Release);
            for i in 0..4 * live {
                a.free(v[i % live], 1).unwrap();
                v[i % live] = a.alloc(1, Policy::InstantFit).unwrap();
            }
            let st = a.stats();
            assert!(
                st.hash_size >= 2 * live,
                "hash stuck at {} buckets for {live} live segments",
                st.hash_size
            );
            a.verify().unwrap();
            for &x in &v {
                a.free(x, 1).unwrap();
            }
            // SAFETY: made here, used by nobody else, not used after this.
            unsafe { a.destroy() };
        });
    }
}
