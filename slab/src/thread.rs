//! Per-thread magazine caches (the paper's "CPU layer", mapped to threads).
//!
//! Every thread that allocates gets a [`ThreadBlock`]: a directory of 64 pointers to
//! [`SlotChunk`]s of 64 [`TSlot`]s each, one slot per cache id (4096 ids); chunk 0 is inline
//! in the block (one page from `umem_internal`, its header over the reserved slot 0) and the
//! directory is only allocated for ids from 64 on. A slot holds the
//! thread's *loaded* and *previous* magazines for that cache. Only the owning thread reads or
//! writes a slot's magazine fields, so the fast path needs no lock and no atomic
//! read-modify-write; the alloc/free counters are atomics written with plain relaxed
//! load+store by the owner so that `stats()` may read them from elsewhere.
//!
//! The block is reached through one TLS word (module `tcb`: initial-exec on x86_64 Linux, a
//! const-initialised `thread_local!` `Cell` elsewhere) holding a raw pointer, with no
//! destructor registered for it; a `pthread_key_create` destructor flushes
//! the thread's magazines to the depots at thread exit and points the thread-local at
//! [`DEAD_BLOCK`], so allocations made by later TLS destructors bypass the magazine layer.
//!
//! All live blocks are on a registry list under `REGISTRY`. Other threads touch a block only
//! under that lock: `Cache::destroy` takes the destroyed cache's slot from every block,
//! `stats` sums counters, and a thread publishes a new chunk pointer under it. Thread exit
//! holds the registry lock for its whole flush, so a destroy can never miss magazines that
//! are in transit from an exiting thread to a depot.

use core::ptr::{self, null_mut};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::cache::Magazine;
use crate::sync::SpinLock;

pub(crate) const SLOTS_PER_CHUNK: usize = 64;
pub(crate) const CHUNKS: usize = 64;
/// Number of cache ids; id 0 is reserved and its slot never holds a magazine.
pub(crate) const MAX_IDS: usize = SLOTS_PER_CHUNK * CHUNKS;

/// One thread's magazines for one cache.
///
/// Invariants (owner thread): `cap` is the capacity of `loaded` (0 when `loaded` is null);
/// `0 <= rounds <= cap`; `prounds` is the fill of `ploaded` (0 when it is null); both
/// magazines have `magsize` rounds of capacity.
#[repr(C, align(64))]
pub(crate) struct TSlot {
    pub loaded: *mut Magazine,
    pub rounds: usize,
    pub cap: usize,
    pub ploaded: *mut Magazine,
    pub prounds: usize,
    pub magsize: usize,
    pub allocs: AtomicU64,
    pub frees: AtomicU64,
}

impl TSlot {
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: TSlot = TSlot {
        loaded: null_mut(),
        rounds: 0,
        cap: 0,
        ploaded: null_mut(),
        prounds: 0,
        magsize: 0,
        allocs: AtomicU64::new(0),
        frees: AtomicU64::new(0),
    };
}

#[repr(C)]
pub(crate) struct SlotChunk {
    pub slots: [TSlot; SLOTS_PER_CHUNK],
}

/// A thread's block: one page. The slots of cache ids 1..64 (the internal caches and, in
/// umem-global, every size class: they are created first) are inline, so the hit path
/// reaches them straight from the block pointer; the block's header takes the place of the
/// slot of the reserved id 0. Slots of higher ids live in [`SlotChunk`]s reached through a
/// directory that is only allocated when such an id is first used.
#[repr(C, align(64))]
pub(crate) struct ThreadBlock {
    hdr: Header,
    slots: [TSlot; SLOTS_PER_CHUNK - 1],
}

/// The block header, laid over slot 0. Its words at the offsets of a slot's `rounds`,
/// `cap`, `ploaded` and `prounds` are always zero, so a hit path with fast index 0 (debug
/// caches) reads an empty slot with no previous magazine and misses, exactly as it would
/// on a real empty slot. Nothing writes slot 0 through a `TSlot` pointer: id 0 never gets
/// a slot from `slot_for`, the hit paths write only after a hit, and the flushes skip it.
#[repr(C)]
struct Header {
    /// Chunks of ids 64.. (`chunks[0]` unused); null until needed.
    dir: *mut Dir,
    zero_rounds: usize,
    zero_cap: usize,
    zero_ploaded: usize,
    zero_prounds: usize,
    next: *mut ThreadBlock,
    prev: *mut ThreadBlock,
    /// The global reap generation this thread has flushed up to (its low 32 bits).
    gen: u32,
    /// Alloc slow-path calls (see [`clock_due`]).
    ticks: u32,
}

