//! Leak detection (mdb's `::findleaks` for a live process): which blocks the
//! program holds that nothing references any more, grouped by the stack
//! that allocated them.
//!
//! **The scan** ([`find_leaks`]) is a conservative mark phase, as in a
//! garbage collector that never collects: every block the program holds is
//! a node — the buffers of the size-class caches whose audit record says
//! allocated (`Cache::walk_audited`), and the large blocks (allocated
//! segments of `umem_oversize` and `umem_memalign` that are not in the
//! cache of freed blocks) — sorted by address. Every aligned word of the
//! roots (`roots.rs`: writable data of loaded objects, this thread's TLS,
//! the threads' stacks) that points at or into a block marks it, and a
//! marked block's own words are scanned in turn, from an explicit work
//! stack, until no new block is marked. Blocks left unmarked are leaks.
//!
//! **No allocation.** All the scan's memory (the block table, the work
//! stack, the root list, a copy of `/proc/self/maps`, the read window) is
//! one anonymous mapping made for the scan and unmapped after it; the
//! report's groups live in a second one, owned by the [`LeakReport`]. No
//! umem lock is held while roots and blocks are read (each cache's slab
//! lock is held only while its buffers are listed), so a scan of a running
//! multi-threaded program is a snapshot that may be slightly off: a block
//! allocated after the listing is not a node, and a pointer moved while
//! the scan reads may be missed (a false leak) — scan at quiet points.
//!
//! **Groups.** Leaked blocks with the same allocation stack form one group
//! (count, bytes, an example block), largest first by bytes. Large blocks
//! take their stack from `large_audit.rs` (one without a record is grouped
//! with the others that have none, without a stack).
//!
//! **At exit** with `UMEM_OPTIONS=findleaks` (and `UMEM_DEBUG=audit`) the
//! report is printed to stderr from `.fini_array`, after the program's
//! `atexit` handlers and its own destructors ran; a report is information,
//! not a failure (the exit status is unchanged).

use crate::arenas::{is_initialized, ARENAS};
use crate::caches;
use crate::classes;
use crate::large;
use crate::large_audit;
use crate::options;
use crate::roots::{self, Range, Roots, SafeReader};
use crate::symbolize;
use crate::sys::{self, flush_to, StackStr, PAGE};
use core::fmt::Write;
use core::mem::size_of;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use umem_slab::AuditStack;
use umem_vmem::{SegType, SegTypes, WalkMode};

/// Class index of a large block in [`Block::class`].
const LARGE: u32 = u32::MAX;
/// Root ranges a scan keeps at most.
const MAX_ROOTS: usize = 8192;
/// Bytes of `/proc/self/maps` a scan reads at most.
const MAPS_BYTES: usize = 4 << 20;
/// The read window.
const WINDOW: usize = 64 << 10;

/// A node of the scan: a block the program holds.
#[derive(Clone, Copy)]
struct Block {
    addr: usize,
    len: usize,
    /// Hash of the allocation stack (0 for large blocks).
    hash: u64,
    /// Size class, or [`LARGE`].
    class: u32,
    marked: u32,
}

/// One group of leaked blocks: those allocated from the same stack.
#[derive(Clone, Copy)]
pub struct LeakGroup {
    /// Leaked blocks in the group.
    pub count: usize,
    /// Their bytes (buffer sizes; a large block's usable length).
    pub bytes: usize,
    /// One of them.
    pub example: usize,
    /// The cache (`umem_alloc_<n>`) of the example, or `umem_oversize`.
    pub cache: &'static str,
    /// The allocating thread of the example.
    pub thread: usize,
    stack: AuditStack,
}

impl LeakGroup {
    /// The allocation stack, innermost first (empty for large blocks).
    pub fn frames(&self) -> &[usize] {
        self.stack.frames()
    }
}

/// What [`find_leaks`] found. Holds its groups in memory of its own (no
/// allocation); dropping it gives that back.
pub struct LeakReport {
    groups: *mut LeakGroup,
    len: usize,
    map_len: usize,
    /// `false` when auditing is off (no scan was made).
    pub enabled: bool,
    /// Blocks the program held (the scan's nodes).
    pub blocks: usize,
    /// Bytes of roots read.
    pub root_bytes: usize,
    /// Leaked blocks, all groups together.
    pub leaked: usize,
    /// Their bytes.
    pub leaked_bytes: usize,
}

