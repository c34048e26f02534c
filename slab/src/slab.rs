//! Slabs and bufctls (Bonwick 1994, sections 3 and 4): the [`Slab`] record, the external
//! [`Bufctl`] (and [`BufctlAudit`]) of hashed caches, and the slab layer's state
//! ([`SlabLayer`], under the cache's *slab lock*) with its list and hash-bucket
//! operations. The layer's algorithms — making, carving, freeing slabs — are in
//! `slab_layer.rs`.
//!
//! Two layouts: caches of buffers smaller than 1/8 of a page keep the `Slab` at the end of
//! a one-page slab and thread the free list through the buffers (a link word at the end
//! of each chunk; a bitmap after the record instead when a chunk is one word and must
//! hold the free key, [`MAP_CHUNK`]); larger buffers, `NOTOUCH` and `AUDIT` caches use
//! external bufctls and `Slab`s from the internal caches and a hash from buffer address to
//! bufctl.

use core::mem::size_of;
use core::ptr::null_mut;

use crate::percpu::GROUPS;
use crate::secret;

/// Buckets of a new hash table.
pub(crate) const HASH_INITIAL: usize = 64;

/// A slab: in the last bytes of the slab for small-buffer caches, from the slab cache
/// otherwise.
///
/// The first field is the owner *tag*: the owning cache's address encoded with the
/// process secret and the record's own address (`secret.rs`). In an in-slab slab it is the
/// first word a linear overflow out of the last chunk reaches, and an overflow cannot
/// rewrite it to a value that still decodes to the cache, so every use of the record
/// checks it first ([`Slab::owned_by`]) and the later fields (list links, free-list head)
/// are reachable only past a checked word.
#[repr(C)]
pub(crate) struct Slab {
    /// The owning cache's address, encoded (see above); compared, never followed.
    tag: usize,
    /// Start of the slab's memory (from the source arena).
    pub mem: usize,
    /// First buffer (`mem` + colour).
    pub base: usize,
    pub next: *mut Slab,
    pub prev: *mut Slab,
    /// Free list: small caches, address of the first free buffer; hashed caches, the
    /// first free bufctl. 0 when the slab is fully allocated. In a small cache's slab the
    /// list may end in a *fresh tail*: a word with [`FRESH`] set, whose address part is
    /// the first of the chunks never handed out, all of them free up to the slab's end.
    pub head: usize,
    /// Buffers allocated from this slab (at most `chunks`: a slab holds fewer than 2^32).
    pub refcnt: u32,
    /// The CPU group that last claimed this slab ([`SlabLayer::claim_for`]).
    pub group: u32,
    /// Buffers in this slab.
    pub chunks: usize,
}

/// Bytes of a [`Slab`] record (what an in-slab slab keeps at its end).
pub(crate) const SLAB_HDR: usize = size_of::<Slab>();

/// The tag of a *fresh tail* on an in-slab free list (see [`Slab::head`]). A new slab's
/// list is one fresh tail, `base | FRESH`: its chunks get no links when the slab is made,
/// and a run of them leaves the slab as consecutive addresses, with no link read, decoded
/// or checked (issue 15: threading and then following a link through every chunk was
/// most of a growing heap's slab-layer cost). Frees push linked buffers in front of the
/// tail, so it is always the list's last element; a link that decodes to a tagged word is
/// the tail (chunks are at least 8-aligned, so bit 0 of a buffer address is free).
pub(crate) const FRESH: usize = 1;

