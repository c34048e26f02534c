//! The bootstrap allocator: a static bump arena that serves the (rare)
//! allocations made *by the initialising thread while umem initialises* —
//! e.g. a libc routine called during initialisation that calls `malloc`
//! back. Blocks carry a 16-byte header holding their size; freeing one is a
//! no-op; the arena is never reused.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

const SIZE: usize = 256 * 1024;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; SIZE]>);
// SAFETY: disjoint ranges are handed out through an atomic bump pointer.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; SIZE]));
static NEXT: AtomicUsize = AtomicUsize::new(0);

fn base() -> usize {
    ARENA.0.get() as usize
}

/// Whether `p` points into the bootstrap arena.
#[inline]
pub fn owns(p: usize) -> bool {
    p.wrapping_sub(base()) < SIZE
}

/// A block of `size` bytes aligned to `align` (≤ 4096), or null when the
/// arena is exhausted. The memory is zeroed (never reused).
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    let align = align.max(16);
    if align > 4096 || size > SIZE {
        return core::ptr::null_mut();
    }
    let mut cur = NEXT.load(Ordering::Relaxed);
    loop {
        let user = (base() + cur + 16 + align - 1) & !(align - 1);
        let end = user + size;
        if end > base() + SIZE {
            return core::ptr::null_mut();
        }
        match NEXT.compare_exchange_weak(cur, end - base(), Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {
                // SAFETY: `user - 8` is inside the range this call reserved.
                unsafe { ((user - 8) as *mut usize).write(size) };
                return user as *mut u8;
            }
            Err(c) => cur = c,
        }
    }
}

/// The size a bootstrap block was allocated with.
///
/// # Safety
/// `p` must be a block returned by [`alloc`].
pub unsafe fn size_of(p: usize) -> usize {
    // SAFETY: per the caller's contract the header precedes `p`.
    unsafe { ((p - 8) as *const usize).read() }
}
