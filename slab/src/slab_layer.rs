//! The slab layer's algorithms (Bonwick 1994, sections 3 and 4): take a buffer from a
//! slab (making a slab from the source arena when none has a free buffer), give one back
//! (returning a slab to the arena as soon as it is wholly free), and keep the
//! allocated-buffer hash of hashed caches near the buffer count. The data structures are
//! in `slab.rs`.

use core::mem::size_of;
use core::ptr::{self, null_mut};
use core::sync::atomic::Ordering;

use crate::cache::Cache;
use crate::debug::{fill, BUFTAG_FREE, FREE_PATTERN, REDZONE_PATTERN};
use crate::diag::fatal_error;
use crate::error::SlabError;
use crate::metadata::{arena_alloc, arena_free, arenas};
use crate::percpu::GROUPS;
use crate::registry::internal_caches;
use crate::secret;
use crate::slab::{
    init_map, list_push, list_remove, map_has_free, map_set, map_test, map_words, Bufctl,
    BufctlAudit, BufferLookup, Slab, SlabLayer, FRESH, HASH_INITIAL, MAP_CHUNK,
};

impl Cache {
    /// Quantum caches: slab size = next power of two above 3 × the arena's `qcache_max`
    /// (so slab allocations bypass the qcaches), at least 64 and a quantum multiple.
    /// Called under the slab lock before the first slab is made.
    pub(crate) fn qcache_geometry(&self) {
        let q = self.source.quantum();
        let qmax = self.source.qcache_max().max(self.bufsize);
        let want = 1usize
            .checked_shl(highbit(3 * qmax))
            .unwrap_or(usize::MAX / 2 + 1);
        let slabsize = want.max(64).max(q).next_multiple_of(q);
        self.maxcolor_.store(
            (slabsize % self.chunksize).min(q.saturating_sub(1)),
            Ordering::Relaxed,
        );
        self.slabsize_.store(slabsize, Ordering::Relaxed);
    }

    /// The hash bucket of buffer `addr` (slab lock held: `s`).
    #[inline]
    pub(crate) fn hash_bucket(&self, s: &SlabLayer, addr: usize) -> *mut *mut Bufctl {
        s.hash_bucket(self.hash_shift, addr)
    }

    // CPU claims.
    //
    // Two threads on two CPUs that take a small cache's buffers from one slab get
    // neighbours: chunks of 8 to 48 bytes, several to a 64-byte line, and each line they
    // share moves between the two cores on every write either makes (false sharing). The
    // depot's full lists already hand a CPU back the buffers it freed (`depot.rs`), so
    // what mixes them is where the buffers first come from. So each CPU group (its number
    // modulo `percpu::GROUPS`; per-thread mode: the thread, `percpu::group_hint`) *claims* a slab
    // of an in-slab cache and takes its refills from that slab while it has a free
    // buffer; then from the first partial slab that no other group claims, else a fresh
    // one (`SlabLayer::claim_for`). A group's buffers then share lines only with its own,
    // and in per-CPU mode the threads of one CPU never run at once.
    //
    // Measured on glibc's bench-malloc-thread (two threads replacing random blocks of
    // 4 B to 32 KiB in 1024 slots each; docs/performance.md): before the claims, 300-850 of
    // the 2,010 live blocks shared a line with the other thread's, and the run managed
    // 80-170 M iterations against mimalloc's 200 M; with them, 183-203 M. Hashed caches
    // (large chunks, a line or more each) keep a single order: claims there would only
    // hold more partial slabs.

    /// Take a raw (unconstructed) buffer from the slab layer.
    pub(crate) fn slab_alloc(&self) -> Option<usize> {
        let mut buf = 0;
        (self.slab_alloc_batch(core::slice::from_mut(&mut buf)) == 1).then_some(buf)
    }

