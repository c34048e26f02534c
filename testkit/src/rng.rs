//! xorshift64*: small, deterministic, good enough to generate test cases.

/// A xorshift64* generator. The same seed gives the same sequence on every run, so a
/// failing randomized test fails again.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed`, scrambled first so that small neighbouring seeds
    /// (1, 2, 3 …) give unrelated sequences; any seed works, 0 included.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A generator whose state is `state` as given (no scrambling). `state` must not be
    /// 0, which xorshift never leaves.
    pub fn from_state(state: u64) -> Rng {
        Rng(state)
    }

    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// Uniform in `[lo, hi_incl]`.
    pub fn range(&mut self, lo: usize, hi_incl: usize) -> usize {
        lo + self.below((hi_incl - lo + 1) as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A power of two in `[lo, hi]` (both powers of two), each exponent equally likely.
    pub fn pow2(&mut self, lo: usize, hi: usize) -> usize {
        let a = lo.trailing_zeros();
        let b = hi.trailing_zeros();
        1usize << self.range(a as usize, b as usize)
    }
}
