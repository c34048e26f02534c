//! The class region: one reservation of address space from which every size
//! class's arena imports its spans, laid out so that a small block's class
//! is a function of its address alone. `free`'s hit path then reads no page
//! map at all (the idea of scudo's primary allocator and of mimalloc's
//! aligned segments: metadata found from the address).
//!
//! The region is cut into **stripes** of [`STRIPE`] (256 KiB); stripe number
//! `s` belongs to class `s % 64`, so class `c` owns stripes `c`, `c + 64`,
//! `c + 128`, … ([`STRIPES_PER_CLASS`] of them, 16 GiB):
//!
//! ```text
//! BASE    +256 KiB  +512 KiB         +16 MiB  +16.25 MiB
//!  | class 0 | class 1 | class 2 | … | class 0 | class 1 | …
//! ```
//!
//! and `stripe_class(a) = ((a - BASE) >> 18) & 63`. Striping rather than one
//! contiguous slice per class keeps the classes' first stripes next to each
//! other (all 64 first stripes lie in 16 MiB): they share page-table pages
//! and one page-map leaf, and used neighbouring classes share one mapping.
//! (Slices 16 GiB apart cost every class its own page-table pages and two
//! mappings: a `fork` of a small process took 0.73-0.97 ms instead of 0.42
//! without the region; 2 MiB stripes, one page-table page per class, 0.54.)
//!
//! Each class's arena (`umem_alloc_<size>`) imports whole stripes through
//! its source ([`crate::source::ClassSource`]), the class's lowest free
//! stripe first (a bitmap per class, [`StripeSource`]); the region is
//! committed (`mprotect`) in rounds of 64 stripes as classes reach them. A
//! stripe the class arena gives back (wholly free) is discarded
//! (`MADV_DONTNEED`) and goes back to the class's bitmap. The class arenas
//! keep [`CLASS_RETAIN`] bytes of wholly free stripes before they give any
//! back (vmem's retained spans), and the periodic update gives those back
//! too, so the system calls are not paid on every slab that empties.
//!
//! The reservation is a single `PROT_NONE` anonymous mapping: address
//! space, not memory, and no commit charge; rounds are committed only as
//! classes reach them. So core dumps contain only the committed rounds (an
//! untouched reservation is left out), strict overcommit charges only
//! those, and an address beyond them faults when touched. When the reservation cannot be made (an `RLIMIT_AS`) or is
//! switched off (`UMEM_OPTIONS=noregion`), and when a class has used all its
//! stripes or one cannot be committed, classes import from `umem_default`
//! as before and their blocks are freed through the page map (correct, a
//! few instructions slower). The page map is kept for region spans as well,
//! so `free`'s out-of-line path, `malloc_usable_size` and the bad-pointer
//! checks read it exactly as for other memory.
//!
//! What the hit path trusts: any pointer inside a class's stripe that is a
//! chunk start of the class's slab grid (`hit_tables::FreeSlot::is_start`)
//! on a page where a slab of the class lives (the slab map, below) and does
//! not hold the free key is taken as an allocated block of that class.
//! Every such address is umem's own reserved memory, so only a pointer made
//! up from umem's memory (not one from the stack, a global, another
//! allocator, or the inside of a block) gets past it.
//!
//! **The slab map** says which pages of the region hold a live slab, and
//! what the hit needs to free a block there: a 16-bit word per page, the
//! `InlineIndex` of the class cache (its magazines' place in a thread's
//! block) while a slab of the class lives on the page, 0 (the index on
//! which every hit misses) before and after, and for a class whose hit is
//! off. It lies just below `BASE`, so the hit reads it with one instruction
//! from the registers it has (`BASE` and the page number), and the index
//! it reads leads straight to the magazine and, through
//! `hit_tables::row_is_start`, to the class's block-start test, with no
//! class number in between ([`inline_word`]). The
//! class caches announce their slabs (umem-slab's slab watch,
//! `caches::slab_watch`), and the map is committed with the rounds (two
//! pages a round). Without it a free into a page whose slab died would be
//! taken: the slab's memory, discarded, reads zero where the free key was,
//! so a double free after a reap or `malloc_trim` went onto a magazine and
//! the block was handed out twice (issue 11).

use crate::classes;
use crate::pagemap;
use crate::sys;
use core::sync::atomic::{AtomicUsize, Ordering};
use umem_vmem::{Addr, Source};

