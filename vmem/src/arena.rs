//! The arena: `Vmem` and its public operations.

use crate::error::VmemError;
use crate::source::{QCache, Source};
use crate::types::{CreateFlags, Policy, SegType, SegTypes, VmemStats, WalkMode, XAllocRequest};
use crate::Addr;

/// A vmem arena. Always used through a `&'static Vmem` handed out by
/// [`Vmem::create`]; the structure itself lives in memory from the
/// `vmem_vmem` internal arena.
pub struct Vmem {
    _todo: (),
}

// SAFETY: all mutable state is behind the arena lock or atomics.
unsafe impl Sync for Vmem {}
// SAFETY: as above; a Vmem is never moved once created.
unsafe impl Send for Vmem {}

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
        let _ = (name, span, quantum, source, qcache_max, flags);
        todo!()
    }

    /// Destroy the arena (`vmem_destroy`): destroys its quantum caches,
    /// releases imported spans to the source, returns all its segment
    /// structures and its hash table to vmem, and frees the `Vmem`.
    /// Returns the number of units still allocated (leaked).
    ///
    /// # Safety
    /// No other thread may be using the arena, no arena may still import
    /// from it, and the `&'static Vmem` must not be used afterwards.
    pub unsafe fn destroy(&'static self) -> usize {
        todo!()
    }

    /// Allocate `size` units with `policy` (`vmem_alloc`). Sizes up to
    /// `qcache_max` go to the quantum caches when the arena has them
    /// (whatever the policy). Free with [`free`](Vmem::free).
    #[inline]
    pub fn alloc(&self, size: usize, policy: Policy) -> Result<Addr, VmemError> {
        let _ = (size, policy);
        todo!()
    }

    /// Free `[addr, addr + size)` allocated by [`alloc`](Vmem::alloc)
    /// (`vmem_free`). `size` must be the size allocated.
    ///
    /// Errors: `ZeroSize`, `NotAllocated`, `WrongSize`. Frees of sizes
    /// served by a quantum cache are checked by the cache, not here.
    #[inline]
    pub fn free(&self, addr: Addr, size: usize) -> Result<(), VmemError> {
        let _ = (addr, size);
        todo!()
    }

    /// Constrained allocation (`vmem_xalloc`); never uses quantum caches.
    /// Free with [`xfree`](Vmem::xfree). Imports from the source only when
    /// the request has no `nocross`/`minaddr`/`maxaddr` constraint.
    pub fn xalloc(&self, req: &XAllocRequest) -> Result<Addr, VmemError> {
        let _ = req;
        todo!()
    }

    /// Free a segment from [`xalloc`](Vmem::xalloc) (`vmem_xfree`);
    /// bypasses quantum caches.
    pub fn xfree(&self, addr: Addr, size: usize) -> Result<(), VmemError> {
        let _ = (addr, size);
        todo!()
    }

    /// Add the span `[addr, addr + size)` to the arena (`vmem_add`).
    /// Returns `addr`. Errors: `ZeroSize`, `SpanMisaligned`, `SpanOverflow`,
    /// `SpanOverlap`, `NoMetadata`.
    pub fn add(&self, addr: Addr, size: usize) -> Result<Addr, VmemError> {
        let _ = (addr, size);
        todo!()
    }

    /// Add `[addr, addr + size)`, merging it with an adjacent span of an
    /// arena without a source (growing the last span, joining two), and
    /// allocate `alloc` units at the start of the resulting free segment
    /// (`_vmem_extend_alloc`; the free tail of the previous span is used
    /// first, so the result may be below `addr`). Free the result with
    /// `free`/`xfree` and size `alloc`.
    pub fn extend_alloc(&self, addr: Addr, size: usize, alloc: usize) -> Result<Addr, VmemError> {
        let _ = (addr, size, alloc);
        todo!()
    }

    /// Whether `[addr, addr + size)` lies inside one span of the arena
    /// (`vmem_contains`).
    pub fn contains(&self, addr: Addr, size: usize) -> bool {
        let _ = (addr, size);
        todo!()
    }

    /// Call `f(type, start, size)` for every segment whose type is in
    /// `types`, in address order (`vmem_walk`). See [`WalkMode`] for the
    /// locking.
    pub fn walk(&self, types: SegTypes, mode: WalkMode, f: &mut dyn FnMut(SegType, Addr, usize)) {
        let _ = (types, mode, f);
        todo!()
    }

    /// Units in segments of the given types (`vmem_size`): `ALLOC` = in use,
    /// `FREE` = available, `ALLOC_FREE` = total, `SPAN` counts spans'
    /// sizes (same as total).
    pub fn size(&self, types: SegTypes) -> usize {
        let _ = types;
        todo!()
    }

    /// A snapshot of the kstats.
    pub fn stats(&self) -> VmemStats {
        todo!()
    }

    /// Walk every structure of the arena under its lock and check the
    /// invariants listed in the crate's theory statement.
    pub fn verify(&self) -> Result<(), VmemError> {
        todo!()
    }

    /// The arena's name.
    pub fn name(&self) -> &str {
        todo!()
    }

    /// The quantum.
    pub fn quantum(&self) -> usize {
        todo!()
    }

    /// The largest size served by quantum caches (0 if none).
    pub fn qcache_max(&self) -> usize {
        todo!()
    }

    /// The quantum cache serving `size`, if any.
    pub fn qcache_for(&self, size: usize) -> Option<&'static dyn QCache> {
        let _ = size;
        todo!()
    }

    /// The arena's id (creation order, from 1).
    pub fn id(&self) -> u32 {
        todo!()
    }

    /// The source, if any.
    pub fn source(&self) -> Option<&'static dyn Source> {
        todo!()
    }

    /// Return quantum caches' cached objects to the arena.
    pub fn reap(&self) {
        todo!()
    }

    /// Resize the hash table to keep chains near length 1
    /// (`vmem_hash_rescale`); `update()` does it for every arena.
    pub fn rescale(&self) {
        todo!()
    }
}

impl Source for Vmem {
    /// `xalloc(size, align = max(align, quantum))`.
    fn import(&self, size: usize, align: usize) -> Option<Addr> {
        let _ = (size, align);
        todo!()
    }
    /// `xfree(addr, size)`; panics (aborting message) if the range was not
    /// imported whole, as vmem.c does.
    fn release(&self, addr: Addr, size: usize) {
        let _ = (addr, size);
        todo!()
    }
    fn quantum(&self) -> usize {
        Vmem::quantum(self)
    }
    fn source_id(&self) -> u32 {
        self.id()
    }
}

impl core::fmt::Debug for Vmem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vmem").field("name", &self.name()).field("id", &self.id()).finish()
    }
}
