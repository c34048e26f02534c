//! Per-CPU magazines (Bonwick & Adams 2001: the magazine layer is per *CPU*): the table of
//! CPU slots, the mode switch, and the hit path over restartable sequences (`rseq.rs`).
//!
//! **Why.** Per-thread magazines cost memory in proportion to the number of threads; per
//! CPU, in proportion to the CPUs the process may run on, whatever its thread count. With
//! rseq the per-CPU hit still takes no lock and no atomic read-modify-write: the pop or
//! push is a critical section on the current CPU's slot that commits with one store.
//!
//! **The table.** One 4 KiB page per *possible* CPU (`/sys/devices/system/cpu/possible`,
//! read once at start, so a CPU brought online later already has its page), from
//! `umem_internal`, plus two zero pages below CPU 0's that are never written (a thread
//! whose `cpu_id` is `-1` or `-2` reads them and misses). A page holds 64 slots of 64
//! bytes at the same offsets as the inline slots of a thread's magazine block (cache id
//! × 64, so a cache's [`InlineIndex`](crate::InlineIndex) names its slot in both modes);
//! slot 0 (the reserved id) is the CPU's header: its word 0 stays zero, so id 0 always
//! misses; words 4 and 5 hold the reap generation this CPU has flushed up to and a tick
//! counter for the periodic update. A slot's words:
//!
//! * 0: the *loaded* magazine, packed `address << 16 | capacity << 8 | rounds` (0: none;
//!   capacity 0 makes every push miss, rounds 0 every pop);
//! * 1: the *previous* magazine, packed the same way;
//! * 2, 3: pops and pushes by the hit path on this CPU (counted inside the section before
//!   the commit, so an abort at that instruction counts one operation twice).
//!
//! Words 0 and 1 are written only by critical sections running on that CPU (the hits, and
//! the exchanges of the slow path, `percpu_layer.rs`), except by `Cache::destroy` (no
//! thread uses the cache then) and in a forked child (one thread).
//!
//! **The mode** is chosen once, in `init`, before any cache exists: per CPU when
//! [`set_percpu`] asked for it and glibc registered an rseq area the kernel keeps up to date
//! (`rseq.rs`), else per thread. Caches with ids from 64 on keep per-thread magazines in
//! both modes (they have no inline slot).

use core::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};

use crate::diag::fatal;
use crate::magazine::Magazine;
use crate::metadata::{arena_alloc, arenas};
use crate::rseq::{self, CPU_SHIFT};

/// Bytes per CPU page.
pub(crate) const CPU_PAGE: usize = 1 << CPU_SHIFT;
/// Bytes per slot (the size of a `ThreadCache`).
pub(crate) const SLOT: usize = 64;
/// Slots per CPU page (cache ids 0..64; id 0 is the header).
pub(crate) const SLOTS: usize = CPU_PAGE / SLOT;
/// Byte offsets of a slot's words.
pub(crate) const LOADED: usize = 0;
pub(crate) const PREV: usize = 8;
const POPS: usize = 16;
const PUSHES: usize = 24;
/// Header words (slot 0).
const HDR_GEN: usize = 32;
const HDR_TICKS: usize = 40;
/// Zero pages below CPU 0's.
const GUARD_PAGES: usize = 2;

/// Largest CPU count the table is built for (a larger `possible` list is cut here; its
/// CPUs beyond it would read other memory, so the mode then stays per thread).
const MAX_CPUS: usize = 4096;

static WANTED: AtomicBool = AtomicBool::new(false);
/// CPU 0's page; 0 in per-thread mode (the one word the hit paths test).
static TABLE: AtomicUsize = AtomicUsize::new(0);
/// The rseq area's offset from the thread pointer.
static RS: AtomicIsize = AtomicIsize::new(0);
static NCPUS: AtomicUsize = AtomicUsize::new(0);

/// Ask for per-CPU magazines (takes effect in `init`, if rseq is usable).
pub(crate) fn set_wanted(on: bool) {
    WANTED.store(on, Ordering::Relaxed);
}

/// Choose the mode: build the table when per-CPU magazines are wanted and rseq works.
/// Called once by `init`, after the metadata arenas and before the first cache.
pub(crate) fn setup() {
    if !WANTED.load(Ordering::Relaxed) {
        return;
    }
    let Some(rs) = rseq::area_offset() else {
        return;
    };
    let Some(n) = possible_cpus() else {
        return;
    };
    let bytes = (n + GUARD_PAGES) * CPU_PAGE;
    let Some(base) = arena_alloc(arenas().internal, bytes, CPU_PAGE) else {
        return;
    };
    // SAFETY: fresh memory of `bytes` bytes from umem_internal, ours.
    unsafe { core::ptr::write_bytes(base as *mut u8, 0, bytes) };
    RS.store(rs, Ordering::Relaxed);
    NCPUS.store(n, Ordering::Relaxed);
    TABLE.store(base + GUARD_PAGES * CPU_PAGE, Ordering::Release);
}

