//! Target (a): `Vmem` `add` / `alloc` / `free` / `xalloc` / `xfree` /
//! handle sequences with constraints (align, phase, nocross, minaddr,
//! maxaddr) against a model: no two live segments overlap, every segment
//! lies in one added span and honours its constraints, frees of what is
//! live succeed and bad frees fail, `verify()` holds, and the allocated
//! and free sizes add up to the spans. Spans are added near the bottom and
//! at the very top of the address space (ending at `usize::MAX`), where
//! issue 11's defect 6a lives.

use super::Bytes;
use std::collections::{BTreeMap, HashMap};
use umem_vmem::{CreateFlags, Policy, SegHandle, SegTypes, Vmem, XAllocRequest};

#[derive(Clone, Copy, PartialEq, Debug)]
enum How {
    Alloc,
    X,
    Handle,
}

const POLICIES: [Policy; 4] = [
    Policy::InstantFit,
    Policy::BestFit,
    Policy::FirstFit,
    Policy::NextFit,
];

struct Model {
    a: &'static Vmem,
    q: usize,
    spans: Vec<(usize, usize)>,
    live: BTreeMap<usize, (usize, How)>,
    handles: HashMap<usize, SegHandle>,
    log: Vec<String>,
}

fn round_up(x: usize, q: usize) -> usize {
    x.div_ceil(q) * q
}

