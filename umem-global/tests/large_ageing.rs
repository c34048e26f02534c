//! Ageing of the large-block cache: a freed block that is not reused goes
//! back to the system by the second periodic update after its free (further
//! large-block activity runs the updates), and after an idle gap of two
//! intervals the first update gives back every cached block.
//! One test per binary: the cache and the options are process-wide.

use std::time::{Duration, Instant};
use umem_global::preload_abi::{alloc, free};
use umem_global::stats;
use umem_testkit::pattern::fill_bytes;

const MB: usize = 1 << 20;

/// A large block of `size` bytes, every byte written, then freed (so it
/// lands in the cache).
fn touch_and_free(size: usize) {
    let p = alloc(size, 16, false);
    assert!(!p.is_null());
    // SAFETY: `p` is a live block of at least `size` bytes, ours.
    unsafe { fill_bytes(p, size, 0x3c) };
    // SAFETY: a live block from `alloc`, freed once.
    unsafe { free(p) }.unwrap();
}

#[test]
fn unused_cached_blocks_go_back_within_two_intervals_of_activity() {
    // Before umem's first allocation: options are read once, then.
    std::env::set_var("UMEM_OPTIONS", "reap_interval=1");
    touch_and_free(24 * MB);
    assert_eq!(
        stats().large.cached_blocks,
        1,
        "the freed block was not cached"
    );
    assert!(stats().large.cached_bytes >= 24 * MB);

    // Activity that never reuses the big block: a 1 MiB block (more than 4x
    // smaller) allocated and freed every 20 ms. It hits the cache itself, so
    // it stays fresh while the big block ages.
    let start = Instant::now();
    while stats().large.cached_bytes >= 24 * MB {
        assert!(
            start.elapsed() < Duration::from_millis(3_500),
            "the unused 24 MiB block is still cached after {:?} of activity \
             (interval 1 s: it must go by the second update)",
            start.elapsed()
        );
        touch_and_free(MB);
        std::thread::sleep(Duration::from_millis(20));
    }
    let cached = stats().large;
    assert!(
        cached.cached_blocks >= 1,
        "the busy 1 MiB block was aged out too"
    );

    // Idle for more than two intervals: the first activity after the gap
    // gives back every cached block, the busy one included (its own free
    // lands in the emptied cache afterwards).
    std::thread::sleep(Duration::from_millis(2_300));
    let q = alloc(5 * MB, 16, false);
    assert!(!q.is_null());
    assert_eq!(
        stats().large.cached_blocks,
        0,
        "an update after an idle gap left blocks cached"
    );
    // SAFETY: a live block from `alloc`, freed once.
    unsafe { free(q) }.unwrap();
}
