//! The slow paths: what an allocation or free does when the hit path misses — the
//! thread's next magazine from the depot (`magazine_layer.rs`), else the slab layer
//! (`slab_layer.rs`) and the constructor — with the debug checks of debug caches and the
//! batch refill that keeps neighbouring buffers in one thread.

use core::sync::atomic::Ordering;

use crate::cache::Cache;
use crate::debug_report::debug_report;
use crate::hit::{cpu_hit_alloc, cpu_hit_free};
use crate::magazine::{bump, ThreadCache};
use crate::registry::internal_caches;

/// Batch refill from the slab layer (see `Cache::batch_refill`): buffers up to this size
/// take part, and a batch covers at most this many bytes (and one magazine). A page: two
/// threads growing their heaps in one class then interleave page by page, not kilobyte by
/// kilobyte, so each thread's blocks lie on half as many pages (issue 15; the numbers are in
/// docs/performance.md).
const BATCH_MAX_BUFSIZE: usize = 512;
const BATCH_BYTES: usize = 4096;
/// The most buffers in one batch (4096 bytes of 16-byte buffers; half a page of the 8-byte
/// class's, though a magazine holds fewer than this anyway).
const BATCH_MAX: usize = 256;
/// The cache line a batch spreads small buffers over (see `Cache::batch_refill`).
const LINE: usize = 64;
/// The least a batch of small buffers covers, whatever the magazine size: eight lines, so
/// that the spread ([`spread_over_lines`]) has lines to spread over. A fresh cache's
/// magazines hold 15 rounds: 120 bytes of the 8-byte class, two lines, and the buffers
/// coming out of such a batch alternated between those two. When a thread allocated
/// two neighbours for two other threads (Rust `cache-scratch`), the rest of its batch,
/// still in its CPU's magazine, went to whichever thread ran there next, on the line of
/// the other thread's block: 0.18-0.23 s instead of 0.145 (glibc's time) in most runs.
/// The extras beyond the magazine go to the previous magazine and the CPU's own depot
/// list.
const SPREAD_BYTES: usize = 8 * LINE;

/// Reorder `bufs` (a batch, ascending) so that no two buffers that come out one after the
/// other share a line: those at the lowest offset in their lines first (in address
/// order), then those 8 bytes further, and so on — a counting sort by the offset in the
/// line (buffers are 8-aligned). A batch spans at most a page, so a growing heap is still
/// written a page at a time, in a few passes over the page's lines (single-threaded C
/// heap growth: about 4.5% more instructions, a comparison sort cost twice that; spreading
/// only four lines at a time split batches of a small magazine's 15 buffers into
/// windows that shared lines again; docs/performance.md).
fn spread_over_lines(bufs: &mut [usize]) {
    const PHASES: usize = LINE / 8;
    let phase = |b: usize| (b % LINE) / 8;
    let mut start = [0usize; PHASES + 1];
    for &b in bufs.iter() {
        start[phase(b) + 1] += 1;
    }
    for p in 1..=PHASES {
        start[p] += start[p - 1];
    }
    let mut out = [0usize; BATCH_MAX];
    for &b in bufs.iter() {
        let p = phase(b);
        out[start[p]] = b;
        start[p] += 1;
    }
    bufs.copy_from_slice(&out[..bufs.len()]);
}