// SAFETY: the report owns its mapping; nothing else refers to it.
unsafe impl Send for LeakReport {}
// SAFETY: shared access only reads it.
unsafe impl Sync for LeakReport {}

impl LeakReport {
    fn empty(enabled: bool) -> LeakReport {
        LeakReport {
            groups: core::ptr::null_mut(),
            len: 0,
            map_len: 0,
            enabled,
            blocks: 0,
            root_bytes: 0,
            leaked: 0,
            leaked_bytes: 0,
        }
    }

    /// The groups, largest (bytes) first.
    pub fn groups(&self) -> &[LeakGroup] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `len` initialised groups in our own mapping.
        unsafe { core::slice::from_raw_parts(self.groups, self.len) }
    }

    /// Prints the report, `::findleaks` style: a table of the groups, then
    /// each group's stack symbolized.
    pub fn print(&self, fd: i32) {
        let mut b = StackStr::<512>::new();
        if !self.enabled {
            let _ = writeln!(
                b,
                "umem: findleaks: needs UMEM_DEBUG=audit (no allocation records to scan)"
            );
            flush_to(&mut b, fd);
            return;
        }
        let _ = writeln!(
            b,
            "umem: findleaks (pid {}): {} leaked block{} ({} bytes) in {} group{}; {} blocks held, {} bytes of roots scanned",
            // SAFETY: getpid has no preconditions.
            unsafe { libc::getpid() },
            self.leaked,
            if self.leaked == 1 { "" } else { "s" },
            self.leaked_bytes,
            self.len,
            if self.len == 1 { "" } else { "s" },
            self.blocks,
            self.root_bytes
        );
        flush_to(&mut b, fd);
        if self.len == 0 {
            return;
        }
        let _ = writeln!(
            b,
            "{:<20} {:>8} {:>12} {:>18}  CALLER",
            "CACHE", "LEAKED", "BYTES", "BUFFER"
        );
        flush_to(&mut b, fd);
        for g in self.groups() {
            let _ = write!(
                b,
                "{:<20} {:>8} {:>12} {:>#18x}  ",
                g.cache, g.count, g.bytes, g.example
            );
            match g.frames().first() {
                Some(&pc) => symbolize::write_frame(&mut b, pc),
                None => {
                    let _ = write!(b, "-");
                }
            }
            let _ = writeln!(b);
            flush_to(&mut b, fd);
        }
        for g in self.groups() {
            let _ = writeln!(
                b,
                "\n{} leaked block{} of {} ({} bytes), e.g. {:#x}, allocated by thread {:#x}{}",
                g.count,
                if g.count == 1 { "" } else { "s" },
                g.cache,
                g.bytes,
                g.example,
                g.thread,
                if g.frames().is_empty() {
                    " (no stack recorded)"
                } else {
                    ":"
                }
            );
            flush_to(&mut b, fd);
            symbolize::print_stack(fd, g.frames(), 4);
        }
    }
}

impl Drop for LeakReport {
    fn drop(&mut self) {
        if self.map_len != 0 {
            // SAFETY: our own mapping, no longer referenced (groups() borrows self).
            unsafe { sys::unmap(self.groups as usize, self.map_len) };
        }
    }
}

fn round_page(n: usize) -> usize {
    (n + PAGE - 1) & !(PAGE - 1)
}

/// Calls `f` for every block the program holds (see the module comment).
fn for_each_block(f: &mut dyn FnMut(Block)) {
    for c in 0..classes::COUNT {
        let Some(cache) = caches::cache_of(c) else {
            continue;
        };
        cache.walk_audited(&mut |b| {
            f(Block {
                addr: b.addr,
                len: b.size,
                hash: b.stack_hash,
                class: c as u32,
                marked: 0,
            })
        });
    }
    let mut cached = [0usize; large::SLOTS];
    let ncached = large::cached_blocks(&mut cached);
    let cached = &cached[..ncached];
    for arena in [ARENAS.oversize(), ARENAS.memalign()] {
        arena.walk(SegTypes::ALLOC, WalkMode::Locked, &mut |t, addr, size| {
            if t == SegType::Alloc && !cached.contains(&addr) {
                f(Block {
                    addr,
                    len: large::len_of(addr, size).min(size),
                    hash: large_audit::lookup(addr).map_or(0, |r| r.hash),
                    class: LARGE,
                    marked: 0,
                })
            }
        });
    }
}

