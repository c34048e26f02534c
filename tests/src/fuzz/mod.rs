//! Fuzz targets for issue 11, written as plain library functions
//! `run(data: &[u8])` so that both drivers can call them:
//!
//! * `fuzz/` — `cargo fuzz run vmem_model` / `cargo fuzz run umem_alloc`
//!   (libFuzzer, nightly; see `fuzz/README.md`);
//! * `tests/tests/fuzz_smoke.rs` — a stable-Rust driver the test command
//!   runs: random inputs for a bounded time (`UMEM_FUZZ_SECS`).
//!
//! Each target interprets its input as a sequence of operations, checks
//! every answer against a simple model, and panics (with the operation
//! that went wrong) on a mismatch.

// `is_multiple_of` is newer than the workspace's rust-version (1.80).
#![allow(clippy::manual_is_multiple_of)]

pub mod umem_alloc;
pub mod vmem_model;

/// Reads the input as a stream of numbers; yields 0 once it is used up.
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }
    /// Whether input is left.
    pub fn more(&self) -> bool {
        self.pos < self.data.len()
    }
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }
    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }
    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.u32() as usize % n
    }
}
