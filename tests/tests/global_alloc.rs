//! The whole test binary runs with umem as its global allocator: the test
//! harness itself, std's collections, threads and channels all allocate
//! from umem. The tests below add randomized model checks of the raw
//! `GlobalAlloc` interface (every layout, realloc, alloc_zeroed) and
//! multi-threaded cross-thread frees with content checks.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;
use umem_global::Umem;
use umem_testkit::pattern::{check_with, fill_with, seeded};
use umem_testkit::Rng;

#[global_allocator]
static GLOBAL: Umem = Umem;

fn random_layout(r: &mut Rng) -> Layout {
    let size = match r.below(10) {
        0 => r.below(1 << 20) as usize,
        1 => r.below(140_000) as usize,
        2..=4 => r.below(4096) as usize,
        _ => r.below(256) as usize,
    };
    let align = match r.below(12) {
        0 => 1 << r.below(14),
        1 => 1 << r.below(7),
        _ => 1 << r.below(4),
    };
    Layout::from_size_align(size, align).unwrap()
}

struct Block {
    ptr: *mut u8,
    layout: Layout,
    seed: u64,
}

fn check(b: &Block) {
    // SAFETY: the block is live, `size` long, and only this thread touches it.
    unsafe { check_with(b.ptr, b.layout.size(), seeded(b.seed)) };
}

fn fill(b: &Block) {
    // SAFETY: as in check.
    unsafe { fill_with(b.ptr, 0..b.layout.size(), seeded(b.seed)) };
}

/// A model test: random alloc / alloc_zeroed / realloc / dealloc against a
/// BTreeMap of live ranges that must never overlap, with content checks.
#[test]
fn model_random_layouts() {
    let mut r = Rng::from_state(0x1234_5678_9abc_def1);
    let mut live: Vec<Block> = Vec::new();
    let mut ranges: BTreeMap<usize, usize> = BTreeMap::new();
    let overlaps = |ranges: &BTreeMap<usize, usize>, a: usize, len: usize| {
        let len = len.max(1);
        if let Some((&s, &l)) = ranges.range(..a + len).next_back() {
            if s + l.max(1) > a {
                return true;
            }
        }
        false
    };
    for step in 0..60_000u64 {
        let op = r.below(10);
        if op < 4 || live.is_empty() {
            let layout = random_layout(&mut r);
            let zero = r.below(3) == 0;
            // Non-zero sizes only for the raw interface.
            let layout = if layout.size() == 0 {
                Layout::from_size_align(1, layout.align()).unwrap()
            } else {
                layout
            };
            // SAFETY: a non-zero size (made so above) and a valid layout.
            let ptr = unsafe {
                if zero {
                    GLOBAL.alloc_zeroed(layout)
                } else {
                    GLOBAL.alloc(layout)
                }
            };
            assert!(!ptr.is_null(), "alloc {layout:?}");
            assert_eq!(ptr as usize % layout.align(), 0, "misaligned {layout:?}");
            if zero {
                // SAFETY: fresh block of layout.size() bytes.
                let s = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
                assert!(
                    s.iter().all(|&b| b == 0),
                    "alloc_zeroed not zero {layout:?}"
                );
            }
            assert!(
                !overlaps(&ranges, ptr as usize, layout.size()),
                "overlap at {ptr:p}"
            );
            ranges.insert(ptr as usize, layout.size());
            let b = Block {
                ptr,
                layout,
                seed: step,
            };
            fill(&b);
            live.push(b);
        } else if op < 6 {
            let i = r.below(live.len() as u64) as usize;
            let b = &mut live[i];
            check(b);
            let new_size = (random_layout(&mut r).size()).max(1);
            ranges.remove(&(b.ptr as usize));
            // SAFETY: live block with its layout; non-zero new size.
            let q = unsafe { GLOBAL.realloc(b.ptr, b.layout, new_size) };
            assert!(!q.is_null());
            assert_eq!(q as usize % b.layout.align(), 0, "realloc lost alignment");
            let keep = b.layout.size().min(new_size);
            let pattern = seeded(b.seed);
            for k in 0..keep {
                // SAFETY: q is live with at least `keep` bytes.
                assert_eq!(unsafe { *q.add(k) }, pattern(k), "realloc lost byte {k}");
            }
            assert!(!overlaps(&ranges, q as usize, new_size), "realloc overlap");
            ranges.insert(q as usize, new_size);
            b.ptr = q;
            b.layout = Layout::from_size_align(new_size, b.layout.align()).unwrap();
            fill(b);
        } else {
            let i = r.below(live.len() as u64) as usize;
            let b = live.swap_remove(i);
            check(&b);
            ranges.remove(&(b.ptr as usize));
            // SAFETY: live block with its layout.
            unsafe { GLOBAL.dealloc(b.ptr, b.layout) };
        }
    }
    for b in live {
        check(&b);
        // SAFETY: as above.
        unsafe { GLOBAL.dealloc(b.ptr, b.layout) };
    }
}

