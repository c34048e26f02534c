//! The thread's magazine block: every thread that allocates gets one [`MagazineBlock`]
//! holding its [`ThreadCache`] (loaded and previous magazine) for each cache, found by the
//! cache's id; the one TLS word that points at it; and the list of all live blocks.
//!
//! A block is one page from `umem_internal`: the thread caches of ids 1..64 are inline (the
//! internal caches and umem-global's size classes are created first, so they get these
//! ids), the block header takes the place of the reserved id 0, and ids from 64 on live in
//! [`SlotChunk`]s of 64 reached through a directory that is allocated on first use (4096
//! ids in all). Only the owning thread touches a thread cache's magazine fields.
//!
//! The TLS word (module `tls_word`: initial-exec on x86_64 Linux, a const-initialised
//! `thread_local!` `Cell` elsewhere) has no destructor; a `pthread_key_create` destructor
//! flushes the thread's magazines to the depots at thread exit and points the word at the
//! *dead* block, so allocations made by later TLS destructors go to the slab layer.
//!
//! All live blocks are on a list under the *block-list lock* (`BLOCK_LIST`). Other threads
//! touch a block only under that lock: `Cache::destroy` takes the destroyed cache's thread
//! cache from every block, `stats` sums counters, and a thread publishes a new chunk under
//! it. Thread exit holds the lock for its whole flush, so a destroy can never miss
//! magazines in transit from an exiting thread to a depot.

use core::ptr::{self, null_mut};
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::diag::fatal;
use crate::magazine::ThreadCache;
use crate::metadata::{arena_alloc, arena_free, arenas};
use umem_vmem::sync::{RawSpin, SpinLock};

pub(crate) const SLOTS_PER_CHUNK: usize = 64;
pub(crate) const CHUNKS: usize = 64;
/// Number of cache ids; id 0 is reserved and its slot never holds a magazine.
pub(crate) const MAX_IDS: usize = SLOTS_PER_CHUNK * CHUNKS;

#[repr(C)]
pub(crate) struct SlotChunk {
    pub slots: [ThreadCache; SLOTS_PER_CHUNK],
}

/// A thread's block: one page. The slots of cache ids 1..64 (the internal caches and, in
/// umem-global, every size class: they are created first) are inline, so the hit path
/// reaches them straight from the block pointer; the block's header takes the place of the
/// slot of the reserved id 0. Slots of higher ids live in [`SlotChunk`]s reached through a
/// directory that is only allocated when such an id is first used.
#[repr(C, align(64))]
pub(crate) struct MagazineBlock {
    hdr: Header,
    slots: [ThreadCache; SLOTS_PER_CHUNK - 1],
}

/// The block header, laid over slot 0. Its words at the offsets of a slot's `top`,
/// `loaded` and `limit` are equal (the directory pointer, three times) and those at
/// `ploaded` and `prounds` are always zero, so a hit path with fast index 0 (debug caches)
/// reads a slot with neither rounds nor room and no previous magazine, and misses,
/// exactly as it would on a real empty slot. Nothing writes slot 0 through a `ThreadCache` pointer: id 0 never gets
/// a slot from `slot_for`, the hit paths write only after a hit, and the flushes skip it.
#[repr(C)]
struct Header {
    /// Chunks of ids 64.. (`chunks[0]` unused); null until needed. Kept three times, at
    /// a slot's `top`, `loaded` and `limit`, so that those read as a magazine with neither
    /// rounds nor room (`top == loaded`, `top >= limit`); [`Header::set_dir`] writes all
    /// three.
    dir: *mut Dir,
    dir_at_loaded: *mut Dir,
    dir_at_limit: *mut Dir,
    zero_ploaded: usize,
    zero_prounds: usize,
    next: *mut MagazineBlock,
    prev: *mut MagazineBlock,
    /// The global reap generation this thread has flushed up to (its low 32 bits).
    gen: u32,
    /// Alloc slow-path calls (see [`clock_due`]).
    ticks: u16,
    /// The thread's group for the depot's full lists and the slab layer's claims in
    /// per-thread mode ([`thread_group`]): threads are numbered in the order their blocks
    /// were made.
    group: u16,
}

impl Header {
    /// Sets the directory pointer in all three of its places (see [`Header::dir`]).
    fn set_dir(&mut self, d: *mut Dir) {
        self.dir = d;
        self.dir_at_loaded = d;
        self.dir_at_limit = d;
    }
}

