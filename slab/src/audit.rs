//! Audit records ([`CacheFlags::AUDIT`](crate::CacheFlags::AUDIT), libumem's
//! `umem_bufctl_audit_t`): what each buffer of an auditing cache remembers about its
//! history, and how the layers above read it back.
//!
//! An audit cache's bufctl ([`BufctlAudit`]) is followed by two stacks of
//! [`audit_depth`] program counters: the stack of the buffer's last allocation and the
//! stack of its last free, each with the thread and the CLOCK_MONOTONIC time it was taken.
//! umem-slab cannot walk a stack itself (that needs an unwinder, which only the layer above
//! may load): the stack comes from the [`StackHook`] installed with [`set_stack_hook`],
//! called with no lock held from the debug alloc and free paths. Without a hook the stacks
//! stay empty.
//!
//! Readers: [`Cache::audit`] (the last transaction), [`Cache::audit_detail`] (both
//! transactions with their stacks, for error reports) and [`Cache::walk_audited`] (every
//! buffer the program holds, for a leak scan).
//!
//! The depth is fixed when umem-slab initialises (the audit bufctl cache's object size
//! depends on it): [`set_audit_depth`] must come before [`init`](crate::init).

use core::mem::size_of;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::cache::Cache;
use crate::error::SlabError;
use crate::slab::{BufctlAudit, BufferLookup};

/// Frames recorded per stack unless [`set_audit_depth`] says otherwise (libumem's
/// `umem_stack_depth`).
pub const DEFAULT_AUDIT_DEPTH: usize = 15;
/// The most frames a stack can record (an [`AuditStack`]'s capacity).
pub const MAX_AUDIT_DEPTH: usize = 64;

static DEPTH: AtomicUsize = AtomicUsize::new(DEFAULT_AUDIT_DEPTH);
static FROZEN: AtomicBool = AtomicBool::new(false);
/// The stack hook as a function-pointer word (0: none).
static STACK_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Fills `frames` with the calling thread's program counters, innermost first, and answers
/// how many it wrote. Called on the debug alloc and free paths of audit caches with no
/// umem-slab lock held; it must not unwind, and it may allocate only if it stops its own
/// recursion (the allocator calls it again for that allocation).
pub type StackHook = fn(frames: &mut [usize]) -> usize;

/// Sets the number of frames each audit stack records (clamped to
/// `1..=`[`MAX_AUDIT_DEPTH`]) and answers the depth in force: unchanged once umem-slab is
/// initialised.
pub fn set_audit_depth(frames: usize) -> usize {
    if !FROZEN.load(Ordering::Acquire) {
        DEPTH.store(frames.clamp(1, MAX_AUDIT_DEPTH), Ordering::Relaxed);
    }
    DEPTH.load(Ordering::Relaxed)
}

/// Frames recorded per audit stack.
#[inline]
pub fn audit_depth() -> usize {
    DEPTH.load(Ordering::Relaxed)
}

/// Fixes the depth (umem-slab's `init`) and answers the audit bufctl's size: the record
/// and its two stacks.
pub(crate) fn freeze_bufctl_size() -> usize {
    FROZEN.store(true, Ordering::Release);
    size_of::<BufctlAudit>() + 2 * audit_depth() * size_of::<usize>()
}

/// Installs the function that takes the stacks of audit records (see [`StackHook`]).
pub fn set_stack_hook(hook: StackHook) {
    STACK_HOOK.store(hook as usize, Ordering::Release);
}

fn stack_hook() -> Option<StackHook> {
    let w = STACK_HOOK.load(Ordering::Acquire);
    if w == 0 {
        return None;
    }
    // SAFETY: the only non-zero value stored is a `StackHook` (set_stack_hook).
    Some(unsafe { core::mem::transmute::<usize, StackHook>(w) })
}

/// The last transaction recorded for a buffer of an `AUDIT` cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// `true` when the last transaction was an allocation.
    pub allocated: bool,
    /// `pthread_self()` of the thread that made it.
    pub thread: usize,
    /// CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// Number of allocations and frees of this buffer since its slab was made.
    pub transactions: u64,
}

/// A recorded stack: program counters, innermost first.
#[derive(Clone, Copy)]
pub struct AuditStack {
    pcs: [usize; MAX_AUDIT_DEPTH],
    len: usize,
}

