//! The slab layer: slabs, in-slab free lists, external bufctls and the allocated-buffer
//! hash (Bonwick 1994, sections 3 and 4).

use super::*;

// ---------------------------------------------------------------------------------------
// Slab layer.

#[inline]
pub(super) fn list_remove(head: &mut *mut Slab, sp: *mut Slab) {
    // SAFETY: sp is on the list headed by `head` (slab lock held by the caller).
    unsafe {
        if (*sp).prev.is_null() {
            *head = (*sp).next;
        } else {
            (*(*sp).prev).next = (*sp).next;
        }
        if !(*sp).next.is_null() {
            (*(*sp).next).prev = (*sp).prev;
        }
        (*sp).next = null_mut();
        (*sp).prev = null_mut();
    }
}

#[inline]
pub(super) fn list_push(head: &mut *mut Slab, sp: *mut Slab) {
    // SAFETY: sp is a live slab on no list (slab lock held by the caller).
    unsafe {
        (*sp).prev = null_mut();
        (*sp).next = *head;
        if !head.is_null() {
            (**head).prev = sp;
        }
    }
    *head = sp;
}

impl Cache {
    #[inline(always)]
    pub(super) fn slabsize(&self) -> usize {
        self.slabsize_.load(Ordering::Relaxed)
    }

    #[inline(always)]
    pub(super) fn maxcolor(&self) -> usize {
        self.maxcolor_.load(Ordering::Relaxed)
    }

    /// Quantum caches: slab size = next power of two above 3 × the arena's `qcache_max`
    /// (so slab allocations bypass the qcaches), at least 64 and a quantum multiple.
    /// Called under the slab lock before the first slab is made.
    pub(super) fn qcache_geometry(&self) {
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

    #[inline]
    pub(super) fn hash_bucket(&self, s: &SlabLayer, addr: usize) -> *mut *mut Bufctl {
        // SAFETY: the table has hash_mask + 1 buckets.
        unsafe { s.hash.add((addr >> self.hash_shift) & s.hash_mask) }
    }

    /// Take a raw (unconstructed) buffer from the slab layer.
    pub(super) fn slab_alloc(&self) -> Option<usize> {
        let mut g = self.slab.0.lock();
        g.slab_alloc += 1;
        let mut rescale = false;
        let mut sp = g.partial;
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
            sp = self.slab_create(color)?;
            g = self.slab.0.lock();
            g.slab_create += 1;
            g.nslabs += 1;
            // SAFETY: fresh slab.
            g.buftotal += unsafe { (*sp).chunks };
            list_push(&mut g.partial, sp);
            rescale = self.hashed && g.buftotal > 2 * (g.hash_mask + 1);
        }
        // SAFETY: slab lock held; sp is on the partial list so it has a free buffer.
        let buf = unsafe {
            let buf;
            if self.hashed {
                let bc = (*sp).head as *mut Bufctl;
                (*sp).head = (*bc).next as usize;
                buf = (*bc).addr;
                let b = self.hash_bucket(&g, buf);
                (*bc).next = *b;
                *b = bc;
            } else {
                buf = (*sp).head;
                (*sp).head = *((buf + self.link_off) as *const usize);
            }
            (*sp).refcnt += 1;
            if (*sp).head == 0 {
                list_remove(&mut g.partial, sp);
                list_push(&mut g.full, sp);
            }
            buf
        };
        g.bufalloc += 1;
        drop(g);
        if rescale {
            self.hash_rescale();
        }
        Some(buf)
    }