/// Chunk size of a *free-map* slab: an in-slab `FREE_KEY` cache whose chunks are one word
/// each, so a free chunk has no room for both the free key (its first word) and a
/// free-list link (its last). Such a slab keeps its free list out of the chunks, as a
/// bitmap of [`MAP_WORDS`] words right after its [`Slab`] record (bit `i` set: chunk `i`
/// is free), and its free chunks hold only the key. [`Slab::head`] is then 1 while any
/// chunk is free and 0 when none is.
///
/// The map lies past the record's owner tag, so a linear overflow out of the last chunk
/// reaches the tag first, and every use of the map follows a check of the tag (as every
/// use of a linked list's head does). A free that finds its bit already set is a double
/// free, caught here even when the magazine layer's key test missed it.
pub(crate) const MAP_CHUNK: usize = 8;
/// Words of a free-map slab's bitmap: room for 512 chunks, as many as a 4 KiB slab holds.
pub(crate) const MAP_WORDS: usize = 8;
/// Bytes a free-map slab keeps at its end: the record, then the bitmap.
pub(crate) const MAP_HDR: usize = SLAB_HDR + MAP_WORDS * 8;

impl Slab {
    /// A slab of cache `cache` on no list, none of its `chunks` buffers allocated, its free
    /// list starting at `head`, to be written at `at` (its tag depends on where it lives).
    pub(crate) fn fresh(
        at: *mut Slab,
        cache: *const (),
        mem: usize,
        base: usize,
        head: usize,
        chunks: usize,
    ) -> Slab {
        Slab {
            tag: secret::encode(cache as usize, at as usize),
            mem,
            base,
            next: null_mut(),
            prev: null_mut(),
            head,
            refcnt: 0,
            group: 0,
            chunks,
        }
    }

    /// Whether this record's tag says it belongs to cache `owner` (false for a record
    /// overwritten by an overflow, or for memory that is not a slab record of `owner`).
    #[inline(always)]
    pub(crate) fn owned_by(&self, owner: *const ()) -> bool {
        self.tag == secret::encode(owner as usize, self as *const Slab as usize)
    }

    /// The raw tag word (for messages).
    pub(crate) fn raw_tag(&self) -> usize {
        self.tag
    }
}

/// The free map after free-map slab `sp`'s record ([`MAP_CHUNK`]).
///
/// # Safety
/// `sp` is the record of a slab of a free-map cache (the map's words follow it inside
/// the slab).
#[inline(always)]
pub(crate) unsafe fn map_words(sp: *mut Slab) -> *mut [u64; MAP_WORDS] {
    (sp as usize + SLAB_HDR) as *mut [u64; MAP_WORDS]
}

/// The bits of map word `i` that stand for chunks of a slab of `chunks` chunks (the
/// rest of the word is never set).
pub(crate) fn map_word_chunks(chunks: usize, i: usize) -> u64 {
    let n = chunks.saturating_sub(i * 64).min(64);
    if n == 64 {
        !0
    } else {
        (1u64 << n) - 1
    }
}

/// Marks the first `chunks` chunks of a new free-map slab free, the rest of its map not.
///
/// # Safety
/// As [`map_words`]; `chunks <= MAP_WORDS * 64`.
pub(crate) unsafe fn init_map(sp: *mut Slab, chunks: usize) {
    debug_assert!(chunks <= MAP_WORDS * 64);
    // SAFETY: by the caller.
    let map = unsafe { &mut *map_words(sp) };
    for (i, w) in map.iter_mut().enumerate() {
        *w = map_word_chunks(chunks, i);
    }
}

/// Whether any chunk of free-map slab `sp` is free.
///
/// # Safety
/// As [`map_words`].
#[inline(always)]
pub(crate) unsafe fn map_has_free(sp: *mut Slab) -> bool {
    // SAFETY: by the caller.
    unsafe { (*map_words(sp)).iter().any(|&w| w != 0) }
}

/// Marks chunk `k` of free-map slab `sp` free; `false` (and nothing changed) when it was
/// free already.
///
/// # Safety
/// As [`map_words`]; `k` is below the slab's chunk count.
#[inline(always)]
pub(crate) unsafe fn map_set(sp: *mut Slab, k: usize) -> bool {
    // SAFETY: by the caller, `k / 64 < MAP_WORDS`.
    let w = unsafe { &mut (*map_words(sp))[k / 64] };
    let bit = 1u64 << (k % 64);
    let was_free = *w & bit != 0;
    *w |= bit;
    !was_free
}

