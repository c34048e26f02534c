//! The allocation paths under `UMEM_DEBUG` (any word: `debug_options.rs`),
//! libumem's `umem_alloc`/`umem_free` with debugging on: what `malloc`,
//! `free`, `realloc` and Rust's `Umem` do when debugging asks for more than
//! the fast paths can give.
//!
//! The hit tables hold no index while debugging is on, so every call misses
//! and the miss paths (`alloc.rs`, `free.rs`, `realloc.rs`, `Umem`) come
//! here after one relaxed load; without `UMEM_DEBUG` nothing here runs.
//!
//! * **alloc**: `mtbf` may fail it (`fault.rs`); a small block comes from its
//!   size class (with `guards`, a debug cache) and gets its requested size
//!   recorded (`Cache::set_requested`: the redzone starts there); a large
//!   or firewalled one is `debug_large.rs`'s. A failure is logged
//!   (`UMEM_LOGGING=fail`) and under `checknull` reported and aborted on.
//! * **free**: a debug large block is checked and unmapped; a small block
//!   goes to its cache's checked debug free (`Cache::free_debug`: start of a
//!   buffer, buftag state, redzone, underrun); anything wrong is reported
//!   (`debug_report.rs`) and the block left alone under `noabort`. Without
//!   `guards` (only `mtbf`, `checknull`, `firewall` or a log) a small block
//!   gets the default mode's checks (`free_check.rs`).
//! * **realloc** always moves (so the new size gets its own redzone, or its
//!   firewall page), after checking the old block like a free.
//!
//! With `UMEM_LOGGING=transaction` each alloc and free is logged, and with
//! `contents` the first bytes of each freed block.

use core::ptr::{null_mut, NonNull};
use core::sync::atomic::Ordering;

use crate::arenas::{self, FAILED};
use crate::debug_large::{self, Block};
use crate::debug_options::{CHECKNULL, DEBUG};
use crate::debug_report::{self, Owner, Report};
use crate::free_check::check_and_mark;
use crate::init::ensure_init;
use crate::pagemap::{self, PageKind};
use crate::sys::PAGE;
use crate::umem_log::{self, LogKind, LogOp};
use crate::{boot, caches, classes, fault, large, reclaim};

/// A block of `size` bytes aligned to `align` (zeroed when `zero`), or null.
pub fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    let p = alloc_inner(size, align, zero);
    if p.is_null() {
        failed(size, align);
    } else {
        umem_log::record(LogKind::Transaction, LogOp::Alloc, p as usize, size, &[]);
    }
    p
}

fn alloc_inner(size: usize, align: usize, zero: bool) -> *mut u8 {
    if !ensure_init() {
        if arenas::STATE.load(Ordering::Acquire) == FAILED {
            return null_mut();
        }
        return boot::alloc(size, align);
    }
    if fault::inject() {
        return null_mut();
    }
    let p = alloc_once(size, align, zero);
    if !p.is_null() || large::pages_for(size).is_none() || !reclaim::reap_for_retry() {
        return p;
    }
    alloc_once(size, align, zero)
}

fn alloc_once(size: usize, align: usize, zero: bool) -> *mut u8 {
    let guards = DEBUG.load(Ordering::Relaxed);
    if !debug_large::wants_firewall(size, align) {
        if let Some(c) = classes::layout_class(size, align) {
            let Some(k) = caches::class_or_create(c) else {
                return null_mut();
            };
            let Some(p) = k.alloc() else {
                return null_mut();
            };
            // SAFETY: a fresh block of class c, at least `size` (and 8) bytes.
            unsafe {
                if !guards {
                    // It held the free key (`free.rs`).
                    *(p as *mut usize) = 0;
                }
                if zero {
                    core::ptr::write_bytes(p, 0, size);
                }
                if let (true, Some(cache), Some(nn)) =
                    (guards, caches::cache_of(c), NonNull::new(p))
                {
                    cache.set_requested(nn, size);
                }
            }
            return p;
        }
    }
    if guards || debug_large::wants_firewall(size, align) {
        debug_large::alloc(size, align)
    } else {
        large::alloc(size, align, zero)
    }
}

