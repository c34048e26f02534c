//! C-style realloc growth through umem-global's core (not as the global
//! allocator): a block that grows past `REALLOC_GROW_LARGE` gets room to grow
//! in place, keeps its contents, reports its usable length, and moves back
//! out when shrunk a lot.

use umem_global::preload_abi::{free, realloc, usable_size, REALLOC_GROW_LARGE};
use umem_testkit::pattern::{check_with, fill_with, mod251};

#[test]
fn growth_is_in_place_after_the_first_large_move() {
    let mut p = umem_global::preload_abi::alloc(64, 16, false);
    assert!(!p.is_null());
    // SAFETY: `p` is live with a usable length of at least 64 bytes.
    unsafe { fill_with(p, 0..64, mod251) };
    let mut n = 64usize;
    let mut moves_large = 0;
    let mut last_len = 64;
    while n <= 4 << 20 {
        let m = n + n / 16 + 64;
        // SAFETY: the block is live (from `alloc`/`realloc`) and the old pointer is not used after.
        let q = unsafe { realloc(p, m, 16) }.unwrap();
        assert!(!q.is_null());
        if q != p && n >= REALLOC_GROW_LARGE {
            moves_large += 1;
        }
        let u = usable_size(q).unwrap();
        assert!(u >= m, "usable {u} < {m}");
        // The usable length follows the requested one (not the reservation).
        assert!(u < m + 4096 || m < REALLOC_GROW_LARGE, "usable {u} for {m}");
        // SAFETY: `q` is live and its first last_len.min(m) bytes were written.
        unsafe { check_with(q, last_len.min(m), mod251) };
        // SAFETY: `q` is live with a usable length of at least m bytes.
        unsafe { fill_with(q, last_len..m, mod251) };
        last_len = m;
        p = q;
        n = m;
    }
    // SAFETY: `p` is live and its first n bytes were written.
    unsafe { check_with(p, n, mod251) };
    // 16 KiB -> 4 MiB: one move into a reserved block (64x), at most one more.
    assert!(moves_large <= 1, "{moves_large} moves of a large block");
    // A big shrink moves the block to a size class, contents kept.
    // SAFETY: the block is live (from `alloc`/`realloc`) and the old pointer is not used after.
    let q = unsafe { realloc(p, 1000, 16) }.unwrap();
    assert_ne!(q, p);
    // SAFETY: `q` is live and its first 1000 bytes were written.
    unsafe { check_with(q, 1000, mod251) };
    assert!(usable_size(q).unwrap() < 2048);
    // SAFETY: a live block from `alloc`/`realloc`, freed once.
    unsafe { free(q) }.unwrap();
}

#[test]
fn shrinking_within_the_usable_length_stays_in_place() {
    let p = umem_global::preload_abi::alloc(20_000, 16, false);
    // SAFETY: the block is live (from `alloc`/`realloc`) and the old pointer is not used after.
    let p = unsafe { realloc(p, 40_000, 16) }.unwrap();
    // SAFETY: `p` is live with a usable length of at least 40_000 bytes.
    unsafe { fill_with(p, 0..40_000, mod251) };
    // SAFETY: the block is live (from `alloc`/`realloc`) and the old pointer is not used after.
    let q = unsafe { realloc(p, 30_000, 16) }.unwrap();
    assert_eq!(p, q);
    // SAFETY: `q` is live and its first 30_000 bytes were written.
    unsafe { check_with(q, 30_000, mod251) };
    let u = usable_size(q).unwrap();
    assert!((30_000..30_000 + 4096).contains(&u), "usable {u}");
    // SAFETY: a live block from `alloc`/`realloc`, freed once.
    unsafe { free(q) }.unwrap();
}

#[test]
fn small_blocks_grown_by_realloc_move_once_per_doubling() {
    // 64 B -> REALLOC_GROW_LARGE in ~6% steps crosses about 25 size
    // classes; a growing block gets twice its old size, so it moves about
    // log2(4096 / 64) times, then once more into a large block with room.
    let mut p = umem_global::preload_abi::alloc(64, 16, false);
    // SAFETY: `p` is live with a usable length of at least 64 bytes.
    unsafe { fill_with(p, 0..64, mod251) };
    let mut n = 64usize;
    let mut moves = 0;
    while n <= REALLOC_GROW_LARGE {
        let m = n + n / 16 + 64;
        // SAFETY: the block is live (from `alloc`/`realloc`) and the old pointer is not used after.
        let q = unsafe { realloc(p, m, 16) }.unwrap();
        assert!(!q.is_null());
        if q != p {
            moves += 1;
        }
        assert!(usable_size(q).unwrap() >= m);
        // SAFETY: `q` is live and its first n bytes were written.
        unsafe { check_with(q, n, mod251) };
        // SAFETY: `q` is live with a usable length of at least m bytes.
        unsafe { fill_with(q, n..m, mod251) };
        p = q;
        n = m;
    }
    // SAFETY: `p` is live and its first n bytes were written.
    unsafe { check_with(p, n, mod251) };
    assert!(moves <= 8, "{moves} moves growing 64 B -> {n} B");
    // Shrinking a doubled block a little stays in place.
    // SAFETY: the block is live (from `alloc`/`realloc`) and the old pointer is not used after.
    let q = unsafe { realloc(p, n - 100, 16) }.unwrap();
    assert_eq!(q, p);
    // SAFETY: a live block from `alloc`/`realloc`, freed once.
    unsafe { free(q) }.unwrap();
}