/// log2 of a stripe's size.
pub const STRIPE_SHIFT: u32 = 18;
/// A stripe: the unit a class takes from the region (256 KiB; a class
/// arena's spans are at most 128 KiB, one slab of the largest class).
pub const STRIPE: usize = 1 << STRIPE_SHIFT;
/// Classes the stripes rotate over (a power of two ≥ `classes::COUNT`).
pub const CLASS_SLOTS: usize = 64;
const _: () = assert!(classes::COUNT <= CLASS_SLOTS);
/// log2 of the stripes each class owns: 16 (65536 stripes, 16 GiB per
/// class), or `UMEM_STRIPES_SHIFT` at build time (1..=16), e.g. 10 to fit
/// under valgrind's 64 GiB address-space limit when measuring with
/// cachegrind.
pub const STRIPES_SHIFT: u32 = match option_env!("UMEM_STRIPES_SHIFT") {
    Some(s) => parse_shift(s.as_bytes()),
    None => 16,
};
/// Stripes per class.
pub const STRIPES_PER_CLASS: usize = 1 << STRIPES_SHIFT;
/// Size of the whole reservation (1 TiB by default).
pub const LEN: usize = CLASS_SLOTS << (STRIPE_SHIFT + STRIPES_SHIFT);
/// log2 of the bytes of region one slab-map word describes (a page).
const MAP_SHIFT: u32 = sys::PAGE.trailing_zeros();
/// A slab-map word: an `InlineIndex` word (below `umem_slab::INLINE_END`).
type MapWord = u16;
const _: () = assert!(umem_slab::INLINE_END <= MapWord::MAX as usize + 1);
/// Bytes reserved for the slab map below `BASE`: a word per page of the
/// region (512 MiB of address space for 1 TiB), at least a stripe (so that
/// `BASE` stays stripe-aligned).
const MAP_SPAN: usize = {
    let m = (LEN >> MAP_SHIFT) * core::mem::size_of::<MapWord>();
    if m < STRIPE {
        STRIPE
    } else {
        m
    }
};
const _: () = assert!(MAP_SPAN % STRIPE == 0 && MAP_SPAN < 1 << 31);
/// Bytes of wholly free spans a class arena keeps before giving spans back.
pub const CLASS_RETAIN: usize = 1 << 20;

const fn parse_shift(b: &[u8]) -> u32 {
    let mut n = 0u32;
    let mut i = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "UMEM_STRIPES_SHIFT: not a number");
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    assert!(n >= 1 && n <= 16, "UMEM_STRIPES_SHIFT: out of 1..=16");
    n
}

/// `BASE` when there is no region: the top `LEN` bytes of the address space,
/// where no user pointer lives, so [`stripe_class`] finds nothing.
const NO_BASE: usize = 0usize.wrapping_sub(LEN);
static BASE: AtomicUsize = AtomicUsize::new(NO_BASE);
/// Pages in the region (`LEN` in pages), 0 until it is reserved (so that
/// [`inline_word`] finds nothing in it).
static PAGES: AtomicUsize = AtomicUsize::new(0);

/// The slab-map word of `a`'s page, if `a` is in the region: the class
/// cache's `InlineIndex` word where a slab of the class lives, 0 where none
/// does (module comment). A subtraction, a shift, a compare and a load.
///
/// `a` in the region but in a round not yet committed (no pointer umem
/// handed out is there) faults here, as reading the block would.
#[inline(always)]
pub fn inline_word(a: usize) -> Option<usize> {
    let base = BASE.load(Ordering::Relaxed);
    // The page's number in the region, tested against a bound read from
    // memory: a constant bound would be folded back into a test of the
    // offset, which then needs a copy to shift for the map.
    let page = a.wrapping_sub(base) >> MAP_SHIFT;
    if page >= PAGES.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: `page` is below the region's page count, so the word is inside
    // the map reserved below `BASE` (`reserve`); it is committed with the
    // page's round, and every round holding a pointer umem handed out is
    // committed.
    Some(unsafe { *((base - MAP_SPAN) as *const MapWord).add(page) } as usize)
}

