//! The precise error values of the vmem API.

use crate::types::Addr;
use core::fmt;

/// Every detectable misuse or failure of a vmem operation.
///
/// Each variant carries the numbers that explain it, so that a caller (or a
/// panic message built from `Display`) can say exactly what was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VmemError {
    /// A size of zero was passed where a positive size is required.
    ZeroSize,
    /// The size, rounded up to the quantum (plus phase/alignment slack), does
    /// not fit in an address.
    SizeOverflow {
        /// The size requested.
        size: usize,
    },
    /// `Vmem::create`: the quantum is zero or not a power of two.
    BadQuantum {
        /// The quantum given.
        quantum: usize,
    },
    /// `init`: the page size is zero or not a power of two.
    BadPageSize {
        /// The page size given.
        page_size: usize,
    },
    /// The alignment is not a power of two or not a multiple of the quantum.
    BadAlign {
        /// The alignment requested.
        align: usize,
        /// The arena's quantum.
        quantum: usize,
    },
    /// The phase is not a multiple of the quantum, or `phase >= align`.
    BadPhase {
        /// The phase requested.
        phase: usize,
        /// The alignment requested.
        align: usize,
    },
    /// `nocross` is not a power of two or not a multiple of the quantum.
    BadNocross {
        /// The `nocross` boundary requested.
        nocross: usize,
        /// The arena's quantum.
        quantum: usize,
    },
    /// `nocross` is smaller than what the request needs: `align > nocross` or
    /// `roundup(phase + size, align) > nocross`.
    NocrossTooSmall {
        /// The `nocross` boundary requested.
        nocross: usize,
        /// The size requested.
        size: usize,
        /// The alignment requested.
        align: usize,
        /// The phase requested.
        phase: usize,
    },
    /// `[minaddr, maxaddr)` cannot hold `size` bytes (`minaddr >= maxaddr` or
    /// the window is smaller than `size`).
    BadAddrRange {
        /// The lowest acceptable address.
        minaddr: Addr,
        /// The exclusive upper bound.
        maxaddr: Addr,
        /// The size requested.
        size: usize,
    },
    /// The arena (and its source, if any) has no segment that satisfies the
    /// request.
    Exhausted {
        /// The size requested.
        size: usize,
    },
    /// Free of an address that is not the start of an allocated segment.
    NotAllocated {
        /// The address given.
        addr: Addr,
        /// The size given to the free.
        size: usize,
    },
    /// Free of an allocated segment with a size other than the one it was
    /// allocated with.
    WrongSize {
        /// The address given.
        addr: Addr,
        /// The size given to the free.
        size: usize,
        /// The size the segment was allocated with.
        allocated: usize,
    },
    /// `free` of an object of a quantum-cached size that the quantum cache
    /// already holds as free (a double free; see
    /// [`Vmem::free`](crate::Vmem::free) for when this is checked).
    DoubleFree {
        /// The address given.
        addr: Addr,
        /// The size given to the free.
        size: usize,
    },
    /// `free`/`xfree` of a segment allocated through a handle
    /// ([`Vmem::alloc_handle`](crate::Vmem::alloc_handle)): it is freed only
    /// by [`Vmem::free_handle`](crate::Vmem::free_handle) and stays allocated.
    HandleAllocated {
        /// The address given.
        addr: Addr,
        /// The size given to the free.
        size: usize,
    },
    /// [`Vmem::free_handle`](crate::Vmem::free_handle) with a handle of
    /// another arena (ids as [`Vmem::id`](crate::Vmem::id)). The handle is
    /// consumed and its segment stays allocated in its own arena (leaked).
    WrongArena {
        /// The handle's address.
        addr: Addr,
        /// The arena asked to free it.
        arena: u32,
        /// The arena the handle belongs to.
        owner: u32,
    },
    /// `add`/`extend_alloc`/`create`: the span overlaps a span of the arena.
    SpanOverlap {
        /// The start of the span given.
        addr: Addr,
        /// The size of the span given.
        size: usize,
        /// The start of the span it overlaps.
        existing: Addr,
        /// The size of the span it overlaps.
        existing_size: usize,
    },
    /// `add`/`extend_alloc`/`create`: start or size is not a multiple of the
    /// quantum.
    SpanMisaligned {
        /// The start of the span given.
        addr: Addr,
        /// The size of the span given.
        size: usize,
        /// The arena's quantum.
        quantum: usize,
    },
    /// `add`/`extend_alloc`/`create`: `addr + size` wraps around the address
    /// space.
    SpanOverflow {
        /// The start of the span given.
        addr: Addr,
        /// The size of the span given.
        size: usize,
    },
    /// `extend_alloc`: `alloc` is zero, larger than the span, or not a
    /// multiple of the quantum.
    BadExtendAlloc {
        /// The size of the span given.
        size: usize,
        /// The units to allocate.
        alloc: usize,
    },
    /// vmem could not get the segment structures, hash table or arena
    /// structure it needs from its internal arenas (their page source is
    /// exhausted).
    NoMetadata,
    /// `init` was already called with a different source or page size.
    AlreadyInitialized,
    /// The internal arena tree is not built (`init` was not called and the
    /// `std` feature, which builds it lazily, is off).
    NotInitialized,
    /// `verify` found a broken invariant: `what` says which, at `addr`.
    Corrupt {
        /// Which invariant is broken.
        what: &'static str,
        /// Where it was found.
        addr: Addr,
    },
}

