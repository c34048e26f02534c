//! The shared test kit of the umem workspace (dev-only, never published).
//!
//! What the integration tests used to write out again and again lives here once:
//!
//! - [`Rng`]: the xorshift64* generator every randomized test draws from;
//! - [`pattern`]: filling blocks with a known content and checking it is still there;
//! - [`ArenaBuilder`] (and [`span_arena`], [`heap_arena`], [`child_arena`]): `Vmem::create`
//!   with sensible defaults, naming only what a test cares about; [`POLICIES`];
//! - `CacheBuilder` and `cache` (feature `slab`): `Cache::create` the same way;
//! - [`child`]: one child-process runner (the test binary re-runs itself) and
//!   [`assert_aborts_with`];
//! - [`preload`]: locating the release `libumem.so`, compiling the C test programs and
//!   running programs with and without `LD_PRELOAD`;
//! - [`cpus`]: the CPUs the process may use and moving threads between them;
//! - [`serial`]: one lock for the tests of a binary that must take turns.
//!
//! Use it only from integration tests (`tests/` folders). A crate's unit tests compile the
//! crate a second time as the test binary; linking the kit there would link a second copy
//! of the crate, with its own global state.

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

mod arena;
#[cfg(feature = "slab")]
mod cache;
pub mod child;
pub mod cpus;
pub mod pattern;
pub mod preload;
mod rng;

pub use arena::{child_arena, heap_arena, span_arena, ArenaBuilder, POLICIES};
#[cfg(feature = "slab")]
pub use cache::{cache, magazine_mode_from_env, CacheBuilder};
pub use child::{assert_aborts_with, run_alone, run_child, Child, ChildOutput};
pub use rng::Rng;

use std::sync::{Mutex, MutexGuard};

/// Takes this test binary's turn lock: tests that measure process-wide counters (arena
/// usage, the global update step, resident memory) hold it so they run one at a time.
/// A test that panicked while holding it does not poison it for the others.
pub fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Rounds `x` up to a multiple of `q`, a power of two.
pub fn round_up(x: usize, q: usize) -> usize {
    (x + q - 1) & !(q - 1)
}

/// Brute-force, independent check for the model tests: does a request of `size` bytes
/// with `align`, `phase`, `nocross` and the address window `[minaddr, maxaddr)` fit in
/// the free range `[lo, hi)`? (It walks `nocross` windows, so it stays cheap.)
#[allow(clippy::too_many_arguments)]
pub fn bf_fits(
    lo: usize,
    hi: usize,
    size: usize,
    align: usize,
    phase: usize,
    nocross: usize,
    minaddr: usize,
    maxaddr: Option<usize>,
) -> bool {
    let lo = lo.max(minaddr) as u128;
    let hi = match maxaddr {
        Some(m) => (hi as u128).min(m as u128),
        None => hi as u128,
    };
    let (size, align, phase, nocross) =
        (size as u128, align as u128, phase as u128, nocross as u128);
    let first_at_or_after = |x: u128| -> u128 {
        // smallest a >= x with a % align == phase
        let base = x - x % align + phase;
        if base >= x {
            base
        } else {
            base + align
        }
    };
    let mut a = first_at_or_after(lo);
    loop {
        if a + size > hi {
            return false;
        }
        if nocross == 0 || a / nocross == (a + size - 1) / nocross {
            return true;
        }
        a = first_at_or_after((a / nocross + 1) * nocross);
    }
}