#[repr(C)]
pub(crate) struct Dir {
    chunks: [*mut SlotChunk; CHUNKS],
}

const _: () = {
    assert!(core::mem::size_of::<Header>() == core::mem::size_of::<ThreadCache>());
    assert!(core::mem::offset_of!(Header, dir) == core::mem::offset_of!(ThreadCache, top));
    assert!(
        core::mem::offset_of!(Header, dir_at_loaded) == core::mem::offset_of!(ThreadCache, loaded)
    );
    assert!(
        core::mem::offset_of!(Header, dir_at_limit) == core::mem::offset_of!(ThreadCache, limit)
    );
    assert!(
        core::mem::offset_of!(Header, zero_ploaded) == core::mem::offset_of!(ThreadCache, ploaded)
    );
    assert!(
        core::mem::offset_of!(Header, zero_prounds) == core::mem::offset_of!(ThreadCache, prounds)
    );
    assert!(
        core::mem::size_of::<MagazineBlock>()
            == SLOTS_PER_CHUNK * core::mem::size_of::<ThreadCache>()
    );
    assert!(core::mem::size_of::<Dir>() <= core::mem::size_of::<SlotChunk>());
};

/// The first of the 64 slots of chunk `ci` of block `t` (slot of id `i` at
/// `.add(i % 64)`), or null when that chunk does not exist. For chunk 0 that is the block
/// itself (slot 0 is the header: callers never use it).
///
/// # Safety
/// `t` is a live block (or the dead block) that the caller may read; `ci < CHUNKS`.
#[inline(always)]
unsafe fn chunk_base(t: *mut MagazineBlock, ci: usize) -> *mut ThreadCache {
    if ci == 0 {
        return t as *mut ThreadCache;
    }
    // SAFETY: by the caller.
    unsafe {
        let d = (*t).hdr.dir;
        if d.is_null() {
            return null_mut();
        }
        let c = *(*d).chunks.get_unchecked(ci);
        if c.is_null() {
            null_mut()
        } else {
            (*c).slots.as_mut_ptr()
        }
    }
}

/// Bumped by `umem_slab::reap()`: a thread that sees a newer generation on its next
/// slow path flushes all its magazines to the depots (so a later reap can free them).
static REAP_GEN: AtomicU64 = AtomicU64::new(0);

pub(crate) fn request_flush() {
    REAP_GEN.fetch_add(1, Ordering::Relaxed);
}

/// The current reap generation's low 32 bits (what a flushed thread or CPU records).
pub(crate) fn reap_gen() -> u32 {
    REAP_GEN.load(Ordering::Relaxed) as u32
}

/// A static block that is never written: every slot is empty and it has no directory, so
/// the hit paths always miss on it. Two of them: the *dead* block a thread points at after
/// its exit flush (the slow path recognises it and uses the slab layer), and, on x86_64
/// Linux, the *unborn* block that is the TLS word's initial value (the slow path recognises
/// it and makes the thread's block), so the hit paths need no null test.
struct StaticBlock(MagazineBlock);
// SAFETY: the static blocks are never written.
unsafe impl Sync for StaticBlock {}
#[allow(clippy::declare_interior_mutable_const)] // copied into the two statics only
const STATIC_BLOCK: MagazineBlock = MagazineBlock {
    hdr: Header {
        dir: null_mut(),
        dir_at_loaded: null_mut(),
        dir_at_limit: null_mut(),
        zero_ploaded: 0,
        zero_prounds: 0,
        next: null_mut(),
        prev: null_mut(),
        gen: 0,
        ticks: 0,
        group: 0,
    },
    slots: [ThreadCache::EMPTY; SLOTS_PER_CHUNK - 1],
};
static DEAD_BLOCK: StaticBlock = StaticBlock(STATIC_BLOCK);
static UNBORN_BLOCK: StaticBlock = StaticBlock(STATIC_BLOCK);

pub(crate) fn dead_block() -> *mut MagazineBlock {
    &DEAD_BLOCK.0 as *const MagazineBlock as *mut MagazineBlock
}

/// Whether [`inline_slot`] never returns null (the TLS word starts out at the unborn block).
pub(crate) const INLINE_SLOT_NEVER_NULL: bool = tls_word::NEVER_NULL;

/// What the TLS word holds before the thread's first slow-path call (and after a flush
/// that released its block): the unborn block where the TLS image can point at it, else
/// null.
#[inline(always)]
pub(crate) fn unborn() -> *mut MagazineBlock {
    if tls_word::NEVER_NULL {
        &UNBORN_BLOCK.0 as *const MagazineBlock as *mut MagazineBlock
    } else {
        null_mut()
    }
}

