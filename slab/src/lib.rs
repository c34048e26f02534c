//! # umem-slab — Bonwick's object caches: slab, magazine and depot layers on vmem arenas
//!
//! An object cache ([`Cache`]) hands out fixed-size buffers of one kind of object, fast:
//! a freed buffer goes to the calling thread's magazine and the next allocation takes it
//! back with no lock. Buffers stay *constructed* while they are in the cache, so an
//! expensive constructor runs once per buffer, not once per allocation. The cache's slabs
//! come from a [`Vmem`] arena (umem-vmem).
//!
//! ```
//! use core::ptr::NonNull;
//! use umem_slab::{Cache, CacheFlags, CacheOps};
//! use umem_vmem::{CreateFlags, Vmem};
//!
//! struct Conn {
//!     fd: i32,
//!     requests: u64,
//! }
//!
//! // Runs when a buffer leaves the slab layer, not on every allocation.
//! fn conn_ctor(buf: NonNull<u8>, _private: *mut ()) -> bool {
//!     // SAFETY: the cache hands the constructor an unused buffer of its size and
//!     // alignment (those of `Conn`).
//!     unsafe { buf.cast::<Conn>().as_ptr().write(Conn { fd: -1, requests: 0 }) };
//!     true // constructed (false would fail the allocation)
//! }
//!
//! // Slabs come from an arena that imports pages from vmem's `heap`.
//! let pages = Vmem::create(
//!     "conn_pages",
//!     None,
//!     umem_vmem::page_size(),
//!     Some(umem_vmem::heap()),
//!     0,
//!     CreateFlags::NONE,
//! )
//! .expect("arena");
//! let conns = Cache::create(
//!     "conn",
//!     core::mem::size_of::<Conn>(),
//!     core::mem::align_of::<Conn>(),
//!     CacheOps { ctor: Some(conn_ctor), ..CacheOps::NONE },
//!     pages,
//!     CacheFlags::NONE,
//! )
//! .expect("cache");
//!
//! let c = conns.alloc().expect("out of memory").cast::<Conn>();
//! // SAFETY: a constructed buffer of this cache, ours until we free it.
//! let conn = unsafe { &mut *c.as_ptr() };
//! assert_eq!(conn.fd, -1);
//! conn.fd = 3;
//! conn.requests += 1;
//! conn.fd = -1; // back in constructed state before it returns to the cache
//! // SAFETY: allocated from `conns` above, freed once, not used afterwards.
//! unsafe { conns.free(c.cast()) };
//! assert_eq!(conns.stats().buf_inuse, 0);
//! conns.verify().expect("consistent");
//! ```
//!
//! # Theory statement
//!
//! ## 1. Concepts
//!
//! **Object caching.** An *object cache* ([`Cache`], libumem's `umem_cache_t`) hands out
//! fixed-size buffers of one kind of object and takes them back. Allocating from a cache
//! of recently freed objects is cheaper than building an object from raw memory, so a
//! cache keeps freed objects around, ready for reuse (Bonwick 1994).
//!
//! **Constructed state.** A cache may have a constructor and a destructor ([`CacheOps`]).
//! An object inside the cache *stays constructed*: the constructor runs only when a buffer
//! leaves the slab layer, the destructor only when it goes back there. A free followed by
//! an allocation of the same buffer runs neither.
//!
//! **Slabs.** The cache's memory comes from a source arena ([`Vmem`]) in *slabs*: one or
//! more pages cut into equal *chunks* (the buffer, plus a debug buftag if any, padded to
//! the alignment). A slab whose last buffer comes back is returned to the arena at once,
//! so a cache never holds more empty memory than its magazines do.
//!
//! **Bufctls.** A free buffer has to be found, and an allocated one traced back to its
//! slab. Caches of small buffers keep the `Slab` record at the end of the slab and thread
//! the free list through the free buffers themselves (*in-slab*); a new slab's list is a
//! *fresh tail* (its first chunk's address, tagged), so its chunks are handed out in
//! address order with no link written or read until one is freed. (An in-slab
//! `FREE_KEY` cache of one-word chunks has no room for a link beside the free key: its
//! slabs keep a bitmap of free chunks after the record instead, a *free map*.) Caches of
//! larger buffers, and caches that may not touch their buffers (`NOTOUCH`: vmem's quantum
//! caches), describe each buffer with an external *bufctl* and find the bufctl of an
//! allocated buffer through a hash (*hashed*).
//!
//! **Magazines and the depot.** Above the slab layer sits the magazine layer (Bonwick &
//! Adams 2001): a *magazine* is an array of M free, constructed buffers (its *rounds*).
//! Each thread has, per cache, a *loaded* and a *previous* magazine; allocation pops a
//! round, free pushes one, with no lock. When both magazines are empty (or full) the
//! thread trades one with the cache's *depot*, a locked list of full and of empty
//! magazines; so a thread takes a lock at most once per M operations. Magazines not used
//! for a whole update interval (outside the *working set*) are freed back to the slab
//! layer; contention on the depot lock grows M.
//!
//! ## 2. Implementation
//!
//! Data structures, from the thread down (file in brackets):
//!
//! * The **magazine block** (`magazine_block.rs`): one page per thread, reached through
//!   one TLS word, holding a `ThreadCache` (the loaded magazine as pointers to its
//!   top and last rounds, the previous magazine and its fill, the capacity, counters) for
//!   each cache, indexed by the cache's id. Ids 1..64 are inline; higher ids go through a
//!   directory.
//! * **Magazines** (`magazine.rs`): a link word, the rounds and an extra word; nine types
//!   of 1 to 143 rounds as libumem's `umem_magtype`.
//! * The **depot** (`depot.rs`): the empty magazines (a stack) and the full ones, in
//!   a list per CPU that freed them (a CPU takes its own first, so a thread reuses the
//!   heap it freed), each a deque that hands out its lowest magazine once it is long (a
//!   heap freed and grown again is reused in address order); the working-set counters,
//!   the current magazine type, the contention and traffic counters.
//! * The **slab layer** (`slab.rs`, `slab_layer.rs`): the partial and full slab lists, the
//!   hash of hashed caches, the counts.
//! * The **cache** (`cache.rs`): geometry (chunk size, slab size, colour range, layout
//!   offsets), callbacks, counters, the depot and the slab layer each behind its own lock
//!   on its own cache line.
//! * The **registry** (`registry.rs`): the list of caches, the ids, the internal caches.
//!
//! **The hit path** (`hit.rs`, `magazine.rs`, `percpu.rs`): one load of the per-CPU
//! table's address chooses the mode (0: per thread). *Per CPU* (the default), `alloc`
//! arms a restartable sequence, reads the CPU number, and in the CPU's slot for the cache
//! takes the word at the loaded magazine's top pointer unless it is *tagged* (bit 0: the
//! magazine's link word, so it is empty), then commits the lowered pointer with one store;
//! `free` stores above the top unless the word there is tagged (the upper fence: full) and
//! commits the raised pointer. *Per thread*, `alloc` loads the TLS word, adds the
//! cache's slot offset, and if `top != loaded` (the loaded magazine is kept as the address
//! of its top round, `top`, and of its last, `limit`) takes `*top` and steps `top` down;
//! else, if the previous magazine is full, swaps the two and takes from it. `free` is the
//! mirror image (`top < limit`: step up, store). That is a TLS load, a compare, a load and
//! a store, plus an owner-only
//! relaxed counter — no lock, no atomic read-modify-write, and no call: the hit inlines
//! into its caller, so a caller whose hit ends there needs no stack frame. Callers that
//! keep a cache's [`FastIndex`] skip loading it from the cache ([`Cache::alloc_with`]);
//! callers that keep its [`InlineIndex`] (ids below 64) use [`hit_alloc`] /
//! [`hit_free`], which need not even the cache pointer (umem-global's `malloc`/`free`).
//! A thread with no block yet points at a static *unborn* block whose slots are empty,
//! so the hit path needs no null test.
//!
//! **The slow paths** (`miss.rs`): per CPU, first the CPU's previous magazine; trade
//! with the depot (`magazine_layer.rs`); else take a buffer from the slab layer and
//! construct it (`slab_layer.rs`), and a run of its neighbours for the thread's magazine
//! (batch refill, section 5); debug caches check and fill their buffers (`debug.rs`).
//!
//! **Memory.** Nothing comes from the system allocator. `init()` creates, under
//! `umem_vmem::heap()`, the metadata arenas `umem_internal` (page quantum: slabs of the
//! internal caches, magazine blocks), `umem_cache` (the `Cache` structs) and `umem_hash`
//! (hash tables), and the internal caches `umem_magazine_{1..143}`, `umem_slab_cache`,
//! `umem_bufctl_cache`, `umem_bufctl_audit_cache` (all in-slab, so they never need bufctls
//! themselves). Magazine blocks come straight from `umem_internal`, so making a block
//! never needs a block.
//!
//! **Update and reap** (`update.rs`). [`update()`] runs, on every cache, the hash rescale,
//! the depot working-set update and reap and the magazine resize on contention, then
//! `umem_vmem::update()`. There is no update thread (creating one inside malloc is
//! unsafe): an alloc slow path runs it inline every half interval (10 s by default,
//! [`set_update_interval_ms`]) when nobody else is running it, so a depot magazine unused
//! since the free that filled it goes back within one interval (the working set is
//! measured over half intervals); a thread with a
//! block reads the coarse clock only on every 64th slow path. [`reap()`] frees every
//! depot magazine and asks every thread to flush its magazines to the depots on its next
//! slow path (their thread caches belong to them alone). An update that finds two half
//! intervals or more passed since the last one (the process was idle) starts the missed working-set
//! interval first, so depot magazines unused since then go at once. [`try_reap_all()`]
//! (for an allocation that failed) and [`reap_all()`] (`malloc_trim`) reap and update
//! under the update flag; `try_reap_all` never waits for it, so a failing allocation inside
//! an update, a reap or a thread-exit flush does not reap again. Both, and every update,
//! end with the hook of [`set_update_hook`] (umem-global discards free memory there).
//! `init()` installs the same reap
//! as umem-vmem's reap hook (`umem_vmem::set_reap_hook`), so an arena allocation about to
//! fail first reaps every cache and retries (libumem's `umem_reap`); the hook does
//! nothing on an exiting thread or while the cache-list lock is held (tried, never waited
//! for: its holder may be the allocating thread, inside a callback).
//!
//! **In-band words** (`secret.rs`, issue 11). The only allocator state kept in memory a
//! program can overflow into is the free-list link of each free chunk of an in-slab cache
//! and the `Slab` record at the end of its slab. Both are protected with a per-process
//! secret (getrandom at `init`): a link is stored as `((next ^ K) * M) ^ at` and checked
//! after decoding (0, or a chunk start of its own slab, by a division-free test) before it
//! is followed; the record begins with its owner cache encoded the same way, checked on
//! every use. A free map lies after its record, so a linear overflow out of the last chunk
//! breaks the checked tag before it reaches the map. A bad word aborts with a message
//! naming the slab, the cache and the word (`SlabError::CorruptSlab`); a link is cleared
//! when its chunk is handed out.
//! [`CacheFlags::FREE_KEY`] caches (umem-global's size classes) also lay their slabs out
//! without colour, so that a chunk start is a function of the address ([`Cache::grid`]),
//! start every new buffer marked with [`FREE_KEY_WORD`], the *free key* their user
//! writes into freed buffers, and answer [`Cache::check_free`], the slow check behind it.
//!
//! **Debugging** (`debug.rs`, `redzone.rs`, `audit.rs`). With [`CacheFlags::DEBUG`] each
//! chunk is `[buffer][slack][buftag: redzone word, link word, status]`, the buftag ending
//! the chunk; free buffers are filled with `0xdeadbeef…` (checked when they leave the
//! cache, up to `maxverify` bytes, replaced by `0xbaddcafe…`; no patterns under `lite`:
//! [`set_debug_tuning`]), frees check the status (double free), the redzone and the word
//! before the buffer (the neighbour's status: an underrun), and objects are destructed on
//! every free so that the fill can be checked. The redzone is byte-precise: the slack
//! holds [`REDZONE_BYTE`] from the size the user asked for ([`Cache::set_requested`], a
//! size-encoded redzone word as in libumem's `umem_alloc`) up to the buftag.
//! [`CacheFlags::AUDIT`] (`audit.rs`) adds a record of each buffer's last allocation and
//! last free — thread, time and a stack of [`audit_depth`] frames taken by the hook of
//! [`set_stack_hook`] ([`Cache::audit`], [`Cache::audit_detail`],
//! [`Cache::walk_audited`]). Errors the debug checks find go to the user's report hook
//! ([`set_debug_report_hook`], `debug_report.rs`: print — with the buffer's history — and
//! abort, or carry on) or abort; other fatal errors about a buffer call the hook of
//! [`set_error_hook`] so the layer above can print that history. [`Cache::free_debug`] and
//! [`Cache::check_allocated`] give errors back instead; [`Cache::verify_buffers`] checks
//! every buftag of a cache (`buftag_verify.rs`). Debug caches have fast index 0, so they
//! never hit and non-debug caches pay nothing for debugging.
//!
//! ## 3. Locks and their order
//!
//! From first taken to last:
//!
//! 1. the **update flag** (`update.rs`): one `update()` at a time;
//! 2. the **cache-list lock** (`registry.rs`): the cache list and the id bitmap;
//! 3. the **block-list lock** (`magazine_block.rs`): the list of magazine blocks, and any
//!    other thread's block;
//! 4. a cache's **depot lock**;
//! 5. that cache's **slab-layer lock**;
//! 6. umem-vmem's locks (the source arenas).
//!
//! No code holds two caches' depot or slab locks at once: objects and magazines are freed
//! to other caches only after the current cache's locks are dropped. [`lockup()`] (fork)
//! takes them all in this order — update flag, cache list, block list, then each cache's
//! depot and slab lock in list order, then `umem_vmem::lockup()` — and [`release()`]
//! drops them. All locks are spin locks (umem-vmem's `sync`, the one spin lock of the workspace) that sleep on a futex after a short spin.
//!
//! Callbacks: constructors run with no lock held. Destructors and reclaim callbacks may
//! run inside `update()`/`reap()` and the reap hook of a failing arena allocation
//! (cache-list lock held), thread-exit flushes and
//! `destroy` (block-list lock held, the calling thread's magazines switched off): they may
//! allocate and free, but must not create, destroy or reap caches, call `stats()` or
//! `update()` (libumem's callbacks have similar limits).
//!
//! ## 4. Invariants ([`Cache::verify`] checks them)
//!
//! * Every slab on the *partial* list has at least one free and one allocated buffer;
//!   every slab on the *full* list has none free; no empty slab is kept.
//! * For each slab, free-list length + refcnt = chunks, and free buffers are chunk starts
//!   inside it; its colour is a multiple of the alignment no larger than the cache's
//!   largest.
//! * Σ chunks = buftotal, Σ refcnt = bufalloc; the hash holds exactly the allocated
//!   bufctls, each in its bucket.
//! * Depot lists hold only magazines of the depot's current type; list lengths equal their
//!   totals and `min ≤ total`; every round of a full depot magazine is a buffer the slab
//!   layer counts as allocated.
//! * Debug caches: every free buffer's buftag says free.
//! * (Not walked, kept by construction.) Per CPU, a magazine is in exactly one place: a
//!   CPU slot word, one thread's hands (between the take and the put-back of a slow path),
//!   or the depot; a slot word is written only by rseq sections on its CPU (and by
//!   `destroy`, which no thread races by contract). A magazine in a CPU slot is fenced:
//!   its link word and the word above its last round are tagged, its rounds and the dead
//!   slots above the top are not. Per CPU, the inline slots of the threads' blocks stay
//!   empty (the Cache API's per-thread hit misses into the slow path, where the per-CPU
//!   hit runs).
//! * (Not walked, kept by construction.) A thread cache's `loaded <= top <= limit`, all
//!   three null when it has no loaded magazine, so the hit path needs no null test; a
//!   thread cache whose
//!   magazine size differs from the depot's drains its magazines on its next depot visit
//!   (that is how a resize reaches the threads).
//!
//! **Destroy contract.** `Cache::destroy` is `unsafe`: no thread may use the cache during
//! or after it. Other threads may still *hold* magazines for it; destroy takes them from
//! every block under the block-list lock (a thread touches its thread cache only inside
//! that cache's calls, and thread exit flushes under the same lock), destroys their
//! rounds, purges the depot, and frees the cache only if no object is still allocated
//! (else it returns `NotEmpty` and the cache stays usable).
//!
//! ## 5. Deviations from illumos, and why
//!
//! * **Per-CPU magazines by default, per-thread ones as the fallback.** libumem on Linux
//!   maps every thread to CPU slot 0 and takes that slot's lock on every operation. Here
//!   the magazines are Bonwick's per-*CPU* ones, over Linux restartable sequences
//!   (`rseq.rs`, `percpu.rs`, `percpu_layer.rs`): no lock and no atomic read-modify-write
//!   on a hit, and memory bounded by the CPUs, not the threads (issue 16: a pool of 512
//!   threads holds about 8 MB, not 300 MB). The price is a longer hit than a thread's own
//!   magazine (the section descriptor stored, the CPU number read and scaled: about seven
//!   instructions per operation, a few per cent in time; `docs/performance.md`), and a
//!   miss path for the previous magazine, since swapping two words is more than one
//!   commit (hits there count towards magazine growth). A CPU slot is written only by
//!   sections on that CPU, so a slow path *takes* the CPU's magazines by rseq exchanges,
//!   works on them as a thread works on its own, and puts them back; a reap moves the
//!   reaping thread to each CPU in turn. Caches with ids from 64 on, and caches of odd
//!   buffers, keep per-thread magazines. Where rseq cannot be used (no kernel support,
//!   valgrind, seccomp, another architecture) or [`set_percpu`]`(false)` asks
//!   (umem-global: `UMEM_OPTIONS=nopercpu`), each thread owns its magazines: the cost is
//!   memory that grows with the threads, and other threads' magazines cannot be taken
//!   while they run, so a reap only *asks* threads to flush, and an idle thread keeps its
//!   (at most two per cache) magazines until it exits; a `pthread_key_create` destructor
//!   flushes them then and points the thread at a static *dead* block, so allocations from
//!   later TLS destructors go to the slab layer.
//! * **One initial-exec TLS word** on x86_64 Linux (a `global_asm!` `.tdata` word), since a
//!   cdylib's `thread_local!` costs a `__tls_get_addr` call per access; elsewhere a
//!   const-initialised `thread_local!`.
//! * **Magazines also grow on depot traffic**: 64 depot visits within 50 ms (coarse clock,
//!   read once per 64 visits) grow the magazine type at once, from the slow path that sees
//!   it. libumem grows only on contention, so a single thread churning a few dozen objects
//!   keeps small magazines and takes the depot lock every few operations; and magazines
//!   that go through the depot carry blocks one thread just wrote to another thread's
//!   core. Caches with a constructor or destructor, quantum caches and the internal caches
//!   keep the contention-only rule (a resize destroys the cached, constructed objects).
//! * **Batch refill**: a thread that finds no full magazine in the depot takes a run of
//!   neighbouring buffers from the slab layer (up to one magazine, at most 1 KiB) and
//!   keeps the extras in its own magazine; libumem takes one at a time, and two threads
//!   refilling together got interleaved neighbours on one cache line (false sharing).
//!   Only small buffers of caches without constructor, destructor or debugging take part,
//!   never the magazine caches (`Cache::batch_refill`). A batch of buffers smaller than a
//!   line covers at least eight lines and comes out a line apart.
//! * **Buffers stay with their CPU group** (a CPU modulo 8; per-thread mode, the thread):
//!   the group refills from a slab it *claims* in the slab layer (`slab_layer.rs`, "CPU
//!   claims"), and for chunks up to 512 bytes takes another group's full magazines only
//!   from a depot list of two or more (`depot.rs`). libumem's slab layer hands its next
//!   free buffer to whoever asks, and its depot any full magazine: two threads that
//!   allocate and free about as much then end up with their small buffers on the same
//!   lines, written from two cores (glibc's bench-malloc-thread: 80-170 M iterations
//!   against mimalloc's 200 M, before).
//! * **Magazines are cache-line aligned** (libumem: 8 to 64 bytes), since a loaded
//!   magazine is written on every hit by its thread.
//! * **Hash rescale on growth**: a hashed cache rescales its hash inline when its buffers
//!   outgrow it (and both ways in `update`), so free stays O(1) without an update thread.
//!
//! The measurements behind these choices are in `docs/performance.md` (`## umem-slab`).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
// `is_multiple_of` is newer than the workspace MSRV (1.82).
#![allow(clippy::manual_is_multiple_of)]