/// Records in the slab map that the pages of `[addr, addr + len)` hold a
/// live slab of the class whose cache's `InlineIndex` word is `word` (0:
/// no slab, or no hit); nothing outside the region. Called by the class
/// caches' slab watch, under the class cache's slab lock: its slabs' pages
/// are written by no one else.
pub fn mark_slab(addr: usize, len: usize, word: usize) {
    let base = BASE.load(Ordering::Relaxed);
    let off = addr.wrapping_sub(base);
    if off >= LEN {
        return;
    }
    debug_assert!(word < umem_slab::INLINE_END);
    let first = ((base - MAP_SPAN) as *mut MapWord).wrapping_add(off >> MAP_SHIFT);
    for i in 0..len.div_ceil(sys::PAGE) {
        // SAFETY: the slab lies in a committed round of the region (its
        // class arena imported it), so its map words are committed; they
        // are this slab's alone, written under its cache's slab lock. The
        // hit reads them with plain loads: an aligned 16-bit store is atomic
        // on every target umem runs on, and a free racing with the slab's
        // birth or death is a free of a block that is not allocated.
        unsafe { core::ptr::write_volatile(first.add(i), word as MapWord) };
    }
}

/// The class whose stripe holds `a`, if `a` is in the region. A subtraction,
/// a compare, a shift and a mask; no memory but `BASE` (read-mostly).
#[inline(always)]
pub fn stripe_class(a: usize) -> Option<usize> {
    let off = a.wrapping_sub(BASE.load(Ordering::Relaxed));
    if off >= LEN {
        None
    } else {
        Some((off >> STRIPE_SHIFT) & (CLASS_SLOTS - 1))
    }
}

/// Start of stripe `i` of class `c`.
#[inline]
pub fn stripe_addr(base: usize, c: usize, i: usize) -> usize {
    base + ((i * CLASS_SLOTS + c) << STRIPE_SHIFT)
}

/// The slab map and the region together, `(start, end)`, if there is a
/// region (what a leak scan must not take for roots).
pub fn reservation() -> Option<(usize, usize)> {
    base().map(|b| (b - MAP_SPAN, b + LEN))
}

/// Start of the region (`BASE`), if there is one.
pub fn base() -> Option<usize> {
    let b = BASE.load(Ordering::Relaxed);
    (b != NO_BASE).then_some(b)
}

/// Reserves the region (init, before any class exists). `false` (and no
/// region) when the mapping cannot be made; the classes then import from
/// `umem_default`.
pub fn reserve() -> bool {
    // The slab map, then the region; one stripe more, to align the base to
    // a stripe (so that stripes, and the class spans in them, can be
    // aligned up to a stripe).
    let Some(b) = sys::reserve(MAP_SPAN + LEN + STRIPE) else {
        return false;
    };
    // SAFETY: our own fresh reservation, never handed out.
    let start = unsafe { sys::trim_to_aligned(b, MAP_SPAN + LEN + STRIPE, MAP_SPAN + LEN, STRIPE) };
    let base = start + MAP_SPAN;
    if !pagemap::in_range(base, LEN) {
        // SAFETY: our own fresh reservation, never handed out.
        unsafe { sys::unmap(start, MAP_SPAN + LEN) };
        return false;
    }
    BASE.store(base, Ordering::Release);
    PAGES.store(LEN >> MAP_SHIFT, Ordering::Release);
    true
}

/// Which of each class's stripes are taken (bit set) by its class arena,
/// and how many rounds (64 stripes, one per class slot: 16 MiB) from the
/// start of the region are committed. One lock for all classes: stripes are
/// taken and given back rarely. A leaf lock (nothing is taken under it);
/// `prefork` takes it last.
pub struct Stripes {
    /// Bit `b` of `taken[w][c]`: class `c`'s stripe `64 * w + b` is taken.
    /// Word-major, so that the first 64 stripes of every class (16 MiB of
    /// each) share one row of `8 * classes::COUNT` bytes: a process touches
    /// one page of this 368 KiB table, where class-major rows (8 KiB a class)
    /// cost a page for every class it used (32 pages, 128 KiB of resident
    /// memory, for glibc's `bench-malloc-thread`).
    taken: [[u64; classes::COUNT]; STRIPES_PER_CLASS / 64],
    rounds: usize,
    in_use: usize,
}

pub static STRIPES: umem_slab::SpinLock<Stripes> = umem_slab::SpinLock::new(Stripes {
    taken: [[0; classes::COUNT]; STRIPES_PER_CLASS / 64],
    rounds: 0,
    in_use: 0,
});

/// Bytes of one round: a stripe for each class slot.
pub const ROUND: usize = CLASS_SLOTS << STRIPE_SHIFT;

/// Class `c`'s stripes as a span source (what `import` and `release` use).
pub struct StripeSource {
    /// The size class.
    pub class: usize,
}

