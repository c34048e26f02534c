//! Dying with a message and the page size: [`fatal`], [`fatal_error`], the
//! allocation-free formatting buffer [`StackStr`] and [`page_size`].
//!
//! An allocator cannot unwind or allocate while reporting a broken heap, so a fatal
//! error is formatted into a buffer on the stack and written to fd 2 with write(2)
//! before `abort()`. (umem-vmem will export the same helpers; this file is the one place
//! umem-slab has to switch over.)

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::error::SlabError;

/// Write `msg` to stderr with write(2) and abort (never unwinds, never allocates).
pub(crate) fn fatal(msg: &str) -> ! {
    // SAFETY: `msg` is a valid buffer of `msg.len()` bytes; abort has no preconditions.
    unsafe {
        libc::write(2, msg.as_ptr() as *const libc::c_void, msg.len());
        libc::abort()
    }
}

/// Abort with `umem-slab: <e>` (formatted into a [`StackStr`]).
pub(crate) fn fatal_error(e: &SlabError) -> ! {
    use core::fmt::Write;
    let mut b = StackStr::new();
    let _ = writeln!(b, "umem-slab: {e}");
    fatal(b.as_str().unwrap_or("umem-slab: fatal error\n"))
}

/// A 256-byte string on the stack that `write!` fills; output past the end is cut.
pub(crate) struct StackStr {
    bytes: [u8; 256],
    len: usize,
}

impl StackStr {
    pub(crate) const fn new() -> StackStr {
        StackStr {
            bytes: [0; 256],
            len: 0,
        }
    }

    /// The text written so far; `None` when a cut split a character.
    pub(crate) fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(&self.bytes[..self.len]).ok()
    }
}

impl fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let k = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + k].copy_from_slice(&s.as_bytes()[..k]);
        self.len += k;
        Ok(())
    }
}

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The system page size (`sysconf(_SC_PAGESIZE)`, 4096 if that fails), read once.
pub(crate) fn page_size() -> usize {
    let p = PAGE_SIZE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions.
    let p = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => 4096,
    };
    PAGE_SIZE.store(p, Ordering::Relaxed);
    p
}
