//! [`Umem`]: umem as Rust's `#[global_allocator]`. Rust hands `dealloc` the
//! layout, so the class comes from it ([`free_sized`]) and the page map is
//! read only for large blocks.

use crate::alloc::alloc;
use crate::free::{free_sized, owner, Owner};
use crate::{classes, large};
use core::alloc::{GlobalAlloc, Layout};

/// umem as Rust's global allocator:
///
/// ```
/// #[global_allocator]
/// static A: umem_global::Umem = umem_global::Umem;
///
/// fn main() {
///     let names: Vec<String> = (0..100).map(|i| format!("name {i}")).collect();
///     assert_eq!(names[42], "name 42");
///     // Blocks of every size and alignment, freed with their layout.
///     let big = vec![0u8; 1 << 20];
///     assert!(umem_global::stats().large.in_use >= 1 << 20);
///     drop(big);
/// }
/// ```
///
/// Allocation never unwinds (a panic inside the allocator aborts with a
/// message) and never uses another allocator; the tree is built by the
/// first allocation.
pub struct Umem;

// SAFETY: `alloc` returns blocks of at least `layout.size()` bytes aligned
// to `layout.align()` that no one else uses until `dealloc`; `realloc`
// keeps the prefix; dealloc frees exactly what alloc handed out.
unsafe impl GlobalAlloc for Umem {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        alloc(layout.size(), layout.align(), false)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        alloc(layout.size(), layout.align(), true)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's contract is free_sized's.
        unsafe { free_sized(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (old, align) = (layout.size(), layout.align());
        if crate::debug_options::debug_path() {
            // SAFETY: GlobalAlloc's contract is realloc's.
            return crate::sys::no_unwind(|| unsafe {
                crate::debug::realloc(ptr, new_size, align)
            });
        }
        let oc = classes::layout_class(old, align);
        let nc = classes::layout_class(new_size, align);
        if oc.is_some() && oc == nc {
            return ptr;
        }
        if oc.is_none() && nc.is_none() {
            if let Owner::Large(n) = owner(ptr) {
                if large::resize_in_place(ptr as usize, n, new_size) {
                    return ptr;
                }
            }
        }
        let q = alloc(new_size, align, false);
        if !q.is_null() {
            // SAFETY: distinct live blocks, both at least min(old, new) long.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, q, old.min(new_size));
                free_sized(ptr, old, align);
            }
        }
        q
    }
}
