//! The `vmem_pair` pattern outside criterion, for profilers (`perf record`):
//! `cargo run --release -p umem-microbench --example churn -- ROW LIVE STEPS`
//! with ROW one of `instant`, `instant-handle`, `next-handle`, `offset`.
//! Prints ns per free+alloc pair (one run, no statistics: use the criterion
//! bench for numbers).

use std::time::Instant;
use umem_microbench::{churn_span_quanta, Churn, RangeArena, UmemArena, UmemHandleArena};
use umem_vmem::Policy;

const QUANTUM: usize = 4096;

struct Offset(offset_allocator::Allocator);

impl RangeArena for Offset {
    type Handle = offset_allocator::Allocation;
    fn alloc(&mut self, quanta: usize) -> Option<Self::Handle> {
        self.0.allocate(quanta as u32)
    }
    fn free(&mut self, h: Self::Handle, _quanta: usize) {
        self.0.free(h)
    }
    fn start(h: &Self::Handle) -> usize {
        h.offset as usize
    }
}

fn run<A: RangeArena>(arena: A, live: usize, steps: usize) -> Churn<A> {
    let mut fx = Churn::new(arena, live, 0x05ee_d0fb);
    for _ in 0..live.min(steps) {
        fx.step();
    }
    let t = Instant::now();
    for _ in 0..steps {
        fx.step();
    }
    println!(
        "{:.1} ns/pair",
        t.elapsed().as_nanos() as f64 / steps as f64
    );
    fx
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let row = args.get(1).map_or("instant-handle", |s| s.as_str());
    let live: usize = args.get(2).map_or(10_000, |s| s.parse().unwrap());
    let steps: usize = args.get(3).map_or(10_000_000, |s| s.parse().unwrap());
    let span = churn_span_quanta(live);
    if std::env::var_os("CHURN_PRE").is_some() {
        // Recycle segment structures first, as the rows before this one do
        // in the criterion bench.
        for _ in 0..4 {
            let mut fx = Churn::new(
                UmemArena::new(span, QUANTUM, Policy::InstantFit, 0),
                live,
                1,
            );
            for _ in 0..live * 10 {
                fx.step();
            }
        }
    }
    match row {
        "instant" => {
            let fx = run(
                UmemArena::new(span, QUANTUM, Policy::InstantFit, 0),
                live,
                steps,
            );
            println!("{:?}", fx.arena.vmem.stats());
        }
        "instant-handle" | "next-handle" => {
            let policy = if row == "instant-handle" {
                Policy::InstantFit
            } else {
                Policy::NextFit
            };
            let fx = run(UmemHandleArena::new(span, QUANTUM, policy, 0), live, steps);
            println!("{:?}", fx.arena.0.vmem.stats());
        }
        "offset" => {
            let a =
                offset_allocator::Allocator::with_max_allocs(span as u32, (live * 4 + 4096) as u32);
            run(Offset(a), live, steps);
        }
        _ => panic!("unknown row {row}"),
    }
}
