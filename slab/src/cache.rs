//! The object cache: creation and destruction, the magazine layer (per-thread slots, see
//! `thread.rs`) and the depot; the slab layer is in `cache/slab.rs`, debugging in
//! //! `cache/debug.rs`, checked free / reap / update / stats / verify in `cache/maint.rs`.
//! Every unsafe block says why it is sound.

use core::cell::UnsafeCell;
use core::mem::size_of;
use core::ptr::{self, null_mut, NonNull};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use umem_vmem::{Addr, CreateFlags, Policy, Vmem, XAllocRequest};

use crate::sync::{SpinGuard, SpinLock};
use crate::thread::{self, TSlot, MAX_IDS};
use crate::types::{AuditRecord, CacheFlags, CacheName, CacheOps, CacheStats, SlabError};

// The slab layer, debugging, and the checked/maintenance paths live in child modules
// (they see this module's private types and fields).
mod debug;
mod maint;
mod slab;

use maint::Where;

pub(crate) const NAME_LEN: usize = 32;
/// Minimum alignment of buffers the allocator may write into (`UMEM_ALIGN`).
const ALIGN: usize = 8;
/// Default alignment of buffers of 16 bytes and more (`UMEM_SECOND_ALIGN`).
const SECOND_ALIGN: usize = 16;
/// Small-slab threshold and waste bound: 1/8 (`UMEM_VOID_FRACTION`).
const VOID_FRACTION: usize = 8;
const HASH_INITIAL: usize = 64;
/// Failed depot trylocks per update interval above which magazines grow.
const DEPOT_CONTENTION: u64 = 2;

// Debug buftag: after each buffer (see `CacheFlags::DEBUG`).
const BUFTAG_SIZE: usize = 24;
const REDZONE_PATTERN: u64 = 0xfeed_face_feed_face;
const FREE_PATTERN: u64 = 0xdead_beef_dead_beef;
const UNINIT_PATTERN: u64 = 0xbadd_cafe_badd_cafe;
const BUFTAG_ALLOC: usize = 0xa110_c8ed;
const BUFTAG_FREE: usize = 0xf4ee_f4ee;

/// Magazine types {rounds, align, minbuf, maxbuf} as libumem's `umem_magtype`.
pub(crate) struct MagType {
    pub rounds: usize,
    pub align: usize,
    pub minbuf: usize,
    pub maxbuf: usize,
}

pub(crate) const MAGTYPES: [MagType; 9] = [
    MagType {
        rounds: 1,
        align: 8,
        minbuf: 3200,
        maxbuf: 65536,
    },
    MagType {
        rounds: 3,
        align: 16,
        minbuf: 256,
        maxbuf: 32768,
    },
    MagType {
        rounds: 7,
        align: 32,
        minbuf: 64,
        maxbuf: 16384,
    },
    MagType {
        rounds: 15,
        align: 64,
        minbuf: 0,
        maxbuf: 8192,
    },
    MagType {
        rounds: 31,
        align: 64,
        minbuf: 0,
        maxbuf: 4096,
    },
    MagType {
        rounds: 47,
        align: 64,
        minbuf: 0,
        maxbuf: 2048,
    },
    MagType {
        rounds: 63,
        align: 64,
        minbuf: 0,
        maxbuf: 1024,
    },
    MagType {
        rounds: 95,
        align: 64,
        minbuf: 0,
        maxbuf: 512,
    },
    MagType {
        rounds: 143,
        align: 64,
        minbuf: 0,
        maxbuf: 0,
    },
];

fn magtype_index(rounds: usize) -> usize {
    MAGTYPES
        .iter()
        .position(|m| m.rounds == rounds)
        .unwrap_or_else(|| crate::fatal("umem-slab: bad magazine size\n"))
}

/// A magazine: a link word followed by `rounds` buffer addresses.
#[repr(C)]
pub(crate) struct Magazine {
    next: *mut Magazine,
}

impl Magazine {
    /// # Safety
    /// `m` is a magazine with more than `i` rounds of capacity.
    #[inline(always)]
    pub(crate) unsafe fn round(m: *mut Magazine, i: usize) -> *mut usize {
        // SAFETY: rounds follow the link word; in bounds by the caller's promise.
        unsafe { (m as *mut usize).add(1 + i) }
    }
}

struct MagList {
    head: *mut Magazine,
    total: usize,
    min: usize,
    reaplimit: usize,
    alloc: u64,
}

impl MagList {
    const fn new() -> MagList {
        MagList {
            head: null_mut(),
            total: 0,
            min: 0,
            reaplimit: 0,
            alloc: 0,
        }
    }
    fn pop(&mut self) -> *mut Magazine {
        let m = self.head;
        if !m.is_null() {
            // SAFETY: magazines on the list are live and owned by the depot.
            self.head = unsafe { (*m).next };
            self.total -= 1;
            if self.total < self.min {
                self.min = self.total;
            }
            self.alloc += 1;
        }
        m
    }
    fn push(&mut self, m: *mut Magazine) {
        // SAFETY: the caller hands over a live magazine.
        unsafe { (*m).next = self.head };
        self.head = m;
        self.total += 1;
    }
}

/// The depot (cache_depot_lock protects all of it).
struct Depot {
    full: MagList,
    empty: MagList,
    /// Index into `MAGTYPES` of the magazines on both lists.
    magtype: usize,
    contention: u64,
    contention_prev: u64,
    resizes: u64,
    /// Depot visits in the current traffic window and when it began (ms, coarse clock).
    visits: u32,
    window_ms: u64,
}

/// Magazines also grow on depot *traffic*: [`TRAFFIC_VISITS`] depot visits within
/// [`TRAFFIC_WINDOW_MS`] (see the theory statement).
const TRAFFIC_VISITS: u32 = 64;
const TRAFFIC_WINDOW_MS: u64 = 50;

/// Batch refill from the slab layer (see `Cache::batch_refill`): buffers up to this size
/// take part, and a batch covers at most this many bytes (and one magazine).
const BATCH_MAX_BUFSIZE: usize = 512;
const BATCH_BYTES: usize = 1024;

impl Depot {
    /// Count a depot visit; true when the cache's magazines should grow (too much traffic).
    #[inline]
    fn note_visit(&mut self, grow_on_traffic: bool) -> bool {
        self.visits += 1;
        if self.visits < TRAFFIC_VISITS {
            return false;
        }
        self.visits = 0;
        let now = crate::now_ms();
        let busy = now.wrapping_sub(self.window_ms) < TRAFFIC_WINDOW_MS;
        self.window_ms = now;
        busy && grow_on_traffic
    }
}

/// A slab: in the last bytes of the slab for small-buffer caches, from the slab cache
/// otherwise.
#[repr(C)]
struct Slab {
    cache: *const Cache,
    /// Start of the slab's memory (from the source arena).
    mem: usize,
    /// First buffer (`mem` + colour).
    base: usize,
    next: *mut Slab,
    prev: *mut Slab,
    /// Free list: small caches, address of the first free buffer; hashed caches, the
    /// first free bufctl. 0 when the slab is fully allocated.
    head: usize,
    refcnt: usize,
    chunks: usize,
}
const SLAB_HDR: usize = size_of::<Slab>();

impl Slab {
    /// A slab of `cache` on no list, none of its `chunks` buffers allocated, its free
    /// list starting at `head`.
    fn fresh(cache: &Cache, mem: usize, base: usize, head: usize, chunks: usize) -> Slab {
        Slab {
            cache,
            mem,
            base,
            next: null_mut(),
            prev: null_mut(),
            head,
            refcnt: 0,
            chunks,
        }
    }
}

