//! Byte-precise redzones (libumem's size-encoded redzone, `UMEM_DEBUG=guards`): what a
//! debug chunk holds past its buffer, and the checks that find a write there.
//!
//! A debug chunk is `[buffer][slack][buftag: redzone word, link word, status]`, the
//! buftag at the *end* of the chunk (`create.rs` puts it there), so that:
//!
//! * the bytes from the end of what was asked for up to the buftag (the *slack*: the
//!   class's rounding, the alignment padding) are filled with [`REDZONE_BYTE`] and
//!   checked byte by byte when the buffer comes back: one byte written past the request
//!   is found, whatever the size;
//! * the redzone word says how much was asked for: [`REDZONE_PATTERN`] for a buffer of
//!   the cache's own size (plain `Cache::alloc`), or the requested size, encoded so
//!   that an overwrite does not pass for a size ([`encode_size`]), for a buffer the
//!   cache's user sized with [`Cache::set_requested`] (umem-global's `malloc`);
//! * the status word of one chunk is the last word before the next chunk's buffer, so a
//!   write just *before* a buffer (an underrun) breaks its neighbour's status: the free
//!   of the buffer checks its neighbour's status ([`SlabError::Underrun`]).
//!
//! The debug tuning of the whole process ([`set_debug_tuning`]): `maxverify` (how many
//! bytes of a free buffer's fill are checked when it is handed out again) and `lite`
//! (no fill patterns: only the redzones and the buftag states).
//!

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::cache::Cache;
use crate::error::SlabError;
use crate::slab::{BufctlAudit, Slab};

/// The redzone word of a buffer without a recorded size (libumem's `0xfeedface`).
pub(crate) const REDZONE_PATTERN: u64 = 0xfeed_face_feed_face;
/// Buftag status state: allocated.
pub(crate) const BUFTAG_ALLOC: usize = 0xa110_c8ed;
/// Buftag status state: free.
pub(crate) const BUFTAG_FREE: usize = 0xf4ee_f4ee;

/// What the slack between a buffer's requested end and its buftag holds.
pub const REDZONE_BYTE: u8 = 0xbb;

/// The high half of a size-encoded redzone word is the size; the low half is the size
/// XORed with this, so that a word a program wrote there does not read as a size.
const SIZE_CHECK: u32 = 0x5eed_c0de;

/// The redzone word of a buffer whose user asked for `size` bytes (`size < 2^32`).
#[inline]
pub(crate) fn encode_size(size: usize) -> u64 {
    let s = size as u32;
    (u64::from(s) << 32) | u64::from(s ^ SIZE_CHECK)
}

/// The size a redzone word encodes, if it is one ([`encode_size`]).
#[inline]
pub(crate) fn decode_size(word: u64) -> Option<usize> {
    let hi = (word >> 32) as u32;
    ((hi ^ SIZE_CHECK) == word as u32).then_some(hi as usize)
}

/// `maxverify`: bytes of a free buffer's fill checked on allocation (`usize::MAX`: all).
static MAXVERIFY: AtomicUsize = AtomicUsize::new(usize::MAX);
/// `lite`: no fill patterns.
static LITE: AtomicBool = AtomicBool::new(false);

/// Sets the process's debug tuning (libumem's `UMEM_DEBUG=maxverify=N` and `lite`):
/// debug caches check at most `maxverify` bytes of a free buffer's `0xdeadbeef` fill
/// when it leaves the cache (`usize::MAX`: all of it), and with `lite` they fill and
/// check no patterns at all (redzones, buftag states and audit records stay). Call it
/// before the first debug cache is used.
pub fn set_debug_tuning(maxverify: usize, lite: bool) {
    MAXVERIFY.store(maxverify, Ordering::Relaxed);
    LITE.store(lite, Ordering::Relaxed);
}

/// Bytes of a free buffer's fill to check (at most `len`).
#[inline]
pub(crate) fn verify_len(len: usize) -> usize {
    len.min(MAXVERIFY.load(Ordering::Relaxed)) & !7
}

/// Whether fill patterns are off (`lite`).
#[inline]
pub(crate) fn lite() -> bool {
    LITE.load(Ordering::Relaxed)
}

/// Fill `[from, to)` with the redzone byte.
///
/// # Safety
/// The range is writable.
unsafe fn fill_slack(from: usize, to: usize) {
    if to > from {
        // SAFETY: by the caller.
        unsafe { core::ptr::write_bytes(from as *mut u8, REDZONE_BYTE, to - from) };
    }
}

impl Cache {
    /// Writes a fresh buffer's redzone: the slack from the cache's size to the buftag.
    ///
    /// # Safety
    /// `buf` is a buffer of this debug cache being handed out.
    pub(crate) unsafe fn arm_redzone(&self, buf: usize) {
        let off = self.buftag_off;
        // SAFETY: by the caller; the buftag is the chunk's last 24 bytes.
        unsafe {
            fill_slack(buf + self.bufsize, buf + off);
            *((buf + off) as *mut u64) = REDZONE_PATTERN;
        }
    }

