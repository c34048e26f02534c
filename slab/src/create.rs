//! Cache creation and destruction, and `init` (the metadata arenas and internal caches).
//!
//! Creation is in three steps: the effective flags ([`effective_flags`]), the slab
//! geometry — a pure function of buffer size, alignment, flags, the source's quantum and
//! the page size ([`slab_geometry`], unit-tested below) — and building the `Cache` in
//! memory from the `umem_cache` arena and putting it on the cache list.

use core::cell::UnsafeCell;
use core::mem::size_of;
use core::ptr::{self, null_mut};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use umem_vmem::{CreateFlags, Vmem};

use crate::cache::{Cache, Links, Padded};
use crate::debug::BUFTAG_SIZE;
use crate::depot::Depot;
use crate::diag::{fatal, page_size};
use crate::error::{CacheName, SlabError};
use crate::flags::CacheFlags;
use crate::magazine::MAGTYPES;
use crate::magazine_block;
use crate::metadata::{self, arena_alloc, arena_free, arenas, MetadataArenas};
use crate::ops::CacheOps;
use crate::qcache;
use crate::registry::{self, InternalCaches};
use crate::secret;
use crate::slab::{
    Bufctl, ChunkDivisor, SlabLayer, HASH_INITIAL, MAP_CHUNK, MAP_HDR, MAP_WORDS, SLAB_HDR,
};
use crate::slab_layer::highbit;
use crate::update;
use umem_vmem::sync::SpinLock;

/// Minimum alignment of buffers the allocator may write into (`UMEM_ALIGN`).
const ALIGN: usize = 8;
/// Default alignment of buffers of 16 bytes and more (`UMEM_SECOND_ALIGN`).
const SECOND_ALIGN: usize = 16;
/// Small-slab threshold and waste bound: 1/8 (`UMEM_VOID_FRACTION`).
const VOID_FRACTION: usize = 8;

/// The slab size of a hashed cache of `chunk`-byte chunks whose source has quantum `q`:
/// the smallest multiple of `q` holding 1 to 16 chunks that wastes at most 1/8, else the
/// least wasteful of those (`None` on overflow). A `const fn`, so that a user laying out
/// tables by it (umem-global's block-start tests for its hashed size classes) computes
/// it at build time; such a user checks its result against [`Cache::grid`].
pub const fn hashed_slab_size(chunk: usize, q: usize) -> Option<usize> {
    let mut best = 0usize;
    // The best ratio so far, best_waste / best_s (none yet while best_s is 0).
    let (mut best_waste, mut best_s) = (0usize, 0usize);
    let mut n = 1;
    while n <= 2 * VOID_FRACTION {
        let s = match chunk.checked_mul(n) {
            Some(x) => match x.checked_next_multiple_of(q) {
                Some(s) => s,
                None => return None,
            },
            None => return None,
        };
        let waste = s - (s / chunk) * chunk;
        if waste * VOID_FRACTION <= s {
            return Some(s);
        }
        if best_s == 0 || (waste as u128) * (best_s as u128) < (best_waste as u128) * (s as u128) {
            best_waste = waste;
            best_s = s;
            best = s;
        }
        n += 1;
    }
    Some(best)
}

const UNINIT: u8 = 0;
const INITING: u8 = 1;
const READY: u8 = 2;
/// `init`'s progress: UNINIT → INITING (one thread builds) → READY.
static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static NO_MAGAZINES: AtomicBool = AtomicBool::new(false);

/// Whether `init` has completed.
pub(crate) fn is_ready() -> bool {
    STATE.load(Ordering::Acquire) == READY
}

/// Caches created from now on get no magazine layer (`UMEM_OPTIONS=nomagazines`).
pub(crate) fn set_nomagazines(on: bool) {
    NO_MAGAZINES.store(on, Ordering::Relaxed);
}

