//! The internal arena tree (heap → vmem_internal → vmem_seg / vmem_hash /
//! vmem_vmem), its bootstrap from static reserves, the arena list, the
//! global segment free list, the populate lock, lockup/release and update.

use crate::arena::{CreateArgs, HASH_INITIAL};
use crate::error::VmemError;
use crate::lock::SpinLock;
use crate::seg::{Seg, SEG_SIZE};
use crate::source::{QCacheFactory, Source};
use crate::types::{CreateFlags, Policy, XAllocRequest};
use crate::{Addr, Vmem};
use core::cell::UnsafeCell;
use core::fmt;
use core::mem::{size_of, MaybeUninit};
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering};

/// Statically allocated segment structures that bootstrap the tree.
const SEG_INITIAL: usize = 128;
/// Statically allocated arenas: heap, vmem_internal, vmem_seg, vmem_hash,
/// vmem_vmem.
const VMEM_INITIAL: usize = 5;
/// Most populator arenas (heap, vmem_internal, vmem_seg).
const MAX_POPULATORS: usize = 4;
/// vmem_internal imports at least this many pages at a time.
const INTERNAL_IMPORT_PAGES: usize = 16;
/// Wholly free imported spans `heap` keeps instead of giving them back to
/// the page source at once (hysteresis); [`update`] gives them back.
pub const HEAP_RETAIN: usize = 4 << 20;

/// A static whose contents are protected by a lock or by init ordering.
struct Racy<T>(UnsafeCell<T>);
// SAFETY: every access goes through a lock or the init state machine
// documented at each use.
unsafe impl<T> Sync for Racy<T> {}

#[repr(C, align(64))]
struct Vmem0([MaybeUninit<Vmem>; VMEM_INITIAL]);

static SEG0: Racy<[MaybeUninit<Seg>; SEG_INITIAL]> = Racy(UnsafeCell::new(
    [const { MaybeUninit::uninit() }; SEG_INITIAL],
));
static VMEM0: Racy<Vmem0> = Racy(UnsafeCell::new(Vmem0(
    [const { MaybeUninit::uninit() }; VMEM_INITIAL],
)));

/// 0: not built, 1: being built, 2: ready.
static INIT_STATE: AtomicU8 = AtomicU8::new(0);
static INIT_SOURCE: Racy<Option<&'static dyn Source>> = Racy(UnsafeCell::new(None));
static INIT_PAGE: AtomicUsize = AtomicUsize::new(0);

static HEAP: AtomicPtr<Vmem> = AtomicPtr::new(ptr::null_mut());
static INTERNAL: AtomicPtr<Vmem> = AtomicPtr::new(ptr::null_mut());
static SEG_ARENA: AtomicPtr<Vmem> = AtomicPtr::new(ptr::null_mut());
static HASH_ARENA: AtomicPtr<Vmem> = AtomicPtr::new(ptr::null_mut());
static VMEM_ARENA: AtomicPtr<Vmem> = AtomicPtr::new(ptr::null_mut());

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// The arena list (creation order), its last arena (appends are O(1): a
/// process creates an arena per size class and more) and its lock.
static LIST_LOCK: SpinLock = SpinLock::new();
static LIST_HEAD: AtomicPtr<Vmem> = AtomicPtr::new(ptr::null_mut());
static LIST_TAIL: AtomicPtr<Vmem> = AtomicPtr::new(ptr::null_mut());

/// The populate lock and its owner (a thread id, 0 when free).
static POP_LOCK: SpinLock = SpinLock::new();
static POP_OWNER: AtomicUsize = AtomicUsize::new(0);
static POPULATORS: [AtomicPtr<Vmem>; MAX_POPULATORS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_POPULATORS];
static NPOPULATORS: AtomicUsize = AtomicUsize::new(0);

/// The global segment free list (leaf lock).
static SEGFREE_LOCK: SpinLock = SpinLock::new();
static SEGFREE: Racy<*mut Seg> = Racy(UnsafeCell::new(ptr::null_mut()));
/// The populator pool (same lock): structures of pinned chunks, for the
/// populator arenas only, linked through `knext`, and their number.
static POOL: Racy<*mut Seg> = Racy(UnsafeCell::new(ptr::null_mut()));
static NPOOL: Racy<usize> = Racy(UnsafeCell::new(0));
/// Below this many pooled structures populate takes a pinned chunk.
const POOL_LOW: usize = 64;

