//! Quick measurement of umem's Rust path (`GlobalAlloc` with the size on
//! dealloc: no page-map lookup) beside the system allocator, in one process.
//! `cargo run --release -p umem-global --example rust_bench`

use std::alloc::{GlobalAlloc, Layout, System};
use std::time::Instant;
use umem_global::Umem;

fn churn<A: GlobalAlloc>(a: &A, name: &str) {
    const SLOTS: usize = 1000;
    const OPS: usize = 20_000_000;
    let mut slot: Vec<(*mut u8, Layout)> = vec![(std::ptr::null_mut(), Layout::new::<u8>()); SLOTS];
    let mut s: u64 = 42;
    let t = Instant::now();
    for i in 0..OPS {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let k = (s % SLOTS as u64) as usize;
        let (p, l) = slot[k];
        if !p.is_null() {
            // SAFETY: allocated below with layout l.
            unsafe { a.dealloc(p, l) };
        }
        let l = Layout::from_size_align(16 + ((s >> 20) % 497) as usize, 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(l) };
        // SAFETY: fresh block.
        unsafe { *p = i as u8 };
        slot[k] = (p, l);
    }
    let dt = t.elapsed();
    for (p, l) in slot {
        // SAFETY: as above.
        unsafe { a.dealloc(p, l) };
    }
    println!(
        "{name:8} small-churn {:6.1} ns per alloc+dealloc",
        dt.as_nanos() as f64 / OPS as f64
    );
}

fn hit<A: GlobalAlloc>(a: &A, name: &str) {
    const N: usize = 10_000_000;
    let l = Layout::from_size_align(64, 8).unwrap();
    let mut v = [std::ptr::null_mut(); 16];
    let t = Instant::now();
    for _ in 0..N {
        for p in v.iter_mut() {
            // SAFETY: non-zero size.
            *p = std::hint::black_box(unsafe { a.alloc(l) });
        }
        for p in v.iter() {
            // SAFETY: allocated just above with l.
            unsafe { a.dealloc(std::hint::black_box(*p), l) };
        }
    }
    let dt = t.elapsed();
    println!(
        "{name:8} hit         {:6.1} ns per alloc+dealloc",
        dt.as_nanos() as f64 / (N * 16) as f64
    );
}

fn main() {
    for _ in 0..2 {
        hit(&Umem, "umem");
        hit(&System, "system");
        churn(&Umem, "umem");
        churn(&System, "system");
    }
}
