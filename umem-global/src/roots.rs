//! The roots of a leak scan (`leaks.rs`) and a reader that survives memory
//! vanishing under it.
//!
//! A conservative leak scan (Boehm's collector, mdb's `::findleaks`) treats
//! every aligned word of the *roots* as a possible pointer. Ours are:
//!
//! 1. the writable segments (`.data`, `.bss`, GOT) of every loaded object,
//!    from `dl_iterate_phdr`'s `PT_LOAD` headers with `PF_W`;
//! 2. the calling thread's thread-local storage: each object's `PT_TLS`
//!    block at `dlpi_tls_data` (static TLS; dynamic TLS blocks of `dlopen`ed
//!    objects are heap blocks reached from the thread's DTV);
//! 3. the calling thread's stack from its stack pointer up, with its
//!    callee-saved registers spilled onto it first (`spill_registers`);
//! 4. other threads' stacks, found in `/proc/self/maps`: the main thread's
//!    `[stack]`, and every private anonymous read-write mapping that sits
//!    right above a small (≤ 256 KiB) inaccessible anonymous mapping — the
//!    guard page glibc puts under each thread stack it maps — outside
//!    umem's class region. Such a mapping is scanned whole: it holds the
//!    thread's stack (live and dead frames: we do not know its stack
//!    pointer) and, at its top, glibc's thread descriptor and the thread's
//!    static TLS.
//!
//! Stacks of exited threads that glibc keeps mapped for reuse look like
//! live ones and are scanned too: their stale words can only hide a leak.
//!
//! What this cannot see (so a block referenced only from there is reported
//! as leaked): another running thread's registers (only what it has
//! spilled to its stack); stacks not made by glibc's `pthread_create` with
//! a guard page (a `clone`d thread, a stack the program allocated, a guard
//! made with `MADV_GUARD_INSTALL`, which `/proc/self/maps` does not show);
//! memory from other allocators and the program's own `mmap`s (a pool
//! allocator that gets its arenas with `mmap`, like Python's obmalloc); the
//! kernel (pointers handed to `io_uring`, `aio`); files. And what it cannot
//! understand: pointers stored encoded (XOR-linked lists, tagged or
//! compressed pointers, glibc's `PTR_MANGLE`d words) or as offsets.
//!
//! **Reading.** A scan reads memory that may disappear meanwhile (a thread
//! exits and its stack is unmapped, another thread frees a large block).
//! [`SafeReader`] copies through `process_vm_readv` on our own process,
//! which reports an unmapped range as a short read instead of a fault; where
//! the system refuses that call (seccomp, an old kernel) it reads directly.

use crate::region;
use crate::sys;
use core::ffi::c_void;
use core::sync::atomic::{AtomicU8, Ordering};

/// A range of memory to scan, `[lo, hi)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Range {
    /// First byte.
    pub lo: usize,
    /// One past the last byte.
    pub hi: usize,
}

/// Where root ranges are collected: a fixed array in scratch memory.
pub struct Roots<'a> {
    /// The ranges found so far.
    pub ranges: &'a mut [Range],
    /// How many of `ranges` are filled.
    pub len: usize,
    /// Ranges that did not fit (a count for the report).
    pub dropped: usize,
}

impl Roots<'_> {
    fn push(&mut self, lo: usize, hi: usize) {
        let lo = (lo + 7) & !7;
        if hi <= lo {
            return;
        }
        if self.len < self.ranges.len() {
            self.ranges[self.len] = Range { lo, hi };
            self.len += 1;
        } else {
            self.dropped += 1;
        }
    }

    /// Bytes in the ranges found.
    pub fn bytes(&self) -> usize {
        self.ranges[..self.len].iter().map(|r| r.hi - r.lo).sum()
    }
}

