//! Large blocks (above the largest size class): whole pages from the
//! `umem_oversize` arena, or from `umem_memalign` when the alignment exceeds
//! a page. A block's page count is rounded up to a power of two (address
//! space only, see [`pages_for`]). Each block's first page carries its page
//! count in the page map.
//!
//! Both arenas import straight from the mmap page source, and every range
//! that goes back to them is first discarded (`MADV_DONTNEED`), so *all free
//! memory in these arenas reads as zero*: `calloc` of a block fresh from an
//! arena skips the memset. Wholly free spans go back to the kernel at once
//! (vmem releases imported spans when they become free).
//!
//! Between a free and the arena sits a small cache of recently freed
//! oversize blocks (at most [`SLOTS`] blocks and `large_cache` bytes of
//! their last requested sizes, oldest evicted first), so workloads that free and reallocate big buffers
//! do not pay an munmap/mmap and page faults each time. Any block whose
//! last requested size fits the limit is kept, whatever its capacity
//! (blocks of 16–25 MiB round up to 32 MiB; while only capacities up to
//! 16 MiB were kept, mimalloc-bench's malloc-large — blocks of 5–25 MiB —
//! hit 972 of 2,000 times and took 5.2 M page faults; keeping them, 1,956
//! hits and 0.24 M faults). A cached block
//! serves any request whose capacity is up to `REUSE_SPAN` (4) times
//! smaller, smallest first, keeping its own capacity and pages (measured,
//! harness `c/large`, 64 KiB–16 MiB log-uniform: exact-capacity reuse
//! only, 65.5k page faults and 191 ms; up to 4×, 32.8k and 133 ms, peak
//! RSS 117 → 113 MB; 2× and 8× were worse on one or the other). The limit
//! counts requested lengths, so a reused bigger block can keep up to its
//! capacity resident under a smaller charge. `reap()` empties the cache.
//!
//! **Ageing** (jemalloc's dirty-page decay and tcmalloc's page-heap release,
//! made coarse): freed huge memory stays resident only while it is reused.
//! Each periodic update (umem-slab's, every `reap_interval`, run by further
//! allocator activity) gives back every block that was already in the cache
//! at the previous update and was not taken since — so a freed block goes
//! back by the second update after its free, the rule the small-block
//! depots follow — and, when two intervals or more passed since the last
//! pass (an idle process), everything. The update hook runs with umem-slab's
//! update flag held, which comes after this cache's lock in the lock order:
//! it only *tries* the lock, and when that fails the pass is left pending
//! for the next large-block call ([`age_if_pending`]). Capacity rounding
//! stays a power of two: rounding huge blocks to eighths of a power of two
//! instead made malloc-large take 0.44 M faults instead of 0.24 M (a
//! request finds fewer cached blocks big enough) and no less peak RSS.

use crate::arenas::ARENAS;
use crate::options;
use crate::pagemap::{self, PageEntry, PageKind, MAX_PAGES};
use crate::sys::{self, PAGE, PAGE_SHIFT};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use umem_slab::SpinLock;
use umem_vmem::{Policy, XAllocRequest};

/// Blocks the cache holds at most.
pub const SLOTS: usize = 64;

#[derive(Clone, Copy)]
struct Slot {
    addr: usize,
    pages: usize,
    /// Bytes charged to the cache: the block's last requested size (what
    /// the program may have touched), not its reserved capacity.
    charge: usize,
    stamp: u64,
}

/// The cache of recently freed oversize blocks (see the module comment).
pub struct BlockCache {
    slots: [Slot; SLOTS],
    len: usize,
    bytes: usize,
    /// Counts frees into the cache; a slot's `stamp` is its value then.
    clock: u64,
    /// `clock` at the last ageing pass: a slot stamped at or before it
    /// was already cached then.
    mark: u64,
    /// When the last ageing pass ran (`now_ms`); 0 before the first.
    aged_ms: u64,
}

/// The large-block cache and its lock: first in the lock order (nothing of
/// umem's is held when it is taken; no other lock is taken under it).
pub static BLOCK_CACHE: SpinLock<BlockCache> = SpinLock::new(BlockCache {
    slots: [Slot {
        addr: 0,
        pages: 0,
        charge: 0,
        stamp: 0,
    }; SLOTS],
    len: 0,
    bytes: 0,
    clock: 0,
    mark: 0,
    aged_ms: 0,
});

/// An ageing pass is due but found [`BLOCK_CACHE`] taken (see the module
/// comment): the next large-block call runs it.
static AGE_PENDING: AtomicBool = AtomicBool::new(false);
/// Blocks given back by ageing passes.
pub static AGED_OUT: AtomicU64 = AtomicU64::new(0);

