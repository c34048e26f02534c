//! The class region: every size class's blocks come from its own stripes of
//! one address-space reservation, so `free` finds the class from the
//! address; a class without stripes left falls back to `umem_default`
//! (blocks then found through the page map); stripes given back are
//! discarded, so their memory returns to the kernel; the region is
//! committed in rounds, as one mapping. The tests take turns (one of them fills a slice that another
//! checks).

use umem_global::preload_abi::classes;
use umem_global::preload_abi::region::{self, STRIPE, STRIPE_SHIFT};
use umem_global::preload_abi::{alloc, free, owner, usable_size, Owner};
use umem_global::{reap, stats};
use umem_testkit::{run_alone, serial};
use umem_vmem::Source;

fn class_of_size(n: usize) -> usize {
    classes::SIZES.iter().position(|&s| s == n).unwrap()
}

fn resident_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn every_class_lives_in_its_own_stripes() {
    let _t = serial();
    // Force init.
    let p = alloc(1, 1, false);
    // SAFETY: a live block from `alloc`/`realloc`, freed once.
    unsafe { free(p) }.unwrap();
    let base = region::base().expect("no class region was reserved");
    assert_eq!(stats().region_reserved as usize, region::LEN);
    for c in 0..classes::COUNT {
        let (n, a) = (classes::SIZES[c], classes::natural_align(c));
        let p = alloc(n, a, false);
        assert!(!p.is_null());
        let addr = p as usize;
        assert_eq!(region::stripe_class(addr), Some(c), "class {n}: {addr:#x}");
        assert_eq!(((addr - base) >> STRIPE_SHIFT) % region::CLASS_SLOTS, c);
        assert_eq!(owner(p), Owner::Small(c));
        assert_eq!(usable_size(p), Some(n));
        // SAFETY: a live block of `n` bytes, ours.
        unsafe { std::ptr::write_bytes(p, 0x5a, n) };
        // SAFETY: a live block from `alloc`/`realloc`, freed once.
        unsafe { free(p) }.unwrap();
        // The C-style free put it on this thread's magazine: the next
        // allocation of the class gets it back.
        let q = alloc(n, a, false);
        assert_eq!(q, p, "class {n}: freed block not reused");
        // SAFETY: a live block from `alloc`/`realloc`, freed once.
        unsafe { free(q) }.unwrap();
    }
    // Nothing outside the region is taken for a class block.
    assert_eq!(region::stripe_class(base.wrapping_sub(1)), None);
    assert_eq!(region::stripe_class(base + region::LEN), None);
    assert_eq!(region::stripe_class(0), None);
    assert_eq!(region::stripe_class(usize::MAX), None);
}

#[test]
fn a_class_without_stripes_falls_back_to_umem_default() {
    let _t = serial();
    let n = 4544;
    let c = class_of_size(n);
    let p0 = alloc(n, 16, false);
    // SAFETY: a live block from `alloc`/`realloc`, freed once.
    unsafe { free(p0) }.unwrap();
    // Take every stripe the class has left (address space: the rounds get
    // committed, nothing is touched).
    let src = region::stripe_source(c);
    let mut taken = Vec::new();
    while let Some(a) = src.import(STRIPE, STRIPE) {
        assert_eq!(region::stripe_class(a), Some(c));
        taken.push(a);
    }
    assert!(
        taken.len() > region::STRIPES_PER_CLASS - 16,
        "took only {} stripes",
        taken.len()
    );

    // 16 MiB of the class: the slabs already in the class arena are used
    // up, then spans come from umem_default, outside the region.
    let count = (16 << 20) / n;
    let blocks: Vec<*mut u8> = (0..count)
        .map(|i| {
            let p = alloc(n, 16, false);
            assert!(!p.is_null());
            // SAFETY: a live block of `n` bytes, ours.
            unsafe { std::ptr::write_bytes(p, i as u8, n) };
            p
        })
        .collect();
    let outside = blocks
        .iter()
        .filter(|&&p| region::stripe_class(p as usize).is_none())
        .count();
    assert!(
        outside > count / 2,
        "{outside} of {count} blocks outside the region"
    );
    for (i, &p) in blocks.iter().enumerate() {
        assert_eq!(owner(p), Owner::Small(c));
        // SAFETY: a live block of `n` bytes.
        let s = unsafe { std::slice::from_raw_parts(p, n) };
        assert!(s.iter().all(|&b| b == i as u8), "block {i} overwritten");
    }
    for &p in &blocks {
        // SAFETY: a live block from `alloc`/`realloc`, freed once.
        unsafe { free(p) }.unwrap();
    }
    for a in taken {
        src.release(a, STRIPE);
    }
    // The class takes stripes again.
    reap();
    let p = alloc(n, 16, false);
    // SAFETY: a live block of `n` bytes, ours.
    unsafe { std::ptr::write_bytes(p, 1, n) };
    // SAFETY: a live block from `alloc`/`realloc`, freed once.
    unsafe { free(p) }.unwrap();
    let q: Vec<*mut u8> = (0..100).map(|_| alloc(n, 16, false)).collect();
    assert!(q
        .iter()
        .any(|&p| region::stripe_class(p as usize) == Some(c)));
    for p in q {
        // SAFETY: a live block from `alloc`/`realloc`, freed once.
        unsafe { free(p) }.unwrap();
    }
}

