//! glibc's malloc introspection calls, answered with umem's figures:
//! `mallinfo`, `mallinfo2`, `malloc_stats`, `malloc_info`, `mallopt`.
//! Exported from `libumem.so`, they take the place of glibc's (which would
//! report on glibc's empty heap) whether the library is linked or preloaded.
//!
//! The figures cover the malloc heap — umem-global's size classes and large
//! blocks, which `malloc` and `umem_alloc` share — from one
//! [`umem_global::stats`] snapshot; object caches and arenas made through
//! `umem_cache_create`/`vmem_create` are not in them (nor in glibc's).
//!
//! `mallinfo2` (and `mallinfo`, the same truncated to `int`):
//! * `arena`: bytes umem holds from the kernel (page source mappings and
//!   the class region's spans in use);
//! * `ordblks`: free buffers in the size classes' slabs (magazines included);
//! * `smblks`: large blocks kept in the freed-block cache; `fsmblks`: their bytes;
//! * `hblks`/`hblkhd`: live large blocks and their bytes;
//! * `uordblks`: bytes of live size-class blocks (class sizes, not requests);
//! * `fordblks`: bytes umem holds for size-class blocks that the program
//!   is not using: free buffers (in slabs, magazines and the depot) and the
//!   free space of the class arenas (slabs that went back there), as glibc
//!   counts its top chunk;
//! * `usmblks`, `keepcost`: 0 (no equivalent).
//!
//! `malloc_stats()` prints umem's statistics table (the one `UMEM_STATS=1`
//! prints at exit) to stderr. `malloc_info(0, fp)` writes glibc's XML shape:
//! one `<heap nr="0">` with a `<size>` line per size class that has free
//! buffers, the totals, and `<system>`/`<aspace>` lines; umem keeps no peak,
//! so `max` is the current figure. Options other than 0 are `EINVAL`.
//!
//! `mallopt(param, value)` returns 0 ("not done") for every parameter:
//! none of glibc's knobs (`M_MXFAST`, `M_TRIM_THRESHOLD`, `M_TOP_PAD`,
//! `M_MMAP_THRESHOLD`, `M_MMAP_MAX`, `M_CHECK_ACTION`, `M_PERTURB`,
//! `M_ARENA_TEST`, `M_ARENA_MAX`) has a meaning umem implements, and
//! answering 1 would tell the program something happened. umem is tuned
//! through `UMEM_OPTIONS` instead.

use core::ffi::{c_int, c_void};
use core::fmt::Write;
use umem_global::{stats, Stats};

/// glibc's `struct mallinfo2`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Mallinfo2 {
    pub arena: usize,
    pub ordblks: usize,
    pub smblks: usize,
    pub hblks: usize,
    pub hblkhd: usize,
    pub usmblks: usize,
    pub fsmblks: usize,
    pub uordblks: usize,
    pub fordblks: usize,
    pub keepcost: usize,
}

/// glibc's `struct mallinfo`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Mallinfo {
    pub arena: c_int,
    pub ordblks: c_int,
    pub smblks: c_int,
    pub hblks: c_int,
    pub hblkhd: c_int,
    pub usmblks: c_int,
    pub fsmblks: c_int,
    pub uordblks: c_int,
    pub fordblks: c_int,
    pub keepcost: c_int,
}

/// Free buffers and their bytes in the size classes.
fn class_free(s: &Stats) -> (u64, u64) {
    s.classes.iter().fold((0, 0), |(n, b), c| {
        let free = c.buf_total.saturating_sub(c.buf_in_use);
        (n + free, b + free * c.buf_size as u64)
    })
}

fn info(s: &Stats) -> Mallinfo2 {
    let (free_bufs, free_bytes) = class_free(s);
    let arena_free: u64 = s.classes.iter().map(|c| c.arena_free).sum();
    let used: u64 = s.classes.iter().map(|c| c.mem_in_use).sum();
    Mallinfo2 {
        arena: s.mapped as usize,
        ordblks: free_bufs as usize,
        smblks: s.large.cached_blocks,
        hblks: s.large.alloc.saturating_sub(s.large.free) as usize,
        hblkhd: s.large.in_use as usize,
        usmblks: 0,
        fsmblks: s.large.cached_bytes,
        uordblks: used as usize,
        fordblks: (free_bytes + arena_free) as usize,
        keepcost: 0,
    }
}

/// `mallinfo2()`.
#[no_mangle]
pub extern "C" fn mallinfo2() -> Mallinfo2 {
    info(&stats())
}

