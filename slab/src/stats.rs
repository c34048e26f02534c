//! Statistics: [`CacheStats`] (libumem's kstats / `::umastat` columns) and
//! [`Cache::stats`], which sums the thread caches' counters under the block-list lock.

use core::sync::atomic::Ordering;

use crate::cache::Cache;
use crate::magazine_block;

/// Per-cache statistics (libumem's kstats / `::umastat` columns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Buffer size asked for.
    pub buf_size: usize,
    /// Buffer alignment.
    pub align: usize,
    /// Bytes per buffer in a slab.
    pub chunk_size: usize,
    /// Bytes per slab.
    pub slab_size: usize,
    /// Buffers in all slabs.
    pub buf_total: usize,
    /// Buffers out of the slab layer (held by clients or by magazines).
    pub buf_slab_alloc: usize,
    /// Buffers held by clients (allocs - frees over all threads; with per-CPU magazines,
    /// buffers out of the slab layer less those in the depot's and the CPUs' magazines).
    pub buf_inuse: u64,
    /// Constructed buffers held in depot magazines.
    pub buf_depot: usize,
    /// Allocations (all layers). Per CPU (`MagazineMode::PerCpu`) a hit counts itself
    /// inside its restartable section, one instruction before the commit: a section
    /// preempted at exactly that point is counted twice. That happens rarely (a few times
    /// in hundreds of thousands of contended operations), so the count may run a few
    /// ahead. Per thread it is exact. `buf_inuse` is exact in both modes.
    pub alloc: u64,
    /// Frees (all layers); per CPU it may run a few ahead, as `alloc`.
    pub free: u64,
    /// Failed allocations.
    pub alloc_fail: u64,
    /// Slabs held.
    pub slabs: usize,
    /// Slabs made.
    pub slab_create: u64,
    /// Slabs given back to the source.
    pub slab_destroy: u64,
    /// Buffers taken from the slab layer.
    pub slab_alloc: u64,
    /// Buffers given back to the slab layer.
    pub slab_free: u64,
    /// Full magazines in the depot.
    pub depot_full: usize,
    /// Empty magazines in the depot.
    pub depot_empty: usize,
    /// Failed depot-lock trylocks.
    pub depot_contention: u64,
    /// Rounds per magazine (0: no magazine layer).
    pub mag_size: usize,
    /// Magazine resizes.
    pub mag_resize: u64,
    /// Buckets of the hash (0: in-slab cache).
    pub hash_size: usize,
    /// Hash rescales.
    pub hash_rescale: u64,
    /// Chain links walked by hash lookups.
    pub hash_lookup_depth: u64,
    /// Bytes of slabs taken from the source arena.
    pub mem_total: usize,
    /// Reaps of this cache.
    pub reap: u64,
    /// Buffers held in this cache's per-CPU magazines, all CPUs (0 in per-thread mode).
    pub cpu_rounds: usize,
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
        let (cpu_rounds, pops, pushes) = self.cpu_occupancy();
        allocs += pops;
        frees += pushes;
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
            cpu_rounds,
            ..CacheStats::default()
        };
        {
            let d = self.depot.0.lock();
            st.depot_full = d.full.ws.total;
            st.depot_empty = d.empty.ws.total;
            st.depot_contention = d.contention;
            st.mag_size = if self.id == 0 { 0 } else { d.rounds() };
            st.mag_resize = d.resizes;
            st.buf_depot = d.full.ws.total * d.rounds();
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
        if self.on_cpu_layer() {
            // The per-CPU hits count inside their sections (an abort at that point counts
            // twice): take the clients' share from the layers instead, exact when no
            // thread is inside a slow path.
            st.buf_inuse = st
                .buf_slab_alloc
                .saturating_sub(st.buf_depot + st.cpu_rounds) as u64;
        }
        st
    }
}
