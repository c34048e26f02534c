//! Statistics ([`stats`]) and the umastat-like table ([`print_stats`])
//! printed at exit with `UMEM_STATS=1`. Nothing here allocates: the snapshot is a
//! fixed-size value and the table is formatted into a stack buffer and
//! written with write(2).

use crate::arenas::is_initialized;
use crate::sys::{flush_to, StackStr};
use crate::{caches, classes, large, options, region, source};
use core::fmt::Write;
use core::sync::atomic::Ordering;

/// One size class's cache (the `::umastat` cache columns).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClassStats {
    /// The cache's name, `umem_alloc_<size>`.
    pub name: &'static str,
    /// The class's size in bytes.
    pub buf_size: usize,
    /// Buffers allocated and not freed (magazines' rounds count as free).
    pub buf_in_use: u64,
    /// Buffers in the cache's slabs.
    pub buf_total: u64,
    /// Bytes of buffers in use (`buf_in_use * buf_size`).
    pub mem_in_use: u64,
    /// Allocations served.
    pub alloc: u64,
    /// Allocations that failed.
    pub alloc_fail: u64,
    /// Rounds per magazine now (0: no magazine layer).
    pub mag_size: usize,
    /// Times the magazines grew.
    pub mag_resize: u64,
}

/// One arena (the `::umastat` vmem columns).
#[derive(Clone, Copy, Debug, Default)]
pub struct ArenaStats {
    name: [u8; 32],
    name_len: usize,
    /// Bytes allocated from the arena.
    pub in_use: u64,
    /// Bytes the arena holds (its spans).
    pub total: u64,
    /// Bytes imported from its source.
    pub import: u64,
    /// Allocations served.
    pub alloc: u64,
    /// Allocations that failed.
    pub fail: u64,
}

impl ArenaStats {
    /// The arena's name (at most 32 bytes of it).
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }
}

/// Large blocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct LargeStats {
    /// Bytes (capacity) of live large blocks.
    pub in_use: u64,
    /// Large blocks handed out.
    pub alloc: u64,
    /// Large blocks freed.
    pub free: u64,
    /// Large-block requests that failed.
    pub fail: u64,
    /// Requests served from the cache of freed blocks.
    pub cache_hits: u64,
    /// Blocks in that cache now.
    pub cached_blocks: usize,
    /// Bytes (requested lengths) of the blocks in that cache now.
    pub cached_bytes: usize,
}

/// The most arenas a [`Stats`] snapshot lists.
pub const MAX_ARENAS: usize = 160;

/// A snapshot of every cache and arena.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Every size class's cache, smallest first.
    pub classes: [ClassStats; classes::COUNT],
    /// The first `narenas` entries: every vmem arena (see [`Stats::arenas`]).
    pub arenas: [ArenaStats; MAX_ARENAS],
    /// How many of `arenas` are filled.
    pub narenas: usize,
    /// Large blocks.
    pub large: LargeStats,
    /// Bytes of memory umem holds from the kernel: what its page source has
    /// mapped now plus the class region's spans in use (the rest of the
    /// region is address space whose pages are discarded).
    pub mapped: u64,
    /// Bytes of address space reserved for the class region (0 without one).
    pub region_reserved: u64,
    /// Bytes of the region the class arenas hold (imported spans).
    pub region_in_use: u64,
    /// `mmap` calls of the page source.
    pub maps: u64,
    /// `munmap` calls of the page source.
    pub unmaps: u64,
}

impl Stats {
    /// Bytes of live blocks (size-class buffers in use plus large blocks).
    pub fn bytes_in_use(&self) -> u64 {
        self.classes.iter().map(|c| c.mem_in_use).sum::<u64>() + self.large.in_use
    }
    /// The arenas in the snapshot.
    pub fn arenas(&self) -> &[ArenaStats] {
        &self.arenas[..self.narenas]
    }
    /// The arena called `name`, if any.
    pub fn arena(&self, name: &str) -> Option<&ArenaStats> {
        self.arenas().iter().find(|a| a.name() == name)
    }
}

