//! `UMEM_DEBUG` and `UMEM_LOGGING`: the debugging words of illumos's
//! `umem_debug(3MALLOC)` and what each turns on here. Parsed once at
//! initialisation (`options::read_env`), without allocating; a malformed or
//! unknown word gets a one-line warning and is ignored.
//!
//! `UMEM_DEBUG`, a comma-separated list:
//! * `default` — `audit,contents,guards`, as in libumem;
//! * `guards` — the size classes' debug layout (umem-slab `DEBUG`): fill
//!   patterns (`0xdeadbeef` free, `0xbaddcafe` fresh), a byte-precise redzone
//!   after every `malloc`'d block (`0xbb` from the requested size on, checked
//!   when the block is freed or realloc'd, large blocks too), double, interior
//!   and invalid frees;
//! * `audit[=frames]` — guards, and each buffer's last allocation and free
//!   (thread, time, stack of `frames` frames: default 15 as in libumem, 1 to
//!   64) in an audit record (`stack.rs` captures the stacks);
//! * `contents[=count]` — guards; with `UMEM_LOGGING=contents`, the first
//!   `count` (default 256) bytes of each freed buffer are logged;
//! * `verbose` — reports add a dump of the buffer's redzone (every report is
//!   written to stderr in any case: there is no mdb to read a buffer from);
//! * `nosignal` — libumem's meaning is "abort if malloc is called from a
//!   signal handler"; Linux gives a library no way to know that it runs in a
//!   signal handler, so here it only turns `audit` on (with a warning);
//! * `firewall=size` — blocks of at least `size` bytes end against an
//!   unmapped page, so a store past the end faults at once (SIGSEGV);
//! * `lite` — guards without fill patterns (redzones and buftag states only);
//! * `maxverify=size` — check at most `size` bytes of a free buffer's fill;
//! * `noabort` — report errors and carry on (a bad free is ignored: the
//!   block leaks) instead of aborting;
//! * `mtbf=n` — fault injection: every `n`-th allocation fails (NULL, or
//!   Rust's allocation error), deterministically;
//! * `checknull` — an allocation that fails (out of memory, or `mtbf`)
//!   reports and aborts instead of returning NULL;
//! * `allverbose` — as `verbose`; `random` — not supported (warns).
//!
//! `UMEM_LOGGING=transaction[=size],contents[=size],fail[=size]`: bounded
//! in-memory logs (default 64 KiB each; a size of 0 turns one off), kept in
//! memory from umem's own heap (`umem_log.rs`). `slab` is not supported.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// `guards` (and the words that imply it): size classes get umem-slab's
/// debug layout (buftags, redzones, fill patterns, double-free checks).
pub static DEBUG: AtomicBool = AtomicBool::new(false);
/// `UMEM_OPTIONS=verify_at_exit`: run [`crate::verify`] at exit.
pub static VERIFY_AT_EXIT: AtomicBool = AtomicBool::new(false);

fn show(b: &[u8]) -> &str {
    core::str::from_utf8(b).unwrap_or("<non-utf8>")
}

/// Any debugging word: allocations and frees go through `debug.rs`.
pub static DEBUG_PATH: AtomicBool = AtomicBool::new(false);
/// `audit[=frames]`: the size-class caches (and large blocks) keep an
/// audit record with the stacks of each buffer's last allocation and free
/// (umem-slab's `AUDIT`, its depth `umem_slab::set_audit_depth`; implies
/// [`DEBUG`]; `stack.rs`).
pub static AUDIT: AtomicBool = AtomicBool::new(false);
/// `contents=count`: bytes of each freed buffer the contents log keeps.
pub static CONTENTS: AtomicUsize = AtomicUsize::new(256);
/// `verbose`.
pub static VERBOSE: AtomicBool = AtomicBool::new(false);
/// `firewall=size` (0: off).
pub static FIREWALL: AtomicUsize = AtomicUsize::new(0);
/// `lite`.
pub static LITE: AtomicBool = AtomicBool::new(false);
/// `maxverify=size` (`usize::MAX`: check everything).
pub static MAXVERIFY: AtomicUsize = AtomicUsize::new(usize::MAX);
/// `noabort`.
pub static NOABORT: AtomicBool = AtomicBool::new(false);
/// `mtbf=n` (0: off).
pub static MTBF: AtomicUsize = AtomicUsize::new(0);
/// `checknull`.
pub static CHECKNULL: AtomicBool = AtomicBool::new(false);
/// `UMEM_LOGGING=transaction=size` (bytes; 0: off).
pub static LOG_TRANSACTION: AtomicUsize = AtomicUsize::new(0);
/// `UMEM_LOGGING=contents=size` (bytes; 0: off).
pub static LOG_CONTENTS: AtomicUsize = AtomicUsize::new(0);
/// `UMEM_LOGGING=fail=size` (bytes; 0: off).
pub static LOG_FAIL: AtomicUsize = AtomicUsize::new(0);

