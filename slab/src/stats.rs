//! Statistics: [`CacheStats`] (libumem's kstats / `::umastat` columns) and
//! [`Cache::stats`], which sums the thread caches' counters under the block-list lock.

use core::sync::atomic::Ordering;

use crate::cache::Cache;
use crate::magazine_block;

/// Per-cache statistics (libumem's kstats / `::umastat` columns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    pub buf_size: usize,
    pub align: usize,
    pub chunk_size: usize,
    pub slab_size: usize,
    /// Buffers in all slabs.
    pub buf_total: usize,
    /// Buffers out of the slab layer (held by clients or by magazines).
    pub buf_slab_alloc: usize,
    /// Buffers held by clients (allocs - frees over all threads).
    pub buf_inuse: u64,
    /// Constructed buffers held in depot magazines.
    pub buf_depot: usize,
    pub alloc: u64,
    pub free: u64,
    pub alloc_fail: u64,
    pub slabs: usize,
    pub slab_create: u64,
    pub slab_destroy: u64,
    pub slab_alloc: u64,
    pub slab_free: u64,
    pub depot_full: usize,
    pub depot_empty: usize,
    pub depot_contention: u64,
    pub mag_size: usize,
    pub mag_resize: u64,
    pub hash_size: usize,
    pub hash_rescale: u64,
    pub hash_lookup_depth: u64,
    /// Bytes of slabs taken from the source arena.
    pub mem_total: usize,
    pub reap: u64,
}

impl Cache {
    /// A snapshot of the cache's counters (each read atomically, not all at one instant).
    pub fn stats(&self) -> CacheStats {
        let mut allocs =
            self.slow_allocs.load(Ordering::Relaxed) + self.folded_allocs.load(Ordering::Relaxed);
        let mut frees =
            self.slow_frees.load(Ordering::Relaxed) + self.folded_frees.load(Ordering::Relaxed);
        if self.id != 0 {
            magazine_block::for_each_slot(self.id, &mut |slot| {
                // SAFETY: block-list lock held; counters are atomics.
                unsafe {
                    allocs += (*slot).allocs.load(Ordering::Relaxed);
                    frees += (*slot).frees.load(Ordering::Relaxed);
                }
            });
        }
        let mut st = CacheStats {
            buf_size: self.bufsize,
            align: self.align,
            chunk_size: self.chunksize,
            slab_size: self.slabsize(),
            alloc: allocs,
            free: frees,
            buf_inuse: allocs.saturating_sub(frees),
            alloc_fail: self.alloc_fail.load(Ordering::Relaxed),
            reap: self.reaps.load(Ordering::Relaxed),
            ..CacheStats::default()
        };
        {
            let d = self.depot.0.lock();
            st.depot_full = d.full.total;
            st.depot_empty = d.empty.total;
            st.depot_contention = d.contention;
            st.mag_size = if self.id == 0 { 0 } else { d.rounds() };
            st.mag_resize = d.resizes;
            st.buf_depot = d.full.total * d.rounds();
        }
        {
            let g = self.slab.0.lock();
            st.buf_total = g.buftotal;
            st.buf_slab_alloc = g.bufalloc;
            st.slabs = g.nslabs;
            st.slab_create = g.slab_create;
            st.slab_destroy = g.slab_destroy;
            st.slab_alloc = g.slab_alloc;
            st.slab_free = g.slab_free;
            st.hash_size = if self.hashed { g.hash_mask + 1 } else { 0 };
            st.hash_rescale = g.rescale;
            st.hash_lookup_depth = g.lookup_depth;
            st.mem_total = g.nslabs * self.slabsize();
        }
        st
    }
}
