//! Model-based randomized tests: drive arenas with random operations beside
//! an obviously correct reference model (a BTreeMap of live ranges and a
//! list of spans) and check every answer, the kstats and `verify()`.
// These tests rely on the lazily built tree (feature `std`).
#![cfg(feature = "std")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use umem_testkit::pattern::{check_bytes, fill_bytes};
use umem_testkit::{bf_fits, child_arena, round_up, span_arena, Rng, POLICIES};
use umem_vmem::{Policy, SegHandle, SegType, SegTypes, Vmem, VmemError, WalkMode, XAllocRequest};

#[derive(Clone, Copy, PartialEq, Debug)]
enum How {
    Alloc,
    X,
    /// `alloc_handle` / `xalloc_handle`: freed with `free_handle`.
    Handle,
}

#[derive(Clone, Copy, Debug)]
struct Req {
    size: usize,
    align: usize,
    phase: usize,
    nocross: usize,
    minaddr: Option<usize>,
    maxaddr: Option<usize>,
    policy: Policy,
}

struct Harness {
    a: &'static Vmem,
    parent: Option<&'static Vmem>,
    q: usize,
    live: BTreeMap<usize, (usize, How)>,
    /// The handles of the `How::Handle` entries of `live`.
    handles: HashMap<usize, SegHandle>,
    keys: Vec<usize>,
    /// Spans of a source-less arena, as the arena should have them.
    spans: Vec<(usize, usize)>,
    rng: Rng,
    ops: usize,
    allow_add: bool,
    /// Highest address the test may add spans below.
    addr_limit: usize,
    exhausted: usize,
    successes: usize,
    handle_allocs: usize,
}

