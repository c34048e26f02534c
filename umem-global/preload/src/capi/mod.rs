//! # libumem's C API: `<umem.h>` and `<sys/vmem.h>` (`include/`)
//!
//! ## Theory statement
//!
//! These modules export libumem's own interface from `libumem.so`, beside
//! the malloc family, so that a C program written for illumos's libumem
//! (`#include <umem.h>`, `-lumem`) builds and runs unchanged:
//!
//! * [`umem`] — `umem_alloc`, `umem_zalloc`, `umem_free`, `umem_alloc_align`,
//!   `umem_free_align`, `umem_nofail_callback`, `umem_reap`, `umem_setmtbf`
//!   — sized blocks from umem-global's size classes and large blocks
//!   (through [`umem_global::Umem`], 8-byte aligned as libumem's
//!   `UMEM_ALIGN`);
//! * [`cache`] — `umem_cache_create/alloc/free/destroy` — umem-slab object
//!   caches whose callbacks are C functions (Rust trampolines, see there);
//! * [`vmem`] — `vmem_create/destroy/alloc/xalloc/free/xfree/add/contains/
//!   walk/size` — umem-vmem arenas, with C `afunc`/`ffunc` sources;
//! * [`leaks`] — `umem_findleaks`, an extension: the leak scan on demand
//!   (`UMEM_DEBUG=audit`);
//! * [`introspect`] — glibc's `mallinfo`, `mallinfo2`, `malloc_stats`,
//!   `malloc_info` and `mallopt`, answered from [`umem_global::stats`].
//!
//! Handles given to C (`umem_cache_t *`, `vmem_t *`) point at small
//! wrapper structs allocated from umem itself (through `Box`, the crate's
//! global allocator being [`umem_global::Umem`]); each starts with a magic
//! word, so a pointer that is not one of ours (or one already destroyed) is
//! refused with a one-line message and `abort()` instead of being used.
//!
//! **Failure** (this module): an allocation that fails returns NULL, unless
//! `UMEM_NOFAIL` was given. Then, as in libumem, umem first reaps
//! (`umem_reap`) and retries once; if that fails too it calls the nofail
//! callback: `UMEM_CALLBACK_RETRY` retries (and reaps again),
//! `UMEM_CALLBACK_EXIT(status)` calls `exit(status)` (one thread only:
//! others that get there wait for the exit; a callback that itself exits
//! from a nofail allocation aborts with "recursive UMEM_CALLBACK_EXIT"),
//! any other value is reported and treated as `UMEM_CALLBACK_EXIT(255)`;
//! no callback set means `UMEM_CALLBACK_EXIT(255)`. Constructors get
//! `UMEM_DEFAULT` as their flags, so that they fail instead of exiting and
//! the outermost allocation applies the nofail policy (libumem's rule).
//!
//! **Fault injection** (`umem_setmtbf(n)`): with `n > 0`, every `n`-th
//! allocation that may fail (`umem_alloc`, `umem_zalloc`,
//! `umem_alloc_align`, `umem_cache_alloc` without `UMEM_NOFAIL`) returns
//! NULL, counted process-wide; `0` turns it off. Deviation from illumos:
//! illumos injects only when `UMEM_DEBUG` is set and when `gethrtime() % n
//! == 0`; here it is deterministic and needs no debugging (its man page
//! promises only that 0 is off, 1 fails everything and larger means rarer,
//! which holds).
//!
//! **Debugging** (`UMEM_DEBUG=default|guards|contents`, read once with
//! `getenv`): `umem_free` checks that the buffer is a umem block of the
//! size class (or page count) its size names and aborts with a message
//! naming the buffer and both sizes if not; `umem_cache_free` uses the slab
//! layer's checked free (wrong cache, interior pointer, double free); user
//! caches get the slab debug layout unless created `UMC_NODEBUG` or
//! `UMC_NOTOUCH`. A `umem_free` whose size is not the size allocated (the
//! size-encoded redzone says) aborts too. [`debug`] adds `umem_verify()` and
//! `umem_log_walk()` (extensions: mdb's `::umem_verify` and `::umalog` as
//! calls).
//!
//! Nothing here takes a lock of its own except the exit lock of the nofail
//! path (a word that is never released); C callbacks (constructors,
//! destructors, reclaim, afunc/ffunc, walk callbacks) run with the locks
//! of umem-slab/umem-vmem that those crates document.

// The crate allows it for the malloc family; here every unsafe fn says why.
#![deny(clippy::missing_safety_doc)]

pub mod cache;
pub mod debug;
pub mod introspect;
pub mod leaks;
pub mod umem;
pub mod vmem;

use core::ffi::{c_char, c_int, CStr};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use umem_global::preload_abi::sys;

/// `UMEM_DEFAULT`.
pub const UMEM_DEFAULT: c_int = 0;
/// `UMEM_NOFAIL`.
pub const UMEM_NOFAIL: c_int = 0x100;
/// `UMEM_CALLBACK_RETRY`.
pub const UMEM_CALLBACK_RETRY: c_int = 0;
/// `UMEM_CALLBACK_EXIT(0)`: the tag of an exit status.
pub const UMEM_CALLBACK_EXIT0: c_int = 0x100;

/// `umem_nofail_callback_t`.
pub type NofailCallback = unsafe extern "C" fn() -> c_int;

