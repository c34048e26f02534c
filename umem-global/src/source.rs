//! Span sources: the mmap page source at the root of umem's arena tree, and
//! the recording source under each size class's arena, which takes spans
//! from the class's stripes of the region (or from `umem_default`) and keeps
//! the page map in step with the slabs.

use crate::sys::{self, PAGE};
use crate::{pagemap, region};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use umem_vmem::{Addr, Source, Vmem};

/// Anonymous-mmap page source. `import` maps fresh zeroed pages (over-mapping
/// and trimming for alignments above a page), `release` unmaps them at once.
/// Addresses the page map cannot describe (above 2^48) are refused.
pub struct PageSource {
    pub mapped: AtomicU64,
    pub maps: AtomicU64,
    pub unmaps: AtomicU64,
    pub fails: AtomicU64,
}

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

/// The parent of every recording source (`umem_default`), set once at init.
pub static DEFAULT_ARENA: AtomicPtr<Vmem> = AtomicPtr::new(core::ptr::null_mut());

/// A size class's source: imports spans from the class's stripes of the
/// region ([`region`]), or from `umem_default` when there is no region or
/// the class has no stripe left, and marks all their pages with the class in the page
/// map; clears them before releasing.
pub struct ClassSource {
    pub class: usize,
}

/// Span granularity of the size-class arenas (several slabs per import).
pub const CLASS_SPAN: usize = 16 * PAGE;

fn default_arena() -> &'static Vmem {
    let p = DEFAULT_ARENA.load(Ordering::Acquire);
    assert!(
        !p.is_null(),
        "umem: class arena used before umem_default exists"
    );
    // SAFETY: set once from a `&'static Vmem` and never changed.
    unsafe { &*p }
}

impl Source for ClassSource {
    /// From the class's slice of the region when there is one and it has
    /// room, else from `umem_default`.
    fn import(&self, size: usize, align: usize) -> Option<Addr> {
        let a = match region::import(self.class, size, align) {
            Some(a) => a,
            None => Source::import(default_arena(), size, align)?,
        };
        if !pagemap::set_range(a, size, pagemap::small(self.class)) {
            self.give_back(a, size);
            return None;
        }
        Some(a)
    }

    fn release(&self, addr: Addr, size: usize) {
        pagemap::set_range(addr, size, 0);
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
    /// Returns a span to where it came from: its slice or `umem_default`.
    fn give_back(&self, addr: Addr, size: usize) {
        if !region::release(addr, size) {
            Source::release(default_arena(), addr, size);
        }
    }
}
