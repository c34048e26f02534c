//! DWARF call frame information (`.eh_frame`) for the audit unwinder: how to
//! step from one x86_64 frame to its caller, computed once per code address
//! and cached.
//!
//! **Why.** libgcc's `_Unwind_Backtrace` finds and interprets the CFI
//! program of every frame on every call: about a microsecond a frame, which
//! made `UMEM_DEBUG=audit` cost sqlite3 18× its normal time. But a frame's
//! *rule* depends only on its code address: "the canonical frame address
//! (CFA) is `rsp` (or `rbp`) plus N, the return address is at CFA − 8, the
//! caller's `rbp` is at CFA + M (or unchanged)". So the rule is computed the
//! first time an address is seen — its FDE found by libgcc's
//! `_Unwind_Find_FDE`, its CIE and FDE parsed and the CFA program run up to
//! the address — and kept in a fixed, lock-free table ([`rule_for`]).
//! A step is then a table lookup and two loads.
//!
//! **Exactness.** A rule is used only when the CFI says exactly that: CFA
//! based on `rsp` or `rbp`, return address at CFA − 8, `rbp` saved at a
//! fixed offset from the CFA or left alone. Anything else — a CFA
//! expression, a signal frame, the return address or `rbp` kept in another
//! register — answers [`Step::Unsupported`], and the caller falls back to
//! libgcc for that stack. No FDE, or an undefined return address (the
//! outermost frame, `_start`, `clone3`), is [`Step::End`]. The cache is
//! emptied when an object is unloaded ([`check_loaded_objects`], called
//! before each walk): another object may later be mapped at its addresses.

use core::ffi::c_void;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// `struct dwarf_eh_bases` of libgcc's `_Unwind_Find_FDE`.
#[repr(C)]
struct EhBases {
    tbase: usize,
    dbase: usize,
    func: usize,
}

type FindFdeFn = unsafe extern "C" fn(pc: usize, bases: *mut EhBases) -> *const u8;

/// libgcc's `_Unwind_Find_FDE` (0 until set).
static FIND_FDE: AtomicUsize = AtomicUsize::new(0);

/// Sets libgcc's `_Unwind_Find_FDE` (from `dlsym`).
///
/// # Safety
/// `f` is the address of `_Unwind_Find_FDE` of a loaded libgcc.
pub unsafe fn set_find_fde(f: usize) {
    FIND_FDE.store(f, Ordering::Release);
}

/// Whether [`rule_for`] can compute rules.
pub fn available() -> bool {
    FIND_FDE.load(Ordering::Acquire) != 0
}

/// `dl_iterate_phdr`'s load and unload counters when the cache was last
/// known good.
static LOADS: AtomicU64 = AtomicU64::new(0);
static UNLOADS: AtomicU64 = AtomicU64::new(0);

/// Empties the rule cache when objects were loaded or unloaded since the
/// last call (a new object may sit where an unloaded one's code was, and
/// its addresses must not get the old rules). One `dl_iterate_phdr` step:
/// the counters come with its first record.
pub fn check_loaded_objects() {
    unsafe extern "C" fn first(info: *mut libc::dl_phdr_info, _: usize, arg: *mut c_void) -> i32 {
        // SAFETY: dl_iterate_phdr hands a valid record; `arg` is our pair.
        unsafe {
            let out = &mut *(arg as *mut (u64, u64));
            *out = ((*info).dlpi_adds, (*info).dlpi_subs);
        }
        1
    }
    let mut now = (0u64, 0u64);
    // SAFETY: the callback writes only `now`.
    unsafe { libc::dl_iterate_phdr(Some(first), &mut now as *mut (u64, u64) as *mut c_void) };
    if now.0 == LOADS.load(Ordering::Acquire) && now.1 == UNLOADS.load(Ordering::Acquire) {
        return;
    }
    if UNLOADS.load(Ordering::Acquire) != now.1 {
        // Only an unload can leave stale rules (a load takes fresh addresses).
        for s in &CACHE {
            s.key.store(0, Ordering::Release);
        }
    }
    LOADS.store(now.0, Ordering::Release);
    UNLOADS.store(now.1, Ordering::Release);
}

/// How to step from a frame at some code address to its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// CFA = (`rbp` if `cfa_rbp` else `rsp`) + `cfa_off`; the return
    /// address at CFA − 8; the caller's `rbp` at CFA + `rbp_off`, or this
    /// frame's `rbp` when `None`.
    Frame {
        /// The CFA is `rbp`-based.
        cfa_rbp: bool,
        /// Offset of the CFA from its base register.
        cfa_off: u32,
        /// Where the caller's `rbp` is saved, from the CFA.
        rbp_off: Option<i32>,
    },
    /// No caller: the outermost frame, or code without CFI.
    End,
    /// A rule this unwinder does not follow (see the module comment).
    Unsupported,
}