/// External buffer control (hashed caches).
#[repr(C)]
struct Bufctl {
    next: *mut Bufctl,
    addr: usize,
    slab: *mut Slab,
}

/// The bufctl of an `AUDIT` cache: a `Bufctl` followed by the audit record (libumem's
/// `umem_bufctl_audit_t`, without the stack yet).
#[repr(C)]
struct BufctlAudit {
    bc: Bufctl,
    cache: *const Cache,
    thread: usize,
    timestamp: u64,
    txn: u64,
    allocated: bool,
}

struct SlabLayer {
    /// Slabs with at least one free buffer (doubly linked, most recently used first).
    partial: *mut Slab,
    /// Fully allocated slabs.
    full: *mut Slab,
    nslabs: usize,
    buftotal: usize,
    bufalloc: usize,
    color: usize,
    hash: *mut *mut Bufctl,
    hash_mask: usize,
    slab_create: u64,
    slab_destroy: u64,
    slab_alloc: u64,
    slab_free: u64,
    rescale: u64,
    lookup_depth: u64,
}

#[repr(C, align(64))]
struct Padded<T>(T);

struct Links {
    next: *mut Cache,
    prev: *mut Cache,
}

/// A cache's index for the per-thread fast path ([`Cache::fast_index`]); 0 (always a
/// miss) for caches without a magazine layer and debug caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastIndex(usize);

impl FastIndex {
    /// The index as a word (to keep in an atomic table).
    #[inline(always)]
    pub const fn raw(self) -> usize {
        self.0
    }
    /// Rebuilds an index from [`FastIndex::raw`]. Using one that is not the cache's own in
    /// [`Cache::alloc_with`] / [`Cache::free_with`] breaks their safety contract.
    #[inline(always)]
    pub const fn from_raw(v: usize) -> FastIndex {
        FastIndex(v)
    }
}

impl FastIndex {
    /// The index as an [`InlineIndex`]: itself when it names one of the inline slots of a
    /// thread block (ids below 64), else the always-missing slot 0.
    #[inline]
    pub const fn inline(self) -> InlineIndex {
        if self.0 < thread::SLOTS_PER_CHUNK {
            InlineIndex((self.0 * core::mem::size_of::<TSlot>()) as u16)
        } else {
            InlineIndex::MISS
        }
    }
}

/// A [`FastIndex`] that names an inline slot of a thread block (below 64), or the reserved
/// slot 0, which always misses; kept as the slot's byte offset in the block. [`hit_alloc`]
/// and [`hit_free`] reach its slot straight from the thread's block pointer: one add, no
/// range check, no directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InlineIndex(u16);

impl InlineIndex {
    /// Slot 0: every hit on it misses.
    pub const MISS: InlineIndex = InlineIndex(0);
    /// The index as a 16-bit word (to keep in an atomic table).
    #[inline(always)]
    pub const fn raw(self) -> u16 {
        self.0
    }
    /// Rebuilds an index from [`InlineIndex::raw`].
    ///
    /// # Safety
    /// `v` came from `raw`.
    #[inline(always)]
    pub const unsafe fn from_raw(v: u16) -> InlineIndex {
        InlineIndex(v)
    }
}

/// The magazine hit alone: the top round of the calling thread's magazines in slot `ii`
/// (raw address), or `None` where [`Cache::alloc_with`] would take its slow path (both
/// magazines empty, no thread block yet) or `ii` is [`InlineIndex::MISS`]. It makes no
/// calls and never touches the cache itself, so a caller whose hit path ends here needs
/// neither a stack frame nor the cache pointer; on `None` it goes on to `alloc_with`.
///
/// # Safety
/// `ii` is `cache.fast_index().inline()` of a live cache (the buffer comes from it).
#[inline(always)]
pub unsafe fn hit_alloc(ii: InlineIndex) -> Option<usize> {
    // SAFETY: ii < 64; the slot, if any, is the calling thread's.
    unsafe { pop::<{ !thread::INLINE_SLOT_NEVER_NULL }>(thread::inline_slot(ii.0)) }
}

/// The free-side twin of [`hit_alloc`]: pushes `addr` onto the calling thread's magazines
/// in slot `ii` and returns `true`, or returns `false` (nothing done) where
/// [`Cache::free_with`] would take its slow path.
///
/// # Safety
/// As [`hit_alloc`], and `addr` is a buffer of that cache that may be freed (as for
/// [`Cache::free`]).
#[inline(always)]
pub unsafe fn hit_free(ii: InlineIndex, addr: usize) -> bool {
    // SAFETY: as in hit_alloc; the buffer is the slot's cache's by the caller.
    unsafe { push::<{ !thread::INLINE_SLOT_NEVER_NULL }>(thread::inline_slot(ii.0), addr) }
}

/// An object cache (`umem_cache_t`). Lives in memory from the `umem_cache` arena; handed
/// out as `&'static Cache` until [`Cache::destroy`].
#[repr(C, align(64))]
pub struct Cache {
    // Read by the fast path.
    fast_index: usize,
    id: usize,
    flags: u32,
    chunksize: usize,
    bufsize: usize,
    align: usize,
    /// Slab size; for a quantum cache set at its first slab (the arena publishes
    /// `qcache_max` only after its qcaches are made).
    slabsize_: AtomicUsize,
    /// Offset of the free-list link inside a free buffer (small caches).
    link_off: usize,
    /// Offset of the debug buftag (0 when none).
    buftag_off: usize,
    maxcolor_: AtomicUsize,
    hash_shift: u32,
    hashed: bool,
    audit: bool,
    slab_xalloc: bool,
    qcache: bool,
    /// Caches created after `init` (not the internal ones, not quantum caches) without
    /// constructor or destructor grow their magazines on depot traffic as well as on
    /// contention (a resize destroys cached objects, which costs a constructed cache more).
    grow_on_traffic: bool,
    ops: CacheOps,
    source: &'static Vmem,
    name: CacheName,
    slow_allocs: AtomicU64,
    slow_frees: AtomicU64,
    folded_allocs: AtomicU64,
    folded_frees: AtomicU64,
    alloc_fail: AtomicU64,
    reaps: AtomicU64,
    links: UnsafeCell<Links>,
    depot: Padded<SpinLock<Depot>>,
    slab: Padded<SpinLock<SlabLayer>>,
}

// SAFETY: all mutable state is behind the depot/slab spin locks, atomics, or the cache-list
// lock (`links`).
unsafe impl Sync for Cache {}
// SAFETY: as above.
unsafe impl Send for Cache {}

// ---------------------------------------------------------------------------------------
// Globals.

struct CacheList {
    head: *mut Cache,
    count: usize,
    ids: [u64; MAX_IDS / 64],
}
// SAFETY: pointers followed only under the lock.
unsafe impl Send for CacheList {}

impl CacheList {
    /// Put `cp` at the head of the list.
    ///
    /// # Safety
    /// `cp` is a live cache on no list; the list's lock is held (`&mut self`).
    unsafe fn push_front(&mut self, cp: *mut Cache) {
        // SAFETY: by the caller.
        unsafe {
            let links = &mut *(*cp).links.get();
            links.next = self.head;
            links.prev = null_mut();
            if !self.head.is_null() {
                (*(*self.head).links.get()).prev = cp;
            }
        }
        self.head = cp;
        self.count += 1;
    }
}

