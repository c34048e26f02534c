//! # umem-preload — the C malloc family on umem (`libumem.so`)
//!
//! ## Theory statement
//!
//! This cdylib is the only place with `#[no_mangle]` malloc-family symbols.
//! Each entry point is a thin, non-unwinding wrapper over
//! [`umem_global`]'s core through its internal interface for this crate,
//! `umem_global::preload_abi` (`alloc`, `free`, `realloc`, …), and adds
//! glibc's C semantics: `malloc(0)`
//! returns a unique block, failures return NULL with `errno = ENOMEM`,
//! `calloc`/`reallocarray` check for overflow, `posix_memalign` returns
//! `EINVAL`/`ENOMEM` without touching `*memptr` or errno, `realloc(p, 0)`
//! frees and returns NULL, a failed `realloc` keeps the old block, `free`
//! keeps errno, `malloc_usable_size(NULL)` is 0. A C block is 16-byte
//! aligned (`max_align_t`), except that one of at most 8 bytes (and
//! `malloc(0)`'s) is 8-byte aligned, as C17 allows and mimalloc, jemalloc
//! and tcmalloc do (`umem_global`'s `classes.rs`).
//!
//! A pointer umem does not own (by the page map) given to `free`, `realloc`
//! or `malloc_usable_size` aborts the process with a one-line message that
//! names the function and the pointer, written with write(2).
//!
//! `calloc` zeroes with a plain `write_bytes` after a slab allocation that
//! the compiler does not know as `malloc`, so it cannot be "optimised" into
//! a call to `calloc` (the recursion that broke libumem's portable build).
//!
//! The library's own Rust code also allocates from umem ([`Umem`] is its
//! `#[global_allocator]`), never from libc malloc, so nothing here can
//! re-enter the C entry points. Initialisation, the bootstrap arena for
//! re-entrant calls during initialisation, fork handling and thread-exit
//! flushing live in umem-global and umem-slab; the statistics table
//! (`UMEM_STATS=1`) is printed from umem-global's `.fini_array` entry.
//!
//! The library is linked `-z nodelete` (build.rs): its fork handlers and
//! the thread-key destructor point into it, so a `dlclose` must not unload it.
//!
//! **Code layout** (x86-64 Linux): the functions ordinary programs run (the
//! C entry points, start-up, the slow paths, the update, thread exit) are
//! gathered at the front of the library's code by a linker script,
//! `hot-text.ld`, that `ci/hot-text` generates by recording which code
//! pages programs fault on. A small program's resident set then holds about
//! 150 KB of the library's code instead of about 300 KB
//! (docs/performance.md, "The code programs run, gathered").
//!
//! **Panics** abort: the release profile has `panic = "abort"`, and a hook
//! installed when the library is loaded (`.init_array`) writes
//! `umem: panic: <location and message>` with write(2) and aborts, before
//! std's default hook could run (it allocates — here, from umem itself,
//! possibly under one of umem's locks).
//!
//! Locks: none of its own (see umem-global for the order).

#![deny(unsafe_op_in_unsafe_fn)]

mod capi;
mod cxx;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod nounwind;

use core::ffi::{c_int, c_void};
use core::ptr::null_mut;
use umem_global::preload_abi::{self as abi, sys, FreeError};
use umem_global::Umem;

#[global_allocator]
static GLOBAL: Umem = Umem;

/// Installs the panic hook (see the theory statement). A zero-sized closure:
/// its `Box` allocates nothing.
///
/// With `UMEM_SELFTEST_PANIC` set in the environment, the library then panics
/// on purpose (an index out of bounds), so that a test can check that a panic
/// inside the library aborts with the hook's one-line message. That is the
/// only test machinery in the shipped library: one `getenv` when it is loaded.
extern "C" fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        sys::fatal(format_args!("umem: panic: {info}"))
    }));
    // SAFETY: a NUL-terminated name; getenv does not allocate and the
    // environment is not being changed while the library is loaded.
    if !unsafe { libc::getenv(c"UMEM_SELFTEST_PANIC".as_ptr()) }.is_null() {
        let table = [1usize, 2, 3];
        let _ = table[core::hint::black_box(7)];
    }
}

#[used]
#[link_section = ".init_array"]
static INSTALL_PANIC_HOOK: extern "C" fn() = install_panic_hook;

/// The C ABI's minimum alignment (glibc's MALLOC_ALIGNMENT on 64-bit).
const MIN_ALIGN: usize = 16;

#[cold]
fn invalid(func: &str, p: *const c_void) -> ! {
    let a = p as usize;
    if umem_global::has_buffer_history(a) {
        // UMEM_DEBUG=audit: the line, then the history of the block the
        // pointer falls in.
        sys::warn(format_args!(
            "umem: {func}(): invalid pointer {a:#x} (not a block allocated by umem)\n"
        ));
        umem_global::print_buffer_history(2, a);
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() };
    }
    sys::fatal(format_args!(
        "umem: {func}(): invalid pointer {a:#x} (not a block allocated by umem)"
    ))
}

#[inline]
fn nomem() -> *mut c_void {
    sys::set_errno(libc::ENOMEM);
    null_mut()
}

#[inline]
fn alloc_c(size: usize, align: usize, zero: bool) -> *mut c_void {
    let p = abi::alloc(size, align, zero);
    if p.is_null() {
        return nomem();
    }
    p.cast()
}

// malloc and free: the magazine hit inline (it makes no calls, so it needs
// no stack frame; umem-global's theory statement, section 2), everything
// else in a tail-called function.

#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    match abi::c_alloc_hit(size) {
        Some(p) => p.cast(),
        None => malloc_miss(size),
    }
}

