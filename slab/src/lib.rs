//! # umem-slab — Bonwick's object caches: slab, magazine and depot layers on vmem arenas
//!
//! ## Theory
//!
//! An **object cache** ([`Cache`], libumem's `umem_cache_t`) hands out fixed-size buffers
//! of one kind of object. It keeps objects *constructed*: the constructor runs when a
//! buffer leaves the slab layer, the destructor only when it returns there (Bonwick 1994).
//! A cache has three layers, each a cache of the one below:
//!
//! 1. **Per-thread layer** (the paper's CPU layer, `thread.rs`). Each thread has a
//!    `ThreadBlock` with a `TSlot` per cache id holding a *loaded* and a *previous*
//!    magazine. `alloc` pops a round from the loaded magazine, `free` pushes one; when the
//!    loaded magazine is empty (full) and the previous one is full (empty) they are swapped
//!    on the hit path itself (both of the paper's fast-path cases), so a thread goes to the
//!    depot at most once per M operations (2001, section 3.1). The
//!    slot is touched only by its owner thread: the hit path takes no lock and no atomic
//!    read-modify-write (a TLS load, a compare, a load and a store, plus an owner-only
//!    relaxed counter).
//! 2. **Depot** (`Depot`, under the cache's *depot lock*): a list of full and a list of
//!    empty magazines. Each list tracks `min` (the lowest total since the last update) and
//!    `reaplimit` (the previous interval's `min`); `update` frees `min(reaplimit, min)`
//!    magazines — those outside the working set. A failed `try_lock` on the depot lock
//!    counts as contention; more than 2 per update interval grows the magazine type
//!    (1, 3, 7, 15, 31, 47, 63, 95, 143 rounds, as libumem's `umem_magtype`).
//!    **Deviation from libumem:** magazines also grow on depot *traffic* — 64 depot
//!    visits within 50 ms (coarse clock, read once per 64 visits) grow the type at once,
//!    from the slow path that sees it. libumem grows only on contention, so a single
//!    thread churning a few dozen objects of a class keeps 3- or 7-round magazines and
//!    takes the depot lock every few operations (measured: random 16–512 B churn over
//!    1000 live objects, 16.3 → 11.4 ns per malloc+free). Growing late is costly with
//!    threads too: magazines that go through the depot carry blocks one thread just
//!    wrote to another thread's core (umem-bench sh6bench, two threads, 128 live blocks
//!    per class: 51 ms with the first threshold of 1024 visits, 40 ms with 64, 36 ms
//!    with magazines at their largest from the start, mimalloc 35 ms). Caches with a constructor or
//!    destructor, quantum caches and the internal caches keep the contention-only rule
//!    (a resize destroys the cached, constructed objects).
//!    **Second deviation — batch refill:** when a thread finds no full magazine in the
//!    depot and goes to the slab layer, it takes a run of neighbouring buffers (up to one
//!    magazine, at most 1 KiB) and keeps the extras in its own magazine. libumem takes one
//!    buffer at a time, so two threads refilling together got interleaved neighbours on
//!    one cache line and kept reusing them (umem-bench cache-thrash: 3.66× → 1.25× glibc's
//!    time). Only small buffers of caches without constructor, destructor or debugging,
//!    and never the magazine caches, take part (`Cache::batch_refill`).
//! 3. **Slab layer** (`SlabLayer`, under the cache's *slab lock*). Buffers smaller than
//!    1/8 of a page live in one-page slabs with the `Slab` header at the end of the page
//!    and a free list threaded through the buffers (link word at the end of each chunk).
//!    Larger buffers, and every NOTOUCH cache (quantum caches, integer arenas), use
//!    external `Bufctl`s from `umem_bufctl_cache`, `Slab`s from `umem_slab_cache`, and a
//!    hash of allocated bufctls that is rescaled to about the buffer count (on growth
//!    inline, and both ways in `update`), so free stays O(1). Multi-page slab sizes are the
//!    smallest that waste at most 1/8 (quantum caches: next power of two above
//!    3 × `qcache_max`). Slabs are coloured (offset by multiples of the alignment up to the
//!    slack). A slab whose last buffer comes back is returned to the source arena at once.
//!
//! ## Per-CPU → per-thread, and what was measured
//!
//! libumem on Linux maps every thread to CPU slot 0 (its hint is `pthread_self()` masked by
//! the CPU count) and takes that slot's lock on every operation. Here each thread owns its
//! magazines: no lock on a hit, no shared cache line written. The block is reached through
//! one TLS word with no destructor: on x86_64 Linux an initial-exec `.tdata` word defined by
//! `global_asm!`, read `%fs`-relative, whose initial value is a static, never-written
//! *unborn* block with empty slots (so the hit paths miss on it without a null test, and
//! the slow path gives the thread its block) (a cdylib's `thread_local!` is global-dynamic: a
//! `__tls_get_addr` call per access, which cost `libumem.so` about 8 ns per malloc+free
//! pair), elsewhere a const-initialised `thread_local!` `Cell<*mut ThreadBlock>`; a
//! `pthread_key_create` destructor flushes the magazines to the depots at thread exit and
//! points the thread at a static dead block, so allocations from later TLS destructors go
//! straight to the slab layer. Other threads' magazines cannot be taken while they run
//! (no lock guards them), so `umem_slab::reap()` bumps a reap generation: a thread that
//! sees it on its next slow path flushes all its magazines to the depots, where the next
//! reap or update frees them; idle threads keep theirs (at most two per cache) until they
//! exit. Measured with `examples/hit_timing.rs` (release build, this
//! shared and heavily loaded 2-core machine, 64-byte cache, magazine hit, alloc+free pair):
//! **2.5–4.7 ns** wall time per pair (2.4 ns of thread CPU time) for the per-thread design,
//! against **9.5–17.8 ns** for a `sched_getcpu()` + per-CPU spin-lock magazine (vDSO
//! `sched_getcpu` plus an uncontended `xchg`/release pair per operation), and 21–36 ns for
//! `Box` on glibc malloc — so per-thread it is. Two threads hammering the same cache each
//! still spend 2.4 ns of CPU per pair (no shared cache line is written on the hit path), so
//! throughput scales with the CPUs actually available. The hit path reads the thread-local
//! block pointer and the slot's cache line: the slots of cache ids 0..64 (the internal
//! caches and umem-global's size classes, which are created first) are inline in the
//! block; other ids go through one directory entry. Callers that keep a cache's
//! [`FastIndex`] beside the cache pointer ([`Cache::alloc_with`]) skip loading it from the
//! cache; callers that keep its [`InlineIndex`] (ids below 64) can call [`hit_alloc`] /
//! [`hit_free`], the magazine hit alone with no calls and no cache pointer (umem-global's
//! `malloc`/`free` are built on them and tail-call their slow paths). The per-slot
//! alloc/free counters stay on the hit path: removing them measured no difference
//! (owner-only increments of a line already being written).
//!
//! ## Memory
//!
//! Nothing comes from the system allocator. `init()` creates, under `umem_vmem::heap()`,
//! the arenas `umem_internal` (page quantum: slabs of the internal caches, per-thread slot
//! chunks), `umem_cache` (the `Cache` structs, 64-byte aligned) and `umem_hash` (hash
//! tables), and the internal caches `umem_magazine_{1..143}`, `umem_slab_cache`,
//! `umem_bufctl_cache` (all in-slab layout, so they never need bufctls themselves). Thread
//! blocks (with the inline slots of cache ids 0..64) come straight from `umem_internal`
//! (no magazines, so making a block never needs a block).
//!
//! ## Locks and their order
//!
//! update flag (`UPDATING`: one `update()` at a time) → cache-list lock (`CACHE_LIST`: the
//! cache list and the id bitmap) → thread registry lock
//! (`REGISTRY`: the list of thread blocks) → a cache's depot lock → that cache's slab lock
//! → vmem locks. No code holds two caches' depot or slab locks at once; objects and
//! magazines are freed to other caches only after dropping the current cache's locks.
//! `lockup()` takes them all in this order (update flag, cache list, registry, then each
//! cache's depot and slab lock in list order, then `umem_vmem::lockup`); `release()` drops
//! them. Callbacks: constructors run with no allocator lock held. Destructors and reclaim
//! callbacks may run inside `update()`/`reap()` (cache-list lock held), thread-exit
//! flushes and `destroy` (registry lock held, the calling thread's magazines switched off):
//! they may allocate and free, but must not create, destroy or reap caches, call
//! `stats()` or `update()` (as in libumem, whose callbacks have similar limits).
//! All locks are spin locks (`sync.rs`) that yield after a short spin.
//!
//! ## Invariants (checked by [`Cache::verify`])
//!
//! * Every slab on the *partial* list has at least one free buffer and one allocated; every
//!   slab on the *full* list has none free; no empty slab is kept.
//! * free-list length + refcnt = chunks for each slab; free buffers are chunk starts.
//! * Σ chunks = buftotal, Σ refcnt = bufalloc; the hash holds exactly the allocated bufctls.
//! * Depot lists hold only magazines of the depot's current type, full ones with all
//!   rounds constructed; list lengths equal their totals; `min ≤ total`.
//! * A thread slot's `cap` is the capacity of its loaded magazine (0 if none), so the hit
//!   path needs no null check; a slot whose magazine size differs from the depot's drains
//!   its magazines on its next depot visit (that is how a resize reaches the threads).
//!
//! ## Destroy contract
//!
//! `Cache::destroy` is `unsafe`: no thread may use the cache during or after it. Other
//! threads may still *hold* magazines for it; destroy takes them from every registered
//! thread block under the registry lock (a thread touches its slot for a cache only inside
//! that cache's calls, and thread exit flushes under the same lock), destroys their rounds,
//! purges the depot, and frees the cache only if no object is still allocated (else it
//! returns `NotEmpty` and the cache stays usable).
//!
//! ## Debugging layout
//!
//! With [`CacheFlags::DEBUG`] each chunk is `[buffer][buftag: redzone u64, link word,
//! bxstat = addr ^ 0xa110c8ed (allocated) | addr ^ 0xf4eef4ee (free)]`; the link word is the
//! free-list link of in-slab caches and the bufctl pointer of hashed ones. Free buffers are
//! filled with `0xdeadbeef…` (verified when they leave the cache, replaced by
//! `0xbaddcafe…`); frees check the buftag (double free) and the redzone word; objects are
//! destructed on every free so the fill can be checked. [`CacheFlags::AUDIT`] (implies
//! DEBUG, forces the hashed layout) gives each buffer a `BufctlAudit` from
//! `umem_bufctl_audit_cache` recording the last transaction (alloc/free, thread,
//! timestamp, count), read with [`Cache::audit`]. Debug caches skip the inline hit path
//! (their fast index is 0), so non-debug caches pay nothing: the check is the same
//! `rounds != 0` test the hit path makes anyway.
//! Not yet written: stack traces in audit records (capturing one without allocating needs
//! frame pointers), the transaction/content logs, firewall arenas, `mtbf`, and the
//! per-byte redzone after the requested size (that is `umem_alloc`'s, in umem-global).
//!
//! ## Update
//!
//! [`update()`] runs `umem_cache_update` on every cache (hash rescale, working-set update and
//! reap, magazine resize) then `umem_vmem::update()`. Besides explicit calls, a thread on
//! an alloc slow path runs it inline when the interval (10 s by default,
//! [`set_update_interval_ms`]) has passed and nobody else is running it, as libumem does
//! when it has no update thread. A thread with a block reads the (coarse) clock only on
//! every 64th of its alloc slow-path calls; a thread without one on every call. No thread is created (creating one inside malloc is unsafe).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
// `is_multiple_of` is newer than the workspace MSRV (1.80).
#![allow(clippy::manual_is_multiple_of)]

