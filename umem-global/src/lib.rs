//! # umem-global — libumem's arena tree as a general-purpose allocator
//!
//! ## Theory statement
//!
//! This crate wires [`umem_vmem`] arenas and [`umem_slab`] object caches into
//! `malloc`, the way libumem's `umem_init` and `malloc.c` do, and exposes it
//! as [`Umem`] (a `#[global_allocator]`) and, through the `umem-preload`
//! crate, as the C malloc family (`libumem.so`).
//!
//! **The arena tree** (built lazily by the first allocation, with no outside
//! allocator):
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
//!  │   └─ StripeSource(c) ── ClassSource(c) ────┘
//!  │        → umem_alloc_<n> arena → umem_alloc_<n> cache
//!  ├─ umem_oversize (page quantum)  large blocks   large.rs
//!  └─ umem_memalign (page quantum)  large blocks aligned above a page
//! ```
//!
//! **Size classes** are libumem's `umem_alloc_sizes` (8 B … 128 KiB), each a
//! slab cache created with the class's natural alignment (see
//! [`classes`]), on the class's first allocation (its arena, cache and
//! hit-table entries, under `CLASS_LOCK`; a process pays only for the sizes
//! it uses). Larger requests are **large blocks** of whole pages.
//!
//! **Locks** (umem-global's own, then the crates below): the large-block
//! cache lock, then `CLASS_LOCK`, then umem-slab's and umem-vmem's locks in
//! their documented order, then two leaf locks (nothing is taken under
//! them): the page map's leaf pool and the region's stripe bitmaps;
//! `prefork` takes them all in that order.
//!
//! **Free without a size** uses the **page map** ([`pagemap`]), a radix tree
//! from page to owner: each size class has its own vmem arena whose source
//! ([`source::ClassSource`]) marks every page of every span it imports with
//! the class (and clears them before releasing), so the slab caches' pages
//! are always described; a large block's first page holds its page count.
//! Small objects are headerless. `free(p)` = two loads + the cache's free;
//! a page marked 0 (or an interior page of a large block) is not umem's and
//! `free` aborts naming the pointer. Rust's `dealloc` gets the size, so it
//! computes the class from the layout and touches the page map only for
//! large blocks (and, with debug assertions, to check the layout).
//!
//! **Hit paths.** `malloc`, `free`, and `Umem`'s `alloc`/`dealloc` first try
//! the magazine hit alone, inlined and with no calls (so no stack frame):
//! `HIT16` maps a `malloc` size's 16-byte granule, and `HIT` a class, to
//! its cache's [`umem_slab::InlineIndex`] (and, for `free`, the class's
//! alignment mask); [`umem_slab::hit_alloc`]/[`umem_slab::hit_free`] pop or
//! push the thread's magazines through it. Both tables are zero (every hit
//! misses) until the class's cache is made. Everything else — empty/full magazines,
//! sizes above 1 KiB for `malloc`, init, errors — is in out-of-line `*_miss`
//! functions.
//!
//! **The class region** ([`region`]): each class's arena imports its spans
//! from its own stripes of one reservation of address space (256 KiB stripes
//! dealt round-robin to 64 class slots), so `free`'s hit finds the class
//! from the address alone (subtract, compare, shift, mask) and reads no
//! page map: about 25 instructions and one table load before the magazine
//! push (it was 31 with the page-map lookup's two dependent loads). With
//! the magazine changes of the same pass, `mbench churn` went from 1.19× to
//! 1.00× mimalloc's time (medians of paired runs) and from 1812M to 1632M
//! instructions under cachegrind (mimalloc 1685M); see `NEEDS.md`.
//!
//! **Why a page map as well** (measured, see the crate report): blocks
//! outside the region (large blocks; small blocks when there is no region
//! or their class has no stripe left) are found by it, and the out-of-line paths
//! (`malloc_usable_size`, `realloc`, bad-pointer checks) read it for every
//! block. A lookup is two dependent loads (the root entry is hot, the leaf
//! entry is shared by 16 pages per cache line); memory is 4 bytes per
//! 4 KiB page of address space actually used (0.1%) plus a 2 MiB zero
//! bss root that is only touched where used. A 16-byte header would cost
//! 25% on a 64-byte object and break the natural alignment of the classes;
//! a vmem segment lookup would take an arena lock on every free.
//!
//! **Large blocks** come from `umem_oversize`/`umem_memalign`, which import
//! from the page source directly. A block's page count is rounded up to a
//! power of two — address space, not memory: the pages are `MAP_NORESERVE`
//! and untouched until used — so `realloc` grows it in place up to that,
//! and a freed block fits later requests of similar size. Freed ranges are
//! discarded (`MADV_DONTNEED`) before they go back, so free memory in those
//! arenas is zero and `calloc` skips the memset; a bounded cache of
//! recently freed blocks (64 blocks, 64 MiB of requested bytes by default)
//! sits in front and avoids mmap/munmap and page-fault churn; a cached
//! block also serves requests up to 4× smaller than its capacity (`large.rs`).
//! A C `realloc` that grows a small block gives it twice its old size (up
//! to [`REALLOC_GROW_LARGE`], 4 KiB), so small-step growth copies once per
//! doubling rather than at every size class; growing to 4 KiB or more makes
//! it a large block with room to grow in place ([`realloc_room`]: 64× its
//! size and at least 1 MiB, up to 1 MiB; 8× above — address space only), so
//! a buffer grown by small steps from 4 KiB to 1 MiB is copied once. The
//! in-place step is inlined into `realloc` and reads one page-map slot
//! (measured, `mbench grow`: 64 B → 1 MiB by 1/16 steps, 271 → 41 → 9 ns
//! per realloc; glibc 8–10 ns on the same run). A
//! large block's usable length (`malloc_usable_size`, and what a moving
//! `realloc` copies) is its last requested size rounded up to pages, not its
//! reserved capacity.
//!
//! **Initialisation** is a three-state machine (`UNINIT → BUSY → READY`). The
//! thread that wins the race builds the tree; other threads wait. A call
//! that re-enters `malloc` from the initialising thread (a libc routine that
//! allocates) is served by the static bootstrap arena ([`boot`]), whose
//! blocks are recognised and ignored by `free`.
//!
//! **Locks and their order.** umem-global's own locks: the init state (not a
//! lock held across calls) and the large-block cache lock (a leaf: no other
//! lock is taken while it is held). The process-wide order (DESIGN.md) is:
//! umem-global's large-cache lock → umem-slab's locks → umem-vmem's locks
//! (`umem_slab::lockup` takes the last two groups in order). The fork
//! handlers ([`prefork`], [`postfork_parent`], [`postfork_child`]) take
//! them all in that order and release them after.
//!
//! **Periodic work** (`umem_update`): every `reap_interval` (default 10 s)
//! umem-slab runs [`umem_slab::update`] inline on an alloc slow path
//! (working-set reaping, magazine resize, hash rescale of caches and arenas);
//! no thread is created.
//!
//! **Invariants.** Every page of a span held by a class arena is marked with
//! that class; every live large block's first page holds its exact page
//! count, and no other page of it carries a tag (its second page holds the
//! last requested length with tag 0, read as "not a block start"); the page map never describes
//! memory umem does not own; free memory in the large-block arenas is zero;
//! nothing here allocates from anything but the tree, unwinds, or holds a
//! lock while calling into another layer.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod boot;
pub mod classes;
mod large;
pub mod options;
pub mod pagemap;
pub mod region;
pub mod source;
mod stats;
pub mod sys;

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU16, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use pagemap::Entry;
use sys::PAGE;
use umem_slab::Cache;
use umem_vmem::{CreateFlags, Source, Vmem};