// The files, lowest concept first; a file imports (`use crate::…`) only files on lines
// above its own, so the imports form no cycle:
//   error, flags, ops, clock, rseq        public value types; the coarse clock; rseq sections
//   diag, secret                          fatal with the umem-slab prefix (umem_vmem::diag);
//                                         the secret of the in-band links
//   magazine, metadata                    magazines and thread caches; metadata arenas
//   magazine_block                        the thread's magazine block and its TLS word
//   percpu                                per-CPU slots, the mode switch, the per-CPU hit
//   depot, slab                           depot state; slab and bufctl records
//   cache                                 the `Cache` type
//   audit, debug_report, redzone          audit records; debug reports; redzones
//   registry                              cache list, ids, internal caches, fork lockup
//   hit                                   the hit paths and their index types
//   debug, slab_layer, magazine_layer     buftags; slab-layer and depot-exchange paths
//   percpu_layer                          per-CPU slow paths; `with_my_slot` (either mode)
//   update, miss, qcache                  update/reap; slow paths; vmem's quantum caches
//   create, verify, buftag_verify, stats  creation and init; checking; statistics
mod audit;
mod buftag_verify;
mod cache;
mod clock;
mod create;
pub use create::hashed_slab_size;
mod debug;
mod debug_report;
mod depot;
mod diag;
mod error;
mod flags;
mod hit;
mod magazine;
mod magazine_block;
mod magazine_layer;
mod metadata;
mod miss;
mod ops;
mod percpu;
mod percpu_layer;
mod qcache;
mod redzone;
mod registry;
mod rseq;
mod secret;
mod slab;
mod slab_layer;
mod slab_watch;
mod stats;
mod update;
mod verify;

