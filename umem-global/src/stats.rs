//! Statistics ([`stats`]) and the umastat-like table ([`print_stats`])
//! printed at exit with `UMEM_STATS=1`. Nothing here allocates: the snapshot is a
//! fixed-size value and the table is formatted into a stack buffer and
//! written with write(2).

use crate::arenas::{is_initialized, ARENAS};
use crate::magazines::{self, MagazineMode, MAX_CPU_ROWS};
use crate::sys::{flush_to, StackStr};
use crate::{caches, classes, large, options, region, source};
use core::fmt::Write;
use core::sync::atomic::Ordering;

/// One size class's cache (the `::umastat` cache columns; a row of the
/// statistics table). Counts are since the start of the process; "now"
/// values are as of the snapshot.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClassStats {
    /// The cache's name, `umem_alloc_<size>` (a `'static` string even for a
    /// class not made yet).
    pub name: &'static str,
    /// The class's size in bytes: every buffer of the cache has it (8 B to
    /// 128 KiB, libumem's sizes).
    pub buf_size: usize,
    /// Buffers the program holds now: allocated and not freed (buffers in
    /// magazines and the depot count as free).
    pub buf_in_use: u64,
    /// Buffers the cache's slabs hold now, in use or free (in slabs,
    /// magazines or the depot); `buf_total - buf_in_use` is what the cache
    /// keeps for reuse.
    pub buf_total: u64,
    /// Bytes the program holds in this cache now (`buf_in_use * buf_size`).
    pub mem_in_use: u64,
    /// Allocations the cache served since start (magazine hits included).
    pub alloc: u64,
    /// Allocations the cache could not serve (its arena was out of memory).
    pub alloc_fail: u64,
    /// Rounds per magazine now (0: the class is not made yet, or
    /// `nomagazines`). It grows when the depot lock is contended.
    pub mag_size: usize,
    /// Times the magazine size grew since start.
    pub mag_resize: u64,
    /// Buffers in the class's per-CPU magazines now, all CPUs (0 per thread).
    pub cpu_rounds: u64,
    /// Bytes free in the class's own arena now: spans it imported that hold
    /// no slab (a slab whose buffers are all free goes back there, e.g. when
    /// a magazine resize purges the depot), kept for the class's next slabs.
    pub arena_free: u64,
}

/// One vmem arena (the `::umastat` vmem columns; a row of the second part
/// of the statistics table). Arenas import from one another, so these do
/// not add up across arenas: [`Stats::mapped`] is the total.
#[derive(Clone, Copy, Debug, Default)]
pub struct ArenaStats {
    name: [u8; 32],
    name_len: usize,
    /// Bytes allocated from the arena now (segments handed out, including
    /// those its quantum caches hold).
    pub in_use: u64,
    /// Bytes the arena manages now: its spans, imported or added.
    pub total: u64,
    /// Bytes of `total` imported from its source (another arena, the page
    /// source or the class region).
    pub import: u64,
    /// Segments allocated from the arena since start.
    pub alloc: u64,
    /// Allocations the arena could not serve since start.
    pub fail: u64,
}

impl ArenaStats {
    /// The arena's name (at most 32 bytes of it).
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("?")
    }
}

/// Large blocks: requests above 128 KiB (or aligned above a page), served
/// in whole pages from the `umem_oversize` and `umem_memalign` arenas.
#[derive(Clone, Copy, Debug, Default)]
pub struct LargeStats {
    /// Bytes of live large blocks now (their capacity: the request rounded up
    /// to a power of two pages, plus realloc room; address space, of which
    /// only the touched pages are memory).
    pub in_use: u64,
    /// Large blocks handed out since start (from the cache or the arenas).
    pub alloc: u64,
    /// Large blocks freed since start (`alloc - free` are live now).
    pub free: u64,
    /// Large-block requests that failed since start (no address space or
    /// memory).
    pub fail: u64,
    /// Requests served from the cache of freed large blocks since start.
    pub cache_hits: u64,
    /// Freed large blocks kept in that cache now (at most `large_cache`
    /// bytes of them).
    pub cached_blocks: usize,
    /// Bytes (their last requested lengths) of the blocks in that cache now.
    pub cached_bytes: usize,
}

/// The most arenas a [`Stats`] snapshot lists.
pub const MAX_ARENAS: usize = 160;

