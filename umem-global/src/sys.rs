//! Thin wrappers over the system calls umem-global uses (mmap, munmap,
//! mprotect, madvise, write, errno, the clock), the page size, and the
//! diagnostics: [`fatal`] (abort with a message), [`warn`], [`flush_to`]
//! for umem-vmem's allocation-free [`StackStr`], and [`no_unwind`].
//!
//! `fatal` and the stack buffer come from umem-vmem (`umem_vmem::diag`), the
//! one home of those helpers in the workspace. [`PAGE`] is the page-map
//! granule, a constant so that the hit paths shift by an immediate; init
//! checks that the system page size (`umem_vmem::page_size()`) divides it.
//!
//! Every function here is safe to call at any time, from any thread,
//! including inside `malloc` before initialisation.

use core::fmt;

/// Granule of the page map and quantum of umem's page-level arenas.
pub const PAGE: usize = 4096;
/// log2 of [`PAGE`].
pub const PAGE_SHIFT: u32 = 12;

/// A fresh private anonymous `MAP_NORESERVE` mapping of `len` bytes with
/// protection `prot`, at an address of the kernel's choosing.
fn map_anon(len: usize, prot: libc::c_int) -> Option<usize> {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p as usize)
}

/// Whether address space or commit charge is scarce, so that reserving
/// room nobody uses yet can make a later allocation fail: a finite
/// `RLIMIT_AS`, or `vm.overcommit_memory = 2`, where `MAP_NORESERVE` is
/// ignored and every writable private page counts against the commit limit
/// (read once from `/proc/sys/vm/overcommit_memory`; unreadable counts as
/// not strict). Used only on the path that moves a growing large block
/// (`realloc.rs`). A program may lower `RLIMIT_AS` at any time, so the
/// limit is asked again on the first call and every 16th after, and on
/// every call while it is finite (a `getrlimit` on each call cost the
/// `mbench grow` workload about 25%: numbers in `docs/performance.md`).
pub fn room_is_scarce() -> bool {
    use core::sync::atomic::{AtomicU32, Ordering};
    /// Calls since the limit was last asked, or `u32::MAX` while it is
    /// finite (or not asked yet).
    static SINCE_ASKED: AtomicU32 = AtomicU32::new(u32::MAX);
    let n = SINCE_ASKED.load(Ordering::Relaxed);
    if n < 15 {
        SINCE_ASKED.store(n + 1, Ordering::Relaxed);
        return overcommit_strict();
    }
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass; it allocates nothing.
    let limited = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rl) } == 0
        && rl.rlim_cur != libc::RLIM_INFINITY;
    SINCE_ASKED.store(if limited { u32::MAX } else { 0 }, Ordering::Relaxed);
    limited || overcommit_strict()
}

/// `vm.overcommit_memory == 2`, read once (0 unknown, 1 no, 2 yes).
fn overcommit_strict() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering};
    static STRICT: AtomicU8 = AtomicU8::new(0);
    match STRICT.load(Ordering::Relaxed) {
        1 => return false,
        2 => return true,
        _ => {}
    }
    let strict = keep_errno(|| {
        // SAFETY: a NUL-terminated path; the descriptor is ours and closed below.
        let fd = unsafe {
            libc::open(
                c"/proc/sys/vm/overcommit_memory".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return false;
        }
        let mut b = [0u8; 1];
        // SAFETY: reads at most one byte into `b`.
        let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
        // SAFETY: our descriptor, closed once.
        unsafe { libc::close(fd) };
        n == 1 && b[0] == b'2'
    });
    STRICT.store(if strict { 2 } else { 1 }, Ordering::Relaxed);
    strict
}

/// Maps `len` bytes of fresh, zeroed, private anonymous memory.
pub fn map(len: usize) -> Option<usize> {
    map_anon(len, libc::PROT_READ | libc::PROT_WRITE)
}

/// Reserves `len` bytes of address space: an inaccessible (`PROT_NONE`)
/// private anonymous mapping that costs no memory and no commit charge, and
/// that core dumps leave out until parts of it are [`commit`]ted and used.
pub fn reserve(len: usize) -> Option<usize> {
    map_anon(len, libc::PROT_NONE)
}

