//! The class region: one reservation of address space, cut into a slice of
//! [`SLICE`] bytes per size class, from which each class's arena imports its
//! spans. A small block's class is then a subtraction and a shift of its
//! address, so `free`'s hit path reads no page map at all (the idea of
//! scudo's primary allocator and of mimalloc's aligned segments: metadata
//! found from the address alone).
//!
//! ```text
//! BASE                BASE + SLICE         BASE + 2·SLICE
//!  | umem_alloc_8's    | umem_alloc_16's     | … (classes::COUNT slices)
//!  |  slice arena      |  slice arena        |
//! ```
//!
//! Each slice is a vmem arena (`umem_slice_<size>`, no source, one span:
//! the slice, made on the class's first import) that
//! [`crate::source::ClassSource`] imports from; a span the class arena gives
//! back is decommitted and freed to the slice arena. The class arenas keep
//! [`CLASS_RETAIN`] bytes of wholly free spans before they give any back
//! (vmem's retained spans), and the periodic update gives those back too,
//! so the system calls are not paid on every slab that empties.
//!
//! The reservation is a single `PROT_NONE` anonymous mapping: address
//! space, not memory, and no commit charge. A span is made readable and
//! writable (`mprotect`) when a class arena imports it, and replaced by a
//! fresh `PROT_NONE` mapping when it goes back (its memory is freed). So
//! core dumps contain only spans in use (an untouched reservation is left
//! out, a written one would be dumped whole), strict overcommit charges
//! only what is in use, and an address in a slice that no arena holds
//! faults when touched. When the reservation cannot be made (an
//! `RLIMIT_AS`) or is switched off (`UMEM_OPTIONS=noregion`), and when a
//! slice is full or a span cannot be committed, classes import from
//! `umem_default` as before and their blocks are freed through the page map
//! (correct, a few instructions slower). The page map is kept for region
//! spans as well, so `free`'s out-of-line path, `malloc_usable_size` and
//! the bad-pointer checks read it exactly as for other memory.
//!
//! What the hit path trusts: any pointer inside a slice, aligned like the
//! class's buffers, is taken as a block of that class. Every such address
//! is umem's own reserved memory, so only a pointer made up from umem's
//! memory (not one from the stack, a global, another allocator, or the
//! inside of a large block) gets past it, and one outside the spans in use
//! faults as soon as it is handed out and written; a double free is the
//! same undetected error it is for the magazine layer in libumem (use
//! `UMEM_DEBUG=default` to catch it).

use crate::classes;
use crate::sys;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use umem_vmem::{Addr, CreateFlags, Source, Vmem};

/// log2 of a slice's size: 34 (16 GiB), or `UMEM_SLICE_SHIFT` at build time
/// (20..=40), e.g. 30 to fit under valgrind's 64 GiB address-space limit
/// when measuring with cachegrind.
pub const SLICE_SHIFT: u32 = match option_env!("UMEM_SLICE_SHIFT") {
    Some(s) => parse_shift(s.as_bytes()),
    None => 34,
};

const fn parse_shift(b: &[u8]) -> u32 {
    let mut n = 0u32;
    let mut i = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "UMEM_SLICE_SHIFT: not a number");
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    assert!(n >= 20 && n <= 40, "UMEM_SLICE_SHIFT: out of 20..=40");
    n
}

/// Address space per class (the reservation is `COUNT` of them).
pub const SLICE: usize = 1 << SLICE_SHIFT;
/// Size of the whole reservation.
pub const LEN: usize = classes::COUNT << SLICE_SHIFT;
/// Bytes of wholly free spans a class arena keeps before giving spans back.
pub const CLASS_RETAIN: usize = 1 << 20;

/// `BASE` when there is no region: the top `LEN` bytes of the address space,
/// where no user pointer lives, so [`class_of`] finds nothing.
const NO_BASE: usize = 0usize.wrapping_sub(LEN);
static BASE: AtomicUsize = AtomicUsize::new(NO_BASE);