static FACTORY_LOCK: SpinLock = SpinLock::new();
static FACTORY: Racy<Option<&'static dyn QCacheFactory>> = Racy(UnsafeCell::new(None));

/// Write a message to stderr with write(2) and abort: vmem's answer to a
/// broken invariant or a source that breaks its contract. Never allocates.
#[cold]
pub(crate) fn fatal(args: fmt::Arguments<'_>) -> ! {
    let mut buf = StackStr::<512>::new();
    let _ = fmt::write(&mut buf, format_args!("umem-vmem: fatal: {args}\n"));
    let b = buf.as_str().as_bytes();
    // SAFETY: writing a valid buffer to fd 2, then aborting.
    unsafe {
        libc::write(2, b.as_ptr().cast(), b.len());
        libc::abort();
    }
}

/// A fixed-capacity string for messages and names (truncates).
pub(crate) struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackStr<N> {
    pub(crate) const fn new() -> Self {
        StackStr {
            buf: [0; N],
            len: 0,
        }
    }
    pub(crate) fn as_str(&self) -> &str {
        // Only whole chars are ever copied in.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut tmp = [0u8; 4];
            let e = c.encode_utf8(&mut tmp).as_bytes();
            if self.len + e.len() > N {
                return Err(fmt::Error);
            }
            self.buf[self.len..self.len + e.len()].copy_from_slice(e);
            self.len += e.len();
        }
        Ok(())
    }
}

pub(crate) fn next_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Take a structure for an arena's reserve: populator arenas take from
/// the populator pool first, every arena from the global free list.
pub(crate) fn getseg_global(populator: bool) -> Option<*mut Seg> {
    SEGFREE_LOCK.lock();
    // SAFETY: SEGFREE and POOL are protected by SEGFREE_LOCK; listed
    // structures are unused and valid.
    let r = unsafe {
        let p = *POOL.0.get();
        if populator && !p.is_null() {
            *POOL.0.get() = (*p).knext;
            *NPOOL.0.get() -= 1;
            Some(p)
        } else {
            let head = *SEGFREE.0.get();
            if head.is_null() {
                None
            } else {
                unlink_global(head);
                Some(head)
            }
        }
    };
    SEGFREE_LOCK.unlock();
    r
}

/// Give a structure of a pinned chunk to the populator pool.
pub(crate) fn putseg_pool(s: *mut Seg) {
    SEGFREE_LOCK.lock();
    // SAFETY: protected by SEGFREE_LOCK; an unused structure.
    unsafe {
        (*s).knext = *POOL.0.get();
        *POOL.0.get() = s;
        *NPOOL.0.get() += 1;
    }
    SEGFREE_LOCK.unlock();
}

/// Whether the populator pool is low (the next populate takes a pinned
/// chunk for it).
pub(crate) fn pool_low() -> bool {
    SEGFREE_LOCK.lock();
    // SAFETY: protected by SEGFREE_LOCK.
    let n = unsafe { *NPOOL.0.get() };
    SEGFREE_LOCK.unlock();
    n < POOL_LOW
}

/// Push `s` on the global list and count it in its chunk, queueing the
/// chunk once all its structures are listed.
///
/// # Safety
/// SEGFREE_LOCK held; `s` is an unused structure not on the list.
unsafe fn push_global(s: *mut Seg) {
    // SAFETY: per the contract.
    unsafe {
        let head = *SEGFREE.0.get();
        (*s).knext = head;
        (*s).kprev = ptr::null_mut();
        if !head.is_null() {
            (*head).kprev = s;
        }
        *SEGFREE.0.get() = s;
        if let Some(h) = chunk_of(s) {
            (*h).count += 1;
            if (*h).count == chunk_capacity(h) && !(*h).queued && !(*h).pinned {
                (*h).queued = true;
                (*h).next = *FULL_CHUNKS.0.get();
                *FULL_CHUNKS.0.get() = h;
            }
        }
    }
}

/// Take `s` off the global list (uncounting it in its chunk).
///
/// # Safety
/// SEGFREE_LOCK held; `s` is on the list.
unsafe fn unlink_global(s: *mut Seg) {
    // SAFETY: per the contract; the list is doubly linked (knext/kprev).
    unsafe {
        let prev = (*s).kprev;
        let next = (*s).knext;
        if prev.is_null() {
            *SEGFREE.0.get() = next;
        } else {
            (*prev).knext = next;
        }
        if !next.is_null() {
            (*next).kprev = prev;
        }
        if let Some(h) = chunk_of(s) {
            (*h).count -= 1;
        }
    }
}