pub use stats::{print_stats, stats, ArenaStats, ClassStats, LargeStats, Stats};

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static INIT_OWNER: AtomicUsize = AtomicUsize::new(0);

/// A size class's cache and its fast-path index side by side (one cache line holds four
/// classes), so the hit path does not first load the cache to find its slot.
#[repr(C, align(16))]
struct ClassCache {
    cache: AtomicPtr<Cache>,
    fast: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_CACHE: ClassCache = ClassCache {
    cache: AtomicPtr::new(null_mut()),
    fast: AtomicUsize::new(0),
};
static CACHES: [ClassCache; classes::COUNT] = [NO_CACHE; classes::COUNT];

// The hit paths' own tables, filled once the classes' caches exist (zero before: every
// hit misses into the slow path, which initialises). They hold only what a magazine hit
// needs, so `malloc` and `free` never load the cache pointer on a hit.

/// Per 16-byte granule of a `malloc` size up to `C_TABLE_MAX`: the inline index of its
/// class's cache (`umem_slab::InlineIndex`).
#[allow(clippy::declare_interior_mutable_const)]
const NO_HIT16: AtomicU16 = AtomicU16::new(0);
static HIT16: [AtomicU16; classes::C_TABLE_MAX / 16 + 1] =
    [NO_HIT16; classes::C_TABLE_MAX / 16 + 1];

/// Indexed by the top byte of a page-map entry: for a small-class entry (see
/// `pagemap::CLASS_SHIFT`), the class's alignment mask shifted left by 16, or'ed with its
/// cache's inline index; zero for every other top byte. So `free`'s hit needs no tag test
/// for a block outside the class region, and a block in the region indexes it by
/// `0x40 | class` (a constant displacement).
#[allow(clippy::declare_interior_mutable_const)]
const NO_HIT64: AtomicU64 = AtomicU64::new(0);
static HIT: [AtomicU64; 256] = [NO_HIT64; 256];
const _: () = assert!(classes::COUNT <= 64);

/// Class `c`'s `HIT` entry.
#[inline(always)]
fn hit_of(c: usize) -> &'static AtomicU64 {
    &HIT[(pagemap::small(c & 63) >> 24) as usize]
}

static CLASS_SOURCES: [source::ClassSource; classes::COUNT] = {
    const S: source::ClassSource = source::ClassSource { class: 0 };
    let mut t = [S; classes::COUNT];
    let mut c = 0;
    while c < classes::COUNT {
        t[c] = source::ClassSource { class: c };
        c += 1;
    }
    t
};