// Files from the lowest concept to the highest; a file imports only files above it in
// this list (`ci/import-cycles` checks that the imports form no cycle).
mod cache;
mod clock;
mod create;
mod debug;
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
mod qcache;
mod registry;
mod slab;
mod slab_layer;
mod stats;
mod sync;
mod update;
mod verify;

pub use cache::Cache;
pub use debug::AuditRecord;
pub use error::{CacheName, SlabError};
pub use flags::CacheFlags;
pub use hit::{hit_alloc, hit_free, FastIndex, InlineIndex};
pub use magazine_block::{live_thread_blocks, thread_exit_flush};
pub use ops::{CacheOps, CtorFn, DtorFn, ObjectOps, ReclaimFn};
pub use registry::for_each_cache;
pub use stats::CacheStats;
/// The spin lock umem-slab uses (no allocation, no poisoning), for the
/// crates above it that need one for their own short critical sections.
pub use sync::{RawSpin, SpinGuard, SpinLock};
pub use umem_vmem::Vmem;

/// Build the metadata arenas and internal caches and install the quantum-cache factory in
/// umem-vmem. Idempotent; `Cache::create` calls it.
pub fn init() {
    create::init();
}

/// Disable the magazine layer for caches created from now on (`UMEM_OPTIONS=nomagazines`).
pub fn set_nomagazines(on: bool) {
    create::set_nomagazines(on);
}

/// Interval of the inline periodic update (`reap_interval`); 0 disables inline updates.
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

/// Reap every cache (`umem_reap`): reclaim callbacks, the calling thread's magazines, and
/// every depot magazine go back to the slab layer; empty slabs to their arenas. Other
/// threads are asked to flush their magazines to the depots on their next slow path, so a
/// later reap (or update) can free those too; a thread that never allocates again keeps
/// its (at most two per cache) magazines until it exits.
pub fn reap() {
    if !create::is_ready() {
        return;
    }
    update::reap();
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