/// Build the metadata arenas and internal caches, create the thread key and install the
/// quantum-cache factory; idempotent (later callers wait for the first).
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
    // Before the first slab: every in-slab link and slab tag is encoded with it.
    secret::init();
    let page = page_size();
    let heap = umem_vmem::heap();
    let mk = |name: &str, quantum: usize| -> &'static Vmem {
        Vmem::create(name, None, quantum, Some(heap), 0, CreateFlags::NONE)
            .unwrap_or_else(|_| fatal("umem-slab: cannot create metadata arena"))
    };
    let internal = mk("umem_internal", page);
    let cache_arena = mk("umem_cache", 64);
    let hash_arena = mk("umem_hash", 8);
    // SAFETY: we are the only thread in INITING, and no cache exists yet.
    unsafe {
        metadata::set_arenas(MetadataArenas {
            internal,
            cache_arena,
            hash_arena,
        })
    };
    // The magazine mode, once, before the first cache.
    crate::percpu::setup();
    let internal_cache = |name: &str, size: usize, align: usize| {
        Cache::create_inner(
            name,
            size,
            align,
            CacheOps::NONE,
            internal,
            CacheFlags::NOHASH,
        )
        .unwrap_or_else(|_| fatal("umem-slab: cannot create internal cache"))
    };
    let mut names = [[0u8; 24]; 9];
    let mut mags: [Option<&'static Cache>; 9] = [None; 9];
    for (i, mt) in MAGTYPES.iter().enumerate() {
        let n = fmt_name(&mut names[i], "umem_magazine_", mt.rounds);
        // Cache-line aligned (libumem uses 8..64): a loaded magazine is written on every
        // hit by its thread, so two threads' magazines must never share a line.
        // A magazine has one more word above its last round: its upper fence per CPU
        // (`percpu.rs`), a link of the depot's address-ordered full list (`depot.rs`).
        let words = mt.rounds + 2;
        mags[i] = Some(internal_cache(
            n,
            words * size_of::<usize>(),
            mt.align.max(64),
        ));
    }
    let slabs = internal_cache("umem_slab_cache", SLAB_HDR, 0);
    let bufctls = internal_cache("umem_bufctl_cache", size_of::<Bufctl>(), 0);
    let audit_bufctls = internal_cache(
        "umem_bufctl_audit_cache",
        crate::audit::freeze_bufctl_size(),
        0,
    );
    let g = InternalCaches {
        magazines: mags.map(|m| m.unwrap_or_else(|| fatal("umem-slab: init"))),
        slabs,
        bufctls,
        audit_bufctls,
    };
    // SAFETY: single writer while INITING; readers wait for READY.
    unsafe { registry::set_internal_caches(g) };
    magazine_block::init_key(registry::flush_thread_cache);
    umem_vmem::set_qcache_factory(&qcache::FACTORY);
    umem_vmem::set_reap_hook(update::reap_hook);
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

/// The flags a cache really gets: `NOTOUCH` and `NODEBUG` caches get no debugging,
/// `AUDIT` implies `DEBUG` (and is dropped where debugging or hashing is impossible), and
/// `no_magazines` adds `NOMAGAZINE`.
pub(crate) fn effective_flags(
    flags: CacheFlags,
    no_magazines: bool,
) -> Result<CacheFlags, SlabError> {
    let mut flags = flags;
    let notouch = flags.contains(CacheFlags::NOTOUCH);
    if notouch && flags.contains(CacheFlags::NOHASH) {
        return Err(SlabError::BadFlags { flags: flags.0 });
    }
    if notouch || flags.contains(CacheFlags::NODEBUG) {
        flags = CacheFlags(flags.0 & !CacheFlags::DEBUG.0);
    }
    if no_magazines {
        flags = flags | CacheFlags::NOMAGAZINE;
    }
    if notouch || flags.contains(CacheFlags::NODEBUG) || flags.contains(CacheFlags::NOHASH) {
        flags = CacheFlags(flags.0 & !CacheFlags::AUDIT.0);
    }
    if flags.contains(CacheFlags::AUDIT) {
        flags = flags | CacheFlags::DEBUG;
    }
    Ok(flags)
}

/// How a cache lays out its buffers and slabs ([`slab_geometry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlabGeometry {
    /// Alignment of every buffer.
    pub align: usize,
    /// Bytes from one buffer to the next (buffer, buftag, padding to `align`).
    pub chunksize: usize,
    /// Offset of the debug buftag in a chunk (0: none).
    pub buftag_off: usize,
    /// Offset of the free-list link word in a free chunk (in-slab caches).
    pub link_off: usize,
    /// External bufctls and the hash (else the `Slab` at the end of the slab and the
    /// free list through the buffers).
    pub hashed: bool,
    /// An in-slab cache whose free list is a bitmap after the `Slab` record (`slab.rs`,
    /// [`MAP_CHUNK`]).
    pub free_map: bool,
    /// Bytes per slab; 0 for a quantum cache (decided at its first slab).
    pub slabsize: usize,
    /// The largest colour (offset of a slab's first buffer).
    pub maxcolor: usize,
}

