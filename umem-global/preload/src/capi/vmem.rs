//! `vmem_create`, `vmem_destroy`, `vmem_alloc`, `vmem_xalloc`, `vmem_free`,
//! `vmem_xfree`, `vmem_add`, `vmem_contains`, `vmem_walk`, `vmem_size`:
//! umem-vmem arenas for C.
//!
//! A `vmem_t *` is a [`CArena`] (allocated from umem): the arena and, when
//! it imports through C functions, the [`CSource`] that wraps them.
//!
//! **Sources.** `vmem_create(…, afunc, ffunc, source, …)`:
//! * `afunc` NULL: no source (the arena has only the spans it is given);
//! * `afunc == vmem_alloc` and `ffunc == vmem_free` (this library's own
//!   functions, the usual way to stack arenas) with a `source` arena: the
//!   parent [`Vmem`] itself is the source, with no C round trip (without
//!   a `source`: no source);
//! * any other pair: a [`CSource`] calls `afunc(source, size, VM_NOSLEEP)`
//!   to import and `ffunc(source, addr, size)` to release; its quantum is
//!   the `source` arena's (1 without one). A span it returns that is not
//!   aligned as the arena asked (only constrained `vmem_xalloc`s ask for
//!   more than the quantum) is given back and the import fails.
//!
//! **Flags.** Policy: `VM_BESTFIT`, `VM_FIRSTFIT`, `VM_NEXTFIT`, else
//! instant fit. What happens when the arena (and its source) cannot
//! satisfy a request:
//! * `VM_NOSLEEP`: NULL;
//! * `VM_PANIC` (with or without `VM_NOSLEEP`): the process aborts with a
//!   message naming the arena and the request — it does not wait;
//! * `VM_SLEEP` (0, the default): as libumem, the caller waits until
//!   it can be satisfied. In user space that means: reap (umem's caches
//!   and the arena's quantum caches), then sleep until another thread
//!   frees to or adds a span to any arena through this API (a futex on a
//!   free counter) or 50 ms pass, and try again, for ever. A single-threaded
//!   program whose request can never be met hangs, as it would under
//!   libumem; use `VM_NOSLEEP` to be told.
//!
//! `VM_PUSHPAGE`, `VM_ENDALLOC`, `VMC_IDENTIFIER`, `VMC_POPULATOR` and the
//! other kernel flags are accepted and ignored; `VMC_NO_QCACHE` turns off
//! quantum caches.
//!
//! **Misuse** (what libumem panics on): freeing what the arena did not
//! allocate or with another size, a constrained request that cannot make
//! sense (bad alignment, phase, nocross, address window), adding a span
//! that overlaps one or is misaligned, or a `vmem_t *` that is not a live
//! arena — the process aborts with a one-line message naming the call and
//! umem-vmem's precise error. `vmem_alloc`/`vmem_xalloc` of size 0 return
//! NULL.

use super::c_name;
use core::ffi::{c_char, c_int, c_void};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU32, Ordering};
use umem_global::preload_abi::sys;
use umem_vmem::{
    Addr, CreateFlags, Policy, SegType, SegTypes, Source, Vmem, VmemError, WalkMode, XAllocRequest,
};

/// `VM_NOSLEEP`.
pub const VM_NOSLEEP: c_int = 1;
/// `VM_PANIC`.
pub const VM_PANIC: c_int = 2;
/// `VM_BESTFIT`.
pub const VM_BESTFIT: c_int = 0x100;
/// `VM_FIRSTFIT`.
pub const VM_FIRSTFIT: c_int = 0x200;
/// `VM_NEXTFIT`.
pub const VM_NEXTFIT: c_int = 0x400;
/// `VMC_NO_QCACHE`.
pub const VMC_NO_QCACHE: c_int = 0x0002_0000;
/// `VMEM_ALLOC`.
pub const VMEM_ALLOC: c_int = 0x01;
/// `VMEM_FREE`.
pub const VMEM_FREE: c_int = 0x02;
/// `VMEM_SPAN`.
pub const VMEM_SPAN: c_int = 0x10;
/// `VMEM_REENTRANT`.
pub const VMEM_REENTRANT: c_int = 0x8000_0000_u32 as c_int;

