//! `umem_cache_create`, `umem_cache_alloc`, `umem_cache_free`,
//! `umem_cache_destroy`: umem-slab object caches with C callbacks.
//!
//! A `umem_cache_t *` is a [`CCache`], allocated from umem (`Box`, the
//! global allocator being umem): the slab [`Cache`], its fast index, and
//! the C constructor, destructor, reclaim callback and their private
//! argument. The `CCache`'s address is the slab cache's
//! [`CacheOps::private`], and the slab callbacks are Rust trampolines that
//! call the C functions with it: constructors get `(buf, private,
//! UMEM_DEFAULT)` and fail by returning non-zero (the allocation then
//! fails, or with `UMEM_NOFAIL` reaps and retries under the nofail
//! policy); destructors get `(buf, private)` when a buffer goes back to the
//! slab layer; reclaim gets `(private)` from `umem_reap`. Between free and
//! alloc an object stays constructed (umem-slab's contract).
//!
//! `source` NULL means umem-vmem's page-quantum `heap` arena; otherwise a
//! `vmem_t *` from `vmem_create`. Invalid arguments (NULL name, size 0,
//! alignment not a power of two or above the source's quantum/page,
//! `UMC_NOTOUCH` with `UMC_NOHASH`) fail with `errno = EINVAL`; too large a
//! size with `ENOMEM`; no memory for the cache with `EAGAIN` (libumem's
//! errnos). `umem_cache_destroy` of a cache with live objects reports it
//! (as libumem does) and leaves the cache in place (its memory is not
//! reused, so later stray frees do not corrupt anything).

use super::vmem::arena_of;
use super::{c_name, debugging, inject, retry, UMEM_DEFAULT};
use core::ffi::{c_char, c_int, c_void};
use core::ptr::{null_mut, NonNull};
use umem_global::preload_abi::sys;
use umem_slab::{Cache, CacheFlags, CacheOps, FastIndex, SlabError};

/// `UMC_NOTOUCH`.
pub const UMC_NOTOUCH: c_int = 0x0001_0000;
/// `UMC_NODEBUG`.
pub const UMC_NODEBUG: c_int = 0x0002_0000;
/// `UMC_NOMAGAZINE`.
pub const UMC_NOMAGAZINE: c_int = 0x0004_0000;
/// `UMC_NOHASH`.
pub const UMC_NOHASH: c_int = 0x0008_0000;

/// `umem_constructor_t`.
pub type Constructor = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int;
/// `umem_destructor_t`.
pub type Destructor = unsafe extern "C" fn(*mut c_void, *mut c_void);
/// `umem_reclaim_t`.
pub type Reclaim = unsafe extern "C" fn(*mut c_void);

const LIVE: u64 = 0x756d_656d_6361_6368; // "umemcach"
const DEAD: u64 = 0x6465_6164_6361_6368; // "deadcach"

/// What a `umem_cache_t *` points at.
pub struct CCache {
    magic: u64,
    /// Set right after the slab cache is made (null only inside create).
    cache: *const Cache,
    fast: usize,
    /// Frees go through the checked path (`UMEM_DEBUG` at creation).
    checked: bool,
    ctor: Option<Constructor>,
    dtor: Option<Destructor>,
    reclaim: Option<Reclaim>,
    private: *mut c_void,
}

fn ctor_trampoline(buf: NonNull<u8>, private: *mut ()) -> bool {
    // SAFETY: `private` is the CCache this trampoline was installed for; it
    // lives as long as its slab cache.
    let c = unsafe { &*(private as *const CCache) };
    match c.ctor {
        // SAFETY: a C constructor of the documented type, with a buffer of
        // the cache's size.
        Some(f) => unsafe { f(buf.as_ptr().cast(), c.private, UMEM_DEFAULT) == 0 },
        None => true,
    }
}

fn dtor_trampoline(buf: NonNull<u8>, private: *mut ()) {
    // SAFETY: as in ctor_trampoline.
    let c = unsafe { &*(private as *const CCache) };
    if let Some(f) = c.dtor {
        // SAFETY: a C destructor of the documented type, with a constructed object.
        unsafe { f(buf.as_ptr().cast(), c.private) }
    }
}

