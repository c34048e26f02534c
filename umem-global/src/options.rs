//! `UMEM_OPTIONS`, `UMEM_DEBUG`, `UMEM_LOGGING` and `UMEM_STATS`, read once
//! at initialisation with `getenv` (which does not allocate) and parsed
//! without allocating. An unknown or malformed option gets a one-line
//! warning on stderr that says what was expected (for an unknown word: the
//! valid words, and the closest one if it looks like a typo) and is
//! otherwise ignored.
//!
//! `UMEM_OPTIONS` is a comma-separated list, as in libumem:
//! * `nomagazines` — caches run without the magazine (per-thread) layer;
//! * `reap_interval=N` — seconds within which freed memory goes back (the
//!   periodic update/reap steps run every N/2 s; default 10; 0 disables
//!   them);
//! * `large_cache=N` — bytes of recently freed large blocks kept for reuse
//!   (default 64 MiB; suffixes k, m, g); a kept block that is not reused
//!   goes back by the second periodic update after its free;
//! * `percpu` — per-CPU magazines over restartable sequences (memory bounded
//!   by the CPUs, not the threads; `magazines.rs`; the default), where the
//!   kernel keeps an rseq area up to date; else per-thread ones. `nopercpu`
//!   — per-thread magazines;
//! * `noregion` — no class region (`region.rs`): size classes take their
//!   spans from `umem_default` and `free` finds every block through the
//!   page map (slower; for comparison, and what happens when the region
//!   cannot be reserved);
//! * `stats_all` — the statistics table lists every cache and arena, not
//!   only those that were used;
//! * `verify_at_exit` — check every cache, slab, buftag and arena at exit
//!   (`umem_global::verify`) and report what is wrong;
//! * `findleaks` — with `UMEM_DEBUG=audit`, print a leak report at exit
//!   (`leaks.rs`; libumem has no such option: its leaks are found with
//!   mdb's `::findleaks`);
//! * `backend=mmap` — accepted (the only backend); `backend=sbrk` warns;
//! * `concurrency=N`, `max_contention=N`, `perthread_cache=N` — accepted
//!   for compatibility, no effect (magazines are per thread and resize on
//!   contention by themselves).
//!
//! `UMEM_STATS` prints the statistics table at exit. Its value is a keyword
//! or a path: unset, empty or `0` — no table; `1` or `stderr` — to stderr;
//! `all` — to stderr, every cache and arena (as `stats_all`); anything
//! else is a file to append the table to, absolute or relative to the
//! working directory at exit (`UMEM_STATS=stats.txt`). A file that cannot
//! be opened gets a warning and the table goes to stderr.
//!
//! `UMEM_DEBUG` and `UMEM_LOGGING` are `debug_options.rs`'s (`audit[=frames]`
//! records stacks: `stack.rs`).

use core::ffi::CStr;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// `nomagazines`: caches without the per-thread magazine layer.
pub static NOMAGAZINES: AtomicBool = AtomicBool::new(false);
/// `percpu` / `nopercpu`: per-CPU magazines asked for.
pub static PERCPU: AtomicBool = AtomicBool::new(true);
/// `noregion`: no class region.
pub static NOREGION: AtomicBool = AtomicBool::new(false);
pub use crate::debug_options::{AUDIT, DEBUG};
/// `UMEM_OPTIONS=findleaks`: with `audit`, report unreferenced buffers at
/// exit (`leaks.rs`).
pub static FINDLEAKS: AtomicBool = AtomicBool::new(false);
/// `stats_all` (or `UMEM_STATS=all`): the table lists every cache and
/// arena, not only those that were used.
pub static STATS_ALL: AtomicBool = AtomicBool::new(false);
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
    crate::debug_options::scaled_number(v, 30)
}

pub(crate) fn show(b: &[u8]) -> &str {
    core::str::from_utf8(b).unwrap_or("<non-utf8>")
}

/// The words `UMEM_OPTIONS` understands: each with the value it expects
/// (empty: a word without `=`) and its short form for the list of valid
/// words that the warning for an unknown word gives.
const WORDS: &[(&str, &str, &str)] = &[
    ("nomagazines", "", "nomagazines"),
    ("noregion", "", "noregion"),
    ("percpu", "", "percpu"),
    ("nopercpu", "", "nopercpu"),
    ("stats_all", "", "stats_all"),
    ("verify_at_exit", "", "verify_at_exit"),
    ("findleaks", "", "findleaks"),
    (
        "reap_interval",
        "a whole number of seconds (e.g. reap_interval=5; 0 turns the periodic update off)",
        "reap_interval=<seconds>",
    ),
    (
        "large_cache",
        "a number of bytes, optionally with k, m or g (e.g. large_cache=64m)",
        "large_cache=<bytes>",
    ),
    ("backend", "mmap (sbrk is not supported)", "backend=mmap"),
    (
        "concurrency",
        "a number (e.g. concurrency=4; accepted, no effect)",
        "concurrency=<n>",
    ),
    (
        "max_contention",
        "a number (e.g. max_contention=4; accepted, no effect)",
        "max_contention=<n>",
    ),
    (
        "perthread_cache",
        "a number of bytes (e.g. perthread_cache=1m; accepted, no effect)",
        "perthread_cache=<bytes>",
    ),
];

