//! Workloads at the extremes of heap shape (issue 15): a heap that grows to hundreds of MB of
//! small blocks and is freed in batches far larger than a magazine (`heap-growth`, sh6bench's
//! shape), blocks of 5-25 MiB allocated and freed over and over (`huge`, mimalloc-bench's
//! malloc-large), bursts of 100 tiny blocks of mixed sizes freed together
//! (`tiny-bursts`), and buffers of mixed sizes up to 8 KiB grown by realloc in every thread
//! (`mixed-realloc`). Their C twins are in `c/cwork.c`. Like every workload they check each
//! object before freeing it and return a checksum that depends only on the parameters.

use crate::{free_block, grow_slots, log_size, new_block, GrowBuf, Params, Rng, WResult};
use std::mem::MaybeUninit;
use std::thread;

/// Runs `f(thread index)` on `p.threads` scoped threads and adds up their checksums; the
/// first error wins.
fn on_threads(p: &Params, f: impl Fn(usize) -> WResult + Sync) -> WResult {
    let f = &f;
    thread::scope(|s| {
        let hs: Vec<_> = (0..p.threads).map(|i| s.spawn(move || f(i))).collect();
        let mut sum = 0u64;
        let mut err = None;
        for h in hs {
            match h.join() {
                Ok(Ok(v)) => sum = sum.wrapping_add(v),
                Ok(Err(e)) => err = err.or(Some(e)),
                Err(_) => err = err.or(Some("a thread panicked".to_string())),
            }
        }
        err.map_or(Ok(sum), Err)
    })
}

/// The block sizes of one pass of sh6bench's loops, in order: size_base from 1 (then
/// size_base * 3 / 2 + 1) below 1000; for each, size_base, size_base / 2, ... 1; each size
/// 10 times, 50 below 1000, 250 below 100.
fn sh6_sizes() -> Vec<usize> {
    let mut v = Vec::new();
    let mut base = 1;
    while base < 1000 {
        let mut sz = base;
        while sz > 0 {
            let mut it = if sz < 10_000 { 10 } else { 1 };
            if sz < 1000 {
                it *= 5;
            }
            if sz < 100 {
                it *= 5;
            }
            v.extend(std::iter::repeat_n(sz, it));
            sz /= 2;
        }
        base = base * 3 / 2 + 1;
    }
    v
}

/// `heap-growth`: per thread, blocks in sh6bench's size order until the thread holds
/// 300 MB * scale / threads, then every other block freed forward and the rest in reverse;
/// two rounds. The slot table is allocated at its full size first (since 2026-12-08; it
/// grew by doubling before, so Rust heap-growth times from earlier runs also paid for
/// copying the table).
pub fn heap_growth(p: &Params) -> WResult {
    let target = ((300e6 * p.scale) as usize / p.threads).max(64 << 10);
    let sizes = sh6_sizes();
    let count = blocks_to(target, &sizes);
    on_threads(p, |i| {
        let mut sum = 0u64;
        let mut tags = 0u64;
        for _ in 0..2 {
            // The slot table is made at its full size before the first block, as the C
            // version's (and sh6bench's) is: a table that grew would be reallocated among
            // the blocks, and under benches/tests/verify.rs's overlapping allocator a block
            // written over its entries made the run die of a bad pointer instead of failing
            // a content check.
            let mut v: Vec<Option<(Box<[u8]>, u64)>> = Vec::with_capacity(count);
            let mut bytes = 0;
            'grow: loop {
                for &sz in &sizes {
                    if bytes >= target {
                        break 'grow;
                    }
                    tags += 1;
                    let tag = ((i as u64) << 40) | tags;
                    v.push(Some((new_block(sz, tag), tag)));
                    bytes += sz;
                }
            }
            if v.len() != count {
                return Err(format!("heap-growth: {} blocks, {count} expected", v.len()));
            }
            for slot in v.iter_mut().step_by(2) {
                let (b, tag) = slot.take().expect("slot");
                sum = sum.wrapping_add(free_block(b, tag, "heap-growth")?);
            }
            for (b, tag) in v.into_iter().rev().flatten() {
                sum = sum.wrapping_add(free_block(b, tag, "heap-growth")?);
            }
        }
        Ok(sum)
    })
}

/// How many blocks `heap_growth` allocates to reach `target` bytes, cycling through
/// `sizes` (it allocates while fewer than `target` bytes are allocated).
fn blocks_to(target: usize, sizes: &[usize]) -> usize {
    let cycle: usize = sizes.iter().sum();
    let mut n = target / cycle * sizes.len();
    let mut bytes = target / cycle * cycle;
    for &sz in sizes {
        if bytes >= target {
            break;
        }
        n += 1;
        bytes += sz;
    }
    n
}

/// Tags are written this far apart in a huge block (not every page: the workloads are
/// checked under a bump allocator that never reuses memory).
const HUGE_STRIDE: usize = 64 << 10;