/// `vmem_alloc_t`.
pub type AllocFn = unsafe extern "C" fn(*mut c_void, usize, c_int) -> *mut c_void;
/// `vmem_free_t`.
pub type FreeFn = unsafe extern "C" fn(*mut c_void, *mut c_void, usize);
/// `vmem_walk`'s callback.
pub type WalkFn = unsafe extern "C" fn(*mut c_void, *mut c_void, usize);

const LIVE: u64 = 0x756d_656d_766d_656d; // "umemvmem"
const DEAD: u64 = 0x6465_6164_766d_656d; // "deadvmem"

/// What a `vmem_t *` points at.
pub struct CArena {
    magic: u64,
    pub(crate) vm: &'static Vmem,
    /// The C source this arena imports through (null if none, or if it
    /// imports from its parent directly).
    src: *mut CSource,
}

/// A C `afunc`/`ffunc` pair as a [`Source`].
pub struct CSource {
    afunc: AllocFn,
    ffunc: Option<FreeFn>,
    /// The `source` argument of `vmem_create`, handed back to the functions.
    arg: *mut c_void,
    quantum: usize,
}

// SAFETY: the C functions are promised (by vmem_create's contract, as in
// libumem) to be callable from any thread; `arg` is only passed back to them.
unsafe impl Sync for CSource {}

impl Source for CSource {
    fn import(&self, size: usize, align: usize) -> Option<Addr> {
        // SAFETY: a C function of type vmem_alloc_t, given its own argument.
        let p = unsafe { (self.afunc)(self.arg, size, VM_NOSLEEP) };
        if p.is_null() {
            return None;
        }
        if align > 1 && (p as usize) & (align - 1) != 0 {
            self.release(p as usize, size);
            return None;
        }
        Some(p as usize)
    }

    fn release(&self, addr: Addr, size: usize) {
        if let Some(f) = self.ffunc {
            // SAFETY: a C function of type vmem_free_t, given a span its
            // afunc returned, whole.
            unsafe { f(self.arg, addr as *mut c_void, size) }
        }
    }

    fn quantum(&self) -> usize {
        self.quantum
    }
}

/// The live arena behind a `vmem_t *`, or an abort naming `func`.
///
/// # Safety
/// `vmp` is NULL or points at readable memory of at least a `CArena` (any
/// pointer umem handed out as a `vmem_t *` qualifies, destroyed or not).
pub(crate) unsafe fn arena_of<'a>(func: &str, vmp: *mut c_void) -> &'a CArena {
    let a = vmp as *const CArena;
    // SAFETY: by the caller; the magic word is read first.
    if a.is_null() || unsafe { (*a).magic } != LIVE {
        sys::fatal(format_args!(
            "umem: {func}(): {vmp:p} is not a live vmem_t (never created, or destroyed)"
        ));
    }
    // SAFETY: checked above.
    unsafe { &*a }
}

fn policy_of(vmflag: c_int) -> Policy {
    if vmflag & VM_BESTFIT != 0 {
        Policy::BestFit
    } else if vmflag & VM_FIRSTFIT != 0 {
        Policy::FirstFit
    } else if vmflag & VM_NEXTFIT != 0 {
        Policy::NextFit
    } else {
        Policy::InstantFit
    }
}

// ------------------------------------------------------------- VM_SLEEP --

/// Bumped by every free and span addition made through this API; sleepers
/// wait on it.
static FREE_GEN: AtomicU32 = AtomicU32::new(0);
/// Threads sleeping in `wait_for_free`.
static SLEEPERS: AtomicU32 = AtomicU32::new(0);

fn freed() {
    FREE_GEN.fetch_add(1, Ordering::Release);
    if SLEEPERS.load(Ordering::Acquire) != 0 {
        // SAFETY: a futex wake on a live, aligned u32; no memory is touched.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                FREE_GEN.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
            )
        };
    }
}

/// Sleeps until `FREE_GEN` moves past `seen` or 50 ms pass.
fn wait_for_free(seen: u32) {
    SLEEPERS.fetch_add(1, Ordering::AcqRel);
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 50_000_000,
    };
    // SAFETY: a futex wait on a live, aligned u32 with a valid timeout; it
    // returns at once if the value is no longer `seen`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            FREE_GEN.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            seen,
            &ts as *const libc::timespec,
        )
    };
    SLEEPERS.fetch_sub(1, Ordering::AcqRel);
}

