//! The slow paths: what an allocation or free does when the hit path misses — the
//! thread's next magazine from the depot (`magazine_layer.rs`), else the slab layer
//! (`slab_layer.rs`) and the constructor — with the debug checks of debug caches and the
//! batch refill that keeps neighbouring buffers in one thread.

use core::sync::atomic::Ordering;

use crate::cache::Cache;
use crate::debug_report::debug_report;
use crate::magazine::bump;
use crate::magazine_block;
use crate::registry::internal_caches;

/// Batch refill from the slab layer (see `Cache::batch_refill`): buffers up to this size
/// take part, and a batch covers at most this many bytes (and one magazine).
const BATCH_MAX_BUFSIZE: usize = 512;
const BATCH_BYTES: usize = 1024;

impl Cache {
    /// The alloc slow path: the periodic update when due, the magazine layer (depot), else
    /// a buffer from the slab layer, constructed.
    #[inline(never)]
    pub(crate) fn alloc_slow(&self) -> Option<usize> {
        crate::update::maybe_update();
        if self.id != 0 {
            let slot = magazine_block::slot_for(self.id);
            if !slot.is_null() {
                // SAFETY: our own slot.
                if let Some(buf) = unsafe { self.mag_alloc(slot) } {
                    // SAFETY: our own slot.
                    unsafe { bump(&(*slot).allocs) };
                    if self.buftag_off != 0 {
                        return self.debug_alloc(buf);
                    }
                    return Some(buf);
                }
            }
        }
        self.slow_allocs.fetch_add(1, Ordering::Relaxed);
        let buf = match self.slab_alloc() {
            Some(b) => b,
            None => {
                self.slow_allocs.fetch_sub(1, Ordering::Relaxed);
                self.alloc_fail.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        if self.buftag_off != 0 {
            return self.debug_alloc(buf);
        }
        if !self.construct(buf) {
            self.slow_allocs.fetch_sub(1, Ordering::Relaxed);
            self.alloc_fail.fetch_add(1, Ordering::Relaxed);
            self.slab_free_trusted(buf);
            return None;
        }
        self.batch_refill();
        Some(buf)
    }

    /// Deviation from libumem (measured by umem-bench's cache-thrash/cache-scratch): when
    /// the depot has no full magazine and this thread had to go to the slab layer, take a
    /// short run of neighbouring buffers for the thread's magazine at once. Otherwise two
    /// threads that reach the slab layer together get interleaved neighbours — the same
    /// cache line — and keep reusing them through their magazines (false sharing: 3–4×
    /// glibc's time in cache-thrash). Only small buffers of user magazine caches without
    /// constructor, destructor or debugging take part; the extra buffers move from the
    /// slab layer to the magazine layer without touching the client alloc/free counts.
    #[inline(never)]
    fn batch_refill(&self) {
        // `grow_on_traffic` is false for quantum caches and caches with a constructor or
        // destructor. Magazine caches never batch: a batch there would recurse through
        // `mag_free`'s magazine allocation.
        if self.id == 0
            || !self.grow_on_traffic
            || self.buftag_off != 0
            || self.bufsize > BATCH_MAX_BUFSIZE
            || internal_caches()
                .magazines
                .iter()
                .any(|&m| core::ptr::eq(m, self))
        {
            return;
        }
        let slot = magazine_block::slot_for(self.id);
        if slot.is_null() {
            return;
        }
        // SAFETY: our own slot; only its size field is read.
        let magsize = unsafe { (*slot).magsize };
        let n = magsize.min(BATCH_BYTES / self.bufsize);
        for _ in 1..n {
            let Some(extra) = self.slab_alloc() else {
                return;
            };
            // SAFETY: `slot` is our own slot; `extra` is a free buffer of this cache that
            // nobody else holds (no constructor to run: see above). The client-visible
            // alloc/free counts don't change: the buffer goes straight from the slab
            // layer to the magazine layer.
            if !unsafe { self.mag_free(slot, extra) } {
                self.slab_free_trusted(extra);
                return;
            }
        }
    }

    /// The free slow path: the debug checks of a debug cache, then [`Cache::free_to_layers`].
    ///
    /// # Safety
    /// As [`Cache::free`].
    #[inline(never)]
    pub(crate) unsafe fn free_slow(&self, addr: usize) {
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
            let slot = magazine_block::slot_for(self.id);
            // SAFETY: our own slot.
            if !slot.is_null() && unsafe { self.mag_free(slot, addr) } {
                // SAFETY: our own slot.
                unsafe { bump(&(*slot).frees) };
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