/// A snapshot of umem's statistics (all zero before the first allocation).
pub fn stats() -> Stats {
    let mut s = Stats {
        classes: [ClassStats::default(); classes::COUNT],
        arenas: [ArenaStats::default(); MAX_ARENAS],
        narenas: 0,
        large: LargeStats::default(),
        mapped: source::PAGES.mapped.load(Ordering::Relaxed),
        maps: source::PAGES.maps.load(Ordering::Relaxed),
        unmaps: source::PAGES.unmaps.load(Ordering::Relaxed),
        region_reserved: 0,
        region_in_use: 0,
    };
    if region::base().is_some() {
        s.region_reserved = region::LEN as u64;
        s.region_in_use = region::in_use() as u64;
        s.mapped += s.region_in_use;
    }
    for c in 0..classes::COUNT {
        let mut cs = ClassStats {
            name: classes::NAMES[c],
            buf_size: classes::size(c),
            ..Default::default()
        };
        if let Some(k) = caches::cache_of(c) {
            let ks = k.stats();
            cs.buf_in_use = ks.buf_inuse;
            cs.buf_total = ks.buf_total as u64;
            cs.mem_in_use = ks.buf_inuse * ks.buf_size as u64;
            cs.alloc = ks.alloc;
            cs.alloc_fail = ks.alloc_fail;
            cs.mag_size = ks.mag_size;
            cs.mag_resize = ks.mag_resize;
        }
        s.classes[c] = cs;
    }
    let (cached_blocks, cached_bytes) = if is_initialized() {
        large::cached()
    } else {
        (0, 0)
    };
    s.large = LargeStats {
        in_use: large::IN_USE.load(Ordering::Relaxed),
        alloc: large::ALLOCS.load(Ordering::Relaxed),
        free: large::FREES.load(Ordering::Relaxed),
        fail: large::FAILS.load(Ordering::Relaxed),
        cache_hits: large::CACHE_HITS.load(Ordering::Relaxed),
        cached_blocks,
        cached_bytes,
    };
    if is_initialized() {
        let mut n = 0;
        umem_vmem::for_each_arena(&mut |v| {
            if n == MAX_ARENAS {
                return;
            }
            let vs = v.stats();
            let mut a = ArenaStats {
                in_use: vs.mem_inuse,
                total: vs.mem_total,
                import: vs.mem_import,
                alloc: vs.alloc,
                fail: vs.fail,
                ..Default::default()
            };
            let nb = v.name().as_bytes();
            let l = nb.len().min(32);
            a.name[..l].copy_from_slice(&nb[..l]);
            a.name_len = l;
            s.arenas[n] = a;
            n += 1;
        });
        s.narenas = n;
    }
    s
}

/// Prints the umastat-like table to `fd`.
pub fn print_stats(fd: i32) {
    let s = stats();
    let mut b = StackStr::<4096>::new();
    let _ = writeln!(
        b,
        "{:<24} {:>7} {:>9} {:>9} {:>11} {:>11} {:>6} {:>5}",
        "cache", "buf", "buf", "buf", "memory", "alloc", "alloc", "mag"
    );
    let _ = writeln!(
        b,
        "{:<24} {:>7} {:>9} {:>9} {:>11} {:>11} {:>6} {:>5}",
        "name", "size", "in use", "total", "in use", "succeed", "fail", "size"
    );
    let _ = writeln!(
        b,
        "{:-<24} {:->7} {:->9} {:->9} {:->11} {:->11} {:->6} {:->5}",
        "", "", "", "", "", "", "", ""
    );
    flush_to(&mut b, fd);
    for c in &s.classes {
        let _ = writeln!(
            b,
            "{:<24} {:>7} {:>9} {:>9} {:>11} {:>11} {:>6} {:>5}",
            c.name,
            c.buf_size,
            c.buf_in_use,
            c.buf_total,
            c.mem_in_use,
            c.alloc,
            c.alloc_fail,
            c.mag_size
        );
        if b.len() > 3500 {
            flush_to(&mut b, fd);
        }
    }
    let l = s.large;
    let _ = writeln!(
        b,
        "{:<24} {:>7} {:>9} {:>9} {:>11} {:>11} {:>6} {:>5}",
        "(large blocks)",
        "-",
        l.alloc - l.free,
        l.alloc - l.free + l.cached_blocks as u64,
        l.in_use,
        l.alloc,
        l.fail,
        "-"
    );
    let _ = writeln!(
        b,
        "large-block cache: {} blocks, {} bytes, {} hits\n",
        l.cached_blocks, l.cached_bytes, l.cache_hits
    );
    let _ = writeln!(
        b,
        "{:<24} {:>12} {:>12} {:>12} {:>11} {:>6}",
        "vmem arena", "memory", "memory", "memory", "alloc", "alloc"
    );
    let _ = writeln!(
        b,
        "{:<24} {:>12} {:>12} {:>12} {:>11} {:>6}",
        "name", "in use", "total", "import", "succeed", "fail"
    );
    let _ = writeln!(
        b,
        "{:-<24} {:->12} {:->12} {:->12} {:->11} {:->6}",
        "", "", "", "", "", ""
    );
    flush_to(&mut b, fd);
    for a in s.arenas() {
        let _ = writeln!(
            b,
            "{:<24} {:>12} {:>12} {:>12} {:>11} {:>6}",
            a.name(),
            a.in_use,
            a.total,
            a.import,
            a.alloc,
            a.fail
        );
        if b.len() > 3500 {
            flush_to(&mut b, fd);
        }
    }
    let _ = writeln!(
        b,
        "page source: {} bytes mapped now, {} mmaps, {} munmaps",
        s.mapped - s.region_in_use,
        s.maps,
        s.unmaps
    );
    let _ = writeln!(
        b,
        "class region: {} bytes reserved, {} bytes in spans",
        s.region_reserved, s.region_in_use
    );
    flush_to(&mut b, fd);
}

/// Runs at process exit (from `.fini_array`): prints the table when
/// `UMEM_STATS` asked for it.
extern "C" fn at_exit() {
    if is_initialized() && options::STATS_AT_EXIT.load(Ordering::Relaxed) {
        match options::STATS_PATH.get() {
            None => print_stats(2),
            Some(path) => {
                // SAFETY: a NUL-terminated path; open/close do not allocate.
                unsafe {
                    let fd = libc::open(
                        path,
                        libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd >= 0 {
                        print_stats(fd);
                        libc::close(fd);
                    }
                }
            }
        }
    }
}

#[used]
#[link_section = ".fini_array"]
static AT_EXIT: extern "C" fn() = at_exit;
