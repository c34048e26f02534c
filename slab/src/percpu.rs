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
//! `umem_internal`, plus two *guard pages* below CPU 0's that are never written (a thread
//! whose `cpu_id` is `-1` or `-2` reads them and misses). A page holds 64 slots of 64
//! bytes at the same offsets as the inline slots of a thread's magazine block (cache id
//! × 64: a cache's id names its slot in both modes); slot 0 (the reserved id) is the CPU's
//! header: its words 0 and 1 always point at [`NONE`], so id 0 always misses; words 4 and
//! 5 hold the reap generation this CPU has flushed up to and a tick counter for the
//! periodic update. A slot's words:
//!
//! * 0: the *loaded* magazine's top pointer ([`pack`]): the address of its top round, or
//!   of its link word when it is empty; [`NONE`]'s address when there is no magazine;
//! * 1: the *previous* magazine's, the same way;
//! * 2, 3: pops and pushes by the hit path on this CPU (counted inside the section before
//!   the commit, so an abort at that instruction counts one operation twice);
//! * 4, 5: the link-word addresses of the loaded and previous magazines, stored by the
//!   exchange that installs each one, inside its section: so the occupancy is `(top -
//!   base) / 8` ([`occupancy`]), read without following a top pointer into a magazine
//!   that another thread may be taking;
//! * 6: hits on the previous magazine, which the miss path serves ([`prev_hit_due`]): the
//!   per-CPU analogue of the per-thread hit's inline swap, which no commit of one word can
//!   do; many of them make the magazines grow, as depot visits do.
//!
//! **Fences.** While a magazine is in a CPU slot its link word and the word above its last
//! round (every magazine has one more word in per-CPU mode) hold its address with bit 0
//! set (the link word also its capacity, in its top 16 bits): a *tagged* word, which no
//! round is (buffers are at least 2-aligned: a cache whose
//! buffers may be odd keeps per-thread magazines). The rounds above the top are 0 or stale
//! rounds, never tagged (a fresh magazine is zeroed). So the hits need neither a count nor
//! a capacity: a pop takes the word at the top unless it is tagged (the link word: empty),
//! a push stores above the top unless the word there is tagged (the upper fence: full).
//! [`NONE`] is a pair of tagged words: a slot without a magazine is empty and full at once.
//! [`unpack`] finds a magazine again from its top pointer: from the link word when it is
//! empty, else by walking up to the upper fence.
//!
//! Words 0 and 1 are written only by critical sections running on that CPU (the hits, and
//! the exchanges of the slow path, `percpu_layer.rs`), except by `Cache::destroy` (no
//! thread uses the cache then) and in a forked child (one thread).
//!
//! **The hit** ([`hit_pop`], [`hit_push`]: the loaded magazine) is the hit path itself in
//! per-CPU mode: `hit.rs` chooses between it and the per-thread hit by one test of
//! [`table`]. The previous magazine is tried on the miss path ([`hit_pop_prev`],
//! [`hit_push_prev`]), before the slow path proper.
//!
//! **The mode** is chosen once, in `init`, before any cache exists: per CPU (the default;
//! `set_percpu(false)` asks for per thread) when the thread has an rseq area the kernel
//! keeps up to date — glibc's, or where glibc registered none one umem registers itself
//! (`rseq.rs`) — else per thread. Caches with ids from 64 on keep per-thread magazines in
//! both modes (they have no inline slot), and so do caches whose buffers may be odd.

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
/// A pair of tagged words (see the module doc): the top pointer of "no magazine", on
/// which every pop and every push misses.
static NONE: [usize; 2] = [1, 1];

/// The top pointer of "no magazine" ([`NONE`]'s address).
#[inline]
pub(crate) fn none() -> usize {
    NONE.as_ptr() as usize
}
/// Pops and pushes counted (the sections in `rseq.rs` write them at these offsets).
const POPS: usize = 16;
const PUSHES: usize = 24;
/// How far after a top pointer its magazine's link-word address is kept.
const BASE: usize = 32;
/// Hits on the previous magazine (the miss path's), counted without a section.
const PREV_HITS: usize = 48;
/// Every this many previous-magazine hits on a CPU count as one depot visit
/// ([`prev_hit_due`]).
const PREV_HITS_PER_VISIT: usize = 64;
/// Header words (slot 0).
const HDR_GEN: usize = 32;
const HDR_TICKS: usize = 40;
/// Zero pages below CPU 0's.
const GUARD_PAGES: usize = 2;