impl AuditStack {
    /// An empty stack.
    pub const EMPTY: AuditStack = AuditStack {
        pcs: [0; MAX_AUDIT_DEPTH],
        len: 0,
    };

    /// The frames, innermost first.
    pub fn frames(&self) -> &[usize] {
        &self.pcs[..self.len]
    }

    /// A stack of these frames (at most [`MAX_AUDIT_DEPTH`] kept).
    pub fn from_frames(frames: &[usize]) -> AuditStack {
        let mut s = AuditStack::EMPTY;
        s.len = frames.len().min(MAX_AUDIT_DEPTH);
        s.pcs[..s.len].copy_from_slice(&frames[..s.len]);
        s
    }
}

/// One transaction of an audited buffer: who, when, from where.
#[derive(Clone, Copy)]
pub struct AuditEvent {
    /// `pthread_self()` of the thread (0: never happened).
    pub thread: usize,
    /// CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// Its stack (empty without a stack hook).
    pub stack: AuditStack,
}

/// Everything an audit cache remembers about one buffer.
#[derive(Clone, Copy)]
pub struct AuditDetail {
    /// The buffer's start.
    pub buf: usize,
    /// The last transaction.
    pub record: AuditRecord,
    /// The last allocation.
    pub alloc: AuditEvent,
    /// The last free (thread 0: not freed since its slab was made).
    pub free: AuditEvent,
}

/// A buffer the program holds, as [`Cache::walk_audited`] shows it.
#[derive(Clone, Copy, Debug)]
pub struct AuditedBuffer {
    /// The buffer's start.
    pub addr: usize,
    /// The cache's buffer size.
    pub size: usize,
    /// A hash of its allocation stack (equal stacks, equal hashes).
    pub stack_hash: u64,
    /// The allocating thread.
    pub thread: usize,
}

