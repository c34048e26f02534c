//! The segment pool: every segment structure not held by an arena.
//!
//! * The **global segment free list** (vmem.c's `vmem_segfree`), doubly
//!   linked through `knext`/`kprev`, from which arenas refill their
//!   reserves (`arena/populate.rs`) and to which destroyed and shrunk
//!   arenas give structures back. Its first stock is the 128 static
//!   structures below, enough to build the internal arenas.
//! * **Chunks**: the pages populate takes from `vmem_seg`. The first
//!   structure slot of every page of a chunk is a `ChunkHead` (where the
//!   chunk starts, its size, how many of its structures are on the global
//!   list). A chunk all of whose structures are listed is queued, and
//!   `update` gives it back to `vmem_seg` (`trim_free_segs`) — vmem.c never
//!   frees segment pages.
//! * The **populator pool**: structures of *pinned* chunks (never given
//!   back), reserved for the populator arenas, so that the structures that
//!   describe chunks never pin ordinary chunks (see the crate's theory
//!   statement, section 2).
//!
//! All three are guarded by one leaf lock, the segment-pool lock. This file
//! sits above the arena type (it frees chunks to `vmem_seg`) and below
//! everything that refills or empties reserves.

use crate::diag::vmem_fatal;
use crate::internal::seg_arena;
use crate::seg::{Seg, SEG_SIZE};
use crate::sync::{BootCell, SpinLock};
use crate::types::Addr;
use core::mem::{size_of, MaybeUninit};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

// -------------------------------------------------------------------------
// The pool and its lock
// -------------------------------------------------------------------------

/// Statically allocated segment structures that bootstrap the tree.
const SEG_INITIAL: usize = 128;
/// Below this many pooled structures populate takes a pinned chunk.
const POOL_LOW: usize = 64;

/// The static structures (the first stock of the global list).
static SEG0: BootCell<[MaybeUninit<Seg>; SEG_INITIAL]> =
    BootCell::new([const { MaybeUninit::uninit() }; SEG_INITIAL]);

/// What the segment-pool lock guards.
pub(crate) struct SegPool {
    /// The global segment free list (doubly linked through `knext`/`kprev`).
    free: *mut Seg,
    /// The populator pool: structures of pinned chunks, for the populator
    /// arenas only, linked through `knext`.
    pool: *mut Seg,
    /// Structures in the populator pool.
    npool: usize,
    /// Chunks all of whose structures are on the global list (lazily: a
    /// chunk is checked again when taken off), linked through
    /// `ChunkHead::next`.
    full_chunks: *mut ChunkHead,
}

// SAFETY: the pointers name unused segment structures and chunk headers,
// which belong to whoever holds the lock; no thread-local state.
unsafe impl Send for SegPool {}

/// The segment-pool lock and what it guards (a leaf lock).
pub(crate) static SEG_POOL: SpinLock<SegPool> = SpinLock::new(SegPool {
    free: ptr::null_mut(),
    pool: ptr::null_mut(),
    npool: 0,
    full_chunks: ptr::null_mut(),
});

/// Page size of the chunks (vmem_seg's quantum), 0 before the tree is
/// built (only static structures exist then).
static CHUNK_PAGE: AtomicUsize = AtomicUsize::new(0);

/// Put the static structures on the global list and record the chunk page
/// size (bootstrap).
///
/// # Safety
/// Called once, by the thread that builds the tree, before any arena
/// exists.
pub(crate) unsafe fn stock_static_segs(page: usize) {
    CHUNK_PAGE.store(page, Ordering::Relaxed);
    // SAFETY: exclusive during bootstrap (the contract): nobody else
    // touches SEG0.
    let segs = unsafe { &mut *SEG0.get() };
    for s in segs.iter_mut().rev() {
        let p = s.as_mut_ptr();
        // SAFETY: `p` is a static slot used for nothing else.
        unsafe { ptr::write(p, Seg::empty(0)) };
        putseg_global(p);
    }
}

// -------------------------------------------------------------------------
// Taking and giving structures
// -------------------------------------------------------------------------