/// The number of possible CPUs (highest number in `/sys/devices/system/cpu/possible`,
/// plus one), read without allocating.
fn possible_cpus() -> Option<usize> {
    let mut buf = [0u8; 256];
    // SAFETY: a NUL-terminated path; `buf` is writable for its length; the descriptor is
    // closed before returning.
    let len = unsafe {
        let fd = libc::open(
            c"/sys/devices/system/cpu/possible".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return None;
        }
        let r = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        r
    };
    let text = buf.get(..usize::try_from(len).ok()?)?;
    let max = highest_cpu(text)?;
    (max < MAX_CPUS).then_some(max + 1)
}

/// The highest number in a kernel CPU list such as `0-3,8-11\n`.
pub(crate) fn highest_cpu(text: &[u8]) -> Option<usize> {
    let mut max = None;
    let mut cur: Option<usize> = None;
    for &b in text {
        if b.is_ascii_digit() {
            let v = cur
                .unwrap_or(0)
                .checked_mul(10)?
                .checked_add(usize::from(b - b'0'))?;
            cur = Some(v);
        } else {
            if let Some(v) = cur.take() {
                max = Some(max.map_or(v, |m: usize| m.max(v)));
            }
            if !matches!(b, b'-' | b',' | b'\n' | b' ') {
                return None;
            }
        }
    }
    if let Some(v) = cur {
        max = Some(max.map_or(v, |m: usize| m.max(v)));
    }
    max
}

/// CPU 0's page, or 0 in per-thread mode.
#[inline(always)]
pub(crate) fn table() -> usize {
    TABLE.load(Ordering::Relaxed)
}

/// Whether the magazines are per CPU.
#[inline]
pub(crate) fn enabled() -> bool {
    table() != 0
}

/// Number of CPU pages (0 in per-thread mode).
pub(crate) fn cpus() -> usize {
    if enabled() {
        NCPUS.load(Ordering::Relaxed)
    } else {
        0
    }
}

#[inline(always)]
fn rs() -> isize {
    RS.load(Ordering::Relaxed)
}

/// The per-CPU hit of an allocation: the top round of the current CPU's loaded magazine
/// in slot `off`, or `None` (the caller takes the slow path).
///
/// # Safety
/// `t` is [`table`]'s non-zero value; `off` is `id * SLOT` of a cache with `id < SLOTS`.
#[inline(always)]
pub(crate) unsafe fn hit_pop(t: usize, off: usize) -> Option<usize> {
    // SAFETY: by the caller; the table and the rseq area were set up together.
    let (buf, n) = unsafe { rseq::pop(t, rs(), off) };
    if n != 0 {
        Some(buf)
    } else {
        None
    }
}

/// The per-CPU hit of a free: `false` when the current CPU's loaded magazine in slot
/// `off` has no room (the caller takes the slow path).
///
/// # Safety
/// As [`hit_pop`]; `addr` is a free buffer of the slot's cache.
#[inline(always)]
pub(crate) unsafe fn hit_push(t: usize, off: usize, addr: usize) -> bool {
    // SAFETY: by the caller.
    unsafe { rseq::push(t, rs(), off, addr) }
}

/// Exchange word `word` (`LOADED` or `PREV`) of slot `off` on the current CPU for `new`:
/// the old word, or `None` (nothing done) when the thread has no CPU number.
///
/// # Safety
/// Per-CPU mode; `off` is a slot of a cache with `id < SLOTS` (not 0); `new` is 0 or a
/// packed magazine of that cache that the caller hands over; the caller takes over the
/// magazine of the old word.
pub(crate) unsafe fn exchange(off: usize, word: usize, new: usize) -> Option<usize> {
    // SAFETY: by the caller.
    let (old, cpu) = unsafe { rseq::exchange(table(), rs(), off + word, new) };
    (cpu >= 0).then_some(old)
}

/// Pack a magazine with `rounds` rounds of `cap` (0 for a null magazine).
#[inline]
pub(crate) fn pack(m: *mut Magazine, rounds: usize, cap: usize) -> usize {
    if m.is_null() {
        return 0;
    }
    let a = m as usize;
    if a >> 48 != 0 || cap > 255 || rounds > cap {
        fatal("umem-slab: a magazine cannot be packed for the per-CPU layer");
    }
    a << 16 | cap << 8 | rounds
}