/// Why an `UMEM_OPTIONS` item was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Not one of [`WORDS`].
    Unknown,
    /// A known word with a missing, unexpected or malformed value: what it
    /// expects (`""`: no value at all).
    Expects(&'static str),
}

fn expects(name: &[u8]) -> Problem {
    WORDS
        .iter()
        .find(|(w, _, _)| w.as_bytes() == name)
        .map_or(Problem::Unknown, |&(_, e, _)| Problem::Expects(e))
}

/// Applies one `name[=value]` item.
pub fn apply(item: &[u8]) -> Result<(), Problem> {
    let (name, value) = match item.iter().position(|&c| c == b'=') {
        Some(i) => (&item[..i], Some(&item[i + 1..])),
        None => (item, None),
    };
    let num = value.and_then(parse_num);
    match (name, value) {
        (b"nomagazines", None) => NOMAGAZINES.store(true, Ordering::Relaxed),
        (b"noregion", None) => NOREGION.store(true, Ordering::Relaxed),
        (b"percpu", None) => PERCPU.store(true, Ordering::Relaxed),
        (b"nopercpu", None) => PERCPU.store(false, Ordering::Relaxed),
        (b"stats_all", None) => STATS_ALL.store(true, Ordering::Relaxed),
        (b"verify_at_exit", None) => {
            crate::debug_options::VERIFY_AT_EXIT.store(true, Ordering::Relaxed)
        }
        (b"findleaks", None) => FINDLEAKS.store(true, Ordering::Relaxed),
        (b"reap_interval", Some(_)) if num.is_some() => {
            let s = num.unwrap_or(0);
            REAP_INTERVAL_NS.store(s.saturating_mul(1_000_000_000), Ordering::Relaxed)
        }
        (b"large_cache", Some(_)) if num.is_some() => {
            let n = num.unwrap_or(0);
            LARGE_CACHE_BYTES.store(usize::try_from(n).unwrap_or(usize::MAX), Ordering::Relaxed)
        }
        (b"backend", Some(b"mmap")) => {}
        (b"backend", Some(b"sbrk")) => {
            crate::sys::warn(format_args!(
                "umem: UMEM_OPTIONS: backend=sbrk is not supported, using mmap\n"
            ));
        }
        (b"concurrency" | b"max_contention" | b"perthread_cache", Some(_)) if num.is_some() => {}
        _ => return Err(expects(name)),
    }
    Ok(())
}

/// Edit distance between two short words (at most 32 bytes are compared),
/// without allocating: to suggest the word that was meant.
fn distance(a: &[u8], b: &[u8]) -> usize {
    let (a, b) = (&a[..a.len().min(32)], &b[..b.len().min(32)]);
    let mut row = [0usize; 33];
    for (j, r) in row.iter_mut().enumerate().take(b.len() + 1) {
        *r = j;
    }
    for i in 1..=a.len() {
        let mut diag = row[0];
        row[0] = i;
        for j in 1..=b.len() {
            let up = row[j];
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (up + 1).min(row[j - 1] + 1).min(diag + cost);
            diag = up;
        }
    }
    row[b.len()]
}

/// The known word closest to `name`, if it is close enough to be a typo.
fn suggestion(name: &[u8]) -> Option<&'static str> {
    let (w, d) = WORDS
        .iter()
        .map(|&(w, _, _)| (w, distance(name, w.as_bytes())))
        .min_by_key(|&(_, d)| d)?;
    (d <= 2 || (d <= 3 && name.len() >= 8)).then_some(w)
}

/// Writes the warning for an item [`apply`] refused.
fn warn_item(item: &[u8], problem: Problem) {
    let name = item.split(|&c| c == b'=').next().unwrap_or(b"");
    let mut b = crate::sys::StackStr::<1024>::new();
    let _ = write!(b, "umem: UMEM_OPTIONS: '{}' ignored: ", show(item));
    match problem {
        Problem::Expects("") => {
            let _ = write!(
                b,
                "{} takes no value (write just '{}')",
                show(name),
                show(name)
            );
        }
        Problem::Expects(e) => {
            let _ = write!(b, "{} expects {}", show(name), e);
        }
        Problem::Unknown => {
            let _ = write!(b, "unknown option");
            if let Some(w) = suggestion(name) {
                let _ = write!(b, " (did you mean {w}?)");
            }
            let _ = write!(b, "; valid options:");
            for (i, &(_, _, short)) in WORDS.iter().enumerate() {
                let sep = if i == 0 { " " } else { ", " };
                let _ = write!(b, "{sep}{short}");
            }
        }
    }
    let _ = writeln!(b);
    crate::sys::flush_to(&mut b, 2);
}

