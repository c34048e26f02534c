//! The hit paths — what an allocation or free costs when the calling thread's magazines
//! can serve it — and the two small index types that let a caller reach its thread cache
//! with the least work.
//!
//! Encodings (each decoded where it is tested):
//!
//! * [`FastIndex`] is a cache id: `0` means *no magazine layer for this cache* (no
//!   magazines, or a debug cache) and always misses, because id 0's place in every block
//!   holds the block header, which reads as a thread cache with neither rounds nor room
//!   and no previous magazine (`magazine_block.rs`); `1..64` is an inline thread cache of the block; `64..4096` goes
//!   through the block's directory.
//! * [`InlineIndex`] is the byte offset of an inline thread cache in the block
//!   (`id * 64`): `0` again means *always miss*.
//!
//! The hit itself is, per thread, [`magazine::pop`](crate::magazine::pop) /
//! [`magazine::push`](crate::magazine::push): a TLS load, a compare, a load and a store,
//! plus an owner-only counter; per CPU (`percpu.rs`), the same on the current CPU's slot
//! inside a restartable sequence. One test of the mode chooses; either way no lock and no
//! atomic read-modify-write. The inline index is also the slot's offset in a CPU page.

use core::ptr::NonNull;

use crate::cache::Cache;
use crate::magazine::{pop, push, ThreadCache};
use crate::magazine_block::{self, INLINE_SLOT_NEVER_NULL, SLOTS_PER_CHUNK};
use crate::percpu;
use crate::registry;

/// A cache's index for the per-thread fast path ([`Cache::fast_index`]); 0 (always a
/// miss) for caches without a magazine layer and debug caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastIndex(usize);

impl FastIndex {
    /// The index as a word (to keep in an atomic table).
    #[inline(always)]
    pub const fn raw(self) -> usize {
        self.0
    }
    /// Rebuilds an index from [`FastIndex::raw`]. Using one that is not the cache's own in
    /// [`Cache::alloc_with`] / [`Cache::free_with`] breaks their safety contract.
    #[inline(always)]
    pub const fn from_raw(v: usize) -> FastIndex {
        FastIndex(v)
    }
}

impl FastIndex {
    /// The index as an [`InlineIndex`]: itself when it names one of the inline slots of a
    /// thread block (ids below 64), else the always-missing slot 0.
    #[inline]
    pub const fn inline(self) -> InlineIndex {
        if self.0 < SLOTS_PER_CHUNK {
            InlineIndex(self.0 * core::mem::size_of::<ThreadCache>())
        } else {
            InlineIndex::MISS
        }
    }
}

/// The step between two [`InlineIndex`]es: every index is a multiple of it.
pub const INLINE_STRIDE: usize = core::mem::size_of::<ThreadCache>();
/// Every [`InlineIndex`] word is below this.
pub const INLINE_END: usize = SLOTS_PER_CHUNK * INLINE_STRIDE;

/// A [`FastIndex`] that names an inline slot of a thread block (below 64), or the reserved
/// slot 0, which always misses; kept as the slot's byte offset in the block. [`hit_alloc`]
/// and [`hit_free`] reach its slot straight from the thread's block pointer: one add, no
/// range check, no directory. Held as a word, so that a table of [`InlineIndex::word`]s
/// feeds the hit with one load and no zero-extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InlineIndex(usize);

impl InlineIndex {
    /// Slot 0: every hit on it misses.
    pub const MISS: InlineIndex = InlineIndex(0);
    /// The index as a 16-bit word (to keep in an atomic table).
    #[inline(always)]
    pub const fn raw(self) -> u16 {
        self.0 as u16
    }
    /// Rebuilds an index from [`InlineIndex::raw`].
    ///
    /// # Safety
    /// `v` came from `raw`.
    #[inline(always)]
    pub const unsafe fn from_raw(v: u16) -> InlineIndex {
        InlineIndex(v as usize)
    }
    /// The index as a word (the same value as [`InlineIndex::raw`]), for a table the hit
    /// path loads with no zero-extension.
    #[inline(always)]
    pub const fn word(self) -> usize {
        self.0
    }
    /// Rebuilds an index from [`InlineIndex::word`].
    ///
    /// # Safety
    /// `v` came from `word` (or is 0, [`InlineIndex::MISS`]).
    #[inline(always)]
    pub const unsafe fn from_word(v: usize) -> InlineIndex {
        InlineIndex(v)
    }
}

