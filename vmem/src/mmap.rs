//! The built-in page source (feature `std`): anonymous private mmap.

use crate::source::Source;
use crate::sys::page_size;
use crate::types::Addr;

/// Anonymous-mmap page source: `import` maps fresh zeroed pages, `release`
/// unmaps them. Alignments above the page size are met by over-mapping and
/// trimming.
pub struct MmapSource {
    _private: (),
}

/// The one `MmapSource`, the heap's source when vmem initialises itself.
pub static MMAP_SOURCE: MmapSource = MmapSource { _private: () };

const HUGE: usize = 2 << 20;

fn map(len: usize) -> Option<Addr> {
    // SAFETY: anonymous private mapping; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        Some(p as Addr)
    }
}

fn unmap(addr: Addr, len: usize) {
    if len != 0 {
        // SAFETY: the range was mapped by `map` and is given back whole by
        // its importer.
        unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    }
}

impl Source for MmapSource {
    fn import(&self, size: usize, align: usize) -> Option<Addr> {
        let page = page_size();
        let size = size.checked_add(page - 1)? & !(page - 1);
        let a = if align <= page {
            map(size)?
        } else {
            let len = size.checked_add(align - page)?;
            let p = map(len)?;
            let a = (p + align - 1) & !(align - 1);
            unmap(p, a - p);
            unmap(a + size, p + len - (a + size));
            a
        };
        if size >= HUGE && a % HUGE == 0 {
            // Large aligned imports may use transparent huge pages (a hint;
            // failure is harmless).
            // SAFETY: advising our own fresh mapping.
            unsafe { libc::madvise(a as *mut libc::c_void, size, libc::MADV_HUGEPAGE) };
        }
        Some(a)
    }
    fn release(&self, addr: Addr, size: usize) {
        unmap(addr, size);
    }
    fn quantum(&self) -> usize {
        page_size()
    }
}