#[inline(never)]
pub(crate) fn malloc_miss(size: usize) -> *mut c_void {
    // Per-CPU magazines (the default): the CPU's previous magazine, which
    // the hit above does not try.
    if let Some(p) = abi::c_alloc_cpu_hit(size) {
        return p.cast();
    }
    let p = abi::c_alloc(size, false);
    if p.is_null() {
        return nomem();
    }
    p.cast()
}

/// # Safety
/// `p` is null or a block this library handed out and not freed since (a
/// pointer it never handed out is detected and aborts).
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: by the caller.
    unsafe { free_inline(p) }
}

/// `free`'s body, for the entry points that free as `free` does (C++'s
/// `operator delete`) without a call through the GOT to `free`.
///
/// # Safety
/// As for `free`.
#[inline(always)]
unsafe fn free_inline(p: *mut c_void) {
    // SAFETY: the caller passes a block it owns (or a foreign pointer,
    // which free_miss refuses).
    unsafe {
        match abi::free_hit(p.cast()) {
            abi::FreeHit::Done => {}
            abi::FreeHit::Miss => free_miss(p),
            abi::FreeHit::Marked => abi::free_marked(p.cast()),
        }
    }
}

/// `free` past a hit that answered `Miss` (not trying the hit again).
///
/// # Safety
/// As for `free`.
#[inline(never)]
unsafe fn free_miss(p: *mut c_void) {
    // SAFETY: by the caller.
    if let Err(FreeError::InvalidPointer(_)) = unsafe { abi::free_miss(p.cast()) } {
        invalid("free", p);
    }
}

/// # Safety
/// `p` is null or a block this library handed out and not freed since (a
/// pointer it never handed out is detected and aborts).
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: same contract as free.
    unsafe { free(p) }
}

#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => {
            let p = abi::c_alloc(total, true);
            if p.is_null() {
                return nomem();
            }
            p.cast()
        }
        None => nomem(),
    }
}

/// # Safety
/// `p` is null or a block this library handed out and not freed since; on
/// success the old block must no longer be used.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // glibc: realloc(p, 0) frees p and returns NULL.
        // SAFETY: p is a block the caller owns.
        unsafe { free(p) };
        return null_mut();
    }
    // SAFETY: as in free.
    match unsafe { abi::realloc(p.cast(), size, MIN_ALIGN) } {
        Ok(q) if q.is_null() => nomem(),
        Ok(q) => q.cast(),
        Err(_) => invalid("realloc", p),
    }
}

/// # Safety
/// `p` is null or a block this library handed out and not freed since; on
/// success the old block must no longer be used.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: same contract as realloc.
        Some(total) => unsafe { realloc(p, total) },
        None => nomem(),
    }
}

/// glibc's memalign: alignments up to 16 are plain malloc, others are
/// rounded up to a power of two; absurd ones are EINVAL.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    if align <= MIN_ALIGN {
        return malloc(size);
    }
    if align > usize::MAX / 2 + 1 {
        sys::set_errno(libc::EINVAL);
        return null_mut();
    }
    alloc_c(size, align.next_power_of_two(), false)
}

#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if align == 0 || !align.is_power_of_two() {
        sys::set_errno(libc::EINVAL);
        return null_mut();
    }
    memalign(align, size)
}

/// # Safety
/// `out` is valid for a write of a pointer.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // A power of two is a multiple of sizeof(void *) iff it is at least that.
    if !align.is_power_of_two() || align < core::mem::size_of::<*mut c_void>() {
        return libc::EINVAL;
    }
    let p = sys::keep_errno(|| abi::alloc(size, align.max(MIN_ALIGN), false));
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller passes a valid out-pointer.
    unsafe { *out = p.cast() };
    0
}

#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    alloc_c(size, sys::PAGE, false)
}

#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    match size.checked_add(sys::PAGE - 1) {
        Some(s) => alloc_c((s & !(sys::PAGE - 1)).max(sys::PAGE), sys::PAGE, false),
        None => nomem(),
    }
}

/// # Safety
/// `p` is null or a live block this library handed out.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    if abi::debug::debug_path() {
        // Under UMEM_DEBUG, the size requested: the redzone starts there.
        if let Some(n) = abi::debug::requested_size(p.cast()) {
            return n;
        }
    }
    match abi::usable_size(p.cast()) {
        Some(n) => n,
        None => invalid("malloc_usable_size", p),
    }
}

#[no_mangle]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    // A full reap, every retained span back to the system and every free
    // page of umem's arenas discarded; 1 if memory went back (as glibc).
    c_int::from(umem_global::preload_abi::trim())
}

// glibc-internal names (used by some programs and by older glibc internals).

#[no_mangle]
pub extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    malloc(size)
}
/// # Safety
/// `p` is null or a block this library handed out and not freed since (a
/// pointer it never handed out is detected and aborts).
#[no_mangle]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    // SAFETY: same contract.
    unsafe { free(p) }
}
#[no_mangle]
pub extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    calloc(n, size)
}
/// # Safety
/// `p` is null or a block this library handed out and not freed since; on
/// success the old block must no longer be used.
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: same contract.
    unsafe { realloc(p, size) }
}
#[no_mangle]
pub extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    memalign(align, size)
}
#[no_mangle]
pub extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    valloc(size)
}
#[no_mangle]
pub extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    pvalloc(size)
}
/// # Safety
/// `out` is valid for a write of a pointer.
#[no_mangle]
pub unsafe extern "C" fn __posix_memalign(
    out: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    // SAFETY: same contract.
    unsafe { posix_memalign(out, align, size) }
}
