//! Symbolized frames and buffer histories: how an audit stack is printed.
//!
//! A frame prints as `module!symbol+0xoff` (libumem's and mdb's form): the
//! object's file name without its directory, the nearest dynamic symbol at
//! or below the address, and the offset from it, all from `dladdr`, which
//! reads the loaded objects' dynamic symbol tables and does not allocate.
//! A function that is not in a dynamic symbol table (a static function, an
//! executable linked without `-rdynamic`) prints as `module+0xoff` from
//! the object's load address. Return addresses are looked up one byte back,
//! so a call that ends its function is named after that function.
//!
//! [`print_buffer_history`] is what an error report prints about a buffer
//! with `UMEM_DEBUG=audit`: who allocated it and who freed it last, with
//! their threads, times and stacks. It is installed as umem-slab's error
//! hook (so a double free or a redzone violation detected by the debug
//! caches prints it before aborting) and called by umem-global's own
//! messages about small blocks. [`report_stacks`], the stacks section of a
//! debug report, prints it, or a large block's allocation
//! ([`print_large_history`]), or for an allocation failure under
//! `checknull` the failing call's stack ([`print_current_stack`]).

use crate::caches;
use crate::pagemap::{self, PageKind};
use crate::sys::{flush_to, StackStr};
use core::ffi::CStr;
use core::fmt::Write;
use core::ptr::NonNull;
use umem_slab::{AuditEvent, MAX_AUDIT_DEPTH};