/// The block containing `w`, if any (`blocks` sorted by address).
#[inline]
fn find(blocks: &[Block], w: usize) -> Option<usize> {
    let i = blocks.partition_point(|b| b.addr <= w);
    if i == 0 {
        return None;
    }
    let b = &blocks[i - 1];
    (w < b.addr + b.len.max(1)).then_some(i - 1)
}

/// The scratch memory of one scan, carved from one mapping.
struct Scratch {
    base: usize,
    len: usize,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: our own mapping; the slices carved from it died with the scan.
        unsafe { sys::unmap(self.base, self.len) };
    }
}

/// Runs the scan (see the module comment) and returns its report. With
/// auditing off it scans nothing and says so ([`LeakReport::enabled`]).
/// Never allocates; costs time linear in the roots and the heap.
pub fn find_leaks() -> LeakReport {
    if !is_initialized() || !options::AUDIT.load(Ordering::Relaxed) {
        return LeakReport::empty(false);
    }
    let mut regs = [0usize; 8];
    let sp = roots::spill_registers(&mut regs);
    let r = scan(sp);
    core::hint::black_box(&regs);
    r
}

#[inline(never)]
fn scan(sp: usize) -> LeakReport {
    let mut n = 0usize;
    for_each_block(&mut |_| n += 1);
    let cap = n + n / 4 + 1024;
    let blocks_bytes = round_page(cap * size_of::<Block>());
    let work_bytes = round_page(cap * size_of::<u32>());
    let roots_bytes = round_page(MAX_ROOTS * size_of::<Range>());
    let total = blocks_bytes + work_bytes + roots_bytes + MAPS_BYTES + WINDOW;
    let Some(base) = sys::map(total) else {
        sys::warn(format_args!(
            "umem: findleaks: no memory for the scan ({total} bytes)\n"
        ));
        return LeakReport::empty(true);
    };
    let scratch = Scratch { base, len: total };
    // SAFETY: disjoint, page-aligned parts of our fresh zeroed mapping; an
    // all-zero Block, u32, Range and u8 are valid values.
    let (blocks, work, ranges, maps, window) = unsafe {
        let mut at = base;
        let mut carve = |bytes: usize| {
            let p = at;
            at += bytes;
            p
        };
        (
            core::slice::from_raw_parts_mut(carve(blocks_bytes) as *mut Block, cap),
            core::slice::from_raw_parts_mut(carve(work_bytes) as *mut u32, cap),
            core::slice::from_raw_parts_mut(carve(roots_bytes) as *mut Range, MAX_ROOTS),
            core::slice::from_raw_parts_mut(carve(MAPS_BYTES) as *mut u8, MAPS_BYTES),
            core::slice::from_raw_parts_mut(carve(WINDOW) as *mut u8, WINDOW),
        )
    };
    let mut nb = 0;
    for_each_block(&mut |b| {
        if nb < cap {
            blocks[nb] = b;
            nb += 1;
        }
    });
    let blocks = &mut blocks[..nb];
    blocks.sort_unstable_by_key(|b| b.addr);

    // Roots: stacks first (their words are read before this scan leaves
    // block addresses in its own frames), then the objects' data.
    let mut roots = Roots {
        ranges,
        len: 0,
        dropped: 0,
    };
    roots::collect_stacks(
        &mut roots,
        sp,
        maps,
        Range {
            lo: base,
            hi: base + total,
        },
    );
    roots::collect_objects(&mut roots);
    let root_bytes = roots.bytes();
    let mut reader = SafeReader::new(window);
    let mut top = 0usize;
    let (lo, hi) = match (blocks.first(), blocks.last()) {
        (Some(f), Some(l)) => (f.addr, l.addr + l.len),
        _ => (1, 0),
    };
    let mark = |blocks: &mut [Block], work: &mut [u32], top: &mut usize, w: usize| {
        if w < lo || w >= hi {
            return;
        }
        if let Some(i) = find(blocks, w) {
            if blocks[i].marked == 0 {
                blocks[i].marked = 1;
                work[*top] = i as u32;
                *top += 1;
            }
        }
    };
    for r in &roots.ranges[..roots.len] {
        reader.words(*r, &mut |w| mark(blocks, work, &mut top, w));
    }
    while top > 0 {
        top -= 1;
        let b = blocks[work[top] as usize];
        let r = Range {
            lo: b.addr,
            hi: b.addr + b.len,
        };
        reader.words(r, &mut |w| mark(blocks, work, &mut top, w));
    }
    let mut report = group(blocks, work);
    drop(scratch);
    report.root_bytes = root_bytes;
    report.blocks = nb;
    report
}