const SLOTS: usize = 1 << 14;

/// The rule cache: direct-mapped, keyed by code address; the value carries
/// some bits of its address too, so that a slot two threads fill at once
/// never pairs one address's key with the other's rule.
struct Slot {
    key: AtomicUsize,
    val: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    key: AtomicUsize::new(0),
    val: AtomicU64::new(0),
};
static CACHE: [Slot; SLOTS] = [EMPTY; SLOTS];

fn slot_of(pc: usize) -> &'static Slot {
    let h = (pc as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    &CACHE[(h >> 50) as usize & (SLOTS - 1)]
}

fn tag(pc: usize) -> u64 {
    (pc as u64 & 0xff_ffff) << 40
}

fn pack(pc: usize, s: Step) -> u64 {
    let body = match s {
        Step::End => 2,
        Step::Unsupported => 3,
        Step::Frame {
            cfa_rbp,
            cfa_off,
            rbp_off,
        } => {
            let mut v = 1 | (u64::from(cfa_rbp) << 2) | (u64::from(cfa_off) << 8);
            if let Some(o) = rbp_off {
                v |= 1 << 3 | u64::from((o / 8) as i8 as u8) << 32;
            }
            v
        }
    };
    body | tag(pc)
}

fn unpack(v: u64) -> Option<Step> {
    match v & 3 {
        1 => Some(Step::Frame {
            cfa_rbp: v & 4 != 0,
            cfa_off: ((v >> 8) & 0xff_ffff) as u32,
            rbp_off: (v & 8 != 0).then(|| i32::from((v >> 32) as u8 as i8) * 8),
        }),
        2 => Some(Step::End),
        3 => Some(Step::Unsupported),
        _ => None,
    }
}

/// The rule for code address `pc` (a return address minus one, or an
/// address inside the calling function), from the cache or computed now.
pub fn rule_for(pc: usize) -> Step {
    let s = slot_of(pc);
    if s.key.load(Ordering::Acquire) == pc {
        let v = s.val.load(Ordering::Acquire);
        if v & (0xff_ffff << 40) == tag(pc) {
            if let Some(step) = unpack(v) {
                return step;
            }
        }
    }
    let step = compute(pc);
    s.key.store(0, Ordering::Release);
    s.val.store(pack(pc, step), Ordering::Release);
    s.key.store(pc, Ordering::Release);
    step
}

/// A bounded reader over CFI bytes.
struct Rd {
    at: usize,
    end: usize,
}

impl Rd {
    fn u8(&mut self) -> Option<u8> {
        if self.at >= self.end {
            return None;
        }
        // SAFETY: inside the CIE or FDE record (bounded by its length), part
        // of a loaded object's mapped `.eh_frame`.
        let b = unsafe { *(self.at as *const u8) };
        self.at += 1;
        Some(b)
    }

    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        for x in &mut b {
            *x = self.u8()?;
        }
        Some(b)
    }

    fn uleb(&mut self) -> Option<u64> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= u64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
    }

    fn sleb(&mut self) -> Option<i64> {
        let mut v = 0i64;
        let mut shift = 0;
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= i64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Some(v);
            }
        }
    }

    /// Skips a pointer of DW_EH_PE encoding `enc` (its format bits).
    fn skip_encoded(&mut self, enc: u8) -> Option<()> {
        match enc & 0x0f {
            0x00 | 0x04 | 0x0c => self.at += 8,
            0x02 | 0x0a => self.at += 2,
            0x03 | 0x0b => self.at += 4,
            0x01 => {
                self.uleb()?;
            }
            0x09 => {
                self.sleb()?;
            }
            _ => return None,
        }
        (self.at <= self.end).then_some(())
    }
}

/// A register's rule in a CFI row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reg {
    Same,
    Undefined,
    At(i64),
    Other,
}

#[derive(Clone, Copy)]
struct Row {
    cfa_reg: u64,
    cfa_off: i64,
    rbp: Reg,
    ra: Reg,
}

const RBP: u64 = 6;
const RSP: u64 = 7;
const RA: u64 = 16;

