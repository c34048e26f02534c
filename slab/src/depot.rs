//! The depot (Bonwick & Adams 2001, section 3.2): a cache's lists of full and empty
//! magazines, its working-set counters, its magazine type and the signals that grow it
//! (contention and traffic). Everything here is state under the cache's *depot lock* and
//! the decisions made on that state alone; what needs the rest of the cache (destroying a
//! magazine's rounds, making a new magazine) is in `magazine_layer.rs`.

use core::ptr::null_mut;

use crate::magazine::{Magazine, MAGTYPES};
use crate::percpu::GROUPS;

/// Failed depot trylocks per update interval above which magazines grow.
pub(crate) const DEPOT_CONTENTION: u64 = 2;

/// Magazines also grow on depot *traffic*: `TRAFFIC_VISITS` depot visits within
/// `TRAFFIC_WINDOW_MS` (see the theory statement, section 5).
const TRAFFIC_VISITS: u32 = 64;
const TRAFFIC_WINDOW_MS: u64 = 50;

/// The working-set counters of a depot list (umem.c's `umem_maglist_t` counts): how many
/// magazines it holds, the fewest it held since the last update, and so how many lay
/// unused for a whole interval and may be freed.
pub(crate) struct WorkingSet {
    /// Magazines on the list.
    pub total: usize,
    /// The lowest `total` since the last working-set update.
    pub min: usize,
    /// The previous interval's `min`: that many magazines were not needed for a whole
    /// interval and may be freed.
    pub reaplimit: usize,
    /// Magazines taken off the list (statistics).
    pub alloc: u64,
}

impl WorkingSet {
    const fn new() -> WorkingSet {
        WorkingSet {
            total: 0,
            min: 0,
            reaplimit: 0,
            alloc: 0,
        }
    }

    /// A magazine went onto the list.
    fn put(&mut self) {
        self.total += 1;
    }

    /// A magazine came off the list.
    fn took(&mut self) {
        self.total -= 1;
        if self.total < self.min {
            self.min = self.total;
        }
        self.alloc += 1;
    }

    /// Start a new working-set interval (`umem_depot_ws_update`).
    fn update(&mut self) {
        self.reaplimit = self.min;
        self.min = self.total;
    }

    /// How many magazines lay unused for the whole last interval.
    pub(crate) fn reapable(&self) -> usize {
        self.reaplimit.min(self.min)
    }
}

/// The depot's empty magazines: a stack (any empty magazine is as good as another) with
/// its working-set counters.
pub(crate) struct MagList {
    head: *mut Magazine,
    pub ws: WorkingSet,
}

impl MagList {
    pub(crate) const fn new() -> MagList {
        MagList {
            head: null_mut(),
            ws: WorkingSet::new(),
        }
    }

    /// Take the top magazine (null when the list is empty).
    pub(crate) fn pop(&mut self) -> *mut Magazine {
        let m = self.head;
        if !m.is_null() {
            // SAFETY: magazines on the list are live and owned by the depot.
            self.head = unsafe { (*m).next };
            self.ws.took();
        }
        m
    }

    /// Put `m` (a live magazine handed over by the caller) on top.
    pub(crate) fn push(&mut self, m: *mut Magazine) {
        // SAFETY: the caller hands over a live magazine.
        unsafe { (*m).next = self.head };
        self.head = m;
        self.ws.put();
    }

    /// Call `f` on every magazine of the list, at most `total` of them; true when the list
    /// held exactly `total`.
    pub(crate) fn for_each(&self, f: &mut dyn FnMut(*mut Magazine)) -> bool {
        walk(self.head, self.ws.total, f)
    }
}

/// Call `f` on the magazines linked from `head` through their link words, at most `n`
/// of them; true when there were exactly `n`.
fn walk(head: *mut Magazine, n: usize, f: &mut dyn FnMut(*mut Magazine)) -> bool {
    let mut seen = 0;
    let mut m = head;
    while !m.is_null() {
        if seen == n {
            return false;
        }
        seen += 1;
        f(m);
        // SAFETY: magazines on a depot list are live and owned by the depot.
        m = unsafe { (*m).next };
    }
    seen == n
}