    /// Up to `out.len()` raw buffers from the slab layer, making slabs as needed, a slab's
    /// worth per lock round trip; returns how many were taken (fewer only when the
    /// source arena is out of memory). The batch refill of `miss.rs` uses it.
    pub(crate) fn slab_alloc_batch(&self, out: &mut [usize]) -> usize {
        // An in-slab cache takes from the slab of the calling CPU's group ("CPU claims").
        let group = (!self.hashed).then(|| crate::percpu::group_hint() % GROUPS);
        let mut g = self.slab.0.lock();
        let mut n = 0;
        let mut rescale = false;
        while n < out.len() {
            let mut sp = match group {
                Some(c) => g.claim_for(c),
                None => g.partial,
            };
            if sp.is_null() {
                if self.slabsize() == 0 {
                    self.qcache_geometry();
                }
                let mut color = g.color + self.align;
                if color > self.maxcolor() {
                    color = 0;
                }
                g.color = color;
                drop(g);
                let made = self.slab_create(color);
                g = self.slab.0.lock();
                let Some(fresh) = made else {
                    break;
                };
                sp = fresh;
                g.slab_create += 1;
                g.nslabs += 1;
                // SAFETY: fresh slab.
                g.buftotal += unsafe { (*sp).chunks };
                list_push(&mut g.partial, sp);
                if let Some(c) = group {
                    // SAFETY: a fresh slab, on the partial list, claimed by nobody.
                    unsafe { g.claim(c, sp) };
                }
                rescale |= self.hashed && g.buftotal > 2 * (g.hash_mask + 1);
            }
            // SAFETY: slab lock held (`g`); sp is on the partial list.
            let k = unsafe { self.take_run(&mut g, sp, &mut out[n..]) };
            // Counted before the lock is next let go (`verify` sums the slabs' counts).
            g.slab_alloc += k as u64;
            g.bufalloc += k;
            n += k;
        }
        drop(g);
        if rescale {
            self.hash_rescale();
        }
        n
    }

    /// Takes up to `out.len()` (at least one) free buffers of slab `sp` into `out` and
    /// returns how many, moving the slab to the full list when they were its last; the
    /// slab-layer counters are the caller's. Stops at the end of the linked part of the
    /// free list, so a fresh tail is taken as a run of addresses in a later call.
    ///
    /// # Safety
    /// The slab lock is held (`g` is its data) and `sp` is on `g`'s partial list.
    #[inline(always)]
    unsafe fn take_run(&self, g: &mut SlabLayer, sp: *mut Slab, out: &mut [usize]) -> usize {
        // SAFETY: by the caller: the lock is held and sp is partial, so it has a free
        // buffer; in-slab chunks are this cache's touchable memory.
        unsafe {
            let mut n = 0;
            if self.hashed {
                while n < out.len() && (*sp).head != 0 {
                    let bc = (*sp).head as *mut Bufctl;
                    (*sp).head = (*bc).next as usize;
                    let buf = (*bc).addr;
                    let b = self.hash_bucket(g, buf);
                    (*bc).next = *b;
                    *b = bc;
                    out[n] = buf;
                    n += 1;
                }
            } else {
                if !(*sp).owned_by(self.owner()) {
                    fatal_error(&SlabError::CorruptSlab {
                        what: "corrupt slab record (owner tag)",
                        slab: sp as usize,
                        value: (*sp).raw_tag(),
                        cache: self.name,
                    });
                }
                let mut head = (*sp).head;
                if self.free_map {
                    n = self.take_from_map(sp, out);
                    head = usize::from(map_has_free(sp));
                } else if head & FRESH == 0 {
                    // Linked buffers, each link decoded and checked before it is followed.
                    while n < out.len() && head != 0 && head & FRESH == 0 {
                        let at = head + self.link_off;
                        out[n] = head;
                        head = self.next_free(sp, at);
                        // The encoded link is not left for the new owner to read.
                        *(at as *mut usize) = 0;
                        n += 1;
                    }
                } else {
                    // The fresh tail: consecutive chunks up to the slab's end.
                    let first = head & !FRESH;
                    let end = (*sp).base + (*sp).chunks * self.chunksize;
                    let k = ((end - first) / self.chunksize).min(out.len());
                    for (i, o) in out[..k].iter_mut().enumerate() {
                        let buf = first + i * self.chunksize;
                        // Never linked, but the memory may hold an older slab's links:
                        // none reaches the new owner either.
                        *((buf + self.link_off) as *mut usize) = 0;
                        *o = buf;
                    }
                    let next = first + k * self.chunksize;
                    head = if next < end { next | FRESH } else { 0 };
                    n = k;
                }
                (*sp).head = head;
            }
            (*sp).refcnt += n as u32;
            if (*sp).head == 0 {
                list_remove(&mut g.partial, sp);
                list_push(&mut g.full, sp);
            }
            n
        }
    }

