//! Initialisation (libumem's `umem_init`): building the arena tree on the
//! first allocation, with no outside allocator, and what runs right after.
//!
//! The state machine is in `arenas.rs` (`UNINIT → BUSY → READY`, or
//! `FAILED`). The thread that wins the race builds the tree; other threads
//! wait. A call that re-enters `malloc` from the initialising thread (a libc
//! routine that allocates) gets `false` from [`ensure_init`] and is served
//! by the static bootstrap arena (`boot.rs`).

use crate::arenas::{self, ARENAS, BUSY, FAILED, INIT_OWNER, READY, STATE, UNINIT};
use crate::fork;
use crate::magazines;
use crate::options;
use crate::region;
use crate::source;
use crate::sys::PAGE;
use core::sync::atomic::Ordering;
use umem_vmem::{CreateFlags, Source, Vmem};

#[inline]
fn self_id() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// Makes sure the tree is built. `false` when the caller is the thread that
/// is building it (a re-entrant call: use the bootstrap arena) or when
/// initialisation failed.
#[cold]
#[inline(never)]
pub fn ensure_init() -> bool {
    loop {
        match STATE.load(Ordering::Acquire) {
            READY => return true,
            FAILED => return false,
            BUSY => {
                if INIT_OWNER.load(Ordering::Relaxed) == self_id() {
                    return false;
                }
                // SAFETY: no preconditions.
                unsafe { libc::sched_yield() };
            }
            _ => {
                if STATE
                    .compare_exchange(UNINIT, BUSY, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    INIT_OWNER.store(self_id(), Ordering::Relaxed);
                    let ok = build_tree();
                    STATE.store(if ok { READY } else { FAILED }, Ordering::Release);
                    if ok {
                        after_init();
                    }
                    return ok;
                }
            }
        }
    }
}

/// Reads the options and builds the tree's fixed part: vmem's and
/// umem-slab's internal arenas, `umem_default`, the class region,
/// `umem_oversize` and `umem_memalign`. The classes come later, each on its
/// first allocation (`caches.rs`).
fn build_tree() -> bool {
    options::read_env();
    // PAGE is a constant (the hit paths shift by it); a system whose pages do
    // not divide it cannot be served.
    if PAGE % umem_vmem::page_size() != 0 {
        crate::sys::fatal(format_args!(
            "umem: the system page size {} does not divide umem's page-map granule {PAGE}",
            umem_vmem::page_size()
        ));
    }
    // The heap's source: ours, unless someone built vmem's tree first.
    let _ = umem_vmem::init(&source::PAGES, PAGE);
    magazines::choose();
    umem_slab::init();
    crate::caches::init_slab_watch();
    if crate::debug_options::debug_path() {
        umem_slab::set_debug_report_hook(crate::debug_report::slab_hook);
        crate::umem_log::init();
    }
    let heap: &'static dyn Source = umem_vmem::heap();
    let Ok(default) = Vmem::create(
        "umem_default",
        None,
        PAGE,
        Some(heap),
        0,
        CreateFlags::NO_QCACHE,
    ) else {
        return false;
    };
    arenas::publish(&ARENAS.default, default);
    if !options::NOREGION.load(Ordering::Relaxed) {
        region::reserve();
    }
    let pages: &'static dyn Source = &source::PAGES;
    for (name, slot) in [
        ("umem_oversize", &ARENAS.oversize),
        ("umem_memalign", &ARENAS.memalign),
    ] {
        let Ok(a) = Vmem::create(name, None, PAGE, Some(pages), 0, CreateFlags::NO_QCACHE) else {
            return false;
        };
        arenas::publish(slot, a);
    }
    // The periodic update (`umem_update`: working-set reaping, magazine
    // resize, hash rescale of caches and arenas) runs inline on umem-slab's
    // alloc slow paths every `reap_interval`; no thread is created.
    // After each update, discard the free memory of umem's own arenas
    // (`reclaim.rs`).
    umem_slab::set_update_hook(crate::reclaim::after_update);
    umem_slab::set_update_interval_ms(
        options::REAP_INTERVAL_NS.load(Ordering::Relaxed) / 1_000_000,
    );
    true
}

/// Runs once, right after READY, on the initialising thread: things that may
/// call back into malloc (registering the fork handlers).
fn after_init() {
    extern "C" fn prepare() {
        fork::prefork();
    }
    extern "C" fn parent() {
        // SAFETY: follows `prefork` in the same thread.
        unsafe { fork::postfork_parent() };
    }
    extern "C" fn child() {
        // SAFETY: the child of a fork whose prepare handler ran `prefork`.
        unsafe { fork::postfork_child() };
    }
    // SAFETY: registering plain extern "C" functions.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if options::AUDIT.load(Ordering::Relaxed) {
        // The unwinder is loaded here, outside every umem lock (dlopen
        // allocates), and only with auditing on (`stack.rs`).
        umem_slab::set_error_hook(crate::symbolize::error_hook);
        // The debug reports (`debug_report.rs`) print the same history.
        crate::debug_report::set_stacks_printer(crate::symbolize::report_stacks);
        crate::stack::load_unwinder();
    }
}
