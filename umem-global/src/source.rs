//! Span sources: the mmap page source at the root of umem's arena tree, and
//! the recording source under each size class's arena, which takes spans
//! from the class's stripes of the region (or from `umem_default`) and puts
//! them in the page map (the class caches' slab watch marks where slabs
//! live: `caches::slab_watch`).

use crate::arenas::ARENAS;
use crate::pagemap::{self, PageEntry};
use crate::region;
use crate::sys::{self, PAGE};
use core::sync::atomic::{AtomicU64, Ordering};
use umem_vmem::{Addr, Source, Vmem};

/// Anonymous-mmap page source. `import` maps fresh zeroed pages (over-mapping
/// and trimming for alignments above a page), `release` unmaps them at once.
/// Addresses the page map cannot describe (above 2^48) are refused.
pub struct PageSource {
    /// Bytes mapped now.
    pub mapped: AtomicU64,
    /// `mmap` calls that succeeded.
    pub maps: AtomicU64,
    /// `munmap` calls.
    pub unmaps: AtomicU64,
    /// Imports refused (no memory, or above what the page map describes).
    pub fails: AtomicU64,
}

/// The page source at the root of the tree (the heap's and the large-block
/// arenas' source).
pub static PAGES: PageSource = PageSource {
    mapped: AtomicU64::new(0),
    maps: AtomicU64::new(0),
    unmaps: AtomicU64::new(0),
    fails: AtomicU64::new(0),
};

impl Source for PageSource {
    fn import(&self, size: usize, align: usize) -> Option<Addr> {
        let align = align.max(PAGE);
        let size = size.checked_add(PAGE - 1)? & !(PAGE - 1);
        let got = if align == PAGE {
            sys::map(size)
        } else {
            let over = size.checked_add(align - PAGE)?;
            // SAFETY: our own fresh mapping, never handed out.
            sys::map(over).map(|base| unsafe { sys::trim_to_aligned(base, over, size, align) })
        };
        match got {
            Some(a) if pagemap::in_range(a, size) => {
                self.maps.fetch_add(1, Ordering::Relaxed);
                self.mapped.fetch_add(size as u64, Ordering::Relaxed);
                Some(a)
            }
            Some(a) => {
                // SAFETY: our own fresh mapping, never handed out.
                unsafe { sys::unmap(a, size) };
                self.fails.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
                self.fails.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn release(&self, addr: Addr, size: usize) {
        // SAFETY: the importing arena gives back a span it imported whole
        // and no longer uses.
        sys::keep_errno(|| unsafe { sys::unmap(addr, size) });
        self.unmaps.fetch_add(1, Ordering::Relaxed);
        self.mapped.fetch_sub(size as u64, Ordering::Relaxed);
    }

    fn quantum(&self) -> usize {
        PAGE
    }
}

/// A size class's source: imports spans from the class's stripes of the
/// region ([`region`]), or from `umem_default` when there is no region or
/// the class has no stripe left, and marks all their pages with the class in the page
/// map; clears them before releasing.
pub struct ClassSource {
    /// The size class.
    pub class: usize,
}

/// Span granularity of the size-class arenas (several slabs per import).
pub const CLASS_SPAN: usize = 16 * PAGE;

/// `umem_default`, the fallback source (it exists before any class arena).
fn default_arena() -> &'static Vmem {
    match ARENAS.default_arena() {
        Some(v) => v,
        None => panic!("umem: class arena used before umem_default exists"),
    }
}

impl Source for ClassSource {
    /// From the class's stripes of the region when there is one and the
    /// class has a stripe left, else from `umem_default`.
    ///
    /// The span's pages are marked dead (`PageEntry::dead`: the class's,
    /// but no slab lives there); the class cache's slab watch marks each
    /// slab live as it is made and dead again when it goes
    /// (`caches::slab_watch`).
    fn import(&self, size: usize, align: usize) -> Option<Addr> {
        let a = match region::import(self.class, size, align) {
            Some(a) => a,
            None => Source::import(default_arena(), size, align)?,
        };
        if !pagemap::set_range(a, size, PageEntry::dead(self.class)) {
            self.give_back(a, size);
            return None;
        }
        Some(a)
    }

    fn release(&self, addr: Addr, size: usize) {
        pagemap::set_range(addr, size, PageEntry::NONE);
        self.give_back(addr, size);
    }

    /// A stripe with a class region (the class arena imports whole
    /// stripes), else [`CLASS_SPAN`].
    fn quantum(&self) -> usize {
        if region::base().is_some() {
            region::STRIPE
        } else {
            CLASS_SPAN
        }
    }
}

impl ClassSource {
    /// Returns a span to where it came from: its stripe or `umem_default`.
    fn give_back(&self, addr: Addr, size: usize) {
        if !region::release(addr, size) {
            Source::release(default_arena(), addr, size);
        }
    }
}