/// FNV-1a over the frames: [`AuditedBuffer::stack_hash`].
pub fn stack_hash(frames: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &f in frames {
        h ^= f as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ frames.len() as u64
}

/// The stack area after an audit bufctl: `which` 0 = allocation, 1 = free.
///
/// # Safety
/// `ba` is an audit bufctl of the audit bufctl cache (sized by `freeze_bufctl_size`).
unsafe fn stack_area(ba: *mut BufctlAudit, which: usize) -> *mut usize {
    // SAFETY: by the caller, the object extends 2 * depth words past the record.
    unsafe { (ba.add(1) as *mut usize).add(which * audit_depth()) }
}

/// Reads one stack of an audit bufctl.
///
/// # Safety
/// As [`stack_area`]; nobody writes the bufctl meanwhile (or the copy may be torn, which
/// is harmless for plain words).
unsafe fn read_stack(ba: *mut BufctlAudit, which: usize, len: u32) -> AuditStack {
    let mut s = AuditStack::EMPTY;
    s.len = (len as usize).min(audit_depth());
    // SAFETY: by the caller; `len` frames were written there.
    unsafe {
        core::ptr::copy_nonoverlapping(stack_area(ba, which), s.pcs.as_mut_ptr(), s.len);
    }
    s
}

impl Cache {
    /// The audit bufctl of `buf` (from its buftag), checked against the buffer.
    pub(crate) fn audit_bufctl(&self, buf: usize) -> Result<*mut BufctlAudit, SlabError> {
        // SAFETY: `buf` is a buffer of this audit cache (caller); its buftag's middle word
        // names its bufctl, which we check before trusting.
        unsafe {
            let ba = *((buf + self.buftag_off) as *const usize).add(1) as *mut BufctlAudit;
            if ba.is_null()
                || (ba as usize) % 8 != 0
                || (*ba).bc.addr != buf
                || (*ba).cache != self.owner()
            {
                return Err(SlabError::Corrupt {
                    what: "bufctl corrupted",
                    addr: buf,
                    cache: self.name,
                });
            }
            Ok(ba)
        }
    }

    /// Records a transaction of `buf`: thread, time, count, and its stack (from the stack
    /// hook). Called with no lock held, by the thread that owns the buffer now.
    pub(crate) fn audit_record(&self, buf: usize, allocated: bool) -> Result<(), SlabError> {
        let ba = self.audit_bufctl(buf)?;
        let which = usize::from(!allocated);
        let depth = audit_depth();
        let mut n = 0;
        if let Some(hook) = stack_hook() {
            // SAFETY: `ba` is checked and belongs to this transaction; its stack area has
            // `depth` words.
            let area = unsafe { core::slice::from_raw_parts_mut(stack_area(ba, which), depth) };
            n = hook(area).min(depth);
        }
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out-pointer; `ba` checked above and owned by this transaction.
        unsafe {
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
            let now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
            let me = libc::pthread_self() as usize;
            (*ba).thread = me;
            (*ba).timestamp = now;
            (*ba).txn += 1;
            (*ba).allocated = allocated;
            (*ba).depth[which] = n as u32;
            (*ba).event_thread[which] = me;
            (*ba).event_time[which] = now;
            if allocated {
                (*ba).stack_hash = stack_hash(core::slice::from_raw_parts(stack_area(ba, 0), n));
            }
        }
        Ok(())
    }

    /// The audit bufctl of the buffer at or around `addr` and the buffer's start, if
    /// `addr` is in one of this audit cache's slabs.
    fn audited(&self, addr: usize) -> Option<(*mut BufctlAudit, usize)> {
        if !self.audit {
            return None;
        }
        let buf = match self.locate(addr) {
            BufferLookup::Allocated | BufferLookup::Free => addr,
            BufferLookup::Interior(b) if addr > b => {
                // The buffer `addr` falls in (locate gives the slab's first buffer for a
                // pointer before it).
                b + (addr - b) / self.chunksize * self.chunksize
            }
            _ => return None,
        };
        Some((self.audit_bufctl(buf).ok()?, buf))
    }

    /// The last recorded transaction of a buffer of an `AUDIT` cache (`None` for other
    /// caches or addresses that are not buffers of this cache).
    pub fn audit(&self, ptr: NonNull<u8>) -> Option<AuditRecord> {
        let addr = ptr.as_ptr() as usize;
        let (ba, buf) = self.audited(addr)?;
        if buf != addr {
            return None;
        }
        // SAFETY: checked bufctl of a live slab.
        unsafe {
            Some(AuditRecord {
                allocated: (*ba).allocated,
                thread: (*ba).thread,
                timestamp_ns: (*ba).timestamp,
                transactions: (*ba).txn,
            })
        }
    }

    /// Both recorded transactions of the buffer that `ptr` points at or into (an error
    /// report's "allocated by … freed by …"); `None` for other caches and addresses.
    /// Reads the record without the buffer's owner's cooperation: on a buffer another
    /// thread is allocating or freeing right now the answer may mix two transactions.
    pub fn audit_detail(&self, ptr: NonNull<u8>) -> Option<AuditDetail> {
        let (ba, buf) = self.audited(ptr.as_ptr() as usize)?;
        // SAFETY: checked bufctl of a live slab; its stack areas hold `depth` frames.
        unsafe {
            let ev = |which: usize| AuditEvent {
                thread: (*ba).event_thread[which],
                timestamp_ns: (*ba).event_time[which],
                stack: read_stack(ba, which, (*ba).depth[which]),
            };
            Some(AuditDetail {
                buf,
                record: AuditRecord {
                    allocated: (*ba).allocated,
                    thread: (*ba).thread,
                    timestamp_ns: (*ba).timestamp,
                    transactions: (*ba).txn,
                },
                alloc: ev(0),
                free: ev(1),
            })
        }
    }

    /// Calls `f` for every buffer of this audit cache that the program holds (its last
    /// transaction an allocation), under the cache's slab lock: `f` must not allocate
    /// from or free to this cache, nor take its locks. Does nothing for other caches.
    pub fn walk_audited(&self, f: &mut dyn FnMut(&AuditedBuffer)) {
        if !self.audit {
            return;
        }
        let g = self.slab.0.lock();
        for i in 0..=g.hash_mask {
            // SAFETY: slab lock held: the hash table has hash_mask + 1 buckets and its
            // chains hold the audit bufctls of allocated buffers.
            unsafe {
                let mut bc = *g.hash.add(i);
                while !bc.is_null() {
                    let ba = bc as *mut BufctlAudit;
                    if (*ba).allocated {
                        f(&AuditedBuffer {
                            addr: (*bc).addr,
                            size: self.buf_size(),
                            stack_hash: (*ba).stack_hash,
                            thread: (*ba).event_thread[0],
                        });
                    }
                    bc = (*bc).next;
                }
            }
        }
    }
}