/// Give a structure to the global segment free list.
pub(crate) fn putseg_global(s: *mut Seg) {
    SEGFREE_LOCK.lock();
    // SAFETY: protected by SEGFREE_LOCK; the caller hands over an unused
    // structure.
    unsafe { push_global(s) };
    SEGFREE_LOCK.unlock();
}

/// Give a NULL-terminated chain (through `knext`) to the global list.
pub(crate) fn putsegs_global(mut head: *mut Seg) {
    if head.is_null() {
        return;
    }
    SEGFREE_LOCK.lock();
    // SAFETY: protected by SEGFREE_LOCK; the caller hands over a
    // well-formed chain of unused structures.
    unsafe {
        while !head.is_null() {
            let next = (*head).knext;
            push_global(head);
            head = next;
        }
    }
    SEGFREE_LOCK.unlock();
}

/// The header at the start of every page of a chunk of segment structures
/// that populate took from `vmem_seg` (the page's first structure slot).
#[repr(C)]
struct ChunkHead {
    /// The chunk's first page (whose header counts for the chunk).
    base: usize,
    /// The chunk's size in bytes (as allocated from `vmem_seg`).
    size: usize,
    /// The chunk's structures on the global free list.
    count: usize,
    /// Queued on FULL_CHUNKS.
    queued: bool,
    /// Never given back (its structures feed the populator pool).
    pinned: bool,
    next: *mut ChunkHead,
}
const _: () = assert!(size_of::<ChunkHead>() <= SEG_SIZE);

/// Write the chunk headers of a fresh chunk `[p, p + size)` of `page`-sized
/// pages from `vmem_seg`.
///
/// # Safety
/// The memory is fresh, writable and page aligned.
pub(crate) unsafe fn init_seg_chunk(p: Addr, size: usize, page: usize, pinned: bool) {
    let mut pg = p;
    while pg < p + size {
        // SAFETY: per the contract; the slot is never handed out as a Seg.
        unsafe {
            ptr::write(
                pg as *mut ChunkHead,
                ChunkHead {
                    base: p,
                    size,
                    count: 0,
                    queued: false,
                    pinned,
                    next: ptr::null_mut(),
                },
            )
        };
        pg += page;
    }
}

/// Page size of the chunks (vmem_seg's quantum), 0 before the tree is
/// built (only static structures exist then).
static CHUNK_PAGE: AtomicUsize = AtomicUsize::new(0);
/// Chunks all of whose structures are on the global list (lazily: a chunk
/// is checked again when taken off), linked through `ChunkHead::next`.
static FULL_CHUNKS: Racy<*mut ChunkHead> = Racy(UnsafeCell::new(ptr::null_mut()));

/// The header of the chunk holding `s`, or `None` for a static structure.
fn chunk_of(s: *mut Seg) -> Option<*mut ChunkHead> {
    let base = SEG0.0.get() as Addr;
    let a = s as Addr;
    if a >= base && a < base + SEG_INITIAL * SEG_SIZE {
        return None;
    }
    let page = CHUNK_PAGE.load(Ordering::Relaxed);
    let h = (a & !(page - 1)) as *mut ChunkHead;
    // SAFETY: every non-static structure lies in a chunk page whose first
    // slot holds a header naming the chunk's first page.
    Some(unsafe { (*h).base as *mut ChunkHead })
}

/// Structures a chunk holds.
///
/// # Safety
/// `h` is a chunk's first header.
unsafe fn chunk_capacity(h: *mut ChunkHead) -> usize {
    let page = CHUNK_PAGE.load(Ordering::Relaxed);
    // SAFETY: per the contract.
    unsafe { (*h).size / page * (page / SEG_SIZE - 1) }
}