/// Large blocks handed out.
pub static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Large blocks freed.
pub static FREES: AtomicU64 = AtomicU64::new(0);
/// Large-block requests that failed.
pub static FAILS: AtomicU64 = AtomicU64::new(0);
/// Requests served from [`BLOCK_CACHE`].
pub static CACHE_HITS: AtomicU64 = AtomicU64::new(0);
/// Bytes (capacity) of live large blocks.
pub static IN_USE: AtomicU64 = AtomicU64::new(0);

/// Pages of the block that serves `size` bytes — the page count rounded up
/// to a power of two — or `None` when no block can be that big.
///
/// The rounding reserves address space, not memory (the page source maps
/// with `MAP_NORESERVE` and untouched pages cost nothing): it lets `realloc`
/// grow a large block in place up to the next power of two, and makes freed
/// blocks fit later requests of similar size, so the cache of freed blocks
/// hits often.
#[inline]
pub fn pages_for(size: usize) -> Option<usize> {
    let pages = (size.checked_add(PAGE - 1)? >> PAGE_SHIFT)
        .max(1)
        .checked_next_power_of_two()?;
    if pages > MAX_PAGES || size > isize::MAX as usize {
        None
    } else {
        Some(pages)
    }
}

/// Records the size last requested for the large block at `addr` (kept in
/// the page map entry of its second page, [`PageEntry::noted_len`]).
/// One-page blocks have no second page and record nothing.
#[inline]
fn note_len(addr: usize, block_bytes: usize, size: usize) {
    if block_bytes >= 2 * PAGE {
        let pages = size.div_ceil(PAGE).clamp(1, MAX_PAGES);
        pagemap::set(addr + PAGE, PageEntry::noted_len(pages));
    }
}

/// Resizes the large block at `addr` (`block_bytes` of room, at least a
/// page) to `size` in place when the room allows and it is not a big
/// shrink (below a quarter of the room and half the usable length); records
/// the new length and says whether it did. One page-map slot read, and
/// written only when the length changes page: this is every step of a
/// buffer grown by many small reallocs.
#[inline]
pub fn resize_in_place(addr: usize, block_bytes: usize, size: usize) -> bool {
    if size > block_bytes {
        return false;
    }
    if block_bytes < 2 * PAGE {
        return size >= block_bytes / 4;
    }
    let Some(slot) = pagemap::slot(addr + PAGE) else {
        return false;
    };
    let noted = slot.load().pages();
    let len = if noted == 0 || noted > block_bytes >> PAGE_SHIFT {
        block_bytes
    } else {
        noted << PAGE_SHIFT
    };
    if size < block_bytes / 4 && size < len / 2 {
        return false;
    }
    let pages = size.div_ceil(PAGE).clamp(1, MAX_PAGES);
    if pages != noted {
        slot.store(PageEntry::noted_len(pages));
    }
    true
}

fn noted_len(addr: usize, pages: usize) -> usize {
    if pages < 2 {
        return pages << PAGE_SHIFT;
    }
    let v = pagemap::entry(addr + PAGE).pages();
    if v == 0 || v > pages {
        pages << PAGE_SHIFT
    } else {
        v << PAGE_SHIFT
    }
}

/// A cached block may serve a request whose capacity is up to this many
/// times smaller (its capacity stays; the pages past the new request are
/// discarded).
const REUSE_SPAN: usize = 4;

/// Takes the best cached block for a request of capacity `pages` (a power
/// of two): the smallest capacity from `pages` to `REUSE_SPAN * pages`, the
/// most recently freed among equals. Returns its address and its capacity
/// in pages.
fn take_cached(pages: usize) -> Option<(usize, usize)> {
    let mut g = BLOCK_CACHE.lock();
    let c = &mut *g;
    let mut best: Option<usize> = None;
    for i in 0..c.len {
        let s = c.slots[i];
        if s.pages < pages || s.pages / REUSE_SPAN > pages {
            continue;
        }
        let better = match best {
            None => true,
            Some(b) => {
                let o = c.slots[b];
                s.pages < o.pages || (s.pages == o.pages && s.stamp > o.stamp)
            }
        };
        if better {
            best = Some(i);
        }
    }
    let i = best?;
    let s = c.slots[i];
    c.len -= 1;
    c.slots[i] = c.slots[c.len];
    c.bytes -= s.charge;
    Some((s.addr, s.pages))
}

/// Writes the addresses of the blocks the cache of freed blocks holds into
/// `out` (at most [`SLOTS`]) and answers how many (for the leak scan: they
/// are allocated in their arena but free to the program).
pub fn cached_blocks(out: &mut [usize; SLOTS]) -> usize {
    let c = BLOCK_CACHE.lock();
    for (o, s) in out.iter_mut().zip(&c.slots[..c.len]) {
        *o = s.addr;
    }
    c.len
}