/// The process-wide nofail callback (a function pointer, or null).
static NOFAIL_CALLBACK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// `pthread_self()` of the thread that is exiting through the nofail path
/// (0: none yet).
static EXITING: AtomicUsize = AtomicUsize::new(0);

/// Sets the nofail callback (`umem_nofail_callback`); NULL restores the
/// default, `UMEM_CALLBACK_EXIT(255)`.
#[no_mangle]
pub extern "C" fn umem_nofail_callback(cb: Option<NofailCallback>) {
    let p = cb.map_or(core::ptr::null_mut(), |f| f as *mut ());
    NOFAIL_CALLBACK.store(p, Ordering::Release);
}

/// Called after an allocation with `flags` failed; `true` means "try
/// again". `round` counts the failures of this allocation so far (the
/// first one only reaps). Never returns `false` for a `UMEM_NOFAIL`
/// allocation: it retries or exits.
pub(crate) fn retry(flags: c_int, round: &mut u32) -> bool {
    if flags & UMEM_NOFAIL == 0 {
        return false;
    }
    *round += 1;
    umem_global::reap();
    if *round == 1 {
        return true;
    }
    let p = NOFAIL_CALLBACK.load(Ordering::Acquire);
    let r = if p.is_null() {
        UMEM_CALLBACK_EXIT0 | 255
    } else {
        // SAFETY: only `umem_nofail_callback` stores here, and it stores a
        // `NofailCallback` (the C caller promises a valid function).
        let f: NofailCallback = unsafe { core::mem::transmute::<*mut (), NofailCallback>(p) };
        // SAFETY: a C function of the documented type, called with no lock held.
        unsafe { f() }
    };
    if r == UMEM_CALLBACK_RETRY {
        return true;
    }
    let status = if r & !0xff == UMEM_CALLBACK_EXIT0 {
        r & 0xff
    } else {
        sys::warn(format_args!(
            "umem: nofail callback returned {r:#x}, not UMEM_CALLBACK_RETRY or UMEM_CALLBACK_EXIT(n); exiting with 255\n"
        ));
        255
    };
    exit_once(status)
}

/// `exit(status)` from one thread only; others wait for it to end the
/// process.
fn exit_once(status: c_int) -> ! {
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() } as usize;
    if EXITING.load(Ordering::Acquire) == me {
        sys::fatal(format_args!(
            "umem: recursive UMEM_CALLBACK_EXIT() (a UMEM_NOFAIL allocation failed while exiting)"
        ));
    }
    if EXITING
        .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        // SAFETY: exit runs the atexit handlers and never returns.
        unsafe { libc::exit(status) }
    }
    loop {
        // SAFETY: pause has no preconditions; another thread is exiting.
        unsafe { libc::pause() };
    }
}

/// `umem_setmtbf`'s threshold (0: off).
static MTBF: AtomicU32 = AtomicU32::new(0);
/// Allocations counted towards the threshold.
static MTBF_COUNT: AtomicU64 = AtomicU64::new(0);

/// Sets the fault-injection threshold (see the theory statement).
#[no_mangle]
pub extern "C" fn umem_setmtbf(thresh: u32) {
    MTBF_COUNT.store(0, Ordering::Relaxed);
    MTBF.store(thresh, Ordering::Relaxed);
}

/// Whether this allocation (with `flags`) is to fail on purpose.
#[inline]
// `is_multiple_of` is newer than the workspace MSRV (1.80).
#[allow(clippy::manual_is_multiple_of)]
pub(crate) fn inject(flags: c_int) -> bool {
    let n = MTBF.load(Ordering::Relaxed);
    if n == 0 || flags & UMEM_NOFAIL != 0 {
        return false;
    }
    (MTBF_COUNT.fetch_add(1, Ordering::Relaxed) + 1) % n as u64 == 0
}

/// 0: not read yet, 1: off, 2: on.
static DEBUGGING: AtomicU8 = AtomicU8::new(0);

/// Whether `UMEM_DEBUG` asks for debugging (`default`, `guards` or
/// `contents`, as umem-global reads it).
pub(crate) fn debugging() -> bool {
    match DEBUGGING.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            // SAFETY: a NUL-terminated name; getenv does not allocate.
            let p = unsafe { libc::getenv(c"UMEM_DEBUG".as_ptr()) };
            let on = !p.is_null() && {
                // SAFETY: getenv returned a NUL-terminated string.
                let v = unsafe { CStr::from_ptr(p) }.to_bytes();
                v.split(|&c| c == b',').any(|w| {
                    let name = w.split(|&c| c == b'=').next().unwrap_or(b"");
                    matches!(
                        name,
                        b"default" | b"guards" | b"contents" | b"audit" | b"lite" | b"nosignal"
                    )
                })
            };
            DEBUGGING.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
    }
}

/// A C string as `&str`: its longest valid UTF-8 prefix; `"(null)"` for NULL.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that outlives the result.
pub(crate) unsafe fn c_name<'a>(p: *const c_char) -> &'a str {
    if p.is_null() {
        return "(null)";
    }
    // SAFETY: by the caller.
    let b = unsafe { CStr::from_ptr(p) }.to_bytes();
    match core::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) => {
            // SAFETY: `valid_up_to` bytes are valid UTF-8.
            unsafe { core::str::from_utf8_unchecked(&b[..e.valid_up_to()]) }
        }
    }
}