#[repr(C)]
pub(crate) struct Dir {
    chunks: [*mut SlotChunk; CHUNKS],
}

const _: () = {
    assert!(core::mem::size_of::<Header>() == core::mem::size_of::<TSlot>());
    assert!(core::mem::offset_of!(Header, zero_rounds) == core::mem::offset_of!(TSlot, rounds));
    assert!(core::mem::offset_of!(Header, zero_cap) == core::mem::offset_of!(TSlot, cap));
    assert!(core::mem::offset_of!(Header, zero_ploaded) == core::mem::offset_of!(TSlot, ploaded));
    assert!(core::mem::offset_of!(Header, zero_prounds) == core::mem::offset_of!(TSlot, prounds));
    assert!(core::mem::size_of::<ThreadBlock>() == SLOTS_PER_CHUNK * core::mem::size_of::<TSlot>());
    assert!(core::mem::size_of::<Dir>() <= core::mem::size_of::<SlotChunk>());
};

/// The first of the 64 slots of chunk `ci` of block `t` (slot of id `i` at
/// `.add(i % 64)`), or null when that chunk does not exist. For chunk 0 that is the block
/// itself (slot 0 is the header: callers never use it).
///
/// # Safety
/// `t` is a live block (or the dead block) that the caller may read; `ci < CHUNKS`.
#[inline(always)]
unsafe fn chunk_base(t: *mut ThreadBlock, ci: usize) -> *mut TSlot {
    if ci == 0 {
        return t as *mut TSlot;
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

/// A static block that is never written: every slot is empty and it has no directory, so
/// the hit paths always miss on it. Two of them: the *dead* block a thread points at after
/// its exit flush (the slow path recognises it and uses the slab layer), and, on x86_64
/// Linux, the *unborn* block that is the TLS word's initial value (the slow path recognises
/// it and makes the thread's block), so the hit paths need no null test.
struct StaticBlock(ThreadBlock);
// SAFETY: the static blocks are never written.
unsafe impl Sync for StaticBlock {}
#[allow(clippy::declare_interior_mutable_const)] // copied into the two statics only
const STATIC_BLOCK: ThreadBlock = ThreadBlock {
    hdr: Header {
        dir: null_mut(),
        zero_rounds: 0,
        zero_cap: 0,
        zero_ploaded: 0,
        zero_prounds: 0,
        next: null_mut(),
        prev: null_mut(),
        gen: 0,
        ticks: 0,
    },
    slots: [TSlot::EMPTY; SLOTS_PER_CHUNK - 1],
};
static DEAD_BLOCK: StaticBlock = StaticBlock(STATIC_BLOCK);
static UNBORN_BLOCK: StaticBlock = StaticBlock(STATIC_BLOCK);

pub(crate) fn dead_block() -> *mut ThreadBlock {
    &DEAD_BLOCK.0 as *const ThreadBlock as *mut ThreadBlock
}

/// Whether [`inline_slot`] never returns null (the TLS word starts out at the unborn block).
pub(crate) const INLINE_SLOT_NEVER_NULL: bool = tcb::NEVER_NULL;

/// What the TLS word holds before the thread's first slow-path call (and after a flush
/// that released its block): the unborn block where the TLS image can point at it, else
/// null.
#[inline(always)]
pub(crate) fn unborn() -> *mut ThreadBlock {
    if tcb::NEVER_NULL {
        &UNBORN_BLOCK.0 as *const ThreadBlock as *mut ThreadBlock
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
mod tcb {
    use super::ThreadBlock;

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
    pub(super) fn get() -> *mut ThreadBlock {
        let v: *mut ThreadBlock;
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
    pub(super) fn set(p: *mut ThreadBlock) {
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
mod tcb {
    use super::ThreadBlock;
    use core::cell::Cell;
    use core::ptr::null_mut;

    /// The word starts out null.
    pub(super) const NEVER_NULL: bool = false;

    thread_local! {
        static TCB: Cell<*mut ThreadBlock> = const { Cell::new(null_mut()) };
    }

    #[inline(always)]
    pub(super) fn get() -> *mut ThreadBlock {
        TCB.with(|c| c.get())
    }

    #[inline(always)]
    pub(super) fn set(p: *mut ThreadBlock) {
        TCB.with(|c| c.set(p))
    }
}

struct Registry {
    head: *mut ThreadBlock,
    count: usize,
}
// SAFETY: the raw pointers are only followed under the lock.
unsafe impl Send for Registry {}

static REGISTRY: SpinLock<Registry> = SpinLock::new(Registry {
    head: null_mut(),
    count: 0,
});

static KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The calling thread's block pointer ([`unborn`] before the first slow-path call).
#[inline(always)]
pub(crate) fn current() -> *mut ThreadBlock {
    tcb::get()
}

/// The slot for `index` in the current thread's block (an empty one of a static block when
/// the thread has none yet), or null where the TLS word starts out null.
///
/// # Safety
/// `index < MAX_IDS`.
#[inline(always)]
pub(crate) unsafe fn fast_slot(index: usize) -> *mut TSlot {
    let t = current();
    if !tcb::NEVER_NULL && t.is_null() {
        return null_mut();
    }
    // SAFETY: `t` is the live block of this thread (or a static block); index is in range
    // so both array accesses are in bounds.
    unsafe {
        if index < SLOTS_PER_CHUNK {
            return (t as *mut TSlot).add(index);
        }
        far_slot(t, index)
    }
}

/// The inline slot at byte offset `offset` of the calling thread's block (no directory, no
/// range check), or null when the thread has no block yet. Makes no calls.
///
/// # Safety
/// `offset` is a slot's offset in the block: `i * size_of::<TSlot>()` with
/// `i < SLOTS_PER_CHUNK`.
#[inline(always)]
pub(crate) unsafe fn inline_slot(offset: u16) -> *mut TSlot {
    debug_assert!(
        (offset as usize) % core::mem::size_of::<TSlot>() == 0
            && (offset as usize) < core::mem::size_of::<ThreadBlock>()
    );
    let t = current();
    if !tcb::NEVER_NULL && t.is_null() {
        return null_mut();
    }
    // SAFETY: `t` is the live block of this thread (or a static block), whose first chunk
    // holds SLOTS_PER_CHUNK slots; `offset` names one of them by the caller.
    unsafe { (t as *mut u8).add(offset as usize) as *mut TSlot }
}

/// [`fast_slot`] for ids from 64 on (through the directory), out of line.
///
/// # Safety
/// As [`chunk_base`]; `index < MAX_IDS`.
#[cold]
#[inline(never)]
unsafe fn far_slot(t: *mut ThreadBlock, index: usize) -> *mut TSlot {
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

/// Create the pthread key whose destructor flushes a thread's magazines.
pub(crate) fn init_key() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: valid out-pointer and an `extern "C"` destructor.
    let rc = unsafe { libc::pthread_key_create(&mut key, Some(key_destructor)) };
    if rc != 0 {
        crate::fatal("umem-slab: pthread_key_create failed\n");
    }
    KEY.store(key as usize, Ordering::Release);
}

extern "C" fn key_destructor(p: *mut libc::c_void) {
    let t = p as *mut ThreadBlock;
    if t.is_null() || t == dead_block() {
        return;
    }
    tcb::set(dead_block());
    // SAFETY: `t` was registered by this thread and is no longer reachable through TLS.
    unsafe { retire_block(t) };
}

/// The calling thread's slot for `index`, creating the block and chunk when needed.
/// Returns null for a dead thread (after its exit flush) or when memory is exhausted.
pub(crate) fn slot_for(index: usize) -> *mut TSlot {
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
        // Publish new directories and chunks under the registry lock: destroy/stats read
        // them under it.
        if (*t).hdr.dir.is_null() {
            let d = crate::cache::alloc_slot_chunk() as *mut Dir;
            if d.is_null() {
                return null_mut();
            }
            ptr::write_bytes(d as *mut u8, 0, core::mem::size_of::<Dir>());
            let _g = REGISTRY.lock();
            (*t).hdr.dir = d;
        }
        let chunk = crate::cache::alloc_slot_chunk() as *mut SlotChunk;
        if chunk.is_null() {
            return null_mut();
        }
        ptr::write_bytes(chunk as *mut u8, 0, core::mem::size_of::<SlotChunk>());
        let _g = REGISTRY.lock();
        (*(*t).hdr.dir).chunks[ci] = chunk;
        (*chunk).slots.as_mut_ptr().add(index % SLOTS_PER_CHUNK)
    }
}

fn new_block() -> *mut ThreadBlock {
    let p = crate::cache::alloc_thread_block() as *mut ThreadBlock;
    if p.is_null() {
        return null_mut();
    }
    // SAFETY: fresh memory of the right size and alignment from the block cache.
    unsafe {
        ptr::write_bytes(p as *mut u8, 0, core::mem::size_of::<ThreadBlock>());
        (*p).hdr.gen = REAP_GEN.load(Ordering::Relaxed) as u32;
        let mut g = REGISTRY.lock();
        (*p).hdr.next = g.head;
        if !g.head.is_null() {
            (*g.head).hdr.prev = p;
        }
        g.head = p;
        g.count += 1;
    }
    tcb::set(p);
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
    tcb::set(dead_block());
    let key = KEY.load(Ordering::Acquire);
    if key != usize::MAX {
        // SAFETY: clearing our own key value.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, ptr::null()) };
    }
    // SAFETY: `t` was this thread's block and is no longer reachable through TLS.
    unsafe { retire_block(t) };
    tcb::set(unborn());
}

/// Unlink `t`, flush every slot to its cache's depot, fold its counters, free it.
///
/// # Safety
/// `t` is a registered block no thread will use again.
unsafe fn retire_block(t: *mut ThreadBlock) {
    // Hold the registry lock for the whole flush (see module docs). Flushing takes depot
    // and slab locks and may free magazines to the magazine caches; the current thread's
    // TLS no longer points at `t`, so those frees cannot re-enter `t`'s slots.
    let mut g = REGISTRY.lock();
    // SAFETY: registry lock held; `t` is on the list.
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
                    crate::cache::free_slot_chunk(chunk as usize);
                }
            }
            crate::cache::free_slot_chunk(d as usize);
        }
        crate::cache::free_thread_block(t as usize);
    }
}

/// Flush every slot of block `t` to its cache's depot.
///
/// # Safety
/// Registry lock held; `t` is not used by any thread for the duration; the calling
/// thread's TLS points at the dead block (so the frees this does bypass magazines).
unsafe fn flush_slots(t: *mut ThreadBlock) {
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
                let cp = crate::cache::cache_by_id(id);
                if let Some(cp) = cp {
                    cp.flush_slot(slot, true);
                }
            }
        }
    }
}