/// The magazine hit alone: the top round of the calling thread's magazines in slot `ii`
/// (raw address), or `None` where [`Cache::alloc_with`] would take its slow path (both
/// magazines empty, no thread block yet) or `ii` is [`InlineIndex::MISS`]. It makes no
/// calls and never touches the cache itself, so a caller whose hit path ends here needs
/// neither a stack frame nor the cache pointer; on `None` it goes on to `alloc_with`.
///
/// # Safety
/// `ii` is `cache.fast_index().inline()` of a live cache (the buffer comes from it).
#[inline(always)]
pub unsafe fn hit_alloc(ii: InlineIndex) -> Option<usize> {
    let t = percpu::table();
    if t != 0 {
        // SAFETY: per-CPU mode; ii is an inline slot's offset (0 always misses).
        return unsafe { percpu::hit_pop(t, ii.0) };
    }
    // SAFETY: ii < 64; the slot, if any, is the calling thread's.
    unsafe { pop::<{ !INLINE_SLOT_NEVER_NULL }>(magazine_block::inline_slot(ii.0)) }
}

/// The free-side twin of [`hit_alloc`]: pushes `addr` onto the calling thread's magazines
/// in slot `ii` and returns `true`, or returns `false` (nothing done) where
/// [`Cache::free_with`] would take its slow path.
///
/// # Safety
/// As [`hit_alloc`], and `addr` is a buffer of that cache that may be freed (as for
/// [`Cache::free`]).
#[inline(always)]
pub unsafe fn hit_free(ii: InlineIndex, addr: usize) -> bool {
    let t = percpu::table();
    if t != 0 {
        // SAFETY: as in hit_alloc; the buffer is the slot's cache's by the caller.
        return unsafe { percpu::hit_push(t, ii.0, addr) };
    }
    // SAFETY: as in hit_alloc; the buffer is the slot's cache's by the caller.
    unsafe { push::<{ !INLINE_SLOT_NEVER_NULL }>(magazine_block::inline_slot(ii.0), addr) }
}

/// The rest of the per-CPU hit (`percpu.rs`) for a caller whose [`hit_alloc`] missed:
/// the top round of the current CPU's loaded magazine, else of its previous one; `None`
/// in per-thread mode and when both are empty. Out of line, on the miss path: the inline
/// hit tries only the loaded magazine.
///
/// # Safety
/// As [`hit_alloc`].
#[inline]
pub unsafe fn cpu_hit_alloc(ii: InlineIndex) -> Option<usize> {
    let t = percpu::table();
    if t == 0 {
        return None;
    }
    // SAFETY: per-CPU mode and an inline slot's offset.
    unsafe {
        if let Some(b) = percpu::hit_pop(t, ii.0) {
            return Some(b);
        }
        let b = percpu::hit_pop_prev(t, ii.0)?;
        prev_hit(ii);
        Some(b)
    }
}

/// The free-side twin of [`cpu_hit_alloc`]: pushes `addr` onto the current CPU's loaded
/// or previous magazine and returns `true`, or `false` (nothing done) in per-thread mode
/// and when both are full.
///
/// # Safety
/// As [`hit_free`].
#[inline]
pub unsafe fn cpu_hit_free(ii: InlineIndex, addr: usize) -> bool {
    let t = percpu::table();
    if t == 0 {
        return false;
    }
    // SAFETY: as in cpu_hit_alloc; the buffer is the slot's cache's by the caller.
    unsafe {
        if percpu::hit_push(t, ii.0, addr) {
            return true;
        }
        if !percpu::hit_push_prev(t, ii.0, addr) {
            return false;
        }
    }
    prev_hit(ii);
    true
}

