//! Stack capture for audit records (`UMEM_DEBUG=audit`): the hook umem-slab
//! calls on every audited allocation and free ([`umem_slab::set_stack_hook`]).
//!
//! **Why an unwinder.** Ordinary distribution binaries are built with `-O2`
//! and without frame pointers, so walking `%rbp` finds nothing useful. The
//! stack is walked with the DWARF unwinder of `libgcc_s.so.1`
//! (`_Unwind_Backtrace`), which reads the `.eh_frame` tables every object
//! carries. The library is `dlopen`ed once, right after initialisation and
//! only when auditing is on ([`load_unwinder`]), with no umem lock held; the
//! normal mode never loads it (a test checks `/proc/self/maps`).
//!
//! **No unbounded re-entry.** `dlopen` allocates, and the unwinder might
//! (glibc's loader lock, libgcc's object registry). A per-thread word, the
//! *capture guard*, is set while this thread captures or loads the
//! unwinder; an allocation made meanwhile by the same thread is recorded
//! with an empty stack instead of capturing again. The word is an
//! initial-exec TLS word defined in assembly on x86_64 Linux (like
//! umem-slab's magazine word: a cdylib's `thread_local!` would call
//! `__tls_get_addr`, which may itself allocate in a `dlopen`ed library), a
//! const `thread_local!` `Cell` elsewhere; neither has a destructor.
//!
//! **Frames kept.** The innermost frames are umem's own (this hook, the
//! debug paths, `malloc`). When umem is a shared object of its own
//! (`libumem.so`), leading frames inside its text are dropped, so a stack
//! starts at the caller of `malloc`/`free`. Linked into a Rust program
//! (`Umem`), umem's code is part of the program's text and only the first
//! two frames (the capture itself) are dropped.

use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};

/// `_Unwind_Backtrace`'s callback result: keep going.
const URC_NO_REASON: i32 = 0;
/// `_Unwind_Backtrace`'s callback result: stop.
const URC_END_OF_STACK: i32 = 5;

type TraceFn = extern "C" fn(ctx: *mut c_void, arg: *mut c_void) -> i32;
type BacktraceFn = unsafe extern "C" fn(trace: TraceFn, arg: *mut c_void) -> i32;
type GetIpFn = unsafe extern "C" fn(ctx: *mut c_void) -> usize;