impl Cache {
    /// The alloc slow path: the periodic update when due, the magazine layer (depot), else
    /// a buffer from the slab layer, constructed.
    ///
    /// In per-CPU mode the Cache API's hit (`alloc_addr_at`, per thread) finds nothing
    /// (the thread's inline slots stay empty: `Cache::with_my_slot` never loads them per
    /// CPU), so its allocations come here and try the CPU's magazines first
    /// ([`cpu_hit_alloc`]: loaded, then previous); umem-global's hit runs the per-CPU hit
    /// itself (`hit_alloc`) and tries the previous magazine before it comes here.
    #[inline(never)]
    pub(crate) fn alloc_slow(&self) -> Option<usize> {
        // SAFETY: the cache's own inline index (MISS for a debug cache: no per-CPU hit).
        if let Some(b) = unsafe { cpu_hit_alloc(self.fast_index().inline()) } {
            return Some(b);
        }
        crate::update::maybe_update();
        // The thread's magazines, else (a cache that batches) a batch from the slab layer,
        // the first buffer for the caller and the rest into those same magazines — one
        // visit to them (per CPU: one take and put back) for both.
        let mut got = None;
        if self.id != 0 {
            // SAFETY: our own slot (or our private copy of the CPU's).
            got = self
                .with_my_slot(|slot| unsafe {
                    if let Some(b) = self.mag_alloc(slot) {
                        bump(&(*slot).allocs);
                        return Some((b, true));
                    }
                    if self.batches() {
                        return self.batch_refill(slot).map(|b| (b, false));
                    }
                    None
                })
                .flatten();
        }
        let (buf, from_magazine) = match got {
            Some((b, m)) => {
                if !m {
                    self.slow_allocs.fetch_add(1, Ordering::Relaxed);
                }
                (b, m)
            }
            None => {
                self.slow_allocs.fetch_add(1, Ordering::Relaxed);
                match self.slab_alloc() {
                    Some(b) => (b, false),
                    None => {
                        self.slow_allocs.fetch_sub(1, Ordering::Relaxed);
                        self.alloc_fail.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                }
            }
        };
        if self.buftag_off != 0 {
            // One call for both layers: an audited allocation then records the same stack
            // whichever layer served it, and a leak report keeps one call site's blocks in
            // one group (with per-CPU magazines a block another thread freed can serve any
            // allocation on the CPU).
            return self.debug_alloc(buf);
        }
        if from_magazine {
            return Some(buf);
        }
        if !self.construct(buf) {
            self.slow_allocs.fetch_sub(1, Ordering::Relaxed);
            self.alloc_fail.fetch_add(1, Ordering::Relaxed);
            self.slab_free_trusted(buf);
            return None;
        }
        Some(buf)
    }

    /// Whether this cache's slab-layer allocations come in batches ([`Cache::batch_refill`]):
    /// small buffers of user magazine caches without constructor, destructor or debugging.
    fn batches(&self) -> bool {
        // `grow_on_traffic` is false for quantum caches and caches with a constructor or
        // destructor. Magazine caches never batch: a batch there would recurse through
        // `mag_free`'s magazine allocation.
        self.id != 0
            && self.grow_on_traffic
            && self.buftag_off == 0
            && self.bufsize <= BATCH_MAX_BUFSIZE
            && !internal_caches()
                .magazines
                .iter()
                .any(|&m| core::ptr::eq(m, self))
    }

    /// A buffer from the slab layer for a cache that [batches](Cache::batches), with the
    /// rest of its batch loaded into `slot`'s magazines; `None` when the source arena is
    /// out of memory.
    ///
    /// Deviation from libumem (measured by umem-bench's cache-thrash/cache-scratch): when
    /// the depot has no full magazine and this thread had to go to the slab layer, take a
    /// short run of neighbouring buffers for the thread's magazine at once. Otherwise two
    /// threads that reach the slab layer together get interleaved neighbours — the same
    /// cache line — and keep reusing them through their magazines (false sharing: 3–4×
    /// glibc's time in cache-thrash). Only small buffers of user magazine caches without
    /// constructor, destructor or debugging take part; the extra buffers move from the
    /// slab layer to the magazine layer without touching the client alloc/free counts.
    ///
    /// Buffers smaller than a cache line come out a line apart ([`spread_over_lines`]):
    /// two buffers allocated one after the other then do not share a line, so when they
    /// end up with different threads (per-CPU magazines hand a CPU's buffers to whichever
    /// thread runs there next) the threads do not write one line.
    ///
    /// # Safety
    /// `slot` is the calling thread's slot for this cache (or its private copy of the
    /// CPU's), whose magazines just missed.
    #[inline(never)]
    unsafe fn batch_refill(&self, slot: *mut ThreadCache) -> Option<usize> {
        // SAFETY: our own slot. A per-CPU slot taken empty has no size yet (its words
        // keep none): the depot's current one.
        let magsize = unsafe {
            if (*slot).magsize == 0 && (*slot).loaded.is_null() && (*slot).ploaded.is_null() {
                (*slot).magsize = self.depot.0.lock().rounds();
            }
            (*slot).magsize
        };
        let n = magsize
            .max(SPREAD_BYTES.div_ceil(self.chunksize))
            .min(BATCH_BYTES / self.bufsize)
            .min(BATCH_MAX);
        if n < 2 {
            return self.slab_alloc();
        }
        // The batch a slab per slab-lock round trip, making slabs as needed (issue 15: one
        // lock per buffer made the refill cost about 94 instructions a buffer in a growing
        // heap; shorter batches meant more depot visits and earlier magazine growth).
        let mut batch = [0usize; BATCH_MAX];
        let got = self.slab_alloc_batch(&mut batch[..n]);
        if got == 0 {
            return None;
        }
        if self.chunksize < LINE {
            spread_over_lines(&mut batch[..got]);
        }
        let first = batch[0];
        let extra = &batch[1..got];
        // Straight into the loaded magazine when it has room for them all (it is empty
        // after the miss that brought us here); else all through `mag_free`, which may
        // trade with the depot or make a magazine. Either way the highest address (the
        // batch's last) goes in first: the magazine layer hands back the last put first,
        // so the thread then gets the batch in its order — ascending, as a fresh slab is
        // laid out, for large buffers (a heap that grows is then written and read in
        // ascending runs the hardware prefetcher follows; put in order, each batch came
        // out backwards), and a line apart for small ones.
        // SAFETY: `slot` is our own slot (or our private copy of the CPU's): only this
        // thread touches its magazine fields, and `put` stores only while `top <
        // limit`, inside the loaded magazine. The buffers are free buffers of this
        // cache that nobody else holds (no constructor to run: see above); the
        // client-visible alloc/free counts don't change: they go straight from the
        // slab layer to the magazine layer.
        let direct = unsafe {
            let s = &mut *slot;
            // Room left in the loaded magazine: the rounds between `top` and `limit`
            // (both null, so none, when no magazine is loaded).
            let room = (s.limit as usize - s.top as usize) / core::mem::size_of::<usize>();
            if extra.len() <= room {
                for &b in extra.iter().rev() {
                    s.put(b);
                }
            }
            extra.len() <= room
        };
        if !direct {
            for (i, &b) in extra.iter().enumerate().rev() {
                // SAFETY: as above.
                if !unsafe { self.mag_free(slot, b) } {
                    for &r in &extra[..=i] {
                        self.slab_free_trusted(r);
                    }
                    break;
                }
            }
        }
        Some(first)
    }

    /// The free slow path: the debug checks of a debug cache, then [`Cache::free_to_layers`].
    /// In per-CPU mode the CPU's magazines come first (see [`Cache::alloc_slow`]).
    ///
    /// # Safety
    /// As [`Cache::free`].
    #[inline(never)]
    pub(crate) unsafe fn free_slow(&self, addr: usize) {
        // SAFETY: as in alloc_slow; the buffer is this cache's, freed once, by the caller.
        if unsafe { cpu_hit_free(self.fast_index().inline(), addr) } {
            return;
        }
        if self.buftag_off != 0 {
            if let Err(e) = self.debug_free(addr) {
                // Carrying on (`noabort`): the buffer is left alone, not freed.
                debug_report(self, &e);
                return;
            }
        }
        // SAFETY: by the caller; checked above for debug caches.
        unsafe { self.free_to_layers(addr) }
    }

    /// A free past the fast path and the debug checks: to the calling thread's
    /// magazines through the depot when it can, else (destructed, for a cache without
    /// debug buftags) to the slab layer.
    ///
    /// # Safety
    /// `addr` is a buffer of this cache being freed once.
    pub(crate) unsafe fn free_to_layers(&self, addr: usize) {
        if self.id != 0 {
            // SAFETY: our own slot (or our private copy of the CPU's).
            let done = self.with_my_slot(|slot| unsafe {
                let ok = self.mag_free(slot, addr);
                if ok {
                    bump(&(*slot).frees);
                }
                ok
            });
            if done == Some(true) {
                return;
            }
        }
        self.slow_frees.fetch_add(1, Ordering::Relaxed);
        if self.buftag_off == 0 {
            self.destruct(addr);
        }
        self.slab_free_trusted(addr);
    }
}