pub use audit::{
    audit_depth, set_audit_depth, set_stack_hook, stack_hash, AuditDetail, AuditEvent, AuditRecord,
    AuditStack, AuditedBuffer, StackHook, DEFAULT_AUDIT_DEPTH, MAX_AUDIT_DEPTH,
};
pub use cache::Cache;
pub use debug_report::{set_debug_report_hook, DebugReportHook};
pub use diag::{set_error_hook, ErrorHook};
pub use error::{CacheName, SlabError};
pub use flags::{CacheFlags, FREE_KEY_WORD};
pub use hit::{
    cpu_hit_alloc, cpu_hit_free, hit_alloc, hit_free, FastIndex, InlineIndex, INLINE_END,
    INLINE_STRIDE,
};
pub use magazine_block::{live_thread_blocks, thread_exit_flush};
pub use ops::{CacheOps, CtorFn, DtorFn, ObjectOps, ReclaimFn};
pub use redzone::{set_debug_tuning, REDZONE_BYTE};
pub use registry::for_each_cache;
pub use secret::process_secret;
pub use slab_watch::{set_slab_watch_hook, SlabWatchHook};
pub use stats::CacheStats;
/// The spin lock umem-slab uses (no allocation, no poisoning), for the
/// crates above it that need one for their own short critical sections.
pub use umem_vmem::sync::{RawSpin, SpinGuard, SpinLock};
pub use umem_vmem::Vmem;
pub use verify::SlabGrid;

