//! Checking: [`Cache::free_checked`] (a free that reports instead of trusting) with the
//! diagnosis of a bad address, and [`Cache::verify`], the walk that checks every
//! invariant of the slab layer and the depot (theory statement, section 4).

use core::ptr::{null_mut, NonNull};

use crate::cache::Cache;
use crate::debug::{BUFTAG_ALLOC, BUFTAG_FREE};
use crate::error::SlabError;
use crate::magazine::Magazine;
use crate::registry;
use crate::secret;
use crate::slab::{map_word_chunks, map_words, Bufctl, BufferLookup, Slab, SlabLayer, FRESH};

/// Where a cache's buffers start, from the address alone ([`Cache::grid`]): `a` is a
/// buffer start iff `a % slab_size` is a multiple of `chunk_size` below
/// `chunks * chunk_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabGrid {
    /// The grid's period, a power of two: every slab starts at a multiple of it. An
    /// in-slab cache's slab size; for a hashed `FREE_KEY` cache, its slab size rounded up
    /// to a power of two (the slabs' alignment; the rest of each period is never used).
    pub slab_size: usize,
    /// Bytes from one buffer to the next.
    pub chunk_size: usize,
    /// Buffers per slab, the first at the slab's start.
    pub chunks: usize,
}

impl Cache {
    /// The [`SlabGrid`] of a cache without colouring (`CacheFlags::FREE_KEY`), so that a
    /// free path can tell a buffer start from an interior or stray pointer with no
    /// lookup: in-slab caches, and hashed `FREE_KEY` caches (whose slabs are aligned to
    /// their size rounded up to a power of two, [`SlabGrid::slab_size`]); `None` for
    /// other hashed caches and coloured ones.
    pub fn grid(&self) -> Option<SlabGrid> {
        if self.maxcolor() != 0 {
            return None;
        }
        if self.hashed {
            if !self.free_key || self.slabsize() == 0 {
                return None;
            }
            return Some(SlabGrid {
                slab_size: self.slabsize().next_power_of_two(),
                chunk_size: self.chunksize,
                chunks: self.slabsize() / self.chunksize,
            });
        }
        if !self.slabsize().is_power_of_two() {
            return None;
        }
        Some(SlabGrid {
            slab_size: self.slabsize(),
            chunk_size: self.chunksize,
            chunks: (self.slabsize() - self.slab_hdr) / self.chunksize,
        })
    }

    /// The slow check behind a free key (`CacheFlags::FREE_KEY`): `addr`, about to be
    /// freed, already holds the key. `Ok` when it is an allocated buffer that is in
    /// neither the calling thread's magazines nor the depot (its user data happened to
    /// match the key: free it); `DoubleFree` when it is free there or on its slab's free
    /// list (a never-allocated chunk included); `BadAddress` for a pointer inside a
    /// buffer; `NotOwned` when no slab of this cache holds it. Frees nothing. Linear in
    /// the cache's slabs, so for the rare case the key matches.
    pub fn check_free(&self, addr: usize) -> Result<(), SlabError> {
        match self.locate(addr) {
            BufferLookup::Allocated if !self.in_magazines(addr) => Ok(()),
            BufferLookup::Allocated | BufferLookup::Free => Err(SlabError::DoubleFree {
                addr,
                cache: self.name,
            }),
            BufferLookup::Interior(buffer) => Err(SlabError::BadAddress {
                addr,
                buffer,
                cache: self.name,
            }),
            BufferLookup::NotInCache => Err(SlabError::NotOwned {
                addr,
                cache: self.name,
            }),
        }
    }

    /// Is `addr` sitting in the calling thread's magazines or the depot's full magazines?
    pub(crate) fn in_magazines(&self, addr: usize) -> bool {
        if self.id == 0 {
            return false;
        }
        // SAFETY: our own slot (or our private copy of the CPU's).
        let mine = self.with_my_slot(|slot| unsafe {
            let s = &*slot;
            [(s.loaded, s.rounds()), (s.ploaded, s.prounds)]
                .into_iter()
                .any(|(m, r)| {
                    (0..if m.is_null() { 0 } else { r }).any(|i| *Magazine::round(m, i) == addr)
                })
        });
        if mine == Some(true) {
            return true;
        }
        // SAFETY: depot magazines are read under the depot lock.
        unsafe {
            let d = self.depot.0.lock();
            let n = d.rounds();
            let mut found = false;
            // The walk has no early exit; once found, the rest of it reads no rounds.
            d.full.for_each(&mut |m| {
                found = found || (0..n).any(|i| *Magazine::round(m, i) == addr);
            });
            found
        }
    }

