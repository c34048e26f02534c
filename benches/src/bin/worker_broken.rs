//! Workload worker with a deliberately wrong allocator, for the tests that show every workload
//! notices a fast-but-wrong allocator. `UMEM_BENCH_BREAK` picks the fault:
//!
//! * `none`: a correct bump allocator (never reuses memory) — the control;
//! * `overlap`: every K-th allocation returns a block that starts inside the previous
//!   block's last 16 bytes (two live objects share memory);
//! * `corrupt`: every K-th allocation flips the last byte of the previous block, the way an
//!   allocator writing a boundary tag one byte too low would.
//!
//! K is `UMEM_BENCH_BREAK_EVERY` (default 97); the first 64 allocations are left alone so the
//! workloads' own tables are usually spared and the fault lands in checked objects.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};

struct Broken;

struct State {
    base: usize,
    next: usize,
    end: usize,
    count: u64,
    prev: (usize, usize),
    mode: u8, // 0 none, 1 overlap, 2 corrupt
    every: u64,
}

static LOCK: AtomicBool = AtomicBool::new(false);
static mut STATE: State = State {
    base: 0,
    next: 0,
    end: 0,
    count: 0,
    prev: (0, 0),
    mode: 0,
    every: 97,
};

const REGION: usize = 8 << 30;

fn env_bytes(name: &[u8]) -> Option<&'static [u8]> {
    // SAFETY: getenv with a NUL-terminated name; the result lives as long as the environment,
    // which this program never changes.
    unsafe {
        let p = libc::getenv(name.as_ptr().cast());
        if p.is_null() {
            None
        } else {
            Some(std::ffi::CStr::from_ptr(p).to_bytes())
        }
    }
}

// SAFETY: in mode `none` every block is a fresh, suitably aligned, disjoint range of the
// mapping that is never reused, which is what GlobalAlloc requires. The fault modes break
// that contract on purpose: they exist only so that benches/tests/verify.rs can show that
// every workload notices a wrong allocator (no other code runs under them).
unsafe impl GlobalAlloc for Broken {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        while LOCK
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: STATE is only touched while LOCK is held.
        let s = unsafe { &mut *std::ptr::addr_of_mut!(STATE) };
        if s.base == 0 {
            // SAFETY: a fresh anonymous private mapping; failure is checked.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    REGION,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                LOCK.store(false, Ordering::Release);
                return std::ptr::null_mut();
            }
            s.base = p as usize;
            s.next = s.base;
            s.end = s.base + REGION;
            s.mode = match env_bytes(b"UMEM_BENCH_BREAK\0") {
                Some(b"overlap") => 1,
                Some(b"corrupt") => 2,
                _ => 0,
            };
            if let Some(v) = env_bytes(b"UMEM_BENCH_BREAK_EVERY\0") {
                if let Some(k) = std::str::from_utf8(v).ok().and_then(|v| v.parse().ok()) {
                    s.every = k;
                }
            }
        }
        s.count += 1;
        let size = l.size().max(1);
        let fault = s.mode != 0 && s.count > 64 && s.count % s.every == 0 && s.prev.0 != 0;
        let mut ret = 0usize;
        if fault && s.mode == 1 {
            // Start inside the previous block's last 16 bytes (or at it, if smaller).
            let a = l.align().max(16);
            let start = (s.prev.0 + s.prev.1 - s.prev.1.min(16)) & !(a - 1);
            if start >= s.prev.0 {
                ret = start;
                s.next = s.next.max(ret + size);
            }
        } else if fault && s.mode == 2 {
            // SAFETY: prev lies inside the mapped region, prev.1 > 0.
            unsafe { *((s.prev.0 + s.prev.1 - 1) as *mut u8) ^= 0x40 };
        }
        if ret == 0 {
            let a = (s.next + l.align().max(16) - 1) & !(l.align().max(16) - 1);
            if a + size > s.end {
                LOCK.store(false, Ordering::Release);
                return std::ptr::null_mut();
            }
            ret = a;
            s.next = a + size;
        }
        s.prev = (ret, size);
        LOCK.store(false, Ordering::Release);
        ret as *mut u8
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's layout with a new non-zero size is valid (GlobalAlloc contract).
        let q = unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, l.align())) };
        if !q.is_null() {
            // The new block may overlap the old one (that is the fault): copy as memmove does.
            // SAFETY: both ranges lie in the mapped region and are at least that long.
            unsafe { std::ptr::copy(p, q, l.size().min(new_size)) };
        }
        q
    }

    unsafe fn dealloc(&self, _p: *mut u8, _l: Layout) {
        // Memory is never reused: a fault stays visible to the workload's checks.
    }
}

#[global_allocator]
static GLOBAL: Broken = Broken;

fn main() {
    umem_bench::worker_main("broken")
}