// Address order.
//
// A program that grows its heap by hundreds of MB and frees it again fills the depot with
// tens of thousands of full magazines, in the order it freed, and takes them back when
// it grows again. Handed back last-in first-out, a heap freed forward is reused backward,
// and one freed every other block forward and the rest backward (sh6bench does) is reused
// odd blocks over the whole heap first, then even ones over the whole heap again: the
// program's passes over its blocks then touch every line twice, and its next frees meet
// them in cold memory. Reused in address order, the heap is taken a few KB at a time, as a
// fresh one is (measured on that pattern, 150 MB of sh6bench's sizes: 95% of successive
// allocations of a class step up instead of half, and reading the reused heap back took
// 0.043 s instead of 0.062 s; docs/performance.md).
//
// So each full list is a [`Deque`], and two cheap rules give address order to the usual
// free orders (forward, backward, and the two interleaved) at O(1) a magazine:
//
// * A magazine entering the list is turned so that its rounds descend from round 0
//   (judged by its two ends; reversed in place if they ascend, about 40 ns for 143
//   rounds): the hits pop from the top, so they then take its buffers in ascending order.
// * A pop takes the back (the newest, last-in first-out as before) while the list is
//   short (a steady churn, where the newest magazine is the warmest); once it holds more
//   than [`ORDER_MIN`] magazines (a heap shrinking and about to grow again) it takes
//   whichever end's magazine lies lower (its top round, now its lowest buffer). A heap
//   freed forward is then reused from the front, one freed backward from the back, and
//   the interleaved pattern alternates between the two ends.
//
// The deque's back link is the extra word above the last round, which a full magazine in
// the depot does not use (every magazine has it, `create.rs`; per-CPU mode writes its
// fence there when it loads one).

/// Full magazines on a list above which pops prefer the lower end to the newest.
const ORDER_MIN: usize = 8;

/// One address-ordered list of full magazines of `cap` rounds (see "Address order").
struct Deque {
    /// The front, its oldest magazine.
    head: *mut Magazine,
    /// The back, its newest.
    tail: *mut Magazine,
    /// Rounds per magazine.
    cap: usize,
    /// Magazines on the list.
    len: usize,
}

impl Deque {
    const fn new(cap: usize) -> Deque {
        Deque {
            head: null_mut(),
            tail: null_mut(),
            cap,
            len: 0,
        }
    }

    /// Take a magazine (null when the list is empty): the newest, or the lower end's when
    /// the list is long.
    fn pop(&mut self) -> *mut Magazine {
        if self.len > ORDER_MIN
            // SAFETY: both ends are live full magazines of `cap` rounds (len > 0).
            && unsafe { self.lowest(self.head) < self.lowest(self.tail) }
        {
            self.pop_front()
        } else {
            self.pop_back()
        }
    }

    /// Put full magazine `m` (live, handed over by the caller) at the back, turned.
    fn push(&mut self, m: *mut Magazine) {
        // SAFETY: the caller hands over a live full magazine of `cap` rounds; its link and
        // extra words are the deque's while it is on the list.
        unsafe {
            let r = core::slice::from_raw_parts_mut(Magazine::round(m, 0), self.cap);
            if r[0] < r[self.cap - 1] {
                r.reverse();
            }
            (*m).next = null_mut();
            *self.back_link(m) = self.tail;
            if self.tail.is_null() {
                self.head = m;
            } else {
                (*self.tail).next = m;
            }
        }
        self.tail = m;
        self.len += 1;
    }

    /// Call `f` on every magazine, front to back, at most `len` of them; true when the
    /// list held exactly `len`.
    fn for_each(&self, f: &mut dyn FnMut(*mut Magazine)) -> bool {
        walk(self.head, self.len, f)
    }

    fn pop_front(&mut self) -> *mut Magazine {
        let m = self.head;
        if !m.is_null() {
            // SAFETY: live magazines of this list.
            unsafe {
                self.head = (*m).next;
                if self.head.is_null() {
                    self.tail = null_mut();
                } else {
                    *self.back_link(self.head) = null_mut();
                }
            }
            self.len -= 1;
        }
        m
    }

    fn pop_back(&mut self) -> *mut Magazine {
        let m = self.tail;
        if !m.is_null() {
            // SAFETY: live magazines of this list.
            unsafe {
                self.tail = *self.back_link(m);
                if self.tail.is_null() {
                    self.head = null_mut();
                } else {
                    (*self.tail).next = null_mut();
                }
            }
            self.len -= 1;
        }
        m
    }

    /// The back link of `m` (its extra word above the last round).
    ///
    /// # Safety
    /// `m` is a live magazine of `cap` rounds (and the extra word).
    #[inline]
    unsafe fn back_link(&self, m: *mut Magazine) -> *mut *mut Magazine {
        // SAFETY: by the caller; the extra word is `round(m, cap)`.
        unsafe { Magazine::round(m, self.cap) as *mut *mut Magazine }
    }

    /// The lowest buffer of `m` as `push` turned it: its top round.
    ///
    /// # Safety
    /// `m` is a live full magazine of `cap` rounds.
    #[inline]
    unsafe fn lowest(&self, m: *mut Magazine) -> usize {
        // SAFETY: by the caller.
        unsafe { *Magazine::round(m, self.cap - 1) }
    }
}

