//! Checking every buffer of a debug cache (mdb's `::umem_verify` for one cache): each
//! chunk of each slab has a buftag that says allocated or free; an allocated buffer's
//! redzone is intact up to the size asked for; a free buffer still holds its
//! `0xdeadbeef` fill (up to `maxverify` bytes; not under `lite`).
//!
//! The walk holds the cache's slab lock, so slabs do not come and go under it, but
//! buffers in magazines and in use keep changing: run it while the program is quiet
//! (at exit, or from a thread that knows the others are waiting), as mdb runs on a
//! stopped process, or a buffer caught halfway through its free can be reported.

use crate::cache::Cache;
use crate::debug::{BUFTAG_ALLOC, BUFTAG_FREE, FREE_PATTERN};
use crate::error::SlabError;
use crate::slab::Slab;

impl Cache {
    /// Checks every buffer of this debug cache (see the module documentation) and calls
    /// `bad` with each problem found; returns how many buffers were checked. A cache
    /// without debugging has nothing to check (0).
    pub fn verify_buffers(&self, bad: &mut dyn FnMut(&SlabError)) -> usize {
        if self.buftag_off == 0 {
            return 0;
        }
        let off = self.buftag_off;
        let lite = crate::redzone::lite();
        let vlen = crate::redzone::verify_len(off);
        let g = self.slab.0.lock();
        let mut checked = 0;
        for head in [g.partial, g.full] {
            let mut sp: *mut Slab = head;
            // SAFETY: slab lock held: the lists hold live slabs of this cache (checked by
            // their owner tag before use), whose chunks are touchable memory.
            unsafe {
                while !sp.is_null() {
                    let s = &*sp;
                    if !s.owned_by(self.owner()) {
                        bad(&SlabError::Corrupt {
                            what: "slab of another cache",
                            addr: sp as usize,
                            cache: self.name,
                        });
                        break;
                    }
                    for i in 0..s.chunks {
                        let buf = s.base + i * self.chunksize;
                        let st = *((buf + off) as *const usize).add(2);
                        checked += 1;
                        if st == self.buftag_status(buf, BUFTAG_ALLOC) {
                            if let Err(e) = self.check_redzone(buf) {
                                bad(&e);
                            }
                        } else if st == self.buftag_status(buf, BUFTAG_FREE) {
                            if lite {
                                continue;
                            }
                            let p = buf as *const u64;
                            for w in 0..vlen / 8 {
                                let v = *p.add(w);
                                if v != FREE_PATTERN {
                                    bad(&SlabError::ModifiedAfterFree {
                                        addr: buf,
                                        offset: w * 8,
                                        found: v,
                                        cache: self.name,
                                    });
                                    break;
                                }
                            }
                        } else {
                            bad(&SlabError::Redzone {
                                addr: buf,
                                cache: self.name,
                                found: st as u64,
                            });
                        }
                    }
                    sp = s.next;
                }
            }
        }
        checked
    }
}