/// A huge block: malloc'd memory (uninitialised, as in C) with a tag every
/// [`HUGE_STRIDE`] bytes and at the end.
type Huge = Vec<MaybeUninit<u8>>;

fn huge_new(n: usize, tag: u64) -> Huge {
    let mut v: Huge = Vec::with_capacity(n);
    // SAFETY: `MaybeUninit<u8>` needs no initialisation, and the capacity is `n`.
    unsafe { v.set_len(n) };
    let p = v.as_mut_ptr().cast::<u8>();
    let mut off = 0;
    while off + 8 <= n - 8 {
        // SAFETY: `off + 8 <= n`: inside the block.
        unsafe { p.add(off).cast::<u64>().write_unaligned(tag ^ off as u64) };
        off += HUGE_STRIDE;
    }
    // SAFETY: the last 8 bytes of the block.
    unsafe { p.add(n - 8).cast::<u64>().write_unaligned(tag ^ 0xdead) };
    v
}

fn huge_check(v: Huge, tag: u64) -> Result<u64, String> {
    let n = v.len();
    let p = v.as_ptr().cast::<u8>();
    let bad = |at: usize| {
        Err(format!(
            "content check failed in huge: block of {n} bytes at {p:p} tagged {tag:#x}, at offset {at}"
        ))
    };
    let mut off = 0;
    while off + 8 <= n - 8 {
        // SAFETY: inside the block, written by `huge_new`.
        if unsafe { p.add(off).cast::<u64>().read_unaligned() } != tag ^ off as u64 {
            return bad(off);
        }
        off += HUGE_STRIDE;
    }
    // SAFETY: the last 8 bytes, written by `huge_new`.
    if unsafe { p.add(n - 8).cast::<u64>().read_unaligned() } != tag ^ 0xdead {
        return bad(n - 8);
    }
    Ok(tag.wrapping_add(n as u64))
}

/// `huge`: 20 slots; each step allocates a block of 5-25 MiB (uniform) with a 48-byte
/// descriptor block, then frees the slot's old pair (mimalloc-bench's malloc-large, whose
/// `buffers[i] = make_unique(..)` also allocates before it frees).
pub fn huge(p: &Params) -> WResult {
    let ops = p.ops(2000, 16);
    let mut rng = Rng::new(p.seed);
    type Pair = (Huge, u64, Box<[u8]>);
    let mut slots: Vec<Option<Pair>> = (0..20).map(|_| None).collect();
    let mut sum = 0u64;
    for k in 0..ops {
        let j = rng.below(slots.len());
        let size = rng.range(5 << 20, 25 << 20);
        let tag = k as u64 + 1;
        let v = huge_new(size, tag);
        if let Some((old, t, d)) = slots[j].take() {
            sum = sum.wrapping_add(huge_check(old, t)?);
            sum = sum.wrapping_add(free_block(d, t << 8, "huge")?);
        }
        slots[j] = Some((v, tag, new_block(48, tag << 8)));
    }
    for (v, t, d) in slots.into_iter().flatten() {
        sum = sum.wrapping_add(huge_check(v, t)?);
        sum = sum.wrapping_add(free_block(d, t << 8, "huge")?);
    }
    Ok(sum)
}

/// `tiny-bursts`: per thread, bursts of 100 blocks of 8-64 B (uniform), then all freed.
pub fn tiny_bursts(p: &Params) -> WResult {
    let bursts = p.ops(40_000, 8) / p.threads;
    on_threads(p, |i| {
        let mut rng = Rng::stream(p.seed, i as u64);
        let mut sum = 0u64;
        let mut n = 0u64;
        let mut v = Vec::with_capacity(100);
        for _ in 0..bursts {
            for _ in 0..100 {
                n += 1;
                let tag = ((i as u64) << 40) | n;
                v.push((new_block(rng.range(8, 64), tag), tag));
            }
            for (b, tag) in v.drain(..) {
                sum = sum.wrapping_add(free_block(b, tag, "tiny-bursts")?);
            }
        }
        Ok(sum)
    })
}

/// `mixed-realloc`: per thread, 256 slots, each a buffer grown by realloc from nothing in
/// steps of 1 to len/4 + 16 bytes up to a size drawn log-uniformly from 16 B-8 KiB; a buffer
/// that reaches its size is checked and freed, and its slot starts again. The slots live on
/// the thread's stack, so the only heap blocks are the checked buffers.
pub fn mixed_realloc(p: &Params) -> WResult {
    const SLOTS: usize = 256;
    let ops = p.ops(3_000_000, 4000) / p.threads;
    on_threads(p, |i| {
        let mut rng = Rng::stream(p.seed, i as u64);
        let mut n = 0u64;
        let mut fresh = |rng: &mut Rng| {
            n += 1;
            GrowBuf::new(((i as u64) << 40) | n, log_size(rng, 16, 8192))
        };
        let mut bufs: [GrowBuf; SLOTS] = std::array::from_fn(|_| fresh(&mut rng));
        grow_slots(&mut bufs, &mut rng, ops, 4, "mixed-realloc", fresh)
    })
}