/// Build the metadata arenas and internal caches and install the quantum-cache factory in
/// umem-vmem. Idempotent; `Cache::create` calls it.
pub fn init() {
    create::init();
}

/// Per-CPU magazines (restartable sequences; the default) or per-thread ones (`false`):
/// takes effect in [`init`] (call it before). Per CPU needs an rseq area the kernel keeps
/// up to date — glibc's, or one umem registers where glibc registered none; without one
/// the magazines are per thread. See [`magazine_mode`].
pub fn set_percpu(on: bool) {
    percpu::set_wanted(on);
}

/// Where the magazine layer keeps its loaded magazines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MagazineMode {
    /// One pair per thread and cache (the fallback without rseq, or when asked for).
    PerThread,
    /// One pair per CPU and cache (the default; ids below 64, higher ids stay per
    /// thread), for this many possible CPUs.
    PerCpu {
        /// Possible CPUs (slots per cache).
        cpus: usize,
    },
}

/// The magazine mode chosen by [`init`] (per thread before it).
pub fn magazine_mode() -> MagazineMode {
    match percpu::cpus() {
        0 => MagazineMode::PerThread,
        cpus => MagazineMode::PerCpu { cpus },
    }
}

/// Disable the magazine layer for caches created from now on (`UMEM_OPTIONS=nomagazines`).
pub fn set_nomagazines(on: bool) {
    create::set_nomagazines(on);
}