impl Harness {
    fn free_segs(&self) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        self.a
            .walk(SegTypes::FREE, WalkMode::Locked, &mut |_, a, n| {
                v.push((a, n))
            });
        v
    }

    fn inuse(&self) -> u64 {
        self.live
            .values()
            .map(|&(s, _)| round_up(s, self.q) as u64)
            .sum()
    }

    fn check_new(&self, addr: usize, size: usize) {
        let q = self.q;
        let real = round_up(size, q);
        assert_eq!(addr % q, 0, "result {addr:#x} not quantum aligned");
        if let Some((&pa, &(ps, _))) = self.live.range(..=addr).next_back() {
            assert!(
                pa + round_up(ps, q) <= addr,
                "{addr:#x}+{size:#x} overlaps live {pa:#x}+{ps:#x}"
            );
        }
        if let Some((&na, &(ns, _))) = self.live.range(addr + 1..).next() {
            assert!(
                addr + real <= na,
                "{addr:#x}+{size:#x} overlaps live {na:#x}+{ns:#x}"
            );
        }
        assert!(
            self.a.contains(addr, size),
            "{addr:#x}+{size:#x} outside the arena"
        );
        if self.parent.is_none() {
            assert!(
                self.spans
                    .iter()
                    .any(|&(s, n)| addr >= s && addr + real <= s + n),
                "{addr:#x}+{size:#x} not inside one model span"
            );
        }
    }

    fn record(&mut self, addr: usize, size: usize, how: How) {
        self.check_new(addr, size);
        self.live.insert(addr, (size, how));
        self.keys.push(addr);
        self.successes += 1;
    }

    fn record_handle(&mut self, h: SegHandle, size: usize) {
        assert_eq!(h.size(), size, "handle size");
        assert_eq!(h.arena_id(), self.a.id(), "handle arena");
        let addr = h.addr();
        self.record(addr, size, How::Handle);
        self.handle_allocs += 1;
        assert!(self.handles.insert(addr, h).is_none());
    }

    fn rand_size(&mut self) -> usize {
        let q = self.q;
        let units = match self.rng.below(10) {
            0..=5 => self.rng.range(1, 4),
            6..=8 => self.rng.range(5, 64),
            _ => self.rng.range(65, 1024),
        };
        let mut s = units * q;
        if q > 1 && self.rng.chance(30) {
            s -= self.rng.range(0, q - 1);
        }
        s
    }

    fn rand_req(&mut self) -> Req {
        let q = self.q;
        let size = self.rand_size();
        let align = if self.rng.chance(50) {
            0
        } else {
            q * self.rng.pow2(1, 64)
        };
        let ea = if align == 0 { q } else { align };
        let phase = if self.rng.chance(40) {
            q * self.rng.range(0, ea / q - 1)
        } else {
            0
        };
        let nocross = if self.rng.chance(30) {
            let need = round_up(phase + size, ea).next_power_of_two().max(ea);
            need * self.rng.pow2(1, 4)
        } else {
            0
        };
        let (mut minaddr, mut maxaddr) = (None, None);
        if self.rng.chance(30) {
            if let Some(&(s, n)) = self.pick_span() {
                let lo = s + self.rng.range(0, n / 2);
                let hi = lo + size + self.rng.range(0, n);
                if self.rng.chance(50) {
                    minaddr = Some(lo);
                }
                if self.rng.chance(70) {
                    maxaddr = Some(hi);
                }
                if minaddr.is_none() && maxaddr.is_none() {
                    minaddr = Some(lo);
                }
            }
        }
        let policy = POLICIES[self.rng.below(4) as usize];
        Req {
            size,
            align,
            phase,
            nocross,
            minaddr,
            maxaddr,
            policy,
        }
    }

    fn pick_span(&mut self) -> Option<&(usize, usize)> {
        if self.spans.is_empty() {
            None
        } else {
            let i = self.rng.below(self.spans.len() as u64) as usize;
            self.spans.get(i)
        }
    }

    fn fits_somewhere(&self, free: &[(usize, usize)], r: &Req) -> Option<usize> {
        let ea = if r.align == 0 { self.q } else { r.align };
        let mut best: Option<usize> = None;
        for &(a, n) in free {
            if bf_fits(
                a,
                a + n,
                r.size,
                ea,
                r.phase,
                r.nocross,
                r.minaddr.unwrap_or(0),
                r.maxaddr,
            ) {
                best = Some(best.map_or(n, |b| b.min(n)));
            }
        }
        best
    }

    fn op_alloc(&mut self) {
        let size = self.rand_size();
        let policy = POLICIES[self.rng.below(4) as usize];
        let before = if policy != Policy::NextFit {
            Some(self.free_segs())
        } else {
            None
        };
        let handle = self.rng.chance(35);
        let got = if handle {
            self.a.alloc_handle(size, policy).map(|h| {
                let a = h.addr();
                self.record_handle(h, size);
                a
            })
        } else {
            self.a.alloc(size, policy)
        };
        match got {
            Ok(addr) => {
                if let (Some(free), Policy::BestFit) = (&before, policy) {
                    let r = Req {
                        size,
                        align: 0,
                        phase: 0,
                        nocross: 0,
                        minaddr: None,
                        maxaddr: None,
                        policy,
                    };
                    if let Some(best) = self.fits_somewhere(free, &r) {
                        let holder = free.iter().find(|&&(a, n)| addr >= a && addr < a + n);
                        let (_, n) = holder.expect("best fit result not from a free segment");
                        assert_eq!(*n, best, "best fit chose a {n:#x} segment; {best:#x} fits");
                    }
                }
                if !handle {
                    self.record(addr, size, How::Alloc);
                }
            }
            Err(VmemError::Exhausted { size: s }) => {
                assert_eq!(s, size);
                self.exhausted += 1;
                let free = before.unwrap_or_else(|| self.free_segs());
                let real = round_up(size, self.q);
                assert!(
                    free.iter().all(|&(_, n)| n < real),
                    "{policy:?} alloc of {size:#x} failed with a big enough free segment"
                );
            }
            Err(e) => panic!("alloc({size:#x}, {policy:?}): {e}"),
        }
    }

    fn op_xalloc(&mut self) {
        let r = self.rand_req();
        let before = self.free_segs();
        let mut req = XAllocRequest::new(r.size)
            .align(r.align)
            .phase(r.phase)
            .nocross(r.nocross)
            .policy(r.policy);
        req.minaddr = r.minaddr;
        req.maxaddr = r.maxaddr;
        let handle = self.rng.chance(35);
        let got = if handle {
            self.a.xalloc_handle(&req).map(|h| {
                let a = h.addr();
                self.record_handle(h, r.size);
                a
            })
        } else {
            self.a.xalloc(&req)
        };
        match got {
            Ok(addr) => {
                let ea = if r.align == 0 { self.q } else { r.align };
                assert_eq!(addr % ea, r.phase, "{r:?} -> {addr:#x}: bad phase");
                if let (Some(first), Some(last)) = (
                    addr.checked_div(r.nocross),
                    (addr + r.size - 1).checked_div(r.nocross),
                ) {
                    assert_eq!(first, last, "{r:?} -> {addr:#x} crosses");
                }
                if let Some(m) = r.minaddr {
                    assert!(addr >= m, "{r:?} -> {addr:#x} below minaddr");
                }
                if let Some(m) = r.maxaddr {
                    assert!(addr + r.size <= m, "{r:?} -> {addr:#x} above maxaddr");
                }
                if r.policy == Policy::BestFit {
                    if let Some(best) = self.fits_somewhere(&before, &r) {
                        let holder = before.iter().find(|&&(a, n)| addr >= a && addr < a + n);
                        let (_, n) = holder.expect("best fit result not from a free segment");
                        assert_eq!(*n, best, "{r:?}: best fit chose {n:#x}, {best:#x} fits");
                    }
                }
                if !handle {
                    self.record(addr, r.size, How::X);
                }
            }
            Err(VmemError::Exhausted { .. }) => {
                self.exhausted += 1;
                assert!(
                    self.fits_somewhere(&before, &r).is_none(),
                    "{r:?} failed though a free segment fits"
                );
            }
            Err(VmemError::BadAddrRange { .. }) => {
                let (lo, hi) = (r.minaddr.unwrap_or(0), r.maxaddr.unwrap());
                assert!(lo >= hi || hi - lo < r.size);
            }
            Err(e) => panic!("xalloc {r:?}: {e}"),
        }
    }

    fn op_free(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let i = self.rng.below(self.keys.len() as u64) as usize;
        let addr = self.keys.swap_remove(i);
        let (size, how) = self.live.remove(&addr).unwrap();
        let r = match how {
            How::Alloc => self.a.free(addr, size),
            How::X => self.a.xfree(addr, size),
            How::Handle => {
                let h = self.handles.remove(&addr).unwrap();
                assert_eq!((h.addr(), h.size()), (addr, size));
                self.a.free_handle(h)
            }
        };
        r.unwrap_or_else(|e| panic!("free({addr:#x}, {size:#x}): {e}"));
    }

    fn op_bad_free(&mut self) {
        // An address that is not the start of a live segment.
        if !self.keys.is_empty() && self.rng.chance(50) {
            let addr = self.keys[self.rng.below(self.keys.len() as u64) as usize];
            let (size, how) = self.live[&addr];
            if how == How::Handle {
                // Only its handle frees it; by address (any size) it stays.
                assert_eq!(
                    self.a.free(addr, size),
                    Err(VmemError::HandleAllocated { addr, size })
                );
                assert_eq!(
                    self.a.xfree(addr, size + self.q),
                    Err(VmemError::HandleAllocated {
                        addr,
                        size: size + self.q
                    })
                );
                return;
            }
            let wrong = if size > 1 && self.rng.chance(50) {
                size - 1
            } else {
                size + self.q
            };
            assert_eq!(
                self.a.xfree(addr, wrong),
                Err(VmemError::WrongSize {
                    addr,
                    size: wrong,
                    allocated: size
                })
            );
            // Inside the segment but not its start.
            if round_up(size, self.q) > self.q {
                let inside = addr + self.q;
                assert_eq!(
                    self.a.xfree(inside, size),
                    Err(VmemError::NotAllocated { addr: inside, size })
                );
            }
        } else {
            let addr = self.rng.next() as usize & !(self.q - 1);
            if !self.live.contains_key(&addr) {
                assert_eq!(
                    self.a.xfree(addr, self.q),
                    Err(VmemError::NotAllocated { addr, size: self.q })
                );
            }
        }
        assert_eq!(self.a.xfree(0, 0), Err(VmemError::ZeroSize));
    }

    fn top(&self) -> usize {
        self.spans.iter().map(|&(s, n)| s + n).max().unwrap_or(0)
    }

    fn op_add(&mut self) {
        let q = self.q;
        let top = self.top();
        let gap = q * self.rng.range(1, 64);
        let size = q * self.rng.range(1, 256);
        let addr = top + gap;
        if addr + size > self.addr_limit {
            return;
        }
        // Overlapping and misaligned adds are refused precisely.
        if let Some(&(s, n)) = self.pick_span() {
            let r = self.a.add(s + n - q, 2 * q);
            assert!(matches!(r, Err(VmemError::SpanOverlap { .. })), "{r:?}");
        }
        if q > 1 {
            assert_eq!(
                self.a.add(addr + 1, size),
                Err(VmemError::SpanMisaligned {
                    addr: addr + 1,
                    size,
                    quantum: q
                })
            );
        }
        assert_eq!(self.a.add(addr, size), Ok(addr));
        self.spans.push((addr, size));
    }

    fn op_extend(&mut self) {
        let q = self.q;
        self.spans.sort();
        // Fill (part of) a hole between spans, or grow the top one.
        let holes: Vec<(usize, usize)> = self
            .spans
            .windows(2)
            .filter(|w| w[1].0 > w[0].0 + w[0].1)
            .map(|w| (w[0].0 + w[0].1, w[1].0 - (w[0].0 + w[0].1)))
            .collect();
        let (addr, size) = if !holes.is_empty() && self.rng.chance(60) {
            let (h, n) = holes[self.rng.below(holes.len() as u64) as usize];
            if self.rng.chance(50) {
                (h, n)
            } else {
                (h, q * self.rng.range(1, n / q))
            }
        } else {
            let top = self.top();
            let size = q * self.rng.range(1, 128);
            if top + size > self.addr_limit {
                return;
            }
            (top, size)
        };
        let alloc = q * self.rng.range(1, size / q);
        let before = self.free_segs();
        let r = self
            .a
            .extend_alloc(addr, size, alloc)
            .unwrap_or_else(|e| panic!("extend_alloc: {e}"));
        // Model: merge with the spans it touches.
        let end = addr + size;
        let lower = self.spans.iter().position(|&(s, n)| s + n == addr);
        let upper = self.spans.iter().position(|&(s, _)| s == end);
        match (lower, upper) {
            (Some(l), Some(u)) => {
                let (us, un) = self.spans[u];
                self.spans[l].1 += size + un;
                let _ = us;
                self.spans.remove(u);
            }
            (Some(l), None) => self.spans[l].1 += size,
            (None, Some(u)) => {
                self.spans[u].0 = addr;
                self.spans[u].1 += size;
            }
            (None, None) => self.spans.push((addr, size)),
        }
        // The result starts the free segment holding the new range: at
        // `addr`, or lower if the free tail of the lower span joined it.
        assert!(r <= addr, "extend_alloc result {r:#x} above {addr:#x}");
        if r < addr {
            assert!(
                before.iter().any(|&(a, n)| a == r && a + n == addr),
                "extend_alloc result {r:#x} not the joined free tail"
            );
        }
        self.record(r, alloc, How::X);
    }

    fn full_check(&self) {
        self.a
            .verify()
            .unwrap_or_else(|e| panic!("verify {}: {e}", self.a.name()));
        let st = self.a.stats();
        assert_eq!(st.mem_inuse, self.inuse(), "mem_inuse");
        assert_eq!(st.alloc_segs, self.live.len(), "alloc_segs");
        assert_eq!(st.handle_segs, self.handles.len(), "handle_segs");
        assert_eq!(st.alloc - st.free, self.live.len() as u64);
        assert_eq!(self.a.size(SegTypes::ALLOC) as u64, st.mem_inuse);
        assert_eq!(
            self.a.size(SegTypes::FREE) as u64,
            st.mem_total - st.mem_inuse
        );
        assert_eq!(self.a.size(SegTypes::ALLOC_FREE) as u64, st.mem_total);
        let mut walked = BTreeMap::new();
        self.a
            .walk(SegTypes::ALLOC, WalkMode::Locked, &mut |t, a, n| {
                assert_eq!(t, SegType::Alloc);
                walked.insert(a, n);
            });
        let want: BTreeMap<usize, usize> = self.live.iter().map(|(&a, &(n, _))| (a, n)).collect();
        assert_eq!(walked, want, "walk(ALLOC) differs from the model");
        let mut spans = BTreeSet::new();
        self.a
            .walk(SegTypes::SPAN, WalkMode::Locked, &mut |_, a, n| {
                spans.insert((a, n));
            });
        assert_eq!(spans.len(), st.spans);
        let total: usize = spans.iter().map(|&(_, n)| n).sum();
        assert_eq!(total as u64, st.mem_total);
        match self.parent {
            None => {
                let want: BTreeSet<(usize, usize)> = self.spans.iter().copied().collect();
                assert_eq!(spans, want, "spans differ from the model");
                assert_eq!(st.mem_import, 0);
            }
            Some(p) => {
                p.verify().unwrap();
                assert_eq!(st.mem_import, st.mem_total);
                let mut pa = BTreeSet::new();
                p.walk(SegTypes::ALLOC, WalkMode::Locked, &mut |_, a, n| {
                    pa.insert((a, n));
                });
                assert_eq!(
                    pa, spans,
                    "child spans are not exactly the parent's allocations"
                );
                assert_eq!(p.stats().mem_inuse, st.mem_import);
            }
        }
    }

    fn run(&mut self, nops: usize) {
        for i in 0..nops {
            self.ops += 1;
            let roll = self.rng.below(100);
            match roll {
                0..=37 => self.op_alloc(),
                38..=52 => self.op_xalloc(),
                53..=92 => self.op_free(),
                93..=95 => self.op_bad_free(),
                96..=97 if self.allow_add => self.op_add(),
                98..=99 if self.allow_add => self.op_extend(),
                _ => self.op_free(),
            }
            if i % 64 == 0 {
                self.full_check();
            }
        }
        self.full_check();
        // Drain: everything comes back, imported spans go home.
        while !self.keys.is_empty() {
            self.op_free();
        }
        self.full_check();
        assert!(
            self.handle_allocs > nops / 20,
            "too few handle allocations: {}",
            self.handle_allocs
        );
        let st = self.a.stats();
        assert_eq!(st.mem_inuse, 0);
        if let Some(p) = self.parent {
            if st.mem_total != 0 {
                self.a
                    .walk(SegTypes::ALL, WalkMode::Locked, &mut |t, a, n| {
                        eprintln!("{t:?} {a:#x} {n:#x}")
                    });
                eprintln!("{:?}", st);
            }
            assert_eq!(
                st.mem_total, 0,
                "imported spans not released when wholly free"
            );
            assert_eq!(p.stats().mem_inuse, 0);
            assert_eq!(st.import, st.release, "every imported span released");
        }
    }
}

