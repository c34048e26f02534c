//! umem-bench: the workloads of the comparison harness, shared by every worker binary.
//!
//! # Theory
//!
//! The harness (`src/main.rs`, binary `umem-bench`) never measures in its own process. It
//! spawns one *worker* process per (workload, allocator, run): the worker binaries
//! (`umem-bench-worker-{system,umem,mimalloc,jemalloc}`) are this same library compiled with a
//! different `#[global_allocator]`, so every allocator runs byte-for-byte the same workload
//! code. The C-ABI side is a C program (`c/cwork.c`, compiled by `build.rs` with the system
//! `cc`) run under `LD_PRELOAD` of each malloc; the last section runs real programs.
//!
//! Worker protocol: `worker WORKLOAD THREADS SCALE SEED` prints one line, either
//! `ok NANOS CHECKSUM` (wall time of the workload itself, without process start-up) or
//! `FAIL message`, and exits 0 or 1. The parent gets peak RSS from `wait4`'s rusage.
//!
//! Correctness before speed: every object a workload allocates is filled with a pattern
//! derived from a unique tag ([`fill`]) and checked byte for byte before it is freed
//! ([`check`]), so an allocator that hands out overlapping blocks or scribbles on live memory
//! makes the workload report `FAIL` instead of a time. The checksum a workload returns depends
//! only on (seed, threads, scale), never on scheduling or on the allocator, so the harness
//! also compares checksums across allocators.

// `is_multiple_of` is newer than the workspace's rust-version (1.82).
#![allow(clippy::manual_is_multiple_of)]

pub mod extremes;
pub mod worker;
pub mod workloads;

pub use worker::worker_main;

/// Parameters every workload takes.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Threads for the multi-threaded workloads (single-threaded ones ignore it).
    pub threads: usize,
    /// Multiplier on the operation counts (1.0 = full run, `--quick` uses less).
    pub scale: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Params {
    /// `base` operations scaled, at least `min`.
    pub fn ops(&self, base: usize, min: usize) -> usize {
        ((base as f64 * self.scale) as usize).max(min)
    }
}

/// A workload's result: a checksum that depends only on the parameters, or what went wrong.
pub type WResult = Result<u64, String>;