impl Model {
    fn fail(&self, what: String) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(12).collect();
        panic!(
            "vmem_model: {what}\n  quantum {:#x}, spans {:x?}\n  last operations (newest first): {tail:#?}",
            self.q, self.spans
        );
    }

    fn check_new(&self, addr: usize, size: usize) {
        let real = round_up(size, self.q);
        if addr % self.q != 0 {
            self.fail(format!("{addr:#x} is not quantum aligned"));
        }
        if let Some((&pa, &(ps, _))) = self.live.range(..=addr).next_back() {
            if pa + round_up(ps, self.q) > addr {
                self.fail(format!("{addr:#x}+{size:#x} overlaps live {pa:#x}+{ps:#x}"));
            }
        }
        if let Some((&na, &(ns, _))) = self.live.range(addr.saturating_add(1)..).next() {
            if addr.checked_add(real).is_none_or(|e| e > na) {
                self.fail(format!("{addr:#x}+{size:#x} overlaps live {na:#x}+{ns:#x}"));
            }
        }
        if !self
            .spans
            .iter()
            .any(|&(s, n)| addr >= s && addr - s <= n && real <= n - (addr - s))
        {
            self.fail(format!("{addr:#x}+{size:#x} is not inside one span"));
        }
    }

    fn check_totals(&self) {
        if let Err(e) = self.a.verify() {
            self.fail(format!("verify(): {e:?}"));
        }
        let inuse: usize = self.live.values().map(|&(s, _)| round_up(s, self.q)).sum();
        let total: usize = self.spans.iter().map(|&(_, n)| n).sum();
        let (al, fr) = (self.a.size(SegTypes::ALLOC), self.a.size(SegTypes::FREE));
        if al != inuse || al + fr != total {
            self.fail(format!(
                "sizes: allocated {al:#x} (model {inuse:#x}), free {fr:#x}, spans {total:#x}"
            ));
        }
    }

    fn size(&self, b: &mut Bytes) -> usize {
        let q = self.q;
        let units = match b.u8() % 8 {
            0..=4 => 1 + b.below(4),
            5 | 6 => 1 + b.below(64),
            _ => 1 + b.below(1024),
        };
        let s = units * q;
        if q > 1 && b.u8() % 4 == 0 {
            s - b.below(q)
        } else {
            s
        }
    }

    fn add(&mut self, b: &mut Bytes) {
        let q = self.q;
        let units = 1 + b.below(256);
        let size = units * q.max(16);
        let top = b.u8() % 3 == 0 && !no_top();
        let addr = if top {
            // The highest span of this size: it ends at usize::MAX when the
            // quantum allows (quantum 1), else at the last aligned address.
            (usize::MAX - size) & !(q - 1)
        } else {
            (1 << 32) + b.below(64) * (1 << 20)
        };
        let overlaps = self
            .spans
            .iter()
            .any(|&(s, n)| addr < s + (n - 1) + 1 && s < addr + (size - 1) + 1);
        self.log.push(format!("add({addr:#x}, {size:#x})"));
        match (self.a.add(addr, size), overlaps) {
            (Ok(a), false) if a == addr => self.spans.push((addr, size)),
            (Err(umem_vmem::VmemError::SpanOverlap { .. }), true) => {}
            (r, o) => self.fail(format!("add = {r:?}, model overlap {o}")),
        }
    }

    fn alloc(&mut self, b: &mut Bytes) {
        let size = self.size(b);
        let policy = POLICIES[b.below(4)];
        let handle = b.u8() % 8 == 0;
        self.log.push(format!(
            "alloc{}({size:#x}, {policy:?})",
            if handle { "_handle" } else { "" }
        ));
        if handle {
            match self.a.alloc_handle(size, policy) {
                Ok(h) => {
                    let addr = h.addr();
                    self.check_new(addr, size);
                    self.live.insert(addr, (size, How::Handle));
                    self.handles.insert(addr, h);
                }
                Err(e) => self.expect_exhausted(e),
            }
            return;
        }
        match self.a.alloc(size, policy) {
            Ok(addr) => {
                self.check_new(addr, size);
                self.live.insert(addr, (size, How::Alloc));
            }
            Err(e) => self.expect_exhausted(e),
        }
    }

    fn expect_exhausted(&self, e: umem_vmem::VmemError) {
        if !matches!(e, umem_vmem::VmemError::Exhausted { .. }) {
            self.fail(format!("unexpected error {e:?}"));
        }
    }

    fn xalloc(&mut self, b: &mut Bytes) {
        let q = self.q;
        let size = self.size(b);
        let align = q << b.below(7);
        let phase = if b.u8() % 3 == 0 {
            b.below(align / q) * q
        } else {
            0
        };
        let nocross = if b.u8() % 3 == 0 {
            (align.max(round_up(size, q)).next_power_of_two()) << b.below(3)
        } else {
            0
        };
        let mut r = XAllocRequest::new(size)
            .align(align)
            .phase(phase)
            .nocross(nocross);
        let (mut lo, mut hi) = (None, None);
        if !self.spans.is_empty() && b.u8() % 2 == 0 {
            let (s, n) = self.spans[b.below(self.spans.len())];
            let l = s + b.below(n / q + 1) * q;
            let h = l + b.below((s + n - l) / q + 1) * q;
            if b.u8() % 2 == 0 {
                r = r.minaddr(l);
                lo = Some(l);
            }
            if h > l && b.u8() % 2 == 0 {
                r = r.maxaddr(h);
                hi = Some(h);
            }
        }
        let policy = POLICIES[b.below(3)];
        r = r.policy(policy);
        let handle = b.u8() % 8 == 0;
        self.log.push(format!(
            "xalloc{}(size {size:#x}, align {align:#x}, phase {phase:#x}, nocross {nocross:#x}, min {lo:x?}, max {hi:x?}, {policy:?})",
            if handle { "_handle" } else { "" }
        ));
        let got = if handle {
            self.a.xalloc_handle(&r).map(|h| {
                let a = h.addr();
                self.handles.insert(a, h);
                a
            })
        } else {
            self.a.xalloc(&r)
        };
        match got {
            Ok(addr) => {
                self.check_new(addr, size);
                let end = addr + round_up(size, q);
                if addr % align != phase {
                    self.fail(format!(
                        "{addr:#x}: align {align:#x} phase {phase:#x} not honoured"
                    ));
                }
                if nocross != 0 && addr / nocross != (end - 1) / nocross {
                    self.fail(format!("{addr:#x}+{size:#x} crosses {nocross:#x}"));
                }
                if lo.is_some_and(|l| addr < l) || hi.is_some_and(|h| end > h) {
                    self.fail(format!("{addr:#x}+{size:#x} outside [{lo:x?}, {hi:x?})"));
                }
                self.live
                    .insert(addr, (size, if handle { How::Handle } else { How::X }));
            }
            Err(umem_vmem::VmemError::Exhausted { .. })
            | Err(umem_vmem::VmemError::NocrossTooSmall { .. })
            | Err(umem_vmem::VmemError::BadAddrRange { .. }) => {}
            Err(e) => self.fail(format!("xalloc: unexpected error {e:?}")),
        }
    }

    fn free(&mut self, b: &mut Bytes) {
        if self.live.is_empty() {
            return;
        }
        let i = b.below(self.live.len());
        let (&addr, &(size, how)) = self.live.iter().nth(i).unwrap();
        self.log
            .push(format!("free {how:?} ({addr:#x}, {size:#x})"));
        let r = match how {
            How::Alloc => self.a.free(addr, size),
            How::X => self.a.xfree(addr, size),
            How::Handle => self.a.free_handle(self.handles.remove(&addr).unwrap()),
        };
        if let Err(e) = r {
            self.fail(format!("free of a live segment: {e:?}"));
        }
        self.live.remove(&addr);
    }

    fn bad_free(&mut self, b: &mut Bytes) {
        // A free the arena must refuse: a wrong size of a live segment, or
        // an address that is not the start of one.
        let q = self.q;
        let (addr, size) = if !self.live.is_empty() && b.u8() % 2 == 0 {
            let i = b.below(self.live.len());
            let (&a, &(s, how)) = self.live.iter().nth(i).unwrap();
            if how == How::Handle {
                (a, s) // a handle's address: HandleAllocated
            } else {
                (a, round_up(s, q) + q)
            }
        } else if !self.spans.is_empty() {
            let (s, n) = self.spans[b.below(self.spans.len())];
            let a = s + b.below(n / q) * q;
            if self.live.contains_key(&a) {
                return;
            }
            (a, q)
        } else {
            return;
        };
        self.log.push(format!("bad free({addr:#x}, {size:#x})"));
        if self.a.xfree(addr, size).is_ok() {
            self.fail(format!("a bad xfree({addr:#x}, {size:#x}) returned Ok"));
        }
    }
}