/// Largest CPU count the table is built for (a larger `possible` list is cut here; its
/// CPUs beyond it would read other memory, so the mode then stays per thread).
const MAX_CPUS: usize = 4096;

static WANTED: AtomicBool = AtomicBool::new(true);
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
    unsafe { clear_pages(base, n + GUARD_PAGES) };
    RS.store(rs, Ordering::Relaxed);
    NCPUS.store(n, Ordering::Relaxed);
    TABLE.store(base + GUARD_PAGES * CPU_PAGE, Ordering::Release);
}

/// Clear `pages` CPU pages from `base`: every word 0, every slot's top pointers [`NONE`].
///
/// # Safety
/// `base` is writable for `pages * CPU_PAGE` bytes, 8-aligned, and ours.
pub(crate) unsafe fn clear_pages(base: usize, pages: usize) {
    // SAFETY: by the caller.
    unsafe {
        core::ptr::write_bytes(base as *mut u8, 0, pages * CPU_PAGE);
        for slot in 0..pages * SLOTS {
            let s = (base + slot * SLOT) as *mut usize;
            for w in [LOADED, PREV] {
                *s.byte_add(w) = none();
                *s.byte_add(w + BASE) = none();
            }
        }
    }
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

/// CPU 0's page, or 0 in per-thread mode: the one word the hit path loads to choose the
/// mode, and then uses as the table's address (`hit.rs`).
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
/// in slot `off`, or `None` (the caller tries [`hit_pop_prev`], then its slow path).
///
/// # Safety
/// `t` is [`table`]'s value, not 0 (per-CPU mode); `off` is `id * SLOT` with `id <
/// SLOTS` (0 always misses).
#[inline(always)]
pub(crate) unsafe fn hit_pop(t: usize, off: usize) -> Option<usize> {
    // SAFETY: by the caller; the table and the rseq area were set up together.
    let b = unsafe { rseq::pop::<{ LOADED as isize }, { POPS as isize }>(t, rs(), off) };
    (b & 1 == 0).then_some(b)
}

/// [`hit_pop`] on the current CPU's previous magazine: it serves a working set a little
/// larger than one magazine (the per-thread hit swaps the two; a swap writes two words,
/// too many for one commit).
///
/// # Safety
/// As [`hit_pop`].
#[inline]
pub(crate) unsafe fn hit_pop_prev(t: usize, off: usize) -> Option<usize> {
    // SAFETY: as in hit_pop.
    let b = unsafe { rseq::pop::<{ PREV as isize }, { POPS as isize }>(t, rs(), off) };
    (b & 1 == 0).then_some(b)
}

/// The per-CPU hit of a free: onto the current CPU's loaded magazine in slot `off`;
/// `false` when it has no room (the caller tries [`hit_push_prev`], then its slow path).
///
/// # Safety
/// As [`hit_pop`]; `addr` is a free buffer of the slot's cache.
#[inline(always)]
pub(crate) unsafe fn hit_push(t: usize, off: usize, addr: usize) -> bool {
    // SAFETY: by the caller.
    unsafe { rseq::push::<{ LOADED as isize }, { PUSHES as isize }>(t, rs(), off, addr) }
}

/// [`hit_push`] onto the current CPU's previous magazine.
///
/// # Safety
/// As [`hit_push`].
#[inline]
pub(crate) unsafe fn hit_push_prev(t: usize, off: usize, addr: usize) -> bool {
    // SAFETY: by the caller.
    unsafe { rseq::push::<{ PREV as isize }, { PUSHES as isize }>(t, rs(), off, addr) }
}

/// Exchange word `word` (`LOADED` or `PREV`) of slot `off` on the current CPU for `new`,
/// the top pointer of the magazine whose link word is at `base` ([`base_of`]): the old
/// word, or `None` (nothing done) when the thread has no CPU number.
///
/// # Safety
/// Per-CPU mode; `off` is a slot of a cache with `id < SLOTS` (not 0); `new` is [`none`]
/// or the top pointer of a magazine of that cache that the caller hands over ([`pack`]);
/// the caller takes over the magazine of the old word.
pub(crate) unsafe fn exchange(off: usize, word: usize, new: usize, base: usize) -> Option<usize> {
    // SAFETY: by the caller.
    let (old, cpu) =
        unsafe { rseq::exchange::<{ BASE as isize }>(table(), rs(), off + word, new, base) };
    (cpu >= 0).then_some(old)
}

/// The `base` for [`exchange`] of a top pointer made by [`pack`] from magazine `m`.
#[inline]
pub(crate) fn base_of(m: *mut Magazine) -> usize {
    if m.is_null() {
        none()
    } else {
        m as usize
    }
}

/// Count a hit on the previous magazine of slot `off` on the current CPU: true every
/// [`PREV_HITS_PER_VISIT`]th, when the caller counts a depot visit for the cache (so that a
/// working set that keeps crossing a magazine boundary grows the magazines, as depot
/// traffic grows them). A plain load and store, outside any section: a count another
/// thread on the CPU loses meanwhile only delays that.
pub(crate) fn prev_hit_due(off: usize) -> bool {
    let Some(cpu) = cpu_now() else {
        return false;
    };
    let w = word(cpu, off + PREV_HITS);
    let k = w.load(Ordering::Relaxed).wrapping_add(1);
    w.store(k, Ordering::Relaxed);
    k % PREV_HITS_PER_VISIT == 0
}

/// Rounds in CPU `cpu`'s magazines of slot `off` (racy: a magazine being exchanged may
/// count as empty).
fn rounds_on(cpu: usize, off: usize) -> usize {
    let w = core::mem::size_of::<usize>();
    [LOADED, PREV]
        .iter()
        .map(|&m| {
            let top = word(cpu, off + m).load(Ordering::Relaxed);
            let base = word(cpu, off + m + BASE).load(Ordering::Relaxed);
            match top.checked_sub(base) {
                Some(d) if d <= 255 * w => d / w,
                _ => 0,
            }
        })
        .sum()
}

/// The top pointer of magazine `m` holding `rounds` of `cap` rounds, fenced for a CPU
/// slot (its link word and the word above its last round tagged: see the module doc);
/// [`none`] for a null magazine. The link word also carries the capacity in its top 16
/// bits (user addresses stay below 2^48), so that [`unpack`] finds an empty magazine's
/// size without walking to its upper fence.
///
/// # Safety
/// `m` is null or a magazine of `cap` rounds (with the extra word of per-CPU mode) that
/// the caller owns, whose rounds from `rounds` up are untagged.
#[inline]
pub(crate) unsafe fn pack(m: *mut Magazine, rounds: usize, cap: usize) -> usize {
    if m.is_null() {
        return none();
    }
    if rounds > cap || cap >> 16 != 0 {
        fatal("umem-slab: a magazine cannot be packed for the per-CPU layer");
    }
    let tag = m as usize | 1;
    let link = if tag >> ADDR_BITS == 0 {
        tag | cap << ADDR_BITS
    } else {
        tag
    };
    // SAFETY: by the caller; `round(m, cap)` is the extra word above the last round.
    unsafe {
        (*m).next = link as *mut Magazine;
        *Magazine::round(m, cap) = tag;
        Magazine::round(m, rounds) as usize - core::mem::size_of::<usize>()
    }
}

/// Address bits of a link word made by [`pack`] (the capacity is above them).
const ADDR_BITS: u32 = 48;

/// Where a top pointer leads: (magazine, rounds, capacity); a null magazine for [`none`].
/// An empty magazine is known by its link word at the top, a full one by its upper fence
/// just above; a partly full one is walked up to its upper fence (at most a magazine's
/// capacity of words).
///
/// # Safety
/// `p` came from [`pack`] (through a CPU slot), and the caller owns its magazine.
#[inline]
pub(crate) unsafe fn unpack(p: usize) -> (*mut Magazine, usize, usize) {
    if p == none() {
        return (core::ptr::null_mut(), 0, 0);
    }
    let w = core::mem::size_of::<usize>();
    // SAFETY: by the caller `p` is the top round or the link word of a magazine of ours.
    let at = unsafe { *(p as *const usize) };
    if at & 1 != 0 && at >> ADDR_BITS != 0 {
        // Empty: the link word, with the capacity.
        let m = at & ((1 << ADDR_BITS) - 1) & !1;
        return (m as *mut Magazine, 0, at >> ADDR_BITS);
    }
    let mut a = p + w;
    let fence = loop {
        // SAFETY: by the caller the words from the top up to the upper fence are the
        // magazine's own.
        let v = unsafe { *(a as *const usize) };
        if v & 1 != 0 {
            break v;
        }
        a += w;
    };
    let m = fence & !1;
    ((m as *mut Magazine), (p - m) / w, (a - m) / w - 1)
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
        rounds += rounds_on(cpu, off);
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
        *o = rounds_on(cpu, off);
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
        let l = word(cpu, off + LOADED).swap(none(), Ordering::Relaxed);
        let p = word(cpu, off + PREV).swap(none(), Ordering::Relaxed);
        word(cpu, off + LOADED + BASE).store(none(), Ordering::Relaxed);
        word(cpu, off + PREV + BASE).store(none(), Ordering::Relaxed);
        let pops = word(cpu, off + POPS).swap(0, Ordering::Relaxed) as u64;
        let pushes = word(cpu, off + PUSHES).swap(0, Ordering::Relaxed) as u64;
        f(l, p, pops, pushes);
    }
}

