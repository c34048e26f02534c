//! `UMEM_LOGGING`'s in-memory logs (libumem's `umem_transaction_log`,
//! `umem_content_log`, `umem_failure_log`): bounded rings of fixed-size
//! records, made at initialisation from umem's heap arena (never another
//! allocator) and overwritten oldest first.
//!
//! * `transaction` — every allocation and free that goes through the debug
//!   path: thread, time, address, size;
//! * `contents` — the first `UMEM_DEBUG=contents=N` bytes (default 256) of
//!   each buffer as it is freed;
//! * `fail` — every failed allocation (size; injected by `mtbf` or not).
//!
//! Writers claim a record with one atomic add and stamp it with its
//! sequence number last; [`read_log`] copies each record and keeps it only
//! if the stamp did not change meanwhile, so a reader sees whole records
//! (those being written while it reads are skipped). Read them from Rust
//! with [`read_log`], from C with `umem_log_walk` (`<umem.h>`).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::debug_options::{CONTENTS, LOG_CONTENTS, LOG_FAIL, LOG_TRANSACTION};
use crate::sys::PAGE;
use umem_vmem::Policy;

/// Which log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    /// `UMEM_LOGGING=transaction`.
    Transaction = 0,
    /// `UMEM_LOGGING=contents`.
    Contents = 1,
    /// `UMEM_LOGGING=fail`.
    Fail = 2,
}

/// What a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogOp {
    /// An allocation (`addr` is the block).
    Alloc = 1,
    /// A free (`addr` is the block).
    Free = 2,
    /// A failed allocation (`addr` is 0).
    Fail = 3,
}

/// One record, as [`read_log`] hands it out.
#[derive(Clone, Copy, Debug)]
pub struct LogEntry<'a> {
    /// What happened.
    pub op: LogOp,
    /// `pthread_self()` of the thread.
    pub thread: usize,
    /// CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// The block (0 for a failure).
    pub addr: usize,
    /// The size requested (or freed).
    pub size: usize,
    /// The contents log: the block's first bytes when it was freed.
    pub contents: &'a [u8],
}

/// A record's fixed header.
#[repr(C)]
struct Header {
    seq: AtomicU64,
    op: u32,
    len: u32,
    thread: u64,
    timestamp_ns: u64,
    addr: u64,
    size: u64,
}

const HDR: usize = core::mem::size_of::<Header>();
/// Most bytes of a buffer the contents log keeps.
pub const MAX_CONTENTS: usize = 4096;

struct Ring {
    mem: AtomicUsize,
    rec: AtomicUsize,
    count: AtomicUsize,
    next: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_RING: Ring = Ring {
    mem: AtomicUsize::new(0),
    rec: AtomicUsize::new(0),
    count: AtomicUsize::new(0),
    next: AtomicU64::new(0),
};
static RINGS: [Ring; 3] = [NO_RING; 3];

/// Makes the logs `UMEM_LOGGING` asked for (at initialisation). A log whose
/// memory cannot be had is off, with a warning.
pub fn init() {
    let contents = CONTENTS.load(Ordering::Relaxed).min(MAX_CONTENTS);
    for (i, size, payload) in [
        (0, LOG_TRANSACTION.load(Ordering::Relaxed), 0),
        (1, LOG_CONTENTS.load(Ordering::Relaxed), contents),
        (2, LOG_FAIL.load(Ordering::Relaxed), 0),
    ] {
        if size == 0 {
            continue;
        }
        let rec = (HDR + payload).next_multiple_of(8);
        let bytes = size.max(rec).next_multiple_of(PAGE);
        match umem_vmem::heap().alloc(bytes, Policy::InstantFit) {
            Ok(mem) => {
                // SAFETY: fresh heap pages, ours: no record stamped yet.
                unsafe { core::ptr::write_bytes(mem as *mut u8, 0, bytes) };
                let r = &RINGS[i];
                r.rec.store(rec, Ordering::Relaxed);
                r.count.store(bytes / rec, Ordering::Relaxed);
                r.mem.store(mem, Ordering::Release);
            }
            Err(_) => crate::sys::warn(format_args!(
                "umem: UMEM_LOGGING: no memory for a {bytes}-byte log; it is off\n"
            )),
        }
    }
}

/// Whether log `k` is on.
#[inline]
pub fn on(k: LogKind) -> bool {
    RINGS[k as usize].mem.load(Ordering::Relaxed) != 0
}

/// Appends a record to log `k` (no effect when it is off); `contents` is
/// cut to the record's room.
pub fn record(k: LogKind, op: LogOp, addr: usize, size: usize, contents: &[u8]) {
    let r = &RINGS[k as usize];
    let mem = r.mem.load(Ordering::Acquire);
    if mem == 0 {
        return;
    }
    let (rec, count) = (
        r.rec.load(Ordering::Relaxed),
        r.count.load(Ordering::Relaxed),
    );
    let n = r.next.fetch_add(1, Ordering::Relaxed);
    let at = mem + (n as usize % count) * rec;
    let len = contents.len().min(rec - HDR);
    // SAFETY: `at` is a record of the ring (inside its pages, 8-aligned);
    // concurrent writers of the same slot (a ring lapped while one writes)
    // and readers are told apart by the sequence stamp, written last.
    unsafe {
        let h = at as *mut Header;
        (*h).seq.store(0, Ordering::Release);
        (*h).op = op as u32;
        (*h).len = len as u32;
        (*h).thread = libc::pthread_self() as u64;
        (*h).timestamp_ns = crate::debug_report::now_ns();
        (*h).addr = addr as u64;
        (*h).size = size as u64;
        core::ptr::copy_nonoverlapping(contents.as_ptr(), (at + HDR) as *mut u8, len);
        (*h).seq.store(n + 1, Ordering::Release);
    }
}

/// Calls `f` with every whole record of log `k`, oldest first; returns how
/// many. Nothing (0) for a log that is off.
pub fn read_log(k: LogKind, f: &mut dyn FnMut(&LogEntry<'_>)) -> usize {
    let r = &RINGS[k as usize];
    let mem = r.mem.load(Ordering::Acquire);
    if mem == 0 {
        return 0;
    }
    let (rec, count) = (
        r.rec.load(Ordering::Relaxed),
        r.count.load(Ordering::Relaxed),
    );
    let end = r.next.load(Ordering::Acquire);
    let start = end.saturating_sub(count as u64);
    let mut copy = [0u8; MAX_CONTENTS];
    let mut n = 0;
    for i in start..end {
        let at = mem + (i as usize % count) * rec;
        // SAFETY: a record of the ring; read, then kept only if its stamp
        // says it was whole and unchanged while copied.
        unsafe {
            let h = at as *const Header;
            if (*h).seq.load(Ordering::Acquire) != i + 1 {
                continue;
            }
            let len = ((*h).len as usize).min(rec - HDR).min(copy.len());
            let (op, thread, ts, addr, size) = (
                (*h).op,
                (*h).thread,
                (*h).timestamp_ns,
                (*h).addr,
                (*h).size,
            );
            core::ptr::copy_nonoverlapping((at + HDR) as *const u8, copy.as_mut_ptr(), len);
            if (*h).seq.load(Ordering::Acquire) != i + 1 {
                continue;
            }
            let op = match op {
                1 => LogOp::Alloc,
                2 => LogOp::Free,
                _ => LogOp::Fail,
            };
            f(&LogEntry {
                op,
                thread: thread as usize,
                timestamp_ns: ts,
                addr: addr as usize,
                size: size as usize,
                contents: &copy[..len],
            });
            n += 1;
        }
    }
    n
}
