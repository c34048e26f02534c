//! Known contents for blocks: fill one when it is handed out, check it before it is
//! freed, and an allocator that gave the same memory to two owners (or wrote into a live
//! block) is caught.
//!
//! Three patterns: every byte the same ([`fill_bytes`]), every 64-bit word `tag ^ index`
//! ([`fill_words`]), and a byte computed from its offset ([`fill_with`], e.g. with
//! [`mod251`] or [`seeded`]). The checks panic naming the block and the first wrong
//! place.

/// Writes `byte` to every byte of `[p, p + len)`.
///
/// # Safety
/// `[p, p + len)` must be valid for writes and owned by the caller.
pub unsafe fn fill_bytes(p: *mut u8, len: usize, byte: u8) {
    // SAFETY: the caller owns the writable range.
    unsafe { std::ptr::write_bytes(p, byte, len) };
}

/// Checks that every byte of `[p, p + len)` is `byte`.
///
/// # Panics
/// At the first byte that differs, naming the block, the offset and both values.
///
/// # Safety
/// `[p, p + len)` must be valid for reads and not written concurrently.
#[track_caller]
pub unsafe fn check_bytes(p: *const u8, len: usize, byte: u8) {
    // SAFETY: the caller guarantees the range is readable and stable.
    let b = unsafe { std::slice::from_raw_parts(p, len) };
    if let Some(i) = b.iter().position(|&x| x != byte) {
        panic!(
            "block {:#x}+{len:#x} overwritten at +{i:#x}: {:#x} != {byte:#x}",
            p as usize, b[i]
        );
    }
}

/// Writes `tag ^ i` to the `i`-th 64-bit word of `[p, p + len)` (whole words only; a
/// tail shorter than 8 bytes is left alone).
///
/// # Safety
/// `p` must be 8-aligned and `[p, p + len)` valid for writes and owned by the caller.
pub unsafe fn fill_words(p: *mut u8, len: usize, tag: u64) {
    let w = p as *mut u64;
    for i in 0..len / 8 {
        // SAFETY: word `i` lies inside the caller's aligned, writable range.
        unsafe { *w.add(i) = tag ^ i as u64 };
    }
}

/// Checks the words written by [`fill_words`] with the same `tag`.
///
/// # Panics
/// At the first word that differs, naming the block and the word's index.
///
/// # Safety
/// `p` must be 8-aligned and `[p, p + len)` valid for reads and not written concurrently.
#[track_caller]
pub unsafe fn check_words(p: *const u8, len: usize, tag: u64) {
    let w = p as *const u64;
    for i in 0..len / 8 {
        // SAFETY: word `i` lies inside the caller's aligned, readable range.
        let v = unsafe { *w.add(i) };
        assert_eq!(v, tag ^ i as u64, "object {p:p} word {i} corrupted");
    }
}

/// Writes `f(i)` to byte `i` of `p` for every `i` in `range` (offsets from `p`).
///
/// # Safety
/// `[p + range.start, p + range.end)` must be valid for writes and owned by the caller.
pub unsafe fn fill_with(p: *mut u8, range: std::ops::Range<usize>, f: impl Fn(usize) -> u8) {
    for i in range {
        // SAFETY: offset `i` lies inside the caller's writable range.
        unsafe { *p.add(i) = f(i) };
    }
}

/// Checks that byte `i` of `[p, p + len)` is `f(i)`.
///
/// # Panics
/// At the first byte that differs, naming the block, the offset and both values.
///
/// # Safety
/// `[p, p + len)` must be valid for reads and not written concurrently.
#[track_caller]
pub unsafe fn check_with(p: *const u8, len: usize, f: impl Fn(usize) -> u8) {
    for i in 0..len {
        // SAFETY: offset `i` lies inside the caller's readable range.
        let v = unsafe { *p.add(i) };
        assert_eq!(v, f(i), "block {p:p}+{len:#x}: byte {i}");
    }
}

/// The byte pattern `i % 251` (a prime, so it never lines up with a power-of-two size).
pub fn mod251(i: usize) -> u8 {
    (i % 251) as u8
}

/// A byte pattern that differs from block to block: byte `i` of the block with `seed`.
pub fn seeded(seed: u64) -> impl Fn(usize) -> u8 {
    move |i| {
        (seed as usize)
            .wrapping_mul(31)
            .wrapping_add(i * 7 + (i >> 9)) as u8
    }
}