/// Small, fast, reproducible generator (splitmix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6a09_e667_f3bc_c909)
    }
    /// A generator for stream `k` of `seed` (threads, rounds).
    pub fn stream(seed: u64, k: u64) -> Rng {
        let mut r = Rng::new(seed.wrapping_add(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        r.next_u64();
        r
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as usize
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The byte every position from 8 on holds in a block tagged `tag`.
#[inline]
pub fn mid_byte(tag: u64) -> u8 {
    let m = (tag ^ (tag >> 8) ^ (tag >> 16) ^ (tag >> 24) ^ (tag >> 32)) as u8;
    m ^ 0xa5
}

/// Fills `buf` with the pattern of `tag`: the tag's little-endian bytes, then `mid_byte(tag)`.
#[inline]
pub fn fill(buf: &mut [u8], tag: u64) {
    let t = tag.to_le_bytes();
    let h = buf.len().min(8);
    buf[..h].copy_from_slice(&t[..h]);
    if buf.len() > 8 {
        buf[8..].fill(mid_byte(tag));
    }
}

/// Whether every byte of `b` is `m`, eight at a time.
#[inline]
fn all_bytes(b: &[u8], m: u8) -> bool {
    let w = u64::from_ne_bytes([m; 8]);
    let mut it = b.chunks_exact(8);
    let words = it.by_ref().fold(0u64, |acc, c| {
        acc | (u64::from_ne_bytes(c.try_into().expect("8 bytes")) ^ w)
    });
    words == 0 && it.remainder().iter().all(|&x| x == m)
}

/// Checks that `buf` still holds the pattern of `tag`, every byte of it.
#[inline]
pub fn check(buf: &[u8], tag: u64, what: &str) -> Result<(), String> {
    let t = tag.to_le_bytes();
    let h = buf.len().min(8);
    let m = mid_byte(tag);
    if buf[..h] != t[..h] || (buf.len() > 8 && !all_bytes(&buf[8..], m)) {
        let at = (0..buf.len())
            .find(|&i| buf[i] != if i < 8 { t[i] } else { m })
            .unwrap_or(0);
        return Err(format!(
            "content check failed in {what}: block of {} bytes at {:p} tagged {tag:#x}, byte {at} is {:#04x}",
            buf.len(),
            buf.as_ptr(),
            buf[at]
        ));
    }
    Ok(())
}

/// A heap block of `n` bytes holding the pattern of `tag` (one allocation of exactly `n`).
#[inline]
pub fn new_block(n: usize, tag: u64) -> Box<[u8]> {
    let mut v = Vec::<u8>::with_capacity(n);
    v.resize(n, mid_byte(tag));
    let t = tag.to_le_bytes();
    let h = n.min(8);
    v[..h].copy_from_slice(&t[..h]);
    v.into_boxed_slice()
}

/// Checks and drops a block made by [`new_block`]; returns what it adds to a checksum.
#[inline]
pub fn free_block(b: Box<[u8]>, tag: u64, what: &str) -> Result<u64, String> {
    check(&b, tag, what)?;
    let v = tag.wrapping_mul(31).wrapping_add(b.len() as u64);
    drop(b);
    Ok(v)
}

/// Log-uniform size in `lo..=hi` (both powers of two or not).
pub fn log_size(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let s = (lo as f64) * ((hi as f64) / (lo as f64)).powf(u);
    (s as usize).clamp(lo, hi)
}

/// Byte `i` of a buffer tagged `tag` that grows by realloc: it depends on the position, so a
/// realloc that moved the bytes wrongly (or lost some) is seen.
#[inline]
pub fn grow_byte(tag: u64, i: usize) -> u8 {
    (tag as u8).wrapping_add((i >> 3) as u8) ^ (i as u8)
}

/// A buffer that grows by realloc: `v` holds `grow_byte(tag, i)` at every `i`, and grows until
/// it reaches `max` bytes (the C twin is `growbuf` in `c/cwork.c`).
pub struct GrowBuf {
    pub v: Vec<u8>,
    pub tag: u64,
    pub max: usize,
}

impl GrowBuf {
    /// An empty buffer tagged `tag` that will grow to `max` bytes.
    pub fn new(tag: u64, max: usize) -> GrowBuf {
        GrowBuf {
            v: Vec::new(),
            tag,
            max,
        }
    }
    /// One realloc step: exactly `k` more bytes (one realloc, the way C code grows buffers),
    /// each new byte set; returns whether the buffer has reached its size.
    pub fn step(&mut self, k: usize) -> bool {
        let len = self.v.len();
        self.v.reserve_exact(k);
        let tag = self.tag;
        self.v.extend((len..len + k).map(|i| grow_byte(tag, i)));
        self.v.len() >= self.max
    }
    /// Checks every byte ([`realloc_check`]) and drops the buffer.
    pub fn check(self, what: &str) -> Result<u64, String> {
        realloc_check(&self.v, self.tag, what)
    }
}

/// The realloc-growth loop of `realloc` and `mixed-realloc`: `ops` times, a random slot of
/// `bufs` grows by 1 to `len / div + 16` bytes; a buffer that reaches its size is checked,
/// freed and replaced by `fresh`. Then every buffer is checked. Returns the checksum.
pub fn grow_slots(
    bufs: &mut [GrowBuf],
    rng: &mut Rng,
    ops: usize,
    div: usize,
    what: &str,
    mut fresh: impl FnMut(&mut Rng) -> GrowBuf,
) -> Result<u64, String> {
    let mut sum = 0u64;
    for _ in 0..ops {
        let j = rng.below(bufs.len());
        let k = rng.range(1, bufs[j].v.len() / div + 16);
        if bufs[j].step(k) {
            let old = std::mem::replace(&mut bufs[j], fresh(rng));
            sum = sum.wrapping_add(old.check(what)?);
        }
    }
    for b in bufs.iter() {
        sum = sum.wrapping_add(realloc_check(&b.v, b.tag, what)?);
    }
    Ok(sum)
}

/// Checks every byte of a buffer grown with [`grow_byte`]; returns what it adds to a checksum.
pub fn realloc_check(v: &[u8], tag: u64, what: &str) -> Result<u64, String> {
    if let Some(i) = (0..v.len()).find(|&i| v[i] != grow_byte(tag, i)) {
        return Err(format!(
            "content check failed in {what}: buffer of {} bytes at {:p} tagged {tag:#x}, byte {i} is {:#04x}",
            v.len(),
            v.as_ptr(),
            v[i]
        ));
    }
    Ok(tag.wrapping_add(v.len() as u64))
}