/// The previous magazine served a per-CPU hit: count it, and every so often count a depot
/// visit for the cache (`Cache::prev_traffic`), which grows its magazines when they are
/// too small for the working set.
#[inline]
fn prev_hit(ii: InlineIndex) {
    if percpu::prev_hit_due(ii.0) {
        if let Some(c) = registry::cache_by_id(ii.0 / INLINE_STRIDE) {
            c.prev_traffic();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The hit path of the Cache API: the magazine hit, then (out of line) the slow path.

impl Cache {
    /// Allocate a constructed object. `None` when the source arena is exhausted or the
    /// constructor failed.
    #[inline(always)]
    pub fn alloc(&self) -> Option<NonNull<u8>> {
        // SAFETY: the cache's own fast index.
        unsafe { self.alloc_with(self.fast_index()) }
    }

    /// Allocate, returning the buffer's address as an integer (for NOTOUCH caches over
    /// integer arenas, where 0 may be a valid buffer).
    #[inline(always)]
    pub fn alloc_addr(&self) -> Option<usize> {
        // SAFETY: the cache's own fast index.
        unsafe { self.alloc_addr_at(self.fast_index) }
    }

    /// The cache's fast-path index, for [`Cache::alloc_with`] / [`Cache::free_with`]: a
    /// caller that keeps it beside the cache pointer (umem-global's size-class table)
    /// saves the hit path one dependent load.
    #[inline(always)]
    pub fn fast_index(&self) -> FastIndex {
        FastIndex(self.fast_index)
    }

    /// [`Cache::alloc`] with the cache's [`FastIndex`] already at hand.
    ///
    /// # Safety
    /// `fi` is `self.fast_index()`.
    #[inline(always)]
    pub unsafe fn alloc_with(&self, fi: FastIndex) -> Option<NonNull<u8>> {
        // SAFETY: by the caller.
        match unsafe { self.alloc_addr_at(fi.0) } {
            Some(a) => match NonNull::new(a as *mut u8) {
                Some(p) => Some(p),
                None => {
                    // Only an integer (NOTOUCH) cache can hand out address 0; a pointer
                    // cannot name it, so give it back. Use `alloc_addr` for such caches.
                    // SAFETY: just allocated from this cache.
                    unsafe { self.free_addr(0) };
                    None
                }
            },
            None => None,
        }
    }

    /// [`Cache::free`] with the cache's [`FastIndex`] already at hand.
    ///
    /// # Safety
    /// As [`Cache::free`], and `fi` is `self.fast_index()`.
    #[inline(always)]
    pub unsafe fn free_with(&self, fi: FastIndex, ptr: NonNull<u8>) {
        // SAFETY: by the caller.
        unsafe { self.free_addr_at(fi.0, ptr.as_ptr() as usize) }
    }

    /// # Safety
    /// `fast_index` is this cache's fast index.
    #[inline(always)]
    unsafe fn alloc_addr_at(&self, fast_index: usize) -> Option<usize> {
        // SAFETY: fast_index < MAX_IDS (it is an id or 0); the slot is the calling
        // thread's.
        match unsafe { pop::<true>(magazine_block::fast_slot(fast_index)) } {
            Some(buf) => Some(buf),
            None => self.alloc_slow(),
        }
    }

    /// Free an object to the cache (fast path: no checks).
    ///
    /// # Safety
    /// `ptr` was returned by `alloc` on this cache, is not used afterwards, and is not
    /// already free. The object must be in its constructed state.
    #[inline(always)]
    pub unsafe fn free(&self, ptr: NonNull<u8>) {
        // SAFETY: by the caller.
        unsafe { self.free_addr(ptr.as_ptr() as usize) }
    }

    /// Free by address (see [`Cache::alloc_addr`]).
    ///
    /// # Safety
    /// As [`Cache::free`].
    #[inline(always)]
    pub unsafe fn free_addr(&self, addr: usize) {
        // SAFETY: by the caller; the cache's own fast index.
        unsafe { self.free_addr_at(self.fast_index, addr) }
    }

    /// # Safety
    /// As [`Cache::free_addr`]; `fast_index` is this cache's fast index.
    #[inline(always)]
    unsafe fn free_addr_at(&self, fast_index: usize, addr: usize) {
        // SAFETY: as in alloc_addr_at.
        unsafe {
            if !push::<true>(magazine_block::fast_slot(fast_index), addr) {
                self.free_slow(addr)
            }
        }
    }
}