/// Groups the unmarked blocks by allocation stack (using `work` for their
/// indices) into the report's own mapping.
fn group(blocks: &[Block], work: &mut [u32]) -> LeakReport {
    let mut nl = 0;
    for (i, b) in blocks.iter().enumerate() {
        if b.marked == 0 {
            work[nl] = i as u32;
            nl += 1;
        }
    }
    let leaked = &mut work[..nl];
    leaked.sort_unstable_by_key(|&i| {
        let b = &blocks[i as usize];
        (b.class == LARGE, b.hash)
    });
    let key = |i: u32| {
        let b = &blocks[i as usize];
        (b.class == LARGE, b.hash)
    };
    let ngroups = leaked
        .iter()
        .enumerate()
        .filter(|&(k, &i)| k == 0 || key(leaked[k - 1]) != key(i))
        .count();
    let mut report = LeakReport::empty(true);
    if ngroups == 0 {
        return report;
    }
    let map_len = round_page(ngroups * size_of::<LeakGroup>());
    let Some(gbase) = sys::map(map_len) else {
        return report;
    };
    // SAFETY: our fresh mapping, room for `ngroups` groups, each written
    // below before it is read.
    let groups = unsafe { core::slice::from_raw_parts_mut(gbase as *mut LeakGroup, ngroups) };
    let mut g = 0;
    let mut k = 0;
    while k < nl {
        let first = blocks[leaked[k] as usize];
        let this = key(leaked[k]);
        let mut count = 0;
        let mut bytes = 0;
        while k < nl && key(leaked[k]) == this {
            bytes += blocks[leaked[k] as usize].len;
            count += 1;
            k += 1;
        }
        let (cache, thread, stack) = describe(&first);
        groups[g] = LeakGroup {
            count,
            bytes,
            example: first.addr,
            cache,
            thread,
            stack,
        };
        report.leaked += count;
        report.leaked_bytes += bytes;
        g += 1;
    }
    groups.sort_unstable_by(|a, b| b.bytes.cmp(&a.bytes).then(b.count.cmp(&a.count)));
    report.groups = gbase as *mut LeakGroup;
    report.len = ngroups;
    report.map_len = map_len;
    report
}

/// The cache name, allocating thread and allocation stack of a block.
fn describe(b: &Block) -> (&'static str, usize, AuditStack) {
    if b.class == LARGE {
        return match large_audit::lookup(b.addr) {
            Some(r) => ("umem_oversize", r.thread, r.stack),
            None => ("umem_oversize", 0, AuditStack::EMPTY),
        };
    }
    let c = b.class as usize;
    let detail = caches::cache_of(c)
        .zip(NonNull::new(b.addr as *mut u8))
        .and_then(|(cache, p)| cache.audit_detail(p));
    match detail {
        Some(d) => (classes::NAMES[c], d.alloc.thread, d.alloc.stack),
        None => (classes::NAMES[c], 0, AuditStack::EMPTY),
    }
}

/// At exit (`.fini_array`), with `UMEM_OPTIONS=findleaks`: the report on
/// stderr.
extern "C" fn at_exit() {
    if is_initialized() && options::FINDLEAKS.load(Ordering::Relaxed) {
        find_leaks().print(2);
    }
}

#[used]
#[link_section = ".fini_array"]
static AT_EXIT: extern "C" fn() = at_exit;
