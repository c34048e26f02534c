//! Debug caches ([`CacheFlags::DEBUG`](crate::CacheFlags::DEBUG) and `AUDIT`): the buftag
//! after each buffer, the fill patterns, the checks made when a buffer leaves or comes
//! back. The audit record of each buffer (`AUDIT`) is `audit.rs`'s.
//!
//! A debug chunk is `[buffer][slack][buftag: redzone u64, link word, status]`: the link
//! word is the free-list link of in-slab caches and the bufctl pointer of hashed ones; the
//! status is [`Cache::buftag_status`] of the buffer's state. The redzone (the slack and the
//! redzone word) is `redzone.rs`'s.

use core::ptr::NonNull;
use core::sync::atomic::Ordering;

use crate::cache::Cache;
use crate::debug_report::debug_report;
use crate::error::SlabError;

pub(crate) use crate::redzone::{BUFTAG_ALLOC, BUFTAG_FREE, REDZONE_PATTERN};

/// Bytes of the buftag after each buffer.
pub(crate) const BUFTAG_SIZE: usize = 24;
/// What a free buffer is filled with (checked when it leaves the cache).
pub(crate) const FREE_PATTERN: u64 = 0xdead_beef_dead_beef;
/// What an allocated, never-written buffer holds.
pub(crate) const UNINIT_PATTERN: u64 = 0xbadd_cafe_badd_cafe;

impl Cache {
    /// The buftag status word of `buf` in `state` ([`BUFTAG_ALLOC`] or [`BUFTAG_FREE`]):
    /// the buffer address, this cache and the state, XORed, so that a buffer of another
    /// cache (or a stray pointer) does not pass for ours.
    #[inline]
    pub(crate) fn buftag_status(&self, buf: usize, state: usize) -> usize {
        buf ^ (self as *const Cache as usize) ^ state
    }

    /// Check a buffer leaving the cache: buftag says free, fill pattern intact (up to
    /// `maxverify` bytes; none under `lite`); then mark it allocated, arm its redzone
    /// (`redzone.rs`) and construct it. A broken buftag or fill is reported
    /// (`debug_report.rs`): abort, or carry on with the buffer refilled.
    pub(crate) fn debug_alloc(&self, buf: usize) -> Option<usize> {
        let off = self.buftag_off;
        let lite = crate::redzone::lite();
        // SAFETY: debug caches are touchable; the buftag ends the buffer's chunk.
        unsafe {
            let bt = (buf + off) as *mut usize;
            if *bt.add(2) != self.buftag_status(buf, BUFTAG_FREE) {
                debug_report(
                    self,
                    &SlabError::Corrupt {
                        what: "buftag corrupted on allocation",
                        addr: buf,
                        cache: self.name,
                    },
                );
            }
            if !lite {
                let p = buf as *const u64;
                for i in 0..crate::redzone::verify_len(off) / 8 {
                    let w = *p.add(i);
                    if w != FREE_PATTERN {
                        debug_report(
                            self,
                            &SlabError::ModifiedAfterFree {
                                addr: buf,
                                offset: i * 8,
                                found: w,
                                cache: self.name,
                            },
                        );
                        break;
                    }
                }
                fill(buf, off, UNINIT_PATTERN);
            }
            *bt.add(2) = self.buftag_status(buf, BUFTAG_ALLOC);
            self.arm_redzone(buf);
        }
        if self.audit {
            if let Err(e) = self.audit_record(buf, true) {
                debug_report(self, &e);
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
    /// intact up to the size asked for, the word before it intact (underrun); destruct,
    /// mark free, fill with the free pattern (not under `lite`).
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
                        found: st as u64,
                    },
                });
            }
            self.check_redzone(buf)?;
            self.check_underrun(buf)?;
            if self.audit {
                self.audit_record(buf, false)?;
            }
            self.destruct(buf);
            *bt.add(2) = self.buftag_status(buf, BUFTAG_FREE);
            if !crate::redzone::lite() {
                fill(buf, off, FREE_PATTERN);
            }
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