/// `_Unwind_Backtrace` and `_Unwind_GetIP` from libgcc_s (0 until loaded).
static BACKTRACE: AtomicUsize = AtomicUsize::new(0);
static GET_IP: AtomicUsize = AtomicUsize::new(0);
/// umem's own text, `[lo, hi)`, when umem is a shared object of its own
/// (leading frames inside it are dropped); `0, 0` otherwise.
static SELF_TEXT: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod guard_word {
    core::arch::global_asm!(
        ".pushsection .tbss.umem_global_capture_guard,\"awT\",@nobits",
        ".p2align 3",
        ".globl umem_global_capture_guard",
        ".hidden umem_global_capture_guard",
        ".type umem_global_capture_guard,@object",
        ".size umem_global_capture_guard,8",
        "umem_global_capture_guard:",
        ".zero 8",
        ".popsection",
    );

    #[inline(always)]
    pub(super) fn get() -> usize {
        let v: usize;
        // SAFETY: reads this thread's TLS word (its offset from the thread
        // pointer is in the GOT entry the linker made for the symbol's
        // @GOTTPOFF relocation).
        unsafe {
            core::arch::asm!(
                "mov {v}, qword ptr [rip + umem_global_capture_guard@GOTTPOFF]",
                "mov {v}, qword ptr fs:[{v}]",
                v = out(reg) v,
                options(nostack, readonly, preserves_flags),
            );
        }
        v
    }

    #[inline(always)]
    pub(super) fn set(x: usize) {
        // SAFETY: writes this thread's TLS word (see `get`).
        unsafe {
            core::arch::asm!(
                "mov {o}, qword ptr [rip + umem_global_capture_guard@GOTTPOFF]",
                "mov qword ptr fs:[{o}], {x}",
                o = out(reg) _,
                x = in(reg) x,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod guard_word {
    use core::cell::Cell;

    thread_local! {
        static GUARD: Cell<usize> = const { Cell::new(0) };
    }

    pub(super) fn get() -> usize {
        GUARD.with(|c| c.get())
    }

    pub(super) fn set(x: usize) {
        GUARD.with(|c| c.set(x))
    }
}

/// Runs `f` with this thread's capture guard set (see the module comment);
/// `None` when it is set already (a re-entrant call).
pub fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    if guard_word::get() != 0 {
        return None;
    }
    guard_word::set(1);
    let r = f();
    guard_word::set(0);
    Some(r)
}

/// Whether the unwinder is loaded (auditing records stacks).
pub fn unwinder_loaded() -> bool {
    BACKTRACE.load(Ordering::Acquire) != 0
}

/// Loads `libgcc_s.so.1`'s unwinder (once; later calls do nothing) and
/// installs the stack hook. Call with no umem lock held: `dlopen` allocates.
/// Without the library, audit records keep empty stacks and a warning says
/// so.
pub fn load_unwinder() {
    if unwinder_loaded() {
        return;
    }
    let done = guarded(|| {
        // SAFETY: a NUL-terminated name; dlopen and dlsym have no other
        // preconditions. The handle is kept for the life of the process.
        unsafe {
            let h = libc::dlopen(c"libgcc_s.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if h.is_null() {
                return false;
            }
            let bt = libc::dlsym(h, c"_Unwind_Backtrace".as_ptr());
            let ip = libc::dlsym(h, c"_Unwind_GetIP".as_ptr());
            if bt.is_null() || ip.is_null() {
                return false;
            }
            find_self_text();
            GET_IP.store(ip as usize, Ordering::Release);
            BACKTRACE.store(bt as usize, Ordering::Release);
        }
        true
    });
    match done {
        Some(true) => umem_slab::set_stack_hook(capture),
        Some(false) => crate::sys::warn(format_args!(
            "umem: UMEM_DEBUG=audit: cannot load libgcc_s.so.1's unwinder; audit records have no stacks\n"
        )),
        None => {}
    }
}

/// Notes umem's executable segment when umem is not part of the main
/// program (see the module comment).
fn find_self_text() {
    struct Find {
        me: usize,
        lo: usize,
        hi: usize,
    }
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _: usize, arg: *mut c_void) -> i32 {
        // SAFETY: dl_iterate_phdr hands a valid info record; `arg` is our `Find`.
        unsafe {
            let f = &mut *(arg as *mut Find);
            let i = &*info;
            let name = i.dlpi_name;
            let is_main = name.is_null() || *name == 0;
            let mut lo = usize::MAX;
            let mut hi = 0;
            let mut mine = false;
            for k in 0..i.dlpi_phnum as usize {
                let ph = &*i.dlpi_phdr.add(k);
                if ph.p_type != libc::PT_LOAD || ph.p_flags & libc::PF_X == 0 {
                    continue;
                }
                let s = i.dlpi_addr as usize + ph.p_vaddr as usize;
                let e = s + ph.p_memsz as usize;
                lo = lo.min(s);
                hi = hi.max(e);
                mine |= f.me >= s && f.me < e;
            }
            if mine {
                if !is_main {
                    f.lo = lo;
                    f.hi = hi;
                }
                return 1;
            }
            0
        }
    }
    let mut f = Find {
        me: capture as fn(&mut [usize]) -> usize as usize,
        lo: 0,
        hi: 0,
    };
    // SAFETY: the callback only reads the records it is given.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut f as *mut Find as *mut c_void) };
    SELF_TEXT[0].store(f.lo, Ordering::Relaxed);
    SELF_TEXT[1].store(f.hi, Ordering::Relaxed);
}

struct Walk<'a> {
    frames: &'a mut [usize],
    n: usize,
    /// Frames still to drop unconditionally.
    skip: usize,
    /// Still inside umem's own leading frames.
    leading: bool,
    lo: usize,
    hi: usize,
    get_ip: GetIpFn,
}

extern "C" fn trace(ctx: *mut c_void, arg: *mut c_void) -> i32 {
    // SAFETY: `arg` is the `Walk` that `capture` passed; `ctx` a live
    // unwind context.
    let w = unsafe { &mut *(arg as *mut Walk<'_>) };
    // SAFETY: as above.
    let pc = unsafe { (w.get_ip)(ctx) };
    if pc == 0 {
        return URC_END_OF_STACK;
    }
    if w.skip > 0 {
        w.skip -= 1;
        return URC_NO_REASON;
    }
    if w.leading && pc >= w.lo && pc < w.hi {
        return URC_NO_REASON;
    }
    w.leading = false;
    w.frames[w.n] = pc;
    w.n += 1;
    if w.n == w.frames.len() {
        URC_END_OF_STACK
    } else {
        URC_NO_REASON
    }
}

/// The stack hook: the calling thread's return addresses, callers of umem
/// first-innermost (see the module comment). Empty when re-entered or
/// before the unwinder is loaded.
pub fn capture(frames: &mut [usize]) -> usize {
    let bt = BACKTRACE.load(Ordering::Acquire);
    if bt == 0 || frames.is_empty() {
        return 0;
    }
    guarded(|| {
        // SAFETY: BACKTRACE and GET_IP hold the libgcc functions of those
        // names (stored in `load_unwinder`, GET_IP first).
        let (bt, get_ip) = unsafe {
            (
                core::mem::transmute::<usize, BacktraceFn>(bt),
                core::mem::transmute::<usize, GetIpFn>(GET_IP.load(Ordering::Acquire)),
            )
        };
        let lo = SELF_TEXT[0].load(Ordering::Relaxed);
        let hi = SELF_TEXT[1].load(Ordering::Relaxed);
        let mut w = Walk {
            frames,
            n: 0,
            skip: if lo == hi { 2 } else { 0 },
            leading: lo != hi,
            lo,
            hi,
            get_ip,
        };
        // SAFETY: `trace` matches the callback type and only uses `w`,
        // which outlives the call.
        unsafe { bt(trace, &mut w as *mut Walk<'_> as *mut c_void) };
        w.n
    })
    .unwrap_or(0)
}
