//! What vmem asks of the operating system besides memory: the page size
//! and an identifier of the calling thread. Works without `std` (libc
//! only). Depends on nothing else in the crate.

use core::sync::atomic::{AtomicUsize, Ordering};

/// The page size, once asked (0 before).
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The system page size (`sysconf(_SC_PAGESIZE)`, asked once and cached;
/// 4096 if sysconf fails). Works without `std`; never allocates.
#[inline]
pub fn page_size() -> usize {
    let p = PAGE_SIZE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let v = if v > 0 { v as usize } else { 4096 };
    PAGE_SIZE.store(v, Ordering::Relaxed);
    v
}

/// An identifier of the calling thread, never 0 (the populate lock's owner).
#[inline]
pub(crate) fn thread_id() -> usize {
    // SAFETY: pthread_self has no preconditions and never fails.
    let t = unsafe { libc::pthread_self() } as usize;
    if t == 0 {
        1
    } else {
        t
    }
}
