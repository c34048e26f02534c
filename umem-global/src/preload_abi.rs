//! **Not public API.** The internal interface between `umem-global` and its
//! C ABI crate, `umem-preload` (`libumem.so`): exactly what that crate uses,
//! plus the few internals this crate's integration tests inspect (the size
//! classes, the class region, `owner`). It may change in any release
//! without notice; a program that wants umem uses [`Umem`](crate::Umem) or
//! `libumem.so`.
//!
//! The contract (DESIGN.md, umem-global ↔ preload):
//! * umem-global supplies the allocator's core with Rust types: `alloc`
//!   (size, alignment, zeroing), `free` (no size; `Err` for a pointer umem
//!   does not own), `realloc`, `usable_size`, and the magazine hits alone
//!   (`c_alloc_hit`, `free_hit`), which make no calls so that a C entry
//!   point that tail-calls the full function on a miss needs no stack
//!   frame, and the per-CPU hit a miss tries first (`c_alloc_cpu_hit`);
//! * it never unwinds (out-of-line paths run under `no_unwind`), never
//!   allocates from anything but its own tree, and keeps `errno` on `free`;
//! * the preload crate adds the C semantics (ENOMEM and errno, overflow
//!   checks, `realloc(p, 0)`, `posix_memalign`'s return codes), the abort
//!   on a foreign pointer (with `sys::fatal`), the `#[no_mangle]` symbols
//!   and the panic hook; it has no locks of its own.
//!
//! Fork handling, initialisation, the bootstrap arena and the statistics at
//! exit are umem-global's own and need nothing from the preload crate.

pub use crate::alloc::{alloc, c_alloc, c_alloc_cpu_hit, c_alloc_hit};
pub use crate::free::{
    free, free_hit, free_marked, free_miss, free_sized, owner, usable_size, FreeError, FreeHit,
    Owner,
};
pub use crate::realloc::{realloc, REALLOC_GROW_LARGE};
pub use crate::reclaim::trim;
pub use crate::sys::no_unwind;

/// `UMEM_DEBUG`'s view for the C ABI.
pub mod debug {
    pub use crate::debug::requested_size;
    pub use crate::debug_options::debug_path;

    /// Whether the size classes have the debug layout (`guards` or a word
    /// that implies it).
    pub fn guards() -> bool {
        crate::debug_options::DEBUG.load(core::sync::atomic::Ordering::Relaxed)
    }
}

/// The system-call and diagnostic helpers the C ABI uses.
pub mod sys {
    pub use crate::sys::{fatal, keep_errno, set_errno, warn, PAGE};
}

/// The size classes (for tests that walk every class).
pub mod classes {
    pub use crate::classes::{layout_class, natural_align, size, COUNT, SIZES};
}

/// The class region (for tests that check where classes live).
pub mod region {
    pub use crate::region::{
        base, bitmap_span, in_use, stripe_class, stripe_source, StripeSource, CLASS_SLOTS, LEN,
        ROUND, STRIPE, STRIPES_PER_CLASS, STRIPE_SHIFT,
    };
}