/// Unpack a word: (magazine, rounds, capacity).
#[inline]
pub(crate) fn unpack(w: usize) -> (*mut Magazine, usize, usize) {
    ((w >> 16) as *mut Magazine, w & 0xff, (w >> 8) & 0xff)
}

/// The word at byte `off` of CPU `cpu`'s page.
fn word(cpu: usize, off: usize) -> &'static AtomicUsize {
    debug_assert!(enabled() && cpu < cpus() && off % 8 == 0 && off < CPU_PAGE);
    // SAFETY: CPU pages live as long as the process; every word is 8-aligned and only
    // written with whole-word stores (the sections' `mov`s, atomics here).
    unsafe { &*((table() + cpu * CPU_PAGE + off) as *const AtomicUsize) }
}

/// Rounds held in CPU magazines of slot `off`, over every CPU, and the pops and pushes
/// counted there (racy snapshot).
pub(crate) fn occupancy(off: usize) -> (usize, u64, u64) {
    let (mut rounds, mut pops, mut pushes) = (0, 0, 0);
    for cpu in 0..cpus() {
        for w in [LOADED, PREV] {
            rounds += unpack(word(cpu, off + w).load(Ordering::Relaxed)).1;
        }
        pops += word(cpu, off + POPS).load(Ordering::Relaxed) as u64;
        pushes += word(cpu, off + PUSHES).load(Ordering::Relaxed) as u64;
    }
    (rounds, pops, pushes)
}

/// Rounds held in CPU magazines of slot `off`, per CPU, into `out` (as many CPUs as fit);
/// returns the number of CPUs.
pub(crate) fn occupancy_per_cpu(off: usize, out: &mut [usize]) -> usize {
    let n = cpus();
    for (cpu, o) in out.iter_mut().enumerate().take(n) {
        *o = [LOADED, PREV]
            .iter()
            .map(|&w| unpack(word(cpu, off + w).load(Ordering::Relaxed)).1)
            .sum();
    }
    n
}

/// Take every CPU's words of slot `off` (loaded, previous, and the counts): for
/// `Cache::destroy` (no thread uses the cache) and nothing else.
///
/// # Safety
/// No thread runs a hit or an exchange on slot `off` meanwhile; the caller takes over
/// the magazines of the words it gets.
pub(crate) unsafe fn take_all(off: usize, f: &mut dyn FnMut(usize, usize, u64, u64)) {
    for cpu in 0..cpus() {
        let l = word(cpu, off + LOADED).swap(0, Ordering::Relaxed);
        let p = word(cpu, off + PREV).swap(0, Ordering::Relaxed);
        let pops = word(cpu, off + POPS).swap(0, Ordering::Relaxed) as u64;
        let pushes = word(cpu, off + PUSHES).swap(0, Ordering::Relaxed) as u64;
        f(l, p, pops, pushes);
    }
}

/// The CPU the thread runs on now (a hint: it may move at once), or `None`.
fn cpu_now() -> Option<usize> {
    // SAFETY: per-CPU mode: `rs()` is the area's offset.
    let c = unsafe { rseq::read_cpu(rs()) };
    usize::try_from(c).ok().filter(|&c| c < cpus())
}

/// Whether the current CPU has not flushed since reap generation `gen` was asked for;
/// marks it flushed (a hint: another thread on this CPU may flush it too, which is
/// harmless).
pub(crate) fn flush_due(gen: u32) -> bool {
    let Some(cpu) = cpu_now() else {
        return false;
    };
    let w = word(cpu, HDR_GEN);
    if w.load(Ordering::Relaxed) as u32 == gen {
        return false;
    }
    w.store(gen as usize, Ordering::Relaxed);
    true
}

/// Counts an alloc slow path on the current CPU: true every `every`th (for the clock
/// read of the periodic update).
pub(crate) fn tick(every: u64) -> bool {
    let Some(cpu) = cpu_now() else {
        return true;
    };
    let w = word(cpu, HDR_TICKS);
    let k = w.load(Ordering::Relaxed);
    w.store(k.wrapping_add(1), Ordering::Relaxed);
    (k as u64) % every == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(highest_cpu(b"0-1\n"), Some(1));
        assert_eq!(highest_cpu(b"0\n"), Some(0));
        assert_eq!(highest_cpu(b"0-3,8-11\n"), Some(11));
        assert_eq!(highest_cpu(b"x"), None);
        assert_eq!(highest_cpu(b""), None);
    }

    #[test]
    fn packing_round_trips() {
        let m = 0x7f12_3456_7840usize as *mut Magazine;
        let w = pack(m, 5, 143);
        assert_eq!(unpack(w), (m, 5, 143));
        assert_eq!(pack(core::ptr::null_mut(), 0, 15), 0);
        assert_eq!(unpack(0).1, 0);
    }
}