/// Full magazines another CPU's list must hold before a CPU whose own list is empty takes
/// one of them, for caches of small chunks ([`steal_min`]; see [`FullLists`]).
const STEAL_MIN: usize = 2;

/// Chunks up to this size count as small for [`steal_min`].
const SMALL_CHUNK: usize = 512;

/// The `steal_min` of [`FullLists::pop`] for a cache of `chunksize`-byte chunks.
pub(crate) fn steal_min(chunksize: usize, hashed: bool) -> usize {
    if !hashed && chunksize <= SMALL_CHUNK {
        STEAL_MIN
    } else {
        1
    }
}

/// The depot's full magazines, in [`GROUPS`] address-ordered lists by the CPU that
/// freed their buffers (its number modulo `GROUPS`, `percpu::group_hint`), with the working-set counters of all
/// of them together.
///
/// A CPU takes full magazines from its own list first, so that a thread reuses the heap
/// it freed. Shared lists handed each thread magazines that other threads had filled:
/// after two threads each freed their own half of a heap, each grew again over both
/// halves, every other magazine, and the two then wrote one another's lines (a two-thread
/// heap-growth model read its reused blocks no faster than one thread did). A CPU whose
/// list is empty takes from the next one round the ring (a bitmap finds it), as a consumer
/// takes what its producer's frees filled — for a cache of small chunks only once that
/// list holds [`STEAL_MIN`] magazines ([`steal_min`]). Two threads that each allocate and
/// free about as much (glibc's bench-malloc-thread) each run short of their own list now
/// and then; taking the other's magazine then handed each thread buffers that lie between
/// the other's live ones, on its lines. Below the threshold the CPU refills from its own
/// slab (`slab_layer.rs`, "CPU claims") instead; a producer still gets its consumer's
/// frees, with up to `STEAL_MIN` magazines more in the depot.
pub(crate) struct FullLists {
    parts: [Deque; GROUPS],
    /// Bit `i` set when `parts[i]` holds a magazine.
    nonempty: u32,
    pub ws: WorkingSet,
}

impl FullLists {
    /// Empty lists of full magazines of `cap` rounds.
    pub(crate) fn new(cap: usize) -> FullLists {
        FullLists {
            parts: core::array::from_fn(|_| Deque::new(cap)),
            nonempty: 0,
            ws: WorkingSet::new(),
        }
    }

    /// Take a full magazine for CPU `cpu`: from its own list, else from the next list
    /// round the ring that holds at least `steal_min` (1 or more) magazines; null when
    /// there is none.
    pub(crate) fn pop(&mut self, cpu: usize, steal_min: usize) -> *mut Magazine {
        let own = cpu % GROUPS;
        let mut bits = self.nonempty.rotate_right(own as u32);
        // The first list from `own` on, round the ring, that may give one: its own
        // whenever that is not empty, another only with `steal_min` magazines.
        let i = loop {
            if bits == 0 {
                return null_mut();
            }
            let i = (own + bits.trailing_zeros() as usize) % GROUPS;
            if i == own || self.parts[i].len >= steal_min {
                break i;
            }
            bits &= bits - 1;
        };
        let l = &mut self.parts[i];
        let m = l.pop();
        if l.len == 0 {
            self.nonempty &= !(1 << i);
        }
        self.ws.took();
        m
    }

    /// Put full magazine `m`, filled on CPU `cpu`, on that CPU's list.
    pub(crate) fn push(&mut self, m: *mut Magazine, cpu: usize) {
        let i = cpu % GROUPS;
        self.parts[i].push(m);
        self.nonempty |= 1 << i;
        self.ws.put();
    }

    /// Call `f` on every full magazine, at most `total`; true when there were exactly
    /// `total` (and each list held its own count).
    pub(crate) fn for_each(&self, f: &mut dyn FnMut(*mut Magazine)) -> bool {
        let mut n = 0;
        let mut ok = true;
        for l in &self.parts {
            ok &= l.for_each(&mut |m| {
                n += 1;
                if n <= self.ws.total {
                    f(m);
                }
            });
        }
        ok && n == self.ws.total
    }
}

/// The depot (under the cache's depot lock).
pub(crate) struct Depot {
    pub full: FullLists,
    pub empty: MagList,
    /// Index into `MAGTYPES` of the magazines on both lists.
    pub magtype: usize,
    /// Failed trylocks of the depot lock, ever and at the last update.
    pub contention: u64,
    pub contention_prev: u64,
    /// Magazine resizes (statistics).
    pub resizes: u64,
    /// Depot visits in the current traffic window and when it began (ms, coarse clock).
    visits: u32,
    window_ms: u64,
}

