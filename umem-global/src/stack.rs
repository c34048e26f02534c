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

/// Whether this thread is capturing a stack or loading the unwinder now:
/// an allocation made meanwhile is umem's own (`dlopen`'s, the
/// unwinder's), which `mtbf` must not fail (`fault.rs`).
pub fn capturing() -> bool {
    guard_word::get() != 0
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
            let find_fde = libc::dlsym(h, c"_Unwind_Find_FDE".as_ptr());
            if !find_fde.is_null() {
                crate::cfi::set_find_fde(find_fde as usize);
            }
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
}

impl Walk<'_> {
    /// Takes the next frame's address; `false` when the stack is full.
    fn push(&mut self, pc: usize) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            return true;
        }
        if self.leading && pc >= self.lo && pc < self.hi {
            return true;
        }
        self.leading = false;
        self.frames[self.n] = pc;
        self.n += 1;
        self.n < self.frames.len()
    }
}

/// What `_Unwind_Backtrace` calls for each frame: a `Walk` and libgcc's
/// `_Unwind_GetIP`.
struct Trace<'a, 'b> {
    walk: &'a mut Walk<'b>,
    get_ip: GetIpFn,
}

extern "C" fn trace(ctx: *mut c_void, arg: *mut c_void) -> i32 {
    // SAFETY: `arg` is the `Trace` that `capture` passed; `ctx` a live
    // unwind context.
    let t = unsafe { &mut *(arg as *mut Trace<'_, '_>) };
    // SAFETY: as above.
    let pc = unsafe { (t.get_ip)(ctx) };
    if pc == 0 || !t.walk.push(pc) {
        URC_END_OF_STACK
    } else {
        URC_NO_REASON
    }
}

/// The fast walk (`cfi.rs`): steps from this function's own frame by the
/// cached CFI rules. `false` when a frame needs a rule it does not follow
/// (then libgcc walks the stack instead).
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn fast_walk(w: &mut Walk<'_>) -> bool {
    use crate::cfi::{rule_for, Step};
    let (mut pc, mut sp, mut rbp): (usize, usize, usize);
    // SAFETY: reads the instruction pointer, stack pointer and frame
    // register; no memory is touched.
    unsafe {
        core::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc,
            sp = out(reg) sp,
            bp = out(reg) rbp,
            options(nomem, nostack, preserves_flags),
        );
    }
    let mut first = true;
    for _ in 0..512 {
        // A return address is looked up one byte back, in its call.
        let step = rule_for(if first { pc } else { pc - 1 });
        first = false;
        let Step::Frame {
            cfa_rbp,
            cfa_off,
            rbp_off,
        } = step
        else {
            return step == Step::End;
        };
        let cfa = if cfa_rbp { rbp } else { sp }.wrapping_add(cfa_off as usize);
        if cfa <= sp || cfa - sp > 64 << 20 || cfa % 8 != 0 {
            return true; // not a sane frame: stop here
        }
        // SAFETY: by the frame's CFI (exact rules only, `cfi.rs`), the
        // return address is at CFA - 8 and the caller's rbp at CFA +
        // rbp_off, both in this thread's live stack.
        unsafe {
            pc = *((cfa - 8) as *const usize);
            if let Some(o) = rbp_off {
                rbp = *(cfa.wrapping_add_signed(o as isize) as *const usize);
            }
        }
        sp = cfa;
        if pc == 0 || !w.push(pc) {
            return true;
        }
    }
    true
}

#[cfg(not(target_arch = "x86_64"))]
fn fast_walk(_: &mut Walk<'_>) -> bool {
    false
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
        let skip = if lo == hi { 2 } else { 0 };
        let mut w = Walk {
            frames,
            n: 0,
            skip,
            leading: lo != hi,
            lo,
            hi,
        };
        if crate::cfi::available() && {
            crate::cfi::check_loaded_objects();
            fast_walk(&mut w)
        } {
            return w.n;
        }
        w.n = 0;
        w.skip = skip;
        w.leading = lo != hi;
        let mut t = Trace {
            walk: &mut w,
            get_ip,
        };
        // SAFETY: `trace` matches the callback type and only uses `t`,
        // which outlives the call.
        unsafe { bt(trace, &mut t as *mut Trace<'_, '_> as *mut c_void) };
        w.n
    })
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libgcc's walk from here (its first frame is this function).
    #[inline(never)]
    fn slow_walk(w: &mut Walk<'_>) {
        // SAFETY: as in `capture`.
        let (bt, get_ip) = unsafe {
            (
                core::mem::transmute::<usize, BacktraceFn>(BACKTRACE.load(Ordering::Acquire)),
                core::mem::transmute::<usize, GetIpFn>(GET_IP.load(Ordering::Acquire)),
            )
        };
        let mut t = Trace { walk: w, get_ip };
        // SAFETY: as in `capture`.
        unsafe { bt(trace, &mut t as *mut Trace<'_, '_> as *mut c_void) };
    }

    fn walk<'a>(frames: &'a mut [usize]) -> Walk<'a> {
        Walk {
            frames,
            n: 0,
            skip: 0,
            leading: false,
            lo: 0,
            hi: 0,
        }
    }

    /// Both walks from one function: (fast, slow) frames.
    #[inline(never)]
    fn both(out: &mut Vec<(Vec<usize>, Vec<usize>)>) {
        let mut f = [0usize; 64];
        let mut s = [0usize; 64];
        let mut wf = walk(&mut f);
        assert!(fast_walk(&mut wf), "a rule the fast walk does not follow");
        let nf = wf.n;
        let mut ws = walk(&mut s);
        slow_walk(&mut ws);
        let ns = ws.n;
        out.push((f[..nf].to_vec(), s[..ns].to_vec()));
    }

    #[inline(never)]
    fn deep(n: usize, out: &mut Vec<(Vec<usize>, Vec<usize>)>) -> usize {
        let mut local = [n; 40];
        core::hint::black_box(&mut local);
        if n == 0 {
            both(out);
            return local[3];
        }
        let r = if n % 3 == 0 {
            deep(n - 1, out)
        } else {
            deep_other(n - 1, out)
        };
        r + core::hint::black_box(local[n % 40])
    }

    #[inline(never)]
    fn deep_other(n: usize, out: &mut Vec<(Vec<usize>, Vec<usize>)>) -> usize {
        let v: Vec<u8> = vec![n as u8; n * 100 + 1];
        core::hint::black_box(&v);
        deep(n, out) + v.len()
    }

    #[test]
    fn fast_walk_agrees_with_libgcc() {
        load_unwinder();
        assert!(unwinder_loaded() && crate::cfi::available());
        let mut out = Vec::new();
        deep(9, &mut out);
        std::thread::spawn(move || {
            deep(5, &mut out);
            for (fast, slow) in &out {
                // The fast walk starts at `both`'s call of it, libgcc at
                // `slow_walk` and then `both`'s call of that: from the
                // caller of `both` on they must agree, to the end.
                assert!(fast.len() > 10, "{fast:x?}");
                assert_eq!(fast[1..], slow[2..], "fast {fast:x?}\nslow {slow:x?}");
            }
        })
        .join()
        .unwrap();
    }
}
