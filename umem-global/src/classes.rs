//! Size classes (libumem's `umem_alloc_sizes` for 64-bit) and the lookup
//! tables from a request's size (and alignment) to its class. Pure data:
//! the classes' caches and hit tables are in `caches.rs` and
//! `hit_tables.rs`.
//!
//! Each class's cache is created with the class's *natural* alignment: the
//! largest power of two dividing its size, capped at a page. So a 64-byte
//! class is 64-aligned and a 4096-byte class page-aligned, and aligned
//! requests (`posix_memalign`, Rust layouts with `align > 16`) are served
//! headerless from the smallest class that is both big and aligned enough.
//!
//! Every class except the 8-byte one is at least 16-aligned. `malloc` of 1
//! to 8 bytes (and of 0) gets an 8-byte block, 8-aligned: C17 asks a block
//! to be aligned for every type of fundamental alignment *that fits in the
//! size requested* (7.22.3), and no 16-aligned type fits in 8 bytes.
//! mimalloc, jemalloc and tcmalloc do the same; glibc gives every block 16.
//! Half of some programs' blocks are that small (mimalloc-bench's
//! alloc-test, the harness's heap growth), and 16-byte blocks for them cost
//! twice the memory (docs/performance.md, "An 8-byte class for C").

use crate::sys::PAGE;

macro_rules! classes {
    ($($n:literal),* $(,)?) => {
        /// Class sizes in bytes, ascending.
        pub const SIZES: &[usize] = &[$($n),*];
        /// Cache names, as in libumem (`umem_alloc_<size>`).
        pub const NAMES: &[&str] = &[$(concat!("umem_alloc_", stringify!($n))),*];
    };
}

classes!(
    8, 16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896,
    1152, 1344, 1600, 2048, 2304, 2688, 4096, 4544, 8192, 9216, 12288, 16384, 24576, 32768, 40960,
    49152, 57344, 65536, 73728, 81920, 90112, 98304, 106496, 114688, 122880, 131072,
);

/// Number of classes.
pub const COUNT: usize = SIZES.len();
/// The largest size served by a class; larger requests are large blocks.
pub const MAX_SMALL: usize = SIZES[COUNT - 1];

/// Natural alignment of class `c`.
pub const fn natural_align(c: usize) -> usize {
    let s = SIZES[c];
    let a = 1usize << s.trailing_zeros();
    if a > PAGE {
        PAGE
    } else {
        a
    }
}

const fn first_class_at_least(n: usize) -> u8 {
    let mut c = 0;
    while SIZES[c] < n {
        c += 1;
    }
    c as u8
}

// Two tables: by 8 bytes up to 16 KiB (2 KiB of table), by 1 KiB up to 128
// KiB (every class boundary in a range is a multiple of its step). Two, not
// three (a 64-byte step from 1 KiB had its own): the compiler makes the
// choice without branches, and between two loads it is 12 instructions on
// Rust's `alloc`/`dealloc` hit path instead of 21 (docs/performance.md,
// "Rust's class lookup").
const T8_LEN: usize = T8_MAX / 8 + 1;
const T1K_LEN: usize = 131072 / 1024 + 1;
/// Largest size the 8-byte table covers.
const T8_MAX: usize = 16384;

const fn build<const N: usize>(step: usize) -> [u8; N] {
    let mut t = [0u8; N];
    let mut i = 0;
    while i < N {
        let n = if i == 0 { 1 } else { i * step };
        t[i] = first_class_at_least(n);
        i += 1;
    }
    t
}

static T8: [u8; T8_LEN] = build::<T8_LEN>(8);
static T1K: [u8; T1K_LEN] = build::<T1K_LEN>(1024);

/// The smallest class holding `size` bytes (`size <= MAX_SMALL`).
#[inline]
pub fn size_class(size: usize) -> usize {
    debug_assert!(size <= MAX_SMALL);
    if size <= T8_MAX {
        T8[(size + 7) >> 3] as usize
    } else {
        T1K[(size + 1023) >> 10] as usize
    }
}

/// The alignment a C allocation of `size` bytes gets: 8 up to 8 bytes, 16
/// above (the module doc). [`size_class`]'s class has at least this
/// alignment.
#[inline]
pub fn c_align(size: usize) -> usize {
    if size <= 8 {
        8
    } else {
        16
    }
}

/// Largest `malloc` size the hit tables index by size (`hit_tables::ALLOC_TABLE`).
pub const C_TABLE_MAX: usize = 1024;

/// Alignment of each class ([`natural_align`]), as a table.
static ALIGNS: [usize; COUNT] = {
    let mut t = [0; COUNT];
    let mut c = 0;
    while c < COUNT {
        t[c] = natural_align(c);
        c += 1;
    }
    t
};

/// The smallest class holding `size` bytes aligned to `align` (a power of
/// two), or `None` when a large block must serve it.
#[inline]
pub fn layout_class(size: usize, align: usize) -> Option<usize> {
    if size > MAX_SMALL {
        return None;
    }
    let mut c = size_class(size);
    if align <= 8 {
        return Some(c);
    }
    while ALIGNS[c] < align {
        c += 1;
        if c == COUNT {
            return None;
        }
    }
    Some(c)
}

/// Alignment of class `c` (from the table).
#[inline]
pub fn align(c: usize) -> usize {
    ALIGNS[c]
}

/// Size of class `c`.
#[inline]
pub fn size(c: usize) -> usize {
    SIZES[c]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_agree_with_a_linear_search() {
        for n in 0..=MAX_SMALL {
            let want = SIZES.iter().position(|&s| s >= n.max(1)).unwrap();
            assert_eq!(size_class(n), want, "size {n}");
        }
    }

    #[test]
    fn classes_are_aligned_as_c17_asks() {
        // C's `malloc` uses `size_class` too.
        // The strictest fundamental alignment (16) for every block that can
        // hold a 16-aligned object; 8 for blocks of 8 bytes or less.
        for n in 0..=MAX_SMALL {
            let c = size_class(n);
            assert!(SIZES[c] >= n);
            assert!(align(c) >= c_align(n), "size {n}");
            assert_eq!(layout_class(n, c_align(n)), Some(c), "size {n}");
        }
    }

    #[test]
    fn aligned_lookup_is_smallest_fit() {
        for shift in 0..=13 {
            let a = 1usize << shift;
            for n in (0..=MAX_SMALL).step_by(7) {
                let want =
                    (0..COUNT).find(|&c| SIZES[c] >= n.max(1) && natural_align(c) >= a.max(8));
                let want = if a <= 8 { Some(size_class(n)) } else { want };
                assert_eq!(layout_class(n, a), want, "size {n} align {a}");
            }
        }
    }

    #[test]
    fn classes_are_sorted_and_aligned() {
        assert!(SIZES.windows(2).all(|w| w[0] < w[1]));
        for (c, &s) in SIZES.iter().enumerate().skip(1) {
            assert!(natural_align(c) >= 16, "class {s} serves C sizes above 8");
            assert_eq!(s % natural_align(c), 0);
        }
        assert_eq!(NAMES[4], "umem_alloc_64");
    }
}
