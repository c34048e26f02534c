//! Large and firewalled blocks under `UMEM_DEBUG`: each has pages of its
//! own, its exact requested size in a table, and a redzone.
//!
//! * A *plain* debug large block (above the largest size class, or an
//!   alignment no class has) starts a run of pages from `umem_oversize`
//!   (`umem_memalign` above a page's alignment); the rest of its last page
//!   past the request (at least 8 bytes: a request of whole pages gets one
//!   more) is filled with the redzone byte `0xbb` and checked
//!   when the block is freed or realloc'd: one byte past the request is
//!   found, whatever the size.
//! * A *firewall* block (`UMEM_DEBUG=firewall=N`, requests of at least N
//!   bytes) is placed so that it ends (rounded up to its alignment, 16 bytes)
//!   right before a page made inaccessible with `mprotect(PROT_NONE)`: a
//!   store past the rounded end faults on the spot; the up to 15 bytes of
//!   rounding are redzone, checked on free.
//!
//! The table maps a block's address to its record: open addressing with
//! linear probing, in pages from umem's heap arena (never another
//! allocator), doubled when three quarters full. Its lock ([`TABLE`]) comes
//! after the class-creation lock and before umem-slab's and umem-vmem's
//! (it allocates its pages from the heap while held); `prefork` takes it
//! there.
//!
//! These blocks bypass the large-block cache and the page map (so `free`
//! asks the table first under `UMEM_DEBUG`; the statistics count them with
//! the large blocks), and their pages are not filled
//! with `0xbaddcafe` (arena pages read as zero), as libumem's debugging
//! covers big blocks less than small ones.

use core::sync::atomic::Ordering;

use crate::arenas::ARENAS;
use crate::sys::{discard, PAGE};
use umem_slab::{SpinLock, REDZONE_BYTE};
use umem_vmem::{Policy, XAllocRequest};

/// How a debug large block was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Pages from `umem_oversize`, the block at their start.
    Plain,
    /// Pages from `umem_memalign` (alignment above a page).
    Aligned,
    /// Pages from `umem_oversize` and a `PROT_NONE` page after them.
    Firewall,
}

/// One block's record.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    /// The address handed out (0: empty slot, 1: deleted).
    pub ptr: usize,
    /// The pages' start.
    pub base: usize,
    /// The pages' length (the guard page included).
    pub len: usize,
    /// The size requested.
    pub size: usize,
    /// End of the redzone (the guard page, or the pages' end).
    pub end: usize,
    /// How it was made.
    pub kind: Kind,
}

const EMPTY: usize = 0;
const DELETED: usize = 1;
const FIRST_CAP: usize = 256;

/// The table of live debug large blocks.
pub struct Table {
    slots: *mut Block,
    cap: usize,
    /// Live and deleted slots.
    used: usize,
    live: usize,
}

// SAFETY: the slots are reached only under the table's lock.
unsafe impl Send for Table {}

/// The table and its lock (see the module documentation for its place in
/// the lock order).
pub static TABLE: SpinLock<Table> = SpinLock::new(Table {
    slots: core::ptr::null_mut(),
    cap: 0,
    used: 0,
    live: 0,
});

