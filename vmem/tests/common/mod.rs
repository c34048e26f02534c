//! Shared helpers for the umem-vmem integration tests.
#![allow(dead_code)]

/// xorshift64* — small, deterministic, good enough for test generation.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub fn range(&mut self, lo: usize, hi_incl: usize) -> usize {
        lo + self.below((hi_incl - lo + 1) as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// A power of two in [lo, hi] (both powers of two).
    pub fn pow2(&mut self, lo: usize, hi: usize) -> usize {
        let a = lo.trailing_zeros();
        let b = hi.trailing_zeros();
        1usize << self.range(a as usize, b as usize)
    }
}

pub fn round_up(x: usize, q: usize) -> usize {
    (x + q - 1) & !(q - 1)
}

/// Brute-force, independent check: does a request fit in the free range
/// `[lo, hi)`? (Walks nocross windows, so it stays cheap.)
#[allow(clippy::too_many_arguments)]
pub fn bf_fits(
    lo: usize,
    hi: usize,
    size: usize,
    align: usize,
    phase: usize,
    nocross: usize,
    minaddr: usize,
    maxaddr: Option<usize>,
) -> bool {
    let lo = lo.max(minaddr) as u128;
    let hi = match maxaddr {
        Some(m) => (hi as u128).min(m as u128),
        None => hi as u128,
    };
    let (size, align, phase, nocross) =
        (size as u128, align as u128, phase as u128, nocross as u128);
    let first_at_or_after = |x: u128| -> u128 {
        // smallest a >= x with a % align == phase
        let base = x - x % align + phase;
        if base >= x {
            base
        } else {
            base + align
        }
    };
    let mut a = first_at_or_after(lo);
    loop {
        if a + size > hi {
            return false;
        }
        if nocross == 0 || a / nocross == (a + size - 1) / nocross {
            return true;
        }
        a = first_at_or_after((a / nocross + 1) * nocross);
    }
}
