//! Which magazine layer umem-slab runs (issue 16): per-CPU magazines over restartable
//! sequences (the default), or per-thread magazines (`nopercpu`, and the fallback where
//! rseq cannot be used). Chosen once, before umem-slab's `init`, from `UMEM_OPTIONS` (`percpu` /
//! `nopercpu`); [`stats`](crate::stats) reports the mode and how many buffers each CPU's
//! magazines hold.
//!
//! Per thread, the memory the magazines hold grows with the number of threads (every
//! thread that touched a class keeps up to two magazines of it until it exits); per CPU it
//! is bounded by the possible CPUs, so a pool of many threads costs no more than one
//! thread per CPU.

use crate::caches;
use crate::classes;
use crate::options;
use core::sync::atomic::Ordering;
pub use umem_slab::MagazineMode;

/// CPUs whose magazine occupancy [`Stats`](crate::Stats) lists one by one.
pub const MAX_CPU_ROWS: usize = 64;

/// Tell umem-slab which mode the options ask for (before its `init`).
pub(crate) fn choose() {
    umem_slab::set_percpu(options::PERCPU.load(Ordering::Relaxed));
}

/// The mode umem-slab chose.
pub fn mode() -> MagazineMode {
    umem_slab::magazine_mode()
}

/// Buffers held in the per-CPU magazines of every size class, for each of the first
/// [`MAX_CPU_ROWS`] CPUs (all zero per thread).
pub(crate) fn cpu_rounds() -> [u64; MAX_CPU_ROWS] {
    let mut out = [0u64; MAX_CPU_ROWS];
    let mut one = [0usize; MAX_CPU_ROWS];
    for c in 0..classes::COUNT {
        if let Some(k) = caches::cache_of(c) {
            let n = k.cpu_rounds(&mut one).min(MAX_CPU_ROWS);
            for (o, &r) in out.iter_mut().zip(&one[..n]) {
                *o += r as u64;
            }
        }
    }
    out
}