/// The arenas umem-global creates (published once at init).
pub(crate) struct Arenas {
    default: AtomicPtr<Vmem>,
    oversize: AtomicPtr<Vmem>,
    memalign: AtomicPtr<Vmem>,
    class: [AtomicPtr<Vmem>; classes::COUNT],
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_ARENA: AtomicPtr<Vmem> = AtomicPtr::new(null_mut());
pub(crate) static ARENAS: Arenas = Arenas {
    default: NO_ARENA,
    oversize: NO_ARENA,
    memalign: NO_ARENA,
    class: [NO_ARENA; classes::COUNT],
};

fn deref_arena(p: &AtomicPtr<Vmem>) -> &'static Vmem {
    let v = p.load(Ordering::Acquire);
    debug_assert!(!v.is_null());
    // SAFETY: published once from a `&'static Vmem` before READY.
    unsafe { &*v }
}

impl Arenas {
    pub(crate) fn oversize(&self) -> &'static Vmem {
        deref_arena(&self.oversize)
    }
    pub(crate) fn memalign(&self) -> &'static Vmem {
        deref_arena(&self.memalign)
    }
    pub(crate) fn default_arena(&self) -> Option<&'static Vmem> {
        let v = self.default.load(Ordering::Acquire);
        // SAFETY: as in deref_arena.
        (!v.is_null()).then(|| unsafe { &*v })
    }
}

#[inline]
fn cache(c: usize) -> Option<&'static Cache> {
    let p = CACHES[c].cache.load(Ordering::Acquire);
    // SAFETY: published once from a `&'static Cache` and never destroyed.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// The class's cache with its fast index (the pair [`slabx::alloc`] and [`slabx::free`]
/// take).
#[inline(always)]
fn class_cache(c: usize) -> Option<slabx::ClassRef> {
    let e = &CACHES[c];
    let p = e.cache.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: published once from a `&'static Cache` (after its fast index, with Release)
    // and never destroyed.
    let k = unsafe { &*p };
    Some(slabx::ClassRef {
        k,
        fast: e.fast.load(Ordering::Relaxed),
    })
}

#[inline]
fn self_id() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// Runs `f`, aborting with a message if a panic unwinds out of it. The
/// allocator must never unwind into its caller (unwinding out of a
/// `GlobalAlloc` method is undefined behaviour, and out of a C function
/// worse); `libumem.so` is built with `panic = "abort"`, but a Rust program
/// using [`Umem`] may use `panic = "unwind"`. Every out-of-line entry (the
/// `*_miss` functions, `realloc`'s move) runs its body in here; the inline
/// hit paths contain nothing that can panic. With `panic = "abort"` this
/// costs nothing: there is no unwinding, so no landing pad.
#[inline(always)]
pub fn no_unwind<R>(f: impl FnOnce() -> R) -> R {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            sys::fatal(format_args!(
                "umem: a panic unwound into the allocator; aborting"
            ));
        }
    }
    let bomb = Bomb;
    let r = f();
    core::mem::forget(bomb);
    r
}

/// Makes sure the tree is built. `false` when the caller is the thread that
/// is building it (a re-entrant call: use the bootstrap arena) or when
/// initialisation failed.
#[cold]
#[inline(never)]
fn ensure_init() -> bool {
    loop {
        match STATE.load(Ordering::Acquire) {
            READY => return true,
            FAILED => return false,
            BUSY => {
                if INIT_OWNER.load(Ordering::Relaxed) == self_id() {
                    return false;
                }
                // SAFETY: no preconditions.
                unsafe { libc::sched_yield() };
            }
            _ => {
                if STATE
                    .compare_exchange(UNINIT, BUSY, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    INIT_OWNER.store(self_id(), Ordering::Relaxed);
                    let ok = build_tree();
                    STATE.store(if ok { READY } else { FAILED }, Ordering::Release);
                    if ok {
                        after_init();
                    }
                    return ok;
                }
            }
        }
    }
}

fn build_tree() -> bool {
    options::read_env();
    // The heap's source: ours, unless someone built vmem's tree first.
    let _ = umem_vmem::init(&source::PAGES, PAGE);
    umem_slab::init();
    let heap: &'static dyn Source = umem_vmem::heap();
    let Ok(default) = Vmem::create(
        "umem_default",
        None,
        PAGE,
        Some(heap),
        0,
        CreateFlags::NO_QCACHE,
    ) else {
        return false;
    };
    ARENAS
        .default
        .store(default as *const Vmem as *mut Vmem, Ordering::Release);
    source::DEFAULT_ARENA.store(default as *const Vmem as *mut Vmem, Ordering::Release);
    if !options::NOREGION.load(Ordering::Relaxed) {
        region::reserve();
    }
    let pages: &'static dyn Source = &source::PAGES;
    for (name, slot) in [
        ("umem_oversize", &ARENAS.oversize),
        ("umem_memalign", &ARENAS.memalign),
    ] {
        let Ok(a) = Vmem::create(name, None, PAGE, Some(pages), 0, CreateFlags::NO_QCACHE) else {
            return false;
        };
        slot.store(a as *const Vmem as *mut Vmem, Ordering::Release);
    }
    umem_slab::set_update_interval_ms(
        options::REAP_INTERVAL_NS.load(Ordering::Relaxed) / 1_000_000,
    );
    true
}

