//! Building vmem's internal arenas (`vmem_init`): the static early arenas
//! and the init state, [`init`], the lazy build of the `std` feature
//! (`ensure_init`), and [`heap`].
//!
//! The tree is built from static storage, because building an arena
//! already needs segment structures and an arena structure: the 128 static
//! segment structures stock the global list (`segpool.rs`), and the first
//! five arenas (`heap`, `vmem_internal`, `vmem_seg`, `vmem_hash`,
//! `vmem_vmem`) are built in a static array that then becomes five
//! allocations of `vmem_vmem`, as in vmem.c. Each arena is published in
//! `internal.rs` as soon as it exists. This file uses arena creation
//! (`arena/create.rs`); the public `Vmem::create` uses this file.

use crate::arena::create::CreateArgs;
use crate::arena::Vmem;
use crate::diag::vmem_fatal;
use crate::error::VmemError;
use crate::internal::{heap_arena, publish, HASH_ARENA, HEAP, SEG_ARENA, VMEM_ARENA};
use crate::segpool::stock_static_segs;
use crate::source::Source;
use crate::sync::BootCell;
use crate::types::{Addr, CreateFlags, Policy, XAllocRequest};
use core::mem::{size_of, MaybeUninit};
use core::ptr;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

// -------------------------------------------------------------------------
// The static early arenas and the init state
// -------------------------------------------------------------------------

/// Statically allocated arenas: heap, vmem_internal, vmem_seg, vmem_hash,
/// vmem_vmem.
const VMEM_INITIAL: usize = 5;
/// vmem_internal imports at least this many pages at a time.
const INTERNAL_IMPORT_PAGES: usize = 16;
/// Wholly free imported spans `heap` keeps instead of giving them back to
/// the page source at once (hysteresis); [`update`](crate::update) gives
/// them back.
pub const HEAP_RETAIN: usize = 4 << 20;

#[repr(C, align(64))]
struct StaticArenas([MaybeUninit<Vmem>; VMEM_INITIAL]);

static VMEM0: BootCell<StaticArenas> = BootCell::new(StaticArenas(
    [const { MaybeUninit::uninit() }; VMEM_INITIAL],
));

/// The init states: nothing built, being built (by one thread), ready.
const UNBUILT: u8 = 0;
const BUILDING: u8 = 1;
const READY: u8 = 2;
static INIT_STATE: AtomicU8 = AtomicU8::new(UNBUILT);
/// What `init` was called with (written while `BUILDING`).
static INIT_SOURCE: BootCell<Option<&'static dyn Source>> = BootCell::new(None);
static INIT_PAGE: AtomicUsize = AtomicUsize::new(0);

// -------------------------------------------------------------------------
// init and the lazy build
// -------------------------------------------------------------------------

/// Build the tree if the `std` feature allows it, else report.
pub(crate) fn ensure_init() -> Result<(), VmemError> {
    if INIT_STATE.load(Ordering::Acquire) == READY {
        return Ok(());
    }
    #[cfg(feature = "std")]
    {
        init(&crate::mmap::MMAP_SOURCE, crate::sys::page_size()).or_else(|e| {
            if e == VmemError::AlreadyInitialized {
                Ok(())
            } else {
                Err(e)
            }
        })
    }
    #[cfg(not(feature = "std"))]
    {
        if INIT_STATE.load(Ordering::Acquire) == BUILDING {
            wait_ready();
            return Ok(());
        }
        Err(VmemError::NotInitialized)
    }
}

fn wait_ready() {
    while INIT_STATE.load(Ordering::Acquire) != READY {
        core::hint::spin_loop();
    }
}

/// Build the internal arena tree on `heap_source` (which must hand out
/// readable, writable memory aligned to `page_size`).
///
/// Idempotent: a second call with the same source and page size returns
/// `Ok`; with another, `Err(AlreadyInitialized)`.
pub fn init(heap_source: &'static dyn Source, page_size: usize) -> Result<(), VmemError> {
    if page_size == 0 || !page_size.is_power_of_two() {
        return Err(VmemError::BadPageSize { page_size });
    }
    match INIT_STATE.compare_exchange(UNBUILT, BUILDING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // SAFETY: the state `BUILDING` gives this thread exclusive use
            // of the bootstrap statics until it stores `READY`.
            unsafe { build(heap_source, page_size) };
            INIT_STATE.store(READY, Ordering::Release);
            Ok(())
        }
        Err(_) => {
            wait_ready();
            // SAFETY: written once before `READY` was published.
            let src = unsafe { *INIT_SOURCE.get() };
            let same = src.is_some_and(|s| ptr::addr_eq(s as *const dyn Source, heap_source));
            if same && INIT_PAGE.load(Ordering::Relaxed) == page_size {
                Ok(())
            } else {
                Err(VmemError::AlreadyInitialized)
            }
        }
    }
}