/// A snapshot of every size-class cache and vmem arena and of the memory
/// umem holds, as [`stats`] returns it (the numbers of the statistics
/// table). A plain value: it does not change after it is taken.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Every size class's cache, smallest first (all 46, made or not).
    pub classes: [ClassStats; classes::COUNT],
    /// Every vmem arena in the first `narenas` entries, in the order they
    /// were made (read them with [`Stats::arenas`] or [`Stats::arena`]).
    pub arenas: [ArenaStats; MAX_ARENAS],
    /// How many of `arenas` are filled (at most [`MAX_ARENAS`]; later arenas
    /// are left out).
    pub narenas: usize,
    /// Large blocks (above 128 KiB).
    pub large: LargeStats,
    /// Bytes of memory umem holds from the kernel: what its page source has
    /// mapped now plus the class region's spans in use (the rest of the
    /// region is address space whose pages are discarded).
    pub mapped: u64,
    /// Bytes of address space reserved for the class region: 1 TiB, or 0
    /// without a region (`UMEM_OPTIONS=noregion`, or the reservation
    /// failed). `PROT_NONE` address space, not memory.
    pub region_reserved: u64,
    /// Bytes of the region made accessible (read/write) so far: it is
    /// committed in rounds of 16 MiB as classes reach them; pages in it
    /// that no class span holds have been discarded.
    pub region_committed: u64,
    /// Bytes of the region the class arenas hold now (imported spans);
    /// counted in `mapped`.
    pub region_in_use: u64,
    /// `mmap` calls the page source made since start.
    pub maps: u64,
    /// `munmap` calls the page source made since start.
    pub unmaps: u64,
    /// Where the magazines are: per CPU or per thread (`UMEM_OPTIONS=percpu`).
    pub magazines: MagazineMode,
    /// Buffers in the per-CPU magazines of all classes, for each of the first
    /// [`MAX_CPU_ROWS`] CPUs (zero per thread).
    pub cpu_rounds: [u64; MAX_CPU_ROWS],
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
/// It allocates nothing (a [`Stats`] is a plain value of fixed size, about
/// 16 KiB: keep it off small thread stacks) and takes each cache's and
/// arena's lock briefly, one at a time.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: umem_global::Umem = umem_global::Umem;
///
/// fn main() {
///     let v = vec![7u8; 100];
///     let s = umem_global::stats();
///     // The 100-byte Vec lives in the 112-byte class.
///     let c = s.classes.iter().find(|c| c.name == "umem_alloc_112").unwrap();
///     assert!(c.buf_in_use >= 1 && c.alloc >= 1);
///     assert!(s.bytes_in_use() >= 112);
///     // Arenas by name: the large-block arena, and what umem holds in all.
///     assert!(s.arena("umem_oversize").is_some());
///     println!("umem holds {} bytes from the kernel", s.mapped);
///     drop(v);
/// }
/// ```
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
        region_committed: 0,
        region_in_use: 0,
        magazines: magazines::mode(),
        cpu_rounds: if is_initialized() {
            magazines::cpu_rounds()
        } else {
            [0; MAX_CPU_ROWS]
        },
    };
    if region::base().is_some() {
        s.region_reserved = region::LEN as u64;
        s.region_in_use = region::in_use() as u64;
        s.region_committed = region::committed() as u64;
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
            cs.cpu_rounds = ks.cpu_rounds as u64;
        }
        if let Some(vm) = ARENAS.class_arena(c) {
            let vs = vm.stats();
            cs.arena_free = vs.mem_total.saturating_sub(vs.mem_inuse);
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

/// A byte count in a table column: exact below 10 KiB (`608`, `1152`),
/// else in binary units with one decimal below 100 of the unit (`12.0K`,
/// `104K`, `1.5M`, `1.0T`); right-aligned by the caller's width.
#[derive(Clone, Copy)]
struct Col(u64);

/// A byte count in prose: `608 B`, `1.5 KiB`, `12.3 MiB`, `1.0 TiB`.
#[derive(Clone, Copy)]
struct Prose(u64);

/// Writes `n` bytes as a whole or one-decimal multiple of the largest
/// binary unit not above it; `units` are the names of K, M, G, T.
fn scaled(b: &mut StackStr<24>, n: u64, units: [&str; 5]) {
    let mut unit = 0;
    while unit < 4 && n >= 1024u64 << (10 * unit) {
        unit += 1;
    }
    if unit == 0 {
        let _ = write!(b, "{n}{}", units[0]);
        return;
    }
    let div = 1u64 << (10 * unit);
    let whole = n / div;
    let tenth = (n % div) * 10 / div;
    if whole < 100 {
        let _ = write!(b, "{whole}.{tenth}{}", units[unit]);
    } else {
        let _ = write!(b, "{whole}{}", units[unit]);
    }
}

impl core::fmt::Display for Col {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut b = StackStr::<24>::new();
        if self.0 < 10 << 10 {
            let _ = write!(b, "{}", self.0);
        } else {
            scaled(&mut b, self.0, ["", "K", "M", "G", "T"]);
        }
        f.pad(b.as_str())
    }
}

