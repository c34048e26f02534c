//! Audit records of large blocks (`UMEM_DEBUG=audit`): who allocated each
//! live large block, for the leak report's groups.
//!
//! Size-class buffers keep their audit record in their umem-slab bufctl;
//! large blocks have no bufctl (their only metadata is the page map), so
//! with auditing on each live large block (auditing implies guards, so every
//! large block is then a debug large block: `debug_large.rs` records and forgets
//! it) gets an entry in a side table:
//! its address, the allocating thread and time, and its allocation stack.
//! The table is an open-addressed hash (linear probing, deletion by
//! shifting the following entries back, so no tombstones pile up) in one
//! anonymous mapping of [`CAPACITY`] entries, made on first use and touched
//! only where entries land, under a leaf spin lock (nothing is taken under
//! it; the stack is captured before it is taken). A block allocated while
//! the table is full (more than [`CAPACITY`] live large blocks) has no
//! record: the leak report shows it without a stack.

use crate::sys::{self, PAGE};
use core::mem::size_of;
use core::sync::atomic::{AtomicU64, Ordering};
use umem_slab::{AuditStack, SpinLock, MAX_AUDIT_DEPTH};

/// Entries of the table.
pub const CAPACITY: usize = 1 << 13;
const EMPTY: usize = 0;

/// One large block's record.
#[derive(Clone, Copy)]
pub struct LargeRecord {
    /// The block (0: empty slot).
    addr: usize,
    /// The allocating thread.
    pub thread: usize,
    /// `umem_slab::stack_hash` of the stack.
    pub hash: u64,
    /// The allocation stack.
    pub stack: AuditStack,
}

struct Table {
    /// The mapping, or null before the first record.
    slots: *mut LargeRecord,
}

// SAFETY: the table is only touched under its lock.
unsafe impl Send for Table {}

static TABLE: SpinLock<Table> = SpinLock::new(Table {
    slots: core::ptr::null_mut(),
});

/// Blocks that got no record (the table was full or could not be mapped).
pub static UNRECORDED: AtomicU64 = AtomicU64::new(0);

fn home(addr: usize) -> usize {
    ((addr as u64 >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 51) as usize & (CAPACITY - 1)
}

impl Table {
    fn slots(&mut self) -> Option<&mut [LargeRecord]> {
        if self.slots.is_null() {
            let bytes = (CAPACITY * size_of::<LargeRecord>()).next_multiple_of(PAGE);
            self.slots = sys::map(bytes)? as *mut LargeRecord;
        }
        // SAFETY: our mapping of CAPACITY records (zeroed: all EMPTY; an
        // all-zero record is a valid value), only used under the lock.
        Some(unsafe { core::slice::from_raw_parts_mut(self.slots, CAPACITY) })
    }
}

/// Records the large block at `addr`, just allocated by this thread.
/// Called with no umem lock held.
pub fn record(addr: usize) {
    let mut frames = [0usize; MAX_AUDIT_DEPTH];
    let depth = umem_slab::audit_depth().min(MAX_AUDIT_DEPTH);
    let n = crate::stack::capture(&mut frames[..depth]);
    let rec = LargeRecord {
        addr,
        // SAFETY: pthread_self has no preconditions.
        thread: unsafe { libc::pthread_self() } as usize,
        hash: umem_slab::stack_hash(&frames[..n]),
        stack: AuditStack::from_frames(&frames[..n]),
    };
    let mut g = TABLE.lock();
    let Some(slots) = g.slots() else {
        UNRECORDED.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut i = home(addr);
    for _ in 0..CAPACITY {
        if slots[i].addr == EMPTY || slots[i].addr == addr {
            slots[i] = rec;
            return;
        }
        i = (i + 1) & (CAPACITY - 1);
    }
    UNRECORDED.fetch_add(1, Ordering::Relaxed);
}

/// Finds `addr`'s slot.
fn find(slots: &[LargeRecord], addr: usize) -> Option<usize> {
    let mut i = home(addr);
    for _ in 0..CAPACITY {
        match slots[i].addr {
            EMPTY => return None,
            a if a == addr => return Some(i),
            _ => {}
        }
        i = (i + 1) & (CAPACITY - 1);
    }
    None
}

/// Forgets the large block at `addr` (being freed).
pub fn forget(addr: usize) {
    let mut g = TABLE.lock();
    if g.slots.is_null() {
        return;
    }
    if let Some(slots) = g.slots() {
        if let Some(mut hole) = find(slots, addr) {
            // Shift back every entry of the run after the hole that may
            // move into it (its home is not in (hole, j]).
            let mut j = hole;
            loop {
                j = (j + 1) & (CAPACITY - 1);
                if slots[j].addr == EMPTY {
                    break;
                }
                let k = home(slots[j].addr);
                let stays = if hole <= j {
                    hole < k && k <= j
                } else {
                    hole < k || k <= j
                };
                if !stays {
                    slots[hole] = slots[j];
                    hole = j;
                }
            }
            slots[hole].addr = EMPTY;
        }
    }
}

/// The record of the large block at `addr`, if it has one.
pub fn lookup(addr: usize) -> Option<LargeRecord> {
    let mut g = TABLE.lock();
    if g.slots.is_null() {
        return None;
    }
    let slots = g.slots()?;
    find(slots, addr).map(|i| slots[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_removals_in_their_run() {
        // Addresses that share a home slot, and their neighbours.
        let base = 0x7000_0000_0000usize;
        let mut same = Vec::new();
        let mut a = base;
        while same.len() < 6 {
            if home(a) == home(base) {
                same.push(a);
            }
            a += PAGE;
        }
        for &x in &same {
            record(x);
        }
        for &x in &same {
            assert_eq!(lookup(x).map(|r| r.addr), Some(x));
        }
        forget(same[1]);
        forget(same[4]);
        assert!(lookup(same[1]).is_none() && lookup(same[4]).is_none());
        for &x in [same[0], same[2], same[3], same[5]].iter() {
            assert_eq!(lookup(x).map(|r| r.addr), Some(x), "{x:#x} lost");
            forget(x);
        }
        for &x in &same {
            assert!(lookup(x).is_none());
        }
    }
}
