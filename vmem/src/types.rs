//! Plain public value types: addresses, policies, flags, requests,
//! statistics, and the crate's size limits. The bottom of the crate: it
//! depends on nothing else in it, and the arena and the public API use it.

use core::ops::BitOr;

/// An address or integer managed by an arena.
pub type Addr = usize;

/// The most quantum caches an arena has (`qcache_max <= 16 * quantum`).
pub const QCACHE_MAX_CACHES: usize = 16;

/// Longest arena name kept (longer names are truncated at a char boundary).
pub const NAME_MAX: usize = 31;

/// Allocation policy (the paper's section 4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum Policy {
    /// Instant fit (default): take the first segment of the smallest
    /// power-of-two freelist whose members are all large enough — O(1).
    #[default]
    InstantFit,
    /// Best fit: the smallest free segment that satisfies the request.
    BestFit,
    /// First fit: the first segment found (lowest freelist that may hold a
    /// fit, in list order) that satisfies the request.
    FirstFit,
    /// Next fit: the first free segment at or after the rotor (the end of the
    /// previous next-fit allocation), cycling through the whole arena before
    /// reusing an address (process IDs and the like).
    NextFit,
}

/// Flags for [`Vmem::create`](crate::Vmem::create).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct CreateFlags(u32);

impl CreateFlags {
    /// No flags.
    pub const NONE: CreateFlags = CreateFlags(0);
    /// Do not create quantum caches even if `qcache_max > 0` and a factory is
    /// installed.
    pub const NO_QCACHE: CreateFlags = CreateFlags(1);
    /// Internal: the arena takes part in segment population (vmem_seg and the
    /// arenas it imports from) and keeps a reserve for it.
    pub(crate) const POPULATOR: CreateFlags = CreateFlags(1 << 31);

    /// Whether every flag of `other` is set in `self`.
    #[inline]
    pub const fn contains(self, other: CreateFlags) -> bool {
        self.0 & other.0 == other.0
    }
    pub(crate) const fn from_bits(bits: u32) -> CreateFlags {
        CreateFlags(bits)
    }
    /// The raw bits.
    #[inline]
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl BitOr for CreateFlags {
    type Output = CreateFlags;
    fn bitor(self, rhs: CreateFlags) -> CreateFlags {
        CreateFlags(self.0 | rhs.0)
    }
}

/// The type of one segment, as reported by [`Vmem::walk`](crate::Vmem::walk).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SegType {
    /// An allocated segment (in the allocated-segment hash table, or held
    /// by a [`SegHandle`](crate::SegHandle)).
    Alloc,
    /// A free segment (on a power-of-two freelist).
    Free,
    /// A span marker: a whole span added to or imported by the arena.
    Span,
}

/// A set of [`SegType`]s, for [`Vmem::walk`](crate::Vmem::walk) and
/// [`Vmem::size`](crate::Vmem::size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct SegTypes(u8);

impl SegTypes {
    /// Allocated segments.
    pub const ALLOC: SegTypes = SegTypes(1);
    /// Free segments.
    pub const FREE: SegTypes = SegTypes(2);
    /// Span markers.
    pub const SPAN: SegTypes = SegTypes(4);
    /// Allocated and free segments (for `size`: the arena's total).
    pub const ALLOC_FREE: SegTypes = SegTypes(3);
    /// Everything.
    pub const ALL: SegTypes = SegTypes(7);

    /// Whether `t` is in the set.
    #[inline]
    pub const fn has(self, t: SegType) -> bool {
        let bit = match t {
            SegType::Alloc => 1,
            SegType::Free => 2,
            SegType::Span => 4,
        };
        self.0 & bit != 0
    }
}

impl BitOr for SegTypes {
    type Output = SegTypes;
    fn bitor(self, rhs: SegTypes) -> SegTypes {
        SegTypes(self.0 | rhs.0)
    }
}

/// How [`Vmem::walk`](crate::Vmem::walk) treats the arena lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum WalkMode {
    /// Hold the arena lock for the whole walk: a consistent snapshot. The
    /// callback must not call into the same arena (it would deadlock).
    #[default]
    Locked,
    /// Drop the lock around each callback (VMEM_REENTRANT): the callback may
    /// allocate from and free to the arena, including the segment it was
    /// handed; the walk is only a hint if the arena changes meanwhile. A
    /// walker marker segment keeps the place.
    Reentrant,
}