/// Seeds per configuration: the default keeps CI fast; set
/// `VMEM_MODEL_SCALE=N` to run N times as many (soak testing).
fn seeds(first: u64, n: u64) -> impl Iterator<Item = u64> {
    let scale: u64 = std::env::var("VMEM_MODEL_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    (0..n * scale.max(1)).map(move |i| first + i * 1000)
}

fn no_source_run(seed: u64, q: usize, base: usize, nops: usize) {
    let mut rng = Rng::new(seed);
    let size = q * rng.range(64, 4096);
    let a = span_arena("model", base, size, q);
    let mut h = Harness {
        a,
        parent: None,
        q,
        live: BTreeMap::new(),
        handles: HashMap::new(),
        keys: Vec::new(),
        spans: vec![(base, size)],
        rng,
        ops: 0,
        allow_add: true,
        addr_limit: base + (q << 20),
        exhausted: 0,
        successes: 0,
        handle_allocs: 0,
    };
    h.run(nops);
    assert!(
        h.successes > nops / 10,
        "too few successes: {}",
        h.successes
    );
    // SAFETY: single user, everything freed.
    assert_eq!(unsafe { a.destroy() }, 0);
}

#[test]
fn model_quantum_1_from_address_zero() {
    for seed in seeds(1, 8) {
        no_source_run(seed, 1, 0, 10_000);
    }
}

#[test]
fn model_quantum_8() {
    for seed in seeds(10, 8) {
        no_source_run(seed, 8, 0x1000_0000 + (seed as usize) * 0x10_0000, 10_000);
    }
}

#[test]
fn model_quantum_page() {
    for seed in seeds(20, 6) {
        no_source_run(seed, 4096, 0x7f00_0000_0000, 10_000);
    }
}

fn sourced_run(seed: u64, pq: usize, cq: usize, psize: usize, nops: usize) {
    let base = 0x4_0000_0000usize;
    let parent = span_arena("parent", base, psize, pq);
    let child = child_arena("child", cq, parent);
    assert_eq!(child.stats().source_id, parent.id());
    let mut h = Harness {
        a: child,
        parent: Some(parent),
        q: cq,
        live: BTreeMap::new(),
        handles: HashMap::new(),
        keys: Vec::new(),
        spans: vec![(base, psize)],
        rng: Rng::new(seed),
        ops: 0,
        allow_add: false,
        addr_limit: 0,
        exhausted: 0,
        successes: 0,
        handle_allocs: 0,
    };
    h.run(nops);
    let st = child.stats();
    assert!(st.import > 0 && st.release == st.import);
    // SAFETY: single user, everything freed; child first.
    unsafe {
        assert_eq!(child.destroy(), 0);
        assert_eq!(parent.destroy(), 0);
    }
}

#[test]
fn model_child_of_arena_small_quantum() {
    for seed in seeds(30, 8) {
        sourced_run(seed, 4096, 16, 4096 * 512, 10_000);
    }
}

#[test]
fn model_child_quantum_above_source_quantum() {
    for seed in seeds(40, 6) {
        sourced_run(seed, 4096, 8192, 4096 * 2048, 8000);
    }
}

#[test]
fn model_child_exhausts_parent() {
    // A small parent: imports fail, the child reports Exhausted precisely.
    for seed in seeds(50, 6) {
        sourced_run(seed, 64, 64, 64 * 256, 8000);
    }
}

#[test]
fn model_child_of_heap_real_memory() {
    let heap = umem_vmem::heap();
    let a = child_arena("heapchild", 64, heap);
    let mut rng = Rng::new(77);
    let mut live: Vec<(usize, usize)> = Vec::new();
    for i in 0..20000 {
        if live.is_empty() || rng.chance(55) {
            let size = 64 * rng.range(1, 200);
            let p = a.alloc(size, POLICIES[rng.below(4) as usize]).unwrap();
            // Real memory: write it.
            // SAFETY: [p, p + size) was just allocated from a heap-backed arena; ours
            // until freed below.
            unsafe { fill_bytes(p as *mut u8, size, (p >> 6) as u8) };
            live.push((p, size));
        } else {
            let (p, size) = live.swap_remove(rng.below(live.len() as u64) as usize);
            // SAFETY: [p, p + size) is live (allocated above, not yet freed) and only
            // this thread uses it.
            unsafe { check_bytes(p as *const u8, size, (p >> 6) as u8) };
            a.free(p, size).unwrap();
        }
        if i % 1000 == 0 {
            a.verify().unwrap();
            heap.verify().unwrap();
        }
    }
    for (p, size) in live {
        a.free(p, size).unwrap();
    }
    a.verify().unwrap();
    assert_eq!(a.stats().mem_total, 0);
    // SAFETY: single user, all freed.
    assert_eq!(unsafe { a.destroy() }, 0);
    umem_vmem::verify().unwrap();
}