/// Roots 1 and 2: writable segments and this thread's static TLS blocks.
pub fn collect_objects(roots: &mut Roots<'_>) {
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _: usize, arg: *mut c_void) -> i32 {
        // SAFETY: dl_iterate_phdr hands a valid record; `arg` is the Roots.
        unsafe {
            let roots = &mut *(arg as *mut Roots<'_>);
            let i = &*info;
            for k in 0..i.dlpi_phnum as usize {
                let ph = &*i.dlpi_phdr.add(k);
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_W != 0 {
                    let lo = i.dlpi_addr as usize + ph.p_vaddr as usize;
                    roots.push(lo, lo + ph.p_memsz as usize);
                } else if ph.p_type == libc::PT_TLS && !i.dlpi_tls_data.is_null() {
                    let lo = i.dlpi_tls_data as usize;
                    roots.push(lo, lo + ph.p_memsz as usize);
                }
            }
        }
        0
    }
    // SAFETY: the callback only reads the records and writes `roots`.
    unsafe { libc::dl_iterate_phdr(Some(each), roots as *mut Roots<'_> as *mut c_void) };
}

/// One line of `/proc/self/maps`.
#[derive(Clone, Copy, Default)]
struct Mapping {
    lo: usize,
    hi: usize,
    readable: bool,
    writable: bool,
    private: bool,
    /// No file and no `[name]`.
    anonymous: bool,
    /// `[stack]`: the main thread's.
    main_stack: bool,
}

fn hex(s: &[u8]) -> Option<usize> {
    let mut v: usize = 0;
    if s.is_empty() {
        return None;
    }
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = v.checked_mul(16)?.checked_add(d as usize)?;
    }
    Some(v)
}

fn parse_line(line: &[u8]) -> Option<Mapping> {
    let mut f = line.split(|&c| c == b' ').filter(|s| !s.is_empty());
    let range = f.next()?;
    let perms = f.next()?;
    let (_off, _dev, _inode) = (f.next()?, f.next()?, f.next()?);
    let path = f.next().unwrap_or(b"");
    let dash = range.iter().position(|&c| c == b'-')?;
    if perms.len() < 4 {
        return None;
    }
    Some(Mapping {
        lo: hex(&range[..dash])?,
        hi: hex(&range[dash + 1..])?,
        readable: perms[0] == b'r',
        writable: perms[1] == b'w',
        private: perms[3] == b'p',
        anonymous: path.is_empty(),
        main_stack: path == b"[stack]",
    })
}

/// Whether `m` looks like a thread stack glibc made: anonymous, right above
/// `prev`, a small inaccessible anonymous mapping (its guard).
fn is_thread_stack(m: &Mapping, prev: &Mapping) -> bool {
    m.anonymous
        && prev.anonymous
        && prev.hi == m.lo
        && !prev.readable
        && !prev.writable
        && prev.hi - prev.lo <= MAX_GUARD
}

/// The largest guard mapping a thread stack is recognised by.
const MAX_GUARD: usize = 256 << 10;

/// Roots 3 and 4: this thread's stack from `sp` up, and the other threads'
/// stacks (see the module comment), from `/proc/self/maps` read into
/// `buf`. `avoid` is scratch memory of the scan, never a root.
pub fn collect_stacks(roots: &mut Roots<'_>, sp: usize, buf: &mut [u8], avoid: Range) {
    // SAFETY: a NUL-terminated path; open does not allocate.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return;
    }
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: reading into the unfilled tail of `buf`.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    // SAFETY: the descriptor opened above, closed once.
    unsafe { libc::close(fd) };
    let (rlo, rhi) = region::reservation().unwrap_or((0, 0));
    let mut prev = Mapping::default();
    for line in buf[..len].split(|&c| c == b'\n') {
        let Some(m) = parse_line(line) else {
            continue;
        };
        let rw = m.readable && m.writable && m.private;
        let overlaps = |lo: usize, hi: usize| m.lo < hi && lo < m.hi;
        if rw && m.lo <= sp && sp < m.hi {
            roots.push(sp, m.hi);
        } else if rw
            && (m.main_stack || is_thread_stack(&m, &prev))
            && !overlaps(rlo, rhi)
            && !overlaps(avoid.lo, avoid.hi)
        {
            roots.push(m.lo, m.hi);
        }
        prev = m;
    }
}

/// Writes the callee-saved registers into `out` (so that a pointer held
/// only in one of them is on the stack the scan reads) and answers the
/// stack pointer.
#[inline(never)]
pub fn spill_registers(out: &mut [usize; 8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: plain register moves into our own array.
    unsafe {
        core::arch::asm!(
            "mov [{o}], rbx",
            "mov [{o} + 8], rbp",
            "mov [{o} + 16], r12",
            "mov [{o} + 24], r13",
            "mov [{o} + 32], r14",
            "mov [{o} + 40], r15",
            "mov [{o} + 48], rsp",
            o = in(reg) out.as_mut_ptr(),
            options(nostack, preserves_flags),
        );
    }
    let here = 0usize;
    core::hint::black_box(&here) as *const usize as usize
}

/// `process_vm_readv` on ourselves: 0 untried, 1 works, 2 refused.
static VM_READ: AtomicU8 = AtomicU8::new(0);

/// Copies `[addr, addr + dst.len())` into `dst`; answers the bytes copied
/// (fewer when part of the range is not mapped).
fn read_into(addr: usize, dst: &mut [u8]) -> usize {
    if VM_READ.load(Ordering::Relaxed) != 2 {
        let local = libc::iovec {
            iov_base: dst.as_mut_ptr().cast(),
            iov_len: dst.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut c_void,
            iov_len: dst.len(),
        };
        // SAFETY: `local` is our own writable buffer; the remote range is
        // only read, by the kernel, which checks it.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if n >= 0 {
            VM_READ.store(1, Ordering::Relaxed);
            return n as usize;
        }
        let e = sys::errno();
        if e == libc::EFAULT || e == libc::ENOMEM || VM_READ.load(Ordering::Relaxed) == 1 {
            return 0;
        }
        VM_READ.store(2, Ordering::Relaxed);
    }
    // SAFETY: the fallback where the kernel refuses the call: the caller
    // only passes ranges it found mapped and readable.
    unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, dst.as_mut_ptr(), dst.len()) };
    dst.len()
}

/// Reads words of memory through a window buffer (see the module comment).
pub struct SafeReader<'a> {
    window: &'a mut [u8],
}

impl<'a> SafeReader<'a> {
    /// A reader copying through `window` (a multiple of 8 bytes).
    pub fn new(window: &'a mut [u8]) -> SafeReader<'a> {
        SafeReader { window }
    }

    /// Calls `f` with every aligned word of `r` that could be read.
    pub fn words(&mut self, r: Range, f: &mut dyn FnMut(usize)) {
        let mut at = r.lo & !7;
        while at < r.hi {
            let want = (r.hi - at).min(self.window.len());
            let got = read_into(at, &mut self.window[..want]);
            for c in self.window[..got].chunks_exact(8) {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                f(usize::from_ne_bytes(w));
            }
            if got < want {
                // Skip the unreadable page and go on with the next one.
                at = (at + got + sys::PAGE) & !(sys::PAGE - 1);
            } else {
                at += got;
            }
        }
    }
}