/// The usable length of the large block at `addr` with `bytes` of capacity:
/// its last requested size rounded up to pages (see [`note_len`]).
pub fn len_of(addr: usize, bytes: usize) -> usize {
    noted_len(addr, bytes >> PAGE_SHIFT)
}

/// Allocates a block of at least `size` bytes aligned to `align`; zeroed if
/// `zero`. Null on failure (errno is the caller's business).
/// No reap and retry here: the caller (`alloc.rs`) does that.
pub fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    umem_slab::maybe_update();
    age_if_pending();
    alloc_room_once(size, size, align, zero)
}

/// [`alloc`] with capacity for `room` bytes (`room >= size`). Falls back to
/// `size` when the room is too big or cannot be had (the arena or the
/// kernel refuses it): a block is never refused for its room. The usable
/// length is `size`. No reap and retry here: the caller (`realloc.rs`) does
/// that.
pub fn alloc_room(size: usize, room: usize, align: usize, zero: bool) -> *mut u8 {
    // The periodic update, when due (a clock read: a large block costs far
    // more), so that a process that only makes large blocks gives back too.
    umem_slab::maybe_update();
    age_if_pending();
    alloc_room_once(size, room, align, zero)
}

/// Whether some block could ever serve `size` bytes (a request past that is
/// not worth a reap before failing).
pub fn servable(size: usize) -> bool {
    pages_for(size).is_some()
}

/// [`alloc_room`]'s one try: the room if it can be had, else the exact size.
fn alloc_room_once(size: usize, room: usize, align: usize, zero: bool) -> *mut u8 {
    let Some(exact) = pages_for(size) else {
        FAILS.fetch_add(1, Ordering::Relaxed);
        return core::ptr::null_mut();
    };
    if let Some(pages) = pages_for(room).filter(|&p| p > exact) {
        let p = alloc_pages(size, pages, align, zero);
        if !p.is_null() {
            return p;
        }
    }
    let p = alloc_pages(size, exact, align, zero);
    if p.is_null() {
        FAILS.fetch_add(1, Ordering::Relaxed);
    }
    p
}

/// [`alloc_room`] with the capacity decided: `pages` (a power of two, at
/// least `size`'s). Null when it cannot be had (the caller counts `FAILS`).
fn alloc_pages(size: usize, pages: usize, align: usize, zero: bool) -> *mut u8 {
    let (addr, pages, aligned) = if align <= PAGE {
        if let Some((a, p)) = take_cached(pages) {
            CACHE_HITS.fetch_add(1, Ordering::Relaxed);
            if zero {
                // SAFETY: the cached block is ours and at least `size` long.
                unsafe { core::ptr::write_bytes(a as *mut u8, 0, size) };
            }
            (a, p, false)
        } else {
            match ARENAS
                .oversize()
                .alloc(pages << PAGE_SHIFT, Policy::InstantFit)
            {
                Ok(a) => (a, pages, false),
                Err(_) => {
                    return core::ptr::null_mut();
                }
            }
        }
    } else {
        let req = XAllocRequest::new(pages << PAGE_SHIFT).align(align);
        match ARENAS.memalign().xalloc(&req) {
            Ok(a) => (a, pages, true),
            Err(_) => {
                return core::ptr::null_mut();
            }
        }
    };
    let entry = if aligned {
        PageEntry::aligned(pages)
    } else {
        PageEntry::large(pages)
    };
    if !pagemap::set(addr, entry) {
        give_back(addr, pages, aligned);
        return core::ptr::null_mut();
    }
    note_len(addr, pages << PAGE_SHIFT, size);
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    IN_USE.fetch_add((pages << PAGE_SHIFT) as u64, Ordering::Relaxed);
    addr as *mut u8
}

/// Discards the contents and returns the block to its arena
/// (`umem_memalign` when `aligned`, else `umem_oversize`).
fn give_back(addr: usize, pages: usize, aligned: bool) {
    let len = pages << PAGE_SHIFT;
    // SAFETY: the block is ours and nobody uses it any more.
    unsafe { sys::discard(addr, len) };
    let r = if aligned {
        ARENAS.memalign().xfree(addr, len)
    } else {
        ARENAS.oversize().free(addr, len)
    };
    if let Err(e) = r {
        sys::fatal(format_args!(
            "umem: arena refused large block {addr:#x} ({len} bytes): {e:?}"
        ));
    }
}