/// Serialises the creation of class arenas and caches ([`class_or_create`]).
/// Lock order: after the large-block cache lock, before every umem-slab and
/// umem-vmem lock (creating takes those); `prefork` takes it in that place.
static CLASS_LOCK: umem_slab::SpinLock<()> = umem_slab::SpinLock::new(());

/// Class `c`'s cache, made now (arena, cache, hit-table entries) if this is
/// the class's first allocation; `None` if that fails (no memory). Classes
/// are made on first use rather than all 46 at init: that was 110 µs of the
/// first `malloc` (about half), paid by every process however few sizes it
/// uses.
#[cold]
#[inline(never)]
fn class_or_create(c: usize) -> Option<slabx::ClassRef> {
    if let Some(k) = class_cache(c) {
        return Some(k);
    }
    let _g = CLASS_LOCK.lock();
    if let Some(k) = class_cache(c) {
        return Some(k);
    }
    let src: &'static dyn Source = &CLASS_SOURCES[c];
    let arena = Vmem::create(
        classes::NAMES[c],
        None,
        PAGE,
        Some(src),
        0,
        CreateFlags::NO_QCACHE,
    )
    .ok()?;
    if region::base().is_some() {
        // Spans going back to the region are discarded: keep some (the
        // heap's retention does this for spans going to umem_default).
        arena.set_retain(region::CLASS_RETAIN);
    }
    ARENAS.class[c].store(arena as *const Vmem as *mut Vmem, Ordering::Release);
    let cache = slabx::create(
        classes::NAMES[c],
        classes::size(c),
        classes::align(c),
        arena,
        options::NOMAGAZINES.load(Ordering::Relaxed),
    )?;
    CACHES[c]
        .fast
        .store(slabx::fast_raw(cache), Ordering::Relaxed);
    CACHES[c]
        .cache
        .store(cache as *const Cache as *mut Cache, Ordering::Release);
    let ii = cache.fast_index().inline().raw();
    hit_of(c).store(
        ((classes::align(c) as u64 - 1) << 16) | u64::from(ii),
        Ordering::Relaxed,
    );
    for (g, h) in HIT16.iter().enumerate() {
        if classes::class16_small(g * 16) == c {
            h.store(ii, Ordering::Relaxed);
        }
    }
    class_cache(c)
}

/// Runs once, right after READY, on the initialising thread: things that may
/// call back into malloc.
fn after_init() {
    extern "C" fn prepare() {
        prefork();
    }
    extern "C" fn parent() {
        // SAFETY: follows `prefork` in the same thread.
        unsafe { postfork_parent() };
    }
    extern "C" fn child() {
        // SAFETY: the child of a fork whose prepare handler ran `prefork`.
        unsafe { postfork_child() };
    }
    // SAFETY: registering plain extern "C" functions.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// Whether the tree is built.
pub fn is_initialized() -> bool {
    STATE.load(Ordering::Acquire) == READY
}

// ---------------------------------------------------------------- fork --

/// `pthread_atfork` prepare handler: takes every allocator lock in the
/// process-wide order (umem-global, then umem-slab, then umem-vmem).
pub fn prefork() {
    if !is_initialized() {
        return;
    }
    large::CACHE.raw().lock();
    CLASS_LOCK.raw().lock();
    // umem-slab's lockup takes its own locks and then every vmem lock.
    umem_slab::lockup();
    // Leaf locks, last.
    pagemap::POOL.raw().lock();
    region::STRIPES.raw().lock();
}

/// Parent side after fork: drops every lock [`prefork`] took.
///
/// # Safety
/// Must follow [`prefork`] on the same thread.
pub unsafe fn postfork_parent() {
    if !is_initialized() {
        return;
    }
    // SAFETY: prefork took these on this thread.
    unsafe {
        region::STRIPES.raw().unlock();
        pagemap::POOL.raw().unlock();
        slabx::release();
        CLASS_LOCK.raw().unlock();
        large::CACHE.raw().unlock();
    }
}

/// Child side after fork: drops every lock [`prefork`] took (the child is
/// single-threaded; other threads' caches are simply lost).
///
/// # Safety
/// Must run in the child of a fork whose prepare handler ran [`prefork`].
pub unsafe fn postfork_child() {
    if !is_initialized() {
        return;
    }
    // SAFETY: the parent's prepare handler took them before fork.
    unsafe {
        region::STRIPES.raw().unlock();
        pagemap::POOL.raw().unlock();
        slabx::release_child();
        CLASS_LOCK.raw().unlock();
        large::CACHE.raw().unlock();
    }
}

// ------------------------------------------------------ periodic work --

// The periodic update (working-set reaping, magazine resize, hash rescale of
// caches and arenas) runs inline on umem-slab's alloc slow paths every
// `reap_interval`; `build_tree` hands the interval to umem-slab.

/// Returns every cached object, magazine and freed large block that can go
/// back to the system (`umem_reap`), then runs the update step.
pub fn reap() {
    if !is_initialized() {
        return;
    }
    umem_slab::reap();
    large::drain_cache();
    umem_slab::update();
}

// ------------------------------------------------------- the allocator --

/// Allocates `size` bytes aligned to `align` (a power of two). Null on
/// failure. The block is zeroed when `zero`.
///
/// As in [`alloc16`], only the magazine hit is inline.
#[inline(always)]
pub fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    if let Some(c) = classes::class_for(size, align) {
        if let Some(p) = hit_alloc_at(hit_of(c).load(Ordering::Relaxed) as u16) {
            return zeroed_if(p, size, zero);
        }
    }
    alloc_miss(size, align, zero)
}