impl Depot {
    /// An empty depot whose magazines will be of type `magtype`.
    pub(crate) fn new(magtype: usize) -> Depot {
        Depot {
            full: FullLists::new(MAGTYPES[magtype].rounds),
            empty: MagList::new(),
            magtype,
            contention: 0,
            contention_prev: 0,
            resizes: 0,
            visits: 0,
            window_ms: 0,
        }
    }

    /// Rounds in a magazine of the current type.
    #[inline]
    pub(crate) fn rounds(&self) -> usize {
        MAGTYPES[self.magtype].rounds
    }

    /// Count a depot visit; true when the cache's magazines should grow (too much traffic).
    #[inline]
    pub(crate) fn note_visit(&mut self, grow_on_traffic: bool) -> bool {
        self.visits += 1;
        if self.visits < TRAFFIC_VISITS {
            return false;
        }
        self.visits = 0;
        let now = crate::clock::now_ms();
        let busy = now.wrapping_sub(self.window_ms) < TRAFFIC_WINDOW_MS;
        self.window_ms = now;
        busy && grow_on_traffic
    }

    /// Start a new working-set interval on both lists.
    pub(crate) fn ws_update(&mut self) {
        self.full.ws.update();
        self.empty.ws.update();
    }

    /// At an update: did the depot lock see enough contention since the last update for
    /// a cache of `chunksize`-byte chunks to grow its magazines? Starts a new interval.
    pub(crate) fn contended(&mut self, chunksize: usize) -> bool {
        let r = chunksize < MAGTYPES[self.magtype].maxbuf
            && self.contention.wrapping_sub(self.contention_prev) > DEPOT_CONTENTION;
        self.contention_prev = self.contention;
        r
    }