static CACHE_LIST: SpinLock<CacheList> = SpinLock::new(CacheList {
    head: null_mut(),
    count: 0,
    ids: [0; MAX_IDS / 64],
});

#[allow(clippy::declare_interior_mutable_const)]
const NULL_CACHE: AtomicPtr<Cache> = AtomicPtr::new(null_mut());
static IDS: [AtomicPtr<Cache>; MAX_IDS] = [NULL_CACHE; MAX_IDS];

pub(crate) struct Globals {
    pub internal: &'static Vmem,
    pub cache_arena: &'static Vmem,
    pub hash_arena: &'static Vmem,
    pub mag_caches: [&'static Cache; 9],
    pub slab_cache: &'static Cache,
    pub bufctl_cache: &'static Cache,
    pub bufctl_audit_cache: &'static Cache,
}

struct GlobalsCell(UnsafeCell<Option<Globals>>);
// SAFETY: written once by the initialising thread before STATE becomes READY, read only
// after observing READY (Acquire).
unsafe impl Sync for GlobalsCell {}
static GLOBALS: GlobalsCell = GlobalsCell(UnsafeCell::new(None));

const UNINIT: u8 = 0;
const INITING: u8 = 1;
const READY: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static NO_MAGAZINES: AtomicBool = AtomicBool::new(false);

/// Partially built globals while `init` runs (internal caches are created before the
/// magazine caches exist).
struct Boot {
    page: usize,
    internal: Option<&'static Vmem>,
    cache_arena: Option<&'static Vmem>,
    hash_arena: Option<&'static Vmem>,
}
struct BootCell(UnsafeCell<Boot>);
// SAFETY: used only by the initialising thread.
unsafe impl Sync for BootCell {}
static BOOT: BootCell = BootCell(UnsafeCell::new(Boot {
    page: 0,
    internal: None,
    cache_arena: None,
    hash_arena: None,
}));

#[inline]
pub(crate) fn globals() -> &'static Globals {
    // SAFETY: only called after init completed (every cache exists only after init; the
    // internal caches never need `globals()` during init, see `boot_*`).
    unsafe {
        match &*GLOBALS.0.get() {
            Some(g) => g,
            None => crate::fatal("umem-slab: used before init\n"),
        }
    }
}

fn page_size() -> usize {
    // SAFETY: BOOT is complete before any cache is created; read-only afterwards.
    unsafe { (*BOOT.0.get()).page }
}

/// Build the metadata arenas and internal caches; idempotent.
pub(crate) fn init() {
    loop {
        match STATE.compare_exchange(UNINIT, INITING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => break,
            Err(READY) => return,
            Err(_) => {
                core::hint::spin_loop();
                // SAFETY: no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => 4096,
    };
    let heap = umem_vmem::heap();
    let mk = |name: &str, quantum: usize| -> &'static Vmem {
        Vmem::create(name, None, quantum, Some(heap), 0, CreateFlags::NONE)
            .unwrap_or_else(|_| crate::fatal("umem-slab: cannot create metadata arena\n"))
    };
    let internal = mk("umem_internal", page);
    let cache_arena = mk("umem_cache", 64);
    let hash_arena = mk("umem_hash", 8);
    // SAFETY: we are the only thread in INITING.
    unsafe {
        let b = &mut *BOOT.0.get();
        b.page = page;
        b.internal = Some(internal);
        b.cache_arena = Some(cache_arena);
        b.hash_arena = Some(hash_arena);
    }
    let internal_cache = |name: &str, size: usize, align: usize, flags: CacheFlags| {
        Cache::create_inner(name, size, align, CacheOps::NONE, internal, flags)
            .unwrap_or_else(|_| crate::fatal("umem-slab: cannot create internal cache\n"))
    };
    let mut names = [[0u8; 24]; 9];
    let mut mags: [Option<&'static Cache>; 9] = [None; 9];
    for (i, mt) in MAGTYPES.iter().enumerate() {
        let n = fmt_name(&mut names[i], "umem_magazine_", mt.rounds);
        // Cache-line aligned (libumem uses 8..64): a loaded magazine is written on every
        // hit by its thread, so two threads' magazines must never share a line.
        mags[i] = Some(internal_cache(
            n,
            (mt.rounds + 1) * size_of::<usize>(),
            mt.align.max(64),
            CacheFlags::NOHASH,
        ));
    }
    let slab_cache = internal_cache("umem_slab_cache", SLAB_HDR, 0, CacheFlags::NOHASH);
    let bufctl_cache = internal_cache(
        "umem_bufctl_cache",
        size_of::<Bufctl>(),
        0,
        CacheFlags::NOHASH,
    );
    let bufctl_audit_cache = internal_cache(
        "umem_bufctl_audit_cache",
        size_of::<BufctlAudit>(),
        0,
        CacheFlags::NOHASH,
    );
    let g = Globals {
        internal,
        cache_arena,
        hash_arena,
        mag_caches: mags.map(|m| m.unwrap_or_else(|| crate::fatal("umem-slab: init\n"))),
        slab_cache,
        bufctl_cache,
        bufctl_audit_cache,
    };
    // SAFETY: single writer while INITING; readers wait for READY.
    unsafe { *GLOBALS.0.get() = Some(g) };
    thread::init_key();
    umem_vmem::set_qcache_factory(&crate::qcache::FACTORY);
    STATE.store(READY, Ordering::Release);
}

fn fmt_name<'a>(buf: &'a mut [u8; 24], prefix: &str, n: usize) -> &'a str {
    let mut len = prefix.len();
    buf[..len].copy_from_slice(prefix.as_bytes());
    let mut digits = [0u8; 20];
    let mut d = 0;
    let mut v = n;
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        buf[len] = digits[d];
        len += 1;
    }
    core::str::from_utf8(&buf[..len]).unwrap_or("umem_magazine")
}

pub(crate) fn is_ready() -> bool {
    STATE.load(Ordering::Acquire) == READY
}

pub(crate) fn set_nomagazines(on: bool) {
    NO_MAGAZINES.store(on, Ordering::Relaxed);
}

pub(crate) fn cache_by_id(id: usize) -> Option<&'static Cache> {
    let p = IDS.get(id)?.load(Ordering::Acquire);
    // SAFETY: ids are published after the cache is built and cleared before it is freed.
    unsafe { p.as_ref() }
}

pub(crate) fn alloc_slot_chunk() -> *mut u8 {
    let g = globals();
    match arena_alloc(g.internal, size_of::<thread::SlotChunk>(), 64) {
        Some(a) => a as *mut u8,
        None => null_mut(),
    }
}

pub(crate) fn free_slot_chunk(a: usize) {
    arena_free(globals().internal, a, size_of::<thread::SlotChunk>(), 64);
}

/// Thread blocks (with their inline slot chunk) come straight from `umem_internal`, like
/// slot chunks: a page-quantum arena, no magazines, so making a block never needs a block.
pub(crate) fn alloc_thread_block() -> *mut u8 {
    match arena_alloc(globals().internal, size_of::<thread::ThreadBlock>(), 64) {
        Some(a) => a as *mut u8,
        None => null_mut(),
    }
}

pub(crate) fn free_thread_block(a: usize) {
    arena_free(globals().internal, a, size_of::<thread::ThreadBlock>(), 64);
}

// ---------------------------------------------------------------------------------------
// Arena access.

