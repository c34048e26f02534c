//! `UMEM_OPTIONS`, `UMEM_DEBUG`, `UMEM_LOGGING` and `UMEM_STATS`, read once
//! at initialisation with `getenv` (which does not allocate) and parsed
//! without allocating. Unknown or malformed options get a one-line warning
//! on stderr and are otherwise ignored.
//!
//! `UMEM_OPTIONS` is a comma-separated list, as in libumem:
//! * `nomagazines` — caches run without the magazine (per-thread) layer;
//! * `reap_interval=N` — seconds between periodic update/reap steps
//!   (default 10; 0 disables the periodic step);
//! * `large_cache=N` — bytes of recently freed large blocks kept for reuse
//!   (default 64 MiB; suffixes k, m, g);
//! * `noregion` — no class region (`region.rs`): size classes take their
//!   spans from `umem_default` and `free` finds every block through the
//!   page map (slower; for comparison, and what happens when the region
//!   cannot be reserved);
//! * `backend=mmap` — accepted (the only backend); `backend=sbrk` warns;
//! * `concurrency=N`, `max_contention=N`, `perthread_cache=N` — accepted
//!   for compatibility, no effect (magazines are per thread and resize on
//!   contention by themselves).
//!
//! `UMEM_STATS=1` prints the statistics table to stderr at exit;
//! `UMEM_STATS=/path` appends it to that file instead. `UMEM_DEBUG=default`
//! (or `guards`, `contents`) turns on umem-slab's debug layout in the
//! size-class caches; its other words (`audit`, `firewall=`, …) and
//! `UMEM_LOGGING` are not supported yet: a warning says so.

use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// `nomagazines`: caches without the per-thread magazine layer.
pub static NOMAGAZINES: AtomicBool = AtomicBool::new(false);
/// `noregion`: no class region.
pub static NOREGION: AtomicBool = AtomicBool::new(false);
/// `UMEM_DEBUG=default|guards|contents`: size-class caches get umem-slab's
/// debug layout (redzone + buftag after each buffer, 0xdeadbeef fill
/// checked on reuse, double-free and redzone checks on free, abort with a
/// message naming the buffer).
pub static DEBUG: AtomicBool = AtomicBool::new(false);
/// `UMEM_STATS` set: print the table at exit.
pub static STATS_AT_EXIT: AtomicBool = AtomicBool::new(false);
/// Nanoseconds between update steps; 0 = never.
pub static REAP_INTERVAL_NS: AtomicU64 = AtomicU64::new(10_000_000_000);
/// `large_cache=N`: bytes of freed large blocks kept for reuse.
pub static LARGE_CACHE_BYTES: AtomicUsize = AtomicUsize::new(64 << 20);

/// `UMEM_STATS=/path`: append the table to this file instead of stderr
/// (NUL-terminated; empty = stderr).
pub struct StatsPath(core::cell::UnsafeCell<[u8; 256]>);
// SAFETY: written once by the initialising thread before READY, read only
// at exit.
unsafe impl Sync for StatsPath {}
/// The `UMEM_STATS=/path` file.
pub static STATS_PATH: StatsPath = StatsPath(core::cell::UnsafeCell::new([0; 256]));

impl StatsPath {
    /// The path as a C string pointer, or `None` for stderr.
    pub fn get(&self) -> Option<*const libc::c_char> {
        // SAFETY: see the Sync impl.
        let b = unsafe { &*self.0.get() };
        (b[0] != 0).then_some(b.as_ptr().cast())
    }
}

fn getenv(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: name is NUL-terminated; getenv returns a pointer into the
    // environment (valid while nobody calls setenv on it; we copy nothing
    // out and use it only during parsing).
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        None
    } else {
        // SAFETY: a non-null getenv result is a NUL-terminated string.
        Some(unsafe { CStr::from_ptr(p) }.to_bytes())
    }
}

fn parse_num(v: &[u8]) -> Option<u64> {
    let (digits, mul) = match v.last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&v[..v.len() - 1], 1 << 20),
        b'g' | b'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
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
    n.checked_mul(mul)
}

fn show(b: &[u8]) -> &str {
    core::str::from_utf8(b).unwrap_or("<non-utf8>")
}