    /// Free with every check this allocator can make: the address must be the start of an
    /// allocated buffer of this cache; a buffer of another cache, an address no slab owns,
    /// an interior pointer and a detectable double free (slab free list, the calling
    /// thread's magazines, the depot, a debug buftag) are reported instead of freed.
    /// Cost: linear in the cache's slabs (all caches' when the address is not ours).
    ///
    /// # Safety
    /// When it returns `Ok`, the object was freed: the caller must not use it again.
    pub unsafe fn free_checked(&self, ptr: NonNull<u8>) -> Result<(), SlabError> {
        let addr = ptr.as_ptr() as usize;
        // The same classification as the free key's slow check; an address no slab of
        // ours holds is looked up in the other caches too (`WrongCache`).
        self.check_free(addr).map_err(|e| match e {
            SlabError::NotOwned { .. } => self.not_ours(addr),
            e => e,
        })?;
        if self.buftag_off != 0 {
            self.debug_free(addr)?;
            // Re-mark allocated: free_addr runs the debug path again.
            // SAFETY: the buffer is ours (located by check_free).
            unsafe {
                *((addr + self.buftag_off) as *mut usize).add(2) =
                    self.buftag_status(addr, BUFTAG_ALLOC)
            };
            // Content was already destructed and filled; a second destruct would be
            // wrong, so hand it to the magazine layer directly.
            // SAFETY: validated above.
            unsafe { self.free_after_debug(addr) };
            return Ok(());
        }
        // SAFETY: validated above: an allocated buffer of this cache, in no magazine.
        unsafe { self.free_addr(addr) };
        Ok(())
    }

    /// The error for an address no slab of this cache holds: `WrongCache` naming the cache
    /// that does hold it, else `NotOwned`.
    fn not_ours(&self, addr: usize) -> SlabError {
        let owner = registry::find_cache(&mut |c| {
            !core::ptr::eq(c, self) && !matches!(c.locate(addr), BufferLookup::NotInCache)
        });
        match owner {
            Some(c) => SlabError::WrongCache {
                addr,
                cache: self.name,
                owner: c.name,
            },
            None => SlabError::NotOwned {
                addr,
                cache: self.name,
            },
        }
    }

    /// Why is `addr` not a buffer of ours? `None` when it is one (its buftag is then what
    /// is broken).
    pub(crate) fn diagnose(&self, addr: usize) -> Option<SlabError> {
        match self.locate(addr) {
            BufferLookup::Allocated | BufferLookup::Free => None,
            BufferLookup::Interior(buffer) => Some(SlabError::BadAddress {
                addr,
                buffer,
                cache: self.name,
            }),
            BufferLookup::NotInCache => Some(self.not_ours(addr)),
        }
    }

    /// free_checked of a debug cache after `debug_free` succeeded.
    pub(crate) unsafe fn free_after_debug(&self, addr: usize) {
        // SAFETY: the buftag is ours; mark free, then skip the debug check in free_slow by
        // going to the magazine/slab layers directly.
        unsafe {
            *((addr + self.buftag_off) as *mut usize).add(2) = self.buftag_status(addr, BUFTAG_FREE)
        };
        // SAFETY: by the caller; a debug cache (buftags), so no destructor runs here.
        unsafe { self.free_to_layers(addr) }
    }

