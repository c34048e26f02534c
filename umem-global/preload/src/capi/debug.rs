//! The C face of `UMEM_DEBUG` and `UMEM_LOGGING` (extensions declared in
//! `include/umem.h`): `umem_verify()` (mdb's `::umem_verify` as a call) and
//! `umem_log_walk()` (the in-memory logs, as mdb's `::umalog` reads them).

use core::ffi::{c_int, c_void};
use umem_global::umem_log::{read_log, LogKind, LogOp};

/// `umem_verify()`: checks every cache, slab, buftag and arena, reports
/// each problem on stderr, and returns how many it found.
#[no_mangle]
pub extern "C" fn umem_verify() -> c_int {
    c_int::try_from(umem_global::verify().problems).unwrap_or(c_int::MAX)
}

/// `umem_log_entry_t`.
#[repr(C)]
pub struct LogEntryC {
    op: c_int,
    thread: libc::c_ulong,
    timestamp_ns: u64,
    addr: *mut c_void,
    size: usize,
    contents: *const c_void,
    contents_len: usize,
}

/// The walker's callback.
pub type LogCallback = unsafe extern "C" fn(*const LogEntryC, *mut c_void) -> c_int;

/// `umem_log_walk(log, cb, arg)`: calls `cb` with each record of the log,
/// oldest first, until it returns non-zero; the number of records seen, or
/// -1 for a log that is off.
///
/// # Safety
/// `cb` is a valid function taking what the header says; `arg` is passed
/// through untouched.
#[no_mangle]
pub unsafe extern "C" fn umem_log_walk(
    log: c_int,
    cb: Option<LogCallback>,
    arg: *mut c_void,
) -> c_int {
    let kind = match log {
        0 => LogKind::Transaction,
        1 => LogKind::Contents,
        2 => LogKind::Fail,
        _ => return -1,
    };
    if !umem_global::umem_log::on(kind) {
        return -1;
    }
    let mut seen: c_int = 0;
    let mut stop = false;
    read_log(kind, &mut |e| {
        if stop {
            return;
        }
        seen = seen.saturating_add(1);
        let Some(f) = cb else { return };
        let c = LogEntryC {
            op: match e.op {
                LogOp::Alloc => 1,
                LogOp::Free => 2,
                LogOp::Fail => 3,
            },
            thread: e.thread as libc::c_ulong,
            timestamp_ns: e.timestamp_ns,
            addr: e.addr as *mut c_void,
            size: e.size,
            contents: e.contents.as_ptr().cast(),
            contents_len: e.contents.len(),
        };
        // SAFETY: the caller's callback, given an entry valid for the call.
        stop = unsafe { f(&c, arg) } != 0;
    });
    seen
}