fn reclaim_trampoline(private: *mut ()) {
    // SAFETY: as in ctor_trampoline.
    let c = unsafe { &*(private as *const CCache) };
    if let Some(f) = c.reclaim {
        // SAFETY: a C reclaim callback of the documented type.
        unsafe { f(c.private) }
    }
}

/// The live cache behind a `umem_cache_t *`, or an abort naming `func`.
///
/// # Safety
/// `cp` is NULL or points at readable memory of at least a `CCache` (any
/// pointer umem handed out as a `umem_cache_t *` qualifies, destroyed or not).
#[inline]
unsafe fn live<'a>(func: &str, cp: *mut c_void) -> &'a CCache {
    let c = cp as *const CCache;
    // SAFETY: by the caller; the magic word is read before anything else.
    if c.is_null() || unsafe { (*c).magic } != LIVE {
        bad_cache(func, cp);
    }
    // SAFETY: a live CCache (checked above).
    unsafe { &*c }
}

#[cold]
fn bad_cache(func: &str, cp: *mut c_void) -> ! {
    sys::fatal(format_args!(
        "umem: {func}(): {cp:p} is not a live umem_cache_t (never created, or destroyed)"
    ))
}

/// `umem_cache_create(name, bufsize, align, constructor, destructor,
/// reclaim, private, source, cflags)`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; the callbacks are NULL or C
/// functions of the documented types that may run on any thread; `source`
/// is NULL or a live `vmem_t *` from `vmem_create`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn umem_cache_create(
    name: *const c_char,
    bufsize: usize,
    align: usize,
    ctor: Option<Constructor>,
    dtor: Option<Destructor>,
    reclaim: Option<Reclaim>,
    private: *mut c_void,
    source: *mut c_void,
    cflags: c_int,
) -> *mut c_void {
    let known = UMC_NOTOUCH | UMC_NODEBUG | UMC_NOMAGAZINE | UMC_NOHASH;
    if name.is_null()
        || bufsize == 0
        || align & align.wrapping_sub(1) != 0
        || cflags & (UMC_NOTOUCH | UMC_NOHASH) == UMC_NOTOUCH | UMC_NOHASH
        || cflags & !known != 0
    {
        sys::set_errno(libc::EINVAL);
        return null_mut();
    }
    let arena = if source.is_null() {
        umem_vmem::heap()
    } else {
        // SAFETY: by the caller.
        unsafe { arena_of("umem_cache_create", source) }.vm
    };
    let mut flags = CacheFlags::NONE;
    for (c, f) in [
        (UMC_NOTOUCH, CacheFlags::NOTOUCH),
        (UMC_NODEBUG, CacheFlags::NODEBUG),
        (UMC_NOMAGAZINE, CacheFlags::NOMAGAZINE),
        (UMC_NOHASH, CacheFlags::NOHASH),
    ] {
        if cflags & c != 0 {
            flags = flags | f;
        }
    }
    let debug = debugging() && cflags & (UMC_NODEBUG | UMC_NOTOUCH) == 0;
    if debug {
        flags = flags | CacheFlags::DEBUG;
    }
    let cc = Box::into_raw(Box::new(CCache {
        magic: LIVE,
        cache: core::ptr::null(),
        fast: 0,
        checked: debug,
        ctor,
        dtor,
        reclaim,
        private,
    }));
    let ops = CacheOps {
        ctor: ctor.map(|_| ctor_trampoline as umem_slab::CtorFn),
        dtor: dtor.map(|_| dtor_trampoline as umem_slab::DtorFn),
        reclaim: reclaim.map(|_| reclaim_trampoline as umem_slab::ReclaimFn),
        private: cc.cast(),
    };
    // SAFETY: by the caller, `name` is a NUL-terminated string.
    let name = unsafe { c_name(name) };
    match Cache::create(name, bufsize, align, ops, arena, flags) {
        Ok(k) => {
            // SAFETY: `cc` is ours and not yet shared with C; the slab cache
            // only reads the callbacks' fields, which do not change.
            unsafe {
                (*cc).cache = k;
                (*cc).fast = k.fast_index().raw();
            }
            cc.cast()
        }
        Err(e) => {
            // SAFETY: the cache was not made, nothing else holds `cc`.
            drop(unsafe { Box::from_raw(cc) });
            sys::set_errno(match e {
                SlabError::TooLarge { .. } => libc::ENOMEM,
                SlabError::NoMemory => libc::EAGAIN,
                _ => libc::EINVAL,
            });
            null_mut()
        }
    }
}