/// Default size of a log named without `=size`.
pub const LOG_DEFAULT: usize = 64 << 10;

/// Whether `UMEM_DEBUG` asked for anything (allocations take `debug.rs`).
#[inline(always)]
pub fn debug_path() -> bool {
    DEBUG_PATH.load(Ordering::Relaxed)
}

fn warn_item(var: &str, item: &[u8], why: core::fmt::Arguments<'_>) {
    let mut b = crate::sys::StackStr::<512>::new();
    let _ = writeln!(b, "umem: {var}: '{}' {why}", show(item));
    crate::sys::flush_to(&mut b, 2);
}

/// A size value with an optional k/m/g/t suffix (libumem's rule).
fn size_value(v: &[u8]) -> Option<usize> {
    scaled_number(v, 40).and_then(|n| usize::try_from(n).ok())
}

/// Decimal digits with an optional binary suffix — k, m, g and, when
/// `max_shift` is 40, t (either case) — as umem's environment variables
/// write numbers; `None` when it is not one or overflows. `UMEM_OPTIONS`
/// (`options.rs`) takes up to g, `UMEM_DEBUG`/`UMEM_LOGGING` sizes up to t.
pub(crate) fn scaled_number(v: &[u8], max_shift: u32) -> Option<u64> {
    let shift = match v.last()? {
        b'k' | b'K' => 10,
        b'm' | b'M' => 20,
        b'g' | b'G' => 30,
        b't' | b'T' => 40,
        _ => 0,
    };
    if shift > max_shift {
        return None;
    }
    let digits = if shift == 0 { v } else { &v[..v.len() - 1] };
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    n.checked_mul(1u64 << shift)
}

fn guards() {
    DEBUG.store(true, Ordering::Relaxed);
    DEBUG_PATH.store(true, Ordering::Relaxed);
}

fn audit() {
    guards();
    AUDIT.store(true, Ordering::Relaxed);
}

/// Applies one `UMEM_DEBUG` word; `Err` with why it was refused.
pub fn apply_debug(item: &[u8]) -> Result<(), &'static str> {
    let (name, value) = match item.iter().position(|&c| c == b'=') {
        Some(i) => (&item[..i], Some(&item[i + 1..])),
        None => (item, None),
    };
    let size = value.and_then(size_value);
    match (name, value) {
        (b"default", None) => {
            audit();
            CONTENTS.store(256, Ordering::Relaxed);
        }
        (b"audit", None) => {
            umem_slab::set_audit_depth(umem_slab::DEFAULT_AUDIT_DEPTH);
            audit();
        }
        (b"audit", Some(_)) => match size {
            Some(n) if (1..=umem_slab::MAX_AUDIT_DEPTH).contains(&n) => {
                umem_slab::set_audit_depth(n);
                audit();
            }
            _ => return Err("ignored: audit takes a number of frames from 1 to 64 (e.g. audit=20)"),
        },
        (b"contents", _) => {
            guards();
            if let Some(n) = size {
                CONTENTS.store(n, Ordering::Relaxed);
            }
        }
        (b"guards", None) => guards(),
        (b"verbose" | b"allverbose", None) => VERBOSE.store(true, Ordering::Relaxed),
        (b"nosignal", None) => {
            audit();
            return Err("cannot apply on Linux (a library cannot tell that it runs in a signal handler); 'audit' turned on instead");
        }
        (b"firewall", Some(_)) if size.is_some() => {
            FIREWALL.store(size.unwrap_or(0), Ordering::Relaxed);
            DEBUG_PATH.store(true, Ordering::Relaxed);
        }
        (b"lite", None) => {
            guards();
            LITE.store(true, Ordering::Relaxed);
        }
        (b"maxverify", Some(_)) if size.is_some() => {
            MAXVERIFY.store(size.unwrap_or(usize::MAX), Ordering::Relaxed)
        }
        (b"noabort", None) => NOABORT.store(true, Ordering::Relaxed),
        (b"mtbf", Some(_)) if size.is_some() => {
            MTBF.store(size.unwrap_or(0), Ordering::Relaxed);
            DEBUG_PATH.store(true, Ordering::Relaxed);
        }
        (b"checknull", None) => {
            CHECKNULL.store(true, Ordering::Relaxed);
            DEBUG_PATH.store(true, Ordering::Relaxed);
        }
        (b"random", None) => return Err("is not supported (per-cache random flags); ignored"),
        (
            b"default" | b"guards" | b"verbose" | b"allverbose" | b"nosignal" | b"lite"
            | b"noabort" | b"checknull" | b"random",
            Some(_),
        ) => return Err("takes no value; ignored"),
        (b"firewall" | b"maxverify" | b"mtbf", _) => {
            return Err("expects a size (e.g. firewall=4k, maxverify=256, mtbf=100); ignored")
        }
        _ => return Err("unknown option ignored; valid: default, audit[=frames], contents[=count], guards, verbose, nosignal, firewall=size, lite, maxverify=size, noabort, mtbf=n, checknull"),
    }
    Ok(())
}