/// The magazine hit at the inline index `raw` (from `HIT` or `HIT16`).
#[inline(always)]
fn hit_alloc_at(raw: u16) -> Option<*mut u8> {
    // SAFETY: HIT and HIT16 hold inline indices of the class caches (or 0),
    // stored when each class's cache is made.
    unsafe { umem_slab::hit_alloc(umem_slab::InlineIndex::from_raw(raw)) }.map(|a| a as *mut u8)
}

/// `p`, a fresh block of at least `size` bytes (or null), zeroed when
/// `zero`.
#[inline(always)]
fn zeroed_if(p: *mut u8, size: usize, zero: bool) -> *mut u8 {
    if zero && !p.is_null() {
        // SAFETY: a fresh block of at least `size` bytes.
        unsafe { core::ptr::write_bytes(p, 0, size) };
    }
    p
}

/// A block of `size` bytes from cache `k` past the magazine hit (or null),
/// zeroed when `zero`.
#[inline(always)]
fn cache_alloc(k: slabx::ClassRef, size: usize, zero: bool) -> *mut u8 {
    zeroed_if(slabx::alloc(k).unwrap_or(null_mut()), size, zero)
}

/// Class `c`'s block from its cache, past the magazine hit; `None` when the
/// cache does not exist (yet).
#[inline(always)]
fn class_alloc(c: usize, size: usize, zero: bool) -> Option<*mut u8> {
    class_cache(c).map(|k| cache_alloc(k, size, zero))
}

/// [`alloc`] past the magazine hit.
#[inline(never)]
fn alloc_miss(size: usize, align: usize, zero: bool) -> *mut u8 {
    no_unwind(|| {
        classes::class_for(size, align)
            .and_then(|c| class_alloc(c, size, zero))
            .unwrap_or_else(|| alloc_slow(size, align, zero))
    })
}

/// [`alloc`] for the C ABI's default 16-byte alignment (`malloc`,
/// `calloc`): every class from 16 bytes up is 16-aligned, so the class
/// comes straight from the size table.
///
/// Only the magazine hit is inline, and it makes no calls, so `malloc`
/// needs no stack frame on it; everything else is `alloc16_miss`.
#[inline(always)]
pub fn alloc16(size: usize, zero: bool) -> *mut u8 {
    match alloc16_hit(size) {
        Some(p) => zeroed_if(p, size, zero),
        None => alloc16_miss(size, zero),
    }
}

/// The magazine hit of [`alloc16`] alone (sizes up to 1 KiB): no calls,
/// so a caller that tail-calls [`alloc16`] on `None` (as `malloc` does)
/// needs no stack frame on the hit.
#[inline(always)]
pub fn alloc16_hit(size: usize) -> Option<*mut u8> {
    if size > classes::C_TABLE_MAX {
        return None;
    }
    hit_alloc_at(HIT16[(size + 15) >> 4].load(Ordering::Relaxed))
}

/// [`alloc16`] past the magazine hit: the slow paths, sizes above 1 KiB,
/// and calls before init.
#[inline(never)]
fn alloc16_miss(size: usize, zero: bool) -> *mut u8 {
    no_unwind(|| {
        if size <= classes::MAX_SMALL {
            if let Some(p) = class_alloc(classes::class16_of(size), size, zero) {
                return p;
            }
        }
        alloc_slow(size, 16, zero)
    })
}

#[cold]
#[inline(never)]
fn alloc_slow(size: usize, align: usize, zero: bool) -> *mut u8 {
    if !ensure_init() {
        if STATE.load(Ordering::Acquire) == FAILED {
            return null_mut();
        }
        return boot::alloc(size, align);
    }
    if let Some(c) = classes::class_for(size, align) {
        // The class's first allocation (or its cache could not be made).
        return class_or_create(c).map_or(null_mut(), |k| cache_alloc(k, size, zero));
    }
    large::alloc(size, align, zero)
}

/// What kind of pointer `p` is: the page-map entry, or `Boot`/`Foreign`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// In a slab of this size class.
    Small(usize),
    /// The start of a large block of this many bytes.
    Large(usize),
    /// A bootstrap block.
    Boot,
    /// Not a pointer umem handed out.
    Foreign,
}