// -------------------------------------------------------------------------
// Building the tree
// -------------------------------------------------------------------------

/// Build the five internal arenas on `src`.
///
/// # Safety
/// Called once, by the thread that moved the init state to `BUILDING`.
unsafe fn build(src: &'static dyn Source, page: usize) {
    // SAFETY: exclusive during the build (the contract).
    unsafe {
        *INIT_SOURCE.get() = Some(src);
        INIT_PAGE.store(page, Ordering::Relaxed);
        stock_static_segs(page);
    }
    let slot = |i: usize| -> *mut Vmem {
        // SAFETY: VMEM0 slots are used once each, here, during the build.
        unsafe { (*VMEM0.get()).0[i].as_mut_ptr() }
    };
    let mk = |name: &str, q: usize, source: Option<&'static dyn Source>, flags, i, import_min| {
        match Vmem::create_common(CreateArgs {
            name,
            span: None,
            quantum: q,
            source,
            qcache_max: 0,
            flags,
            mem: Some(slot(i)),
            import_min,
            retain: if i == 0 { HEAP_RETAIN } else { 0 },
        }) {
            Ok(v) => v,
            Err(e) => vmem_fatal(format_args!("cannot create internal arena {name}: {e}")),
        }
    };
    let heap = mk(
        "heap",
        page,
        Some(src),
        CreateFlags::POPULATOR,
        0,
        INTERNAL_IMPORT_PAGES * page,
    );
    publish(&HEAP, heap);
    let internal = mk(
        "vmem_internal",
        page,
        Some(heap),
        CreateFlags::POPULATOR,
        1,
        INTERNAL_IMPORT_PAGES * page,
    );
    let seg = mk(
        "vmem_seg",
        page,
        Some(internal),
        CreateFlags::POPULATOR,
        2,
        0,
    );
    publish(&SEG_ARENA, seg);
    let hash = mk("vmem_hash", 8, Some(internal), CreateFlags::NONE, 3, 0);
    publish(&HASH_ARENA, hash);
    let vmem = mk("vmem_vmem", 64, Some(internal), CreateFlags::NONE, 4, 0);
    // The static arenas become allocations of vmem_vmem, as in vmem.c.
    let base = slot(0) as Addr;
    let sz = size_of::<Vmem>();
    if let Err(e) = vmem.add(base, sz * VMEM_INITIAL) {
        vmem_fatal(format_args!("vmem_vmem bootstrap span: {e}"));
    }
    for i in 0..VMEM_INITIAL {
        let want = base + i * sz;
        let r = vmem.xalloc(
            &XAllocRequest::new(sz)
                .align(64)
                .minaddr(want)
                .maxaddr(want + sz)
                .policy(Policy::BestFit),
        );
        if r != Ok(want) {
            vmem_fatal(format_args!("vmem_vmem bootstrap slot {i}: {r:?}"));
        }
    }
    publish(&VMEM_ARENA, vmem);
}

// -------------------------------------------------------------------------
// The tree's public face
// -------------------------------------------------------------------------

/// Whether the internal tree is built.
pub fn is_initialized() -> bool {
    INIT_STATE.load(Ordering::Acquire) == READY
}

/// The page-quantum `heap` arena other arenas import from.
///
/// With feature `std`, builds the tree on the built-in mmap source if
/// nobody called [`init`].
///
/// # Panics
/// Without `std`, if [`init`] was not called; with `std`, if building the
/// tree fails (the message says why).
pub fn heap() -> &'static Vmem {
    if let Err(e) = ensure_init() {
        panic!("umem_vmem::heap(): {e}");
    }
    match heap_arena() {
        Some(h) => h,
        None => panic!("umem_vmem::heap(): not initialised"),
    }
}

/// The `heap` arena, or `None` if the tree is not built (never builds it).
pub fn try_heap() -> Option<&'static Vmem> {
    if is_initialized() {
        heap_arena()
    } else {
        None
    }
}