/// Applies one `UMEM_LOGGING` word.
pub fn apply_logging(item: &[u8]) -> Result<(), &'static str> {
    let (name, value) = match item.iter().position(|&c| c == b'=') {
        Some(i) => (&item[..i], Some(&item[i + 1..])),
        None => (item, None),
    };
    let size = match value {
        None => LOG_DEFAULT,
        Some(v) => size_value(v).ok_or("expects a size (e.g. transaction=1m); ignored")?,
    };
    let slot = match name {
        b"transaction" => &LOG_TRANSACTION,
        b"contents" => &LOG_CONTENTS,
        b"fail" => &LOG_FAIL,
        b"slab" => return Err("is not supported (no slab log); ignored"),
        _ => {
            return Err(
                "unknown log ignored; valid: transaction[=size], contents[=size], fail[=size]",
            )
        }
    };
    slot.store(size, Ordering::Relaxed);
    if size != 0 {
        DEBUG_PATH.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// Parses `UMEM_DEBUG`'s and `UMEM_LOGGING`'s values (either may be absent)
/// and hands the slab-level tuning to umem-slab.
pub fn read(debug: Option<&[u8]>, logging: Option<&[u8]>) {
    for (var, v, f) in [
        (
            "UMEM_DEBUG",
            debug,
            apply_debug as fn(&[u8]) -> Result<(), &'static str>,
        ),
        ("UMEM_LOGGING", logging, apply_logging),
    ] {
        let Some(v) = v else { continue };
        for item in v.split(|&c| c == b',') {
            let item = item.trim_ascii();
            if item.is_empty() {
                continue;
            }
            if let Err(why) = f(item) {
                warn_item(var, item, format_args!("{why}"));
            }
        }
    }
    umem_slab::set_debug_tuning(
        MAXVERIFY.load(Ordering::Relaxed),
        LITE.load(Ordering::Relaxed),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size_value(b"4k"), Some(4096));
        assert_eq!(size_value(b"1M"), Some(1 << 20));
        assert_eq!(size_value(b"17"), Some(17));
        assert_eq!(size_value(b"x"), None);
        assert_eq!(size_value(b""), None);
    }

    #[test]
    fn words() {
        assert!(apply_debug(b"mtbf=7").is_ok());
        assert_eq!(MTBF.load(Ordering::Relaxed), 7);
        assert!(apply_debug(b"firewall=8k").is_ok());
        assert_eq!(FIREWALL.load(Ordering::Relaxed), 8192);
        assert!(apply_debug(b"audit=100").is_err());
        assert!(apply_debug(b"audit=0").is_err());
        assert!(apply_debug(b"nosignal").is_err());
        assert!(apply_debug(b"noabort=1").is_err());
        assert!(apply_debug(b"firewall").is_err());
        assert!(apply_debug(b"bogus").is_err());
        assert!(apply_logging(b"transaction=1m").is_ok());
        assert_eq!(LOG_TRANSACTION.load(Ordering::Relaxed), 1 << 20);
        assert!(apply_logging(b"fail").is_ok());
        assert_eq!(LOG_FAIL.load(Ordering::Relaxed), LOG_DEFAULT);
        assert!(apply_logging(b"slab").is_err());
        assert!(apply_logging(b"fail=lots").is_err());
        // Leave the process as it was (other tests of this binary).
        for a in [&MTBF, &FIREWALL, &LOG_TRANSACTION, &LOG_FAIL] {
            a.store(0, Ordering::Relaxed);
        }
        for b in [&DEBUG, &DEBUG_PATH, &AUDIT] {
            b.store(false, Ordering::Relaxed);
        }
    }
}