/// Frees the large block starting at `addr` described by `e`
/// (`PageKind::Large` or `PageKind::Aligned`).
pub fn free(addr: usize, e: PageKind) {
    let saved = sys::errno();
    let (pages, aligned) = match e {
        PageKind::Large(p) => (p, false),
        PageKind::Aligned(p) => (p, true),
        _ => unreachable!(),
    };
    let bytes = noted_len(addr, pages);
    pagemap::set(addr, PageEntry::NONE);
    if pages >= 2 {
        pagemap::set(addr + PAGE, PageEntry::NONE);
    }
    FREES.fetch_add(1, Ordering::Relaxed);
    IN_USE.fetch_sub((pages << PAGE_SHIFT) as u64, Ordering::Relaxed);
    let limit = options::LARGE_CACHE_BYTES.load(Ordering::Relaxed);
    if !aligned && bytes <= limit {
        let mut evicted = [(0usize, 0usize); 5];
        let mut n = 0;
        {
            let mut g = BLOCK_CACHE.lock();
            let c = &mut *g;
            c.clock += 1;
            // Evict the oldest until the new block fits.
            while c.len > 0 && (c.len == SLOTS || c.bytes + bytes > limit) && n < 4 {
                let mut o = 0;
                for i in 1..c.len {
                    if c.slots[i].stamp < c.slots[o].stamp {
                        o = i;
                    }
                }
                let s = c.slots[o];
                c.len -= 1;
                c.slots[o] = c.slots[c.len];
                c.bytes -= s.charge;
                evicted[n] = (s.addr, s.pages);
                n += 1;
            }
            if c.len < SLOTS && c.bytes + bytes <= limit {
                let stamp = c.clock;
                c.slots[c.len] = Slot {
                    addr,
                    pages,
                    charge: bytes,
                    stamp,
                };
                c.len += 1;
                c.bytes += bytes;
            } else {
                evicted[n] = (addr, pages);
                n += 1;
            }
        }
        for &(a, p) in &evicted[..n] {
            give_back(a, p, false);
        }
    } else {
        give_back(addr, pages, aligned);
    }
    // The periodic update, when due (see `alloc_room`).
    umem_slab::maybe_update();
    age_if_pending();
    sys::set_errno(saved);
}

/// Empties the cache of freed blocks (for `reap`).
pub fn drain_cache() {
    loop {
        let s = {
            let mut g = BLOCK_CACHE.lock();
            let c = &mut *g;
            if c.len == 0 {
                return;
            }
            c.len -= 1;
            let s = c.slots[c.len];
            c.bytes -= s.charge;
            s
        };
        give_back(s.addr, s.pages, false);
    }
}

/// (blocks, bytes) currently held by the cache.
pub fn cached() -> (usize, usize) {
    let c = BLOCK_CACHE.lock();
    (c.len, c.bytes)
}

/// Milliseconds of the coarse monotonic clock.
fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; the clock id is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

/// The ageing pass of a periodic update (module comment), from umem-global's
/// update hook: runs now if the cache lock is free, else leaves it pending.
pub fn age() {
    match BLOCK_CACHE.try_lock() {
        Some(g) => age_locked(g),
        None => AGE_PENDING.store(true, Ordering::Relaxed),
    }
}

/// Runs an ageing pass left pending by [`age`]; one load when none is.
#[inline]
fn age_if_pending() {
    if AGE_PENDING.load(Ordering::Relaxed) && AGE_PENDING.swap(false, Ordering::Relaxed) {
        age_locked(BLOCK_CACHE.lock());
    }
}

/// The ageing pass itself: takes out of the cache every block that was in
/// it at the previous pass (all of them after an idle gap of two intervals),
/// moves the mark, and gives the blocks back with the lock dropped.
fn age_locked(mut g: umem_slab::SpinGuard<'_, BlockCache>) {
    let now = now_ms();
    let interval = options::REAP_INTERVAL_NS.load(Ordering::Relaxed) / 1_000_000;
    let mut out = [(0usize, 0usize); SLOTS];
    let mut n = 0;
    {
        let c = &mut *g;
        let idle = c.aged_ms != 0 && interval != 0 && now >= c.aged_ms + 2 * interval;
        let mut i = 0;
        while i < c.len {
            let s = c.slots[i];
            if idle || s.stamp <= c.mark {
                c.len -= 1;
                c.slots[i] = c.slots[c.len];
                c.bytes -= s.charge;
                out[n] = (s.addr, s.pages);
                n += 1;
            } else {
                i += 1;
            }
        }
        c.mark = c.clock;
        c.aged_ms = now;
    }
    drop(g);
    AGED_OUT.fetch_add(n as u64, Ordering::Relaxed);
    for &(a, p) in &out[..n] {
        give_back(a, p, false);
    }
}
