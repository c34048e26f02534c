//! Handle allocations: [`SegHandle`], [`Vmem::alloc_handle`],
//! [`Vmem::xalloc_handle`] and [`Vmem::free_handle`].
//!
//! A handle carries the segment structure of its allocation, so its free
//! needs no address → segment lookup: no hash bucket, no chain. Handle
//! segments are never in the hash table; they are allocated segments
//! (`T_ALLOC`) with `handle` set and `owner` naming their arena, on the
//! address list like any other, so coalescing, span release, `walk`,
//! `verify` and the kstats treat them as allocated.
//!
//! **Why `free_handle` is safe.** A `SegHandle` is created only here, from
//! a segment an allocation has just made allocated (`handle` set, `owner`
//! = the arena). It is neither `Clone` nor `Copy` and only `free_handle`
//! consumes it, so while it exists its segment stays allocated: nothing
//! else frees or changes an allocated handle segment —
//!
//! * `free`/`xfree` find segments through the hash, where handle segments
//!   never are (they answer `HandleAllocated` instead);
//! * coalescing (`free_seg`, `advance`, `release_past_markers`, `extend`)
//!   only merges or destroys *free* segments and span markers;
//! * span release (`maybe_release`, `release_past_markers`,
//!   `trim_retained`, `update`) only takes spans with no allocated segment;
//! * hash rescales walk only the hash; `walk`, `contains`, `size`, `stats`,
//!   `verify` only read (verify writes its scratch `mark` field, never
//!   `start`/`end`/`owner`/`typ`/`handle`); quantum caches and `lockup`
//!   do not touch segments;
//! * segment memory goes back (`update`) only in chunks all of whose
//!   structures are on the global free list, and an allocated segment is
//!   on its arena's address list instead.
//!
//! The only way to lose the segment is [`Vmem::destroy`], which is unsafe
//! and requires that no handle of the arena is used afterwards. So the
//! fields `start`, `end`, `owner`, `typ` and `handle` of a live handle's
//! segment are immutable and may be read without the arena lock (other
//! fields of the same structure, such as `anext` when a neighbour is
//! created, change under the lock: distinct memory locations).

use super::{Inner, Vmem};
use crate::diag::vmem_fatal;
use crate::error::VmemError;
use crate::p2::round_up_nz;
use crate::seg::{Seg, T_ALLOC, T_HEAD, T_MARKER, T_SPAN};
use crate::types::{Addr, Policy, XAllocRequest};
use core::fmt;
use core::ptr::{self, NonNull};

/// An allocation made by [`Vmem::alloc_handle`] or [`Vmem::xalloc_handle`],
/// freed by [`Vmem::free_handle`] — vmem's equivalent of a handle-based
/// allocator's token (device memory, IDs). It holds the allocation's
/// segment structure, so the free skips the hash lookup that
/// [`Vmem::free`] needs.
///
/// Move-only: the allocation stays live until the handle is given to
/// `free_handle`. Dropping a handle leaks its allocation (the arena keeps it
/// allocated; `free(addr, size)` refuses it with
/// [`VmemError::HandleAllocated`]).
///
/// One pointer (8 bytes, like `offset-allocator`'s `Allocation`): `addr()`
/// and `size()` read the segment structure (one cache line), so a caller
/// that needs the address often and the structure is cold may keep the
/// address beside the handle.
#[must_use = "dropping a SegHandle leaks its allocation; free it with Vmem::free_handle"]
pub struct SegHandle {
    /// Invariant: an allocated handle segment of a live arena until this
    /// handle is consumed (see the module comment).
    seg: NonNull<Seg>,
}

const _: () = assert!(core::mem::size_of::<Option<SegHandle>>() == 8);

// SAFETY: the handle only reads immutable fields of its segment (see the
// module comment) and its free takes the owning arena's lock, from any
// thread.
unsafe impl Send for SegHandle {}
// SAFETY: `&SegHandle` only reads fields that do not change while the
// handle exists.
unsafe impl Sync for SegHandle {}

impl SegHandle {
    /// The start of the allocation.
    #[inline]
    pub fn addr(&self) -> Addr {
        // SAFETY: the segment is allocated while the handle lives, so
        // `start` is valid and unchanging (module comment).
        unsafe { (*self.seg.as_ptr()).start }
    }

    /// The size the allocation was made with.
    #[inline]
    pub fn size(&self) -> usize {
        // SAFETY: the segment is allocated while the handle lives, so
        // `start`/`end` are valid and unchanging (module comment).
        unsafe {
            let s = self.seg.as_ptr();
            (*s).end - (*s).start
        }
    }

