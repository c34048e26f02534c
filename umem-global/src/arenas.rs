//! The arenas umem-global creates, published once by initialisation, and the
//! state of that initialisation (`UNINIT → BUSY → READY`, or `FAILED`).
//!
//! Everything that needs an arena of the tree reads it from [`ARENAS`]; the
//! building itself is `init.rs`. Kept apart from it so that the layers that
//! only read the tree (the large blocks, the class sources, the fork
//! handlers, the statistics) do not depend on the code that builds it.

use crate::classes;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use umem_vmem::Vmem;

/// Nobody has started building the tree.
pub const UNINIT: u8 = 0;
/// A thread ([`INIT_OWNER`]) is building it.
pub const BUSY: u8 = 1;
/// The tree is built and [`ARENAS`] is published.
pub const READY: u8 = 2;
/// Building failed (no memory); every allocation fails.
pub const FAILED: u8 = 3;

/// The initialisation state (one of the four above).
pub static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// `pthread_self` of the thread building the tree while `BUSY`.
pub static INIT_OWNER: AtomicUsize = AtomicUsize::new(0);

/// Whether the tree is built.
#[inline]
pub fn is_initialized() -> bool {
    STATE.load(Ordering::Acquire) == READY
}

/// The arenas umem-global creates (published once, and never destroyed).
pub struct Arenas {
    /// `umem_default`: the heap's page-quantum child; the class arenas'
    /// source when there is no region or a class has no stripe left.
    pub default: AtomicPtr<Vmem>,
    /// `umem_oversize`: large blocks.
    pub oversize: AtomicPtr<Vmem>,
    /// `umem_memalign`: large blocks aligned above a page.
    pub memalign: AtomicPtr<Vmem>,
    /// `umem_alloc_<n>`: each class's arena, once the class is made.
    pub class: [AtomicPtr<Vmem>; classes::COUNT],
}

#[allow(clippy::declare_interior_mutable_const)]
const NO_ARENA: AtomicPtr<Vmem> = AtomicPtr::new(null_mut());

/// The tree's arenas.
pub static ARENAS: Arenas = Arenas {
    default: NO_ARENA,
    oversize: NO_ARENA,
    memalign: NO_ARENA,
    class: [NO_ARENA; classes::COUNT],
};

/// Publishes `arena` in `slot` (once, during initialisation or class
/// creation).
pub fn publish(slot: &AtomicPtr<Vmem>, arena: &'static Vmem) {
    slot.store(arena as *const Vmem as *mut Vmem, Ordering::Release);
}

fn deref_arena(p: &AtomicPtr<Vmem>) -> &'static Vmem {
    let v = p.load(Ordering::Acquire);
    debug_assert!(!v.is_null());
    // SAFETY: published once from a `&'static Vmem` before READY.
    unsafe { &*v }
}

/// The arena published in `p`, if one is.
fn published(p: &AtomicPtr<Vmem>) -> Option<&'static Vmem> {
    let v = p.load(Ordering::Acquire);
    // SAFETY: published once from a `&'static Vmem` and never destroyed.
    (!v.is_null()).then(|| unsafe { &*v })
}

impl Arenas {
    /// `umem_oversize` (after init).
    pub fn oversize(&self) -> &'static Vmem {
        deref_arena(&self.oversize)
    }
    /// `umem_memalign` (after init).
    pub fn memalign(&self) -> &'static Vmem {
        deref_arena(&self.memalign)
    }
    /// `umem_default`, once it exists.
    pub fn default_arena(&self) -> Option<&'static Vmem> {
        published(&self.default)
    }
    /// Class `c`'s arena (`umem_alloc_<n>`), once the class is made.
    pub fn class_arena(&self, c: usize) -> Option<&'static Vmem> {
        published(&self.class[c])
    }
}