    /// [`Cache::take_run`] for a free-map slab: up to `out.len()` of its free chunks, in
    /// address order (the lowest set bits of its map, cleared), and how many.
    ///
    /// # Safety
    /// The slab lock is held and `sp` is a live, owner-checked slab of this free-map cache.
    #[inline(always)]
    unsafe fn take_from_map(&self, sp: *mut Slab, out: &mut [usize]) -> usize {
        // SAFETY: by the caller, the map's words follow the live record.
        unsafe {
            let base = (*sp).base;
            let map = map_words(sp);
            let mut n = 0;
            for (i, w) in (*map).iter_mut().enumerate() {
                let mut bits = *w;
                while bits != 0 && n < out.len() {
                    let k = i * 64 + bits.trailing_zeros() as usize;
                    out[n] = base + k * MAP_CHUNK;
                    n += 1;
                    bits &= bits - 1;
                }
                *w = bits;
                if n == out.len() {
                    break;
                }
            }
            n
        }
    }

    /// The alignment slabs are taken from the source with: their size for in-page slabs
    /// made by `xalloc` (so a chunk start follows from the address), the buffer
    /// alignment for hashed ones, else none beyond the arena's quantum.
    fn slab_align(&self) -> usize {
        match (self.slab_xalloc, self.hashed) {
            // FREE_KEY: aligned so that buffer starts follow from the address (`grid`).
            (true, true) if self.free_key => self.slabsize().next_power_of_two(),
            (true, true) => self.align,
            (true, false) => self.slabsize(),
            (false, _) => 1,
        }
    }