/// Interval of the inline periodic update (`reap_interval`): updates run every half of it,
/// so that memory freed goes back within one; 0 disables inline updates.
pub fn set_update_interval_ms(ms: u64) {
    update::set_interval_ms(ms);
}

/// Periodic maintenance of every cache (hash rescale, depot working set and reap,
/// magazine resize on contention), then `umem_vmem::update()`.
pub fn update() {
    if !create::is_ready() {
        return;
    }
    update::update();
}

/// Run the periodic update now if it is due (the interval passed) and nobody runs one —
/// what the alloc slow path does every 64th call. For callers whose path costs far more
/// than a clock read (umem-global's large blocks). Never waits.
pub fn maybe_update() {
    if !create::is_ready() {
        return;
    }
    update::maybe_update_now();
}

/// Reap every cache (`umem_reap`): reclaim callbacks, the calling thread's magazines, and
/// every depot magazine go back to the slab layer; empty slabs to their arenas. Other
/// threads are asked to flush their magazines to the depots on their next slow path, so a
/// later reap (or update) can free those too; a thread that never allocates again keeps
/// its (at most two per cache) magazines until it exits.
pub fn reap() {
    if !create::is_ready() {
        return;
    }
    update::reap_flagged();
}

/// Reap everything that can be reaped, for an allocation that failed: the calling
/// thread's magazines, every depot (objects back to their slabs, empty slabs to their
/// arenas), then an update (retained vmem spans back to their sources) and the hook
/// installed with [`set_update_hook`] (`hook(true)`). Never waits and never recurses:
/// `false` (nothing done) when an update, reap-all or fork lockup is in progress (possibly
/// in this thread, from a callback) or the thread is exiting or destroying a cache. The
/// caller holds no umem lock.
pub fn try_reap_all() -> bool {
    if !create::is_ready() {
        return false;
    }
    update::try_reap_all()
}