/// Give back to `vmem_seg` every ordinary chunk of segment structures
/// all of whose structures are on the global free list (after arenas were
/// destroyed or shrank). The structures that describe chunks in `vmem_seg`
/// and fill the populators' reserves come from pinned chunks (the
/// populator pool), so an ordinary chunk depends on nothing but its own
/// structures. Called by [`update`] with the arena-list lock held. Returns
/// the bytes given back.
fn trim_free_segs() -> usize {
    let Some(sa) = seg_arena() else {
        return 0;
    };
    let mut given = 0;
    loop {
        SEGFREE_LOCK.lock();
        // SAFETY: the list and the queue are protected by SEGFREE_LOCK.
        let chunk = unsafe {
            let mut found = None;
            while found.is_none() {
                let h = *FULL_CHUNKS.0.get();
                if h.is_null() {
                    break;
                }
                *FULL_CHUNKS.0.get() = (*h).next;
                (*h).queued = false;
                if (*h).count == chunk_capacity(h) {
                    // Every slot of the chunk is listed: take them off.
                    let page = CHUNK_PAGE.load(Ordering::Relaxed);
                    let mut pg = (*h).base;
                    while pg < (*h).base + (*h).size {
                        let mut a = pg + SEG_SIZE;
                        while a < pg + page {
                            unlink_global(a as *mut Seg);
                            a += SEG_SIZE;
                        }
                        pg += page;
                    }
                    found = Some(((*h).base, (*h).size));
                }
            }
            found
        };
        SEGFREE_LOCK.unlock();
        let Some((base, size)) = chunk else {
            return given;
        };
        if let Err(e) = sa.xfree(base, size) {
            fatal(format_args!("freeing a chunk of segments: {e}"));
        }
        given += size;
    }
}

/// Structures on the global free list (for tests and stats).
pub fn global_free_segs() -> usize {
    SEGFREE_LOCK.lock();
    let mut n = 0;
    // SAFETY: protected by SEGFREE_LOCK.
    unsafe {
        let mut s = *SEGFREE.0.get();
        while !s.is_null() {
            n += 1;
            s = (*s).knext;
        }
    }
    SEGFREE_LOCK.unlock();
    n
}

pub(crate) fn populating_thread() -> usize {
    POP_OWNER.load(Ordering::Relaxed)
}

pub(crate) fn populate_lock(me: usize) {
    POP_LOCK.lock();
    POP_OWNER.store(me, Ordering::Relaxed);
}

pub(crate) fn populate_unlock() {
    POP_OWNER.store(0, Ordering::Relaxed);
    POP_LOCK.unlock();
}

pub(crate) fn npopulators() -> usize {
    NPOPULATORS.load(Ordering::Acquire)
}

pub(crate) fn populator(i: usize) -> &'static Vmem {
    // SAFETY: registered populators are live for the life of the process.
    unsafe { &*POPULATORS[i].load(Ordering::Acquire) }
}

pub(crate) fn register_populator(vm: &'static Vmem) {
    let i = NPOPULATORS.load(Ordering::Relaxed);
    if i >= MAX_POPULATORS {
        fatal(format_args!("too many populator arenas"));
    }
    POPULATORS[i].store(vm as *const Vmem as *mut Vmem, Ordering::Release);
    NPOPULATORS.store(i + 1, Ordering::Release);
}

pub(crate) fn seg_arena() -> Option<&'static Vmem> {
    let p = SEG_ARENA.load(Ordering::Acquire);
    // SAFETY: internal arenas live forever once published.
    if p.is_null() {
        None
    } else {
        Some(unsafe { &*p })
    }
}

pub(crate) fn heap_arena() -> Option<&'static Vmem> {
    arena(&HEAP)
}

fn arena(p: &AtomicPtr<Vmem>) -> Option<&'static Vmem> {
    let p = p.load(Ordering::Acquire);
    if p.is_null() {
        None
    } else {
        // SAFETY: internal arenas live forever once published.
        Some(unsafe { &*p })
    }
}

/// Memory for a new `Vmem` from vmem_vmem.
pub(crate) fn alloc_vmem_struct() -> Result<*mut Vmem, VmemError> {
    let va = arena(&VMEM_ARENA).ok_or(VmemError::NotInitialized)?;
    va.xalloc(&XAllocRequest::new(size_of::<Vmem>()).align(64))
        .map(|a| a as *mut Vmem)
        .map_err(|_| VmemError::NoMetadata)
}

pub(crate) fn free_vmem_struct(p: *mut Vmem) {
    if let Some(va) = arena(&VMEM_ARENA) {
        if let Err(e) = va.xfree(p as Addr, size_of::<Vmem>()) {
            fatal(format_args!("freeing an arena structure: {e}"));
        }
    }
}