#[inline]
fn home(p: usize, cap: usize) -> usize {
    ((p >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20) & (cap - 1)
}

impl Table {
    fn slot(&self, i: usize) -> *mut Block {
        // SAFETY: callers pass i < cap of a live table.
        unsafe { self.slots.add(i) }
    }

    /// The slot holding `p`, if any.
    fn find(&self, p: usize) -> Option<usize> {
        if self.cap == 0 {
            return None;
        }
        let mut i = home(p, self.cap);
        for _ in 0..self.cap {
            // SAFETY: i < cap.
            let k = unsafe { (*self.slot(i)).ptr };
            if k == p {
                return Some(i);
            }
            if k == EMPTY {
                return None;
            }
            i = (i + 1) & (self.cap - 1);
        }
        None
    }

    /// Doubles the table (or makes the first one); `false` when the heap has
    /// no pages for it.
    fn grow(&mut self) -> bool {
        let cap = if self.cap == 0 {
            FIRST_CAP
        } else {
            self.cap * 2
        };
        let bytes = (cap * core::mem::size_of::<Block>()).next_multiple_of(PAGE);
        let Ok(mem) = umem_vmem::heap().alloc(bytes, Policy::InstantFit) else {
            return false;
        };
        let slots = mem as *mut Block;
        // SAFETY: fresh heap pages of `bytes` bytes, ours.
        unsafe {
            for i in 0..cap {
                (*slots.add(i)).ptr = EMPTY;
            }
        }
        let (old, old_cap) = (self.slots, self.cap);
        *self = Table {
            slots,
            cap,
            used: 0,
            live: 0,
        };
        for i in 0..old_cap {
            // SAFETY: i < old_cap of the old table, still ours.
            let b = unsafe { *old.add(i) };
            if b.ptr > DELETED {
                self.put(b);
            }
        }
        if old_cap != 0 {
            let old_bytes = (old_cap * core::mem::size_of::<Block>()).next_multiple_of(PAGE);
            let _ = umem_vmem::heap().free(old as usize, old_bytes);
        }
        true
    }

    /// Inserts `b` (room is there).
    fn put(&mut self, b: Block) {
        let mut i = home(b.ptr, self.cap);
        loop {
            // SAFETY: i < cap.
            let k = unsafe { (*self.slot(i)).ptr };
            if k <= DELETED {
                if k == EMPTY {
                    self.used += 1;
                }
                // SAFETY: as above.
                unsafe { *self.slot(i) = b };
                self.live += 1;
                return;
            }
            i = (i + 1) & (self.cap - 1);
        }
    }
}

/// Records a new block; `false` when the table cannot grow.
fn insert(b: Block) -> bool {
    let mut t = TABLE.lock();
    if (t.used + 1) * 4 >= t.cap * 3 && !t.grow() {
        return false;
    }
    t.put(b);
    true
}

/// The record of the block at `p`, if `p` is one.
pub fn lookup(p: usize) -> Option<Block> {
    let t = TABLE.lock();
    // SAFETY: a slot index of the live table.
    t.find(p).map(|i| unsafe { *t.slot(i) })
}

/// Removes and returns the record of the block at `p`.
fn remove(p: usize) -> Option<Block> {
    let mut t = TABLE.lock();
    let i = t.find(p)?;
    // SAFETY: a slot index of the live table.
    let b = unsafe { *t.slot(i) };
    // SAFETY: as above.
    unsafe { (*t.slot(i)).ptr = DELETED };
    t.live -= 1;
    Some(b)
}

/// Calls `f` with every live block (under the table's lock: `f` must not
/// allocate).
pub fn for_each(f: &mut dyn FnMut(&Block)) {
    let t = TABLE.lock();
    for i in 0..t.cap {
        // SAFETY: i < cap.
        let b = unsafe { &*t.slot(i) };
        if b.ptr > DELETED {
            f(b);
        }
    }
}

/// Whether a request of `size` bytes aligned to `align` is a firewall block.
pub fn wants_firewall(size: usize, align: usize) -> bool {
    let fw = crate::debug_options::FIREWALL.load(core::sync::atomic::Ordering::Relaxed);
    fw != 0 && size >= fw && align <= PAGE
}

/// A debug large block of `size` bytes aligned to `align` (see the module
/// documentation); null when there is no memory. Its pages read as zero.
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    let firewall = wants_firewall(size, align);
    // At least 8 bytes of redzone after a plain block (a request of whole
    // pages gets one more page); a firewall block has its guard page.
    let room = if firewall {
        size.max(1)
    } else {
        size.saturating_add(8)
    };
    let Some(data) = room.checked_next_multiple_of(PAGE) else {
        return core::ptr::null_mut();
    };
    let b = if firewall {
        let len = data + PAGE;
        let Ok(base) = ARENAS.oversize().alloc(len, Policy::InstantFit) else {
            return core::ptr::null_mut();
        };
        let guard = base + data;
        // SAFETY: the guard page is ours (just allocated).
        if unsafe { libc::mprotect(guard as *mut libc::c_void, PAGE, libc::PROT_NONE) } != 0 {
            let _ = ARENAS.oversize().free(base, len);
            return core::ptr::null_mut();
        }
        let ptr = (guard - size) & !(align.max(16) - 1);
        Block {
            ptr,
            base,
            len,
            size,
            end: guard,
            kind: Kind::Firewall,
        }
    } else {
        // Page alignment comes with any oversize block; more takes the memalign arena.
        let (got, kind) = if align <= PAGE {
            (
                ARENAS.oversize().alloc(data, Policy::InstantFit),
                Kind::Plain,
            )
        } else {
            (
                ARENAS
                    .memalign()
                    .xalloc(&XAllocRequest::new(data).align(align)),
                Kind::Aligned,
            )
        };
        let Ok(base) = got else {
            return core::ptr::null_mut();
        };
        Block {
            ptr: base,
            base,
            len: data,
            size,
            end: base + data,
            kind,
        }
    };
    // SAFETY: the redzone is inside the block's pages, before the guard.
    unsafe {
        core::ptr::write_bytes(
            (b.ptr + size) as *mut u8,
            REDZONE_BYTE,
            b.end - b.ptr - size,
        )
    };
    if !insert(b) {
        release(&b);
        return core::ptr::null_mut();
    }
    crate::large::ALLOCS.fetch_add(1, Ordering::Relaxed);
    crate::large::IN_USE.fetch_add(b.len as u64, Ordering::Relaxed);
    if crate::debug_options::AUDIT.load(Ordering::Relaxed) {
        // Its allocating stack, by the pages' start (what the leak scan
        // walks in the arena), as `large.rs` records a plain large block.
        crate::large_audit::record(b.base);
    }
    b.ptr as *mut u8
}

