//! The public birth and death of an arena: [`Vmem::create`] (which builds
//! vmem's internal arenas first if nobody called [`init`](crate::init)) and
//! [`Vmem::destroy`]. The work itself is in `arena/create.rs`.

use super::create::CreateArgs;
use super::Vmem;
use crate::arenas::list_remove;
use crate::bootstrap::ensure_init;
use crate::error::VmemError;
use crate::source::Source;
use crate::types::{Addr, CreateFlags};
use core::sync::atomic::Ordering;

impl Vmem {
    /// Create an arena (`vmem_create`).
    ///
    /// * `name`: for kstats and messages (truncated to [`NAME_MAX`](crate::NAME_MAX) bytes).
    /// * `span`: an initial span `(base, size)` added as by [`add`](Vmem::add).
    /// * `quantum`: the unit (a power of two); every allocation is a multiple
    ///   of it in placement and alignment.
    /// * `source`: where to import spans from when short (released back when
    ///   wholly free).
    /// * `qcache_max`: sizes up to this (rounded down to a quantum multiple,
    ///   at most 16 quanta) are served by quantum caches if a
    ///   [`QCacheFactory`](crate::QCacheFactory) is installed.
    ///
    /// With feature `std` the internal tree is built on first use with the
    /// built-in mmap source if [`init`](crate::init) was not called.
    pub fn create(
        name: &str,
        span: Option<(Addr, usize)>,
        quantum: usize,
        source: Option<&'static dyn Source>,
        qcache_max: usize,
        flags: CreateFlags,
    ) -> Result<&'static Vmem, VmemError> {
        ensure_init()?;
        let flags = CreateFlags::from_bits(flags.bits() & !CreateFlags::POPULATOR.bits());
        Self::create_common(CreateArgs {
            name,
            span,
            quantum,
            source,
            qcache_max,
            flags,
            mem: None,
            import_min: 0,
            retain: 0,
        })
    }

    /// Destroy the arena (`vmem_destroy`): destroys its quantum caches,
    /// releases its imported spans to the source (whatever is still
    /// allocated in them is leaked with them), returns all its segment
    /// structures and its hash table to vmem, and frees the `Vmem`.
    /// Returns the number of units still allocated (leaked).
    ///
    /// Allocations still held by [`SegHandle`](crate::SegHandle)s are leaked like the rest.
    ///
    /// # Safety
    /// No other thread may be using the arena, no arena may still import
    /// from it, it must not be one of vmem's internal arenas (`heap`,
    /// `vmem_*`), and neither the `&'static Vmem` nor any [`SegHandle`](crate::SegHandle)
    /// it allocated may be used afterwards (not even given to another
    /// arena's `free_handle`: its segment structure is recycled).
    pub unsafe fn destroy(&'static self) -> usize {
        list_remove(self);
        let nq = self.qcache_max.swap(0, Ordering::AcqRel) >> self.qshift;
        for i in 0..nq {
            // SAFETY: entries below the old qcache_max were set at create.
            if let Some(c) = unsafe { (*self.qcache.get())[i] } {
                // SAFETY: caller guarantees nobody uses the arena any more.
                unsafe { c.destroy() };
            }
        }
        // SAFETY: as above.
        unsafe { self.teardown(true) }
    }
}