/// Applies one `name[=value]` item; returns false if it is not understood.
pub fn apply(item: &[u8]) -> bool {
    let (name, value) = match item.iter().position(|&c| c == b'=') {
        Some(i) => (&item[..i], Some(&item[i + 1..])),
        None => (item, None),
    };
    let num = value.and_then(parse_num);
    match (name, value) {
        (b"nomagazines", None) => NOMAGAZINES.store(true, Ordering::Relaxed),
        (b"noregion", None) => NOREGION.store(true, Ordering::Relaxed),
        (b"reap_interval", Some(_)) => match num {
            Some(s) => REAP_INTERVAL_NS.store(s.saturating_mul(1_000_000_000), Ordering::Relaxed),
            None => return false,
        },
        (b"large_cache", Some(_)) => match num {
            Some(n) => LARGE_CACHE_BYTES.store(n as usize, Ordering::Relaxed),
            None => return false,
        },
        (b"backend", Some(b"mmap")) => {}
        (b"backend", Some(b"sbrk")) => {
            crate::sys::warn(format_args!(
                "umem: UMEM_OPTIONS: backend=sbrk is not supported, using mmap\n"
            ));
        }
        (b"concurrency" | b"max_contention" | b"perthread_cache", Some(_)) if num.is_some() => {}
        _ => return false,
    }
    true
}

/// Reads and applies the environment. Called once during initialisation.
pub fn read_env() {
    if let Some(v) = getenv(c"UMEM_OPTIONS") {
        for item in v.split(|&c| c == b',') {
            if item.is_empty() {
                continue;
            }
            if !apply(item) {
                crate::sys::warn(format_args!(
                    "umem: UMEM_OPTIONS: unknown or malformed option '{}' ignored\n",
                    show(item)
                ));
            }
        }
    }
    if let Some(v) = getenv(c"UMEM_STATS") {
        if !v.is_empty() && v != b"0" {
            STATS_AT_EXIT.store(true, Ordering::Relaxed);
            if v[0] == b'/' && v.len() < 256 {
                // SAFETY: only the initialising thread writes, before READY.
                let b = unsafe { &mut *STATS_PATH.0.get() };
                b[..v.len()].copy_from_slice(v);
                b[v.len()] = 0;
            }
        }
    }
    if let Some(v) = getenv(c"UMEM_DEBUG") {
        for item in v.split(|&c| c == b',') {
            let name = item.split(|&c| c == b'=').next().unwrap_or(b"");
            match name {
                b"" => {}
                b"default" | b"guards" | b"contents" => DEBUG.store(true, Ordering::Relaxed),
                b"audit" | b"verbose" | b"nosignal" | b"firewall" | b"lite" | b"maxverify"
                | b"noabort" | b"mtbf" | b"checknull" => crate::sys::warn(format_args!(
                    "umem: UMEM_DEBUG: '{}' is not supported yet; ignored\n",
                    show(item)
                )),
                _ => crate::sys::warn(format_args!(
                    "umem: UMEM_DEBUG: unknown option '{}' ignored\n",
                    show(item)
                )),
            }
        }
    }
    if let Some(v) = getenv(c"UMEM_LOGGING") {
        if !v.is_empty() {
            crate::sys::warn(format_args!(
                "umem: UMEM_LOGGING={} is not supported yet; ignored\n",
                show(v)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_num(b"10"), Some(10));
        assert_eq!(parse_num(b"4k"), Some(4096));
        assert_eq!(parse_num(b"2M"), Some(2 << 20));
        assert_eq!(parse_num(b""), None);
        assert_eq!(parse_num(b"k"), None);
        assert_eq!(parse_num(b"1x"), None);
        assert_eq!(parse_num(b"99999999999999999999999"), None);
    }

    #[test]
    fn items() {
        assert!(apply(b"reap_interval=3"));
        assert_eq!(REAP_INTERVAL_NS.load(Ordering::Relaxed), 3_000_000_000);
        assert!(apply(b"large_cache=1m"));
        assert_eq!(LARGE_CACHE_BYTES.load(Ordering::Relaxed), 1 << 20);
        assert!(apply(b"large_cache=64m"));
        assert!(apply(b"backend=mmap"));
        assert!(apply(b"concurrency=4"));
        assert!(!apply(b"reap_interval"));
        assert!(!apply(b"reap_interval=abc"));
        assert!(!apply(b"bogus"));
        assert!(!apply(b"nomagazines=1"));
        assert!(apply(b"reap_interval=10"));
    }
}