#[test]
fn spans_given_back_are_discarded() {
    let _t = serial();
    let n = 2688;
    let c = class_of_size(n);
    let count = (64 << 20) / n;
    let rss0 = resident_bytes();
    let blocks: Vec<*mut u8> = (0..count)
        .map(|i| {
            let p = alloc(n, 16, false);
            assert!(!p.is_null());
            // SAFETY: a live block of `n` bytes, ours.
            unsafe { std::ptr::write_bytes(p, i as u8 | 1, n) };
            p
        })
        .collect();
    assert!(blocks
        .iter()
        .all(|&p| region::stripe_class(p as usize) == Some(c)));
    let held = region::in_use();
    assert!(held >= 64 << 20, "region holds {held} bytes");
    assert_eq!(stats().region_in_use as usize, held);
    let rss1 = resident_bytes();
    assert!(rss1 >= rss0 + (56 << 20), "RSS {rss0} -> {rss1}");
    for &p in &blocks {
        // SAFETY: a live block from `alloc`/`realloc`, freed once.
        unsafe { free(p) }.unwrap();
    }
    // Magazines and empty slabs go back, then the retained spans (the
    // update step inside reap gives those back).
    reap();
    let left = region::in_use();
    assert!(
        left + (56 << 20) <= held,
        "region holds {left} bytes after reap, {held} before"
    );
    let rss2 = resident_bytes();
    assert!(
        rss2 + (48 << 20) <= rss1,
        "RSS {rss1} -> {rss2}: the discarded spans kept their memory"
    );
}

#[test]
fn the_region_is_committed_in_rounds_as_one_mapping() {
    let _t = serial();
    let base = region::base().unwrap();
    // Use many classes, a few MiB each, so that several rounds are reached.
    let mut blocks = Vec::new();
    for c in 0..classes::COUNT {
        let n = classes::SIZES[c];
        for _ in 0..((3 << 20) / n).clamp(1, 2000) {
            let p = alloc(n, classes::natural_align(c), false);
            // SAFETY: a live block of `n` bytes, ours.
            unsafe { std::ptr::write_bytes(p, 1, n.min(64)) };
            blocks.push(p);
        }
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut inside = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (lo, hi) = f.next().unwrap().split_once('-').unwrap();
        let lo = usize::from_str_radix(lo, 16).unwrap();
        let hi = usize::from_str_radix(hi, 16).unwrap();
        if lo < base + region::LEN && hi > base {
            // Clipped to the region: the kernel merges the committed rounds
            // with an adjacent anonymous read-write mapping of someone
            // else's, so a mapping may begin below the base or end above it.
            let (lo, hi) = (lo.max(base), hi.min(base + region::LEN));
            inside.push((lo, hi, f.next().unwrap().to_string()));
        }
    }
    // The committed rounds (one read-write mapping from the base), then
    // the reserved rest (one inaccessible mapping), unless another test
    // (the one that takes every stripe of a class) committed it all.
    assert!((1..=2).contains(&inside.len()), "the region is {inside:?}");
    assert_eq!(inside[0].0, base);
    assert_eq!(&inside[0].2[..3], "rw-");
    assert_eq!((inside[0].1 - base) % region::ROUND, 0);
    assert!(inside[0].1 - base >= 2 * region::ROUND, "{inside:?}");
    if inside.len() == 2 {
        assert_eq!(&inside[1].2[..3], "---");
        assert_eq!(inside[1].1, base + region::LEN);
    }
    for &p in &blocks {
        assert!((p as usize) < inside[0].1);
    }
    for p in blocks {
        // SAFETY: a live block from `alloc`/`realloc`, freed once.
        unsafe { free(p) }.unwrap();
    }
}

/// Pages of `[addr, addr + len)` in memory, by `mincore`.
fn resident_pages(addr: usize, len: usize) -> usize {
    let lo = addr & !4095;
    let n = (addr + len - lo).div_ceil(4096);
    let mut v = vec![0u8; n];
    // SAFETY: `[lo, lo + n pages)` lies in the mapping of the static it
    // measures; `v` has a byte per page.
    let r = unsafe { libc::mincore(lo as *mut libc::c_void, n * 4096, v.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
    v.iter().filter(|&&b| b & 1 != 0).count()
}

#[test]
fn a_small_process_touches_one_row_of_the_stripe_bitmaps() {
    // In a process of its own: the test that takes every stripe of a class
    // touches the class's bit in every row.
    run_alone("stripe_bitmap_rows", || {
        let blocks: Vec<*mut u8> = (0..classes::COUNT)
            .map(|c| alloc(classes::SIZES[c], classes::natural_align(c), false))
            .collect();
        for &p in &blocks {
            assert!(region::stripe_class(p as usize).is_some());
        }
        // Every class took a stripe, each of them among its first 64: the
        // bitmaps' first words, one row of the word-major table, on one page
        // or across two. A third may be the table's last, shared with the
        // lock's other fields that every import writes. Class-major bitmaps
        // (a page each) had a page resident for every class (47).
        let (addr, len) = region::bitmap_span();
        assert!(len >= classes::COUNT * 4096, "a table of {len} bytes");
        let pages = resident_pages(addr, len);
        assert!(pages <= 3, "{pages} pages of the stripe bitmaps resident");
        for p in blocks {
            // SAFETY: a live block from `alloc`, freed once.
            unsafe { free(p) }.unwrap();
        }
    });
}