/// A zeroed hash table of `n` buckets from vmem_hash.
pub(crate) fn alloc_hash_table(n: usize) -> Option<*mut *mut Seg> {
    let ha = arena(&HASH_ARENA)?;
    let bytes = n.checked_mul(size_of::<*mut Seg>())?;
    let a = ha.xalloc(&XAllocRequest::new(bytes)).ok()?;
    let t = a as *mut *mut Seg;
    // SAFETY: vmem_hash hands out `bytes` of writable memory (the tree's
    // page source contract).
    unsafe { ptr::write_bytes(t, 0, n) };
    Some(t)
}

pub(crate) fn free_hash_table(t: *mut *mut Seg, n: usize) {
    if let Some(ha) = arena(&HASH_ARENA) {
        if let Err(e) = ha.xfree(t as Addr, n * size_of::<*mut Seg>()) {
            fatal(format_args!("freeing a hash table: {e}"));
        }
    }
}

pub(crate) fn list_append(vm: &'static Vmem) {
    LIST_LOCK.lock();
    let p = vm as *const Vmem as *mut Vmem;
    let tail = LIST_TAIL.load(Ordering::Relaxed);
    if tail.is_null() {
        LIST_HEAD.store(p, Ordering::Relaxed);
    } else {
        // SAFETY: the tail is a live listed arena; list lock held.
        unsafe { (*tail).next.store(p, Ordering::Relaxed) };
    }
    LIST_TAIL.store(p, Ordering::Relaxed);
    LIST_LOCK.unlock();
}

pub(crate) fn list_remove(vm: &'static Vmem) {
    LIST_LOCK.lock();
    let p = vm as *const Vmem as *mut Vmem;
    let next = vm.next.load(Ordering::Relaxed);
    let mut prev: *mut Vmem = ptr::null_mut();
    let mut cur = LIST_HEAD.load(Ordering::Relaxed);
    // SAFETY: arenas on the list are live; list lock held.
    unsafe {
        while !cur.is_null() && cur != p {
            prev = cur;
            cur = (*cur).next.load(Ordering::Relaxed);
        }
        if cur == p {
            if prev.is_null() {
                LIST_HEAD.store(next, Ordering::Relaxed);
            } else {
                (*prev).next.store(next, Ordering::Relaxed);
            }
            if LIST_TAIL.load(Ordering::Relaxed) == p {
                LIST_TAIL.store(prev, Ordering::Relaxed);
            }
        }
    }
    LIST_LOCK.unlock();
}

fn each_listed(f: &mut dyn FnMut(&'static Vmem)) {
    let mut cur = LIST_HEAD.load(Ordering::Relaxed);
    while !cur.is_null() {
        // SAFETY: list lock held by the caller; listed arenas are live.
        let vm: &'static Vmem = unsafe { &*cur };
        f(vm);
        cur = vm.next.load(Ordering::Relaxed);
    }
}

pub(crate) fn with_list_lock<R>(f: impl FnOnce() -> R) -> R {
    LIST_LOCK.lock();
    let r = f();
    LIST_LOCK.unlock();
    r
}

pub(crate) fn try_with_list_lock<R>(f: impl FnOnce() -> R) -> Option<R> {
    if !LIST_LOCK.try_lock() {
        return None;
    }
    let r = f();
    LIST_LOCK.unlock();
    Some(r)
}

pub(crate) fn qcache_factory() -> Option<&'static dyn QCacheFactory> {
    FACTORY_LOCK.lock();
    // SAFETY: FACTORY is protected by FACTORY_LOCK.
    let f = unsafe { *FACTORY.0.get() };
    FACTORY_LOCK.unlock();
    f
}

/// Build the tree if the `std` feature allows it, else report.
pub(crate) fn ensure_init() -> Result<(), VmemError> {
    if INIT_STATE.load(Ordering::Acquire) == 2 {
        return Ok(());
    }
    #[cfg(feature = "std")]
    {
        init(&crate::mmap::MMAP_SOURCE, crate::mmap::page_size()).or_else(|e| {
            if e == VmemError::AlreadyInitialized {
                Ok(())
            } else {
                Err(e)
            }
        })
    }
    #[cfg(not(feature = "std"))]
    {
        if INIT_STATE.load(Ordering::Acquire) == 1 {
            wait_ready();
            return Ok(());
        }
        Err(VmemError::NotInitialized)
    }
}