fn arena_alloc(vm: &Vmem, size: usize, align: usize) -> Option<Addr> {
    if align <= vm.quantum() {
        vm.alloc(size, Policy::InstantFit).ok()
    } else {
        vm.xalloc(&XAllocRequest::new(size).align(align)).ok()
    }
}

fn arena_free(vm: &Vmem, addr: Addr, size: usize, align: usize) {
    let r = if align <= vm.quantum() {
        vm.free(addr, size)
    } else {
        vm.xfree(addr, size)
    };
    if r.is_err() {
        crate::fatal("umem-slab: source arena refused a slab free\n");
    }
}

/// Pops the top round of `slot`'s loaded magazine, first exchanging an empty loaded
/// magazine for a full previous one: the whole magazine-layer hit, both of its cases as
/// in the paper (a working set a little larger than one magazine swaps the two on every
/// pass, and that swap must not cost a slow-path trip).
///
/// # Safety
/// `slot` is a slot of the calling thread's block, or null when `MAY_BE_NULL`.
#[inline(always)]
unsafe fn pop<const MAY_BE_NULL: bool>(slot: *mut TSlot) -> Option<usize> {
    if MAY_BE_NULL && slot.is_null() {
        return None;
    }
    // SAFETY: by the caller the slot is ours; when `rounds > 0`, `loaded` is a magazine
    // holding that many rounds, and likewise `ploaded` with `prounds`.
    unsafe {
        let s = &mut *slot;
        if s.rounds != 0 {
            return Some(take_round(s));
        }
        if s.prounds == 0 {
            return None;
        }
        let (m, r) = (s.ploaded, s.prounds);
        reload(s, m, r);
        Some(take_round(s))
    }
}

/// The top round of a loaded magazine that has one.
///
/// # Safety
/// `s` is the calling thread's slot and `s.rounds > 0`.
#[inline(always)]
unsafe fn take_round(s: &mut TSlot) -> usize {
    s.rounds -= 1;
    // SAFETY: by the caller `loaded` holds `rounds + 1` rounds.
    let buf = unsafe { *Magazine::round(s.loaded, s.rounds) };
    bump(&s.allocs);
    buf
}

/// Pushes `addr` onto `slot`'s loaded magazine, first exchanging a full loaded magazine
/// for an empty previous one; `false` (nothing done) when neither has room.
///
/// # Safety
/// As [`pop`]; `addr` is a free buffer of the slot's cache.
#[inline(always)]
unsafe fn push<const MAY_BE_NULL: bool>(slot: *mut TSlot, addr: usize) -> bool {
    if MAY_BE_NULL && slot.is_null() {
        return false;
    }
    // SAFETY: by the caller; `rounds < cap` means `loaded` has room for one more.
    unsafe {
        let s = &mut *slot;
        if s.rounds >= s.cap {
            if s.ploaded.is_null() || s.prounds != 0 {
                return false;
            }
            let m = s.ploaded;
            reload(s, m, 0);
        }
        let r = s.rounds;
        *Magazine::round(s.loaded, r) = addr;
        s.rounds = r + 1;
        bump(&s.frees);
        true
    }
}