/// Runs `attempt` under the vmflag failure policy (see the module docs);
/// `what` describes the call for messages.
fn with_policy(
    a: &CArena,
    vmflag: c_int,
    what: &dyn Fn() -> (&'static str, usize),
    attempt: &dyn Fn() -> Result<Addr, VmemError>,
) -> *mut c_void {
    let mut reaped = false;
    loop {
        let seen = FREE_GEN.load(Ordering::Acquire);
        match attempt() {
            Ok(addr) => return addr as *mut c_void,
            Err(VmemError::ZeroSize) => return null_mut(),
            // A window too small for the request is no misuse: nothing in
            // it fits (libumem fails or waits, as when the arena is full).
            Err(
                e @ (VmemError::Exhausted { .. }
                | VmemError::NoMetadata
                | VmemError::BadAddrRange { .. }),
            ) if !matches!(e, VmemError::BadAddrRange { minaddr, maxaddr, .. } if minaddr >= maxaddr) =>
            {
                if !reaped {
                    reaped = true;
                    umem_global::reap();
                    a.vm.reap();
                    continue;
                }
                let (func, size) = what();
                if vmflag & VM_PANIC != 0 {
                    sys::fatal(format_args!(
                        "umem: {func}(arena '{}', size {size:#x}, flags {vmflag:#x}) failed (VM_PANIC): {e}",
                        a.vm.name()
                    ));
                }
                if vmflag & VM_NOSLEEP != 0 {
                    return null_mut();
                }
                wait_for_free(seen);
            }
            Err(e) => {
                let (func, size) = what();
                sys::fatal(format_args!(
                    "umem: {func}(arena '{}', size {size:#x}, flags {vmflag:#x}): {e}",
                    a.vm.name()
                ))
            }
        }
    }
}

// ------------------------------------------------------------ the calls --

/// `vmem_create(name, base, size, quantum, afunc, ffunc, source,
/// qcache_max, vmflag)`: NULL (errno `EINVAL` or `ENOMEM`) on failure,
/// an abort with `VM_PANIC`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `afunc`/`ffunc` are NULL or C
/// functions of the documented types callable from any thread; `source` is
/// NULL or a live `vmem_t *` (it is passed to `afunc`/`ffunc`); `[base,
/// base + size)` is the caller's to give.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn vmem_create(
    name: *const c_char,
    base: *mut c_void,
    size: usize,
    quantum: usize,
    afunc: Option<AllocFn>,
    ffunc: Option<FreeFn>,
    source: *mut c_void,
    qcache_max: usize,
    vmflag: c_int,
) -> *mut c_void {
    // SAFETY: by the caller.
    let name = unsafe { c_name(name) };
    let parent = if source.is_null() {
        None
    } else {
        // SAFETY: by the caller.
        Some(unsafe { arena_of("vmem_create", source) })
    };
    let own_pair = afunc.map(|f| f as usize) == Some(vmem_alloc as AllocFn as usize)
        && ffunc.map(|f| f as usize) == Some(vmem_free as FreeFn as usize);
    let mut csrc: *mut CSource = null_mut();
    let src: Option<&'static dyn Source> = match (afunc, parent) {
        (None, _) => None,
        (Some(_), Some(p)) if own_pair => Some(p.vm),
        // The idiom without a parent: nothing to import from.
        (Some(_), None) if own_pair => None,
        (Some(f), _) => {
            csrc = Box::into_raw(Box::new(CSource {
                afunc: f,
                ffunc,
                arg: source,
                quantum: parent.map_or(1, |p| p.vm.quantum()),
            }));
            // SAFETY: freed only by vmem_destroy, after the arena is gone.
            Some(unsafe { &*csrc })
        }
    };
    let span = (size != 0).then_some((base as Addr, size));
    let mut flags = CreateFlags::NONE;
    if vmflag & VMC_NO_QCACHE != 0 {
        flags = flags | CreateFlags::NO_QCACHE;
    }
    if qcache_max != 0 {
        // Quantum caches are umem-slab caches: its factory must be in place.
        umem_slab::init();
    }
    match Vmem::create(name, span, quantum, src, qcache_max, flags) {
        Ok(vm) => Box::into_raw(Box::new(CArena {
            magic: LIVE,
            vm,
            src: csrc,
        }))
        .cast(),
        Err(e) => {
            if !csrc.is_null() {
                // SAFETY: no arena was made with it.
                drop(unsafe { Box::from_raw(csrc) });
            }
            if vmflag & VM_PANIC != 0 {
                sys::fatal(format_args!("umem: vmem_create('{name}'): {e}"));
            }
            sys::set_errno(match e {
                VmemError::NoMetadata => libc::ENOMEM,
                _ => libc::EINVAL,
            });
            null_mut()
        }
    }
}

