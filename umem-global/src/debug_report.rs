//! The heap-error report: what `UMEM_DEBUG` prints when it finds a bug, in
//! the words mdb's `::umem_status` and `::bufctl` would use, and what happens
//! next (SIGABRT, or carry on under `noabort`).
//!
//! A report is a few lines on stderr, written with write(2) from a stack
//! buffer (never allocating):
//!
//! ```text
//! umem: heap error: redzone overrun (write past the end of the buffer)
//! umem:   buffer  0x7f0a12c40080, 30 bytes requested, in cache umem_alloc_32 (32-byte buffers)
//! umem:   detail  byte at offset 30 (0x1e) is 0x00, not the redzone's 0xbb: 1 byte past the request
//! umem:   audit   last allocated by thread 0x7f0a12b3e740, 0.000125 s ago, transaction 1
//! umem: aborting (UMEM_DEBUG=noabort reports and carries on)
//! ```
//!
//! Its sections: the kind; the buffer (start, requested size, cache or
//! large block); the detail (offset and byte or word found); with `audit`
//! the buffer's last transaction; then the *stacks* section, filled by
//! whoever installs [`set_stacks_printer`] (stack capture lives apart from
//! this file), and with `verbose` a dump of the bytes around the damage.

use core::fmt::Write;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::debug_options::{NOABORT, VERBOSE};
use crate::sys::{flush_to, StackStr};
use umem_slab::{Cache, SlabError};

/// Prints a buffer's stacks as part of a report: called with the buffer's
/// start (0 for a report about no buffer: an allocation failure) and the
/// file descriptor the report goes to, after the audit line (the lines
/// before it are written already). umem-global installs
/// `symbolize::report_stacks` under `audit`: the buffer's last allocation
/// and free with threads, times and symbolized stacks, or the failing
/// call's stack.
pub type StacksPrinter = fn(buf: usize, fd: i32);

static STACKS: AtomicUsize = AtomicUsize::new(0);

/// Installs the printer of a report's stacks section (the allocating and
/// last-freeing stacks of the buffer, where stack capture is built in).
/// It is not called for `verify`'s reports (they are made under the cache's
/// slab lock, so the printer may take it: `Cache::audit` does).
pub fn set_stacks_printer(f: StacksPrinter) {
    STACKS.store(f as usize, Ordering::Release);
}

/// What the report says about the buffer's owner.
#[derive(Clone, Copy)]
pub enum Owner<'a> {
    /// A slab cache (a size class, or a user cache).
    Cache(&'a Cache),
    /// A large block (pages of its own), `firewall`ed or not.
    Large {
        /// Whether it ends against an unmapped page.
        firewall: bool,
    },
    /// Nothing umem knows.
    Unknown,
}

/// One detected error, ready to print.
pub struct Report<'a> {
    /// The kind, as a phrase ("double free", "redzone overrun …").
    pub kind: &'a str,
    /// The buffer's start (or the bad pointer).
    pub buf: usize,
    /// The size requested, if known.
    pub size: Option<usize>,
    /// Who owns it.
    pub owner: Owner<'a>,
    /// The detail line (offset, byte or word found), if any.
    pub detail: core::fmt::Arguments<'a>,
    /// Where the damage is, for `verbose`'s dump: (start, length).
    pub dump: Option<(usize, usize)>,
    /// Abort even under `noabort` (`checknull` asked for the abort).
    pub fatal: bool,
}

/// Writes `r` to stderr; then aborts (SIGABRT) unless `noabort` (or
/// `never_abort`: a report from `verify`, made under locks: without the
/// audit and stacks sections), and returns.
pub fn report(r: &Report<'_>, never_abort: bool) {
    let mut b = StackStr::<2048>::new();
    let _ = writeln!(b, "umem: heap error: {}", r.kind);
    if r.buf == 0 {
        let _ = write!(b, "umem:   request {} bytes", r.size.unwrap_or(0));
    } else {
        let _ = write!(b, "umem:   buffer  {:#x}", r.buf);
        if let Some(s) = r.size {
            let _ = write!(b, ", {s} bytes requested");
        }
    }
    match r.owner {
        _ if r.buf == 0 => {}
        Owner::Cache(c) => {
            let _ = write!(b, ", in cache {} ({}-byte buffers)", c.name(), c.buf_size());
        }
        Owner::Large { firewall } => {
            let _ = write!(
                b,
                ", a large block{}",
                if firewall {
                    " (firewall: it ends against an unmapped page)"
                } else {
                    ""
                }
            );
        }
        Owner::Unknown => {
            let _ = write!(b, ", not a block umem handed out (or not its start)");
        }
    }
    let _ = writeln!(b);
    let mut d = StackStr::<512>::new();
    let _ = d.write_fmt(r.detail);
    if !d.is_empty() {
        let _ = writeln!(b, "umem:   detail  {}", d.as_str());
    }
    // Not from `verify`: it holds the cache's slab lock, which the audit
    // lookup takes.
    if let (Owner::Cache(c), false) = (r.owner, never_abort) {
        if let Some(buf) = NonNull::new(r.buf as *mut u8) {
            if let Some(a) = c.audit(buf) {
                let now = now_ns();
                let _ = writeln!(
                    b,
                    "umem:   audit   last {} by thread {:#x}, {}.{:06} s ago, transaction {}",
                    if a.allocated { "allocated" } else { "freed" },
                    a.thread,
                    now.saturating_sub(a.timestamp_ns) / 1_000_000_000,
                    now.saturating_sub(a.timestamp_ns) / 1000 % 1_000_000,
                    a.transactions
                );
            }
        }
    }
    let f = STACKS.load(Ordering::Acquire);
    if f != 0 && !never_abort {
        // SAFETY: only `set_stacks_printer` stores here, a `StacksPrinter`.
        let f: StacksPrinter = unsafe { core::mem::transmute::<usize, StacksPrinter>(f) };
        // The stacks are longer than the report's buffer holds: what is
        // there goes out first.
        flush_to(&mut b, 2);
        f(r.buf, 2);
    }
    if VERBOSE.load(Ordering::Relaxed) {
        if let Some((at, len)) = r.dump {
            dump(&mut b, at, len);
        }
    }
    let carry_on = never_abort || (NOABORT.load(Ordering::Relaxed) && !r.fatal);
    if !never_abort {
        let _ = writeln!(
            b,
            "umem: {}",
            if carry_on {
                "carrying on (UMEM_DEBUG=noabort)"
            } else if r.fatal {
                "aborting"
            } else {
                "aborting (UMEM_DEBUG=noabort reports and carries on)"
            }
        );
    }
    flush_to(&mut b, 2);
    if !carry_on {
        // SAFETY: no preconditions; raises SIGABRT.
        unsafe { libc::abort() };
    }
}