fn wait_ready() {
    while INIT_STATE.load(Ordering::Acquire) != 2 {
        core::hint::spin_loop();
    }
}

/// Build the internal arena tree on `heap_source` (which must hand out
/// readable, writable memory aligned to `page_size`).
///
/// Idempotent: a second call with the same source and page size returns
/// `Ok`; with another, `Err(AlreadyInitialized)`.
pub fn init(heap_source: &'static dyn Source, page_size: usize) -> Result<(), VmemError> {
    if page_size == 0 || !page_size.is_power_of_two() {
        return Err(VmemError::BadPageSize { page_size });
    }
    match INIT_STATE.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // SAFETY: state 1 gives this thread exclusive use of the
            // bootstrap statics until it stores 2.
            unsafe { build(heap_source, page_size) };
            INIT_STATE.store(2, Ordering::Release);
            Ok(())
        }
        Err(_) => {
            wait_ready();
            // SAFETY: written once before state 2 was published.
            let src = unsafe { *INIT_SOURCE.0.get() };
            let same = src.is_some_and(|s| ptr::addr_eq(s as *const dyn Source, heap_source));
            if same && INIT_PAGE.load(Ordering::Relaxed) == page_size {
                Ok(())
            } else {
                Err(VmemError::AlreadyInitialized)
            }
        }
    }
}

unsafe fn build(src: &'static dyn Source, page: usize) {
    // SAFETY: exclusive during init (state 1).
    unsafe {
        *INIT_SOURCE.0.get() = Some(src);
        INIT_PAGE.store(page, Ordering::Relaxed);
        CHUNK_PAGE.store(page, Ordering::Relaxed);
        let segs = &mut *SEG0.0.get();
        for s in segs.iter_mut().rev() {
            let p = s.as_mut_ptr();
            ptr::write(p, Seg::empty(0));
            putseg_global(p);
        }
    }
    let slot = |i: usize| -> *mut Vmem {
        // SAFETY: VMEM0 slots are used once each, here.
        unsafe { (*VMEM0.0.get()).0[i].as_mut_ptr() }
    };
    let mk = |name: &str, q: usize, source: Option<&'static dyn Source>, flags, i, import_min| {
        match Vmem::create_common(CreateArgs {
            name,
            span: None,
            quantum: q,
            source,
            qcache_max: 0,
            flags,
            mem: Some(slot(i)),
            import_min,
            retain: if i == 0 { HEAP_RETAIN } else { 0 },
        }) {
            Ok(v) => v,
            Err(e) => fatal(format_args!("cannot create internal arena {name}: {e}")),
        }
    };
    let heap = mk(
        "heap",
        page,
        Some(src),
        CreateFlags::POPULATOR,
        0,
        INTERNAL_IMPORT_PAGES * page,
    );
    HEAP.store(heap as *const Vmem as *mut Vmem, Ordering::Release);
    let internal = mk(
        "vmem_internal",
        page,
        Some(heap),
        CreateFlags::POPULATOR,
        1,
        INTERNAL_IMPORT_PAGES * page,
    );
    INTERNAL.store(internal as *const Vmem as *mut Vmem, Ordering::Release);
    let seg = mk(
        "vmem_seg",
        page,
        Some(internal),
        CreateFlags::POPULATOR,
        2,
        0,
    );
    SEG_ARENA.store(seg as *const Vmem as *mut Vmem, Ordering::Release);
    let hash = mk("vmem_hash", 8, Some(internal), CreateFlags::NONE, 3, 0);
    HASH_ARENA.store(hash as *const Vmem as *mut Vmem, Ordering::Release);
    let vmem = mk("vmem_vmem", 64, Some(internal), CreateFlags::NONE, 4, 0);
    // The static arenas become allocations of vmem_vmem, as in vmem.c.
    let base = slot(0) as Addr;
    let sz = size_of::<Vmem>();
    if let Err(e) = vmem.add(base, sz * VMEM_INITIAL) {
        fatal(format_args!("vmem_vmem bootstrap span: {e}"));
    }
    for i in 0..VMEM_INITIAL {
        let want = base + i * sz;
        let r = vmem.xalloc(
            &XAllocRequest::new(sz)
                .align(64)
                .minaddr(want)
                .maxaddr(want + sz)
                .policy(Policy::BestFit),
        );
        if r != Ok(want) {
            fatal(format_args!("vmem_vmem bootstrap slot {i}: {r:?}"));
        }
    }
    VMEM_ARENA.store(vmem as *const Vmem as *mut Vmem, Ordering::Release);
}