/// `vmem_destroy(vmp)`: what is still allocated is reported and leaked.
///
/// # Safety
/// `vmp` is a live `vmem_t *` that no thread uses during or after the call
/// and that no other arena imports from.
#[no_mangle]
pub unsafe extern "C" fn vmem_destroy(vmp: *mut c_void) {
    // SAFETY: by the caller.
    let a = unsafe { arena_of("vmem_destroy", vmp) };
    let (vm, src) = (a.vm, a.src);
    let name = vm.name();
    let mut nb = umem_vmem::diag::StackStr::<64>::new();
    let _ = core::fmt::Write::write_str(&mut nb, name);
    // SAFETY: by the caller, nobody uses the arena any more.
    let leaked = unsafe { vm.destroy() };
    if leaked != 0 {
        sys::warn(format_args!(
            "umem: vmem_destroy('{}'): leaked {leaked:#x} units\n",
            nb.as_str()
        ));
    }
    let cp = vmp as *mut CArena;
    // SAFETY: the arena is gone, so nothing refers to its source or to the
    // wrapper; both came from Box::into_raw.
    unsafe {
        (*cp).magic = DEAD;
        if !src.is_null() {
            drop(Box::from_raw(src));
        }
        drop(Box::from_raw(cp));
    }
}

/// `vmem_alloc(vmp, size, vmflag)`.
///
/// # Safety
/// `vmp` is a live `vmem_t *`.
#[no_mangle]
pub unsafe extern "C" fn vmem_alloc(vmp: *mut c_void, size: usize, vmflag: c_int) -> *mut c_void {
    // SAFETY: by the caller.
    let a = unsafe { arena_of("vmem_alloc", vmp) };
    let policy = policy_of(vmflag);
    with_policy(a, vmflag, &|| ("vmem_alloc", size), &|| {
        a.vm.alloc(size, policy)
    })
}

/// `vmem_xalloc(vmp, size, align, phase, nocross, minaddr, maxaddr,
/// vmflag)`: `align` 0 means the quantum; `minaddr`/`maxaddr` NULL mean no
/// bound (`maxaddr` is exclusive).
///
/// # Safety
/// `vmp` is a live `vmem_t *`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn vmem_xalloc(
    vmp: *mut c_void,
    size: usize,
    align: usize,
    phase: usize,
    nocross: usize,
    minaddr: *mut c_void,
    maxaddr: *mut c_void,
    vmflag: c_int,
) -> *mut c_void {
    // SAFETY: by the caller.
    let a = unsafe { arena_of("vmem_xalloc", vmp) };
    let mut req = XAllocRequest::new(size)
        .align(align)
        .phase(phase)
        .nocross(nocross)
        .policy(policy_of(vmflag));
    if !minaddr.is_null() {
        req = req.minaddr(minaddr as Addr);
    }
    if !maxaddr.is_null() {
        req = req.maxaddr(maxaddr as Addr);
    }
    with_policy(a, vmflag, &|| ("vmem_xalloc", size), &|| a.vm.xalloc(&req))
}

#[cold]
fn bad_free(func: &str, a: &CArena, addr: *mut c_void, size: usize, e: VmemError) -> ! {
    sys::fatal(format_args!(
        "umem: {func}(arena '{}', {addr:p}, {size:#x}): {e}",
        a.vm.name()
    ))
}

/// `vmem_free(vmp, addr, size)`: `size` must be the size allocated.
///
/// # Safety
/// `vmp` is a live `vmem_t *`.
#[no_mangle]
pub unsafe extern "C" fn vmem_free(vmp: *mut c_void, addr: *mut c_void, size: usize) {
    // SAFETY: by the caller.
    let a = unsafe { arena_of("vmem_free", vmp) };
    if let Err(e) = a.vm.free(addr as Addr, size) {
        bad_free("vmem_free", a, addr, size, e);
    }
    freed();
}

