//! The depot's full magazines: reused in address order (`depot.rs`, "Address order") and
//! by the CPU that filled them (`FullLists`).

use umem_testkit::cpus::{online_cpus, pin};
use umem_testkit::{cache, heap_arena, span_arena};
use umem_vmem::Vmem;

fn arena(name: &str) -> &'static Vmem {
    // No inline periodic update: it could reap the depot the tests look at.
    umem_slab::set_update_interval_ms(0);
    heap_arena(name, 4096)
}

#[test]
fn a_heap_freed_in_a_zigzag_is_reused_in_address_order() {
    // sh6bench's pattern through a real cache: grow a heap, free every other buffer going
    // forward and the rest going back, grow it again. The depot holds hundreds of full
    // magazines then and, since this heap was laid out upward as it grew (slabs from one
    // span, as umem-global's class regions grow), hands them out lowest first
    // (`depot.rs`, "Address order"): each KiB of the heap is reused within a short stretch
    // of the second growth. Last in, first out reuses its odd buffers in the first half
    // and its even ones in the second.
    let heap = umem_vmem::heap();
    let size = 8 << 20;
    let mem = heap.alloc(size, umem_vmem::Policy::InstantFit).unwrap();
    let a = span_arena("t_zigzag", mem, size, 4096);
    let c = cache("zigzag", 64, a);
    let n = 40_000;
    let v: Vec<_> = (0..n).map(|_| c.alloc().unwrap()).collect();
    for p in v.iter().step_by(2) {
        // SAFETY: allocated above, freed once.
        unsafe { c.free(*p) };
    }
    for p in v.iter().skip(1).step_by(2).rev() {
        // SAFETY: allocated above, freed once.
        unsafe { c.free(*p) };
    }
    assert!(c.stats().depot_full > 100, "{:?}", c.stats());
    let w: Vec<_> = (0..n).map(|_| c.alloc().unwrap()).collect();
    let mut first = std::collections::HashMap::new();
    let mut spans = Vec::new();
    for (i, p) in w.iter().enumerate() {
        let f = *first.entry(p.as_ptr() as usize >> 10).or_insert(i);
        spans.push(i - f);
    }
    spans.sort_unstable();
    // Last in, first out: about n / 2 for nearly every KiB.
    let p90 = spans[spans.len() * 9 / 10];
    assert!(
        p90 < 2_000,
        "90% of reuses within {p90} allocations of their KiB's first"
    );
    for p in w {
        // SAFETY: allocated above, freed once.
        unsafe { c.free(p) };
    }
    // SAFETY: the test made these and nothing uses them after this (no other users).
    unsafe {
        c.destroy().unwrap();
        a.destroy();
    }
    heap.free(mem, size).unwrap();
}

#[test]
fn a_thread_reuses_the_heap_it_freed() {
    // Two threads on two CPUs each grow a heap and free it; when each grows again it gets
    // its own blocks back, from its CPU's list of full magazines in the depot
    // (`depot.rs`, `FullLists`), not the other thread's lines. B's heap lies lower (it grew
    // first), so one shared address-ordered list would hand A B's blocks.
    let cpus = online_cpus();
    if cpus.len() < 2 {
        eprintln!("one CPU: nothing to test");
        return;
    }
    let a = arena("t_own");
    let c = cache("own", 64, a);
    let n = 20_000;
    let phase = std::sync::Arc::new(std::sync::Barrier::new(2));
    let run = |cpu: usize, first: bool| {
        let phase = phase.clone();
        std::thread::spawn(move || {
            pin(0, &[cpu]);
            let grow = || (0..n).map(|_| c.alloc().unwrap()).collect::<Vec<_>>();
            // B grows first, then A; both free; A grows again first, then B.
            if !first {
                phase.wait();
            }
            let v = grow();
            if first {
                phase.wait();
            }
            phase.wait();
            for p in &v {
                // SAFETY: allocated above, freed once.
                unsafe { c.free(*p) };
            }
            phase.wait();
            if first {
                phase.wait();
            }
            let w = grow();
            if !first {
                phase.wait();
            }
            let mine: std::collections::HashSet<usize> =
                v.iter().map(|p| p.as_ptr() as usize).collect();
            let own = w
                .iter()
                .filter(|p| mine.contains(&(p.as_ptr() as usize)))
                .count();
            for p in w {
                // SAFETY: allocated above, freed once.
                unsafe { c.free(p) };
            }
            own
        })
    };
    let b = run(cpus[1], true);
    let a_ = run(cpus[0], false);
    let (own_a, own_b) = (a_.join().unwrap(), b.join().unwrap());
    assert!(
        own_a * 10 >= n * 9,
        "A got {own_a} of {n} of its own blocks back"
    );
    assert!(
        own_b * 10 >= n * 9,
        "B got {own_b} of {n} of its own blocks back"
    );
    c.reap();
    umem_slab::thread_exit_flush();
    c.reap();
    // SAFETY: the test made it and nothing uses it after this (no other users).
    unsafe { c.destroy().unwrap() };
}