    /// Walk the slab layer and the depot and check every invariant: each slab belongs to
    /// this cache and lies in the source arena; free-list length = chunks - refcnt, free
    /// buffers are chunk starts inside their slab, no duplicates; full/partial list
    /// membership matches the free list; counts add up; the hash holds exactly the
    /// allocated bufctls, each in its right bucket and slab; depot list lengths match their
    /// totals and `min <= total`; debug buftags of free buffers say free.
    pub fn verify(&self) -> Result<(), SlabError> {
        let corrupt = |what: &'static str, addr: usize| SlabError::Corrupt {
            what,
            addr,
            cache: self.name,
        };
        let g = self.slab.0.lock();
        let mut nslabs = 0;
        let mut buftotal = 0;
        let mut bufalloc = 0;
        let mut claims_seen = 0;
        for (is_full, head) in [(false, g.partial), (true, g.full)] {
            let mut sp = head;
            let mut prev: *mut Slab = null_mut();
            // SAFETY: slab lock held; lists hold live slabs; free-list links are inside
            // this cache's buffers (checked before being followed).
            unsafe {
                while !sp.is_null() {
                    let s = &*sp;
                    if !s.owned_by(self.owner()) {
                        return Err(corrupt("slab of another cache", sp as usize));
                    }
                    if s.prev != prev {
                        return Err(corrupt("slab list back link", sp as usize));
                    }
                    if !self.source.contains(s.mem, self.slabsize()) {
                        return Err(corrupt("slab outside the source arena", s.mem));
                    }
                    if s.chunks == 0 || s.refcnt as usize > s.chunks {
                        return Err(corrupt("slab refcnt", sp as usize));
                    }
                    if s.base < s.mem
                        || s.base + s.chunks * self.chunksize > s.mem + self.slabsize()
                    {
                        return Err(corrupt("slab buffers outside slab", sp as usize));
                    }
                    if (s.base - s.mem) > self.maxcolor() || (s.base - s.mem) % self.align != 0 {
                        return Err(corrupt("slab colour", sp as usize));
                    }
                    let mut nfree = 0;
                    let mut f = s.head;
                    if self.free_map {
                        // The map: no bit at or past the chunk count, and the head says
                        // whether any bit is set.
                        let map = &*map_words(sp);
                        for (i, &w) in map.iter().enumerate() {
                            if w & !map_word_chunks(s.chunks, i) != 0 {
                                return Err(corrupt(
                                    "free map bit past the last chunk",
                                    sp as usize,
                                ));
                            }
                            nfree += w.count_ones() as usize;
                        }
                        if (s.head != 0) != (nfree != 0) {
                            return Err(corrupt("free map head", sp as usize));
                        }
                        f = 0;
                    }
                    while f != 0 {
                        if !self.hashed && f & FRESH != 0 {
                            // The fresh tail: every chunk from there to the end is free.
                            let first = f & !FRESH;
                            let end = s.base + s.chunks * self.chunksize;
                            if first < s.base
                                || first >= end
                                || (first - s.base) % self.chunksize != 0
                            {
                                return Err(corrupt("fresh tail not a chunk of its slab", first));
                            }
                            let mut buf = first;
                            while buf < end {
                                if self.buftag_off != 0 {
                                    let st = *((buf + self.buftag_off) as *const usize).add(2);
                                    if st != self.buftag_status(buf, BUFTAG_FREE) {
                                        return Err(corrupt("free buffer's buftag not free", buf));
                                    }
                                }
                                nfree += 1;
                                buf += self.chunksize;
                            }
                            if nfree > s.chunks {
                                return Err(corrupt("free list cycle", sp as usize));
                            }
                            break;
                        }
                        let buf = if self.hashed {
                            let bc = f as *const Bufctl;
                            if (*bc).slab != sp {
                                return Err(corrupt("free bufctl of another slab", f));
                            }
                            (*bc).addr
                        } else {
                            f
                        };
                        if buf < s.base
                            || buf >= s.base + s.chunks * self.chunksize
                            || (buf - s.base) % self.chunksize != 0
                        {
                            return Err(corrupt("free buffer not a chunk of its slab", buf));
                        }
                        if self.buftag_off != 0 {
                            let st = *((buf + self.buftag_off) as *const usize).add(2);
                            if st != self.buftag_status(buf, BUFTAG_FREE) {
                                return Err(corrupt("free buffer's buftag not free", buf));
                            }
                        }
                        nfree += 1;
                        if nfree > s.chunks {
                            return Err(corrupt("free list cycle", sp as usize));
                        }
                        f = if self.hashed {
                            (*(f as *const Bufctl)).next as usize
                        } else {
                            // Decoded; checked at the top of the loop before it is
                            // followed.
                            let at = f + self.link_off;
                            secret::decode(*(at as *const usize), at)
                        };
                    }
                    if nfree + s.refcnt as usize != s.chunks {
                        return Err(corrupt("free count + refcnt != chunks", sp as usize));
                    }
                    if is_full != (nfree == 0) {
                        return Err(corrupt("slab on the wrong list", sp as usize));
                    }
                    if s.refcnt == 0 {
                        return Err(corrupt("empty slab kept", sp as usize));
                    }
                    nslabs += 1;
                    buftotal += s.chunks;
                    bufalloc += s.refcnt as usize;
                    let claims = g.claimed.iter().filter(|&&c| c == sp).count();
                    if claims > 1 {
                        return Err(corrupt("slab claimed twice", sp as usize));
                    }
                    claims_seen += claims;
                    prev = sp;
                    sp = s.next;
                }
            }
        }
        if nslabs != g.nslabs || buftotal != g.buftotal || bufalloc != g.bufalloc {
            return Err(corrupt("slab counts", 0));
        }
        // Every claim is a listed slab of this cache (each listed slab counted its claims
        // above, and refused a second one).
        let claims = g.claimed.iter().filter(|c| !c.is_null()).count();
        if claims_seen != claims || (self.hashed && claims != 0) {
            return Err(corrupt("slab claim not a listed slab", 0));
        }
        if self.hashed {
            let mut n = 0;
            for h in 0..=g.hash_mask {
                // SAFETY: slab lock held; hash chains hold live bufctls.
                unsafe {
                    let mut bc = *g.hash.add(h);
                    while !bc.is_null() {
                        let a = (*bc).addr;
                        if (a >> self.hash_shift) & g.hash_mask != h {
                            return Err(corrupt("bufctl in the wrong bucket", a));
                        }
                        let sp = (*bc).slab;
                        if !(*sp).owned_by(self.owner())
                            || a < (*sp).base
                            || a >= (*sp).base + (*sp).chunks * self.chunksize
                        {
                            return Err(corrupt("hashed bufctl outside its slab", a));
                        }
                        n += 1;
                        if n > g.bufalloc {
                            return Err(corrupt("hash holds more than allocated", a));
                        }
                        bc = (*bc).next;
                    }
                }
            }
            if n != g.bufalloc {
                return Err(corrupt("hash count != allocated buffers", n));
            }
        }
        drop(g);
        let d = self.depot.0.lock();
        if !d.full.for_each(&mut |_| {}) || d.full.ws.min > d.full.ws.total {
            return Err(corrupt("depot full list totals", d.full.ws.total));
        }
        if !d.empty.for_each(&mut |_| {}) || d.empty.ws.min > d.empty.ws.total {
            return Err(corrupt("depot empty list totals", d.empty.ws.total));
        }
        // Every round of a full depot magazine is a buffer the slab layer counts as
        // allocated (depot lock, then slab lock: the documented order).
        let rounds = d.rounds();
        let g = self.slab.0.lock();
        let mut bad = None;
        d.full.for_each(&mut |m| {
            for i in 0..rounds {
                // SAFETY: depot magazines are live under the depot lock; slabs under the
                // slab lock. A small cache's round is looked up through its slab header
                // only after checking the header belongs to a slab on our lists.
                let buf = unsafe { *Magazine::round(m, i) };
                if bad.is_none() && !self.slab_holds_allocated(&g, buf) {
                    bad = Some(buf);
                }
            }
        });
        match bad {
            Some(buf) => Err(corrupt("depot round is not an allocated buffer", buf)),
            None => Ok(()),
        }
    }

    /// Is `buf` a buffer the slab layer has handed out (slab lock held)?
    pub(crate) fn slab_holds_allocated(&self, g: &SlabLayer, buf: usize) -> bool {
        // SAFETY: slab lock held by the caller; we only follow pointers of slabs found on
        // our own lists / in our own hash.
        unsafe {
            if self.hashed {
                let mut bc = *self.hash_bucket(g, buf);
                while !bc.is_null() {
                    if (*bc).addr == buf {
                        return true;
                    }
                    bc = (*bc).next;
                }
                return false;
            }
            let want = self.record_of(buf);
            for head in [g.partial, g.full] {
                let mut sp = head;
                while !sp.is_null() {
                    if sp == want {
                        let s = &*sp;
                        if buf < s.base
                            || buf >= s.base + s.chunks * self.chunksize
                            || (buf - s.base) % self.chunksize != 0
                        {
                            return false;
                        }
                        return !self.on_free_list(sp, buf);
                    }
                    sp = (*sp).next;
                }
            }
            false
        }
    }
}