#[test]
fn std_collections() {
    let mut m: HashMap<String, Vec<u64>> = HashMap::new();
    for i in 0..50_000u64 {
        m.entry(format!("key{}", i % 20_000)).or_default().push(i);
    }
    assert_eq!(m.len(), 20_000);
    let total: u64 = m.values().map(|v| v.iter().sum::<u64>()).sum();
    assert_eq!(total, (0..50_000u64).sum());
    let mut v: Vec<String> = m.into_keys().collect();
    v.sort();
    assert_eq!(v[0], "key0");
    let mut s = String::new();
    for i in 0..100_000 {
        s.push(char::from(b'a' + (i % 26) as u8));
    }
    assert_eq!(s.len(), 100_000);
    let big: Vec<u8> = vec![7; 10 << 20];
    assert!(big.iter().all(|&b| b == 7));
    let z: Vec<u64> = vec![0; 1 << 20];
    assert!(z.iter().all(|&b| b == 0));
}

#[test]
fn over_aligned_types() {
    #[repr(align(64))]
    struct A64([u8; 64]);
    #[repr(align(4096))]
    struct A4k([u8; 100]);
    #[repr(align(65536))]
    struct A64k(u8);
    let v: Vec<Box<A64>> = (0..1000).map(|i| Box::new(A64([i as u8; 64]))).collect();
    for (i, b) in v.iter().enumerate() {
        assert_eq!(&**b as *const A64 as usize % 64, 0);
        assert_eq!(b.0[63], i as u8);
    }
    let p: Vec<Box<A4k>> = (0..50).map(|i| Box::new(A4k([i as u8; 100]))).collect();
    for (i, b) in p.iter().enumerate() {
        assert_eq!(&**b as *const A4k as usize % 4096, 0);
        assert_eq!(b.0[99], i as u8);
    }
    let q: Vec<Box<A64k>> = (0..8).map(|i| Box::new(A64k(i as u8))).collect();
    for (i, b) in q.iter().enumerate() {
        assert_eq!(&**b as *const A64k as usize % 65536, 0);
        assert_eq!(b.0, i as u8);
    }
}

#[test]
fn cross_thread_frees_with_content_checks() {
    let (tx, rx) = mpsc::sync_channel::<Vec<u64>>(256);
    let producers: Vec<_> = (0..3u64)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut r = Rng::from_state(t + 99);
                for k in 0..20_000u64 {
                    let n = if r.below(20) == 0 {
                        r.below(30_000)
                    } else {
                        r.below(100)
                    } as usize;
                    let v: Vec<u64> = (0..n as u64).map(|i| i ^ k ^ (t << 40)).collect();
                    tx.send(v).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let consumer = thread::spawn(move || {
        let mut count = 0;
        for v in rx {
            if let Some(&base) = v.first() {
                for (i, &x) in v.iter().enumerate() {
                    assert_eq!(x ^ base, i as u64, "content at {i}");
                }
            }
            count += 1;
        }
        count
    });
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(consumer.join().unwrap(), 60_000);
}

#[test]
fn many_threads_come_and_go() {
    for round in 0..20 {
        let hs: Vec<_> = (0..8)
            .map(|t| {
                thread::spawn(move || {
                    let v: Vec<Box<[u8]>> = (0..300)
                        .map(|i| vec![(t + round) as u8; (i * 37) % 3000 + 1].into_boxed_slice())
                        .collect();
                    v.iter().map(|b| b.len()).sum::<usize>()
                })
            })
            .collect();
        for h in hs {
            assert!(h.join().unwrap() > 0);
        }
    }
}

#[test]
fn large_blocks_return_memory() {
    // Allocate and free 1 GiB in 8 MiB blocks: the mapping must not grow
    // by anything like that.
    let before = umem_global::stats().mapped;
    for _ in 0..128 {
        let v: Vec<u8> = vec![1; 8 << 20];
        assert_eq!(v[(8 << 20) - 1], 1);
    }
    let after = umem_global::stats().mapped;
    assert!(
        after < before + (256 << 20),
        "mapped grew from {before} to {after}"
    );
}

#[test]
fn stats_and_reap() {
    let keep: Vec<Box<[u8; 100]>> = (0..10_000).map(|_| Box::new([3u8; 100])).collect();
    let s = umem_global::stats();
    let c = s
        .classes
        .iter()
        .find(|c| c.name == "umem_alloc_112")
        .unwrap();
    assert!(c.buf_in_use >= 10_000, "in use {}", c.buf_in_use);
    assert!(c.buf_total >= c.buf_in_use);
    assert!(s.arena("heap").is_some(), "no heap arena in stats");
    assert!(s.arena("umem_oversize").is_some());
    drop(keep);
    umem_global::reap();
    let s2 = umem_global::stats();
    let c2 = s2
        .classes
        .iter()
        .find(|c| c.name == "umem_alloc_112")
        .unwrap();
    // Other tests run concurrently, so allow some noise.
    assert!(
        c2.buf_in_use + 5_000 <= c.buf_in_use,
        "in use {} after reap, {} before",
        c2.buf_in_use,
        c.buf_in_use
    );
}

#[test]
fn freed_small_objects_go_back_to_the_system() {
    // 96 MiB in 1000-byte objects, freed and reaped: the page source must
    // unmap most of it (empty slabs go to their arenas, wholly free spans
    // to the kernel). Other tests run concurrently, so compare with the
    // peak and allow generous slack.
    let v: Vec<Box<[u8; 1000]>> = (0..96 * 1024).map(|i| Box::new([i as u8; 1000])).collect();
    let peak = umem_global::stats().mapped;
    assert!(v.iter().enumerate().all(|(i, b)| b[999] == i as u8));
    drop(v);
    umem_global::reap();
    let after = umem_global::stats().mapped;
    assert!(
        after + (64 << 20) < peak,
        "mapped {peak} at the peak, {after} after free + reap"
    );
}