/// Whether chunk `k` of free-map slab `sp` is free.
///
/// # Safety
/// As [`map_set`].
#[inline(always)]
pub(crate) unsafe fn map_test(sp: *const Slab, k: usize) -> bool {
    // SAFETY: by the caller.
    unsafe { (*map_words(sp as *mut Slab))[k / 64] & (1u64 << (k % 64)) != 0 }
}

/// An exact test of "`off` is a multiple of the chunk size" without a division: with
/// `chunksize = odd << shift`, `off` is a multiple iff `rotr(off * odd⁻¹, shift) ≤
/// usize::MAX / chunksize` (Granlund and Montgomery's divisibility test). A multiply, a
/// rotate and a compare, for the checks on the free list and the free path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkDivisor {
    inv: usize,
    shift: u32,
    lim: usize,
}

impl ChunkDivisor {
    /// The divisibility test for chunk size `chunksize` (> 0).
    pub(crate) const fn new(chunksize: usize) -> ChunkDivisor {
        let shift = chunksize.trailing_zeros();
        ChunkDivisor {
            inv: secret::inverse(chunksize >> shift),
            shift,
            lim: usize::MAX / chunksize,
        }
    }

    /// Whether `off` is a multiple of the chunk size.
    #[inline(always)]
    pub(crate) fn divides(&self, off: usize) -> bool {
        off.wrapping_mul(self.inv).rotate_right(self.shift) <= self.lim
    }
}

/// External buffer control (hashed caches): on its slab's free list while the buffer is
/// free, in the cache's hash while it is allocated.
#[repr(C)]
pub(crate) struct Bufctl {
    pub next: *mut Bufctl,
    pub addr: usize,
    pub slab: *mut Slab,
}

/// The bufctl of an `AUDIT` cache: a `Bufctl` followed by the audit record (libumem's
/// `umem_bufctl_audit_t`), itself followed in its object by two stacks of
/// `audit::audit_depth()` words (last allocation, last free; `audit.rs`).
#[repr(C)]
pub(crate) struct BufctlAudit {
    pub bc: Bufctl,
    /// The owning cache (its address; compared, never followed).
    pub cache: *const (),
    /// The last transaction's thread and time.
    pub thread: usize,
    pub timestamp: u64,
    pub txn: u64,
    pub allocated: bool,
    /// Frames recorded in the allocation (0) and free (1) stacks.
    pub depth: [u32; 2],
    /// Thread and time of the last allocation (0) and of the last free (1).
    pub event_thread: [usize; 2],
    pub event_time: [u64; 2],
    /// `audit::stack_hash` of the allocation stack.
    pub stack_hash: u64,
}

/// Partial slabs [`SlabLayer::claim_for`] looks at for one of the group's own.
const CLAIM_SCAN: usize = 16;

/// The slab layer's state (under the cache's slab lock).
pub(crate) struct SlabLayer {
    /// Slabs with at least one free buffer (doubly linked, most recently used first).
    pub partial: *mut Slab,
    /// Fully allocated slabs.
    pub full: *mut Slab,
    /// The slab each CPU group takes an in-slab cache's buffers from, or null: a live slab
    /// of this cache (on either list), claimed by one group only (`slab_layer.rs`, "CPU
    /// claims"), cleared when it is destroyed.
    pub claimed: [*mut Slab; GROUPS],
    pub nslabs: usize,
    /// Buffers in all slabs.
    pub buftotal: usize,
    /// Buffers handed out of the slab layer.
    pub bufalloc: usize,
    /// Colour of the last slab made.
    pub color: usize,
    /// Allocated-buffer hash of a hashed cache (`hash_mask + 1` buckets), else null.
    pub hash: *mut *mut Bufctl,
    pub hash_mask: usize,
    pub slab_create: u64,
    pub slab_destroy: u64,
    pub slab_alloc: u64,
    pub slab_free: u64,
    pub rescale: u64,
    pub lookup_depth: u64,
}