/// [`try_reap_all`] that waits while another thread updates or reaps (`malloc_trim`).
/// `false` only when this thread cannot reap here (exiting, destroying a cache, or inside
/// an update or reap itself: never call it from a cache callback).
pub fn reap_all() -> bool {
    if !create::is_ready() {
        return false;
    }
    update::reap_all()
}

/// Install the function run at the end of every periodic update (`f(false)`) and every
/// [`try_reap_all`] / [`reap_all`] (`f(true)`), with the update flag held and no other
/// lock taken: the layer above gives back what it keeps (umem-global discards the free
/// memory of its arenas). It must not call `update`, `reap` or `try_reap_all`.
pub fn set_update_hook(f: fn(bool)) {
    update::set_hook(f);
}

/// Fork preparation: take the update flag, every umem-slab lock (cache list, block list,
/// each cache's depot and slab locks) and then every vmem lock, in the documented order
/// (theory statement, section 3).
pub fn lockup() {
    update::lock_flag();
    if create::is_ready() {
        registry::lockup_caches();
    }
    umem_vmem::lockup();
}

/// Release everything `lockup` took (parent and child after fork).
///
/// # Safety
/// Only after `lockup()` on this thread (or in the child of a fork made after it).
pub unsafe fn release() {
    // SAFETY: by the caller.
    unsafe {
        umem_vmem::release();
        if create::is_ready() {
            registry::release_caches();
        }
    }
    update::unlock_flag();
}

/// Number of caches (internal ones included).
pub fn cache_count() -> usize {
    registry::cache_count()
}

/// Test/diagnostic hook: run `f` while holding `cache`'s depot lock, so that other threads'
/// depot visits fail their trylock (forced contention). `f` gets a function returning the
/// number of threads currently spinning on that lock.
#[doc(hidden)]
pub fn __with_depot_locked(cache: &Cache, f: &mut dyn FnMut(&dyn Fn() -> u32)) {
    magazine_layer::with_depot_locked(cache, f)
}
