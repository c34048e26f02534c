//! The large-block cache: a freed block serves a later request whose
//! capacity is up to four times smaller (no new memory, no page faults), and
//! what it hands out for `calloc` is zero even though the block is dirty.
//! One test per binary: the cache is process-wide.

use umem_global::preload_abi::{alloc, free, usable_size};
use umem_global::stats;
use umem_testkit::pattern::fill_bytes;

const MB: usize = 1 << 20;

#[test]
fn a_freed_large_block_serves_smaller_requests_and_zeroes_for_calloc() {
    // 7 MiB: capacity 8 MiB. Every byte dirty.
    let big = alloc(7 * MB, 16, false);
    assert!(!big.is_null());
    // SAFETY: `big` is a live block of at least 7 * MB bytes, ours.
    unsafe { fill_bytes(big, 7 * MB, 0xa5) };
    // SAFETY: a live block from `alloc`/`realloc`, freed once.
    unsafe { free(big) }.unwrap();
    let hits = stats().large.cache_hits;

    // 3 MiB wants a 4 MiB capacity: the cached 8 MiB block is within 4x.
    let p = alloc(3 * MB, 16, true);
    assert_eq!(p, big, "the cached block was not reused");
    assert_eq!(stats().large.cache_hits, hits + 1);
    // SAFETY: a live block of at least 3 MiB.
    let s = unsafe { std::slice::from_raw_parts(p, 3 * MB) };
    assert!(
        s.iter().all(|&x| x == 0),
        "calloc of a reused dirty block is not zero"
    );
    // Its usable length is the request (page-rounded), not the capacity.
    let u = usable_size(p).unwrap();
    assert!((3 * MB..3 * MB + 4096).contains(&u), "usable {u}");
    // SAFETY: `p` is a live block of at least 3 * MB bytes, ours.
    unsafe { fill_bytes(p, 3 * MB, 0x5a) };
    // SAFETY: a live block from `alloc`/`realloc`, freed once.
    unsafe { free(p) }.unwrap();

    // 1 MiB wants 1 MiB: the 8 MiB block is more than 4x too big and stays
    // cached; the request gets other memory.
    let q = alloc(MB, 16, false);
    assert_ne!(q, big, "a block 8x too big was reused");
    // SAFETY: a live block from `alloc`/`realloc`, freed once.
    unsafe { free(q) }.unwrap();
    // And the big block is still there for a 5 MiB request.
    let r = alloc(5 * MB, 16, true);
    assert_eq!(r, big);
    // SAFETY: a live block of at least 5 MiB.
    let s = unsafe { std::slice::from_raw_parts(r, 5 * MB) };
    assert!(s.iter().all(|&x| x == 0));
    // SAFETY: a live block from `alloc`/`realloc`, freed once.
    unsafe { free(r) }.unwrap();
}