#[allow(clippy::declare_interior_mutable_const)]
const NO_ARENA: AtomicPtr<Vmem> = AtomicPtr::new(core::ptr::null_mut());
static SLICES: [AtomicPtr<Vmem>; classes::COUNT] = [NO_ARENA; classes::COUNT];

/// The class whose slice holds `a`, if any. Two instructions and no memory
/// but `BASE` (read-mostly, next to nothing that changes).
#[inline(always)]
pub fn class_of(a: usize) -> Option<usize> {
    let off = a.wrapping_sub(BASE.load(Ordering::Relaxed));
    if off >= LEN {
        None
    } else {
        Some(off >> SLICE_SHIFT)
    }
}

/// Start of the reservation, if there is one.
pub fn base() -> Option<usize> {
    let b = BASE.load(Ordering::Relaxed);
    (b != NO_BASE).then_some(b)
}

/// Class `c`'s slice arena, if there is a region.
pub fn slice_arena(c: usize) -> Option<&'static Vmem> {
    let p = SLICES.get(c)?.load(Ordering::Acquire);
    // SAFETY: published once from a `&'static Vmem` and never destroyed.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Reserves the region (init, before the class arenas exist). `false` (and
/// no region) when the mapping cannot be made; the classes then import from
/// `umem_default`. The slice arenas are made on each class's first import
/// ([`slice_for`]), so a process pays only for the classes it uses (all 46
/// at init cost about 130 µs of the first `malloc`).
pub fn reserve() -> bool {
    let Some(b) = sys::reserve(LEN) else {
        return false;
    };
    if !crate::pagemap::in_range(b, LEN) {
        // SAFETY: our own fresh mapping, never handed out.
        unsafe { sys::unmap(b, LEN) };
        return false;
    }
    BASE.store(b, Ordering::Release);
    true
}

/// Class `c`'s slice arena, made now if this is the class's first import.
/// Two threads may race to make it: the loser destroys its (unused) arena.
/// No lock, so nothing new for `fork` to take.
fn slice_for(c: usize) -> Option<&'static Vmem> {
    if let Some(a) = slice_arena(c) {
        return Some(a);
    }
    let b = base()?;
    let fresh = Vmem::create(
        classes::SLICE_NAMES[c],
        Some((b + (c << SLICE_SHIFT), SLICE)),
        sys::PAGE,
        None,
        0,
        CreateFlags::NO_QCACHE,
    )
    .ok()?;
    match SLICES[c].compare_exchange(
        core::ptr::null_mut(),
        fresh as *const Vmem as *mut Vmem,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => Some(fresh),
        Err(other) => {
            // SAFETY: `fresh` was never published, so nobody else uses it.
            unsafe { fresh.destroy() };
            // SAFETY: published once from a `&'static Vmem`, never destroyed.
            Some(unsafe { &*other })
        }
    }
}

/// A span of `size` bytes aligned to `align` from class `c`'s slice; `None`
/// when there is no region or the slice is full.
pub fn import(c: usize, size: usize, align: usize) -> Option<Addr> {
    let slice = slice_for(c)?;
    let a = Source::import(slice, size, align)?;
    let e = sys::errno();
    // SAFETY: a range of class c's slice that its arena just handed out.
    let ok = unsafe { sys::commit(a, size) };
    sys::set_errno(e);
    if !ok {
        Source::release(slice, a, size);
        return None;
    }
    Some(a)
}

/// Gives back a span [`import`] handed out: `false` (nothing done) when
/// `addr` is not in the region. The span is decommitted first, so the
/// slice's free space holds no memory and is inaccessible.
pub fn release(addr: Addr, size: usize) -> bool {
    let Some(c) = class_of(addr) else {
        return false;
    };
    let Some(arena) = slice_arena(c) else {
        return false;
    };
    let e = sys::errno();
    // SAFETY: the class arena gives back a span it imported whole and no
    // longer uses; it is part of the reservation.
    unsafe { sys::decommit(addr, size) };
    sys::set_errno(e);
    Source::release(arena, addr, size);
    true
}