/// `vmem_xfree(vmp, addr, size)`, for `vmem_xalloc` segments.
///
/// # Safety
/// `vmp` is a live `vmem_t *`.
#[no_mangle]
pub unsafe extern "C" fn vmem_xfree(vmp: *mut c_void, addr: *mut c_void, size: usize) {
    // SAFETY: by the caller.
    let a = unsafe { arena_of("vmem_xfree", vmp) };
    if let Err(e) = a.vm.xfree(addr as Addr, size) {
        bad_free("vmem_xfree", a, addr, size, e);
    }
    freed();
}

/// `vmem_add(vmp, addr, size, vmflag)`: adds a span; returns `addr`, or
/// NULL when vmem has no memory for its bookkeeping (an abort with
/// `VM_PANIC`).
///
/// # Safety
/// `vmp` is a live `vmem_t *`; the span is the caller's to give.
#[no_mangle]
pub unsafe extern "C" fn vmem_add(
    vmp: *mut c_void,
    addr: *mut c_void,
    size: usize,
    vmflag: c_int,
) -> *mut c_void {
    // SAFETY: by the caller.
    let a = unsafe { arena_of("vmem_add", vmp) };
    match a.vm.add(addr as Addr, size) {
        Ok(x) => {
            freed();
            x as *mut c_void
        }
        Err(VmemError::NoMetadata) if vmflag & VM_PANIC == 0 => null_mut(),
        Err(e) => sys::fatal(format_args!(
            "umem: vmem_add(arena '{}', {addr:p}, {size:#x}): {e}",
            a.vm.name()
        )),
    }
}

/// `vmem_contains(vmp, addr, size)`: 1 if the range lies in one span.
///
/// # Safety
/// `vmp` is a live `vmem_t *`.
#[no_mangle]
pub unsafe extern "C" fn vmem_contains(vmp: *mut c_void, addr: *mut c_void, size: usize) -> c_int {
    // SAFETY: by the caller.
    let a = unsafe { arena_of("vmem_contains", vmp) };
    a.vm.contains(addr as Addr, size) as c_int
}

fn seg_types(typemask: c_int, spans: bool) -> SegTypes {
    let mut t = SegTypes::default();
    if typemask & VMEM_ALLOC != 0 {
        t = t | SegTypes::ALLOC;
    }
    if typemask & VMEM_FREE != 0 {
        t = t | SegTypes::FREE;
    }
    if spans && typemask & VMEM_SPAN != 0 {
        t = t | SegTypes::SPAN;
    }
    t
}

/// `vmem_walk(vmp, typemask, func, arg)`: `func(arg, start, size)` for each
/// segment of the types in `typemask` (`VMEM_ALLOC`, `VMEM_FREE`,
/// `VMEM_SPAN`), in address order. Without `VMEM_REENTRANT` the arena
/// stays locked and `func` must not call into it; with it, `func` may.
///
/// # Safety
/// `vmp` is a live `vmem_t *`; `func` is a C function of the documented type.
#[no_mangle]
pub unsafe extern "C" fn vmem_walk(
    vmp: *mut c_void,
    typemask: c_int,
    func: Option<WalkFn>,
    arg: *mut c_void,
) {
    // SAFETY: by the caller.
    let a = unsafe { arena_of("vmem_walk", vmp) };
    let Some(func) = func else { return };
    let mode = if typemask & VMEM_REENTRANT != 0 {
        WalkMode::Reentrant
    } else {
        WalkMode::Locked
    };
    a.vm.walk(
        seg_types(typemask, true),
        mode,
        &mut |_t: SegType, start: Addr, len: usize| {
            // SAFETY: the caller's C callback with its own argument.
            unsafe { func(arg, start as *mut c_void, len) }
        },
    );
}

/// `vmem_size(vmp, typemask)`: the units allocated (`VMEM_ALLOC`), free
/// (`VMEM_FREE`), or both (the arena's total), as libumem (other bits are
/// ignored).
///
/// # Safety
/// `vmp` is a live `vmem_t *`.
#[no_mangle]
pub unsafe extern "C" fn vmem_size(vmp: *mut c_void, typemask: c_int) -> usize {
    // SAFETY: by the caller.
    let a = unsafe { arena_of("vmem_size", vmp) };
    let t = seg_types(typemask, false);
    if t == SegTypes::default() {
        return 0;
    }
    a.vm.size(t)
}
