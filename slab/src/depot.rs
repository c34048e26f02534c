//! The depot (Bonwick & Adams 2001, section 3.2): a cache's lists of full and empty
//! magazines, its working-set counters, its magazine type and the signals that grow it
//! (contention and traffic). Everything here is state under the cache's *depot lock* and
//! the decisions made on that state alone; what needs the rest of the cache (destroying a
//! magazine's rounds, making a new magazine) is in `magazine_layer.rs`.

use core::ptr::null_mut;

use crate::magazine::{Magazine, MAGTYPES};

/// Failed depot trylocks per update interval above which magazines grow.
pub(crate) const DEPOT_CONTENTION: u64 = 2;

/// Magazines also grow on depot *traffic*: `TRAFFIC_VISITS` depot visits within
/// `TRAFFIC_WINDOW_MS` (see the theory statement, section 5).
const TRAFFIC_VISITS: u32 = 64;
const TRAFFIC_WINDOW_MS: u64 = 50;

/// A list of magazines (all full or all empty) with its working-set counters.
pub(crate) struct MagList {
    pub head: *mut Magazine,
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

impl MagList {
    pub(crate) const fn new() -> MagList {
        MagList {
            head: null_mut(),
            total: 0,
            min: 0,
            reaplimit: 0,
            alloc: 0,
        }
    }

    /// Take the first magazine (null when the list is empty).
    pub(crate) fn pop(&mut self) -> *mut Magazine {
        let m = self.head;
        if !m.is_null() {
            // SAFETY: magazines on the list are live and owned by the depot.
            self.head = unsafe { (*m).next };
            self.total -= 1;
            if self.total < self.min {
                self.min = self.total;
            }
            self.alloc += 1;
        }
        m
    }

    /// Put `m` (a live magazine handed over by the caller) first.
    pub(crate) fn push(&mut self, m: *mut Magazine) {
        // SAFETY: the caller hands over a live magazine.
        unsafe { (*m).next = self.head };
        self.head = m;
        self.total += 1;
    }

    /// Start a new working-set interval (`umem_depot_ws_update`).
    fn ws_update(&mut self) {
        self.reaplimit = self.min;
        self.min = self.total;
    }

    /// How many magazines lay unused for the whole last interval.
    pub(crate) fn reapable(&self) -> usize {
        self.reaplimit.min(self.min)
    }
}

/// The depot (under the cache's depot lock).
pub(crate) struct Depot {
    pub full: MagList,
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
    pub(crate) const fn new(magtype: usize) -> Depot {
        Depot {
            full: MagList::new(),
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
        self.full.ws_update();
        self.empty.ws_update();
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
    pub(crate) fn grow(&mut self, chunksize: usize) -> Option<(MagList, MagList, usize)> {
        let old = self.magtype;
        if old + 1 >= MAGTYPES.len() || chunksize >= MAGTYPES[old].maxbuf {
            return None;
        }
        let f = core::mem::replace(&mut self.full, MagList::new());
        let e = core::mem::replace(&mut self.empty, MagList::new());
        self.magtype = old + 1;
        self.resizes += 1;
        self.contention_prev = self.contention;
        Some((f, e, old))
    }
}
