//! A quick sanity timing (not a benchmark suite, not a test): ns per
//! alloc+free pair at 10^2, 10^4 and 10^6 live segments, per policy, plus
//! the search and lookup kstats per operation, which should stay flat.
//!
//!     cargo run --release -p umem-vmem --example pairs [scenario [live [policy]]]
//!
//! The criterion benches beside other allocators live in benches/micro.

use std::time::Instant;
use umem_vmem::{CreateFlags, Policy, Vmem, VmemStats};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn per_op(a: &VmemStats, b: &VmemStats, ops: u64) -> (f64, f64) {
    (
        (b.search - a.search) as f64 / ops as f64,
        (b.lookup - a.lookup) as f64 / ops as f64,
    )
}

fn arena() -> &'static Vmem {
    Vmem::create(
        "pairs",
        Some((1 << 32, 1 << 44)),
        16,
        None,
        0,
        CreateFlags::NONE,
    )
    .unwrap()
}

/// L live segments of 64, then pairs of alloc(64)+free at the same spot.
fn steady(live: usize, pairs: usize, policy: Policy) -> (f64, f64, f64) {
    let a = arena();
    let held: Vec<usize> = (0..live)
        .map(|_| a.alloc(64, Policy::InstantFit).unwrap())
        .collect();
    umem_vmem::update();
    let s0 = a.stats();
    let t = Instant::now();
    for _ in 0..pairs {
        let p = a.alloc(64, policy).unwrap();
        a.free(p, 64).unwrap();
    }
    let ns = t.elapsed().as_nanos() as f64 / pairs as f64;
    let (s, l) = per_op(&s0, &a.stats(), 2 * pairs as u64);
    for p in held {
        a.free(p, 64).unwrap();
    }
    // SAFETY: this arena was made by this function, everything allocated
    // from it was freed above, and it is not used afterwards.
    unsafe { a.destroy() };
    (ns, s, l)
}

/// Heavy fragmentation: 2L segments, every other one freed (L live, L
/// holes), then pairs that free a random live segment and allocate a
/// random size (16..1024).
fn fragmented(live: usize, pairs: usize, policy: Policy) -> (f64, f64, f64) {
    let a = arena();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut held: Vec<(usize, usize)> = Vec::with_capacity(2 * live);
    for _ in 0..2 * live {
        let n = 16 * (1 + (rng.next() % 64) as usize);
        held.push((a.alloc(n, Policy::InstantFit).unwrap(), n));
    }
    let mut keep = Vec::with_capacity(live);
    for (i, (p, n)) in held.into_iter().enumerate() {
        if i % 2 == 0 {
            a.free(p, n).unwrap();
        } else {
            keep.push((p, n));
        }
    }
    umem_vmem::update();
    let s0 = a.stats();
    let t = Instant::now();
    for _ in 0..pairs {
        let i = (rng.next() % keep.len() as u64) as usize;
        let (p, n) = keep[i];
        a.free(p, n).unwrap();
        let m = 16 * (1 + (rng.next() % 64) as usize);
        keep[i] = (a.alloc(m, policy).unwrap(), m);
    }
    let ns = t.elapsed().as_nanos() as f64 / pairs as f64;
    let (s, l) = per_op(&s0, &a.stats(), 2 * pairs as u64);
    for (p, n) in keep {
        a.free(p, n).unwrap();
    }
    // SAFETY: this arena was made by this function, everything allocated
    // from it was freed above, and it is not used afterwards.
    unsafe { a.destroy() };
    (ns, s, l)
}

/// Churn (like benches/micro's "pair"): L live segments of 1..8 quanta of
/// 4096; each pair frees a slot (in a shuffled order) and allocates the
/// same size again.
fn churn(live: usize, pairs: usize, policy: Policy) -> (f64, f64, f64) {
    let q = 4096;
    let a = Vmem::create(
        "churn",
        Some((1 << 32, (live * 32 + (1 << 20)) * q)),
        q,
        None,
        0,
        CreateFlags::NONE,
    )
    .unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut slots: Vec<(usize, usize)> = (0..live)
        .map(|_| {
            let n = q * (1 + (rng.next() % 8) as usize);
            (a.alloc(n, policy).unwrap(), n)
        })
        .collect();
    let mut order: Vec<usize> = (0..live).collect();
    for i in (1..live).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    umem_vmem::update();
    let s0 = a.stats();
    let t = Instant::now();
    let mut pos = 0;
    for _ in 0..pairs {
        let i = order[pos];
        pos = if pos + 1 == live { 0 } else { pos + 1 };
        let (p, n) = slots[i];
        a.free(p, n).unwrap();
        slots[i].0 = a.alloc(n, policy).unwrap();
    }
    let ns = t.elapsed().as_nanos() as f64 / pairs as f64;
    let (s, l) = per_op(&s0, &a.stats(), 2 * pairs as u64);
    for (p, n) in slots {
        a.free(p, n).unwrap();
    }
    // SAFETY: this arena was made by this function, everything allocated
    // from it was freed above, and it is not used afterwards.
    unsafe { a.destroy() };
    (ns, s, l)
}

fn main() {
    // Optional filters: scenario (steady|fragmented) and live count.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |scenario: &str, live: usize| {
        (args.is_empty() || args[0] == scenario) && (args.len() < 2 || args[1] == live.to_string())
    };
    let want_policy = |p: Policy| {
        args.len() < 3
            || format!("{p:?}")
                .to_lowercase()
                .starts_with(&args[2].to_lowercase())
    };
    let policies = [
        Policy::InstantFit,
        Policy::BestFit,
        Policy::FirstFit,
        Policy::NextFit,
    ];
    println!(
        "{:<12} {:>9} {:>12} {:>10} {:>10}",
        "scenario", "live", "ns/pair", "search/op", "lookup/op"
    );
    for &live in &[100usize, 10_000, 1_000_000] {
        for &pol in &policies {
            if want("steady", live) && want_policy(pol) {
                let (ns, s, l) = steady(live, 2_000_000, pol);
                println!(
                    "{:<12} {:>9} {:>12.1} {:>10.2} {:>10.2}  {:?}",
                    "steady", live, ns, s, l, pol
                );
            }
        }
    }
    for &live in &[100usize, 10_000, 1_000_000] {
        for &pol in &policies {
            if want("churn", live) && want_policy(pol) {
                let (ns, s, l) = churn(live, 1_000_000, pol);
                println!(
                    "{:<12} {:>9} {:>12.1} {:>10.2} {:>10.2}  {:?}",
                    "churn", live, ns, s, l, pol
                );
            }
        }
    }
    for &live in &[100usize, 10_000, 1_000_000] {
        for &pol in &policies {
            if want("fragmented", live) && want_policy(pol) {
                // Best/first/next fit search long freelists when
                // fragmented: fewer pairs keep the run short.
                let pairs = if pol == Policy::InstantFit {
                    1_000_000
                } else {
                    1_000_000 / (live / 100).max(1) + 1000
                };
                let (ns, s, l) = fragmented(live, pairs, pol);
                println!(
                    "{:<12} {:>9} {:>12.1} {:>10.2} {:>10.2}  {:?}",
                    "fragmented", live, ns, s, l, pol
                );
            }
        }
    }
}