impl fmt::Display for VmemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use VmemError::*;
        match *self {
            ZeroSize => write!(f, "zero size"),
            SizeOverflow { size } => write!(f, "size {size:#x} overflows when rounded"),
            BadQuantum { quantum } => write!(f, "quantum {quantum:#x} is not a power of two"),
            BadPageSize { page_size } => {
                write!(f, "page size {page_size:#x} is not a power of two")
            }
            BadAlign { align, quantum } => write!(
                f,
                "alignment {align:#x} is not a power of two multiple of the quantum {quantum:#x}"
            ),
            BadPhase { phase, align } => write!(
                f,
                "phase {phase:#x} is not a quantum multiple below the alignment {align:#x}"
            ),
            BadNocross { nocross, quantum } => write!(
                f,
                "nocross {nocross:#x} is not a power of two multiple of the quantum {quantum:#x}"
            ),
            NocrossTooSmall { nocross, size, align, phase } => write!(
                f,
                "overconstrained: size {size:#x} at phase {phase:#x} of alignment {align:#x} \
                 cannot fit below a nocross boundary of {nocross:#x}"
            ),
            BadAddrRange { minaddr, maxaddr, size } => write!(
                f,
                "overconstrained: [{minaddr:#x}, {maxaddr:#x}) cannot hold {size:#x} bytes"
            ),
            Exhausted { size } => write!(f, "arena exhausted: no space for {size:#x} bytes"),
            NotAllocated { addr, size } => {
                write!(f, "bad free: [{addr:#x}, +{size:#x}) is not an allocated segment")
            }
            WrongSize { addr, size, allocated } => write!(
                f,
                "bad free: segment at {addr:#x} freed with size {size:#x}, allocated with {allocated:#x}"
            ),
            DoubleFree { addr, size } => write!(
                f,
                "bad free: [{addr:#x}, +{size:#x}) is already free (double free)"
            ),
            HandleAllocated { addr, size } => write!(
                f,
                "bad free: [{addr:#x}, +{size:#x}) was allocated through a handle; free it with free_handle"
            ),
            WrongArena { addr, arena, owner } => write!(
                f,
                "bad free: handle of segment {addr:#x} belongs to arena {owner}, not to arena {arena}"
            ),
            SpanOverlap { addr, size, existing, existing_size } => write!(
                f,
                "span [{addr:#x}, +{size:#x}) overlaps span [{existing:#x}, +{existing_size:#x})"
            ),
            SpanMisaligned { addr, size, quantum } => write!(
                f,
                "span [{addr:#x}, +{size:#x}) is not aligned to the quantum {quantum:#x}"
            ),
            SpanOverflow { addr, size } => {
                write!(f, "span [{addr:#x}, +{size:#x}) wraps around the address space")
            }
            BadExtendAlloc { size, alloc } => {
                write!(f, "cannot allocate {alloc:#x} bytes of an extension of {size:#x}")
            }
            NoMetadata => write!(f, "out of memory for vmem's own segments or tables"),
            AlreadyInitialized => {
                write!(f, "vmem already initialised with another source or page size")
            }
            NotInitialized => write!(f, "vmem is not initialised"),
            Corrupt { what, addr } => write!(f, "arena corrupt at {addr:#x}: {what}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for VmemError {}