/// Where `UMEM_STATS=<value>` sends the table, if anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsTo<'a> {
    /// Unset, empty or `0`: no table.
    Nowhere,
    /// `1` or `stderr` (`all`: with every row, as `stats_all`).
    Stderr {
        /// `all`: every cache and arena, used or not.
        all: bool,
    },
    /// Anything else: a file, appended to, relative to the working
    /// directory at exit.
    File(&'a [u8]),
}

/// The rule for `UMEM_STATS`'s value (see the module documentation).
pub fn stats_to(v: &[u8]) -> StatsTo<'_> {
    match v {
        b"" | b"0" => StatsTo::Nowhere,
        b"1" | b"stderr" => StatsTo::Stderr { all: false },
        b"all" => StatsTo::Stderr { all: true },
        path => StatsTo::File(path),
    }
}

/// Reads and applies the environment. Called once during initialisation.
pub fn read_env() {
    if let Some(v) = getenv(c"UMEM_OPTIONS") {
        for item in v.split(|&c| c == b',') {
            if item.is_empty() {
                continue;
            }
            if let Err(p) = apply(item) {
                warn_item(item, p);
            }
        }
    }
    if let Some(v) = getenv(c"UMEM_STATS") {
        match stats_to(v) {
            StatsTo::Nowhere => {}
            StatsTo::Stderr { all } => {
                STATS_AT_EXIT.store(true, Ordering::Relaxed);
                if all {
                    STATS_ALL.store(true, Ordering::Relaxed);
                }
            }
            StatsTo::File(path) => {
                STATS_AT_EXIT.store(true, Ordering::Relaxed);
                if path.len() < 256 && !path.contains(&0) {
                    // SAFETY: only the initialising thread writes, before READY.
                    let b = unsafe { &mut *STATS_PATH.0.get() };
                    b[..path.len()].copy_from_slice(path);
                    b[path.len()] = 0;
                } else {
                    crate::sys::warn(format_args!(
                        "umem: UMEM_STATS: a path of {} bytes is too long (at most 255); the table goes to stderr\n",
                        path.len()
                    ));
                }
            }
        }
    }
    crate::debug_options::read(getenv(c"UMEM_DEBUG"), getenv(c"UMEM_LOGGING"));
    if FINDLEAKS.load(Ordering::Relaxed) && !AUDIT.load(Ordering::Relaxed) {
        crate::sys::warn(format_args!(
            "umem: UMEM_OPTIONS: findleaks needs UMEM_DEBUG=audit (the leak report groups buffers by their allocation stacks); ignored\n"
        ));
        FINDLEAKS.store(false, Ordering::Relaxed);
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
        assert!(apply(b"reap_interval=3").is_ok());
        assert_eq!(REAP_INTERVAL_NS.load(Ordering::Relaxed), 3_000_000_000);
        assert!(apply(b"large_cache=1m").is_ok());
        assert_eq!(LARGE_CACHE_BYTES.load(Ordering::Relaxed), 1 << 20);
        assert!(apply(b"large_cache=64m").is_ok());
        assert!(apply(b"backend=mmap").is_ok());
        assert!(apply(b"concurrency=4").is_ok());
        assert!(apply(b"reap_interval").is_err());
        assert!(apply(b"reap_interval=abc").is_err());
        assert!(apply(b"bogus").is_err());
        assert!(apply(b"nomagazines=1").is_err());
        assert!(apply(b"reap_interval=10").is_ok());
    }

    #[test]
    fn problems_say_what_was_expected() {
        let Err(Problem::Expects(e)) = apply(b"reap_interval=5s") else {
            panic!("reap_interval=5s accepted")
        };
        assert!(e.contains("seconds"), "{e}");
        assert_eq!(apply(b"reap_interval"), apply(b"reap_interval=5s"));
        assert!(
            matches!(apply(b"large_cache=lots"), Err(Problem::Expects(e)) if e.contains("bytes"))
        );
        assert_eq!(apply(b"nomagazines=1"), Err(Problem::Expects("")));
        assert_eq!(apply(b"bogus"), Err(Problem::Unknown));
        assert_eq!(suggestion(b"nomagazine"), Some("nomagazines"));
        assert_eq!(suggestion(b"reap_intervall"), Some("reap_interval"));
        assert_eq!(suggestion(b"large-cache"), Some("large_cache"));
        assert_eq!(suggestion(b"bogus_option"), None);
        assert_eq!(distance(b"", b"abc"), 3);
        assert_eq!(distance(b"kitten", b"sitting"), 3);
    }

    #[test]
    fn stats_destination() {
        assert_eq!(stats_to(b""), StatsTo::Nowhere);
        assert_eq!(stats_to(b"0"), StatsTo::Nowhere);
        assert_eq!(stats_to(b"1"), StatsTo::Stderr { all: false });
        assert_eq!(stats_to(b"stderr"), StatsTo::Stderr { all: false });
        assert_eq!(stats_to(b"all"), StatsTo::Stderr { all: true });
        assert_eq!(stats_to(b"stats.txt"), StatsTo::File(b"stats.txt"));
        assert_eq!(stats_to(b"/tmp/s"), StatsTo::File(b"/tmp/s"));
    }
}
