//! # umem-global — libumem's allocator as Rust's `#[global_allocator]`
//!
//! [`Umem`] is a general-purpose allocator built, as illumos libumem is, from Bonwick's
//! vmem arenas ([`umem_vmem`]) and slab caches with per-thread magazines
//! ([`umem_slab`]). Make it your program's allocator with two lines; [`stats`] tells
//! what it holds, [`reap`] gives cached memory back to the system, and the `UMEM_*`
//! environment variables (below) tune and debug it without a rebuild.
//!
//! ```
//! use umem_global::Umem;
//!
//! #[global_allocator]
//! static GLOBAL: Umem = Umem;
//!
//! fn main() {
//!     // Every Box, Vec and String of the program now comes from umem.
//!     let v: Vec<u64> = (0..10_000).collect();
//!     let s = umem_global::stats();
//!     assert!(s.bytes_in_use() >= 80_000); // v's 80 000 bytes, at least
//!     drop(v);
//!     umem_global::reap(); // give cached memory back now
//! }
//! ```
//!
//! ## What is in it
//!
//! This crate wires [`umem_vmem`] arenas and [`umem_slab`] object caches into
//! `malloc`, the way libumem's `umem_init` and `malloc.c` do, and offers it
//! as [`Umem`] (a `#[global_allocator]`) and, through the `umem-preload`
//! crate, as the C malloc family (`libumem.so`). Its public face is small:
//! [`Umem`], [`stats`] and [`print_stats`], [`reap`], and the debugging
//! aids ([`verify`], [`find_leaks`], [`print_buffer_history`],
//! [`umem_log`], [`debug_report`]). What the C ABI crate
//! needs besides is in `preload_abi`, which is not public API.
//!
//! **Options** are read from the environment once, by the first allocation:
//!
//! * `UMEM_OPTIONS`, a comma-separated list as in libumem: `nomagazines`
//!   (no magazine layer), `percpu` / `nopercpu` (per-CPU magazines over
//!   rseq, `magazines.rs`, the default / per-thread ones), `reap_interval=N` (the update
//!   interval in seconds: the periodic update steps run every `N/2`;
//!   default 10, 0 = never), `large_cache=N` (bytes of freed
//!   large blocks kept for reuse, default 64m; suffixes k, m, g),
//!   `noregion` (no class region: slower `free`), `backend=mmap`,
//!   `stats_all`, `verify_at_exit` and `findleaks` (below); the
//!   tuning options `concurrency`, `max_contention`, `perthread_cache` are
//!   accepted and have no effect;
//! * `UMEM_DEBUG` (libumem's words: `default`, `audit[=frames]`,
//!   `contents[=count]`, `guards`, `verbose` (or `allverbose`), `nosignal`,
//!   `firewall=size`, `lite`, `maxverify=size`, `noabort`, `mtbf=n`, `checknull`) and
//!   `UMEM_LOGGING` (`transaction`, `contents`, `fail` logs): finding heap
//!   bugs at run time — byte-precise redzones after every block, fill
//!   patterns, double, interior and invalid frees, firewall pages, fault
//!   injection — each reported with the buffer, its size and cache, then
//!   SIGABRT (`debug_options.rs` has each word's meaning; [`verify`] checks
//!   the whole heap on demand, and at exit with `UMEM_OPTIONS=verify_at_exit`;
//!   [`umem_log::read_log`] reads the logs,
//!   [`debug_report::set_stacks_printer`] adds stacks to reports);
//!   `audit[=frames]` (part of `default`) records each buffer's last
//!   allocation and free with thread, time and stack (`stack.rs`, printed
//!   by [`print_buffer_history`], and in every report), and then
//!   `UMEM_OPTIONS=findleaks` prints a leak report at exit ([`find_leaks`]
//!   runs the same scan on demand);
//! * `UMEM_STATS=1` (or `stderr`) prints the statistics table to stderr at
//!   exit, `UMEM_STATS=all` lists every cache and arena in it, not only the
//!   used ones (so does the `UMEM_OPTIONS` word `stats_all`), and any other
//!   value is a file to append the table to (`UMEM_STATS=stats.txt`: relative
//!   to the working directory at exit).
//!
//! An unknown or malformed option gets a one-line warning on stderr that
//! says what was expected, and is otherwise ignored.
//!
//! ## Theory statement
//!
//! ### 1. Concepts
//!
//! **Size classes over slab caches.** A request of up to 128 KiB is served
//! by one of libumem's 46 `umem_alloc_<n>` sizes (8 B … 128 KiB), each a
//! slab cache with per-thread magazines. A class is aligned to its *natural*
//! alignment (the largest power of two dividing its size, at most a page),
//! so aligned requests are served headerless by the smallest class that is
//! big and aligned enough. A class is made (arena, cache, hit-table entries)
//! on its first allocation: a process pays only for the sizes it uses.
//!
//! **The class region and its stripes.** Each class has its own vmem arena,
//! which imports its spans from one reservation of address space cut into
//! 256 KiB *stripes* dealt round-robin to 64 class slots: stripe `s` belongs
//! to class `s % 64`. So a small block's class is a function of its address
//! alone (subtract, compare, shift, mask). Without a region (it could not be
//! reserved, or `UMEM_OPTIONS=noregion`), or when a class has no stripe
//! left, the class imports from `umem_default` instead.
//!
//! **Large blocks.** Larger requests (and alignments above a page) get whole
//! pages from `umem_oversize` (`umem_memalign`), rounded up to a power of
//! two pages — address space, not memory — with a bounded cache of recently
//! freed blocks in front (`large.rs`).
//!
//! **Reserved realloc room.** A C `realloc` that grows a block gives it room
//! to grow again: twice its size while small, then a large block with room
//! for 64× (8× above 1 MiB) of address space, grown in place — unless
//! address space or commit is scarce (`RLIMIT_AS`, strict overcommit), and
//! never at the cost of failing: without room the block gets its size
//! (`realloc.rs`). A large block's usable length is its last requested size
//! (page-rounded), noted in the page map, not its reserved capacity.
//!
//! **How `free` finds the owner**, with no size and no header: a pointer in
//! the region names its class by its page's byte in the region's **slab
//! map** (`region.rs`); any other pointer is looked up in the **page map**,
//! a radix tree from page to `PageEntry` (`pagemap.rs`). A class arena's
//! spans are marked with the class but *dead* (`PageEntry::dead`) when the
//! arena imports them, and each slab's pages live (page map and slab map)
//! from the slab's making to its destruction, by the class cache's slab
//! watch (`caches.rs`); a large block's first page is marked with its page
//! count. A page marked 0 or dead, or a pointer that is not a block start
//! of its class (the exact test of the class's `FreeSlot`,
//! `hit_tables.rs`), is not a block umem handed out: the C `free` aborts
//! naming it (a dead page: a double free after the slab went back, its
//! memory perhaps discarded with the free key in it). Rust's `dealloc` is
//! told the size, so it takes the class from the layout.
//!
//! ### 2. Implementation
//!
//! The arena tree, built by the first allocation with no outside allocator
//! (`init.rs`; the arenas are published in `arenas.rs`):
//!
//! ```text
//! PageSource (mmap/munmap)                         source.rs
//!  ├─ heap (vmem, page quantum)                    umem-vmem's internal tree:
//!  │   ├─ vmem_internal → vmem_seg/vmem_hash/vmem_vmem
//!  │   ├─ umem_internal, umem_cache, umem_hash     umem-slab's metadata
//!  │   └─ umem_default (page quantum) ──────────┐ (when a class has no
//!  │                                            │  stripe left, or there
//!  ├─ class region (one reservation,            │  is no region)
//!  │   256 KiB stripes dealt to classes)        │         region.rs
//!  │   └─ StripeSource(c) ── ClassSource(c) ────┘         source.rs
//!  │        → umem_alloc_<n> arena → umem_alloc_<n> cache caches.rs
//!  │          (its slab watch marks where slabs live: page map and
//!  │          the region's slab map)
//!  ├─ umem_oversize (page quantum)  large blocks   large.rs
//!  └─ umem_memalign (page quantum)  large blocks aligned above a page
//! ```
//!
//! The files, lowest first (a file uses only files above it):
//!
//! | file | holds |
//! |---|---|
//! | `sys.rs` | system calls, errno, the page size, `fatal`, `flush_to`, `no_unwind` |
//! | `debug_options.rs` | the `UMEM_DEBUG` and `UMEM_LOGGING` words |
//! | `options.rs` | `UMEM_OPTIONS` and friends |
//! | `debug_report.rs` | the debug reports (kind, buffer, detail, stacks), abort or carry on |
//! | `umem_log.rs` | the `UMEM_LOGGING` rings: transaction, contents, fail |
//! | `fault.rs` | `mtbf`'s fault injection |
//! | `boot.rs` | the bootstrap arena for allocations made during init |
//! | `classes.rs` | the size classes and the size → class tables |
//! | `pagemap.rs` | the page map and its packed `PageEntry` |
//! | `region.rs` | the class region, its stripes and their bitmaps |
//! | `arenas.rs` | the tree's published arenas and the init state |
//! | `source.rs` | the page source, the class arenas' source, the one-block classes' slab source |
//! | `cfi.rs` | DWARF CFI: a cached frame-step rule per code address |
//! | `stack.rs` | audit stacks: the unwinder, loaded only with `audit`, and the capture guard |
//! | `large_audit.rs` | audit records of large blocks (`audit`): a side table |
//! | `large.rs` | large blocks and the cache of freed ones |
//! | `debug_large.rs` | large and firewall blocks under debugging: exact sizes, tail redzones |
//! | `hit_tables.rs` | the hit paths' tables (`ALLOC_TABLE`, `FREE_TABLE`: `FreeSlot`) |
//! | `caches.rs` | the class caches and the making of a class |
//! | `magazines.rs` | the magazine mode (per thread or per CPU) and per-CPU occupancy |
//! | `free_check.rs` | the default mode's checks of a free past the hit (interior, double, dead-slab) |
//! | `verify.rs` | [`verify`]: every arena, cache, buftag and debug large block |
//! | `symbolize.rs` | `module!symbol+0xoff` frames and a buffer's audit history |
//! | `roots.rs` | a leak scan's roots and its fault-proof reader |
//! | `leaks.rs` | the leak scan, [`find_leaks`] and the report at exit |
//! | `fork.rs` | the `pthread_atfork` handlers |
//! | `init.rs` | building the tree on the first allocation |
//! | `debug.rs` | the debug path: every allocation and free under `UMEM_DEBUG` |
//! | `alloc.rs` | the allocation path: hit, miss, slow |
//! | `free.rs` | the free path, owner lookup, `FreeError` |
//! | `realloc.rs` | the C `realloc` and its reserved room |
//! | `reclaim.rs` | reap and retry on exhaustion, `malloc_trim`, discarding free memory |
//! | `global_alloc.rs` | [`Umem`] |
//! | `stats.rs` | [`stats`], [`print_stats`], the table at exit |
//! | `preload_abi.rs` | the internal interface for `umem-preload` |
//!
//! **The hot path.** `malloc`, `free`, and `Umem`'s `alloc`/`dealloc` first
//! try the magazine hit alone, inlined, and it **makes no calls**: so a
//! caller that tail-calls the full function on a miss (as the C `malloc` and
//! `free` do) needs no stack frame on a hit. Everything else — empty or full
//! magazines, sizes above 1 KiB for `malloc`, init, errors — is in
//! out-of-line `*_miss` functions. Step by step:
//!
//! * `malloc(n)` (C: 16-byte alignment, 8 for `n <= 8`): `c_alloc_hit`
//!   (`alloc.rs`) checks `n <= 1024`, loads the class cache's `InlineIndex`
//!   from `ALLOC_TABLE` by `n`'s 8-byte granule (`hit_tables.rs`) and pops the thread's
//!   magazine through it (`umem_slab::hit_alloc`). On a miss: `c_alloc` →
//!   `c_alloc_miss` → the class's cache (`caches.rs`, `ClassCache::alloc`)
//!   → `alloc_slow` (init, the class's first allocation, large blocks).
//! * `free(p)`: `free_hit` (`free.rs`) takes the class cache's inline
//!   index from the slab map (`region::inline_word`) and its block-start
//!   test from `hit_tables::row_is_start`, or, outside the region,
//!   the `FreeSlot` indexed by the page map entry's top byte
//!   (`pagemap::slot`, `hit_tables::free_entry_at`); a pointer that is not
//!   a block start of its class misses, and so does a block whose first
//!   word already holds the free key (`umem_slab::FREE_KEY_WORD`); else it
//!   writes the key and pushes onto the thread's magazine
//!   (`umem_slab::hit_free`); with both magazines full it answers
//!   `FreeHit::Marked` and the caller frees past the checks
//!   (`free_marked`). On a miss: `free_miss` (the page map's class,
//!   the class's cache) → `free_slow` (large blocks, bootstrap blocks,
//!   foreign pointers).
//! * `Umem::alloc`/`dealloc`: the class from the layout
//!   (`classes::layout_class`), its `FreeSlot`'s inline index, the same
//!   magazine pop or push; the misses as above.
//! * The magazine pop or push is umem-slab's `hit_alloc`/`hit_free`: per
//!   CPU (the default) a restartable sequence on the current CPU's loaded
//!   magazine, per thread (`nopercpu`, or no rseq) the thread's own; one
//!   load chooses. The miss paths try the CPU's previous magazine first
//!   (`c_alloc_cpu_hit`, `umem_slab::cpu_hit_alloc`/`cpu_hit_free`, also
//!   from `free_marked`): two words cannot be swapped by one commit.
//!
//! **Why a page map as well as the region:** blocks outside the region
//! (large blocks; small blocks without a region or past a class's stripes)
//! are found by it, and the out-of-line paths (`malloc_usable_size`,
//! `realloc`, bad-pointer checks) read it for every block. A lookup is two
//! dependent loads (the root entry is hot, the leaf entry shared by 16 pages
//! per cache line); memory is 4 bytes per 4 KiB page of address space in use
//! plus a 2 MiB zero bss root touched only where used. A 16-byte header
//! would cost 25% of a 64-byte object and break the classes' natural
//! alignment; a vmem segment lookup would take an arena lock on every free.
//!
//! **Large blocks** are discarded (`MADV_DONTNEED`) before they go back to
//! their arena, so free memory in those arenas is zero and `calloc` of a
//! fresh block skips the memset.
//!
//! **Periodic work** (libumem's `umem_update`): every half `reap_interval`
//! (default 10 s) umem-slab runs [`umem_slab::update`] inline on an alloc
//! slow path (every 64th per thread reads the clock) or a large-block
//! allocation or free (every one reads it): working-set reaping of the
//! depots, magazine resize, hash rescale of caches and arenas, retained
//! spans back to their sources, and then its hook, `reclaim::after_update`,
//! which ages the large-block cache (blocks cached at the previous update
//! and not reused since go back: `large.rs`) and discards (`MADV_DONTNEED`)
//! free segments of 64 KiB and more in umem's own arenas (`reclaim.rs`).
//! The update runs every half interval and a depot magazine goes back once
//! it was unused for a whole half interval, so memory a program frees is
//! given back by the second update after the free: within one interval of
//! further allocator activity that leaves the magazine hit; an update that
//! finds two half intervals or more passed without one (an idle process)
//! catches up and gives everything unused back at once.
//!
//! **An idle process gives nothing back** until its next allocation slow
//! path or large-block call (or `malloc_trim`, or [`reap`]): there is no
//! update thread (libumem has one; jemalloc's background thread is
//! optional and off by default). Creating a thread from inside `malloc` is
//! unsafe — a process may be single-threaded by contract, sandboxed
//! (seccomp), about to `fork`, or inside a signal handler or a TLS
//! destructor — and a thread umem starts would outlive `fork` only in the
//! parent. What an idle process keeps is bounded by what it freed since its
//! last activity.
//!
//! **Exhaustion** (libumem reaps and retries when its backend fails): when
//! an allocation fails — a slab, a class's making, a large block, a
//! `realloc` move — the out-of-line path calls `reclaim::reap_for_retry`
//! and tries once more. That drains the large-block cache and runs
//! [`umem_slab::try_reap_all`]: the calling thread's magazines and every
//! depot go back to the slab layer, empty slabs to their arenas, retained
//! vmem spans (the heap's 4 MiB, the class arenas' 1 MiB each) back to the
//! page source or their stripes, and every free page is discarded. It never
//! waits for another reaper: when an update or reap is running (maybe in
//! this very thread, from a cache callback) or the thread is exiting, it
//! just retries. One reap, one retry, no lock held (section 3). Other
//! threads' magazines are flushed on their next slow path; exited threads'
//! went to the depots at their exit. Freed stripes go back to their class's
//! bitmap (each stripe belongs to one class by construction; other classes
//! and large blocks get memory elsewhere: the region is address space, so
//! what they need is memory, which the discards give back).
//!
//! **`malloc_trim(0)`** and [`reap`] do the same reap, waiting for a running
//! update, and discard every free page of umem's arenas; `malloc_trim`
//! returns 1 when memory went back (unmapped or discarded).
//!
//! ### 3. Locks and their order
//!
//! Taken in this order, never the reverse (`fork.rs`'s `prefork` takes them
//! all in it):
//!
//! 1. the large-block cache lock (`large::BLOCK_CACHE`): nothing else is
//!    taken while it is held today; its place first is for `prefork`. The
//!    periodic update's hook, which runs with umem-slab's update flag held,
//!    only try-locks it (`large::age`) and leaves the pass pending when it
//!    is taken;
//! 2. the class-creation lock (`caches::CLASS_LOCK`), held while a class's
//!    arena and cache are made, which takes the locks below; then, under
//!    `UMEM_DEBUG`, the debug large-block table's lock (`debug_large::TABLE`),
//!    held while the table grows into pages of the heap (umem-vmem's locks);
//! 3. umem-slab's locks, then umem-vmem's, in their own documented order
//!    (`umem_slab::lockup` takes both groups in order);
//! 4. leaf locks, under which nothing is taken: the page map's leaf pool
//!    (`pagemap::POOL`), the region's stripe bitmaps (`region::STRIPES`)
//!    and, with `audit`, the large blocks' audit table
//!    (`large_audit::TABLE`; the leak scan reads it under an arena lock).
//!
//! The init state (`arenas.rs`) is not a lock held across calls: threads
//! that find it `BUSY` yield until it is `READY` or `FAILED`.
//!
//! ### 4. Invariants
//!
//! * Every page of a span held by a class arena is marked with that class in
//!   the page map, from before the span is used until after it is given
//!   back (for the classes whose slabs hold one block each: while a slab
//!   lives there, and dead between slabs); the page map never describes
//!   memory umem does not own.
//! * Every stripe of class `c` is imported only by class `c`'s arena, so an
//!   address in it that passes the class's block-start test is a block of `c`
//!   (or a wild pointer made up from umem's memory; `region.rs` says what
//!   the hit path trusts).
//! * A live large block's first page holds its exact page count, its second
//!   page its noted length (tag 0: not a block start), and no other page of
//!   it carries an entry.
//! * A class's hit-table entries are zero (every hit misses) until its cache
//!   exists; its fast index is stored before its cache pointer is published
//!   (Release), and then never change. Debug builds check the fast index on
//!   every use and, in `dealloc`, the layout against the page map.
//! * Free memory in the large-block arenas is zero.
//! * Nothing here allocates from anything but the tree, unwinds (out-of-line
//!   paths run under `no_unwind`), or holds one of its own locks while
//!   calling into another layer, except `CLASS_LOCK` (order above).
//! * A reap (reap-and-retry, [`reap`], `malloc_trim`) starts only with no
//!   umem lock held: from the top of an out-of-line allocation path or from
//!   the caller of [`reap`]. Free segments are discarded under their arena's
//!   lock, and only in umem's own arenas (`reclaim.rs`).
//!
//! ### 5. Deviations from illumos libumem
//!
//! * **No malloc header.** libumem's `malloc` puts the size in front of each
//!   block; here `free` finds it from the address (region, page map), so
//!   small blocks are headerless and naturally aligned, and `memalign` needs
//!   no over-allocation for alignments a class has.
//! * **One arena per class** (libumem's caches share `umem_default`), so
//!   that a class's spans can be marked and placed in its stripes.
//! * **Classes made on first use**, not all at `umem_init`: the first
//!   `malloc` of a small process was twice as slow.
//! * **Large blocks** are rounded to a power of two pages, cached when
//!   freed, and given realloc room: address space is cheap on 64-bit and
//!   page faults and `mmap` calls are not.
//! * **No update thread**: the periodic update runs inline on slow paths,
//!   so the library creates no thread (safe in any process, and at fork);
//!   an idle process gives nothing back until its next slow path (section 2).
//! * **Free memory is discarded**: `malloc_trim`, reaps and the periodic
//!   update `MADV_DONTNEED` free segments of umem's arenas, so memory pinned
//!   only by fragmentation of the heap's spans is not resident.
//! * **Re-entrant init** is served by a static bootstrap arena instead of
//!   waiting (a libc routine called during init may allocate).
//! * **mmap only** (no `sbrk` backend). `UMEM_DEBUG=nosignal` cannot apply
//!   on Linux (a library cannot tell that it runs in a signal handler: it
//!   turns `audit` on and warns), `random` and `UMEM_LOGGING=slab` are not
//!   supported, `mtbf` is deterministic (every n-th allocation), and every
//!   report is written to stderr (there is no `::umem_status` buffer for mdb
//!   to read; `verbose` adds a dump of the damaged bytes).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod alloc;
mod arenas;
mod boot;
mod caches;
mod cfi;
mod classes;
mod debug;
mod debug_large;
mod debug_options;
pub mod debug_report;
mod fault;
mod fork;
mod free;
mod free_check;
mod global_alloc;
mod hit_tables;
mod init;
mod large;
mod large_audit;
mod leaks;
mod magazines;
mod options;
mod pagemap;
#[doc(hidden)]
pub mod preload_abi;
mod realloc;
mod reclaim;
mod region;
mod roots;
mod source;
mod stack;
mod stats;
mod symbolize;
mod sys;
pub mod umem_log;
mod verify;

pub use global_alloc::Umem;
pub use leaks::{find_leaks, LeakGroup, LeakReport};
pub use magazines::{MagazineMode, MAX_CPU_ROWS};
pub use stats::{print_stats, stats, ArenaStats, ClassStats, LargeStats, Stats, MAX_ARENAS};
pub use symbolize::{has_buffer_history, print_buffer_history, print_stack, write_frame};
pub use verify::{verify, VerifyReport};

/// Gives back to the system every cached object, magazine and freed large
/// block that can go (libumem's `umem_reap`), runs the periodic update step,
/// and discards every free page of umem's own arenas (what `malloc_trim(0)`
/// does). Other threads' magazines follow on their next allocation slow
/// path; exited threads' magazines are in the depots already. Does nothing
/// before the first allocation.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: umem_global::Umem = umem_global::Umem;
///
/// fn main() {
///     let blocks: Vec<Vec<u8>> = (0..1000).map(|_| vec![1u8; 4000]).collect();
///     drop(blocks); // freed, but kept in umem's caches for reuse
///     let before = umem_global::stats().mapped;
///     umem_global::reap();
///     assert!(umem_global::stats().mapped <= before);
/// }
/// ```
pub fn reap() {
    reclaim::trim();
}
