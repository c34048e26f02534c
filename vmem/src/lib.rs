//! # umem-vmem — Bonwick's vmem resource arenas
//!
//! A vmem arena ([`Vmem`]) hands out ranges of integers — addresses, IDs, device
//! memory — in constant time whatever their size and however fragmented the arena, with
//! alignment, phase and boundary constraints when asked ([`Vmem::xalloc`]). Arenas stack:
//! one imports its spans from another (its *source*), down to a page source. `no_std`
//! without the default `std` feature; with it, [`heap`] gives a page-quantum arena on
//! `mmap` with no setup.
//!
//! ```
//! use umem_vmem::{CreateFlags, Policy, Vmem, VmemError, XAllocRequest};
//!
//! // An arena of IDs 1..=999, handed out in cycling order like PIDs.
//! let pids = Vmem::create("pids", Some((1, 999)), 1, None, 0, CreateFlags::NONE)?;
//! let a = pids.alloc(1, Policy::NextFit)?;
//! pids.free(a, 1)?;
//! assert_eq!(pids.alloc(1, Policy::NextFit)?, a + 1);
//!
//! // Device-style addresses: 64 KiB quantum, a child arena importing from
//! // it, and a constrained allocation (1 MiB aligned, below 4 GiB, not
//! // crossing a 16 MiB boundary).
//! let dev = Vmem::create("dev", Some((1 << 30, 1 << 30)), 1 << 16, None, 0, CreateFlags::NONE)?;
//! let dma = dev.xalloc(&XAllocRequest::new(3 << 20).align(1 << 20).nocross(16 << 20).maxaddr(1 << 32))?;
//! assert_eq!(dma % (1 << 20), 0);
//! let child = Vmem::create("dev.small", None, 4096, Some(dev), 0, CreateFlags::NONE)?;
//! let x = child.alloc(10_000, Policy::InstantFit)?;
//! assert!(dev.stats().mem_inuse >= 3 << 20);
//!
//! // A handle allocation: freed through its move-only token, no lookup.
//! let buf = dev.alloc_handle(1 << 16, Policy::InstantFit)?;
//! let at = buf.addr();
//! assert_eq!(dev.free(at, 1 << 16), Err(VmemError::HandleAllocated { addr: at, size: 1 << 16 }));
//! dev.free_handle(buf)?;
//!
//! // Misuse is answered precisely.
//! assert_eq!(child.free(x, 4096), Err(VmemError::WrongSize { addr: x, size: 4096, allocated: 10_000 }));
//! child.free(x, 10_000)?;
//! assert_eq!(child.stats().mem_total, 0); // the wholly free span went back to `dev`
//! dev.xfree(dma, 3 << 20)?;
//! dev.verify()?;
//! # Ok::<(), VmemError>(())
//! ```
//!
//! # Theory statement
//!
//! ## 1. Concepts
//!
//! **Arenas.** An arena ([`Vmem`]) manages a set of integer ranges —
//! addresses, IDs, device memory — in units of its **quantum** (a power of
//! two; every allocation starts at a quantum multiple and occupies whole
//! quanta). It never touches the memory it manages; only vmem's own
//! internal arenas (section 2) hand out memory that vmem writes into.
//!
//! **Spans and segments.** The ranges an arena knows are its **spans**:
//! added by the caller ([`Vmem::add`], [`Vmem::extend_alloc`], the `span`
//! of [`Vmem::create`]) or **imported** from its **source** (any
//! [`Source`]: another arena, or a page source such as [`MmapSource`]).
//! Each span is tiled exactly by **segments** (`vmem_seg`), allocated or
//! free. An allocation carves a segment out of a free one; a free turns it
//! back and **coalesces** it with free neighbours.
//!
//! **Imports.** An arena short of space imports
//! `roundup(size + phase, max(align, source quantum))` from its source and
//! makes it a span; a free that leaves an imported span wholly free gives
//! it back to the source at once. Only unconstrained requests (no
//! `nocross`, `minaddr`, `maxaddr`) import. Arenas thus form trees: a
//! child imports from its parent, the root from pages.
//!
//! **Quantum caches.** An arena created with `qcache_max > 0` puts an
//! object cache (a [`QCache`], made by the installed [`QCacheFactory`],
//! i.e. umem-slab) in front of each size `k * quantum <= qcache_max` (at
//! most [`QCACHE_MAX_CACHES`]). `alloc`/`free` of those sizes go to the
//! cache, whatever the policy; everything else, and all
//! `xalloc`/`xfree`, go to the segments. An allocation that fails reaps
//! the caches and is retried once.
//!
//! **The reap hook** (`arena/reaphook.rs`). An allocation about to fail
//! then calls the process-wide hook ([`set_reap_hook`]; umem-slab installs
//! one that reaps every object cache, as libumem's `umem_reap`) once, with
//! no vmem lock held, and retries once. It is skipped on the populating
//! thread, under the arena-list lock, while another hook runs, and while a
//! [`ReapHookOff`] guard lives.
//!
//! **Fit policies** ([`Policy`], the paper's section 4.4). **Instant fit**
//! (the default) takes the head of the lowest freelist whose members are
//! all large enough: O(1). **Best fit** takes the smallest segment that
//! fits, **first fit** the first found, and **next fit** the first free
//! segment after the **rotor** (where the previous next-fit allocation
//! ended), cycling through the arena like process IDs. [`Vmem::xalloc`]
//! adds constraints ([`XAllocRequest`]): `align`, `phase`, `nocross`,
//! `minaddr`, `maxaddr`.
//!
//! **Handles (not in vmem.c).** [`Vmem::alloc_handle`] /
//! [`Vmem::xalloc_handle`] return a move-only [`SegHandle`] (one pointer:
//! the segment) that [`Vmem::free_handle`] frees without a lookup, like a
//! handle-based allocator's token. `free`/`xfree` of a handle's address
//! answer `HandleAllocated`; why `free_handle` is safe is argued in
//! `arena/handle.rs`.
//!
//! **Retained spans (not in vmem.c).** An arena may keep up to
//! `retain_max` bytes of wholly free imported spans instead of releasing
//! them ([`Vmem::set_retain`]; 0 for arenas from [`Vmem::create`], so they
//! behave like vmem.c; [`HEAP_RETAIN`] for `heap`), so that a count
//! oscillating across a span boundary does not pay an import and a
//! release per pair. [`update`] gives every retained span back.
//!
//! ## 2. Implementation
//!
//! **The segment list** (`seg.rs`). Every segment structure is one cache
//! line. All segments of an arena are on one circular doubly linked list
//! through `anext`/`aprev`, whose sentinel `seg0` lives in the arena: each
//! span marker is followed by the segments that tile it, in address order
//! (spans themselves are in address order for arenas without a source, in
//! import order otherwise). Two marker kinds carry no range: the rotor and
//! transient walkers (the place of a reentrant [`Vmem::walk`]). Span
//! markers are also on a span list (through `knext`/`kprev`, same
//! sentinel; non-imported spans sorted by address, as in libumem, so
//! `extend_alloc` can grow the last one).
//!
//! **Freelists and the freemap** (`arena/segs.rs`, `arena/fit.rs`). Each
//! free segment is on one of 64 power-of-two freelists: list *n* holds
//! sizes in `[2^n, 2^(n+1))`. A 64-bit freemap has bit *n* set exactly when
//! list *n* is non-empty, so instant fit is one `trailing_zeros`.
//!
//! **The hash** (`arena/hash.rs`). Allocated segments are in a chained hash
//! table keyed by start address, so `free` finds its segment in O(1). An
//! arena starts with a 16-bucket table embedded in it; the allocating
//! thread that pushes the live count past half the table rescales it after
//! dropping the arena lock, and [`update`] grows or shrinks every table
//! (`vmem_hash_rescale`), so the load stays between 1/8 and 1/2. Larger
//! tables come from the `vmem_hash` arena. Growth is deferred, never given
//! up: with the arena-list lock busy the next allocation asks again; with
//! no table to be had, one is tried again after as many allocations as the
//! table has buckets. Handle segments are not hashed.
//!
//! **The internal arenas and bootstrap** (`internal.rs`, `bootstrap.rs`).
//! vmem hosts itself: segment structures, hash tables and `Vmem`
//! structures come from arenas: `heap` (page quantum, importing from the
//! page source given to [`init`]) → `vmem_internal` (imports chunks that
//! grow with it up to 2 MiB, 2 MiB aligned from 2 MiB on) → `vmem_seg`,
//! `vmem_hash`, `vmem_vmem`. These five are built in a static array (later
//! made allocations of `vmem_vmem`), from 128 static segment structures.
//!
//! **Populate and the segment pool** (`arena/populate.rs`, `segpool.rs`).
//! Each arena keeps a private **reserve** of segment structures, refilled
//! by **populate** before any operation to `MINFREE` (8) beyond those
//! promised to imports in flight: the worst case of one operation (import a
//! span and allocate from its middle: 4) plus the **populate reserve** (4)
//! that a populator arena (`heap`, `vmem_internal`, `vmem_seg`) may use
//! while the populating thread allocates pages of structures through it.
//! Reserves refill from the **global segment free list**; when that is
//! empty, the one populating thread (the owner of the populate lock)
//! allocates a **chunk** of pages from `vmem_seg` and carves it. That
//! thread never populates again (it taps the populators' reserves and
//! restocks them afterwards), so recursion is bounded by the depth of the
//! tree.
//!
//! Unlike vmem.c, which never frees segment pages, segment memory goes
//! back: the first structure slot of each chunk page is a chunk header,
//! the global list counts each listed structure in its chunk, and
//! [`update`] moves reserves beyond `2 * MINFREE` to the global list and
//! frees every chunk all of whose structures are listed. This works
//! because of the **populator pool**: chunks are allocations of `vmem_seg`,
//! described by segment structures of the populator arenas; if those came
//! from ordinary chunks, one of them would pin its chunk and, through the
//! chain of describing structures, every older one. So when the pool runs
//! low (< 64), populate takes a **pinned** chunk (never given back)
//! straight from `heap` — a span of its own — whose surplus refills the
//! pool, and populator arenas take their structures from the pool. Pinned
//! chunks and the static structures are kept, as are structures in
//! reserves between `update`s.
//!
//! ## 3. Locks and their order
//!
//! Every lock is a [`sync::RawSpin`] or [`sync::SpinLock`]. A thread takes
//! them only in this order:
//!
//! 1. the **arena-list lock** (`arenas.rs`): create, destroy, [`update`],
//!    [`verify`], [`for_each_arena`], [`lockup`]; also *try*-locked by an
//!    allocating thread that grows its arena's hash after dropping the arena
//!    lock, so rescales never run during `lockup`;
//! 2. the **populate lock** (`arena/populate.rs`): one thread refills
//!    reserves from fresh pages at a time; taken with no arena lock held
//!    (populate drops the arena lock first);
//! 3. the **arena locks**, one per arena, protecting its segment list,
//!    freelists, freemap, hash table, reserve and kstats. At most one is
//!    held at a time, except in `lockup`, which takes them in creation
//!    order: every call into another arena (a source's import or release,
//!    the internal arenas, the quantum caches) is made with the lock
//!    dropped;
//! 4. the **segment-pool lock** (`segpool.rs`: the global segment free
//!    list, the populator pool and the queue of wholly free chunks) and the
//!    **quantum-cache factory lock** (`qcache.rs`): leaves, nothing is taken
//!    under them.
//!
//! `update` frees chunks to `vmem_seg` and releases retained spans holding
//! only the arena-list lock. The arena-list lock's holder (where it may
//! allocate) and the populate lock's are recorded, so the reap hook is
//! never called on a thread holding either (it could need them). Quantum-cache (slab) locks come before all of
//! these: caches call the arena with no vmem lock held, and the arena calls
//! caches with none held. [`lockup`] takes 1–4 in this order for `fork`;
//! [`release`] drops them.
//!
//! ## 4. Invariants (what [`Vmem::verify`] checks)
//!
//! With the arena lock held, `verify` (`arena/verify.rs`) walks every
//! structure of the arena, each walk bounded so that corruption cannot hang
//! it, and answers the first violation as [`VmemError::Corrupt`]:
//!
//! * **Address list:** the links are consistent; each span is non-empty and
//!   quantum aligned, and is followed by segments that tile it exactly, in
//!   address order, each non-empty and quantum aligned (an allocation of a
//!   non-quantum size occupies its size rounded up); no segment precedes the
//!   first span; spans of an arena without a source are in address order;
//!   the rotor is there exactly once and every other marker is a walker.
//! * **Coalescing:** no two free segments are neighbours (only a rotor or
//!   walker may sit between two).
//! * **Freelists:** each free segment is on exactly one freelist, list
//!   `floor(log2 size)`, with consistent back links; freemap bit *n* is set
//!   iff list *n* is non-empty.
//! * **Hash:** the table has a power-of-two size matching its shift; it
//!   holds exactly the allocated segments that are not handle segments,
//!   each once, in its bucket; handle segments are on no list and name this
//!   arena as their `owner`.
//! * **Span list:** holds exactly the span markers, each once, with
//!   consistent links.
//! * **Counts and kstats:** the allocated, handle, free and span counts are
//!   right; the reserve list holds exactly `nsegfree` structures;
//!   `mem_inuse` = sum of allocated sizes (rounded), `mem_total` = sum of
//!   span sizes = `mem_inuse` + free sizes, `mem_import` = sum of imported
//!   spans, `alloc - free` = number of allocated segments.
//! * **Release:** wholly free imported spans (retained) add up to at most
//!   `retain_max` bytes (0 by default: none is ever wholly free).
//!
//! Kstats: `search` counts freelist segments examined (1 per instant-fit
//! allocation) and `lookup` hash-chain steps beyond the first, so both per
//! operation stay flat as the arena grows; `fail` counts allocations that
//! found no space or no metadata. Misuse (bad free, bad parameters) leaves
//! the arena's segments unchanged and is answered by a precise
//! [`VmemError`].
//!
//! ## 5. Deviations from illumos, and why
//!
//! * **Floor-list head fit.** For a size that is not a power of two,
//!   instant fit first looks at the head — only the head, so still O(1) —
//!   of list `floor(log2 size)` and takes it if it is large enough. That
//!   segment is smaller than anything the ceil list could give, so the fit
//!   only gets tighter (always below 2× the request), and the hole a free
//!   of this size just made is reused whole instead of splitting a larger
//!   segment and coalescing on the next free. Constrained instant-fit
//!   `xalloc`s try the same head first.
//! * **Markers do not keep spans.** A rotor or walker inside an otherwise
//!   wholly free imported span is moved out and the span released at once;
//!   vmem.c keeps the span until the marker moves on.
//! * **Handles** (section 1): an O(1) free with no hash bucket touched, for
//!   callers that can keep a token.
//! * **Retained spans** (section 1): hysteresis against import/release
//!   per allocation pair.
//! * **Segment memory goes back** (section 2): vmem.c never frees segment
//!   pages; here an arena of millions of segments that is destroyed gives
//!   its pages back at the next `update`.
//! * **Errors instead of panics.** Misuse is answered by [`VmemError`]
//!   values; a broken invariant or a source that breaks its contract aborts
//!   with a message ([`diag::fatal`]), never unwinds.
//! * **Lazy init (feature `std`).** Without [`init`], the first arena
//!   builds the internal arenas on the built-in mmap page source.
//!
//! The measurements behind these choices are in `docs/performance.md`.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// The layers, lowest first (no file uses a file listed after it; see
// ci/import-cycles): the leaves `types`, `p2`, `sys`, `sync`, `diag`,
// `error`, `seg`, `source`; the arena type (`arena.rs`); what the arena
// code draws on (`internal`, `segpool`, `qcache`, `arenas`); the arena's
// operations (`arena/*.rs`); the tree's bootstrap; the public constructor.
mod arena;
mod arenas;
mod bootstrap;
pub mod diag;
mod error;
mod internal;
#[cfg(feature = "std")]
mod mmap;
mod p2;
mod qcache;
mod seg;
mod segpool;
mod source;
pub mod sync;
mod sys;
mod types;

pub use arena::handle::SegHandle;
pub use arena::reaphook::{set_reap_hook, ReapHookOff};
pub use arena::Vmem;
pub use arenas::{arena_count, for_each_arena, lockup, release, update, verify};
pub use bootstrap::{heap, init, is_initialized, try_heap, HEAP_RETAIN};
pub use error::VmemError;
#[cfg(feature = "std")]
pub use mmap::{MmapSource, MMAP_SOURCE};
pub use qcache::{set_qcache_factory, QCacheFactory};
pub use segpool::global_free_segs;
pub use source::{QCache, QCacheFree, Source};
pub use sys::page_size;
pub use types::{
    Addr, CreateFlags, Policy, SegType, SegTypes, VmemStats, WalkMode, XAllocRequest, NAME_MAX,
    QCACHE_MAX_CACHES,
};