    /// The internal cache this cache's external bufctls come from.
    fn bufctl_cache(&self) -> &'static Cache {
        let g = internal_caches();
        if self.audit {
            g.audit_bufctls
        } else {
            g.bufctls
        }
    }

    pub(crate) fn slab_create(&self, color: usize) -> Option<*mut Slab> {
        let slab_align = self.slab_align();
        let mem = arena_alloc(self.source, self.slabsize(), slab_align)?;
        if !self.hashed {
            let sp = self.record_of(mem);
            let base = mem + color;
            let chunks = (self.slabsize() - self.slab_hdr - color) / self.chunksize;
            // FREE_KEY caches: a never-allocated chunk reads as free (its first word, when
            // that is not the link word, holds the free key; debug caches have their fill).
            let key =
                if self.free_key && self.buftag_off == 0 && (self.link_off != 0 || self.free_map) {
                    crate::flags::FREE_KEY_WORD
                } else {
                    0
                };
            // SAFETY: the slab memory is ours and writable (touchable cache); buffers and
            // header are inside it. The free list is one fresh tail: no links are written.
            unsafe {
                if self.buftag_off != 0 {
                    for i in 0..chunks {
                        let buf = base + i * self.chunksize;
                        fill(buf, self.buftag_off, FREE_PATTERN);
                        let bt = (buf + self.buftag_off) as *mut usize;
                        *(bt as *mut u64) = REDZONE_PATTERN;
                        *bt.add(2) = self.buftag_status(buf, BUFTAG_FREE);
                    }
                } else if key != 0 {
                    // The one store per chunk a new slab costs (issue 15's growth path).
                    let mut buf = base;
                    for _ in 0..chunks {
                        *(buf as *mut usize) = key;
                        buf += self.chunksize;
                    }
                }
                let head = if self.free_map {
                    init_map(sp, chunks);
                    1
                } else {
                    base | FRESH
                };
                ptr::write(sp, Slab::fresh(sp, self.owner(), mem, base, head, chunks));
            }
            self.announce_slab(mem, true);
            return Some(sp);
        }
        let g = internal_caches();
        let sp = match g.slabs.alloc_addr() {
            Some(s) => s as *mut Slab,
            None => {
                arena_free(self.source, mem, self.slabsize(), slab_align);
                return None;
            }
        };
        let base = mem + color;
        let chunks = (self.slabsize() - color) / self.chunksize;
        let bcc = self.bufctl_cache();
        let mut head: *mut Bufctl = null_mut();
        // FREE_KEY caches: never-allocated buffers read as free (as above).
        let key = if self.free_key && self.buftag_off == 0 {
            crate::flags::FREE_KEY_WORD
        } else {
            0
        };
        for i in (0..chunks).rev() {
            let bc = match bcc.alloc_addr() {
                Some(b) => b as *mut Bufctl,
                None => {
                    // SAFETY: the bufctls on `head` and the slab struct are ours.
                    unsafe {
                        free_bufctl_chain(bcc, head);
                        g.slabs.free_addr(sp as usize);
                    }
                    arena_free(self.source, mem, self.slabsize(), slab_align);
                    return None;
                }
            };
            let buf = base + i * self.chunksize;
            if key != 0 {
                // SAFETY: a FREE_KEY cache is touchable (not NOTOUCH): the buffer is
                // ours and free.
                unsafe { *(buf as *mut usize) = key };
            }
            // SAFETY: fresh bufctl.
            unsafe {
                ptr::write(
                    bc,
                    Bufctl {
                        next: head,
                        addr: buf,
                        slab: sp,
                    },
                )
            };
            head = bc;
            if self.audit {
                // SAFETY: audit bufctls come from the audit bufctl cache (BufctlAudit-sized).
                unsafe {
                    let ba = bc as *mut BufctlAudit;
                    ptr::addr_of_mut!((*ba).cache).write(self.owner());
                    ptr::addr_of_mut!((*ba).thread).write(0);
                    ptr::addr_of_mut!((*ba).timestamp).write(0);
                    ptr::addr_of_mut!((*ba).txn).write(0);
                    ptr::addr_of_mut!((*ba).allocated).write(false);
                    ptr::addr_of_mut!((*ba).depth).write([0; 2]);
                    ptr::addr_of_mut!((*ba).event_thread).write([0; 2]);
                    ptr::addr_of_mut!((*ba).event_time).write([0; 2]);
                    ptr::addr_of_mut!((*ba).stack_hash).write(0);
                }
            }
            if self.buftag_off != 0 {
                // SAFETY: touchable hashed debug cache: the buffer is ours. The buftag's
                // middle word holds the bufctl (the free list is external here).
                unsafe {
                    fill(buf, self.buftag_off, FREE_PATTERN);
                    let bt = (buf + self.buftag_off) as *mut usize;
                    *(bt as *mut u64) = REDZONE_PATTERN;
                    *bt.add(1) = bc as usize;
                    *bt.add(2) = self.buftag_status(buf, BUFTAG_FREE);
                }
            }
        }
        // SAFETY: fresh slab struct.
        unsafe {
            ptr::write(
                sp,
                Slab::fresh(sp, self.owner(), mem, base, head as usize, chunks),
            )
        };
        self.announce_slab(mem, true);
        Some(sp)
    }

    /// Give an empty slab (already off the lists) back to the source arena.
    pub(crate) fn slab_destroy(&self, sp: *mut Slab) {
        let slab_align = self.slab_align();
        // SAFETY: the slab is empty and unreachable from the cache.
        let mem = unsafe { (*sp).mem };
        if self.hashed {
            let g = internal_caches();
            // SAFETY: every bufctl of an empty slab is on its free list.
            unsafe {
                free_bufctl_chain(self.bufctl_cache(), (*sp).head as *mut Bufctl);
                g.slabs.free_addr(sp as usize);
            }
        }
        self.announce_slab(mem, false);
        arena_free(self.source, mem, self.slabsize(), slab_align);
    }

    /// Free a raw buffer known to be allocated from this cache's slab layer; aborts with a
    /// message when a hashed cache does not know the address.
    pub(crate) fn slab_free_trusted(&self, buf: usize) {
        if let Err(e) = self.slab_free(buf) {
            fatal_error(&e);
        }
    }

    pub(crate) fn slab_free(&self, buf: usize) -> Result<(), SlabError> {
        let mut g = self.slab.0.lock();
        // SAFETY: the slab lock is held (`g`).
        let r = unsafe { self.slab_free_locked(&mut g, buf) };
        drop(g);
        if let Some(sp) = r? {
            self.slab_destroy(sp);
        }
        Ok(())
    }

    /// Frees `bufs` (buffers known to be allocated from this cache's slab layer) under one
    /// taking of the slab lock, released only to destroy a slab they empty; aborts as
    /// [`Cache::slab_free_trusted`] does.
    pub(crate) fn slab_free_batch_trusted(&self, bufs: &[usize]) {
        let mut g = self.slab.0.lock();
        for &buf in bufs {
            // SAFETY: the slab lock is held (`g`).
            match unsafe { self.slab_free_locked(&mut g, buf) } {
                Ok(None) => {}
                Ok(Some(sp)) => {
                    drop(g);
                    self.slab_destroy(sp);
                    g = self.slab.0.lock();
                }
                Err(e) => {
                    drop(g);
                    fatal_error(&e);
                }
            }
        }
    }

    /// [`Cache::slab_free`] under the slab lock (`g` is its data): the buffer back on its
    /// slab, and the slab, when that emptied it, off every list and counted destroyed, for
    /// the caller to give back ([`Cache::slab_destroy`]) once it has dropped the lock.
    ///
    /// # Safety
    /// The slab lock is held and `g` is its data.
    unsafe fn slab_free_locked(
        &self,
        g: &mut SlabLayer,
        buf: usize,
    ) -> Result<Option<*mut Slab>, SlabError> {
        let sp;
        // SAFETY: slab lock held. For small caches the buffer is trusted to be ours (the
        // header sits at the end of its slab); hashed caches check the hash.
        unsafe {
            if self.hashed {
                let mut pp = self.hash_bucket(g, buf);
                let mut depth = 0;
                loop {
                    let bc = *pp;
                    if bc.is_null() {
                        g.lookup_depth += depth;
                        return Err(SlabError::NotOwned {
                            addr: buf,
                            cache: self.name,
                        });
                    }
                    if (*bc).addr == buf {
                        *pp = (*bc).next;
                        sp = (*bc).slab;
                        if (*sp).head == 0 {
                            list_remove(&mut g.full, sp);
                            list_push(&mut g.partial, sp);
                        }
                        (*bc).next = (*sp).head as *mut Bufctl;
                        (*sp).head = bc as usize;
                        break;
                    }
                    depth += 1;
                    pp = &mut (*bc).next;
                }
                g.lookup_depth += depth;
            } else {
                sp = self.record_of(buf);
                if !(*sp).owned_by(self.owner()) {
                    return Err(SlabError::NotOwned {
                        addr: buf,
                        cache: self.name,
                    });
                }
                if !self.is_chunk_of(&*sp, buf) {
                    let s = &*sp;
                    let i = (buf.saturating_sub(s.base) / self.chunksize).min(s.chunks - 1);
                    return Err(SlabError::BadAddress {
                        addr: buf,
                        buffer: s.base + i * self.chunksize,
                        cache: self.name,
                    });
                }
                if self.free_map && !map_set(sp, (buf - (*sp).base) / MAP_CHUNK) {
                    return Err(SlabError::DoubleFree {
                        addr: buf,
                        cache: self.name,
                    });
                }
                if (*sp).head == 0 {
                    list_remove(&mut g.full, sp);
                    list_push(&mut g.partial, sp);
                }
                if self.free_map {
                    (*sp).head = 1;
                } else {
                    let at = buf + self.link_off;
                    *(at as *mut usize) = secret::encode((*sp).head, at);
                    (*sp).head = buf;
                }
            }
            (*sp).refcnt -= 1;
            g.bufalloc -= 1;
            g.slab_free += 1;
            if (*sp).refcnt == 0 {
                list_remove(&mut g.partial, sp);
                g.unclaim(sp);
                g.nslabs -= 1;
                g.buftotal -= (*sp).chunks;
                g.slab_destroy += 1;
                return Ok(Some(sp));
            }
        }
        Ok(None)
    }

    /// Whether `a` is the start of one of slab `s`'s chunks (no division: `ChunkDivisor`).
    #[inline(always)]
    pub(crate) fn is_chunk_of(&self, s: &Slab, a: usize) -> bool {
        let off = a.wrapping_sub(s.base);
        off < s.chunks * self.chunksize && self.chunk_div.divides(off)
    }

    /// Whether chunk `addr` of in-slab slab `sp` is free: on its linked free list or in
    /// its fresh tail (every chunk from the tail's first on). Walks the list, checking
    /// each link as [`Cache::next_free`] does.
    ///
    /// # Safety
    /// Slab lock held; `sp` is a live in-slab slab of this cache and `addr` one of its
    /// chunk starts.
    pub(crate) unsafe fn on_free_list(&self, sp: *const Slab, addr: usize) -> bool {
        if self.free_map {
            // SAFETY: by the caller (a live in-slab slab of a free-map cache).
            return unsafe { map_test(sp, (addr - (*sp).base) / MAP_CHUNK) };
        }
        // SAFETY: by the caller; every link is checked before it is followed.
        unsafe {
            let mut f = (*sp).head;
            while f != 0 {
                if f & FRESH != 0 {
                    return addr >= f & !FRESH;
                }
                if f == addr {
                    return true;
                }
                f = self.next_free(sp, f + self.link_off);
            }
        }
        false
    }

    /// The free buffer after the one whose (encoded) link word is at `at`, in in-slab slab
    /// `sp`: the link decoded and checked — 0, or a chunk start of `sp` — before anyone
    /// follows it. A bad link (a heap overflow or a write after free reached a free
    /// chunk) aborts with a message naming the slab, the cache and the word found.
    ///
    /// # Safety
    /// Slab lock held; `sp` is a live in-slab slab of this cache and `at` the link word of
    /// one of its free chunks.
    #[inline(always)]
    pub(crate) unsafe fn next_free(&self, sp: *const Slab, at: usize) -> usize {
        // SAFETY: by the caller, `at` is inside a free chunk of the live slab `sp`.
        let (stored, s) = unsafe { (*(at as *const usize), &*sp) };
        let next = secret::decode(stored, at);
        if next == 0 || self.is_chunk_of(s, next & !FRESH) {
            return next;
        }
        fatal_error(&SlabError::CorruptSlab {
            what: "corrupt free-list link",
            slab: sp as usize,
            value: stored,
            cache: self.name,
        })
    }

    /// Resize the hash table to about the number of buffers.
    pub(crate) fn hash_rescale(&self) {
        let (old_size, buftotal) = {
            let g = self.slab.0.lock();
            if !self.hashed {
                return;
            }
            (g.hash_mask + 1, g.buftotal)
        };
        let new_size = HASH_INITIAL.max(1usize << (highbit(3 * buftotal + 4) - 2));
        if old_size / 2 <= new_size && new_size <= old_size * 2 {
            return;
        }
        let ha = arenas().hash_arena;
        let Some(t) = arena_alloc(ha, new_size * size_of::<usize>(), 8) else {
            return;
        };
        let new = t as *mut *mut Bufctl;
        // SAFETY: fresh table.
        unsafe { ptr::write_bytes(new, 0, new_size) };
        let mut g = self.slab.0.lock();
        let old = g.hash;
        let old_size = g.hash_mask + 1;
        g.hash = new;
        g.hash_mask = new_size - 1;
        g.rescale += 1;
        // SAFETY: slab lock held; move every bufctl to its new bucket.
        unsafe {
            for h in 0..old_size {
                let mut bc = *old.add(h);
                while !bc.is_null() {
                    let n = (*bc).next;
                    let b = self.hash_bucket(&g, (*bc).addr);
                    (*bc).next = *b;
                    *b = bc;
                    bc = n;
                }
            }
        }
        drop(g);
        arena_free(ha, old as usize, old_size * size_of::<usize>(), 8);
    }

    /// Find `addr` among this cache's slabs (linear walk; checked path only).
    pub(crate) fn locate(&self, addr: usize) -> BufferLookup {
        let g = self.slab.0.lock();
        for head in [g.partial, g.full] {
            let mut sp = head;
            // SAFETY: slab lock held; slabs on the lists are live.
            unsafe {
                while !sp.is_null() {
                    let s = &*sp;
                    if addr >= s.mem && addr < s.mem + self.slabsize() {
                        if addr < s.base || (addr - s.base) / self.chunksize >= s.chunks {
                            return BufferLookup::Interior(s.base);
                        }
                        let start = s.base + (addr - s.base) / self.chunksize * self.chunksize;
                        if start != addr {
                            return BufferLookup::Interior(start);
                        }
                        // On the slab's free list?
                        if self.hashed {
                            let mut bc = s.head as *const Bufctl;
                            while !bc.is_null() {
                                if (*bc).addr == addr {
                                    return BufferLookup::Free;
                                }
                                bc = (*bc).next;
                            }
                        } else if self.on_free_list(sp, addr) {
                            return BufferLookup::Free;
                        }
                        return BufferLookup::Allocated;
                    }
                    sp = s.next;
                }
            }
        }
        BufferLookup::NotInCache
    }
}

/// `1 + floor(log2(x))` for `x > 0`, 0 for 0 (libumem's `highbit`).
pub(crate) fn highbit(x: usize) -> u32 {
    usize::BITS - x.leading_zeros()
}

/// Give a chain of bufctls (linked through `next`) back to their cache `bcc`.
///
/// # Safety
/// Every bufctl on the chain came from `bcc`, is unused, and nothing else refers to it.
unsafe fn free_bufctl_chain(bcc: &Cache, mut bc: *mut Bufctl) {
    while !bc.is_null() {
        // SAFETY: by the caller, `bc` is a live bufctl of `bcc`.
        unsafe {
            let n = (*bc).next;
            bcc.free_addr(bc as usize);
            bc = n;
        }
    }
}
