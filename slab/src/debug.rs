//! Debug caches ([`CacheFlags::DEBUG`](crate::CacheFlags::DEBUG) and `AUDIT`): the buftag
//! after each buffer, the fill patterns, the checks made when a buffer leaves or comes
//! back. The audit record of each buffer (`AUDIT`) is `audit.rs`'s.
//!
//! A debug chunk is `[buffer][buftag: redzone u64, link word, status]`: the link word is
//! the free-list link of in-slab caches and the bufctl pointer of hashed ones; the status
//! is [`Cache::buftag_status`] of the buffer's state.

use core::sync::atomic::Ordering;

use crate::cache::Cache;
use crate::diag::fatal_error;
use crate::error::SlabError;

/// Bytes of the buftag after each buffer.
pub(crate) const BUFTAG_SIZE: usize = 24;
/// The redzone word, right after the buffer.
pub(crate) const REDZONE_PATTERN: u64 = 0xfeed_face_feed_face;
/// What a free buffer is filled with (checked when it leaves the cache).
pub(crate) const FREE_PATTERN: u64 = 0xdead_beef_dead_beef;
/// What an allocated, never-written buffer holds.
pub(crate) const UNINIT_PATTERN: u64 = 0xbadd_cafe_badd_cafe;
/// Buftag status state: allocated.
pub(crate) const BUFTAG_ALLOC: usize = 0xa110_c8ed;
/// Buftag status state: free.
pub(crate) const BUFTAG_FREE: usize = 0xf4ee_f4ee;

impl Cache {
    /// The buftag status word of `buf` in `state` ([`BUFTAG_ALLOC`] or [`BUFTAG_FREE`]):
    /// the buffer address, this cache and the state, XORed, so that a buffer of another
    /// cache (or a stray pointer) does not pass for ours.
    #[inline]
    pub(crate) fn buftag_status(&self, buf: usize, state: usize) -> usize {
        buf ^ (self as *const Cache as usize) ^ state
    }

    /// Check a buffer leaving the cache: buftag says free, fill pattern intact; then mark
    /// it allocated and construct it.
    pub(crate) fn debug_alloc(&self, buf: usize) -> Option<usize> {
        let off = self.buftag_off;
        // SAFETY: debug caches are touchable; the buftag follows the buffer in its chunk.
        unsafe {
            let bt = (buf + off) as *mut usize;
            if *bt.add(2) != self.buftag_status(buf, BUFTAG_FREE) {
                fatal_error(&SlabError::Corrupt {
                    what: "buftag corrupted on allocation",
                    addr: buf,
                    cache: self.name,
                });
            }
            let p = buf as *mut u64;
            for i in 0..off / 8 {
                if *p.add(i) != FREE_PATTERN {
                    fatal_error(&SlabError::ModifiedAfterFree {
                        addr: buf,
                        offset: i * 8,
                        cache: self.name,
                    });
                }
                *p.add(i) = UNINIT_PATTERN;
            }
            *bt.add(2) = self.buftag_status(buf, BUFTAG_ALLOC);
            *(bt as *mut u64) = REDZONE_PATTERN;
        }
        if self.audit {
            if let Err(e) = self.audit_record(buf, true) {
                fatal_error(&e);
            }
        }
        if !self.construct(buf) {
            // SAFETY: as above.
            unsafe {
                fill(buf, off, FREE_PATTERN);
                *((buf + off) as *mut usize).add(2) = self.buftag_status(buf, BUFTAG_FREE);
            }
            self.alloc_fail.fetch_add(1, Ordering::Relaxed);
            self.slab_free_trusted(buf);
            return None;
        }
        Some(buf)
    }

    /// Check a buffer coming back: buftag says allocated (else double free), redzone
    /// intact; destruct, mark free, fill with the free pattern.
    pub(crate) fn debug_free(&self, buf: usize) -> Result<(), SlabError> {
        let off = self.buftag_off;
        // SAFETY: the caller promised `buf` is a buffer of this (touchable) cache.
        unsafe {
            let bt = (buf + off) as *mut usize;
            let st = *bt.add(2);
            if st != self.buftag_status(buf, BUFTAG_ALLOC) {
                if st == self.buftag_status(buf, BUFTAG_FREE) {
                    return Err(SlabError::DoubleFree {
                        addr: buf,
                        cache: self.name,
                    });
                }
                // Not our allocated buffer: find out whose it is (slow, error path only).
                return Err(match self.diagnose(buf) {
                    Some(e) => e,
                    None => SlabError::Redzone {
                        addr: buf,
                        cache: self.name,
                    },
                });
            }
            if *(bt as *const u64) != REDZONE_PATTERN {
                return Err(SlabError::Redzone {
                    addr: buf,
                    cache: self.name,
                });
            }
            if self.audit {
                self.audit_record(buf, false)?;
            }
            self.destruct(buf);
            *bt.add(2) = self.buftag_status(buf, BUFTAG_FREE);
            fill(buf, off, FREE_PATTERN);
        }
        Ok(())
    }
}

/// Fill `[buf, buf+len)` with `pat`.
///
/// # Safety
/// `[buf, buf+len)` is writable and 8-aligned; `len` a multiple of 8.
pub(crate) unsafe fn fill(buf: usize, len: usize, pat: u64) {
    let p = buf as *mut u64;
    for i in 0..len / 8 {
        // SAFETY: by the caller.
        unsafe { *p.add(i) = pat };
    }
}