/// A constrained allocation request for [`Vmem::xalloc`](crate::Vmem::xalloc).
///
/// The result `addr` satisfies: `addr % align == phase`; `[addr, addr+size)`
/// does not cross a multiple of `nocross` (when non-zero); and
/// `minaddr <= addr`, `addr + size <= maxaddr` (when given; `maxaddr` is
/// exclusive). `align == 0` means the arena's quantum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XAllocRequest {
    /// Bytes (or units) to allocate; non-zero.
    pub size: usize,
    /// Power-of-two alignment, a multiple of the quantum; 0 = quantum.
    pub align: usize,
    /// Offset from the alignment boundary; a multiple of the quantum, `< align`.
    pub phase: usize,
    /// If non-zero, a power of two: the segment may not straddle a multiple.
    pub nocross: usize,
    /// Lowest acceptable address (inclusive).
    pub minaddr: Option<Addr>,
    /// Address the segment must end at or below (exclusive bound).
    pub maxaddr: Option<Addr>,
    /// Search policy. `NextFit` is treated as `FirstFit` here (the rotor
    /// only serves unconstrained `alloc`), as in vmem.c.
    pub policy: Policy,
}

impl XAllocRequest {
    /// A request for `size` with no constraints (quantum alignment).
    #[inline]
    pub const fn new(size: usize) -> Self {
        XAllocRequest {
            size,
            align: 0,
            phase: 0,
            nocross: 0,
            minaddr: None,
            maxaddr: None,
            policy: Policy::InstantFit,
        }
    }
    /// Set the alignment.
    #[inline]
    pub const fn align(mut self, align: usize) -> Self {
        self.align = align;
        self
    }
    /// Set the phase.
    #[inline]
    pub const fn phase(mut self, phase: usize) -> Self {
        self.phase = phase;
        self
    }
    /// Set the nocross boundary.
    #[inline]
    pub const fn nocross(mut self, nocross: usize) -> Self {
        self.nocross = nocross;
        self
    }
    /// Set the lowest acceptable address.
    #[inline]
    pub const fn minaddr(mut self, minaddr: Addr) -> Self {
        self.minaddr = Some(minaddr);
        self
    }
    /// Set the exclusive upper bound for the end of the segment.
    #[inline]
    pub const fn maxaddr(mut self, maxaddr: Addr) -> Self {
        self.maxaddr = Some(maxaddr);
        self
    }
    /// Set the policy.
    #[inline]
    pub const fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }
}

/// An arena's kstats (`vmem_kstat_t`) plus structure sizes.
///
/// Memory figures are in the arena's units (bytes for memory arenas) and
/// count whole quanta: an allocation of a size that is not a quantum multiple
/// uses (and counts) its size rounded up to the quantum, so that
/// `mem_inuse + size(FREE) == mem_total` always holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VmemStats {
    /// Units allocated (live), rounded to quanta.
    pub mem_inuse: u64,
    /// Units in all spans of the arena.
    pub mem_total: u64,
    /// Units in spans imported from the source.
    pub mem_import: u64,
    /// Successful segment allocations (quantum-cache hits are not counted).
    pub alloc: u64,
    /// Segment frees.
    pub free: u64,
    /// Allocations that failed (after trying the source).
    pub fail: u64,
    /// Spans imported from the source.
    pub import: u64,
    /// Imports the source refused.
    pub import_fail: u64,
    /// Imported spans released back to the source.
    pub release: u64,
    /// Freelist segments examined by allocations.
    pub search: u64,
    /// Extra hash-chain steps taken by frees (0 when every chain is short).
    pub lookup: u64,
    /// Times the arena's segment reserve was refilled (vmem_populate).
    pub populate: u64,
    /// Refills that failed.
    pub populate_fail: u64,
    /// `contains` calls.
    pub contains: u64,
    /// Span markers examined by `contains`.
    pub contains_search: u64,
    /// Hash-table resizes.
    pub hash_rescale: u64,
    /// Current buckets in the allocated-segment hash table.
    pub hash_size: usize,
    /// Spans in the arena.
    pub spans: usize,
    /// Allocated segments (live), handle segments included.
    pub alloc_segs: usize,
    /// Allocated segments held by [`SegHandle`](crate::SegHandle)s (not in
    /// the hash table).
    pub handle_segs: usize,
    /// Free segments.
    pub free_segs: usize,
    /// Unused segment structures held by the arena (its reserve).
    pub reserve_segs: usize,
    /// The arena's id (creation order, from 1).
    pub id: u32,
    /// The id of the source arena, 0 if the source is not an arena or none.
    pub source_id: u32,
}
