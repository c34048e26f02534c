//! Constant work per operation: umem-vmem's own kstats per operation as the
//! number of live segments grows from 10^2 to 10^6.
//!
//! For each pattern ([`Churn`]: free+alloc pair with N live; [`Fragmented`]:
//! alloc+free of 7 quanta beside N unusable holes) and each policy, it runs
//! steps on a fresh arena and prints the kstat deltas per step:
//! `search` (freelist segments examined by allocations) and `lookup` (extra
//! hash-chain steps taken by frees), plus the wall time per step (a rough
//! figure; the criterion benches in `vmem.rs` are the timing reference).
//!
//! Run: `cargo bench -p umem-microbench --bench vmem_kstats`. Under
//! `cargo test --benches` (no `--bench` argument) it stops at 10^4 live.

use std::time::{Duration, Instant};

use umem_microbench::{
    churn_span_quanta, frag_span_quanta, Churn, Fragmented, UmemArena, UMEM_POLICIES,
};
use umem_vmem::VmemStats;

const QUANTUM: usize = 4096;
const SEED: u64 = 0x05ee_d0fb;
/// Steps per row at most, and the time after which a row stops early.
const MAX_STEPS: u64 = 200_000;
const MAX_TIME: Duration = Duration::from_millis(300);

struct Row {
    steps: u64,
    search: f64,
    lookup: f64,
    ns: f64,
    hash_size: usize,
}

fn measure(vmem: &umem_vmem::Vmem, mut step: impl FnMut()) -> Row {
    let before: VmemStats = vmem.stats();
    let t = Instant::now();
    let mut steps = 0u64;
    while steps < MAX_STEPS && (steps < 100 || t.elapsed() < MAX_TIME) {
        for _ in 0..100 {
            step();
        }
        steps += 100;
    }
    let el = t.elapsed();
    let after = vmem.stats();
    Row {
        steps,
        search: (after.search - before.search) as f64 / steps as f64,
        lookup: (after.lookup - before.lookup) as f64 / steps as f64,
        ns: el.as_nanos() as f64 / steps as f64,
        hash_size: after.hash_size,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let lives: &[usize] = if full {
        &[100, 1_000, 10_000, 100_000, 1_000_000]
    } else {
        &[100, 10_000]
    };
    println!("umem-vmem kstats per step (quantum {QUANTUM}); search = freelist segments examined, lookup = extra hash-chain steps");
    println!(
        "{:<6} {:<8} {:>9} {:>8} {:>11} {:>11} {:>10} {:>10}",
        "patt", "policy", "live", "steps", "search/op", "lookup/op", "ns/op", "hash_size"
    );
    for (pname, policy) in UMEM_POLICIES {
        for &live in lives {
            let mut fx = Churn::new(
                UmemArena::new(churn_span_quanta(live), QUANTUM, policy, 0),
                live,
                SEED,
            );
            let v = fx.arena.vmem;
            let r = measure(v, || fx.step());
            v.verify().expect("verify after churn");
            print_row("pair", pname, live, &r);
        }
    }
    for (pname, policy) in UMEM_POLICIES {
        for &live in lives {
            let mut fx = Fragmented::new(
                UmemArena::new(frag_span_quanta(live), QUANTUM, policy, 0),
                live,
            );
            let v = fx.arena.vmem;
            let r = measure(v, || {
                fx.step();
            });
            v.verify().expect("verify after frag");
            print_row("frag", pname, live, &r);
        }
    }
    print_memory();
}

fn print_memory() {
    let heap = umem_vmem::heap().stats();
    println!(
        "after destroying every bench arena: {} segment structures on vmem's global free list; heap arena: {} KiB in use, {} KiB total",
        umem_vmem::global_free_segs(),
        heap.mem_inuse / 1024,
        heap.mem_total / 1024
    );
}

fn print_row(patt: &str, policy: &str, live: usize, r: &Row) {
    println!(
        "{:<6} {:<8} {:>9} {:>8} {:>11.3} {:>11.3} {:>10.1} {:>10}",
        patt, policy, live, r.steps, r.search, r.lookup, r.ns, r.hash_size
    );
}