/// Computes the rule for `pc` (see [`rule_for`]).
fn compute(pc: usize) -> Step {
    let f = FIND_FDE.load(Ordering::Acquire);
    if f == 0 {
        return Step::Unsupported;
    }
    // SAFETY: FIND_FDE holds libgcc's `_Unwind_Find_FDE` (set_find_fde).
    let find = unsafe { core::mem::transmute::<usize, FindFdeFn>(f) };
    let mut bases = EhBases {
        tbase: 0,
        dbase: 0,
        func: 0,
    };
    // SAFETY: a plain lookup; `bases` is a valid out-parameter.
    let fde = unsafe { find(pc, &mut bases) } as usize;
    if fde == 0 {
        return Step::End;
    }
    run(fde, bases.func, pc).unwrap_or(Step::Unsupported)
}

/// Parses the FDE at `fde` (its function starting at `func`) and its CIE,
/// and runs their CFA programs up to `pc`.
fn run(fde: usize, func: usize, pc: usize) -> Option<Step> {
    let mut r = Rd {
        at: fde,
        end: fde + 8,
    };
    let len = u32::from_ne_bytes(r.bytes::<4>()?);
    if len == 0xffff_ffff || len < 8 {
        return None;
    }
    let fde_end = fde + 4 + len as usize;
    let id_at = r.at;
    let cie = id_at.checked_sub(u32::from_ne_bytes(r.bytes::<4>()?) as usize)?;
    // The CIE.
    let mut c = Rd {
        at: cie,
        end: cie + 4,
    };
    let clen = u32::from_ne_bytes(c.bytes::<4>()?);
    if clen == 0xffff_ffff || clen < 4 {
        return None;
    }
    c.end = cie + 4 + clen as usize;
    c.at += 4; // CIE id
    let version = c.u8()?;
    let mut aug = [0u8; 8];
    let mut n = 0;
    loop {
        let b = c.u8()?;
        if b == 0 {
            break;
        }
        if n == aug.len() {
            return None;
        }
        aug[n] = b;
        n += 1;
    }
    let aug = &aug[..n];
    if aug.starts_with(b"eh") {
        return None;
    }
    let code_align = c.uleb()? as i64;
    let data_align = c.sleb()?;
    let ra_reg = if version == 1 {
        u64::from(c.u8()?)
    } else {
        c.uleb()?
    };
    if ra_reg != RA {
        return None;
    }
    let mut fde_enc = 0u8;
    if aug.first() == Some(&b'z') {
        let alen = c.uleb()? as usize;
        let data_end = c.at + alen;
        for &a in &aug[1..] {
            match a {
                b'R' => fde_enc = c.u8()?,
                b'P' => {
                    let e = c.u8()?;
                    c.skip_encoded(e)?;
                }
                b'L' => {
                    c.u8()?;
                }
                b'B' => {}
                _ => return None, // 'S' (signal frame) and the unknown
            }
        }
        c.at = data_end;
    } else if !aug.is_empty() {
        return None;
    }
    let init = Row {
        cfa_reg: RSP,
        cfa_off: 8,
        rbp: Reg::Same,
        ra: Reg::Undefined,
    };
    let cie_row = exec(&mut c, init, init, usize::MAX, 0, code_align, data_align)?;
    // The FDE: skip its address range and augmentation data.
    r.end = fde_end;
    r.skip_encoded(fde_enc)?; // pc_begin (`func` has it decoded)
    r.skip_encoded(fde_enc & 0x0f)?; // pc_range
    if aug.first() == Some(&b'z') {
        let alen = r.uleb()? as usize;
        r.at += alen;
    }
    let row = exec(&mut r, cie_row, cie_row, pc, func, code_align, data_align)?;
    if row.ra == Reg::Undefined {
        return Some(Step::End);
    }
    if row.ra != Reg::At(-8) || !(row.cfa_reg == RSP || row.cfa_reg == RBP) {
        return None;
    }
    let cfa_off = u32::try_from(row.cfa_off).ok().filter(|&o| o < 1 << 24)?;
    let rbp_off = match row.rbp {
        Reg::Same => None,
        Reg::At(o) if o % 8 == 0 && (-1024..0).contains(&o) => Some(o as i32),
        _ => return None,
    };
    Some(Step::Frame {
        cfa_rbp: row.cfa_reg == RBP,
        cfa_off,
        rbp_off,
    })
}