#[inline(always)]
fn bump(c: &AtomicU64) {
    // Owner-only counter: a plain load/store pair, readable (racily, atomically) elsewhere.
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

fn highbit(x: usize) -> u32 {
    usize::BITS - x.leading_zeros()
}

// ---------------------------------------------------------------------------------------
// Creation and destruction.

impl Cache {
    /// Create an object cache of `size`-byte buffers aligned to `align` (0: 8, or 16 for
    /// buffers of 16 bytes and more), whose slabs come from `source`.
    pub fn create(
        name: &str,
        size: usize,
        align: usize,
        ops: CacheOps,
        source: &'static Vmem,
        flags: CacheFlags,
    ) -> Result<&'static Cache, SlabError> {
        if flags.0 & CacheFlags::QCACHE.0 != 0 {
            return Err(SlabError::BadFlags { flags: flags.0 });
        }
        init();
        Cache::create_inner(name, size, align, ops, source, flags)
    }

    pub(crate) fn create_qcache(
        name: &str,
        size: usize,
        arena: &'static Vmem,
    ) -> Result<&'static Cache, SlabError> {
        init();
        Cache::create_inner(
            name,
            size,
            arena.quantum(),
            CacheOps::NONE,
            arena,
            CacheFlags::NOTOUCH | CacheFlags::QCACHE,
        )
    }

    fn create_inner(
        name: &str,
        size: usize,
        align: usize,
        ops: CacheOps,
        source: &'static Vmem,
        flags: CacheFlags,
    ) -> Result<&'static Cache, SlabError> {
        let mut flags = flags;
        let notouch = flags.contains(CacheFlags::NOTOUCH);
        if notouch && flags.contains(CacheFlags::NOHASH) {
            return Err(SlabError::BadFlags { flags: flags.0 });
        }
        if size == 0 {
            return Err(SlabError::ZeroSize);
        }
        if notouch || flags.contains(CacheFlags::NODEBUG) {
            flags = CacheFlags(flags.0 & !CacheFlags::DEBUG.0);
        }
        if NO_MAGAZINES.load(Ordering::Relaxed) {
            flags = flags | CacheFlags::NOMAGAZINE;
        }
        if notouch || flags.contains(CacheFlags::NODEBUG) || flags.contains(CacheFlags::NOHASH) {
            flags = CacheFlags(flags.0 & !CacheFlags::AUDIT.0);
        }
        let audit = flags.contains(CacheFlags::AUDIT);
        if audit {
            flags = flags | CacheFlags::DEBUG;
        }
        let debug = flags.contains(CacheFlags::DEBUG);
        let page = page_size();
        let quantum = source.quantum();
        let max_align = quantum.max(page);
        if align != 0 && !align.is_power_of_two() {
            return Err(SlabError::BadAlign {
                align,
                max: max_align,
            });
        }
        let align = if align == 0 {
            if notouch {
                1
            } else if size.checked_next_multiple_of(ALIGN).unwrap_or(usize::MAX) >= SECOND_ALIGN {
                SECOND_ALIGN
            } else {
                ALIGN
            }
        } else if !notouch && align < ALIGN {
            ALIGN
        } else {
            align
        };
        if !align.is_power_of_two() || align > max_align {
            return Err(SlabError::BadAlign {
                align,
                max: max_align,
            });
        }
        let too_large = SlabError::TooLarge { size };
        let mut chunksize = if notouch {
            size
        } else {
            size.checked_next_multiple_of(ALIGN).ok_or(too_large)?
        };
        let mut buftag_off = 0;
        if debug {
            buftag_off = chunksize;
            chunksize = chunksize.checked_add(BUFTAG_SIZE).ok_or(too_large)?;
        }
        chunksize = chunksize.checked_next_multiple_of(align).ok_or(too_large)?;
        let link_off = if debug {
            buftag_off + 8
        } else {
            chunksize.saturating_sub(size_of::<usize>())
        };

        // Slab geometry.
        let small_slab = quantum.max(page);
        let hashed;
        let slabsize;
        let maxcolor;
        if flags.contains(CacheFlags::NOHASH)
            || (!notouch && !audit && chunksize < small_slab / VOID_FRACTION)
        {
            if chunksize + SLAB_HDR > small_slab {
                return Err(too_large);
            }
            hashed = false;
            slabsize = small_slab;
            maxcolor = (slabsize - SLAB_HDR) % chunksize;
        } else {
            hashed = true;
            let q = quantum;
            if flags.contains(CacheFlags::QCACHE) {
                // Decided at the first slab (see `qcache_geometry`).
                slabsize = 0;
            } else {
                // Smallest slab that wastes at most 1/8; else the least wasteful one.
                let mut best = 0usize;
                let mut best_waste = f64::MAX;
                let mut pick = 0usize;
                for n in 1..=2 * VOID_FRACTION {
                    let s = chunksize
                        .checked_mul(n)
                        .and_then(|x| x.checked_next_multiple_of(q))
                        .ok_or(too_large)?;
                    let fit = s / chunksize;
                    let waste = (s - fit * chunksize) as f64 / s as f64;
                    if waste * VOID_FRACTION as f64 <= 1.0 {
                        pick = s;
                        break;
                    }
                    if waste < best_waste {
                        best_waste = waste;
                        best = s;
                    }
                }
                slabsize = if pick != 0 { pick } else { best };
            }
            maxcolor = if slabsize == 0 {
                0
            } else {
                (slabsize % chunksize).min(q.saturating_sub(1))
            };
        }
        let slab_align = if hashed { align } else { slabsize };

        let g_cache_arena = if is_ready() {
            globals().cache_arena
        } else {
            // SAFETY: BOOT is set before the first internal cache is created.
            unsafe {
                (*BOOT.0.get())
                    .cache_arena
                    .unwrap_or_else(|| crate::fatal("boot\n"))
            }
        };
        let cp = arena_alloc(g_cache_arena, size_of::<Cache>(), 64).ok_or(SlabError::NoMemory)?
            as *mut Cache;

        let mut hash = null_mut();
        if hashed {
            let hash_arena = globals_hash_arena();
            match arena_alloc(hash_arena, HASH_INITIAL * size_of::<usize>(), 8) {
                Some(h) => {
                    hash = h as *mut *mut Bufctl;
                    // SAFETY: fresh table of HASH_INITIAL buckets.
                    unsafe { ptr::write_bytes(hash, 0, HASH_INITIAL) };
                }
                None => {
                    arena_free(g_cache_arena, cp as usize, size_of::<Cache>(), 64);
                    return Err(SlabError::NoMemory);
                }
            }
        }
        let mut magtype = 0;
        while chunksize <= MAGTYPES[magtype].minbuf {
            magtype += 1;
        }
        let cache = Cache {
            fast_index: 0,
            id: 0,
            flags: flags.0,
            chunksize,
            bufsize: size,
            align,
            slabsize_: AtomicUsize::new(slabsize),
            link_off,
            buftag_off,
            maxcolor_: AtomicUsize::new(maxcolor),
            hash_shift: highbit(chunksize) - 1,
            hashed,
            audit,
            slab_xalloc: slab_align > quantum,
            qcache: flags.contains(CacheFlags::QCACHE),
            grow_on_traffic: is_ready()
                && !flags.contains(CacheFlags::QCACHE)
                && ops.ctor.is_none()
                && ops.dtor.is_none(),
            ops,
            source,
            name: CacheName::new(name),
            slow_allocs: AtomicU64::new(0),
            slow_frees: AtomicU64::new(0),
            folded_allocs: AtomicU64::new(0),
            folded_frees: AtomicU64::new(0),
            alloc_fail: AtomicU64::new(0),
            reaps: AtomicU64::new(0),
            links: UnsafeCell::new(Links {
                next: null_mut(),
                prev: null_mut(),
            }),
            depot: Padded(SpinLock::new(Depot {
                full: MagList::new(),
                empty: MagList::new(),
                magtype,
                contention: 0,
                contention_prev: 0,
                resizes: 0,
                visits: 0,
                window_ms: 0,
            })),
            slab: Padded(SpinLock::new(SlabLayer {
                partial: null_mut(),
                full: null_mut(),
                nslabs: 0,
                buftotal: 0,
                bufalloc: 0,
                color: 0,
                hash,
                hash_mask: if hashed { HASH_INITIAL - 1 } else { 0 },
                slab_create: 0,
                slab_destroy: 0,
                slab_alloc: 0,
                slab_free: 0,
                rescale: 0,
                lookup_depth: 0,
            })),
        };
        // SAFETY: `cp` is fresh, 64-aligned memory of the right size.
        unsafe { ptr::write(cp, cache) };

        // Link into the cache list and give it an id (magazine caches only).
        let mut l = CACHE_LIST.lock();
        if !flags.contains(CacheFlags::NOMAGAZINE) {
            let mut id = 0;
            for (w, word) in l.ids.iter_mut().enumerate() {
                let free = !*word & if w == 0 { !1u64 } else { !0u64 };
                if free != 0 {
                    let b = free.trailing_zeros() as usize;
                    *word |= 1 << b;
                    id = w * 64 + b;
                    break;
                }
            }
            // SAFETY: not yet visible to anyone else.
            unsafe {
                (*cp).id = id;
                (*cp).fast_index = if debug { 0 } else { id };
            }
            if id != 0 {
                IDS[id].store(cp, Ordering::Release);
            }
        }
        // SAFETY: the fresh cache is on no list; CACHE_LIST held.
        unsafe { l.push_front(cp) };
        drop(l);
        // SAFETY: initialised above; lives until destroy.
        Ok(unsafe { &*cp })
    }

    /// Destroy the cache: take back every thread's magazines for it, purge the depot, and
    /// (when no object is still allocated) give every slab back to the source arena and
    /// free the cache.
    ///
    /// Returns `NotEmpty` (and leaves the cache fully usable) when clients still hold
    /// objects.
    ///
    /// # Safety
    /// No thread may use the cache (alloc, free, reap, stats...) during or after a
    /// successful destroy. Other threads may still *hold magazines* for it: those are taken
    /// from their per-thread blocks under the thread registry lock, which is sound because
    /// a thread only touches its slot for this cache while calling into this cache.
    pub unsafe fn destroy(&'static self) -> Result<(), SlabError> {
        // Leave the cache list first, so that update() no longer visits it.
        self.unlink();
        self.purge_magazines();
        let live = self.slab.0.lock().bufalloc;
        if live != 0 {
            self.relink();
            return Err(SlabError::NotEmpty {
                live,
                cache: self.name,
            });
        }
        let (hash, mask) = {
            let s = self.slab.0.lock();
            (s.hash, s.hash_mask)
        };
        if !hash.is_null() {
            arena_free(
                globals().hash_arena,
                hash as usize,
                (mask + 1) * size_of::<usize>(),
                8,
            );
        }
        if self.id != 0 {
            IDS[self.id].store(null_mut(), Ordering::Release);
            let mut l = CACHE_LIST.lock();
            l.ids[self.id / 64] &= !(1u64 << (self.id % 64));
        }
        arena_free(
            globals().cache_arena,
            self as *const Cache as usize,
            size_of::<Cache>(),
            64,
        );
        Ok(())
    }

    fn unlink(&self) {
        let mut l = CACHE_LIST.lock();
        // SAFETY: list manipulation under CACHE_LIST.
        unsafe {
            let links = &mut *self.links.get();
            if links.prev.is_null() {
                l.head = links.next;
            } else {
                (*(*links.prev).links.get()).next = links.next;
            }
            if !links.next.is_null() {
                (*(*links.next).links.get()).prev = links.prev;
            }
            links.next = null_mut();
            links.prev = null_mut();
        }
        l.count -= 1;
    }

    fn relink(&self) {
        let mut l = CACHE_LIST.lock();
        // SAFETY: relink follows unlink (on no list); CACHE_LIST held.
        unsafe { l.push_front(self as *const Cache as *mut Cache) };
    }

    /// Take every thread's magazines for this cache and empty the depot.
    fn purge_magazines(&self) {
        if self.id != 0 {
            // Magazines are destroyed under the registry lock; with magazines off for the
            // calling thread, the frees this does (objects to slabs, magazines to their
            // caches) go straight to slab layers and never need the registry again.
            thread::with_magazines_off(&mut || {
                thread::for_each_slot(self.id, &mut |slot| {
                    // SAFETY: the registry lock is held and (destroy contract) the owner is
                    // not using this slot.
                    unsafe {
                        self.fold_counters(slot);
                        self.drain_slot(slot);
                        (*slot).magsize = 0;
                    }
                });
            });
        }
        self.depot_purge();
    }

    /// Fold a slot's counters into the cache and zero them.
    ///
    /// # Safety
    /// `slot` is a live slot of this cache, not concurrently used by its owner.
    unsafe fn fold_counters(&self, slot: *mut TSlot) {
        // SAFETY: by the caller.
        let s = unsafe { &*slot };
        let a = s.allocs.swap(0, Ordering::Relaxed);
        let f = s.frees.swap(0, Ordering::Relaxed);
        self.folded_allocs.fetch_add(a, Ordering::Relaxed);
        self.folded_frees.fetch_add(f, Ordering::Relaxed);
    }
}