/// Classifies `p` by the page map.
#[inline]
pub fn owner(p: *const u8) -> Owner {
    let a = p as usize;
    match pagemap::lookup(a) {
        Entry::Small(c) if a & (classes::align(c) - 1) == 0 => Owner::Small(c),
        Entry::Large(n) | Entry::Aligned(n) if a & (PAGE - 1) == 0 => Owner::Large(n * PAGE),
        _ if boot::owns(a) => Owner::Boot,
        _ => Owner::Foreign,
    }
}

/// Why a pointer could not be freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// umem did not hand out this pointer (or it is not a block's start).
    InvalidPointer(usize),
}

/// Frees a block without knowing its size (C `free`). `Err` for a pointer
/// umem does not own; the memory is then left alone.
///
/// # Safety
/// `p` is null, or a block umem handed out and not freed since, or any
/// other pointer umem never handed out (that is detected and refused).
#[inline(always)]
pub unsafe fn free(p: *mut u8) -> Result<(), FreeError> {
    // SAFETY: by the caller.
    unsafe {
        if free_hit(p) {
            return Ok(());
        }
        free_miss(p)
    }
}

/// The magazine hit of [`free`] alone: `true` when `p` went onto this
/// thread's magazine, `false` when nothing was done (then call [`free`]).
/// No calls, so a caller that tail-calls [`free`] on `false` (as the C
/// `free` does) needs no stack frame on the hit.
///
/// # Safety
/// As for [`free`].
#[inline(always)]
pub unsafe fn free_hit(p: *mut u8) -> bool {
    let a = p as usize;
    let h = match region::class_of(a) {
        Some(c) => hit_of(c).load(Ordering::Relaxed),
        // Outside the region (no region, no stripe left, a large block): the
        // page map's entry, by its top byte.
        None => {
            let Some(e) = pagemap::slot(a) else {
                return false;
            };
            HIT[(e.load(Ordering::Relaxed) >> 24) as usize].load(Ordering::Relaxed)
        }
    };
    if a as u64 & (h >> 16) != 0 {
        return false;
    }
    // SAFETY: `a` is in one of class c's stripes, which only class c's
    // arena imports from, or on a page the page map gives to class c; and aligned like its
    // buffers: by the caller's contract a block of class c (region.rs says
    // what this trusts). HIT holds the class cache's inline index (or 0, a
    // miss).
    unsafe { umem_slab::hit_free(umem_slab::InlineIndex::from_raw(h as u16), a) }
}

/// [`free`] past the magazine hit.
///
/// # Safety
/// As for [`free`].
#[inline(never)]
unsafe fn free_miss(p: *mut u8) -> Result<(), FreeError> {
    no_unwind(|| {
        let a = p as usize;
        let v = pagemap::raw(a);
        if v & pagemap::TAG == pagemap::SMALL {
            // Small: the entry holds the class. Every buffer of class c is
            // aligned to the class's alignment, so a misaligned pointer is
            // certainly not a block start.
            let c = pagemap::small_class(v);
            if a & (classes::align(c) - 1) == 0 {
                if let Some(k) = class_cache(c) {
                    // SAFETY: the page belongs to class c's slabs and `a` is
                    // aligned like its buffers.
                    unsafe { slabx::free(k, p) };
                    return Ok(());
                }
            }
            return Err(FreeError::InvalidPointer(a));
        }
        free_slow(p)
    })
}

#[cold]
fn free_slow(p: *mut u8) -> Result<(), FreeError> {
    let a = p as usize;
    if p.is_null() {
        return Ok(());
    }
    match pagemap::lookup(a) {
        e @ (Entry::Large(_) | Entry::Aligned(_)) if a & (PAGE - 1) == 0 => {
            large::free(a, e);
            Ok(())
        }
        _ if boot::owns(a) => Ok(()),
        _ => Err(FreeError::InvalidPointer(a)),
    }
}

/// Usable size of a block umem handed out; `None` for a foreign pointer.
pub fn usable_size(p: *const u8) -> Option<usize> {
    match owner(p) {
        Owner::Small(c) => Some(classes::size(c)),
        Owner::Large(n) => Some(large::len_of(p as usize, n)),
        // SAFETY: a bootstrap block has its header.
        Owner::Boot => Some(unsafe { boot::size_of(p as usize) }),
        Owner::Foreign => None,
    }
}

/// Growing reallocs at or above this size get a large block (C ABI only:
/// Rust's `dealloc` derives the class from the layout).
pub const REALLOC_GROW_LARGE: usize = 4 * 1024;

/// Capacity reserved for a block that a C `realloc` grows into a large
/// block: 64 times the size and at least 1 MiB up to 1 MiB, 8 times above
/// (at most 1 GiB more).
/// The pages are `MAP_NORESERVE` and untouched until used, so this is
/// address space, not memory; a block that keeps growing is copied about
/// once per 64× (8×) of growth instead of at every power of two.
#[inline]
pub fn realloc_room(size: usize) -> usize {
    if size <= 1 << 20 {
        (size * 64).max(1 << 20)
    } else {
        size.saturating_mul(8).min(size.saturating_add(1 << 30))
    }
}