/// Runs a CFA program from `row` until the row for `pc` (`loc` is the
/// address the program starts at; `pc == usize::MAX`: the whole program).
fn exec(
    r: &mut Rd,
    mut row: Row,
    init: Row,
    pc: usize,
    mut loc: usize,
    code_align: i64,
    data_align: i64,
) -> Option<Row> {
    let mut saved = [row; 4];
    let mut depth = 0;
    let set = |row: &mut Row, reg: u64, rule: Reg| {
        if reg == RBP {
            row.rbp = rule;
        } else if reg == RA {
            row.ra = rule;
        }
    };
    let restore = |row: &mut Row, reg: u64| {
        if reg == RBP {
            row.rbp = init.rbp;
        } else if reg == RA {
            row.ra = init.ra;
        }
    };
    while r.at < r.end {
        let op = r.u8()?;
        let advance = match op >> 6 {
            1 => Some(u64::from(op & 0x3f)),
            2 => {
                let off = r.uleb()? as i64 * data_align;
                set(&mut row, u64::from(op & 0x3f), Reg::At(off));
                None
            }
            3 => {
                restore(&mut row, u64::from(op & 0x3f));
                None
            }
            _ => match op {
                0x00 => None,
                0x02 => Some(u64::from(r.u8()?)),
                0x03 => Some(u64::from(u16::from_ne_bytes(r.bytes::<2>()?))),
                0x04 => Some(u64::from(u32::from_ne_bytes(r.bytes::<4>()?))),
                0x05 => {
                    let reg = r.uleb()?;
                    let off = r.uleb()? as i64 * data_align;
                    set(&mut row, reg, Reg::At(off));
                    None
                }
                0x06 => {
                    let reg = r.uleb()?;
                    restore(&mut row, reg);
                    None
                }
                0x07 => {
                    let reg = r.uleb()?;
                    set(&mut row, reg, Reg::Undefined);
                    None
                }
                0x08 => {
                    let reg = r.uleb()?;
                    set(&mut row, reg, Reg::Same);
                    None
                }
                0x09 => {
                    let reg = r.uleb()?;
                    r.uleb()?;
                    set(&mut row, reg, Reg::Other);
                    None
                }
                0x0a => {
                    if depth == saved.len() {
                        return None;
                    }
                    saved[depth] = row;
                    depth += 1;
                    None
                }
                0x0b => {
                    if depth == 0 {
                        return None;
                    }
                    depth -= 1;
                    // The whole row, CFA rule included (as GCC's unwinder does).
                    row = saved[depth];
                    None
                }
                0x0c => {
                    row.cfa_reg = r.uleb()?;
                    row.cfa_off = r.uleb()? as i64;
                    None
                }
                0x0d => {
                    row.cfa_reg = r.uleb()?;
                    None
                }
                0x0e => {
                    row.cfa_off = r.uleb()? as i64;
                    None
                }
                0x10 | 0x16 => {
                    let reg = r.uleb()?;
                    let n = r.uleb()? as usize;
                    r.at += n;
                    set(&mut row, reg, Reg::Other);
                    None
                }
                0x11 => {
                    let reg = r.uleb()?;
                    let off = r.sleb()? * data_align;
                    set(&mut row, reg, Reg::At(off));
                    None
                }
                0x12 => {
                    row.cfa_reg = r.uleb()?;
                    row.cfa_off = r.sleb()? * data_align;
                    None
                }
                0x13 => {
                    row.cfa_off = r.sleb()? * data_align;
                    None
                }
                0x14 | 0x15 => {
                    let reg = r.uleb()?;
                    r.uleb()?;
                    set(&mut row, reg, Reg::Other);
                    None
                }
                0x2e => {
                    r.uleb()?;
                    None
                }
                0x2f => {
                    let reg = r.uleb()?;
                    let off = -(r.uleb()? as i64) * data_align;
                    set(&mut row, reg, Reg::At(off));
                    None
                }
                _ => return None, // set_loc, CFA expressions, vendor ops
            },
        };
        if let Some(d) = advance {
            let next = loc.checked_add((d as i64 * code_align) as usize)?;
            if next > pc {
                break;
            }
            loc = next;
        }
    }
    Some(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        for s in [
            Step::End,
            Step::Unsupported,
            Step::Frame {
                cfa_rbp: false,
                cfa_off: 8,
                rbp_off: None,
            },
            Step::Frame {
                cfa_rbp: true,
                cfa_off: 16,
                rbp_off: Some(-16),
            },
            Step::Frame {
                cfa_rbp: false,
                cfa_off: 0xff_fff0,
                rbp_off: Some(-1024),
            },
        ] {
            let v = pack(0x1234_5678, s);
            assert_eq!(unpack(v), Some(s));
            assert_eq!(v & (0xff_ffff << 40), tag(0x1234_5678));
        }
    }

    #[test]
    fn leb128() {
        let b = [0xe5u8, 0x8e, 0x26, 0x7f, 0x80, 0x7f];
        let mut r = Rd {
            at: b.as_ptr() as usize,
            end: b.as_ptr() as usize + b.len(),
        };
        assert_eq!(r.uleb(), Some(624_485));
        assert_eq!(r.sleb(), Some(-1));
        assert_eq!(r.sleb(), Some(-128));
        assert_eq!(r.u8(), None);
    }
}