/// The first byte of `b`'s redzone that is not `0xbb`: (offset from the
/// block's start, byte).
pub fn check(b: &Block) -> Option<(usize, u8)> {
    (b.ptr + b.size..b.end).find_map(|a| {
        // SAFETY: the redzone is inside the block's accessible pages.
        let v = unsafe { *(a as *const u8) };
        (v != REDZONE_BYTE).then_some((a - b.ptr, v))
    })
}

/// Gives the block's pages back (the guard page made accessible again,
/// the contents discarded: the arenas' free memory reads as zero).
fn release(b: &Block) {
    // SAFETY: the pages are ours and nobody uses them any more.
    unsafe {
        if b.kind == Kind::Firewall {
            libc::mprotect(
                (b.end) as *mut libc::c_void,
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
            );
        }
        discard(b.base, b.len);
    }
    let r = match b.kind {
        Kind::Aligned => ARENAS.memalign().xfree(b.base, b.len),
        _ => ARENAS.oversize().free(b.base, b.len),
    };
    if let Err(e) = r {
        crate::sys::fatal(format_args!(
            "umem: arena refused debug block {:#x} ({} bytes): {e:?}",
            b.base, b.len
        ));
    }
}

/// Takes the block at `p` out of the table: its record, or `None` when `p`
/// is not a debug large block. The caller checks it ([`check`]) and then
/// gives it back with [`free_pages`].
pub fn take(p: usize) -> Option<Block> {
    remove(p)
}

/// Gives a block taken with [`take`] back to its arena.
pub fn free_pages(b: &Block) {
    if crate::debug_options::AUDIT.load(Ordering::Relaxed) {
        crate::large_audit::forget(b.base);
    }
    crate::large::FREES.fetch_add(1, Ordering::Relaxed);
    crate::large::IN_USE.fetch_sub(b.len as u64, Ordering::Relaxed);
    release(b);
}