/// CLOCK_MONOTONIC in nanoseconds (the audit records' clock).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `verbose`: up to 64 bytes from `at`, 16 a line.
fn dump<const N: usize>(b: &mut StackStr<N>, at: usize, len: usize) {
    let start = at & !15;
    let end = (at + len.min(64)).next_multiple_of(16);
    let mut a = start;
    while a < end {
        let _ = write!(b, "umem:   {a:#014x}:");
        for i in 0..16 {
            // SAFETY: the reporter names memory of the buffer's own chunk or
            // block (its slack and buftag), which is mapped and readable.
            let v = unsafe { *((a + i) as *const u8) };
            let _ = write!(b, " {v:02x}");
        }
        let _ = writeln!(b);
        a += 16;
    }
}

/// The report of an error umem-slab's debug checks found in `cache`;
/// `context` goes before the kind (`"bad realloc: "`, or empty).
pub fn slab_error(context: &str, cache: &Cache, e: &SlabError, never_abort: bool) {
    let bt = cache.chunk_size() - 24;
    // SAFETY: the error names a buffer of `cache` (its start).
    let req = |a: usize| NonNull::new(a as *mut u8).and_then(|p| unsafe { cache.requested(p) });
    let (kind, buf, size, dump) = match *e {
        SlabError::DoubleFree { addr, .. } => {
            ("double free (the buffer is free already)", addr, None, None)
        }
        SlabError::BadAddress { buffer, .. } => (
            "invalid free (a pointer inside a buffer, not its start)",
            buffer,
            req(buffer),
            None,
        ),
        SlabError::NotOwned { addr, .. } | SlabError::WrongCache { addr, .. } => (
            "invalid free (not a buffer of this cache)",
            addr,
            None,
            None,
        ),
        SlabError::Overrun {
            addr, size, offset, ..
        } => (
            "redzone overrun (write past the end of the buffer)",
            addr,
            Some(size),
            Some((addr + offset, bt + 24 - offset)),
        ),
        SlabError::Redzone { addr, .. } => (
            "redzone overrun (the buftag after the buffer is overwritten)",
            addr,
            None,
            Some((addr + bt, 24)),
        ),
        SlabError::Underrun { addr, .. } => (
            "redzone underrun (write before the start of the buffer)",
            addr,
            req(addr),
            Some((addr - 16, 32)),
        ),
        SlabError::ModifiedAfterFree { addr, offset, .. } => (
            "modified free buffer (write after free)",
            addr,
            None,
            Some((addr + offset, 16)),
        ),
        SlabError::Corrupt { addr, .. } | SlabError::CorruptSlab { slab: addr, .. } => {
            ("corrupt allocator state", addr, None, None)
        }
        _ => ("allocator error", 0, None, None),
    };
    let detail = Detail(e);
    let mut k = StackStr::<160>::new();
    let _ = write!(k, "{context}{kind}");
    report(
        &Report {
            kind: k.as_str(),
            buf,
            size,
            owner: Owner::Cache(cache),
            detail: format_args!("{detail}"),
            dump,
            fatal: false,
        },
        never_abort,
    );
}

/// The detail line of a slab error.
struct Detail<'a>(&'a SlabError);

impl core::fmt::Display for Detail<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self.0 {
            SlabError::Overrun {
                size,
                offset,
                found,
                ..
            } => write!(
                f,
                "byte at offset {offset} ({offset:#x}) is {found:#04x}, not the redzone's 0xbb: {} byte{} past the request",
                offset - size + 1,
                if offset - size == 0 { "" } else { "s" }
            ),
SlabError::Redzone { found, .. } => write!(
                f,
                "the buftag after the buffer is overwritten (found {found:#018x}): a write past the redzone"
            ),
            SlabError::Underrun { found, .. } => write!(
                f,
                "the word before the buffer (its neighbour's buftag) is {found:#018x}"
            ),
            SlabError::ModifiedAfterFree { offset, found, .. } => write!(
                f,
                "word at offset {offset} ({offset:#x}) is {found:#018x}, not the free pattern 0xdeadbeefdeadbeef"
            ),
            SlabError::DoubleFree { .. } => write!(f, "its buftag says free"),
            SlabError::BadAddress { addr, buffer, .. } => write!(
                f,
                "{addr:#x} is {} bytes into the buffer at {buffer:#x}",
                addr - buffer
            ),
            ref e => write!(f, "{e}"),
        }
    }
}

/// umem-slab's hook ([`umem_slab::set_debug_report_hook`]): print the
/// report, carry on under `noabort`.
pub fn slab_hook(cache: &Cache, e: &SlabError) -> bool {
    slab_error("", cache, e, false);
    true
}
