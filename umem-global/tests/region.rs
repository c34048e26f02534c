//! The class region: every size class's blocks come from its own slice of
//! one address-space reservation, so `free` finds the class from the address;
//! a full slice falls back to `umem_default` (blocks then found through the
//! page map); spans given back are discarded, so their memory returns to the
//! kernel. The tests take turns (one of them fills a slice that another
//! checks).

use umem_global::classes;
use umem_global::region::{self, SLICE, SLICE_SHIFT};
use umem_global::{alloc, free, owner, reap, stats, usable_size, Owner};

static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn class_of_size(n: usize) -> usize {
    classes::SIZES.iter().position(|&s| s == n).unwrap()
}

fn resident_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn every_class_lives_in_its_own_slice() {
    let _t = turn();
    // Force init.
    let p = alloc(1, 1, false);
    unsafe { free(p) }.unwrap();
    let base = region::base().expect("no class region was reserved");
    assert_eq!(stats().region_reserved as usize, region::LEN);
    for c in 0..classes::COUNT {
        let (n, a) = (classes::SIZES[c], classes::align_of(c));
        let p = alloc(n, a, false);
        assert!(!p.is_null());
        let addr = p as usize;
        assert_eq!(region::class_of(addr), Some(c), "class {n}: {addr:#x}");
        assert_eq!((addr - base) >> SLICE_SHIFT, c);
        assert_eq!(owner(p), Owner::Small(c));
        assert_eq!(usable_size(p), Some(n));
        unsafe { std::ptr::write_bytes(p, 0x5a, n) };
        unsafe { free(p) }.unwrap();
        // The C-style free put it on this thread's magazine: the next
        // allocation of the class gets it back.
        let q = alloc(n, a, false);
        assert_eq!(q, p, "class {n}: freed block not reused");
        unsafe { free(q) }.unwrap();
    }
    // Nothing outside the region is taken for a class block.
    assert_eq!(region::class_of(base.wrapping_sub(1)), None);
    assert_eq!(region::class_of(base + region::LEN), None);
    assert_eq!(region::class_of(0), None);
    assert_eq!(region::class_of(usize::MAX), None);
}

#[test]
fn a_full_slice_falls_back_to_umem_default() {
    let _t = turn();
    let n = 4544;
    let c = class_of_size(n);
    let p0 = alloc(n, 16, false);
    unsafe { free(p0) }.unwrap();
    let slice = region::slice_arena(c).expect("no slice arena");
    // Take every free byte of the slice (address space only; nothing is
    // touched): big pieces first, then pages.
    let mut taken = Vec::new();
    for piece in [1 << 30, 1 << 24, 1 << 16, 4096] {
        while let Some(a) = umem_vmem::Source::import(slice, piece, 4096) {
            taken.push((a, piece));
        }
    }
    let held: usize = taken.iter().map(|t| t.1).sum();
    assert!(held > SLICE / 2, "took only {held} bytes of the slice");

    // 16 MiB of the class: the slabs already in the class arena are used
    // up, then spans come from umem_default, outside the region.
    let count = (16 << 20) / n;
    let blocks: Vec<*mut u8> = (0..count)
        .map(|i| {
            let p = alloc(n, 16, false);
            assert!(!p.is_null());
            unsafe { std::ptr::write_bytes(p, i as u8, n) };
            p
        })
        .collect();
    let outside = blocks
        .iter()
        .filter(|&&p| region::class_of(p as usize).is_none())
        .count();
    assert!(
        outside > count / 2,
        "{outside} of {count} blocks outside the region"
    );
    for (i, &p) in blocks.iter().enumerate() {
        assert_eq!(owner(p), Owner::Small(c));
        let s = unsafe { std::slice::from_raw_parts(p, n) };
        assert!(s.iter().all(|&b| b == i as u8), "block {i} overwritten");
    }
    for &p in &blocks {
        unsafe { free(p) }.unwrap();
    }
    for (a, len) in taken {
        umem_vmem::Source::release(slice, a, len);
    }
    // The slice serves the class again.
    reap();
    let p = alloc(n, 16, false);
    assert!(region::class_of(p as usize).is_some() || owner(p) == Owner::Small(c));
    unsafe { free(p) }.unwrap();
}

#[test]
fn spans_given_back_are_discarded() {
    let _t = turn();
    let n = 2688;
    let c = class_of_size(n);
    let count = (64 << 20) / n;
    let rss0 = resident_bytes();
    let blocks: Vec<*mut u8> = (0..count)
        .map(|i| {
            let p = alloc(n, 16, false);
            assert!(!p.is_null());
            unsafe { std::ptr::write_bytes(p, i as u8 | 1, n) };
            p
        })
        .collect();
    assert!(blocks
        .iter()
        .all(|&p| region::class_of(p as usize) == Some(c)));
    let slice = region::slice_arena(c).unwrap();
    let held = slice.stats().mem_inuse as usize;
    assert!(held >= 64 << 20, "slice holds {held} bytes");
    assert!(stats().region_in_use as usize >= held);
    let rss1 = resident_bytes();
    assert!(rss1 >= rss0 + (56 << 20), "RSS {rss0} -> {rss1}");
    for &p in &blocks {
        unsafe { free(p) }.unwrap();
    }
    // Magazines and empty slabs go back, then the retained spans (the
    // update step inside reap gives those back).
    reap();
    let left = slice.stats().mem_inuse as usize;
    assert!(left < 4 << 20, "slice still holds {left} bytes");
    let rss2 = resident_bytes();
    assert!(
        rss2 + (48 << 20) <= rss1,
        "RSS {rss1} -> {rss2}: the discarded spans kept their memory"
    );
}

/// The permissions of the mapping holding `a`, from /proc/self/maps.
fn perms_at(a: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let range = f.next().unwrap();
        let perms = f.next().unwrap();
        let (lo, hi) = range.split_once('-').unwrap();
        let lo = usize::from_str_radix(lo, 16).unwrap();
        let hi = usize::from_str_radix(hi, 16).unwrap();
        if (lo..hi).contains(&a) {
            return perms.to_string();
        }
    }
    panic!("{a:#x} is not mapped");
}

#[test]
fn only_spans_in_use_are_accessible() {
    let _t = turn();
    let n = 1344;
    let c = class_of_size(n);
    let p = alloc(n, 16, false);
    unsafe { std::ptr::write_bytes(p, 1, n) };
    let base = region::base().unwrap();
    assert_eq!(&perms_at(p as usize)[..3], "rw-");
    // The end of the slice was never imported: reserved, inaccessible (and
    // so left out of core dumps).
    let end = base + (c << SLICE_SHIFT) + SLICE - 4096;
    assert_eq!(&perms_at(end)[..3], "---");
    // A span given back is inaccessible again.
    let count = (8 << 20) / n;
    let blocks: Vec<*mut u8> = (0..count).map(|_| alloc(n, 16, false)).collect();
    let last = *blocks.iter().max().unwrap() as usize;
    unsafe { std::ptr::write_bytes(last as *mut u8, 2, n) };
    assert_eq!(&perms_at(last)[..3], "rw-");
    for &b in &blocks {
        unsafe { free(b) }.unwrap();
    }
    reap();
    assert_eq!(
        &perms_at(last)[..3],
        "---",
        "a span given back is still accessible"
    );
    unsafe { free(p) }.unwrap();
}