    pub(super) fn slab_create(&self, color: usize) -> Option<*mut Slab> {
        let slab_align = if self.slab_xalloc {
            if self.hashed {
                self.align
            } else {
                self.slabsize()
            }
        } else {
            1
        };
        let mem = arena_alloc(self.source, self.slabsize(), slab_align)?;
        if !self.hashed {
            let sp = (mem + self.slabsize() - SLAB_HDR) as *mut Slab;
            let base = mem + color;
            let chunks = (self.slabsize() - SLAB_HDR - color) / self.chunksize;
            // SAFETY: the slab memory is ours and writable (touchable cache); buffers and
            // header are inside it.
            unsafe {
                for i in 0..chunks {
                    let buf = base + i * self.chunksize;
                    let next = if i + 1 < chunks {
                        buf + self.chunksize
                    } else {
                        0
                    };
                    if self.buftag_off != 0 {
                        fill(buf, self.buftag_off, FREE_PATTERN);
                        let bt = (buf + self.buftag_off) as *mut usize;
                        *(bt as *mut u64) = REDZONE_PATTERN;
                        *bt.add(2) = self.bx(buf, BUFTAG_FREE);
                    }
                    *((buf + self.link_off) as *mut usize) = next;
                }
                ptr::write(sp, Slab::fresh(self, mem, base, base, chunks));
            }
            return Some(sp);
        }
        let g = globals();
        let sp = match g.slab_cache.alloc_addr() {
            Some(s) => s as *mut Slab,
            None => {
                arena_free(self.source, mem, self.slabsize(), slab_align);
                return None;
            }
        };
        let base = mem + color;
        let chunks = (self.slabsize() - color) / self.chunksize;
        let bcc = if self.audit {
            g.bufctl_audit_cache
        } else {
            g.bufctl_cache
        };
        let mut head: *mut Bufctl = null_mut();
        for i in (0..chunks).rev() {
            let bc = match bcc.alloc_addr() {
                Some(b) => b as *mut Bufctl,
                None => {
                    // SAFETY: the bufctls on `head` and the slab struct are ours.
                    unsafe {
                        while !head.is_null() {
                            let n = (*head).next;
                            bcc.free_addr(head as usize);
                            head = n;
                        }
                        g.slab_cache.free_addr(sp as usize);
                    }
                    arena_free(self.source, mem, self.slabsize(), slab_align);
                    return None;
                }
            };
            let buf = base + i * self.chunksize;
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
                    ptr::addr_of_mut!((*ba).cache).write(self);
                    ptr::addr_of_mut!((*ba).thread).write(0);
                    ptr::addr_of_mut!((*ba).timestamp).write(0);
                    ptr::addr_of_mut!((*ba).txn).write(0);
                    ptr::addr_of_mut!((*ba).allocated).write(false);
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
                    *bt.add(2) = self.bx(buf, BUFTAG_FREE);
                }
            }
        }
        // SAFETY: fresh slab struct.
        unsafe { ptr::write(sp, Slab::fresh(self, mem, base, head as usize, chunks)) };
        Some(sp)
    }

    /// Give an empty slab (already off the lists) back to the source arena.
    pub(super) fn slab_destroy(&self, sp: *mut Slab) {
        let slab_align = if self.slab_xalloc {
            if self.hashed {
                self.align
            } else {
                self.slabsize()
            }
        } else {
            1
        };
        // SAFETY: the slab is empty and unreachable from the cache.
        let mem = unsafe { (*sp).mem };
        if self.hashed {
            let g = globals();
            // SAFETY: every bufctl of an empty slab is on its free list.
            unsafe {
                let bcc = if self.audit {
                    g.bufctl_audit_cache
                } else {
                    g.bufctl_cache
                };
                let mut bc = (*sp).head as *mut Bufctl;
                while !bc.is_null() {
                    let n = (*bc).next;
                    bcc.free_addr(bc as usize);
                    bc = n;
                }
                g.slab_cache.free_addr(sp as usize);
            }
        }
        arena_free(self.source, mem, self.slabsize(), slab_align);
    }

    /// Free a raw buffer known to be allocated from this cache's slab layer; aborts with a
    /// message when a hashed cache does not know the address.
    pub(super) fn slab_free_trusted(&self, buf: usize) {
        if let Err(e) = self.slab_free(buf) {
            crate::fatal_error(&e);
        }
    }

    pub(super) fn slab_free(&self, buf: usize) -> Result<(), SlabError> {
        let mut g = self.slab.0.lock();
        let sp;
        // SAFETY: slab lock held. For small caches the buffer is trusted to be ours (the
        // header sits at the end of its slab); hashed caches check the hash.
        unsafe {
            if self.hashed {
                let mut pp = self.hash_bucket(&g, buf);
                let mut depth = 0;
                loop {
                    let bc = *pp;
                    if bc.is_null() {
                        g.lookup_depth += depth;
                        drop(g);
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
                sp = ((buf & !(self.slabsize() - 1)) + self.slabsize() - SLAB_HDR) as *mut Slab;
                if !ptr::eq((*sp).cache, self) {
                    drop(g);
                    return Err(SlabError::NotOwned {
                        addr: buf,
                        cache: self.name,
                    });
                }
                if (*sp).head == 0 {
                    list_remove(&mut g.full, sp);
                    list_push(&mut g.partial, sp);
                }
                *((buf + self.link_off) as *mut usize) = (*sp).head;
                (*sp).head = buf;
            }
            (*sp).refcnt -= 1;
            g.bufalloc -= 1;
            g.slab_free += 1;
            if (*sp).refcnt == 0 {
                list_remove(&mut g.partial, sp);
                g.nslabs -= 1;
                g.buftotal -= (*sp).chunks;
                g.slab_destroy += 1;
                drop(g);
                self.slab_destroy(sp);
            }
        }
        Ok(())
    }

    /// Resize the hash table to about the number of buffers.
    pub(super) fn hash_rescale(&self) {
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
        let ha = globals().hash_arena;
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
}

/// # Safety
/// `[buf, buf+len)` is writable and 8-aligned; `len` a multiple of 8.
pub(super) unsafe fn fill(buf: usize, len: usize, pat: u64) {
    let p = buf as *mut u64;
    for i in 0..len / 8 {
        // SAFETY: by the caller.
        unsafe { *p.add(i) = pat };
    }
}
