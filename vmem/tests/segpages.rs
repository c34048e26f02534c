//! `update()` gives segment pages back. Its own test binary: it measures the
//! global `vmem_seg` arena, which tests running beside it in the same process
//! would pin (segments of their arenas share its chunks).

use umem_testkit::span_arena;
use umem_vmem::Policy;

/// Segment structures of a destroyed (or shrunk) arena go back: `update()`
/// moves excess reserves to the global list and gives every wholly free
/// chunk of structures back to `vmem_seg`.
#[test]
fn update_gives_segment_pages_back() {
    const N: usize = 100_000;
    let a = span_arena("segpages", 1 << 40, 1 << 30, 1);
    let mut seg_arena = None;
    umem_vmem::for_each_arena(&mut |vm| {
        if vm.name() == "vmem_seg" {
            seg_arena = Some(vm);
        }
    });
    let seg_arena = seg_arena.unwrap();
    // Every other unit allocated: N segments and N free holes.
    let v: Vec<usize> = (0..2 * N)
        .map(|_| a.alloc(1, Policy::InstantFit).unwrap())
        .collect();
    for x in v.iter().step_by(2) {
        a.free(*x, 1).unwrap();
    }
    a.verify().unwrap();
    let held = seg_arena.stats().mem_inuse;
    assert!(held >= (2 * N * 64) as u64, "vmem_seg holds {held}");
    // Shrinking: the freed structures sit in the arena's reserve; update
    // hands the excess to the global list (pages still partly in use by
    // the arena's live segments are kept).
    for x in v.iter().skip(1).step_by(2) {
        a.free(*x, 1).unwrap();
    }
    eprintln!("global before {}", umem_vmem::global_free_segs());
    umem_vmem::update();
    eprintln!(
        "global after {} stats {:?}",
        umem_vmem::global_free_segs(),
        a.stats()
    );
    a.verify().unwrap();
    let after_shrink = seg_arena.stats().mem_inuse;
    assert!(
        after_shrink < held / 2,
        "update after the arena shrank: vmem_seg still holds {after_shrink} of {held}"
    );
    // The arena still works with its trimmed reserve.
    let x = a.alloc(5, Policy::InstantFit).unwrap();
    a.free(x, 5).unwrap();
    // SAFETY: test-local arena.
    unsafe { assert_eq!(a.destroy(), 0) };
    umem_vmem::update();
    umem_vmem::verify().unwrap();
    let after_destroy = seg_arena.stats().mem_inuse;
    assert!(after_destroy <= after_shrink + (1 << 20));
    assert!(umem_vmem::global_free_segs() < N);
}