static STRIPE_SOURCES: [StripeSource; classes::COUNT] = {
    const S: StripeSource = StripeSource { class: 0 };
    let mut t = [S; classes::COUNT];
    let mut c = 0;
    while c < classes::COUNT {
        t[c] = StripeSource { class: c };
        c += 1;
    }
    t
};

/// Class `c`'s stripe source (tests use it to take every stripe).
pub fn stripe_source(c: usize) -> &'static StripeSource {
    &STRIPE_SOURCES[c]
}

impl Source for StripeSource {
    /// The class's lowest free stripe; `None` when the request does not fit
    /// a stripe, every stripe is taken, or the kernel refuses to commit it.
    ///
    /// Memory is committed (made accessible) by whole rounds, bottom up: a
    /// stripe in round `r` commits every round up to `r` that is not yet
    /// committed. Committing stripe by stripe would leave each class's
    /// stripes a mapping of their own between inaccessible neighbours (55
    /// mappings for a small process instead of 2, and a slower `fork`);
    /// round by round the committed part of the region is one mapping, and
    /// the commit charge and core dumps still grow with use, 16 MiB at a
    /// time.
    fn import(&self, size: usize, align: usize) -> Option<Addr> {
        let base = base()?;
        if size > STRIPE || align > STRIPE {
            return None;
        }
        let c = self.class;
        let mut t = STRIPES.lock();
        let w = t.taken.iter().position(|row| row[c] != u64::MAX)?;
        let i = w * 64 + (!t.taken[w][c]).trailing_zeros() as usize;
        if i >= t.rounds {
            let from = base + t.rounds * ROUND;
            let len = (i + 1 - t.rounds) * ROUND;
            let words = core::mem::size_of::<MapWord>();
            let map = base - MAP_SPAN + ((t.rounds * ROUND) >> MAP_SHIFT) * words;
            // SAFETY: rounds of the reservation not yet committed, and
            // their slab-map pages below `BASE` (whole pages: a round is 4096
            // pages); only class arenas use the region, each within its own
            // stripes, and only `mark_slab` writes the map.
            if !sys::keep_errno(|| unsafe {
                sys::commit(map, (len >> MAP_SHIFT) * words) && sys::commit(from, len)
            }) {
                return None;
            }
            t.rounds = i + 1;
        }
        t.taken[i / 64][c] |= 1 << (i % 64);
        t.in_use += 1;
        Some(stripe_addr(base, c, i))
    }

    /// Takes back a stripe the class arena no longer uses (it was
    /// discarded on the way, so it holds no memory).
    fn release(&self, addr: Addr, size: usize) {
        let Some(base) = base() else { return };
        debug_assert_eq!(size, STRIPE);
        let i = (addr - base) >> STRIPE_SHIFT >> CLASS_SLOTS.trailing_zeros();
        let mut t = STRIPES.lock();
        t.taken[i / 64][self.class] &= !(1 << (i % 64));
        t.in_use -= 1;
    }

    fn quantum(&self) -> usize {
        STRIPE
    }
}

/// A stripe of class `c` for its class arena to import (`size` and `align`
/// at most a stripe); `None` when there is no region or the class has no
/// stripe left.
pub fn import(c: usize, size: usize, align: usize) -> Option<Addr> {
    Source::import(&STRIPE_SOURCES[c], size, align)
}

/// Gives back a stripe [`import`] handed out: `false` (nothing done) when
/// `addr` is not in the region. Its memory is discarded, so the free
/// stripes of the region hold no memory.
pub fn release(addr: Addr, size: usize) -> bool {
    let Some(c) = stripe_class(addr) else {
        return false;
    };
    // SAFETY: the class arena gives back a stripe it imported whole and no
    // longer uses; it is private anonymous memory of a committed round.
    sys::keep_errno(|| unsafe { sys::discard(addr, size) });
    Source::release(&STRIPE_SOURCES[c], addr, size);
    true
}

/// Bytes of the region the class arenas hold (stripes taken).
pub fn in_use() -> usize {
    STRIPES.lock().in_use * STRIPE
}

/// Bytes of the region made accessible so far (whole rounds, from its start).
pub fn committed() -> usize {
    STRIPES.lock().rounds * ROUND
}

/// Where the stripe bitmaps lie: the address and size of the table (tests
/// count its resident pages).
pub fn bitmap_span() -> (usize, usize) {
    let t = STRIPES.lock();
    (t.taken.as_ptr() as usize, core::mem::size_of_val(&t.taken))
}