/// Makes `[addr, addr + len)` of a [`reserve`]d range readable and
/// writable (its pages read as zero until written). `false` when the kernel
/// refuses (commit limit, too many mappings).
///
/// # Safety
/// The range must be part of a reservation that nothing else uses.
pub unsafe fn commit(addr: usize, len: usize) -> bool {
    // SAFETY: per the caller's contract.
    unsafe {
        libc::mprotect(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
        ) == 0
    }
}

/// Cuts a fresh mapping `[base, base + over)` down to the `size` bytes that
/// start at its first `align`-aligned address (`over >= size + align - PAGE`),
/// unmapping the parts before and after; returns that start. How an aligned
/// range is mapped: map `over` bytes, then trim.
///
/// # Safety
/// `[base, base + over)` must be a mapping of the caller's that nobody uses.
pub unsafe fn trim_to_aligned(base: usize, over: usize, size: usize, align: usize) -> usize {
    let start = (base + align - 1) & !(align - 1);
    let end = start + size;
    debug_assert!(end <= base + over);
    // SAFETY: per the caller's contract, the trimmed parts are ours and unused.
    unsafe {
        if start > base {
            unmap(base, start - base);
        }
        if base + over > end {
            unmap(end, base + over - end);
        }
    }
    start
}

/// Unmaps a range previously mapped by [`map`] (or part of one).
///
/// # Safety
/// Nothing may use `[addr, addr + len)` afterwards.
pub unsafe fn unmap(addr: usize, len: usize) {
    // SAFETY: per the caller's contract the range is ours and unused.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
}

/// Tells the kernel the contents of `[addr, addr + len)` are not needed:
/// the pages are freed now and read back as zeros.
///
/// # Safety
/// The range must be mapped private anonymous memory that nobody uses.
pub unsafe fn discard(addr: usize, len: usize) {
    // SAFETY: per the caller's contract.
    unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
}

/// Writes all of `bytes` to file descriptor `fd`, ignoring errors.
pub fn write_fd(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe a live slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            // SAFETY: reading errno of this thread.
            if n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

pub use umem_vmem::diag::StackStr;

/// Writes what `b` holds to `fd` (and "...\n" where text was cut), then
/// empties it.
pub fn flush_to<const N: usize>(b: &mut StackStr<N>, fd: i32) {
    write_fd(fd, b.as_str().as_bytes());
    if b.is_truncated() {
        write_fd(fd, b"...\n");
    }
    b.clear();
}

/// Writes a one-line message to stderr and aborts the process. Never
/// allocates and never unwinds (umem-vmem's `diag::fatal`, the one home of
/// abort-with-message in the workspace).
#[cold]
pub fn fatal(args: fmt::Arguments<'_>) -> ! {
    umem_vmem::diag::fatal(args)
}

/// Runs `f`, aborting with a message if a panic unwinds out of it. The
/// allocator must never unwind into its caller (unwinding out of a
/// `GlobalAlloc` method is undefined behaviour, and out of a C function
/// worse); `libumem.so` is built with `panic = "abort"`, but a Rust program
/// using `Umem` may use `panic = "unwind"`. Every out-of-line entry (the
/// `*_miss` functions, `realloc`'s move) runs its body in here; the inline
/// hit paths contain nothing that can panic. With `panic = "abort"` this
/// costs nothing: there is no unwinding, so no landing pad.
#[inline(always)]
pub fn no_unwind<R>(f: impl FnOnce() -> R) -> R {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            fatal(format_args!(
                "umem: a panic unwound into the allocator; aborting"
            ));
        }
    }
    let bomb = Bomb;
    let r = f();
    core::mem::forget(bomb);
    r
}

/// Writes a message to stderr (no allocation).
pub fn warn(args: fmt::Arguments<'_>) {
    let mut b = StackStr::<512>::new();
    let _ = fmt::Write::write_fmt(&mut b, args);
    flush_to(&mut b, 2);
}

/// errno of the calling thread.
#[inline]
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets errno of the calling thread.
#[inline]
pub fn set_errno(e: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e };
}

/// Runs `f` and leaves errno as it was before (for system calls made on
/// behalf of a caller that must not see errno change, as `free` must not).
#[inline]
pub fn keep_errno<R>(f: impl FnOnce() -> R) -> R {
    let e = errno();
    let r = f();
    set_errno(e);
    r
}