/// Take a structure for an arena's reserve: populator arenas take from
/// the populator pool first, every arena from the global free list.
pub(crate) fn getseg_global(populator: bool) -> Option<*mut Seg> {
    let mut sp = SEG_POOL.lock();
    let p = sp.pool;
    if populator && !p.is_null() {
        // SAFETY: pooled structures are unused and valid; lock held.
        sp.pool = unsafe { (*p).knext };
        sp.npool -= 1;
        Some(p)
    } else {
        let head = sp.free;
        if head.is_null() {
            None
        } else {
            // SAFETY: lock held; `head` is on the list.
            unsafe { unlink_global(&mut sp, head) };
            Some(head)
        }
    }
}

/// Give a structure of a pinned chunk to the populator pool.
pub(crate) fn putseg_pool(s: *mut Seg) {
    let mut sp = SEG_POOL.lock();
    // SAFETY: lock held; the caller hands over an unused structure.
    unsafe { (*s).knext = sp.pool };
    sp.pool = s;
    sp.npool += 1;
}

/// Whether the populator pool is low (the next populate takes a pinned
/// chunk for it).
pub(crate) fn pool_low() -> bool {
    SEG_POOL.lock().npool < POOL_LOW
}

/// Push `s` on the global list and count it in its chunk, queueing the
/// chunk once all its structures are listed.
///
/// # Safety
/// `sp` is the locked pool; `s` is an unused structure not on the list.
unsafe fn push_global(sp: &mut SegPool, s: *mut Seg) {
    // SAFETY: per the contract.
    unsafe {
        let head = sp.free;
        (*s).knext = head;
        (*s).kprev = ptr::null_mut();
        if !head.is_null() {
            (*head).kprev = s;
        }
        sp.free = s;
        if let Some(h) = chunk_of(s) {
            (*h).count += 1;
            if (*h).count == chunk_capacity(h) && !(*h).queued && !(*h).pinned {
                (*h).queued = true;
                (*h).next = sp.full_chunks;
                sp.full_chunks = h;
            }
        }
    }
}

/// Take `s` off the global list (uncounting it in its chunk).
///
/// # Safety
/// `sp` is the locked pool; `s` is on the list.
unsafe fn unlink_global(sp: &mut SegPool, s: *mut Seg) {
    // SAFETY: per the contract; the list is doubly linked (knext/kprev).
    unsafe {
        let prev = (*s).kprev;
        let next = (*s).knext;
        if prev.is_null() {
            sp.free = next;
        } else {
            (*prev).knext = next;
        }
        if !next.is_null() {
            (*next).kprev = prev;
        }
        if let Some(h) = chunk_of(s) {
            (*h).count -= 1;
        }
    }
}

/// Give a structure to the global segment free list.
pub(crate) fn putseg_global(s: *mut Seg) {
    let mut sp = SEG_POOL.lock();
    // SAFETY: lock held; the caller hands over an unused structure.
    unsafe { push_global(&mut sp, s) };
}

/// Give a NULL-terminated chain (through `knext`) to the global list.
pub(crate) fn putsegs_global(mut head: *mut Seg) {
    if head.is_null() {
        return;
    }
    let mut sp = SEG_POOL.lock();
    // SAFETY: lock held; the caller hands over a well-formed chain of
    // unused structures.
    unsafe {
        while !head.is_null() {
            let next = (*head).knext;
            push_global(&mut sp, head);
            head = next;
        }
    }
}

/// Structures on the global free list (for tests and stats).
pub fn global_free_segs() -> usize {
    let sp = SEG_POOL.lock();
    let mut n = 0;
    let mut s = sp.free;
    while !s.is_null() {
        n += 1;
        // SAFETY: lock held; listed structures are valid.
        s = unsafe { (*s).knext };
    }
    n
}

// -------------------------------------------------------------------------
// Chunks: the pages populate carves, and giving them back
// -------------------------------------------------------------------------