fn globals_hash_arena() -> &'static Vmem {
    if is_ready() {
        globals().hash_arena
    } else {
        // SAFETY: BOOT is set before internal caches are created.
        unsafe {
            (*BOOT.0.get())
                .hash_arena
                .unwrap_or_else(|| crate::fatal("boot\n"))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Allocation and free.

impl Cache {
    /// Allocate a constructed object. `None` when the source arena is exhausted or the
    /// constructor failed.
    #[inline(always)]
    pub fn alloc(&self) -> Option<NonNull<u8>> {
        // SAFETY: the cache's own fast index.
        unsafe { self.alloc_with(self.fast_index()) }
    }

    /// Allocate, returning the buffer's address as an integer (for NOTOUCH caches over
    /// integer arenas, where 0 may be a valid buffer).
    #[inline(always)]
    pub fn alloc_addr(&self) -> Option<usize> {
        // SAFETY: the cache's own fast index.
        unsafe { self.alloc_addr_at(self.fast_index) }
    }

    /// The cache's fast-path index, for [`Cache::alloc_with`] / [`Cache::free_with`]: a
    /// caller that keeps it beside the cache pointer (umem-global's size-class table)
    /// saves the hit path one dependent load.
    #[inline(always)]
    pub fn fast_index(&self) -> FastIndex {
        FastIndex(self.fast_index)
    }

    /// [`Cache::alloc`] with the cache's [`FastIndex`] already at hand.
    ///
    /// # Safety
    /// `fi` is `self.fast_index()`.
    #[inline(always)]
    pub unsafe fn alloc_with(&self, fi: FastIndex) -> Option<NonNull<u8>> {
        // SAFETY: by the caller.
        match unsafe { self.alloc_addr_at(fi.0) } {
            Some(a) => match NonNull::new(a as *mut u8) {
                Some(p) => Some(p),
                None => {
                    // Only an integer (NOTOUCH) cache can hand out address 0; a pointer
                    // cannot name it, so give it back. Use `alloc_addr` for such caches.
                    // SAFETY: just allocated from this cache.
                    unsafe { self.free_addr(0) };
                    None
                }
            },
            None => None,
        }
    }

    /// [`Cache::free`] with the cache's [`FastIndex`] already at hand.
    ///
    /// # Safety
    /// As [`Cache::free`], and `fi` is `self.fast_index()`.
    #[inline(always)]
    pub unsafe fn free_with(&self, fi: FastIndex, ptr: NonNull<u8>) {
        // SAFETY: by the caller.
        unsafe { self.free_addr_at(fi.0, ptr.as_ptr() as usize) }
    }

    /// # Safety
    /// `fast_index` is this cache's fast index.
    #[inline(always)]
    unsafe fn alloc_addr_at(&self, fast_index: usize) -> Option<usize> {
        // SAFETY: fast_index < MAX_IDS (it is an id or 0); the slot is the calling
        // thread's.
        match unsafe { pop::<true>(thread::fast_slot(fast_index)) } {
            Some(buf) => Some(buf),
            None => self.alloc_slow(),
        }
    }

    /// Free an object to the cache (fast path: no checks).
    ///
    /// # Safety
    /// `ptr` was returned by `alloc` on this cache, is not used afterwards, and is not
    /// already free. The object must be in its constructed state.
    #[inline(always)]
    pub unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: by the caller.
        unsafe { self.free_addr(ptr.as_ptr() as usize) }
    }

    /// Free by address (see [`Cache::alloc_addr`]).
    ///
    /// # Safety
    /// As [`Cache::free`].
    #[inline(always)]
    pub unsafe fn free_addr(&self, addr: usize) {
        // SAFETY: by the caller; the cache's own fast index.
        unsafe { self.free_addr_at(self.fast_index, addr) }
    }

    /// # Safety
    /// As [`Cache::free_addr`]; `fast_index` is this cache's fast index.
    #[inline(always)]
    unsafe fn free_addr_at(&self, fast_index: usize, addr: usize) {
        // SAFETY: as in alloc_addr_at.
        unsafe {
            if !push::<true>(thread::fast_slot(fast_index), addr) {
                self.free_slow(addr)
            }
        }
    }

    #[inline(never)]
    fn alloc_slow(&self) -> Option<usize> {
        crate::maybe_update();
        if self.id != 0 {
            let slot = thread::slot_for(self.id);
            if !slot.is_null() {
                // SAFETY: our own slot.
                if let Some(buf) = unsafe { self.mag_alloc(slot) } {
                    // SAFETY: our own slot.
                    unsafe { bump(&(*slot).allocs) };
                    if self.buftag_off != 0 {
                        return self.debug_alloc(buf);
                    }
                    return Some(buf);
                }
            }
        }
        self.slow_allocs.fetch_add(1, Ordering::Relaxed);
        let buf = match self.slab_alloc() {
            Some(b) => b,
            None => {
                self.slow_allocs.fetch_sub(1, Ordering::Relaxed);
                self.alloc_fail.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        if self.buftag_off != 0 {
            return self.debug_alloc(buf);
        }
        if !self.construct(buf) {
            self.slow_allocs.fetch_sub(1, Ordering::Relaxed);
            self.alloc_fail.fetch_add(1, Ordering::Relaxed);
            self.slab_free_trusted(buf);
            return None;
        }
        self.batch_refill();
        Some(buf)
    }

    /// Deviation from libumem (measured by umem-bench's cache-thrash/cache-scratch): when
    /// the depot has no full magazine and this thread had to go to the slab layer, take a
    /// short run of neighbouring buffers for the thread's magazine at once. Otherwise two
    /// threads that reach the slab layer together get interleaved neighbours — the same
    /// cache line — and keep reusing them through their magazines (false sharing: 3–4×
    /// glibc's time in cache-thrash). Only small buffers of user magazine caches without
    /// constructor, destructor or debugging take part; the extra buffers move from the
    /// slab layer to the magazine layer without touching the client alloc/free counts.
    #[inline(never)]
    fn batch_refill(&self) {
        // `grow_on_traffic` is false for quantum caches and caches with a constructor or
        // destructor. Magazine caches never batch: a batch there would recurse through
        // `mag_free`'s magazine allocation.
        if self.id == 0
            || !self.grow_on_traffic
            || self.buftag_off != 0
            || self.bufsize > BATCH_MAX_BUFSIZE
            || globals().mag_caches.iter().any(|&m| core::ptr::eq(m, self))
        {
            return;
        }
        let slot = thread::slot_for(self.id);
        if slot.is_null() {
            return;
        }
        // SAFETY: our own slot; only its size field is read.
        let magsize = unsafe { (*slot).magsize };
        let n = magsize.min(BATCH_BYTES / self.bufsize);
        for _ in 1..n {
            let Some(extra) = self.slab_alloc() else {
                return;
            };
            // SAFETY: `slot` is our own slot; `extra` is a free buffer of this cache that
            // nobody else holds (no constructor to run: see above). The client-visible
            // alloc/free counts don't change: the buffer goes straight from the slab
            // layer to the magazine layer.
            if !unsafe { self.mag_free(slot, extra) } {
                self.slab_free_trusted(extra);
                return;
            }
        }
    }

    #[inline]
    fn construct(&self, buf: usize) -> bool {
        match self.ops.ctor {
            // SAFETY: buffers of caches with callbacks are real memory (never address 0).
            Some(c) => c(
                unsafe { NonNull::new_unchecked(buf as *mut u8) },
                self.ops.private,
            ),
            None => true,
        }
    }

    #[inline]
    fn destruct(&self, buf: usize) {
        if let Some(d) = self.ops.dtor {
            // SAFETY: as in construct.
            d(
                unsafe { NonNull::new_unchecked(buf as *mut u8) },
                self.ops.private,
            )
        }
    }

    #[inline(never)]
    unsafe fn free_slow(&self, addr: usize) {
        if self.buftag_off != 0 {
            if let Err(e) = self.debug_free(addr) {
                crate::fatal_error(&e);
            }
        }
        // SAFETY: by the caller; checked above for debug caches.
        unsafe { self.free_to_layers(addr) }
    }

    /// A free past the fast path and the debug checks: to the calling thread's
    /// magazines through the depot when it can, else (destructed, for a cache without
    /// debug buftags) to the slab layer.
    ///
    /// # Safety
    /// `addr` is a buffer of this cache being freed once.
    unsafe fn free_to_layers(&self, addr: usize) {
        if self.id != 0 {
            let slot = thread::slot_for(self.id);
            // SAFETY: our own slot.
            if !slot.is_null() && unsafe { self.mag_free(slot, addr) } {
                // SAFETY: our own slot.
                unsafe { bump(&(*slot).frees) };
                return;
            }
        }
        self.slow_frees.fetch_add(1, Ordering::Relaxed);
        if self.buftag_off == 0 {
            self.destruct(addr);
        }
        self.slab_free_trusted(addr);
    }

    /// Magazine-layer allocation for the calling thread's `slot` (loaded, previous, depot).
    ///
    /// # Safety
    /// `slot` is the calling thread's slot for this cache.
    unsafe fn mag_alloc(&self, slot: *mut TSlot) -> Option<usize> {
        // SAFETY: the slot is ours (only we touch its magazine fields); magazines it points
        // to are ours; depot lists are manipulated under the depot lock.
        unsafe {
            loop {
                let s = &mut *slot;
                if s.rounds > 0 {
                    s.rounds -= 1;
                    return Some(*Magazine::round(s.loaded, s.rounds));
                }
                if s.prounds > 0 {
                    let (m, r) = (s.ploaded, s.prounds);
                    reload(s, m, r);
                    continue;
                }
                let Some((mut d, mt)) = self.lock_depot_for(slot) else {
                    continue;
                };
                let s = &mut *slot;
                let cur = MAGTYPES[mt].rounds;
                let full = d.full.pop();
                if full.is_null() {
                    return None;
                }
                if !s.ploaded.is_null() {
                    d.empty.push(s.ploaded);
                    s.ploaded = null_mut();
                }
                drop(d);
                reload(s, full, cur);
            }
        }
    }

    /// Magazine-layer free. Returns false when the buffer must go to the slab layer.
    ///
    /// # Safety
    /// `slot` is the calling thread's slot for this cache.
    unsafe fn mag_free(&self, slot: *mut TSlot, addr: usize) -> bool {
        // SAFETY: as in mag_alloc. The slot is re-read through the raw pointer after every
        // call that may re-enter this cache (allocating a magazine from a magazine cache
        // that is this cache).
        unsafe {
            loop {
                let s = &mut *slot;
                if s.rounds < s.cap {
                    *Magazine::round(s.loaded, s.rounds) = addr;
                    s.rounds += 1;
                    return true;
                }
                if !s.ploaded.is_null() && s.prounds == 0 {
                    let m = s.ploaded;
                    reload(s, m, 0);
                    continue;
                }
                let Some((mut d, mt)) = self.lock_depot_for(slot) else {
                    continue;
                };
                let s = &mut *slot;
                let empty = d.empty.pop();
                if !empty.is_null() {
                    if !s.ploaded.is_null() {
                        d.full.push(s.ploaded);
                        s.ploaded = null_mut();
                    }
                    drop(d);
                    reload(s, empty, 0);
                    continue;
                }
                drop(d);
                // No empty magazine: make one. This may re-enter this very cache when it
                // is the magazine cache of its own size.
                let mc = globals().mag_caches[mt];
                let m = match mc.alloc_addr() {
                    Some(m) => m as *mut Magazine,
                    None => return false,
                };
                let mut d = self.depot.0.lock();
                if d.magtype == mt {
                    d.empty.push(m);
                    drop(d);
                } else {
                    drop(d);
                    mc.free_addr(m as usize);
                }
            }
        }
    }

    /// The depot lock for `slot`'s next exchange with the depot, and the current
    /// magazine type. Counts contention; first resizes the magazines when depot traffic
    /// calls for it, or drains a slot whose magazines have an old size: then `None`
    /// (nothing held), and the caller looks at its slot again.
    ///
    /// # Safety
    /// `slot` is the calling thread's slot for this cache.
    unsafe fn lock_depot_for(&self, slot: *mut TSlot) -> Option<(SpinGuard<'_, Depot>, usize)> {
        let (mut d, contended) = self.depot.0.lock_contended();
        if contended {
            d.contention += 1;
        }
        if d.note_visit(self.grow_on_traffic) {
            drop(d);
            self.magazine_resize();
            return None;
        }
        let mt = d.magtype;
        let cur = MAGTYPES[mt].rounds;
        // SAFETY: by the caller the slot is ours.
        unsafe {
            if (*slot).magsize != cur {
                drop(d);
                self.drain_slot(slot);
                (*slot).magsize = cur;
                return None;
            }
        }
        Some((d, mt))
    }

    /// Destroy the slot's magazines (their rounds go back to the slab layer).
    ///
    /// # Safety
    /// `slot` is the calling thread's slot for this cache, or one nobody uses.
    unsafe fn drain_slot(&self, slot: *mut TSlot) {
        // SAFETY: by the caller.
        unsafe {
            let s = &mut *slot;
            let (l, r, p, pr, ms) = (s.loaded, s.rounds, s.ploaded, s.prounds, s.magsize);
            s.loaded = null_mut();
            s.ploaded = null_mut();
            s.rounds = 0;
            s.prounds = 0;
            s.cap = 0;
            if ms != 0 {
                let idx = magtype_index(ms);
                if !l.is_null() {
                    self.magazine_destroy(l, r, idx);
                }
                if !p.is_null() {
                    self.magazine_destroy(p, pr, idx);
                }
            }
        }
    }

    /// Return a slot's magazines to the depot (full and empty ones as they are; partly
    /// filled ones are destroyed), fold its counters, and reset it.
    ///
    /// # Safety
    /// `slot` is this cache's slot in a block that no thread is using concurrently for
    /// this cache (the calling thread's own, or a retiring one under the registry lock).
    pub(crate) unsafe fn flush_slot(&self, slot: *mut TSlot, fold: bool) {
        // SAFETY: by the caller.
        unsafe {
            if fold {
                self.fold_counters(slot);
            }
            let s = &mut *slot;
            if s.magsize == 0 {
                return;
            }
            let idx = magtype_index(s.magsize);
            let mut destroy: [(*mut Magazine, usize); 2] = [(null_mut(), 0); 2];
            {
                let mut d = self.depot.0.lock();
                let same = d.magtype == idx;
                for (k, (m, r)) in [(s.loaded, s.rounds), (s.ploaded, s.prounds)]
                    .into_iter()
                    .enumerate()
                {
                    if m.is_null() {
                        continue;
                    }
                    if same && r == s.magsize {
                        d.full.push(m);
                    } else if same && r == 0 {
                        d.empty.push(m);
                    } else {
                        destroy[k] = (m, r);
                    }
                }
            }
            s.loaded = null_mut();
            s.ploaded = null_mut();
            s.rounds = 0;
            s.prounds = 0;
            s.cap = 0;
            s.magsize = 0;
            for (m, r) in destroy {
                if !m.is_null() {
                    self.magazine_destroy(m, r, idx);
                }
            }
        }
    }

    /// Free the `rounds` objects of `m` to the slab layer (destructing them) and free the
    /// magazine itself.
    ///
    /// # Safety
    /// `m` is a magazine of type `idx` owned by the caller, with `rounds` valid rounds.
    unsafe fn magazine_destroy(&self, m: *mut Magazine, rounds: usize, idx: usize) {
        for i in 0..rounds {
            // SAFETY: by the caller.
            let buf = unsafe { *Magazine::round(m, i) };
            if self.buftag_off == 0 {
                self.destruct(buf);
            }
            self.slab_free_trusted(buf);
        }
        // SAFETY: magazines of type idx come from that magazine cache.
        unsafe { globals().mag_caches[idx].free_addr(m as usize) };
    }

    fn depot_ws_update(&self) {
        let mut d = self.depot.0.lock();
        d.full.reaplimit = d.full.min;
        d.full.min = d.full.total;
        d.empty.reaplimit = d.empty.min;
        d.empty.min = d.empty.total;
    }

    /// Free the magazines that stayed unused for a whole interval.
    fn depot_ws_reap(&self) {
        for full in [true, false] {
            let mut n = {
                let d = self.depot.0.lock();
                let l = if full { &d.full } else { &d.empty };
                l.reaplimit.min(l.min)
            };
            while n > 0 {
                n -= 1;
                let (m, idx) = {
                    let mut d = self.depot.0.lock();
                    let idx = d.magtype;
                    let m = if full { d.full.pop() } else { d.empty.pop() };
                    (m, idx)
                };
                if m.is_null() {
                    break;
                }
                let r = if full { MAGTYPES[idx].rounds } else { 0 };
                // SAFETY: popped from the depot, now ours.
                unsafe { self.magazine_destroy(m, r, idx) };
            }
        }
    }

    fn depot_purge(&self) {
        self.depot_ws_update();
        self.depot_ws_update();
        self.depot_ws_reap();
    }

    /// Grow the magazine size (on depot contention): switch the depot to the next type and
    /// destroy every magazine of the old type it holds. Threads switch lazily: a slot whose
    /// size differs from the depot's drains its magazines on its next depot visit.
    fn magazine_resize(&self) {
        let (mut fulls, mut empties, old) = {
            let mut d = self.depot.0.lock();
            let old = d.magtype;
            if old + 1 >= MAGTYPES.len() || self.chunksize >= MAGTYPES[old].maxbuf {
                return;
            }
            let f = core::mem::replace(&mut d.full, MagList::new());
            let e = core::mem::replace(&mut d.empty, MagList::new());
            d.magtype = old + 1;
            d.resizes += 1;
            d.contention_prev = d.contention;
            (f, e, old)
        };
        loop {
            let m = fulls.pop();
            if m.is_null() {
                break;
            }
            // SAFETY: taken off the depot.
            unsafe { self.magazine_destroy(m, MAGTYPES[old].rounds, old) };
        }
        loop {
            let m = empties.pop();
            if m.is_null() {
                break;
            }
            // SAFETY: taken off the depot.
            unsafe { self.magazine_destroy(m, 0, old) };
        }
    }
}

/// Make `mag` (with `rounds` rounds) the loaded magazine; the loaded one becomes previous.
#[inline(always)]
fn reload(s: &mut TSlot, mag: *mut Magazine, rounds: usize) {
    s.ploaded = s.loaded;
    s.prounds = s.rounds;
    s.loaded = mag;
    s.rounds = rounds;
    s.cap = if mag.is_null() { 0 } else { s.magsize };
}

// ---------------------------------------------------------------------------------------
// Whole-allocator operations.

/// Call `f` on every cache (cache-list lock held: `f` must not create or destroy caches).
pub fn for_each_cache(f: &mut dyn FnMut(&'static Cache)) {
    let l = CACHE_LIST.lock();
    let mut cp = l.head;
    while !cp.is_null() {
        // SAFETY: live under CACHE_LIST.
        let c = unsafe { &*cp };
        f(c);
        // SAFETY: as above.
        cp = unsafe { (*c.links.get()).next };
    }
}

pub(crate) fn lockup_caches() {
    CACHE_LIST.raw().lock();
    thread::registry_lock_raw().lock();
    // SAFETY: CACHE_LIST held (raw).
    let mut cp = unsafe { CACHE_LIST.data_unlocked().head };
    while !cp.is_null() {
        // SAFETY: live under CACHE_LIST.
        let c = unsafe { &*cp };
        c.depot.0.raw().lock();
        c.slab.0.raw().lock();
        // SAFETY: as above.
        cp = unsafe { (*c.links.get()).next };
    }
}

/// # Safety
/// After `lockup_caches`, by the same or the forked child thread.
pub(crate) unsafe fn release_caches() {
    // SAFETY: lockup holds CACHE_LIST.
    let mut cp = unsafe { CACHE_LIST.data_unlocked().head };
    while !cp.is_null() {
        // SAFETY: live under CACHE_LIST; locks taken by lockup.
        unsafe {
            let c = &*cp;
            c.slab.0.raw().unlock();
            c.depot.0.raw().unlock();
            cp = (*c.links.get()).next;
        }
    }
    // SAFETY: taken by lockup.
    unsafe {
        thread::registry_lock_raw().unlock();
        CACHE_LIST.raw().unlock();
    }
}

pub(crate) fn cache_count() -> usize {
    CACHE_LIST.lock().count
}

/// Test hook: run `f` while holding the depot lock of `c` (forces depot contention).
pub(crate) fn with_depot_locked(c: &Cache, f: &mut dyn FnMut(&dyn Fn() -> u32)) {
    let _g = c.depot.0.lock();
    let waiters = || c.depot.0.raw().waiters();
    f(&waiters);
}
