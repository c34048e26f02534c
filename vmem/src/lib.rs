//! # umem-vmem — Bonwick's vmem resource arenas
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
//! ## Theory statement
//!
//! An **arena** ([`Vmem`]) manages a set of integer ranges — addresses, IDs,
//! device memory — in units of its **quantum**. It never touches the memory
//! it manages; only vmem's own tree of internal arenas (below) is real
//! memory that vmem writes into.
//!
//! **Segments.** Every range the arena knows is a **segment** (`vmem_seg`):
//! a **span** marker for each span added (`add`) or imported from the
//! **source** (`import`), followed by the allocated and free segments that
//! tile the span exactly. All segments of an arena are on one doubly linked
//! list, in address order within each span (span marker first; spans in
//! address order for arenas without a source, in import order otherwise),
//! plus two marker kinds that
//! carry no range: the **rotor** (where the next next-fit search starts) and
//! transient **walkers** (the place of a reentrant `walk`). Span markers are
//! also on a span list (non-imported spans sorted by address, as in
//! libumem, so `extend_alloc` can grow the last one).
//!
//! **Freelists.** Each free segment is on one of 64 power-of-two
//! **freelists**: list *n* holds sizes in `[2^n, 2^(n+1))`. A 64-bit
//! **freemap** has bit *n* set exactly when list *n* is non-empty.
//! **Instant fit** takes the head of the lowest non-empty list whose members
//! are all large enough (`2^ceil(log2 size)`): O(1), one `trailing_zeros`.
//! *Deviation from vmem.c (floor-list head fit):* for a size that is not a
//! power of two it first looks at the head — only the head, so still O(1)
//! — of list `floor(log2 size)` and takes it if it is large enough. That
//! segment is smaller than `2^(floor+1)`, i.e. smaller than anything the
//! ceil list could give, so the fit only gets tighter (always below 2× the
//! request, where vmem.c's instant fit guarantees only the ceil list's
//! bound); and the hole a free of this size just made (pushed at the head)
//! is reused whole instead of splitting a larger segment and coalescing on
//! the next free. Constrained instant-fit `xalloc`s try the same head
//! first.
//! **Best fit** and **first fit** search from the list that may hold a fit;
//! **next fit** scans the address list from the rotor.
//! `xalloc` honours `align`, `phase`, `nocross`, `minaddr`, `maxaddr`.
//!
//! **Hash.** Allocated segments are in a chained hash table keyed by start
//! address (multiplicative hash of `addr >> log2(quantum)`, chained through
//! the segment), so `free` finds its segment in O(1). When the live count
//! passes half the table size (the whole of the 16-bucket table embedded
//! in the arena), the allocating thread **rescales** it (to the next power
//! of two at or above twice the live count) after dropping the arena lock;
//! `update()` grows or shrinks every table the same way
//! (`vmem_hash_rescale`), so the load stays between 1/8 and 1/2. New
//! tables come from `vmem_hash`. (Tried: a load of 1/8..1/4 cut the extra
//! chain steps per free at 10⁶ live from 0.28 to 0.07 but did not measure
//! faster in the pair bench, for twice the table; not kept.)
//!
//! **Handles (not in vmem.c).** [`Vmem::alloc_handle`] /
//! [`Vmem::xalloc_handle`] return a move-only [`SegHandle`] (one pointer:
//! the segment structure) and [`Vmem::free_handle`] frees through it, like
//! a handle-based allocator's token (device memory, IDs). A handle segment
//! is an allocated segment with its `handle` flag set and `owner` naming
//! its arena; it is **not** in the hash, so neither side touches a bucket
//! and the free costs the segment and its two address neighbours. Handle
//! allocations bypass quantum caches; placement, import, coalescing and
//! span release are the address path's (one `seg_alloc` and one
//! `free_seg` serve both). `free`/`xfree` of a handle segment's address
//! answer `HandleAllocated` (a linear search of its span, on that error
//! path only) and leave it allocated; `free_handle` with another arena's
//! handle answers `WrongArena`. `free_handle` is safe: while a handle
//! exists its segment stays allocated, because only `free_handle` frees
//! it and every other path (coalescing, span release, `update`, rescale,
//! `walk`, `verify`, `lockup`, quantum caches) leaves allocated segments
//! alone — see `arena/handle.rs`; [`Vmem::destroy`] (unsafe) requires
//! that the arena's handles are not used afterwards.
//!
//! **Import/release.** An arena short of space drops its lock, imports
//! `roundup(size + phase, max(align, source quantum))` from its source
//! (aligned to that), and makes it a span; a free that leaves an imported
//! span wholly free destroys the span and releases it to the source at once
//! (after unlocking). Unlike vmem.c, a rotor or walker sitting inside such
//! a span does not keep it: the markers are moved out first. Only
//! unconstrained requests (no `nocross`, `minaddr`, `maxaddr`) import.
//!
//! **Retained spans (hysteresis; not in vmem.c).** An arena may keep up to
//! `retain_max` bytes of wholly free imported spans instead of releasing
//! them ([`Vmem::set_retain`]; 0 for arenas from [`Vmem::create`], so they
//! behave like vmem.c; [`HEAP_RETAIN`] (4 MiB) for `heap`). A free that
//! leaves an imported span wholly free keeps it when the arena's free bytes
//! (`mem_total - mem_inuse`, the span included) are at most `retain_max` —
//! so the retained total never exceeds the limit; the span's free segment
//! stays on its freelist and serves later allocations without an import.
//! This is what stops a slab whose count oscillates across a boundary
//! (a `NOMAGAZINE` cache, one object at a time) from paying mmap + munmap
//! per alloc+free pair. [`update`] gives every retained span back to its
//! source (umem-slab's `update()`, and so `umem_global::reap()`, call it),
//! and lowering the limit gives the excess back before `set_retain`
//! returns. A span whose only company is a rotor or walker is still
//! released at once.
//!
//! **Quantum caches.** An arena created with `qcache_max > 0` asks the
//! installed [`QCacheFactory`] (umem-slab) for an object cache of each size
//! `k * quantum <= qcache_max` (at most 16); `alloc`/`free` of those sizes
//! go to the cache (whatever the policy), everything else — and all
//! `xalloc`/`xfree` — to the segment layer. When an allocation fails, the
//! caches are reaped and it is retried once. Without a factory every size
//! uses the segment layer.
//!
//! **Self-hosting.** Segment structures (one cache line each), hash tables
//! and `Vmem` structures come from arenas: `heap` (page quantum, imports
//! from the caller's page source) → `vmem_internal` (imports chunks that
//! grow with it up to 2 MiB, 2 MiB aligned from 2 MiB on) → `vmem_seg`, `vmem_hash`,
//! `vmem_vmem`. The first five arenas live in a static array (later made
//! allocations of `vmem_vmem`), the first 128 segments in a static array on
//! the global segment free list. Each arena keeps a private **reserve** of
//! segment structures, refilled by **populate** before any operation to
//! `MINFREE` (8) beyond those promised to imports in flight: the worst case
//! of one operation (import a span + allocate from its middle: 4) plus the
//! **populate reserve** (4) that a populator arena (`heap`,
//! `vmem_internal`, `vmem_seg`) may use while the populating thread (the
//! owner of the populate lock) allocates pages of segments through them.
//! That thread never populates again (it taps the reserves, which it
//! restocks afterwards), so recursion is bounded by the depth of the tree.
//! Destroyed arenas give their segments back to the global list.
//!
//!
//! **Giving segment memory back (not in vmem.c, which never frees segment
//! pages).** Populate takes **chunks** (whole pages) from `vmem_seg`; the
//! first structure slot of each page is a chunk header (where the chunk
//! starts, its size, how many of its structures are on the global free
//! list, whether it is pinned). The global free list is doubly linked
//! (`knext`/`kprev`) and counts each structure in its chunk; a chunk whose
//! structures are all listed is queued. [`update`] moves each arena's
//! reserve beyond `2 * MINFREE` to the global list, then takes every
//! queued chunk's structures off the list and frees the chunk to
//! `vmem_seg` (whose spans then go back up the tree; `heap`'s retained
//! spans are trimmed last). This works only because of the **populator
//! pool**: each chunk is an allocation of `vmem_seg`, described by a
//! segment structure, and populator arenas refill their reserves on every
//! populate — if those structures came from ordinary chunks, one reserve
//! structure in the newest chunk would pin it and, through the chain of
//! describing structures, every older chunk (tried: 1 chunk of 710 came
//! back). So when the pool runs low (< 64) populate takes a **pinned**
//! chunk (never given back) straight from `heap` — a span of its own, so
//! it cannot keep a `vmem_internal` chunk — whose surplus refills the
//! pool; populator arenas take reserve structures from the pool first and
//! `update` trims their excess back into it. Ordinary chunks then depend
//! only on their own structures and on the reserves of live ordinary
//! arenas (at most `2 * MINFREE` each after `update`). `vmem_internal`'s
//! import chunks stop growing at 2 MiB so that a long-lived hash table or
//! arena structure keeps at most one such chunk. Measured: an arena of
//! 2·10⁶ segments (10⁶ allocated) destroyed, then `update()` (9.8 ms):
//! global free list 2,000,126 → 190 structures, `heap` 133.7 MB → 3.3 MB.
//! Memory of pinned chunks and of the static structures is kept, as are
//! structures in reserves between `update`s.
//!
//! ## Locks and their order
//!
//! 1. the **arena list** lock (create, destroy, `update`, `lockup`; also
//!    try-locked by an allocating thread that grows its arena's hash after
//!    dropping the arena lock, so rescales never run during `lockup`);
//! 2. the **populate** lock (one thread refills segment reserves at a time;
//!    taken with no arena lock held);
//! 3. the **arena locks**, one per arena, protecting its segment list,
//!    freelists, freemap, hash table, reserve and kstats. At most one arena
//!    lock is held at a time except in `lockup`, which takes them in
//!    creation order: every call into another arena (source import/release,
//!    internal arenas, quantum caches) is made with the lock dropped;
//! 4. the **global segment free list** lock (also guarding the populator
//!    pool and the queue of wholly free chunks) and the quantum-cache
//!    factory lock (leaves). `update` frees chunks to `vmem_seg` and
//!    releases retained spans holding only the arena-list lock.
//!
//! Quantum-cache (slab) locks come before all of these: caches call the
//! arena with no vmem lock held, and the arena calls caches with none held.
//!
//! ## Invariants (checked by [`Vmem::verify`])
//!
//! * Each span marker is followed by segments tiling it exactly, in address
//!   order (allocations of non-quantum sizes occupy their size rounded up to
//!   the quantum); spans do not overlap and, without a source, are sorted.
//! * No two free segments are neighbours on the list (they coalesce); only a
//!   rotor or walker may sit between two free segments.
//! * Each free segment is on freelist `floor(log2 size)`; freemap bit *n* is
//!   set iff list *n* is non-empty.
//! * The hash holds exactly the allocated segments that are not handle
//!   segments, each in its bucket; each handle segment's `owner` is its
//!   arena, and `nhandle` counts them.
//! * kstats: `mem_inuse` = sum of allocated sizes, `mem_total` = sum of span
//!   sizes = `mem_inuse` + free sizes, `mem_import` = sum of imported spans,
//!   `alloc - free` = number of allocated segments (hashed + handle).
//! * Outside a call, the wholly free imported spans (retained) add up to at
//!   most `retain_max` bytes (0 by default: none is ever wholly free).
//! * The reserve list holds exactly `nsegfree` structures.
//!
//! ## Kstats
//!
//! `search` counts freelist segments examined (1 per instant-fit
//! allocation), `lookup` counts hash-chain steps beyond the first (none
//! for handle frees), so both per operation stay flat as the arena grows.
//! `alloc_segs` counts every allocated segment, `handle_segs` those held
//! by handles. `fail` counts allocations
//! that found no space or no metadata. Misuse (bad free, bad parameters)
//! leaves the arena's segments unchanged.
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
pub use arena::Vmem;
pub use arenas::{arena_count, for_each_arena, lockup, release, update, verify};
pub use bootstrap::{heap, init, is_initialized, try_heap, HEAP_RETAIN};
pub use error::VmemError;
#[cfg(feature = "std")]
pub use mmap::{MmapSource, MMAP_SOURCE};
pub use qcache::{set_qcache_factory, QCacheFactory};
pub use segpool::global_free_segs;
pub use source::{QCache, Source};
pub use sys::page_size;
pub use types::{
    Addr, CreateFlags, Policy, SegType, SegTypes, VmemStats, WalkMode, XAllocRequest, NAME_MAX,
    QCACHE_MAX_CACHES,
};