/// The header at the start of every page of a chunk of segment structures
/// that populate took from `vmem_seg` (the page's first structure slot).
#[repr(C)]
struct ChunkHead {
    /// The chunk's first page (whose header counts for the chunk).
    base: usize,
    /// The chunk's size in bytes (as allocated from `vmem_seg`).
    size: usize,
    /// The chunk's structures on the global free list.
    count: usize,
    /// Queued on `SegPool::full_chunks`.
    queued: bool,
    /// Never given back (its structures feed the populator pool).
    pinned: bool,
    next: *mut ChunkHead,
}
const _: () = assert!(size_of::<ChunkHead>() <= SEG_SIZE);

/// Write the chunk headers of a fresh chunk `[p, p + size)` of `page`-sized
/// pages from `vmem_seg`.
///
/// # Safety
/// The memory is fresh, writable and page aligned.
pub(crate) unsafe fn init_seg_chunk(p: Addr, size: usize, page: usize, pinned: bool) {
    let mut pg = p;
    while pg < p + size {
        // SAFETY: per the contract; the slot is never handed out as a Seg.
        unsafe {
            ptr::write(
                pg as *mut ChunkHead,
                ChunkHead {
                    base: p,
                    size,
                    count: 0,
                    queued: false,
                    pinned,
                    next: ptr::null_mut(),
                },
            )
        };
        pg += page;
    }
}

/// The header of the chunk holding `s`, or `None` for a static structure.
fn chunk_of(s: *mut Seg) -> Option<*mut ChunkHead> {
    let base = SEG0.get() as Addr;
    let a = s as Addr;
    if a >= base && a < base + SEG_INITIAL * SEG_SIZE {
        return None;
    }
    let page = CHUNK_PAGE.load(Ordering::Relaxed);
    let h = (a & !(page - 1)) as *mut ChunkHead;
    // SAFETY: every non-static structure lies in a chunk page whose first
    // slot holds a header naming the chunk's first page.
    Some(unsafe { (*h).base as *mut ChunkHead })
}

/// Structures a chunk holds.
///
/// # Safety
/// `h` is a chunk's first header.
unsafe fn chunk_capacity(h: *mut ChunkHead) -> usize {
    let page = CHUNK_PAGE.load(Ordering::Relaxed);
    // SAFETY: per the contract.
    unsafe { (*h).size / page * (page / SEG_SIZE - 1) }
}

/// Give back to `vmem_seg` every ordinary chunk of segment structures
/// all of whose structures are on the global free list (after arenas were
/// destroyed or shrank). The structures that describe chunks in `vmem_seg`
/// and fill the populators' reserves come from pinned chunks (the
/// populator pool), so an ordinary chunk depends on nothing but its own
/// structures. Called by `update` with the arena-list lock held. Returns
/// the bytes given back.
pub(crate) fn trim_free_segs() -> usize {
    let Some(sa) = seg_arena() else {
        return 0;
    };
    let mut given = 0;
    loop {
        let chunk = {
            let mut sp = SEG_POOL.lock();
            let mut found = None;
            while found.is_none() {
                let h = sp.full_chunks;
                if h.is_null() {
                    break;
                }
                // SAFETY: lock held; queued headers are valid chunk heads
                // and listed structures are unused.
                unsafe {
                    sp.full_chunks = (*h).next;
                    (*h).queued = false;
                    if (*h).count == chunk_capacity(h) {
                        // Every slot of the chunk is listed: take them off.
                        let page = CHUNK_PAGE.load(Ordering::Relaxed);
                        let mut pg = (*h).base;
                        while pg < (*h).base + (*h).size {
                            let mut a = pg + SEG_SIZE;
                            while a < pg + page {
                                unlink_global(&mut sp, a as *mut Seg);
                                a += SEG_SIZE;
                            }
                            pg += page;
                        }
                        found = Some(((*h).base, (*h).size));
                    }
                }
            }
            found
        };
        let Some((base, size)) = chunk else {
            return given;
        };
        if let Err(e) = sa.xfree(base, size) {
            vmem_fatal(format_args!("freeing a chunk of segments: {e}"));
        }
        given += size;
    }
}