/// Whether the internal tree is built.
pub fn is_initialized() -> bool {
    INIT_STATE.load(Ordering::Acquire) == 2
}

/// The page-quantum `heap` arena other arenas import from.
///
/// With feature `std`, builds the tree on the built-in mmap source if
/// nobody called [`init`].
///
/// # Panics
/// Without `std`, if [`init`] was not called; with `std`, if building the
/// tree fails (the message says why).
pub fn heap() -> &'static Vmem {
    if let Err(e) = ensure_init() {
        panic!("umem_vmem::heap(): {e}");
    }
    match arena(&HEAP) {
        Some(h) => h,
        None => panic!("umem_vmem::heap(): not initialised"),
    }
}

/// The `heap` arena, or `None` if the tree is not built (never builds it).
pub fn try_heap() -> Option<&'static Vmem> {
    if is_initialized() {
        arena(&HEAP)
    } else {
        None
    }
}

/// Install the quantum-cache factory used by arenas created afterwards with
/// `qcache_max > 0`. The last call wins.
pub fn set_qcache_factory(factory: &'static dyn QCacheFactory) {
    FACTORY_LOCK.lock();
    // SAFETY: protected by FACTORY_LOCK.
    unsafe { *FACTORY.0.get() = Some(factory) };
    FACTORY_LOCK.unlock();
}

/// Take every vmem lock in the fixed order (arena list, populate lock, each
/// arena in creation order, global segment list, factory) — `vmem_lockup`,
/// for the `pthread_atfork` prepare handler.
pub fn lockup() {
    LIST_LOCK.lock();
    POP_LOCK.lock();
    each_listed(&mut |vm| vm.lock());
    SEGFREE_LOCK.lock();
    FACTORY_LOCK.lock();
}

/// Drop every lock [`lockup`] took (`vmem_release`), in the parent and in the
/// child after fork.
///
/// # Safety
/// Must follow a [`lockup`] by the same thread (or be its forked child).
pub unsafe fn release() {
    FACTORY_LOCK.unlock();
    SEGFREE_LOCK.unlock();
    each_listed(&mut |vm| vm.unlock());
    POP_OWNER.store(0, Ordering::Relaxed);
    POP_LOCK.unlock();
    LIST_LOCK.unlock();
}

/// Periodic maintenance (`vmem_update`): rescale every arena's hash table
/// (grow or shrink toward one segment per bucket) and give every wholly
/// free imported span an arena retained (see [`Vmem::set_retain`]) back to
/// its source.
pub fn update() {
    with_list_lock(|| {
        each_listed(&mut |vm| {
            vm.rescale_list_held(false);
            vm.trim_reserve();
        });
        trim_free_segs();
        // Freed chunks gave their describing structures to populators.
        each_listed(&mut |vm| {
            if vm.is_populator() {
                vm.trim_reserve();
            }
        });
        // Sources come before their importers on the list, so a span an
        // importer gives back may land in a source trimmed already: repeat
        // until a pass gives nothing back (at most the depth of the tree).
        loop {
            let mut n = 0;
            each_listed(&mut |vm| n += vm.trim_retained(0, None));
            if n == 0 {
                break;
            }
        }
    });
}

/// [`Vmem::verify`] every arena; the first error found.
pub fn verify() -> Result<(), VmemError> {
    let mut r = Ok(());
    with_list_lock(|| {
        each_listed(&mut |vm| {
            if r.is_ok() {
                r = vm.verify();
            }
        })
    });
    r
}

/// Call `f` for every arena, in creation order, holding the arena-list lock
/// (so `f` must not create or destroy arenas).
pub fn for_each_arena(f: &mut dyn FnMut(&'static Vmem)) {
    with_list_lock(|| each_listed(f));
}

/// Testing aid: the number of arenas on the list.
pub fn arena_count() -> usize {
    let mut n = 0;
    for_each_arena(&mut |_| n += 1);
    n
}

#[allow(dead_code)]
pub(crate) fn internal_arena() -> Option<&'static Vmem> {
    arena(&INTERNAL)
}

#[allow(dead_code)]
const _: () = assert!(HASH_INITIAL.is_power_of_two());