/// The thread's block pointer. On x86_64 Linux it is one initial-exec TLS word defined in
/// `.tbss` by `global_asm!` and read `%fs`-relative through its `@GOTTPOFF` GOT entry: a
/// cdylib's `thread_local!` uses the global-dynamic model (a `__tls_get_addr` call on every
/// access). Initial-exec TLS in a library that is `dlopen`ed comes from glibc's static TLS
/// surplus, which easily has these 8 bytes. Other targets use a const `thread_local!`.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod tls_word {
    use super::MagazineBlock;

    /// The word starts out pointing at the unborn block (a relocated address in the TLS
    /// image, `.tdata`), so it is never null.
    pub(super) const NEVER_NULL: bool = true;

    core::arch::global_asm!(
        ".pushsection .tdata.umem_slab_tcb,\"awT\",@progbits",
        ".p2align 3",
        ".globl umem_slab_tcb",
        ".hidden umem_slab_tcb",
        ".type umem_slab_tcb,@object",
        ".size umem_slab_tcb,8",
        "umem_slab_tcb:",
        ".quad {unborn}",
        ".popsection",
        unborn = sym super::UNBORN_BLOCK,
    );

    #[inline(always)]
    pub(super) fn get() -> *mut MagazineBlock {
        let v: *mut MagazineBlock;
        // SAFETY: reads this thread's TLS word (its offset from the thread pointer is in
        // the GOT entry the linker made for `umem_slab_tcb@GOTTPOFF`).
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr [rip + umem_slab_tcb@GOTTPOFF]",
                "mov {v}, qword ptr fs:[{v}]",
                v = out(reg) v,
                options(nostack, readonly, preserves_flags),
            );
        }
        v
    }

    #[inline(always)]
    pub(super) fn set(p: *mut MagazineBlock) {
        // SAFETY: writes this thread's TLS word (see `get`).
        unsafe {
            core::arch::asm!(
                "mov {o}, qword ptr [rip + umem_slab_tcb@GOTTPOFF]",
                "mov qword ptr fs:[{o}], {p}",
                o = out(reg) _,
                p = in(reg) p,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod tls_word {
    use super::MagazineBlock;
    use core::cell::Cell;
    use core::ptr::null_mut;

    /// The word starts out null.
    pub(super) const NEVER_NULL: bool = false;

    thread_local! {
        static TCB: Cell<*mut MagazineBlock> = const { Cell::new(null_mut()) };
    }

    #[inline(always)]
    pub(super) fn get() -> *mut MagazineBlock {
        TCB.with(|c| c.get())
    }

    #[inline(always)]
    pub(super) fn set(p: *mut MagazineBlock) {
        TCB.with(|c| c.set(p))
    }
}

struct BlockList {
    head: *mut MagazineBlock,
    count: usize,
}
// SAFETY: the raw pointers are only followed under the lock.
unsafe impl Send for BlockList {}

static BLOCK_LIST: SpinLock<BlockList> = SpinLock::new(BlockList {
    head: null_mut(),
    count: 0,
});

static KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The calling thread's block pointer ([`unborn`] before the first slow-path call).
#[inline(always)]
pub(crate) fn current() -> *mut MagazineBlock {
    tls_word::get()
}

/// The slot for `index` in the current thread's block (an empty one of a static block when
/// the thread has none yet), or null where the TLS word starts out null.
///
/// # Safety
/// `index < MAX_IDS`.
#[inline(always)]
pub(crate) unsafe fn fast_slot(index: usize) -> *mut ThreadCache {
    let t = current();
    if !tls_word::NEVER_NULL && t.is_null() {
        return null_mut();
    }
    // SAFETY: `t` is the live block of this thread (or a static block); index is in range
    // so both array accesses are in bounds.
    unsafe {
        if index < SLOTS_PER_CHUNK {
            return (t as *mut ThreadCache).add(index);
        }
        far_slot(t, index)
    }
}

/// The inline slot at byte offset `offset` of the calling thread's block (no directory, no
/// range check), or null when the thread has no block yet. Makes no calls.
///
/// # Safety
/// `offset` is a slot's offset in the block: `i * size_of::<ThreadCache>()` with
/// `i < SLOTS_PER_CHUNK`.
#[inline(always)]
pub(crate) unsafe fn inline_slot(offset: usize) -> *mut ThreadCache {
    debug_assert!(
        offset % core::mem::size_of::<ThreadCache>() == 0
            && offset < core::mem::size_of::<MagazineBlock>()
    );
    let t = current();
    if !tls_word::NEVER_NULL && t.is_null() {
        return null_mut();
    }
    // SAFETY: `t` is the live block of this thread (or a static block), whose first chunk
    // holds SLOTS_PER_CHUNK slots; `offset` names one of them by the caller.
    unsafe { (t as *mut u8).add(offset) as *mut ThreadCache }
}

/// [`fast_slot`] for ids from 64 on (through the directory), out of line.
///
/// # Safety
/// As [`chunk_base`]; `index < MAX_IDS`.
#[cold]
#[inline(never)]
unsafe fn far_slot(t: *mut MagazineBlock, index: usize) -> *mut ThreadCache {
    // SAFETY: by the caller.
    unsafe {
        let base = chunk_base(t, index / SLOTS_PER_CHUNK);
        if base.is_null() {
            return null_mut();
        }
        base.add(index % SLOTS_PER_CHUNK)
    }
}

/// Whether this alloc slow-path call should look at the clock for the periodic update:
/// every [`CLOCK_EVERY`]th call of a thread that has a block, every call otherwise (fresh
/// and exiting threads, so a thread's first slow path always checks).
#[inline]
pub(crate) fn clock_due() -> bool {
    let t = current();
    if t == unborn() || t == dead_block() {
        return true;
    }
    // SAFETY: our own live block; `ticks` is touched only by its owner.
    unsafe {
        let k = (*t).hdr.ticks;
        (*t).hdr.ticks = k.wrapping_add(1);
        u64::from(k) % CLOCK_EVERY == 0
    }
}

/// See [`clock_due`].
pub(crate) const CLOCK_EVERY: u64 = 64;

/// The next thread's group ([`Header::group`]).
static NEXT_GROUP: AtomicUsize = AtomicUsize::new(0);

/// The calling thread's group (`percpu::group_hint` in per-thread mode): its block's
/// number, 0 for a thread without a block.
pub(crate) fn thread_group() -> usize {
    let t = current();
    if t.is_null() {
        return 0;
    }
    // SAFETY: a non-null current block is live or static, and only its owner writes
    // `group` (once, before the block is installed).
    usize::from(unsafe { (*t).hdr.group })
}

/// What a flush does with one thread cache: give its magazines back to the depot of the
/// cache with id `id` and fold its counters into that cache (umem-slab's registry knows
/// the caches; this file only knows ids). Installed once by [`init_key`].
///
/// # Safety
/// `tc` is the thread cache of id `id` in a block that no thread uses meanwhile; the
/// block-list lock is held and the calling thread's TLS word points at the dead block.
pub(crate) type FlushFn = unsafe fn(id: usize, tc: *mut ThreadCache);

/// The installed [`FlushFn`], as a pointer (null before `init_key`).
static FLUSH: AtomicPtr<()> = AtomicPtr::new(null_mut());

/// The installed [`FlushFn`]; one that does nothing before `init_key` (no block exists
/// then).
fn flush_hook() -> FlushFn {
    unsafe fn nothing(_id: usize, _tc: *mut ThreadCache) {}
    let p = FLUSH.load(Ordering::Acquire);
    if p.is_null() {
        return nothing;
    }
    // SAFETY: the only non-null value ever stored is a `FlushFn` (see `init_key`), and
    // function pointers round-trip through `*mut ()` on every target Rust supports.
    unsafe { core::mem::transmute::<*mut (), FlushFn>(p) }
}

/// Create the pthread key whose destructor flushes a thread's magazines, and install
/// `flush` as what a flush does with each thread cache.
pub(crate) fn init_key(flush: FlushFn) {
    FLUSH.store(flush as *mut (), Ordering::Release);
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: valid out-pointer and an `extern "C"` destructor.
    let rc = unsafe { libc::pthread_key_create(&mut key, Some(key_destructor)) };
    if rc != 0 {
        fatal("umem-slab: pthread_key_create failed");
    }
    KEY.store(key as usize, Ordering::Release);
}

extern "C" fn key_destructor(p: *mut libc::c_void) {
    let t = p as *mut MagazineBlock;
    if t.is_null() || t == dead_block() {
        return;
    }
    tls_word::set(dead_block());
    // SAFETY: `t` was registered by this thread and is no longer reachable through TLS.
    unsafe { retire_block(t) };
}

/// The calling thread's slot for `index`, creating the block and chunk when needed.
/// Returns null for a dead thread (after its exit flush) or when memory is exhausted.
pub(crate) fn slot_for(index: usize) -> *mut ThreadCache {
    debug_assert!(index > 0 && index < MAX_IDS);
    let mut t = current();
    if t == dead_block() {
        return null_mut();
    }
    if t == unborn() {
        t = new_block();
        if t.is_null() {
            return null_mut();
        }
    }
    // SAFETY: `t` is this thread's live block.
    unsafe {
        let gen = REAP_GEN.load(Ordering::Relaxed) as u32;
        if (*t).hdr.gen != gen {
            (*t).hdr.gen = gen;
            flush_requested(t);
        }
        let ci = index / SLOTS_PER_CHUNK;
        let base = chunk_base(t, ci);
        if !base.is_null() {
            return base.add(index % SLOTS_PER_CHUNK);
        }
        // Publish new directories and chunks under the block-list lock: destroy/stats read
        // them under it.
        if (*t).hdr.dir.is_null() {
            let d = alloc_slot_chunk() as *mut Dir;
            if d.is_null() {
                return null_mut();
            }
            ptr::write_bytes(d as *mut u8, 0, core::mem::size_of::<Dir>());
            let _g = BLOCK_LIST.lock();
            (*t).hdr.set_dir(d);
        }
        let chunk = alloc_slot_chunk() as *mut SlotChunk;
        if chunk.is_null() {
            return null_mut();
        }
        ptr::write_bytes(chunk as *mut u8, 0, core::mem::size_of::<SlotChunk>());
        let _g = BLOCK_LIST.lock();
        (*(*t).hdr.dir).chunks[ci] = chunk;
        (*chunk).slots.as_mut_ptr().add(index % SLOTS_PER_CHUNK)
    }
}

fn new_block() -> *mut MagazineBlock {
    let p = alloc_block() as *mut MagazineBlock;
    if p.is_null() {
        return null_mut();
    }
    // SAFETY: fresh memory of the right size and alignment from the block cache.
    unsafe {
        ptr::write_bytes(p as *mut u8, 0, core::mem::size_of::<MagazineBlock>());
        (*p).hdr.gen = REAP_GEN.load(Ordering::Relaxed) as u32;
        (*p).hdr.group = NEXT_GROUP.fetch_add(1, Ordering::Relaxed) as u16;
        let mut g = BLOCK_LIST.lock();
        (*p).hdr.next = g.head;
        if !g.head.is_null() {
            (*g.head).hdr.prev = p;
        }
        g.head = p;
        g.count += 1;
    }
    tls_word::set(p);
    let key = KEY.load(Ordering::Acquire);
    if key != usize::MAX {
        // SAFETY: the key was created by init_key. If glibc allocates here (keys >= 32) the
        // allocation finds the block already installed in TLS.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, p as *const _) };
    }
    p
}

/// Flush the calling thread's magazines to the depots and release its block; the thread
/// may keep allocating (a fresh block is made on its next slow-path call).
pub fn thread_exit_flush() {
    let t = current();
    if t == unborn() || t == dead_block() {
        return;
    }
    // While flushing, frees made by the flush itself (magazine structures going back to
    // their caches) must not build a new block: point TLS at the dead block meanwhile.
    tls_word::set(dead_block());
    let key = KEY.load(Ordering::Acquire);
    if key != usize::MAX {
        // SAFETY: clearing our own key value.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, ptr::null()) };
    }
    // SAFETY: `t` was this thread's block and is no longer reachable through TLS.
    unsafe { retire_block(t) };
    tls_word::set(unborn());
}

/// Unlink `t`, flush every slot to its cache's depot, fold its counters, free it.
///
/// # Safety
/// `t` is a registered block no thread will use again.
unsafe fn retire_block(t: *mut MagazineBlock) {
    // Hold the block-list lock for the whole flush (see module docs). Flushing takes depot
    // and slab locks and may free magazines to the magazine caches; the current thread's
    // TLS no longer points at `t`, so those frees cannot re-enter `t`'s slots.
    let mut g = BLOCK_LIST.lock();
    // SAFETY: block-list lock held; `t` is on the list.
    unsafe {
        if (*t).hdr.prev.is_null() {
            g.head = (*t).hdr.next;
        } else {
            (*(*t).hdr.prev).hdr.next = (*t).hdr.next;
        }
        if !(*t).hdr.next.is_null() {
            (*(*t).hdr.next).hdr.prev = (*t).hdr.prev;
        }
        g.count -= 1;
        flush_slots(t);
        drop(g);
        // Chunk 0 is inline in the block.
        let d = (*t).hdr.dir;
        if !d.is_null() {
            for ci in 1..CHUNKS {
                let chunk = (*d).chunks[ci];
                if !chunk.is_null() {
                    free_slot_chunk(chunk as usize);
                }
            }
            free_slot_chunk(d as usize);
        }
        free_block(t as usize);
    }
}

/// Flush every slot of block `t` to its cache's depot.
///
/// # Safety
/// Block-list lock held; `t` is not used by any thread for the duration; the calling
/// thread's TLS points at the dead block (so the frees this does bypass magazines).
unsafe fn flush_slots(t: *mut MagazineBlock) {
    let flush = flush_hook();
    // SAFETY: by the caller.
    unsafe {
        for ci in 0..CHUNKS {
            let base = chunk_base(t, ci);
            if base.is_null() {
                continue;
            }
            // Id 0 is reserved (in chunk 0 its place holds the block header).
            for si in usize::from(ci == 0)..SLOTS_PER_CHUNK {
                let id = ci * SLOTS_PER_CHUNK + si;
                let slot = base.add(si);
                if (*slot).magsize == 0
                    && (*slot).allocs.load(Ordering::Relaxed) == 0
                    && (*slot).frees.load(Ordering::Relaxed) == 0
                {
                    continue;
                }
                flush(id, slot);
            }
        }
    }
}

/// A reap asked threads to give back their magazines: flush this thread's block.
///
/// # Safety
/// `t` is the calling thread's live block.
unsafe fn flush_requested(t: *mut MagazineBlock) {
    tls_word::set(dead_block());
    let g = BLOCK_LIST.lock();
    // SAFETY: block-list lock held, our own block, TLS on the dead block.
    unsafe { flush_slots(t) };
    drop(g);
    tls_word::set(t);
}

/// Call `f` on the slot for `index` in every registered block (block-list lock held).
pub(crate) fn for_each_slot(index: usize, f: &mut dyn FnMut(*mut ThreadCache)) {
    let g = BLOCK_LIST.lock();
    let mut t = g.head;
    while !t.is_null() {
        // SAFETY: blocks on the list are live while the block-list lock is held.
        unsafe {
            let base = chunk_base(t, index / SLOTS_PER_CHUNK);
            if !base.is_null() && index != 0 {
                f(base.add(index % SLOTS_PER_CHUNK));
            }
            t = (*t).hdr.next;
        }
    }
    drop(g);
}

/// Run `f` under the block-list lock (the per-CPU layer's flushes and purges hold it as
/// the per-thread ones do, so a destroy never races a flush).
pub(crate) fn with_block_list_locked(f: &mut dyn FnMut()) {
    let g = BLOCK_LIST.lock();
    f();
    drop(g);
}

/// Number of threads that currently hold a block.
pub fn live_thread_blocks() -> usize {
    BLOCK_LIST.lock().count
}

pub(crate) fn block_list_lock_raw() -> &'static RawSpin {
    BLOCK_LIST.raw()
}

/// Run `f` with the calling thread's magazine layer switched off (its frees and allocations
/// go to the slab layers), then switch it back on.
pub(crate) fn with_magazines_off(f: &mut dyn FnMut()) {
    let saved = current();
    tls_word::set(dead_block());
    f();
    tls_word::set(saved);
}

/// A zeroable chunk of `size_of::<T>()` bytes for block `T` memory, straight from
/// `umem_internal` (a page-quantum arena with no magazines, so making a block never needs
/// a block); null when the arena is exhausted.
fn alloc_internal(size: usize) -> *mut u8 {
    match arena_alloc(arenas().internal, size, 64) {
        Some(a) => a as *mut u8,
        None => null_mut(),
    }
}

fn alloc_slot_chunk() -> *mut u8 {
    alloc_internal(core::mem::size_of::<SlotChunk>())
}

fn free_slot_chunk(a: usize) {
    arena_free(arenas().internal, a, core::mem::size_of::<SlotChunk>(), 64);
}

fn alloc_block() -> *mut u8 {
    alloc_internal(core::mem::size_of::<MagazineBlock>())
}

fn free_block(a: usize) {
    arena_free(
        arenas().internal,
        a,
        core::mem::size_of::<MagazineBlock>(),
        64,
    );
}