/// An allocation failed: log it; under `checknull`, report and abort.
#[cold]
fn failed(size: usize, align: usize) {
    umem_log::record(LogKind::Fail, LogOp::Fail, 0, size, &[]);
    if CHECKNULL.load(Ordering::Relaxed) {
        debug_report::report(
            &Report {
                kind: "allocation failure (UMEM_DEBUG=checknull: abort instead of returning NULL)",
                buf: 0,
                size: Some(size),
                owner: Owner::Unknown,
                detail: format_args!(
                    "no memory for {size} bytes aligned to {align}{}",
                    if fault::INJECTED.load(Ordering::Relaxed) != 0 {
                        " (UMEM_DEBUG=mtbf injects failures)"
                    } else {
                        ""
                    }
                ),
                dump: None,
                fatal: true,
            },
            false,
        );
        // Even under noabort: checknull asked for the abort.
        // SAFETY: no preconditions.
        unsafe { libc::abort() };
    }
}

/// Logs the free of `p` (`size` bytes readable at it).
fn log_free(p: usize, size: usize) {
    umem_log::record(LogKind::Transaction, LogOp::Free, p, size, &[]);
    if umem_log::on(LogKind::Contents) {
        let n = size.min(crate::debug_options::CONTENTS.load(Ordering::Relaxed));
        // SAFETY: the caller checked that `size` bytes at `p` are the live block's.
        let bytes = unsafe { core::slice::from_raw_parts(p as *const u8, n) };
        umem_log::record(LogKind::Contents, LogOp::Free, p, size, bytes);
    }
}

/// Reports an overrun of the debug large block `b` (offset, byte found).
fn report_large(b: &Block, kind: &str, off: usize, v: u8) {
    debug_report::report(
        &Report {
            kind,
            buf: b.ptr,
            size: Some(b.size),
            owner: Owner::Large {
                firewall: b.kind == debug_large::Kind::Firewall,
            },
            detail: format_args!(
                "byte at offset {off} ({off:#x}) is {v:#04x}, not the redzone's 0xbb: {} byte{} past the request",
                off - b.size + 1,
                if off == b.size { "" } else { "s" }
            ),
            dump: Some((b.ptr + off, 16)),
            fatal: false,
        },
        false,
    );
}

/// Reports a pointer umem did not hand out, given to `func` ("free",
/// "realloc").
fn report_invalid(kind: &str, func: &str, p: usize) {
    debug_report::report(
        &Report {
            kind,
            buf: p,
            size: None,
            owner: Owner::Unknown,
            detail: format_args!(
                "{func}({p:#x}): invalid pointer: no size class, large block or debug block starts there"
            ),
            dump: None,
            fatal: false,
        },
        false,
    );
}

/// The debug large block at `a` (page-map entry `kind`), asked of the table
/// with `get` (`lookup` or `take`) only when `a` is not on a size class's
/// pages, where no debug large block lies: small frees take no table lock.
fn debug_large_at(a: usize, kind: PageKind, get: fn(usize) -> Option<Block>) -> Option<Block> {
    if matches!(kind, PageKind::Small(_)) {
        None
    } else {
        get(a)
    }
}

/// Frees `p` under debugging (see the module documentation).
///
/// # Safety
/// As `free::free`: `p` is null, a block umem handed out and not freed since,
/// or any other pointer (which is reported).
pub unsafe fn free(p: *mut u8) {
    let a = p as usize;
    if p.is_null() {
        return;
    }
    // Small blocks first (no table lock): debug large blocks never lie on a
    // size class's pages.
    let kind = pagemap::lookup(a);
    if let Some(b) = debug_large_at(a, kind, debug_large::take) {
        if let Some((off, v)) = debug_large::check(&b) {
            report_large(
                &b,
                "redzone overrun (write past the end of the buffer)",
                off,
                v,
            );
        }
        log_free(a, b.size);
        debug_large::free_pages(&b);
        return;
    }
    match kind {
        PageKind::Small(c) => {
            let (Some(k), Some(cc)) = (caches::cache_of(c), caches::class_cache(c)) else {
                report_invalid("invalid free (not a block umem handed out)", "free", a);
                return;
            };
            if !DEBUG.load(Ordering::Relaxed) {
                // A cache without guards (only mtbf, checknull, firewall or a
                // log asked for the debug path): the default mode's checks.
                if a & (classes::align(c) - 1) != 0 {
                    report_invalid("invalid free (not a block umem handed out)", "free", a);
                    return;
                }
                log_free(a, classes::size(c));
                check_and_mark("free", a, c, cc, true);
                // SAFETY: a block start of class c that is not free (checked).
                unsafe { cc.free(p) };
                return;
            }
            // SAFETY: non-null.
            let nn = unsafe { NonNull::new_unchecked(p) };
            if (umem_log::on(LogKind::Transaction) || umem_log::on(LogKind::Contents))
                && k.check_allocated(nn).is_ok()
            {
                // SAFETY: an allocated buffer of k (checked).
                let n = unsafe { k.requested(nn) }.unwrap_or(k.buf_size());
                log_free(a, n);
            }
            // SAFETY: by the caller; the checks refuse anything else.
            if let Err(e) = unsafe { k.free_debug(nn) } {
                debug_report::slab_error("", k, &e, false);
            }
        }
        e @ (PageKind::Large(_) | PageKind::Aligned(_)) if a & (PAGE - 1) == 0 => {
            // A large block made before debugging was read (the first
            // allocation of the process).
            log_free(a, 0);
            large::free(a, e);
        }
        _ if boot::owns(a) => {}
        _ => report_invalid("invalid free (not a block umem handed out)", "free", a),
    }
}