impl Cache {
    /// Whether `addr` is the start of a chunk this debug cache has handed out of its slab
    /// layer, found in constant time where the layout allows (`None`: it cannot tell
    /// cheaply; the caller locates it the slow way).
    fn debug_start(&self, addr: usize) -> Option<bool> {
        if self.hashed {
            let g = self.slab.0.lock();
            // SAFETY: slab lock held; the hash chains hold live bufctls.
            unsafe {
                let mut bc = *self.hash_bucket(&g, addr);
                while !bc.is_null() {
                    if (*bc).addr == addr {
                        return Some(true);
                    }
                    bc = (*bc).next;
                }
            }
            return Some(false);
        }
        if addr % 8 != 0 {
            return None;
        }
        let sp = self.record_of(addr);
        // SAFETY: an in-slab slab is `size` bytes aligned to `size` (taken aligned to its
        // size, or its size is the source's quantum), so when `addr` is one of our
        // buffers the record at its slab's end is ours; it is trusted only after its
        // owner tag says so. The caller's `addr` lies in memory the source handed out
        // (umem-global: a page its page map gives to this cache's class).
        unsafe {
            if !(*sp).owned_by(self.owner()) {
                return None;
            }
            let s = &*sp;
            Some(
                addr >= s.base
                    && addr < s.base + s.chunks * self.chunksize
                    && self.chunk_div.divides(addr - s.base),
            )
        }
    }

    /// The start-of-buffer check of a debug free: `Ok` when `addr` is a buffer start of
    /// this cache (its buftag then says whether it is allocated), else why not.
    fn debug_owned(&self, addr: usize) -> Result<(), SlabError> {
        match self.debug_start(addr) {
            Some(true) => Ok(()),
            _ => match self.diagnose(addr) {
                None => Ok(()),
                Some(e) => Err(e),
            },
        }
    }

    /// Checks, without freeing, that `ptr` is an allocated buffer of this debug cache with
    /// its redzones intact (what a `realloc` checks before it copies). `Ok` for a cache
    /// without debugging.
    pub fn check_allocated(&self, ptr: NonNull<u8>) -> Result<(), SlabError> {
        if self.buftag_off == 0 {
            return Ok(());
        }
        let buf = ptr.as_ptr() as usize;
        self.debug_owned(buf)?;
        // SAFETY: a buffer start of this touchable debug cache (checked above).
        unsafe {
            let st = *((buf + self.buftag_off) as *const usize).add(2);
            if st == self.buftag_status(buf, BUFTAG_FREE) {
                return Err(SlabError::DoubleFree {
                    addr: buf,
                    cache: self.name,
                });
            }
            if st != self.buftag_status(buf, BUFTAG_ALLOC) {
                return Err(SlabError::Redzone {
                    addr: buf,
                    cache: self.name,
                    found: st as u64,
                });
            }
            self.check_redzone(buf)?;
            self.check_underrun(buf)
        }
    }

    /// The debug free with its error given back instead of reported: the start-of-buffer
    /// check (constant time where the layout allows), then the buftag, redzone and
    /// underrun checks; `Ok` when the buffer was freed, `Err` (and nothing freed) when
    /// something is wrong. For a cache without debugging, the checked free
    /// ([`Cache::free_checked`]).
    ///
    /// # Safety
    /// When it returns `Ok` the buffer was freed: the caller must not use it again.
    pub unsafe fn free_debug(&self, ptr: NonNull<u8>) -> Result<(), SlabError> {
        if self.buftag_off == 0 {
            // SAFETY: by the caller.
            return unsafe { self.free_checked(ptr) };
        }
        let buf = ptr.as_ptr() as usize;
        self.debug_owned(buf)?;
        self.debug_free(buf)?;
        // SAFETY: checked and marked free by debug_free: ours to free once.
        unsafe { self.free_to_layers(buf) };
        Ok(())
    }
}