impl core::fmt::Display for Prose {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut b = StackStr::<24>::new();
        scaled(&mut b, self.0, [" B", " KiB", " MiB", " GiB", " TiB"]);
        f.pad(b.as_str())
    }
}

/// Whether a cache row is worth showing without `stats_all`.
fn class_used(c: &ClassStats) -> bool {
    c.alloc != 0 || c.buf_total != 0 || c.alloc_fail != 0
}

/// Whether an arena row is worth showing without `stats_all`.
fn arena_used(a: &ArenaStats) -> bool {
    a.alloc != 0 || a.total != 0 || a.fail != 0
}

/// Appends one line to `b`, without trailing blanks (the table's empty
/// cells), flushing `b` to `fd` when it is nearly full.
fn line(b: &mut StackStr<4096>, fd: i32, args: core::fmt::Arguments<'_>) {
    let mut l = StackStr::<256>::new();
    let _ = l.write_fmt(args);
    let _ = writeln!(b, "{}", l.as_str().trim_end());
    if b.len() > 3500 {
        flush_to(b, fd);
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Prints the statistics table (in the spirit of mdb's `::umastat`) to
/// file descriptor `fd`: one row per size-class cache, the large blocks, a
/// totals row, one row per vmem arena, then a summary of the memory umem
/// holds. Byte columns carry binary units (`K`, `M`, `G`, `T`). Only the
/// caches and arenas that were used are listed, unless `UMEM_STATS=all` or
/// `UMEM_OPTIONS=stats_all` asked for every one. Nothing is allocated: the
/// text is formatted on the stack and written with `write(2)`.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: umem_global::Umem = umem_global::Umem;
///
/// fn main() {
///     let v = vec![0u8; 1000];
///     umem_global::print_stats(2); // to stderr
///     drop(v);
/// }
/// ```
pub fn print_stats(fd: i32) {
    print_table(fd, options::STATS_ALL.load(Ordering::Relaxed));
}

/// The magazine mode line, and with per-CPU magazines the buffers each CPU's
/// magazines hold (all classes).
fn write_magazines(b: &mut StackStr<4096>, s: &Stats) {
    match s.magazines {
        MagazineMode::PerThread => {
            let _ = writeln!(b, "magazines: per thread\n");
        }
        MagazineMode::PerCpu { cpus } => {
            let _ = write!(
                b,
                "magazines: per CPU ({cpus} possible); buffers held per CPU:"
            );
            for (i, r) in s.cpu_rounds.iter().enumerate().take(cpus) {
                let _ = write!(b, " cpu{i}={r}");
            }
            if cpus > MAX_CPU_ROWS {
                let _ = write!(b, " (first {MAX_CPU_ROWS} CPUs)");
            }
            let _ = writeln!(b, "\n");
        }
    }
}

fn print_table(fd: i32, all: bool) {
    let s = stats();
    let mut b = StackStr::<4096>::new();
    macro_rules! row {
        ($($a:expr),* $(,)?) => {
            line(
                &mut b,
                fd,
                format_args!("{:<22} {:>7} {:>8} {:>8} {:>7} {:>10} {:>5} {:>4}", $($a),*),
            );
        };
    }
    row!("cache", "buf", "buf", "buf", "memory", "alloc", "alloc", "mag");
    row!("name", "size", "in use", "total", "in use", "succeed", "fail", "size");
    row!(
        "----------------------",
        "-------",
        "--------",
        "--------",
        "-------",
        "----------",
        "-----",
        "----"
    );
    let mut hidden = 0u64;
    let mut t = ClassStats::default();
    for c in &s.classes {
        t.buf_in_use += c.buf_in_use;
        t.buf_total += c.buf_total;
        t.mem_in_use += c.mem_in_use;
        t.alloc += c.alloc;
        t.alloc_fail += c.alloc_fail;
        if !all && !class_used(c) {
            hidden += 1;
            continue;
        }
        row!(
            c.name,
            Col(c.buf_size as u64),
            c.buf_in_use,
            c.buf_total,
            Col(c.mem_in_use),
            c.alloc,
            c.alloc_fail,
            c.mag_size
        );
    }
    let l = s.large;
    let live = l.alloc.saturating_sub(l.free);
    row!(
        "(large blocks)",
        "-",
        live,
        live + l.cached_blocks as u64,
        Col(l.in_use),
        l.alloc,
        l.fail,
        "-"
    );
    row!(
        "----------------------",
        "",
        "--------",
        "--------",
        "-------",
        "----------",
        "-----",
        ""
    );
    row!(
        "total",
        "",
        t.buf_in_use + live,
        t.buf_total + live + l.cached_blocks as u64,
        Col(t.mem_in_use + l.in_use),
        t.alloc + l.alloc,
        t.alloc_fail + l.fail,
        ""
    );
    if hidden != 0 {
        let _ = writeln!(
            b,
            "({hidden} unused size class{} not listed; UMEM_STATS=all lists every one)",
            if hidden == 1 { "" } else { "es" }
        );
    }
    let _ = writeln!(
        b,
        "large-block cache: {} block{} ({}) kept for reuse, {} hit{}\n",
        l.cached_blocks,
        plural(l.cached_blocks as u64),
        Prose(l.cached_bytes as u64),
        l.cache_hits,
        plural(l.cache_hits)
    );
    write_magazines(&mut b, &s);
    flush_to(&mut b, fd);

    macro_rules! arow {
        ($($a:expr),* $(,)?) => {
            line(
                &mut b,
                fd,
                format_args!("{:<22} {:>8} {:>8} {:>8} {:>10} {:>5}", $($a),*),
            );
        };
    }
    arow!("vmem arena", "memory", "memory", "memory", "alloc", "alloc");
    arow!("name", "in use", "total", "import", "succeed", "fail");
    arow!(
        "----------------------",
        "--------",
        "--------",
        "--------",
        "----------",
        "-----"
    );
    let mut hidden = 0u64;
    for a in s.arenas() {
        if !all && !arena_used(a) {
            hidden += 1;
            continue;
        }
        arow!(
            a.name(),
            Col(a.in_use),
            Col(a.total),
            Col(a.import),
            a.alloc,
            a.fail
        );
    }
    if hidden != 0 {
        let _ = writeln!(
            b,
            "({hidden} unused arena{} not listed; UMEM_STATS=all lists every one)",
            plural(hidden)
        );
    }
    let _ = writeln!(
        b,
        "\nin use by the program: {} ({} in size classes, {} in large blocks)",
        Prose(s.bytes_in_use()),
        Prose(t.mem_in_use),
        Prose(l.in_use)
    );
    let _ = writeln!(
        b,
        "held from the kernel:  {} ({} mapped by the page source: {} mmap{}, {} munmap{}; {} in class-region spans)",
        Prose(s.mapped),
        Prose(s.mapped - s.region_in_use),
        s.maps,
        plural(s.maps),
        s.unmaps,
        plural(s.unmaps),
        Prose(s.region_in_use)
    );
    if s.region_reserved != 0 {
        let _ = writeln!(
            b,
            "class region: {} of address space reserved (PROT_NONE, not memory), {} of it made accessible, {} in class spans",
            Prose(s.region_reserved),
            Prose(s.region_committed),
            Prose(s.region_in_use)
        );
    } else if options::NOREGION.load(Ordering::Relaxed) {
        let _ = writeln!(b, "class region: none (UMEM_OPTIONS=noregion)");
    } else {
        let _ = writeln!(
            b,
            "class region: none (its {} address-space reservation failed, e.g. under ulimit -v; size classes use umem_default)",
            Prose(region::LEN as u64)
        );
    }
    flush_to(&mut b, fd);
}

/// Runs at process exit (from `.fini_array`): prints the table when
/// `UMEM_STATS` asked for it, to stderr or to the file it names (opened
/// relative to the working directory at exit, appended to). A file that
/// cannot be opened gets a warning and the table goes to stderr.
extern "C" fn at_exit() {
    if is_initialized() {
        crate::verify::at_exit();
    }
    if is_initialized() && options::STATS_AT_EXIT.load(Ordering::Relaxed) {
        match options::STATS_PATH.get() {
            None => print_stats(2),
            Some(path) => {
                // SAFETY: a NUL-terminated path (options.rs); open does not
                // allocate.
                let fd = unsafe {
                    libc::open(
                        path,
                        libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
                        0o644,
                    )
                };
                if fd >= 0 {
                    print_stats(fd);
                    // SAFETY: the descriptor opened above, closed once.
                    unsafe { libc::close(fd) };
                } else {
                    let e = crate::sys::errno();
                    // SAFETY: the same NUL-terminated path.
                    let name = unsafe { core::ffi::CStr::from_ptr(path) };
                    crate::sys::warn(format_args!(
                        "umem: UMEM_STATS: cannot open '{}' (errno {}); the table goes to stderr\n",
                        name.to_str().unwrap_or("<non-utf8>"),
                        e
                    ));
                    print_stats(2);
                }
            }
        }
    }
}

#[used]
#[link_section = ".fini_array"]
static AT_EXIT: extern "C" fn() = at_exit;