    /// Records that the user of the allocated buffer `ptr` asked for `size` bytes: its
    /// redzone starts there (libumem's `umem_alloc` redzone). No effect on a cache without
    /// debugging or when `size` is not below the buffer size; the cache's own size is
    /// what a buffer without a recorded size is checked against.
    ///
    /// # Safety
    /// `ptr` is a buffer of this cache, allocated and not freed.
    pub unsafe fn set_requested(&self, ptr: NonNull<u8>, size: usize) {
        if self.buftag_off == 0 || size >= self.bufsize {
            return;
        }
        let buf = ptr.as_ptr() as usize;
        // SAFETY: by the caller: an allocated buffer of this touchable debug cache.
        unsafe {
            fill_slack(buf + size, buf + self.bufsize);
            *((buf + self.buftag_off) as *mut u64) = encode_size(size);
        }
    }

    /// The size recorded for the allocated buffer `ptr` ([`Cache::set_requested`]), else
    /// the cache's buffer size; `None` for a cache without debugging or a redzone word
    /// that is neither (overwritten).
    ///
    /// # Safety
    /// `ptr` is a buffer of this cache.
    pub unsafe fn requested(&self, ptr: NonNull<u8>) -> Option<usize> {
        if self.buftag_off == 0 {
            return None;
        }
        // SAFETY: by the caller; debug caches are touchable.
        let w = unsafe { *((ptr.as_ptr() as usize + self.buftag_off) as *const u64) };
        if w == REDZONE_PATTERN {
            Some(self.bufsize)
        } else {
            decode_size(w).filter(|&s| s <= self.bufsize)
        }
    }

    /// Checks an allocated buffer's redzone: the redzone word says how much was asked for,
    /// and every byte from there to the buftag still holds [`REDZONE_BYTE`].
    ///
    /// # Safety
    /// `buf` is an allocated buffer of this debug cache.
    pub(crate) unsafe fn check_redzone(&self, buf: usize) -> Result<(), SlabError> {
        let off = self.buftag_off;
        // SAFETY: by the caller.
        let w = unsafe { *((buf + off) as *const u64) };
        let size = if w == REDZONE_PATTERN {
            self.bufsize
        } else {
            match decode_size(w).filter(|&s| s <= self.bufsize) {
                Some(s) => s,
                None => {
                    return Err(SlabError::Redzone {
                        addr: buf,
                        cache: self.name,
                        found: w,
                    })
                }
            }
        };
        for i in size..off {
            // SAFETY: inside the chunk (by the caller).
            let b = unsafe { *((buf + i) as *const u8) };
            if b != REDZONE_BYTE {
                return Err(SlabError::Overrun {
                    addr: buf,
                    size,
                    offset: i,
                    found: b,
                    cache: self.name,
                });
            }
        }
        Ok(())
    }

    /// Checks the word just before `buf`: the status word of the chunk before it in its
    /// slab, which a write before `buf` (an underrun) breaks. Nothing to check for the
    /// first chunk of a slab.
    ///
    /// # Safety
    /// `buf` is an allocated buffer of this debug cache.
    pub(crate) unsafe fn check_underrun(&self, buf: usize) -> Result<(), SlabError> {
        // SAFETY: by the caller; slab records and bufctls are checked (owner tag, address)
        // before they are trusted, and the word read is inside the same slab.
        unsafe {
            let sp: *const Slab = if self.hashed {
                let bc = *((buf + self.buftag_off) as *const usize).add(1) as *const BufctlAudit;
                if bc.is_null() || (bc as usize) % 8 != 0 || (*bc).bc.addr != buf {
                    return Ok(());
                }
                (*bc).bc.slab
            } else {
                // An in-slab slab is aligned to its size (see `Cache::debug_start`).
                self.record_of(buf)
            };
            if sp.is_null() || !(*sp).owned_by(self.owner()) {
                return Ok(());
            }
            let base = (*sp).base;
            if buf < base + self.chunksize {
                return Ok(());
            }
            let prev = buf - self.chunksize;
            let st = *((buf - 8) as *const usize);
            if st != self.buftag_status(prev, BUFTAG_ALLOC)
                && st != self.buftag_status(prev, BUFTAG_FREE)
            {
                return Err(SlabError::Underrun {
                    addr: buf,
                    found: st,
                    cache: self.name,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip_and_patterns_are_not_sizes() {
        for s in [0usize, 1, 7, 8, 100, 4095, 131_072, (1 << 32) - 1] {
            assert_eq!(decode_size(encode_size(s)), Some(s));
        }
        assert_eq!(decode_size(REDZONE_PATTERN), None);
        assert_eq!(decode_size(0xbbbb_bbbb_bbbb_bbbb), None);
        assert_eq!(decode_size(0xdead_beef_dead_beef), None);
        assert_eq!(decode_size(0xbadd_cafe_badd_cafe), None);
        assert_eq!(decode_size(0), None);
    }
}