/// `mallinfo()`: as `mallinfo2`, each figure truncated to `int` as glibc does.
#[no_mangle]
pub extern "C" fn mallinfo() -> Mallinfo {
    let m = mallinfo2();
    let t = |v: usize| v as c_int;
    Mallinfo {
        arena: t(m.arena),
        ordblks: t(m.ordblks),
        smblks: t(m.smblks),
        hblks: t(m.hblks),
        hblkhd: t(m.hblkhd),
        usmblks: t(m.usmblks),
        fsmblks: t(m.fsmblks),
        uordblks: t(m.uordblks),
        fordblks: t(m.fordblks),
        keepcost: t(m.keepcost),
    }
}

/// `malloc_stats()`: umem's statistics table on stderr.
#[no_mangle]
pub extern "C" fn malloc_stats() {
    umem_global::print_stats(2);
}

/// `mallopt(param, value)`: 0 for every parameter (see the module docs).
#[no_mangle]
pub extern "C" fn mallopt(_param: c_int, _value: c_int) -> c_int {
    0
}

/// A `fmt::Write` sink over a stack buffer that flushes to a C `FILE *`.
struct FileWriter {
    fp: *mut libc::FILE,
    buf: [u8; 512],
    len: usize,
    failed: bool,
}

impl FileWriter {
    fn flush(&mut self) {
        if self.len != 0 && !self.failed {
            // SAFETY: `fp` is the caller's open stream; the bytes are ours.
            let n = unsafe { libc::fwrite(self.buf.as_ptr().cast(), 1, self.len, self.fp) };
            self.failed = n != self.len;
        }
        self.len = 0;
    }
}

impl Write for FileWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for chunk in s.as_bytes().chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
        Ok(())
    }
}

/// The `<system>` and `<aspace>` lines glibc writes both per heap and for the
/// whole process: umem has one heap, so both carry the same figures.
fn write_system(w: &mut FileWriter, held: usize, mprotect: u64) -> core::fmt::Result {
    writeln!(w, "<system type=\"current\" size=\"{held}\"/>")?;
    writeln!(w, "<system type=\"max\" size=\"{held}\"/>")?;
    writeln!(w, "<aspace type=\"total\" size=\"{held}\"/>")?;
    writeln!(w, "<aspace type=\"mprotect\" size=\"{mprotect}\"/>")
}

fn write_info(w: &mut FileWriter, s: &Stats) -> core::fmt::Result {
    let (free_bufs, free_bytes) = class_free(s);
    let m = info(s);
    writeln!(w, "<malloc version=\"1\">")?;
    writeln!(w, "<heap nr=\"0\">")?;
    writeln!(w, "<sizes>")?;
    let mut from = 1usize;
    for c in s.classes.iter() {
        let free = c.buf_total.saturating_sub(c.buf_in_use);
        if free != 0 {
            writeln!(
                w,
                "<size from=\"{from}\" to=\"{}\" total=\"{}\" count=\"{free}\"/>",
                c.buf_size,
                free * c.buf_size as u64
            )?;
        }
        from = c.buf_size + 1;
    }
    if s.large.cached_blocks != 0 {
        writeln!(
            w,
            "<unsorted from=\"{from}\" to=\"-1\" total=\"{}\" count=\"{}\"/>",
            s.large.cached_bytes, s.large.cached_blocks
        )?;
    }
    writeln!(w, "</sizes>")?;
    writeln!(w, "<total type=\"fast\" count=\"0\" size=\"0\"/>")?;
    writeln!(
        w,
        "<total type=\"rest\" count=\"{free_bufs}\" size=\"{free_bytes}\"/>"
    )?;
    write_system(w, m.arena, s.region_in_use)?;
    writeln!(w, "</heap>")?;
    writeln!(w, "<total type=\"fast\" count=\"0\" size=\"0\"/>")?;
    writeln!(
        w,
        "<total type=\"rest\" count=\"{}\" size=\"{}\"/>",
        free_bufs + s.large.cached_blocks as u64,
        free_bytes + s.large.cached_bytes as u64
    )?;
    writeln!(
        w,
        "<total type=\"mmap\" count=\"{}\" size=\"{}\"/>",
        m.hblks, m.hblkhd
    )?;
    write_system(w, m.arena, s.region_in_use)?;
    writeln!(w, "</malloc>")
}

/// `malloc_info(options, fp)`: 0, or -1 with `errno = EINVAL` for options
/// other than 0 (glibc's contract).
///
/// # Safety
/// `fp` is an open, writable `FILE *`.
#[no_mangle]
pub unsafe extern "C" fn malloc_info(options: c_int, fp: *mut c_void) -> c_int {
    if options != 0 || fp.is_null() {
        umem_global::preload_abi::sys::set_errno(libc::EINVAL);
        return -1;
    }
    let s = stats();
    let mut w = FileWriter {
        fp: fp.cast(),
        buf: [0; 512],
        len: 0,
        failed: false,
    };
    let _ = write_info(&mut w, &s);
    w.flush();
    if w.failed {
        -1
    } else {
        0
    }
}
