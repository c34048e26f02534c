//! Diagnostics that never allocate: [`fatal`] (write a message with
//! write(2) and abort) and [`StackStr`] (a fixed-capacity `fmt::Write`
//! buffer for messages and names).
//!
//! An allocator cannot panic with a formatted message (the formatting
//! machinery may allocate, and unwinding out of `malloc` is not an option),
//! so every crate of the allocator reports a broken invariant or a broken
//! contract through [`fatal`], with its own prefix. This file depends on
//! nothing else in the crate; vmem's own messages go through
//! `vmem_fatal`, which adds the `umem-vmem: fatal: ` prefix.

use core::fmt;

/// Bytes of a [`fatal`] message kept (longer messages are cut at a char
/// boundary; the newline is always written).
const FATAL_MAX: usize = 512;

/// Write `args` and a newline to standard error with one write(2) call,
/// then abort the process. Never allocates and never unwinds.
///
/// The caller supplies its own prefix, e.g.
/// `fatal(format_args!("umem-slab: {e}"))`. Messages longer than 512 bytes
/// are truncated at a char boundary.
#[cold]
pub fn fatal(args: fmt::Arguments<'_>) -> ! {
    let mut buf = StackStr::<FATAL_MAX>::new();
    let _ = fmt::write(&mut buf, args);
    let msg = buf.as_str().as_bytes();
    let mut line = [0u8; FATAL_MAX + 1];
    line[..msg.len()].copy_from_slice(msg);
    line[msg.len()] = b'\n';
    // SAFETY: `line[..msg.len() + 1]` is an initialised buffer; write(2)
    // only reads it, and abort has no preconditions.
    unsafe {
        libc::write(2, line.as_ptr().cast(), msg.len() + 1);
        libc::abort();
    }
}

/// vmem's own fatal errors: [`fatal`] with the prefix `umem-vmem: fatal: `.
#[cold]
pub(crate) fn vmem_fatal(args: fmt::Arguments<'_>) -> ! {
    fatal(format_args!("umem-vmem: fatal: {args}"))
}

/// A string of at most `N` bytes built in place with `write!`: no
/// allocation, for messages and names on paths that may not allocate.
///
/// On overflow it keeps the longest prefix that fits and ends at a char
/// boundary, drops everything written afterwards, and answers
/// `fmt::Error` (so `write!` stops formatting early).
pub struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> Default for StackStr<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> StackStr<N> {
    /// An empty string.
    pub const fn new() -> Self {
        StackStr {
            buf: [0; N],
            len: 0,
            truncated: false,
        }
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        // Only whole chars are ever copied in, so this cannot fail.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether some text did not fit and was dropped.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// Empty the string (and forget any truncation).
    pub fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }
}

impl<const N: usize> fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.truncated {
            return Err(fmt::Error);
        }
        let room = N - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            self.truncated = true;
            return Err(fmt::Error);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::StackStr;
    use core::fmt::Write;

    #[test]
    fn stack_str_keeps_whole_chars() {
        let mut s = StackStr::<5>::new();
        assert!(write!(s, "ab").is_ok());
        assert_eq!((s.as_str(), s.len(), s.is_truncated()), ("ab", 2, false));
        // "é" is two bytes: "abcé" needs 5, "abcéz" 6.
        assert!(write!(s, "céz").is_err());
        assert_eq!((s.as_str(), s.is_truncated()), ("abcé", true));
        assert!(
            write!(s, "").is_err(),
            "nothing is added after a truncation"
        );
        s.clear();
        assert!(s.is_empty());
        assert!(write!(s, "€€").is_err()); // 3 + 3 bytes
        assert_eq!(s.as_str(), "€");
    }
}
