//! The leak scan on demand from C: `umem_findleaks` (an extension of this
//! `<umem.h>`; libumem itself leaves leak finding to mdb's `::findleaks`).
//!
//! `long umem_findleaks(int fd)` runs [`umem_global::find_leaks`] — the same
//! scan `UMEM_OPTIONS=findleaks` runs at exit — prints its report to `fd`
//! when `fd >= 0`, and returns the number of leaked blocks, or -1 when
//! auditing is off (`UMEM_DEBUG=audit` was not set; nothing is scanned).
//! It does not allocate; what the scan can and cannot see is documented in
//! umem-global (`roots.rs`, `leaks.rs`) and the README.

use core::ffi::{c_int, c_long};

/// `umem_findleaks` (see the module documentation).
#[no_mangle]
pub extern "C" fn umem_findleaks(fd: c_int) -> c_long {
    umem_global::preload_abi::no_unwind(|| {
        let r = umem_global::find_leaks();
        if fd >= 0 {
            r.print(fd);
        }
        if r.enabled {
            c_long::try_from(r.leaked).unwrap_or(c_long::MAX)
        } else {
            -1
        }
    })
}