impl SlabGeometry {
    /// Buffers in a slab of colour 0.
    #[cfg(test)]
    fn buffers_per_slab(&self) -> usize {
        if self.hashed {
            self.slabsize / self.chunksize
        } else {
            (self.slabsize - self.hdr()) / self.chunksize
        }
    }

    /// Bytes an in-slab slab keeps at its end (record, and free map if any).
    pub fn hdr(&self) -> usize {
        in_slab_hdr(self.free_map)
    }
}

/// Bytes an in-slab slab keeps at its end: the `Slab` record, and the free map after it
/// when the cache has one.
const fn in_slab_hdr(free_map: bool) -> usize {
    if free_map {
        MAP_HDR
    } else {
        SLAB_HDR
    }
}

/// The slab geometry of a cache of `size`-byte buffers aligned to `align` (0: the
/// default, 8 or 16), with the effective `flags`, over a source of quantum `quantum`, on
/// a system of `page`-byte pages.
///
/// Buffers smaller than 1/8 of a small slab (the larger of page and quantum), outside
/// `NOTOUCH` and `AUDIT` caches, or any `NOHASH` cache, live in one small slab with the
/// `Slab` record at its end. Other caches are hashed, in the smallest slab (a multiple of
/// the quantum, up to 16 chunks) that wastes at most 1/8, else the least wasteful one.
pub(crate) fn slab_geometry(
    size: usize,
    align: usize,
    flags: CacheFlags,
    quantum: usize,
    page: usize,
) -> Result<SlabGeometry, SlabError> {
    let notouch = flags.contains(CacheFlags::NOTOUCH);
    let audit = flags.contains(CacheFlags::AUDIT);
    let debug = flags.contains(CacheFlags::DEBUG);
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
    if debug {
        chunksize = chunksize.checked_add(BUFTAG_SIZE).ok_or(too_large)?;
    }
    chunksize = chunksize.checked_next_multiple_of(align).ok_or(too_large)?;
    let small_slab = quantum.max(page);
    let mut free_map = false;
    if flags.contains(CacheFlags::FREE_KEY) && !debug && chunksize < 2 * size_of::<usize>() {
        // A free chunk must hold the free key (first word), so that a buffer free on its
        // slab still reads as free (a double free of it is caught), and a free-list link
        // (last word). One word cannot hold both: a free map when the slab's chunks fit
        // one, else room for two words.
        if chunksize == MAP_CHUNK && !audit && (small_slab - MAP_HDR) / MAP_CHUNK <= MAP_WORDS * 64
        {
            free_map = true;
        } else {
            chunksize = 2 * size_of::<usize>();
        }
    }
    // The buftag ends the chunk (its status word is the last word before the next
    // buffer, and the alignment padding is redzone slack: `redzone.rs`).
    let buftag_off = if debug { chunksize - BUFTAG_SIZE } else { 0 };
    let link_off = if debug {
        buftag_off + 8
    } else {
        chunksize.saturating_sub(size_of::<usize>())
    };
    let hdr = in_slab_hdr(free_map);

    let hashed;
    let slabsize;
    let maxcolor;
    if flags.contains(CacheFlags::NOHASH)
        || (!notouch && !audit && chunksize < small_slab / VOID_FRACTION)
    {
        if chunksize + hdr > small_slab {
            return Err(too_large);
        }
        hashed = false;
        slabsize = small_slab;
        maxcolor = if flags.contains(CacheFlags::FREE_KEY) {
            0
        } else {
            (slabsize - hdr) % chunksize
        };
    } else {
        hashed = true;
        let q = quantum;
        if flags.contains(CacheFlags::QCACHE) {
            // Decided at the first slab (see `Cache::qcache_geometry`).
            slabsize = 0;
        } else {
            slabsize = hashed_slab_size(chunksize, q).ok_or(too_large)?;
        }
        maxcolor = if slabsize == 0 || flags.contains(CacheFlags::FREE_KEY) {
            0
        } else {
            (slabsize % chunksize).min(q.saturating_sub(1))
        };
    }
    Ok(SlabGeometry {
        align,
        chunksize,
        buftag_off,
        link_off,
        hashed,
        free_map,
        slabsize,
        maxcolor,
    })
}

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
        if flags.0 & CacheFlags::QCACHE.0 != 0
            || (flags.contains(CacheFlags::FREE_KEY)
                && (flags.contains(CacheFlags::NOTOUCH)
                    || ops.ctor.is_some()
                    || ops.dtor.is_some()))
        {
            return Err(SlabError::BadFlags { flags: flags.0 });
        }
        init();
        Cache::create_inner(name, size, align, ops, source, flags)
    }

    /// Create the quantum cache of `size`-byte segments of `arena` (called by vmem through
    /// the factory in `qcache.rs`).
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
        let flags = effective_flags(flags, NO_MAGAZINES.load(Ordering::Relaxed))?;
        if size == 0 {
            return Err(SlabError::ZeroSize);
        }
        let quantum = source.quantum();
        let geo = slab_geometry(size, align, flags, quantum, page_size())?;
        let slab_align = match (geo.hashed, flags.contains(CacheFlags::FREE_KEY)) {
            // A hashed FREE_KEY cache's slabs are aligned to their size rounded up to a
            // power of two, so a buffer start is a function of the address (`grid`).
            (true, true) if geo.slabsize != 0 => geo.slabsize.next_power_of_two(),
            (true, _) => geo.align,
            (false, _) => geo.slabsize,
        };

        let cache_arena = arenas().cache_arena;
        let cp = arena_alloc(cache_arena, size_of::<Cache>(), 64).ok_or(SlabError::NoMemory)?
            as *mut Cache;

        let mut hash = null_mut();
        if geo.hashed {
            match arena_alloc(arenas().hash_arena, HASH_INITIAL * size_of::<usize>(), 8) {
                Some(h) => {
                    hash = h as *mut *mut Bufctl;
                    // SAFETY: fresh table of HASH_INITIAL buckets.
                    unsafe { ptr::write_bytes(hash, 0, HASH_INITIAL) };
                }
                None => {
                    arena_free(cache_arena, cp as usize, size_of::<Cache>(), 64);
                    return Err(SlabError::NoMemory);
                }
            }
        }
        let mut magtype = 0;
        while geo.chunksize <= MAGTYPES[magtype].minbuf {
            magtype += 1;
        }
        let cache = Cache {
            fast_index: 0,
            id: 0,
            flags: flags.0,
            chunksize: geo.chunksize,
            bufsize: size,
            align: geo.align,
            slabsize_: AtomicUsize::new(geo.slabsize),
            link_off: geo.link_off,
            buftag_off: geo.buftag_off,
            chunk_div: ChunkDivisor::new(geo.chunksize),
            maxcolor_: AtomicUsize::new(geo.maxcolor),
            hash_shift: highbit(geo.chunksize) - 1,
            hashed: geo.hashed,
            free_map: geo.free_map,
            slab_hdr: geo.hdr(),
            audit: flags.contains(CacheFlags::AUDIT),
            free_key: flags.contains(CacheFlags::FREE_KEY),
            watch: AtomicUsize::new(0),
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
            depot: Padded(SpinLock::new(Depot::new(magtype))),
            slab: Padded(SpinLock::new(SlabLayer::new(hash))),
        };
        // SAFETY: `cp` is fresh, 64-aligned memory of the right size.
        unsafe { ptr::write(cp, cache) };
        // SAFETY: built above; nobody else sees it yet.
        unsafe {
            registry::register(
                cp,
                !flags.contains(CacheFlags::NOMAGAZINE),
                flags.contains(CacheFlags::DEBUG),
            )
        };
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
    /// from their magazine blocks under the block-list lock, which is sound because a
    /// thread only touches its thread cache for this cache while calling into this cache.
    pub unsafe fn destroy(&'static self) -> Result<(), SlabError> {
        // Leave the cache list first, so that update() no longer visits it.
        registry::unlink(self);
        self.purge_magazines();
        let live = self.slab.0.lock().bufalloc;
        if live != 0 {
            registry::relink(self);
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
                arenas().hash_arena,
                hash as usize,
                (mask + 1) * size_of::<usize>(),
                8,
            );
        }
        registry::release_id(self.id);
        arena_free(
            arenas().cache_arena,
            self as *const Cache as usize,
            size_of::<Cache>(),
            64,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    fn geo(size: usize, align: usize, flags: CacheFlags, quantum: usize) -> SlabGeometry {
        let flags = effective_flags(flags, false).unwrap();
        slab_geometry(size, align, flags, quantum, PAGE).unwrap()
    }

    #[test]
    fn small_buffers_live_in_one_page_with_the_slab_at_its_end() {
        // 64-byte buffers: 16-aligned by default, in-slab, one page; the free-list link is
        // the chunk's last word.
        let g = geo(64, 0, CacheFlags::NONE, 8);
        assert_eq!(
            (g.align, g.chunksize, g.hashed, g.slabsize),
            (16, 64, false, PAGE)
        );
        assert_eq!(g.link_off, 56);
        assert_eq!(g.buffers_per_slab(), (PAGE - SLAB_HDR) / 64);
        assert_eq!(g.maxcolor, (PAGE - SLAB_HDR) % 64);
        // Under 16 bytes the default alignment is 8.
        assert_eq!(geo(8, 0, CacheFlags::NONE, 8).align, 8);
        // Sizes round up to 8.
        assert_eq!(geo(13, 0, CacheFlags::NONE, 8).chunksize, 16);
    }

    #[test]
    fn from_an_eighth_of_a_page_on_slabs_are_hashed_and_waste_at_most_an_eighth() {
        // 512 = PAGE/8: hashed; one page holds 8 chunks with no waste.
        let g = geo(512, 0, CacheFlags::NONE, 8);
        assert!(g.hashed);
        assert_eq!((g.slabsize, g.buffers_per_slab()), (512, 1));
        // 1000-byte buffers (1008-byte chunks) over a page-quantum source: one page holds
        // four, wasting 64 bytes (under 1/8), so the slab is one page.
        let g = geo(1000, 0, CacheFlags::NONE, PAGE);
        assert!(g.hashed);
        assert_eq!(g.chunksize, 1008);
        let waste = g.slabsize - g.buffers_per_slab() * g.chunksize;
        assert!(waste * 8 <= g.slabsize, "{g:?}");
        assert_eq!((g.slabsize, g.buffers_per_slab()), (PAGE, 4));
        assert_eq!(g.maxcolor, (g.slabsize % g.chunksize).min(PAGE - 1));
    }

    #[test]
    fn notouch_caches_are_hashed_unaligned_and_never_debugged() {
        let g = geo(3, 0, CacheFlags::NOTOUCH | CacheFlags::DEBUG, 1);
        assert_eq!(
            (g.align, g.chunksize, g.buftag_off, g.hashed),
            (1, 3, 0, true)
        );
        // Quantum caches decide their slab size at their first slab.
        let g = geo(64, 64, CacheFlags::NOTOUCH | CacheFlags::QCACHE, 64);
        assert_eq!((g.slabsize, g.maxcolor), (0, 0));
    }

    #[test]
    fn debug_chunks_carry_a_buftag_and_audit_forces_the_hash() {
        // 40-byte buffer + 24-byte buftag = 64; the link word is the buftag's middle word.
        let g = geo(40, 0, CacheFlags::DEBUG, 8);
        assert_eq!((g.chunksize, g.buftag_off, g.link_off), (64, 40, 48));
        assert!(!g.hashed);
        let g = geo(40, 0, CacheFlags::AUDIT, 8);
        assert!(g.hashed);
        assert_eq!(g.buftag_off, 40);
        // NODEBUG wins over DEBUG; NOHASH drops AUDIT.
        assert_eq!(
            geo(40, 0, CacheFlags::DEBUG | CacheFlags::NODEBUG, 8).buftag_off,
            0
        );
        assert!(!geo(40, 0, CacheFlags::AUDIT | CacheFlags::NOHASH, 8).hashed);
    }

    #[test]
    fn bad_requests_are_refused() {
        let f = CacheFlags::NONE;
        assert!(matches!(
            slab_geometry(64, 24, f, 8, PAGE),
            Err(SlabError::BadAlign { align: 24, .. })
        ));
        assert!(matches!(
            slab_geometry(64, 2 * PAGE, f, 8, PAGE),
            Err(SlabError::BadAlign { .. })
        ));
        assert!(matches!(
            slab_geometry(usize::MAX - 4, 0, f, 8, PAGE),
            Err(SlabError::TooLarge { .. })
        ));
        // NOHASH buffers must fit one small slab with its header.
        assert!(matches!(
            slab_geometry(PAGE, 0, CacheFlags::NOHASH, 8, PAGE),
            Err(SlabError::TooLarge { .. })
        ));
        assert!(matches!(
            effective_flags(CacheFlags::NOTOUCH | CacheFlags::NOHASH, false),
            Err(SlabError::BadFlags { .. })
        ));
        assert!(effective_flags(f, true)
            .unwrap()
            .contains(CacheFlags::NOMAGAZINE));
    }
}