    /// The [`id`](Vmem::id) of the arena the allocation belongs to.
    pub fn arena_id(&self) -> u32 {
        // SAFETY: `owner` is the live arena of the allocated segment and
        // does not change while the handle lives; `id` is immutable.
        unsafe { (*((*self.seg.as_ptr()).owner as *const Vmem)).id }
    }
}

impl fmt::Debug for SegHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegHandle")
            .field("addr", &self.addr())
            .field("size", &self.size())
            .field("arena", &self.arena_id())
            .finish()
    }
}

impl Vmem {
    /// Allocate `size` units with `policy` and return a handle that frees
    /// the allocation with [`free_handle`](Vmem::free_handle), which needs
    /// no lookup. Handle allocations are never served by quantum caches
    /// and are not in the hash table; otherwise they behave like
    /// [`alloc`](Vmem::alloc) (placement, import from the source, kstats,
    /// [`walk`](Vmem::walk)).
    ///
    /// Errors: `ZeroSize`, `SizeOverflow`, `Exhausted`, `NoMetadata`.
    #[inline]
    pub fn alloc_handle(&self, size: usize, policy: Policy) -> Result<SegHandle, VmemError> {
        let (_, seg) = self.alloc_seg::<true>(size, policy)?;
        Ok(Self::handle_of(seg))
    }

    /// Constrained handle allocation: [`xalloc`](Vmem::xalloc) returning a
    /// [`SegHandle`]. Errors: as `xalloc`.
    pub fn xalloc_handle(&self, req: &XAllocRequest) -> Result<SegHandle, VmemError> {
        let (_, seg) = self.xalloc_seg::<true>(req)?;
        Ok(Self::handle_of(seg))
    }

    #[inline(always)]
    pub(super) fn handle_of(seg: *mut Seg) -> SegHandle {
        SegHandle {
            // SAFETY: allocations return the segment they made allocated,
            // never null.
            seg: unsafe { NonNull::new_unchecked(seg) },
        }
    }

    /// Free a handle allocation: the segment is freed, coalesced and its
    /// span released exactly as by [`free`](Vmem::free).
    ///
    /// Errors: `WrongArena` if the handle belongs to another arena (the
    /// handle is consumed and its allocation leaked).
    #[inline]
    pub fn free_handle(&self, h: SegHandle) -> Result<(), VmemError> {
        let s = h.seg.as_ptr();
        // SAFETY: `owner` of a live handle's segment is immutable and names
        // a live arena (module comment).
        let owner = unsafe { (*s).owner } as *const Vmem;
        if !ptr::eq(owner, self) {
            return Err(VmemError::WrongArena {
                addr: h.addr(),
                arena: self.id,
                // SAFETY: as above.
                owner: unsafe { (*owner).id },
            });
        }
        self.lock();
        // SAFETY: lock held.
        let inner = unsafe { self.inner() };
        // SAFETY: lock held; `s` is an allocated handle segment of this
        // arena (the handle's invariant, checked below against memory
        // corruption), consumed here so it is freed once.
        let rel = unsafe {
            if (*s).typ != T_ALLOC || !(*s).handle {
                vmem_fatal(format_args!(
                    "arena {}: handle of {:#x} does not name its allocated segment",
                    self.name(),
                    h.addr()
                ));
            }
            inner.handle_delete(s);
            inner.free_seg(s)
        };
        self.unlock();
        self.release_freed(rel);
        Ok(())
    }
}

impl Inner {
    /// Account for the free of the handle segment `s` (the handle's
    /// counterpart of `hash_delete`); `free_seg` does the rest.
    ///
    /// # Safety
    /// The arena lock is held and `s` is an allocated handle segment of this
    /// arena.
    #[inline(always)]
    pub(super) unsafe fn handle_delete(&mut self, s: *mut Seg) {
        // SAFETY: s is an allocated handle segment of this arena.
        unsafe {
            debug_assert!((*s).typ == T_ALLOC && (*s).handle);
            let real = round_up_nz((*s).end - (*s).start, self.quantum);
            self.ks.mem_inuse -= real as u64;
        }
        self.ks.free += 1;
        self.nhandle -= 1;
    }

    /// The allocated handle segment starting at `addr`, if there is one
    /// (linear in the segments of its span: only `free`'s error path asks).
    #[cold]
    pub(super) fn handle_seg_at(&self, addr: Addr) -> Option<*mut Seg> {
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
}