/// A reap asked threads to give back their magazines: flush this thread's block.
///
/// # Safety
/// `t` is the calling thread's live block.
unsafe fn flush_requested(t: *mut ThreadBlock) {
    tcb::set(dead_block());
    let g = REGISTRY.lock();
    // SAFETY: registry lock held, our own block, TLS on the dead block.
    unsafe { flush_slots(t) };
    drop(g);
    tcb::set(t);
}

/// Call `f` on the slot for `index` in every registered block (registry lock held).
pub(crate) fn for_each_slot(index: usize, f: &mut dyn FnMut(*mut TSlot)) {
    let g = REGISTRY.lock();
    let mut t = g.head;
    while !t.is_null() {
        // SAFETY: blocks on the list are live while the registry lock is held.
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

/// Number of threads that currently hold a block.
pub fn live_thread_blocks() -> usize {
    REGISTRY.lock().count
}

pub(crate) fn registry_lock_raw() -> &'static crate::sync::RawSpin {
    REGISTRY.raw()
}

/// Run `f` with the calling thread's magazine layer switched off (its frees and allocations
/// go to the slab layers), then switch it back on.
pub(crate) fn with_magazines_off(f: &mut dyn FnMut()) {
    let saved = current();
    tcb::set(dead_block());
    f();
    tcb::set(saved);
}
