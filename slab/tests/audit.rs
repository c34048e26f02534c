//! Audit records with stacks (issue 12): the stack hook, the depth, both
//! transactions of a buffer (`Cache::audit_detail`) and the walk of the
//! buffers the program holds (`Cache::walk_audited`). A test binary of its
//! own: the stack hook and the depth are process-wide.

use std::ptr::NonNull;
use umem_slab::{stack_hash, CacheFlags};
use umem_testkit::{heap_arena, CacheBuilder};

/// A stack hook that records a fake stack: 0x1000 + n for n in 0..len, with
/// the first frame telling allocations (odd counter) from frees.
fn fake_stack(frames: &mut [usize]) -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let k = CALLS.fetch_add(1, Ordering::Relaxed);
    let n = frames.len().min(5);
    for (i, f) in frames.iter_mut().take(n).enumerate() {
        *f = 0x1000 + i + 0x100 * (k % 2);
    }
    n
}

#[test]
fn audit_keeps_both_stacks_and_walks_held_buffers() {
    assert_eq!(umem_slab::set_audit_depth(3), 3);
    umem_slab::set_stack_hook(fake_stack);
    let c = CacheBuilder::new("audit_stacks", 64, heap_arena("t_audit_stacks", 4096))
        .flags(CacheFlags::AUDIT | CacheFlags::NOMAGAZINE)
        .create();
    // The depth is fixed once umem-slab is initialised.
    assert_eq!(umem_slab::set_audit_depth(9), 3);
    assert_eq!(umem_slab::audit_depth(), 3);
    let held: Vec<NonNull<u8>> = (0..10).map(|_| c.alloc().unwrap()).collect();
    let gone = c.alloc().unwrap();
    // SAFETY: from this cache's `alloc`, freed once.
    unsafe { c.free(gone) };
    let d = c.audit_detail(gone).unwrap();
    assert_eq!(d.buf, gone.as_ptr() as usize);
    assert!(!d.record.allocated);
    assert_eq!(d.alloc.stack.frames().len(), 3, "depth 3 of the hook's 5");
    assert_eq!(d.free.stack.frames().len(), 3);
    assert_ne!(d.alloc.stack.frames(), d.free.stack.frames());
    assert!(d.free.timestamp_ns >= d.alloc.timestamp_ns);
    assert_ne!(d.alloc.thread, 0);
    // An interior pointer names its buffer.
    let inside = NonNull::new(held[3].as_ptr().wrapping_add(10)).unwrap();
    assert_eq!(
        c.audit_detail(inside).unwrap().buf,
        held[3].as_ptr() as usize
    );
    let mut seen = Vec::new();
    c.walk_audited(&mut |b| seen.push(*b));
    assert_eq!(seen.len(), held.len(), "the freed buffer is not held");
    for b in &seen {
        assert!(held.iter().any(|p| p.as_ptr() as usize == b.addr));
        assert_eq!(b.size, c.buf_size());
        let d = c
            .audit_detail(NonNull::new(b.addr as *mut u8).unwrap())
            .unwrap();
        assert_eq!(b.stack_hash, stack_hash(d.alloc.stack.frames()));
    }
    for p in held {
        // SAFETY: from this cache's `alloc`, freed once.
        unsafe { c.free(p) };
    }
    let mut n = 0;
    c.walk_audited(&mut |_| n += 1);
    assert_eq!(n, 0);
}
