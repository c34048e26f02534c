//! Issue 12, part B: `umem_global::find_leaks` through `Umem` as the global
//! allocator, in a re-executed child with `UMEM_DEBUG=audit` (the options
//! are read by the first allocation, so they must be in the environment
//! before the process starts).

use std::hint::black_box;
use umem_global::{find_leaks, Umem};
use umem_testkit::child::Child;

#[global_allocator]
static GLOBAL: Umem = Umem;

const LEAKED: usize = 100;
const KEPT: usize = 30;

/// Blocks kept reachable from a static (each its own heap block, so boxed).
#[allow(clippy::vec_box)]
static KEEP: std::sync::Mutex<Vec<Box<[u64; 9]>>> = std::sync::Mutex::new(Vec::new());

#[inline(never)]
fn leak_some() {
    for _ in 0..LEAKED {
        let b = black_box(Box::new([7u64; 5]));
        std::mem::forget(b);
    }
}

#[inline(never)]
fn keep_some() {
    let mut k = KEEP.lock().unwrap();
    for _ in 0..KEPT {
        k.push(Box::new([9u64; 9]));
    }
}

/// Zeroes the dead stack below the caller, where the pointers `leak_some`
/// handled may still lie.
#[inline(never)]
fn clobber_stack() {
    let buf = [0u8; 64 << 10];
    black_box(&buf);
}

/// Whether one of `frames` is a return address inside `f`: after its
/// start, before the start of `other` if that comes after it, and less
/// than 4 KiB into it.
fn in_fn(frames: &[usize], f: usize, other: usize) -> bool {
    let end = if other > f {
        other.min(f + 4096)
    } else {
        f + 4096
    };
    frames.iter().any(|&pc| pc > f && pc < end)
}

#[test]
fn find_leaks_groups_leaked_boxes_by_their_stack() {
    let out = Child::new("leaks")
        .env("UMEM_DEBUG", "audit=40")
        .env_remove("UMEM_OPTIONS")
        .run(|| {
            keep_some();
            leak_some();
            clobber_stack();
            let r = find_leaks();
            assert!(r.enabled);
            r.print(1);
            let leak_fn = leak_some as fn() as usize;
            let keep_fn = keep_some as fn() as usize;
            let ours: Vec<_> = r
                .groups()
                .iter()
                .filter(|g| in_fn(g.frames(), leak_fn, keep_fn))
                .collect();
            assert_eq!(ours.len(), 1, "one group for leak_some");
            assert_eq!(ours[0].count, LEAKED);
            assert_eq!(ours[0].bytes, LEAKED * 48, "40-byte boxes in umem_alloc_48");
            assert_eq!(ours[0].cache, "umem_alloc_48");
            assert!(
                !r.groups()
                    .iter()
                    .any(|g| in_fn(g.frames(), keep_fn, leak_fn)),
                "kept blocks reported as leaked"
            );
            assert!(r.leaked >= LEAKED && r.blocks >= LEAKED + KEPT);
            println!("find_leaks: OK");
        });
    if let Some(o) = out {
        assert!(
            o.status.success() && o.stdout.contains("find_leaks: OK"),
            "{}",
            o.show()
        );
        assert!(o.stdout.contains("umem: findleaks (pid "), "{}", o.show());
    }
}

#[test]
fn find_leaks_without_audit_scans_nothing() {
    let out = Child::new("noaudit").env_remove("UMEM_DEBUG").run(|| {
        let v = black_box(vec![1u8; 100]);
        let r = find_leaks();
        assert!(!r.enabled);
        assert!(r.groups().is_empty());
        drop(v);
        println!("noaudit: OK");
    });
    if let Some(o) = out {
        assert!(o.stdout.contains("noaudit: OK"), "{}", o.show());
    }
}