    /// Switch to the next magazine type for a cache of `chunksize`-byte chunks, handing
    /// back the (full, empty) lists of the old type and its index; `None` when the type
    /// cannot grow.
    pub(crate) fn grow(&mut self, chunksize: usize) -> Option<(FullLists, MagList, usize)> {
        let old = self.magtype;
        if old + 1 >= MAGTYPES.len() || chunksize >= MAGTYPES[old].maxbuf {
            return None;
        }
        let f = core::mem::replace(&mut self.full, FullLists::new(MAGTYPES[old + 1].rounds));
        let e = core::mem::replace(&mut self.empty, MagList::new());
        self.magtype = old + 1;
        self.resizes += 1;
        self.contention_prev = self.contention;
        Some((f, e, old))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stand-in full magazines of `cap` rounds (link word, rounds, extra word), in boxes
    /// that stay put.
    fn magazines(rounds: &[Vec<usize>]) -> Vec<Box<[usize]>> {
        rounds
            .iter()
            .map(|r| {
                let mut m = vec![0usize; r.len() + 2].into_boxed_slice();
                m[1..=r.len()].copy_from_slice(r);
                m
            })
            .collect()
    }

    fn ptr(m: &mut [usize]) -> *mut Magazine {
        m.as_mut_ptr() as *mut Magazine
    }

    /// The buffers the hits would take from `m`, in order: top round first.
    fn hits(m: *mut Magazine, cap: usize) -> Vec<usize> {
        // SAFETY: a stand-in magazine of `cap` rounds.
        (0..cap)
            .rev()
            .map(|i| unsafe { *Magazine::round(m, i) })
            .collect()
    }

    #[test]
    fn a_short_list_is_last_in_first_out() {
        let cap = 4;
        let mut mags = magazines(&[vec![40, 30, 20, 10], vec![1, 2, 3, 4], vec![9, 8, 7, 6]]);
        let mut l = FullLists::new(cap);
        let ps: Vec<_> = mags.iter_mut().map(|m| ptr(m)).collect();
        for &p in &ps {
            l.push(p, 0);
        }
        assert!(l.for_each(&mut |_| {}));
        assert_eq!(l.pop(0, 1), ps[2]);
        assert_eq!(l.pop(0, 1), ps[1]);
        // Turned on entry: its buffers leave in ascending order.
        assert_eq!(hits(ps[1], cap), vec![1, 2, 3, 4]);
        assert_eq!(l.pop(0, 1), ps[0]);
        assert!(l.pop(0, 1).is_null());
        assert_eq!((l.ws.total, l.ws.alloc), (0, 3));
    }

    /// sh6bench's free order (every other block forward, the rest backward) over a heap of
    /// 64 magazines' worth of blocks: last in, first out reuses it odd blocks first over
    /// the whole heap, then even ones; the ordered list reuses it a few magazines at a
    /// time, and nearly every next buffer lies above the one before.
    #[test]
    fn a_long_list_reuses_a_heap_in_address_order() {
        let cap = 15;
        let n = 64 * cap;
        let block = |k: usize| 0x10_0000 + 16 * k;
        let mut freed: Vec<usize> = (0..n).step_by(2).map(block).collect();
        freed.extend((0..n).rev().filter(|k| k % 2 == 1).map(block));
        let mut mags = magazines(&freed.chunks(cap).map(<[usize]>::to_vec).collect::<Vec<_>>());
        let mut l = Deque::new(cap);
        for m in mags.iter_mut() {
            l.push(ptr(m));
        }
        assert_eq!(l.len, 64);
        assert!(l.for_each(&mut |_| {}));
        let mut order = Vec::new();
        loop {
            let m = l.pop();
            if m.is_null() {
                break;
            }
            order.extend(hits(m, cap));
        }
        assert_eq!(order.len(), n);
        let up = order.windows(2).filter(|w| w[1] > w[0]).count();
        // Each turn between the two ends steps back within a few magazines' span.
        assert!(up * 100 >= 95 * (n - 1), "{up} of {} steps up", n - 1);
        // Every 1 KiB of the heap (64 blocks) is reused within 12 magazines' worth of
        // allocations (last in, first out: its odd blocks in the first half, its even
        // ones in the second).
        let mut first = std::collections::HashMap::new();
        let mut widest = 0;
        for (i, &b) in order.iter().enumerate() {
            let f = *first.entry(b >> 10).or_insert(i);
            widest = widest.max(i - f);
        }
        assert!(widest <= 12 * cap, "a KiB reused over {widest} allocations");
    }

    #[test]
    fn a_cpu_takes_its_own_full_magazines_first() {
        let cap = 2;
        let mut mags = magazines(&[vec![2, 1], vec![4, 3], vec![6, 5], vec![8, 7]]);
        let ps: Vec<_> = mags.iter_mut().map(|m| ptr(m)).collect();
        let mut f = FullLists::new(cap);
        assert!(f.pop(0, 1).is_null());
        f.push(ps[0], 1);
        f.push(ps[1], 3 + GROUPS); // CPU 3's list: numbers are taken modulo GROUPS
        f.push(ps[2], 1);
        f.push(ps[3], 6);
        assert!(f.for_each(&mut |_| {}));
        assert_eq!(f.ws.total, 4);
        assert_eq!(f.pop(3, 1), ps[1]);
        assert_eq!(f.pop(1, 1), ps[2]);
        // CPU 2's list is empty: the next one round the ring that is not (CPU 6's).
        assert_eq!(f.pop(2, 1), ps[3]);
        // From CPU 7 the ring wraps to CPU 1's.
        assert_eq!(f.pop(7, 1), ps[0]);
        assert!(f.pop(7, 1).is_null());
        assert_eq!((f.ws.total, f.ws.min, f.ws.alloc), (0, 0, 4));
    }

    #[test]
    fn another_cpus_list_gives_only_from_steal_min_on() {
        let cap = 2;
        let mut mags = magazines(&[vec![2, 1], vec![4, 3], vec![6, 5]]);
        let ps: Vec<_> = mags.iter_mut().map(|m| ptr(m)).collect();
        let mut f = FullLists::new(cap);
        f.push(ps[0], 1);
        // CPU 0's list is empty and CPU 1's holds one: not enough to take from.
        assert!(f.pop(0, 2).is_null());
        // Its own CPU takes it whatever the threshold.
        assert_eq!(f.pop(1, 2), ps[0]);
        f.push(ps[1], 1);
        f.push(ps[2], 1);
        // Two now: CPU 0 takes the newer (a short list is last in, first out).
        assert_eq!(f.pop(0, 2), ps[2]);
        assert!(f.pop(0, 2).is_null());
        assert_eq!(f.pop(0, 1), ps[1]);
        assert_eq!(f.ws.total, 0);
    }

    #[test]
    fn for_each_sees_a_wrong_total() {
        let cap = 2;
        let mut mags = magazines(&[vec![1, 2], vec![3, 4]]);
        let mut l = Deque::new(cap);
        for m in mags.iter_mut() {
            l.push(ptr(m));
        }
        let mut seen = 0;
        assert!(l.for_each(&mut |_| seen += 1));
        assert_eq!(seen, 2);
        l.len = 1;
        assert!(!l.for_each(&mut |_| {}));
        l.len = 3;
        assert!(!l.for_each(&mut |_| {}));
    }
}
