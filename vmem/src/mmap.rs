//! The built-in page source (feature `std`): anonymous private mmap.

use crate::{Addr, Source};

/// Anonymous-mmap page source: `import` maps fresh zeroed pages, `release`
/// unmaps them. Alignments above the page size are met by over-mapping and
/// trimming.
pub struct MmapSource {
    _private: (),
}

/// The one `MmapSource`, the heap's source when vmem initialises itself.
pub static MMAP_SOURCE: MmapSource = MmapSource { _private: () };

impl Source for MmapSource {
    fn import(&self, size: usize, align: usize) -> Option<Addr> {
        let _ = (size, align);
        todo!()
    }
    fn release(&self, addr: Addr, size: usize) {
        let _ = (addr, size);
        todo!()
    }
    fn quantum(&self) -> usize {
        todo!()
    }
}