/// Resizes a block (C `realloc` core; `p` non-null, `size` > 0). In place
/// when the size class or the large block allows. `Ok(null)` when memory is
/// exhausted (the old block is untouched); `Err` for a foreign pointer.
///
/// # Safety
/// As for [`free`]; on success the old block must no longer be used.
#[inline]
pub unsafe fn realloc(p: *mut u8, size: usize, align: usize) -> Result<*mut u8, FreeError> {
    // The in-place cases first, inlined into the caller: a small block
    // whose class still fits, and a large block growing within its room
    // (what a buffer grown by many small reallocs does at every step).
    let a = p as usize;
    let v = pagemap::raw(a);
    match v & pagemap::TAG {
        pagemap::SMALL => {
            let c = pagemap::small_class(v);
            let cs = classes::size(c);
            if a & (classes::align(c) - 1) == 0
                && size <= cs
                && size >= cs / 2
                && classes::align(c) >= align
            {
                return Ok(p);
            }
        }
        pagemap::LARGE
            if a & (PAGE - 1) == 0
                && large::resize_in_place(a, ((v & !pagemap::TAG) as usize) * PAGE, size) =>
        {
            return Ok(p);
        }
        _ => {}
    }
    // SAFETY: by the caller.
    unsafe { realloc_move(p, size, align) }
}

/// The rest of [`realloc`]: the remaining in-place cases and the moves.
///
/// # Safety
/// As for [`realloc`].
#[inline(never)]
unsafe fn realloc_move(p: *mut u8, size: usize, align: usize) -> Result<*mut u8, FreeError> {
    no_unwind(|| {
        let old = match owner(p) {
            Owner::Small(c) => {
                let cs = classes::size(c);
                if size <= cs && classes::align(c) >= align {
                    match classes::class_for(size, align) {
                        Some(nc) if nc == c || size >= cs / 2 => return Ok(p),
                        _ => {}
                    }
                }
                cs
            }
            Owner::Large(n) => {
                // Aligned blocks (memalign) come here; their in-place rule is
                // the one in `realloc`.
                if large::resize_in_place(p as usize, n, size) {
                    return Ok(p);
                }
                let len = large::len_of(p as usize, n);
                // The block's usable length (what `malloc_usable_size` said),
                // not its reserved capacity, is what the program may have written.
                len
            }
            // SAFETY: a bootstrap block has its header.
            Owner::Boot => unsafe { boot::size_of(p as usize) },
            Owner::Foreign => return Err(FreeError::InvalidPointer(p as usize)),
        };
        // A block that grows by realloc past REALLOC_GROW_LARGE becomes a large
        // block with room to grow in place (`realloc_room`: address space only),
        // so repeated growth copies a small fraction of the final size instead
        // of stepping through every size class and power of two.
        let q = if size > old && size >= REALLOC_GROW_LARGE && align <= PAGE {
            large::alloc_room(size, realloc_room(size), align, false)
        } else if size > old {
            // A small block that grows by realloc is likely to grow again: give
            // it twice its old size (up to REALLOC_GROW_LARGE) so that growth in
            // small steps copies at each doubling, not at every size class.
            // Only blocks that are actually growing pay the extra room.
            let want = size
                .max(old.saturating_mul(2))
                .min(REALLOC_GROW_LARGE.max(size));
            match alloc(want, align, false) {
                q if q.is_null() => alloc(size, align, false),
                q => q,
            }
        } else {
            alloc(size, align, false)
        };
        if q.is_null() {
            return Ok(q);
        }
        // SAFETY: both blocks are live and distinct; `min(old, size)` bytes are
        // inside both.
        unsafe {
            core::ptr::copy_nonoverlapping(p, q, old.min(size));
            free(p)?;
        }
        Ok(q)
    })
}

/// Frees a block whose layout is known (Rust `dealloc`).
///
/// # Safety
/// `p` must have been returned by [`alloc`] (or [`Umem`]) with this size
/// and alignment, and not freed since.
#[inline(always)]
pub unsafe fn free_sized(p: *mut u8, size: usize, align: usize) {
    if let Some(c) = classes::class_for(size, align) {
        // With debug assertions, check the layout against the page map and
        // abort with a message (as libumem's debug mode does for a bad
        // free; a panic here would unwind out of `dealloc`).
        if cfg!(debug_assertions)
            && !(matches!(owner(p), Owner::Small(pc) if pc == c) || boot::owns(p as usize))
        {
            layout_mismatch(p, size, align);
        }
        // Blocks of the bootstrap arena (handed out during init) are never
        // freed: they must not reach a magazine or a slab.
        if boot::owns(p as usize) {
            return;
        }
        let ii = hit_of(c).load(Ordering::Relaxed) as u16;
        // SAFETY: the caller's contract: a block of class c; HIT holds
        // that class cache's inline index (or 0, a miss).
        if unsafe { umem_slab::hit_free(umem_slab::InlineIndex::from_raw(ii), p as usize) } {
            return;
        }
    }
    // SAFETY: by the caller.
    unsafe { free_sized_miss(p, size, align) }
}