/// The size requested for the live block `p`, where debugging knows it
/// (a small block of a debug cache, a debug large block); `None` otherwise.
pub fn requested_size(p: *const u8) -> Option<usize> {
    let a = p as usize;
    let kind = pagemap::lookup(a);
    if let Some(b) = debug_large_at(a, kind, debug_large::lookup) {
        return Some(b.size);
    }
    match kind {
        PageKind::Small(c) if DEBUG.load(Ordering::Relaxed) => {
            let k = caches::cache_of(c)?;
            let nn = NonNull::new(p as *mut u8)?;
            k.check_allocated(nn).ok()?;
            // SAFETY: an allocated buffer of k (checked).
            unsafe { k.requested(nn) }
        }
        _ => None,
    }
}

/// The bytes a program may read from the live block `p` (what `realloc`
/// copies), or why it is not a live block (reported as a bad realloc).
fn readable(p: *mut u8) -> Option<usize> {
    let a = p as usize;
    let kind = pagemap::lookup(a);
    if let Some(b) = debug_large_at(a, kind, debug_large::lookup) {
        if let Some((off, v)) = debug_large::check(&b) {
            report_large(
                &b,
                "bad realloc: redzone overrun (write past the end of the buffer)",
                off,
                v,
            );
        }
        return Some(b.size);
    }
    match kind {
        PageKind::Small(c) if a & (classes::align(c) - 1) == 0 || DEBUG.load(Ordering::Relaxed) => {
            let (Some(k), Some(nn)) = (caches::cache_of(c), NonNull::new(p)) else {
                report_invalid(
                    "bad realloc (not a live block umem handed out)",
                    "realloc",
                    a,
                );
                return None;
            };
            if let Err(e) = k.check_allocated(nn) {
                debug_report::slab_error("bad realloc: ", k, &e, false);
                return None;
            }
            // SAFETY: an allocated buffer of k (checked).
            Some(unsafe { k.requested(nn) }.unwrap_or(k.buf_size()))
        }
        PageKind::Large(n) | PageKind::Aligned(n) if a & (PAGE - 1) == 0 => {
            Some(large::len_of(a, n * PAGE))
        }
        // SAFETY: a bootstrap block has its header.
        _ if boot::owns(a) => Some(unsafe { boot::size_of(a) }),
        _ => {
            report_invalid(
                "bad realloc (not a live block umem handed out)",
                "realloc",
                a,
            );
            None
        }
    }
}

/// `realloc` under `UMEM_DEBUG`: always a new block (so the new size gets its
/// own redzone, and a firewall block its guard page), after checking the old one
/// (a bad one is reported as a bad realloc: abort, or under `noabort` null
/// with the old block left alone). Null also when there is no memory (the
/// old block untouched).
///
/// # Safety
/// As `realloc::realloc`.
pub unsafe fn realloc(p: *mut u8, size: usize, align: usize) -> *mut u8 {
    let Some(old) = readable(p) else {
        return null_mut();
    };
    let q = alloc(size, align, false);
    if q.is_null() {
        return q;
    }
    // SAFETY: both live and distinct; min(old, size) bytes readable in `p`
    // and writable in `q`.
    unsafe {
        core::ptr::copy_nonoverlapping(p, q, old.min(size));
        free(p);
    }
    q
}
