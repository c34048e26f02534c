//! The coarse clock ([`now_ms`]) that paces the periodic update and the depot's traffic
//! window.

/// Milliseconds of `CLOCK_MONOTONIC_COARSE` (a vDSO read, a few ns).
pub(crate) fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}