/// `umem_cache_alloc(cache, flags)`: a constructed object, or NULL (never
/// with `UMEM_NOFAIL`).
///
/// # Safety
/// `cp` is a `umem_cache_t *` from `umem_cache_create`.
#[no_mangle]
pub unsafe extern "C" fn umem_cache_alloc(cp: *mut c_void, flags: c_int) -> *mut c_void {
    // SAFETY: by the caller.
    let c = unsafe { live("umem_cache_alloc", cp) };
    // SAFETY: set by a successful create (the magic says it was).
    let k = unsafe { &*c.cache };
    let mut round = 0;
    loop {
        if !inject(flags) {
            // SAFETY: `fast` is this cache's fast index.
            if let Some(p) = unsafe { k.alloc_with(FastIndex::from_raw(c.fast)) } {
                return p.as_ptr().cast();
            }
        }
        if !retry(flags, &mut round) {
            return null_mut();
        }
    }
}

/// `umem_cache_free(cache, buf)`: `buf` must be in its constructed state.
///
/// # Safety
/// `cp` is a `umem_cache_t *`; `buf` was allocated from it and is not used
/// afterwards (checked under `UMEM_DEBUG`).
#[no_mangle]
pub unsafe extern "C" fn umem_cache_free(cp: *mut c_void, buf: *mut c_void) {
    // SAFETY: by the caller.
    let c = unsafe { live("umem_cache_free", cp) };
    // SAFETY: set by a successful create.
    let k = unsafe { &*c.cache };
    let Some(p) = NonNull::new(buf.cast::<u8>()) else {
        sys::fatal(format_args!(
            "umem: umem_cache_free(cache '{}', NULL): NULL buffer",
            k.name()
        ));
    };
    if c.checked {
        // SAFETY: the checked path refuses what is not a live buffer of `k`.
        if let Err(e) = unsafe { k.free_checked(p) } {
            sys::fatal(format_args!("umem: umem_cache_free(): {e}"));
        }
    } else {
        // SAFETY: by the caller, a live object of this cache.
        unsafe { k.free_with(FastIndex::from_raw(c.fast), p) }
    }
}

/// `umem_cache_destroy(cache)`.
///
/// # Safety
/// `cp` is a `umem_cache_t *` that no thread uses during or after the call.
#[no_mangle]
pub unsafe extern "C" fn umem_cache_destroy(cp: *mut c_void) {
    // SAFETY: by the caller.
    let c = unsafe { live("umem_cache_destroy", cp) };
    // SAFETY: set by a successful create; made by Cache::create, so 'static.
    let k: &'static Cache = unsafe { &*c.cache };
    // SAFETY: by the caller, nobody uses the cache any more.
    match unsafe { k.destroy() } {
        Ok(()) => {
            let cc = cp as *mut CCache;
            // SAFETY: the slab cache is gone (its destructors ran), so
            // nothing refers to `cc` any more; it came from Box::into_raw.
            unsafe {
                (*cc).magic = DEAD;
                drop(Box::from_raw(cc));
            }
        }
        Err(e) => {
            sys::warn(format_args!(
                "umem: umem_cache_destroy: '{}' ({cp:p}) not empty: {e}; the cache is left in place\n",
                k.name()
            ));
            // SAFETY: the CCache stays allocated (the slab cache still
            // refers to it); only its magic word changes.
            unsafe { (*(cp as *mut CCache)).magic = DEAD };
        }
    }
}