#[cold]
#[inline(never)]
fn layout_mismatch(p: *mut u8, size: usize, align: usize) -> ! {
    sys::fatal(format_args!(
        "umem: dealloc({p:p}, size {size}, align {align}) does not match the block"
    ))
}

/// [`free_sized`] past the magazine hit (never with a bootstrap block).
///
/// # Safety
/// As for [`free_sized`].
#[inline(never)]
unsafe fn free_sized_miss(p: *mut u8, size: usize, align: usize) {
    no_unwind(|| {
        if let Some(k) = classes::class_for(size, align).and_then(class_cache) {
            // SAFETY: the caller's contract: a block of the class's cache.
            unsafe { slabx::free(k, p) };
            return;
        }
        if let Err(FreeError::InvalidPointer(a)) = free_slow(p) {
            sys::fatal(format_args!(
                "umem: dealloc(): invalid pointer {a:#x} (size {size}, align {align})"
            ));
        }
    })
}

/// umem as Rust's global allocator:
/// `#[global_allocator] static A: umem_global::Umem = umem_global::Umem;`
pub struct Umem;

// SAFETY: `alloc` returns blocks of at least `layout.size()` bytes aligned
// to `layout.align()` that no one else uses until `dealloc`; `realloc`
// keeps the prefix; dealloc frees exactly what alloc handed out.
unsafe impl GlobalAlloc for Umem {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        alloc(layout.size(), layout.align(), false)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        alloc(layout.size(), layout.align(), true)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's contract is free_sized's.
        unsafe { free_sized(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (old, align) = (layout.size(), layout.align());
        let oc = classes::class_for(old, align);
        let nc = classes::class_for(new_size, align);
        if oc.is_some() && oc == nc {
            return ptr;
        }
        if oc.is_none() && nc.is_none() {
            if let Owner::Large(n) = owner(ptr) {
                if large::resize_in_place(ptr as usize, n, new_size) {
                    return ptr;
                }
            }
        }
        let q = alloc(new_size, align, false);
        if !q.is_null() {
            // SAFETY: distinct live blocks, both at least min(old, new) long.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, q, old.min(new_size));
                free_sized(ptr, old, align);
            }
        }
        q
    }
}

mod slabx {
    //! The few calls into umem-slab, in one place.
    use super::*;

    pub fn create(
        name: &'static str,
        size: usize,
        align: usize,
        arena: &'static Vmem,
        nomagazines: bool,
    ) -> Option<&'static Cache> {
        let mut flags = if nomagazines {
            umem_slab::CacheFlags::NOMAGAZINE
        } else {
            umem_slab::CacheFlags::NONE
        };
        if options::DEBUG.load(Ordering::Relaxed) {
            flags = flags | umem_slab::CacheFlags::DEBUG;
        }
        Cache::create(name, size, align, umem_slab::CacheOps::NONE, arena, flags).ok()
    }

    /// A class's cache and its fast index, read together from `CACHES`.
    #[derive(Clone, Copy)]
    pub struct ClassRef {
        pub k: &'static Cache,
        /// `k.fast_index()`, kept as a plain word in the table.
        pub fast: usize,
    }

    /// The fast index of `k` as a table word.
    pub fn fast_raw(k: &'static Cache) -> usize {
        k.fast_index().raw()
    }

    #[inline(always)]
    pub fn alloc(k: ClassRef) -> Option<*mut u8> {
        debug_assert_eq!(k.fast, fast_raw(k.k));
        // SAFETY: `fast` was stored from this cache's fast index (see `build_tree`).
        unsafe { k.k.alloc_with(umem_slab::FastIndex::from_raw(k.fast)) }.map(NonNull::as_ptr)
    }

    /// # Safety
    /// `p` must be a live block of `k`.
    #[inline(always)]
    pub unsafe fn free(k: ClassRef, p: *mut u8) {
        debug_assert_eq!(k.fast, fast_raw(k.k));
        // SAFETY: per the caller; `fast` is this cache's fast index.
        unsafe {
            k.k.free_with(
                umem_slab::FastIndex::from_raw(k.fast),
                NonNull::new_unchecked(p),
            )
        }
    }

    /// # Safety
    /// After `umem_slab::lockup` on this thread.
    pub unsafe fn release() {
        // SAFETY: per the caller.
        unsafe { umem_slab::release() }
    }

    /// # Safety
    /// In the child after a fork whose prepare ran `umem_slab::lockup`.
    pub unsafe fn release_child() {
        // SAFETY: per the caller.
        unsafe { umem_slab::release() }
    }

    pub fn fill_stats(k: &'static Cache, c: &mut crate::ClassStats) {
        let s = k.stats();
        c.buf_in_use = s.buf_inuse;
        c.buf_total = s.buf_total as u64;
        c.mem_in_use = s.buf_inuse * s.buf_size as u64;
        c.alloc = s.alloc;
        c.alloc_fail = s.alloc_fail;
        c.mag_size = s.mag_size;
        c.mag_resize = s.mag_resize;
    }
}