/// Writes `pc` as `module!symbol+0xoff` (or `module+0xoff`, or the bare
/// address when no object holds it).
pub fn write_frame<const N: usize>(b: &mut StackStr<N>, pc: usize) {
    // SAFETY: an all-zero Dl_info is a valid value to be overwritten.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables and writes `info`.
    let found = unsafe { libc::dladdr(pc.saturating_sub(1) as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        let _ = write!(b, "{pc:#x}");
        return;
    }
    // SAFETY: dladdr's strings are NUL-terminated and live as long as the
    // object stays loaded (through this call).
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_bytes();
    let base = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
    let module = core::str::from_utf8(base).unwrap_or("?");
    let module = if module.is_empty() { "a.out" } else { module };
    if !info.dli_sname.is_null() && !info.dli_saddr.is_null() {
        // SAFETY: as above.
        let sym = unsafe { CStr::from_ptr(info.dli_sname) }
            .to_str()
            .unwrap_or("?");
        let off = pc.wrapping_sub(info.dli_saddr as usize);
        let _ = write!(b, "{module}!{sym}+{off:#x}");
    } else {
        let off = pc.wrapping_sub(info.dli_fbase as usize);
        let _ = write!(b, "{module}+{off:#x}");
    }
}

/// Prints `frames`, one per line, each indented by `indent` spaces.
pub fn print_stack(fd: i32, frames: &[usize], indent: usize) {
    for &pc in frames {
        let mut b = StackStr::<512>::new();
        let _ = write!(b, "{:indent$}", "");
        write_frame(&mut b, pc);
        let _ = writeln!(b);
        flush_to(&mut b, fd);
    }
}

fn print_event(fd: i32, what: &str, ev: &AuditEvent) {
    let mut b = StackStr::<256>::new();
    if ev.thread == 0 {
        let _ = writeln!(b, "  {what}: never");
        flush_to(&mut b, fd);
        return;
    }
    let t = ev.timestamp_ns;
    let _ = writeln!(
        b,
        "  {what} by thread {:#x} at {}.{:09}s (CLOCK_MONOTONIC):",
        ev.thread,
        t / 1_000_000_000,
        t % 1_000_000_000
    );
    flush_to(&mut b, fd);
    let frames = ev.stack.frames();
    if frames.is_empty() {
        let mut b = StackStr::<64>::new();
        let _ = writeln!(b, "    (no stack recorded)");
        flush_to(&mut b, fd);
    }
    print_stack(fd, &frames[..frames.len().min(MAX_AUDIT_DEPTH)], 4);
}

/// The audit record of the small block at or around `addr`, if auditing
/// keeps one, with the block's cache.
fn detail_of(addr: usize) -> Option<(&'static umem_slab::Cache, umem_slab::AuditDetail)> {
    let PageKind::Small(c) = pagemap::lookup(addr) else {
        return None;
    };
    let cache = caches::cache_of(c)?;
    let d = cache.audit_detail(NonNull::new(addr as *mut u8)?)?;
    Some((cache, d))
}

/// Whether [`print_buffer_history`] has something to print for `addr`.
pub fn has_buffer_history(addr: usize) -> bool {
    detail_of(addr).is_some()
}

/// Prints the audit history of the small block at or around `addr`: its
/// start and class, its last allocation and its last free with threads,
/// times and stacks. `false` (nothing printed) when auditing is off or
/// `addr` is not in an audit cache's slab.
pub fn print_buffer_history(fd: i32, addr: usize) -> bool {
    let Some((cache, d)) = detail_of(addr) else {
        return false;
    };
    let mut b = StackStr::<256>::new();
    let _ = writeln!(
        b,
        "umem: buffer {:#x} ({} bytes, cache {}), {} transaction{}, {}:",
        d.buf,
        cache.buf_size(),
        cache.name(),
        d.record.transactions,
        if d.record.transactions == 1 { "" } else { "s" },
        if d.record.allocated {
            "allocated now"
        } else {
            "free now"
        }
    );
    flush_to(&mut b, fd);
    print_event(fd, "allocated", &d.alloc);
    print_event(fd, "last freed", &d.free);
    true
}

/// umem-slab's error hook (installed with `audit`): the history of the
/// buffer a fatal error is about, on stderr.
pub fn error_hook(addr: usize) {
    print_buffer_history(2, addr);
}

/// Prints the audit record of the large block at `addr` (its start; a
/// large block's record is kept by the start of its pages, which is
/// `addr`'s page for every kind of debug large block): its allocating
/// thread and stack. Large blocks keep no free record (theirs is dropped
/// with the block). `false` (nothing printed) when there is no record.
pub fn print_large_history(fd: i32, addr: usize) -> bool {
    let Some(r) = crate::large_audit::lookup(addr & !(crate::sys::PAGE - 1)) else {
        return false;
    };
    let mut b = StackStr::<256>::new();
    let _ = writeln!(b, "umem: buffer {addr:#x} (a large block), allocated now:");
    let _ = writeln!(b, "  allocated by thread {:#x}:", r.thread);
    flush_to(&mut b, fd);
    let frames = r.stack.frames();
    if frames.is_empty() {
        let _ = writeln!(b, "    (no stack recorded)");
        flush_to(&mut b, fd);
    }
    print_stack(fd, &frames[..frames.len().min(MAX_AUDIT_DEPTH)], 4);
    true
}

/// Prints the stack of the call being made now (a failed allocation under
/// `checknull`), callers of umem first-innermost; nothing before the
/// unwinder is loaded (auditing off).
pub fn print_current_stack(fd: i32, what: &str) {
    let mut frames = [0usize; MAX_AUDIT_DEPTH];
    let depth = umem_slab::audit_depth().min(MAX_AUDIT_DEPTH);
    let n = crate::stack::capture(&mut frames[..depth]);
    if n == 0 {
        return;
    }
    let mut b = StackStr::<128>::new();
    let _ = writeln!(b, "umem: {what}, by thread {:#x}:", current_thread());
    flush_to(&mut b, fd);
    print_stack(fd, &frames[..n], 4);
}

fn current_thread() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// The stacks section of a debug report (`debug_report::set_stacks_printer`,
/// installed with `audit`): the history of the buffer the report is about
/// (a small buffer's allocation and last free, a large block's
/// allocation), or for a report about no buffer (`buf == 0`: an allocation
/// failure) the stack of the failing call.
pub fn report_stacks(buf: usize, fd: i32) {
    if buf == 0 {
        print_current_stack(fd, "the failing call");
    } else if !print_buffer_history(fd, buf) {
        print_large_history(fd, buf);
    }
}