/// `UMEM_FUZZ_VMEM_NO_TOP=1` keeps spans away from the top of the address
/// space (to fuzz past issue 11's defect 6a until it is fixed).
fn no_top() -> bool {
    static NO_TOP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NO_TOP.get_or_init(|| std::env::var_os("UMEM_FUZZ_VMEM_NO_TOP").is_some())
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let q = match b.u8() % 4 {
        0 => 1,
        1 => 8,
        2 => 16,
        _ => 4096,
    };
    let a = Vmem::create("fuzz-vmem", None, q, None, 0, CreateFlags::NONE).expect("Vmem::create");
    let mut m = Model {
        a,
        q,
        spans: Vec::new(),
        live: BTreeMap::new(),
        handles: HashMap::new(),
        log: Vec::new(),
    };
    let mut ops = 0;
    while b.more() && ops < 4000 {
        ops += 1;
        match b.u8() % 16 {
            0 | 1 => m.add(&mut b),
            2..=5 => m.alloc(&mut b),
            6..=9 => m.xalloc(&mut b),
            10..=13 => m.free(&mut b),
            14 => m.bad_free(&mut b),
            _ => m.check_totals(),
        }
    }
    m.check_totals();
    while !m.live.is_empty() {
        // Free the lowest live segment (an input of zeros picks index 0).
        m.free(&mut Bytes::new(&[0; 4]));
    }
    m.check_totals();
    // SAFETY: every segment was freed and no handle is left; the arena is
    // not used again.
    let leaked = unsafe { a.destroy() };
    if leaked != 0 {
        panic!("vmem_model: destroy reports {leaked} units leaked");
    }
}