/// Run `f` on every possible CPU in turn, the calling thread moved there with
/// `sched_setaffinity` (its own affinity is restored afterwards): how a reap reaches the
/// magazines of CPUs it does not run on, whose slots only sections on that CPU may write.
/// A CPU the thread may not run on (cpuset, offline) is skipped: its magazines stay until
/// a thread there takes a slow path after the reap (the reap generation asks for it).
pub(crate) fn on_each_cpu(f: &mut dyn FnMut()) {
    if !enabled() {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid (empty) set; the calls only read and write
    // these local sets.
    unsafe {
        let size = core::mem::size_of::<libc::cpu_set_t>();
        let mut saved: libc::cpu_set_t = core::mem::zeroed();
        if libc::sched_getaffinity(0, size, &mut saved) != 0 {
            return;
        }
        for cpu in 0..cpus().min(libc::CPU_SETSIZE as usize) {
            if !libc::CPU_ISSET(cpu, &saved) {
                continue;
            }
            let mut one: libc::cpu_set_t = core::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            if libc::sched_setaffinity(0, size, &one) == 0 && cpu_now() == Some(cpu) {
                f();
            }
        }
        libc::sched_setaffinity(0, size, &saved);
    }
}

/// The CPU the thread runs on now (a hint: it may move at once), or `None`.
fn cpu_now() -> Option<usize> {
    // SAFETY: per-CPU mode: `rs()` is the area's offset.
    let c = unsafe { rseq::read_cpu(rs()) };
    usize::try_from(c).ok().filter(|&c| c < cpus())
}

/// How many groups [`group_hint`] is taken modulo by the depot's full lists and the slab
/// layer's claims: the two must agree, so that a group's own list and its own slab stand
/// for the same CPUs (or threads).
pub(crate) const GROUPS: usize = 8;

/// The group the calling thread's buffers are kept under: the depot's list of full
/// magazines it fills and takes from first (`depot.rs`) and the slab it claims
/// (`slab_layer.rs`, "CPU claims"). Per CPU, its CPU: a CPU's magazines serve whichever
/// thread runs there. Per thread, the thread itself (its number, `magazine_block.rs`), so
/// a thread the scheduler moves keeps reusing its own heap. A hint: it may change at once.
pub(crate) fn group_hint() -> usize {
    if enabled() {
        return cpu_now().unwrap_or(0);
    }
    crate::magazine_block::thread_group()
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
    use std::sync::atomic::{AtomicBool, AtomicI32};
    use std::sync::Arc;

    /// Tokens for the section test: `TOKENS` per CPU, each with a "held" flag.
    const TOKENS: usize = 100;
    static HELD: [AtomicBool; 4096] = [const { AtomicBool::new(false) }; 4096];

    /// Pop a token on the current CPU, check nobody else holds it, push it back: the
    /// number of tokens popped (0 or 1), and the token when its CPU had no room for it.
    fn cycle(t: usize, rs: isize) -> (u64, Option<usize>) {
        // SAFETY: `t` is the test table, slot 64 holds a packed magazine.
        let tok = unsafe { rseq::pop::<0, 16>(t, rs, SLOT) };
        if tok & 1 != 0 {
            return (0, None);
        }
        let i = tok >> 3;
        assert!(
            !HELD[i].swap(true, Ordering::AcqRel),
            "token {i} handed out twice"
        );
        HELD[i].store(false, Ordering::Release);
        // SAFETY: as above; the token is ours to give back.
        let pushed = unsafe { rseq::push::<0, 24>(t, rs, SLOT, tok) };
        (1, (!pushed).then_some(tok))
    }

    extern "C" fn on_signal(_: libc::c_int) {
        let t = SIG_TABLE.load(Ordering::Relaxed);
        if t != 0 {
            // A token the handler could not put back (its CPU was full) is only marked.
            if let (_, Some(tok)) = cycle(t, RS.load(Ordering::Relaxed)) {
                LOST_IN_HANDLER[tok >> 3].store(true, Ordering::Relaxed);
            }
        }
    }
    static SIG_TABLE: AtomicUsize = AtomicUsize::new(0);
    static LOST_IN_HANDLER: [AtomicBool; 4096] = [const { AtomicBool::new(false) }; 4096];

    /// The sections under forced migration, preemption and signals: 16 threads cycle
    /// tokens through CPU magazines while their affinity changes and signals whose
    /// handler runs sections of its own interrupt them. Without restart on abort a
    /// token would be handed out twice or lost; in the end every token is in exactly
    /// one magazine (or one thread's spares).
    #[test]
    fn sections_restart_under_migration_and_signals() {
        let Some(rs) = rseq::area_offset() else {
            return; // no rseq here: nothing to test
        };
        let n = possible_cpus().unwrap();
        let layout =
            std::alloc::Layout::from_size_align((n + GUARD_PAGES) * CPU_PAGE, CPU_PAGE).unwrap();
        // SAFETY: a non-zero size.
        let base = unsafe { std::alloc::alloc_zeroed(layout) } as usize;
        // SAFETY: the fresh table, ours.
        unsafe { clear_pages(base, n + GUARD_PAGES) };
        let t = base + GUARD_PAGES * CPU_PAGE;
        let mag_layout = std::alloc::Layout::from_size_align(145 * 8, 64).unwrap();
        let mut mags = Vec::new();
        for cpu in 0..n.min(4096 / TOKENS) {
            // SAFETY: a non-zero size.
            let m = unsafe { std::alloc::alloc_zeroed(mag_layout) } as *mut usize;
            for i in 0..TOKENS {
                // SAFETY: rounds follow the link word; 145 words.
                unsafe { *m.add(1 + i) = (cpu * TOKENS + i) << 3 };
            }
            let w = (t + cpu * CPU_PAGE + SLOT) as *mut usize;
            // SAFETY: the slot's word 0 in CPU `cpu`'s page.
            unsafe { *w = pack(m.cast(), TOKENS, 143) };
            // SAFETY: as above; the magazine is ours and zeroed above its rounds.
            assert_eq!(unsafe { unpack(*w) }, (m.cast(), TOKENS, 143));
            mags.push(m);
        }
        let total = mags.len() * TOKENS;
        RS.store(rs, Ordering::Relaxed);
        SIG_TABLE.store(t, Ordering::Relaxed);
        // SAFETY: installing a handler that only runs sections and atomics.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let tids: Arc<Vec<AtomicI32>> = Arc::new((0..16).map(|_| AtomicI32::new(0)).collect());
        let workers: Vec<_> = (0..16)
            .map(|k| {
                let (stop, tids) = (stop.clone(), tids.clone());
                std::thread::spawn(move || {
                    // SAFETY: no preconditions.
                    tids[k].store(unsafe { libc::gettid() }, Ordering::Relaxed);
                    let mut spare = Vec::new();
                    let mut hits = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let (h, extra) = cycle(t, rs);
                        hits += h;
                        spare.extend(extra);
                        if let Some(tok) = spare.pop() {
                            // SAFETY: the test table; the token is ours to give back.
                            if !unsafe { rseq::push::<0, 24>(t, rs, SLOT, tok) } {
                                spare.push(tok);
                            }
                        }
                    }
                    (hits, spare)
                })
            })
            .collect();
        let mut k = 0u64;
        let end = std::time::Instant::now() + std::time::Duration::from_millis(600);
        while std::time::Instant::now() < end {
            k += 1;
            let tid = tids[(k % 16) as usize].load(Ordering::Relaxed);
            if tid != 0 {
                // SAFETY: plain syscalls on our own threads.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET((k as usize / 16) % n, &mut set);
                    if k % 3 == 0 {
                        for c in 0..n {
                            libc::CPU_SET(c, &mut set);
                        }
                    }
                    libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set);
                    libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR2);
                }
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        stop.store(true, Ordering::Relaxed);
        let mut seen = vec![false; total];
        let mut hits = 0;
        for w in workers {
            let (h, spare) = w.join().unwrap();
            hits += h;
            for tok in spare {
                assert!(!std::mem::replace(&mut seen[tok >> 3], true));
            }
        }
        SIG_TABLE.store(0, Ordering::Relaxed);
        for cpu in 0..n {
            // SAFETY: the slot's word 0 of CPU `cpu`'s page; all threads are done.
            let (m, r, _) = unsafe { unpack(*((t + cpu * CPU_PAGE + SLOT) as *const usize)) };
            for i in 0..r {
                // SAFETY: a test magazine with `r` rounds.
                let tok = unsafe { *(m as *const usize).add(1 + i) };
                assert!(!std::mem::replace(&mut seen[tok >> 3], true), "token twice");
            }
        }
        let lost_in_handler = (0..total)
            .filter(|&i| LOST_IN_HANDLER[i].load(Ordering::Relaxed) && !seen[i])
            .count();
        let present = seen.iter().filter(|&&s| s).count();
        assert_eq!(present + lost_in_handler, total, "tokens lost");
        assert!(hits > 10_000, "{hits}");
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(highest_cpu(b"0-1\n"), Some(1));
        assert_eq!(highest_cpu(b"0\n"), Some(0));
        assert_eq!(highest_cpu(b"0-3,8-11\n"), Some(11));
        assert_eq!(highest_cpu(b"x"), None);
        assert_eq!(highest_cpu(b""), None);
    }

    /// The top pointer of a magazine and its fences, for every fill from empty to full:
    /// `unpack` gives back what `pack` was given; the word at the top is tagged only when
    /// empty, the word above it only when full; "no magazine" is both.
    #[test]
    fn top_pointers_round_trip_and_fence() {
        let mut words = vec![0usize; 8 + 2];
        let m = words.as_mut_ptr() as *mut Magazine;
        for r in 0..=8 {
            // SAFETY: a magazine of 8 rounds plus its fence word, ours.
            let p = unsafe { pack(m, r, 8) };
            // SAFETY: as above.
            assert_eq!(unsafe { unpack(p) }, (m, r, 8));
            // SAFETY: `p` and the word above it lie in `words`.
            let (at, above) = unsafe { (*(p as *const usize), *((p + 8) as *const usize)) };
            assert_eq!(at & 1 != 0, r == 0, "fill {r}");
            assert_eq!(above & 1 != 0, r == 8, "fill {r}");
        }
        // SAFETY: a null magazine.
        assert_eq!(unsafe { pack(core::ptr::null_mut(), 0, 15) }, none());
        // SAFETY: as above.
        assert!(unsafe { unpack(none()) }.0.is_null());
        assert!(NONE.iter().all(|w| w & 1 != 0));
    }
}
