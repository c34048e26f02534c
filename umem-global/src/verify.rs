//! Verify on demand (mdb's `::umem_verify`, as a call): check every cache,
//! slab, buftag and arena of the process and report what is wrong.
//!
//! * every umem-vmem arena: its segment lists, hash and free lists
//!   (`Vmem::verify`);
//! * every umem-slab cache: its slab lists, free lists, hash and depot
//!   (`Cache::verify`), and with `UMEM_DEBUG` guards every buffer's buftag
//!   and redzone, and the fill of every free buffer (`Cache::verify_buffers`);
//! * every debug large block's redzone (`debug_large.rs`).
//!
//! Each problem is printed as a heap-error report (without aborting);
//! [`verify`] returns the counts. Buffers that other threads allocate or
//! free while it runs can be caught half-way: call it when the program is
//! quiet (`UMEM_OPTIONS=verify_at_exit` runs it at exit).

use core::sync::atomic::Ordering;

use crate::debug_large;
use crate::debug_report::{self, Owner, Report};
use crate::sys::warn;

/// What [`verify`] checked and found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Arenas checked.
    pub arenas: usize,
    /// Caches checked.
    pub caches: usize,
    /// Buffers whose buftag and redzone (or fill) were checked.
    pub buffers: usize,
    /// Debug large blocks checked.
    pub large_blocks: usize,
    /// Problems found (each was printed to stderr).
    pub problems: usize,
}

/// Checks every arena, cache, slab, buftag and debug large block (see the
/// module documentation), prints a report for each problem to stderr, and
/// returns what it checked and found. Does nothing before the first
/// allocation.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: umem_global::Umem = umem_global::Umem;
///
/// fn main() {
///     let v = vec![1u8; 100];
///     let r = umem_global::verify();
///     assert_eq!(r.problems, 0);
///     assert!(r.caches > 0 && r.arenas > 0);
///     drop(v);
/// }
/// ```
pub fn verify() -> VerifyReport {
    let mut r = VerifyReport::default();
    if !crate::arenas::is_initialized() {
        return r;
    }
    umem_vmem::for_each_arena(&mut |a| {
        r.arenas += 1;
        if let Err(e) = a.verify() {
            r.problems += 1;
            warn(format_args!("umem: verify: arena {}: {e:?}\n", a.name()));
        }
    });
    umem_slab::for_each_cache(&mut |c| {
        r.caches += 1;
        if let Err(e) = c.verify() {
            r.problems += 1;
            debug_report::slab_error("verify: ", c, &e, true);
        }
        r.buffers += c.verify_buffers(&mut |e| {
            r.problems += 1;
            debug_report::slab_error("verify: ", c, e, true);
        });
    });
    let mut bad = [None; 16];
    let mut nbad = 0;
    debug_large::for_each(&mut |b| {
        r.large_blocks += 1;
        if let Some((off, v)) = debug_large::check(b) {
            if nbad < bad.len() {
                bad[nbad] = Some((*b, off, v));
            }
            nbad += 1;
        }
    });
    // Reported outside the table's lock.
    for &(b, off, v) in bad.iter().take(nbad.min(bad.len())).flatten() {
        debug_report::report(
            &Report {
                kind: "verify: redzone overrun (write past the end of the buffer)",
                buf: b.ptr,
                size: Some(b.size),
                owner: Owner::Large {
                    firewall: b.kind == debug_large::Kind::Firewall,
                },
                detail: format_args!(
                    "byte at offset {off} ({off:#x}) is {v:#04x}, not the redzone's 0xbb"
                ),
                dump: None,
                fatal: false,
            },
            true,
        );
    }
    r.problems += nbad;
    r
}

/// At exit, under `UMEM_OPTIONS=verify_at_exit`: runs [`verify`] and says
/// what it found.
pub fn at_exit() {
    if crate::debug_options::VERIFY_AT_EXIT.load(Ordering::Relaxed) {
        let r = verify();
        warn(format_args!(
            "umem: verify at exit: {} arenas, {} caches, {} buffers, {} large blocks checked: {} problem{}\n",
            r.arenas,
            r.caches,
            r.buffers,
            r.large_blocks,
            r.problems,
            if r.problems == 1 { "" } else { "s" }
        ));
    }
}
