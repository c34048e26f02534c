//! Target (b): random malloc / calloc / realloc / memalign / free sequences
//! through `umem_global::Umem`'s `GlobalAlloc` interface, with content
//! checks: every live block is filled with its own pattern and checked
//! before it is freed or reallocated (and `alloc_zeroed` blocks are checked
//! to be zero), so aliasing or a lost prefix is found at once.

use super::Bytes;
use std::alloc::{GlobalAlloc, Layout};
use umem_global::Umem;

struct Block {
    p: *mut u8,
    layout: Layout,
    seed: u8,
}

/// The pattern word at byte offset `i` (a multiple of 8) of a block with `seed`.
fn word(seed: u8, i: usize) -> u64 {
    (u64::from(seed) * 0x0101_0101_0101_0101) ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn fill(b: &Block) {
    // SAFETY: p is live with layout.size() bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(b.p, b.layout.size()) };
    for (k, c) in s.chunks_mut(8).enumerate() {
        let w = word(b.seed, k * 8).to_le_bytes();
        c.copy_from_slice(&w[..c.len()]);
    }
}

fn check(b: &Block, upto: usize, what: &str) {
    // SAFETY: p is live with at least `upto` bytes.
    let s = unsafe { std::slice::from_raw_parts(b.p, upto) };
    for (k, c) in s.chunks(8).enumerate() {
        let w = word(b.seed, k * 8).to_le_bytes();
        if c != &w[..c.len()] {
            panic!(
                "umem_alloc: {what}: block {:p} ({:?}) bytes {}..{} are {c:x?}, want {:x?}",
                b.p,
                b.layout,
                k * 8,
                k * 8 + c.len(),
                &w[..c.len()]
            );
        }
    }
}

fn layout(b: &mut Bytes) -> Layout {
    let size = match b.u8() % 16 {
        0..=7 => b.below(129),
        8..=11 => b.below(1025),
        12..=14 => b.below(16 << 10),
        _ if b.u8() % 4 != 0 => b.below(140_000),
        _ => b.below(1 << 20),
    };
    let align = match b.u8() % 8 {
        0..=4 => 1 << b.below(5),
        5 | 6 => 1 << b.below(13),
        _ => 1 << b.below(22),
    };
    Layout::from_size_align(size.max(1), align).unwrap()
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let mut live: Vec<Block> = Vec::new();
    let mut seed = 1u8;
    let mut ops = 0;
    while b.more() && ops < 2000 {
        ops += 1;
        seed = seed.wrapping_add(7);
        match b.u8() % 8 {
            // malloc / memalign
            0..=2 => {
                let l = layout(&mut b);
                // SAFETY: non-zero size, valid layout.
                let p = unsafe { Umem.alloc(l) };
                if p.is_null() {
                    continue;
                }
                if p as usize & (l.align() - 1) != 0 {
                    panic!("umem_alloc: alloc({l:?}) = {p:p} is misaligned");
                }
                let blk = Block { p, layout: l, seed };
                fill(&blk);
                live.push(blk);
            }
            // calloc
            3 => {
                let l = layout(&mut b);
                // SAFETY: non-zero size, valid layout.
                let p = unsafe { Umem.alloc_zeroed(l) };
                if p.is_null() {
                    continue;
                }
                // SAFETY: p is live with l.size() bytes.
                let s = unsafe { std::slice::from_raw_parts(p, l.size()) };
                if let Some(i) = s.iter().position(|&x| x != 0) {
                    panic!(
                        "umem_alloc: alloc_zeroed({l:?}) = {p:p}: byte {i} is {:#x}",
                        s[i]
                    );
                }
                let blk = Block { p, layout: l, seed };
                fill(&blk);
                live.push(blk);
            }
            // realloc
            4 | 5 => {
                if live.is_empty() {
                    continue;
                }
                let i = b.below(live.len());
                let new = layout(&mut b).size();
                let blk = &live[i];
                check(blk, blk.layout.size(), "before realloc");
                // SAFETY: blk.p is live with blk.layout; new > 0.
                let q = unsafe { Umem.realloc(blk.p, blk.layout, new) };
                if q.is_null() {
                    continue;
                }
                let nb = Block {
                    p: q,
                    layout: Layout::from_size_align(new, blk.layout.align()).unwrap(),
                    seed: blk.seed,
                };
                if q as usize & (nb.layout.align() - 1) != 0 {
                    panic!("umem_alloc: realloc to {new} = {q:p} is misaligned");
                }
                check(&nb, new.min(blk.layout.size()), "prefix after realloc");
                fill(&nb);
                live[i] = nb;
            }
            // free
            _ => {
                if live.is_empty() {
                    continue;
                }
                let i = b.below(live.len());
                let blk = live.swap_remove(i);
                check(&blk, blk.layout.size(), "before free");
                // SAFETY: allocated above with this layout.
                unsafe { Umem.dealloc(blk.p, blk.layout) };
            }
        }
    }
    for blk in live.drain(..) {
        check(&blk, blk.layout.size(), "at the end");
        // SAFETY: allocated above with this layout.
        unsafe { Umem.dealloc(blk.p, blk.layout) };
    }
}