impl SlabLayer {
    /// An empty slab layer with hash table `hash` (`HASH_INITIAL` buckets; null for an
    /// in-slab cache).
    pub(crate) fn new(hash: *mut *mut Bufctl) -> SlabLayer {
        SlabLayer {
            partial: null_mut(),
            full: null_mut(),
            claimed: [null_mut(); GROUPS],
            nslabs: 0,
            buftotal: 0,
            bufalloc: 0,
            color: 0,
            hash,
            hash_mask: if hash.is_null() { 0 } else { HASH_INITIAL - 1 },
            slab_create: 0,
            slab_destroy: 0,
            slab_alloc: 0,
            slab_free: 0,
            rescale: 0,
            lookup_depth: 0,
        }
    }

    /// The slab CPU group `c` takes buffers from: its claimed slab while that has a free
    /// buffer, else one of the first [`CLAIM_SCAN`] partial slabs that no other group
    /// claims, claimed now — one this group claimed before, else one at least half free,
    /// else (when the scan did not reach the end of the list: many partial slabs) the
    /// first; null (and nothing claimed) when none qualifies, for the caller to make one.
    pub(crate) fn claim_for(&mut self, c: usize) -> *mut Slab {
        let mine = self.claimed[c];
        // SAFETY: a claimed slab is live (a claim goes when its slab is destroyed).
        if !mine.is_null() && unsafe { (*mine).head } != 0 {
            return mine;
        }
        let (mut half_free, mut first): (*mut Slab, *mut Slab) = (null_mut(), null_mut());
        let mut sp = self.partial;
        let mut scanned = 0;
        // SAFETY: slabs on the partial list are live (slab lock held by the caller).
        let pick = unsafe {
            loop {
                if sp.is_null() {
                    break half_free;
                }
                if scanned == CLAIM_SCAN {
                    break if half_free.is_null() {
                        first
                    } else {
                        half_free
                    };
                }
                scanned += 1;
                if !self.claimed.contains(&sp) {
                    if (*sp).group as usize == c {
                        break sp;
                    }
                    if half_free.is_null() && 2 * (*sp).refcnt as usize <= (*sp).chunks {
                        half_free = sp;
                    }
                    if first.is_null() {
                        first = sp;
                    }
                }
                sp = (*sp).next;
            }
        };
        if pick.is_null() {
            self.claimed[c] = null_mut();
        } else {
            // SAFETY: a live partial slab (above).
            unsafe { self.claim(c, pick) };
        }
        pick
    }

    /// Make `sp` group `c`'s claimed slab, and the group it was last claimed by.
    ///
    /// # Safety
    /// `sp` is a live slab of this layer that no other group claims (slab lock held).
    pub(crate) unsafe fn claim(&mut self, c: usize, sp: *mut Slab) {
        self.claimed[c] = sp;
        // SAFETY: by the caller.
        unsafe { (*sp).group = c as u32 };
    }

    /// Drop every claim on `sp` (a slab about to be destroyed).
    pub(crate) fn unclaim(&mut self, sp: *mut Slab) {
        for c in self.claimed.iter_mut().filter(|c| **c == sp) {
            *c = null_mut();
        }
    }

    /// The hash bucket of buffer `addr` (`hash_shift`: log2 of the chunk size).
    #[inline]
    pub(crate) fn hash_bucket(&self, hash_shift: u32, addr: usize) -> *mut *mut Bufctl {
        // SAFETY: the table has hash_mask + 1 buckets.
        unsafe { self.hash.add((addr >> hash_shift) & self.hash_mask) }
    }
}

#[inline]
pub(crate) fn list_remove(head: &mut *mut Slab, sp: *mut Slab) {
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
pub(crate) fn list_push(head: &mut *mut Slab, sp: *mut Slab) {
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

/// Where an address lies in a cache's slab layer (`Cache::locate`).
pub(crate) enum BufferLookup {
    /// The start of a buffer handed out of the slab layer.
    Allocated,
    /// The start of a buffer on its slab's free list.
    Free,
    /// Inside a slab but not at a buffer start; the buffer (or first buffer) it falls in.
    Interior(usize),
    /// In none of this cache's slabs.
    NotInCache,
}
