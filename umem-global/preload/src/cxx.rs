//! C++'s replaceable global allocation functions: `operator new` and
//! `operator delete` in their single and array, nothrow, sized and
//! aligned forms (C++17 [new.delete]), exported under their Itanium C++
//! ABI names. Without them a C++ program's `new` reached umem through
//! libstdc++'s `operator new`, which calls `malloc` through the PLT, and a
//! sized `delete[]` through three of libstdc++'s functions before `free`.
//! mimalloc, jemalloc and tcmalloc export them too. A program that defines
//! its own `operator new` keeps it: the executable comes first in the
//! dynamic linker's lookup order, before any preloaded library.
//!
//! `new` gives what `malloc` (or, aligned, `memalign`) gives for the same
//! size: what libstdc++'s `operator new` gave when it called umem's
//! `malloc`. Every `delete` frees the block as `free` does; the size and
//! alignment a sized or aligned `delete` passes are not needed (the page
//! map knows the block) and are not checked.
//!
//! **No memory.** `operator new` must then call the installed
//! new-handler and try again, or throw `std::bad_alloc`, and Rust cannot
//! throw a C++ exception. So when umem returns null, the request goes to
//! the next definition of the same function in lookup order (libstdc++'s,
//! found once with `dlsym(RTLD_NEXT)`), which does exactly that, taking its
//! memory from umem's `malloc` again. The hit returns straight away and
//! the miss ends in a tail call to that function (`jmp`), so no umem frame
//! is on the stack when libstdc++'s throws: the exception unwinds from it
//! straight into the program (the release build's `panic = "abort"` gives
//! umem's frames no landing pads, and none are needed).

use crate::{free_inline, malloc_miss, memalign};
use core::ffi::{c_void, CStr};
use core::sync::atomic::{AtomicUsize, Ordering};
use umem_global::preload_abi as abi;
use umem_global::preload_abi::sys;

/// The C++ runtime's definition of the function named `name`, looked up
/// once into `slot`; aborts with a message when there is none (a program
/// that calls `operator new` has libstdc++ or another C++ runtime loaded).
#[cold]
fn runtime_definition(slot: &AtomicUsize, name: &CStr) -> usize {
    let mut f = slot.load(Ordering::Acquire);
    if f == 0 {
        // SAFETY: RTLD_NEXT and a NUL-terminated name; dlsym may allocate
        // (from umem), and no lock of umem's is held here.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
        if f == 0 {
            sys::fatal(format_args!(
                "umem: out of memory in {name:?}, and no C++ runtime's definition to hand it to"
            ));
        }
        slot.store(f, Ordering::Release);
    }
    f
}

/// Defines an `operator new` form named `$name` (its mangled name) with
/// arguments `$a`: `$hit` is the magazine hit (`None`: miss), tried with no
/// call and no stack frame; then `$alloc` (what is left of `malloc` after
/// its hit, or `memalign`) gives the block, and on null the
/// same arguments go to the C++ runtime's `$name`, in a tail call (module
/// doc).
macro_rules! operator_new {
    ($name:ident ($($a:ident: $t:ty),*) => $hit:expr, $alloc:expr) => {
        #[no_mangle]
        pub extern "C" fn $name($($a: $t),*) -> *mut c_void {
            if let Some(p) = $hit {
                return p;
            }
            #[inline(never)]
            fn miss($($a: $t),*) -> *mut c_void {
                let p: *mut c_void = $alloc;
                if !p.is_null() {
                    return p;
                }
                runtime($($a),*)
            }
            #[cold]
            #[inline(never)]
            fn runtime($($a: $t),*) -> *mut c_void {
                static DEFINITION: AtomicUsize = AtomicUsize::new(0);
                let name = concat!(stringify!($name), "\0");
                let name = CStr::from_bytes_with_nul(name.as_bytes()).unwrap_or_default();
                let f = runtime_definition(&DEFINITION, name);
                // SAFETY: `f` is the runtime's definition of this very
                // function, so it has this signature.
                let f: extern "C" fn($($t),*) -> *mut c_void = unsafe { core::mem::transmute(f) };
                f($($a),*)
            }
            miss($($a),*)
        }
    };
}

/// `malloc`'s magazine hit, as a block pointer.
#[inline(always)]
fn hit(size: usize) -> Option<*mut c_void> {
    abi::c_alloc_hit(size).map(|p| p.cast())
}

/// Defines an `operator delete` form: frees the block as `free` does.
macro_rules! operator_delete {
    ($($name:ident ($($a:ident: $t:ty),*);)*) => {
        $(
            /// # Safety
            /// As for `free`: `p` is null or a block from `new` not freed since.
            #[no_mangle]
            pub unsafe extern "C" fn $name(p: *mut c_void, $($a: $t),*) {
                $(let _ = $a;)*
                // SAFETY: by the caller.
                unsafe { free_inline(p) }
            }
        )*
    };
}

// `std::nothrow_t const&` and `std::align_val_t` arguments, as words.
type NoThrow = usize;
type Align = usize;

operator_new!(_Znwm(size: usize) => hit(size), malloc_miss(size));
operator_new!(_Znam(size: usize) => hit(size), malloc_miss(size));
operator_new!(_ZnwmRKSt9nothrow_t(size: usize, nt: NoThrow) => hit(size), malloc_miss(size));
operator_new!(_ZnamRKSt9nothrow_t(size: usize, nt: NoThrow) => hit(size), malloc_miss(size));
operator_new!(_ZnwmSt11align_val_t(size: usize, al: Align) => None, memalign(al, size));
operator_new!(_ZnamSt11align_val_t(size: usize, al: Align) => None, memalign(al, size));
operator_new!(_ZnwmSt11align_val_tRKSt9nothrow_t(size: usize, al: Align, nt: NoThrow) => None, memalign(al, size));
operator_new!(_ZnamSt11align_val_tRKSt9nothrow_t(size: usize, al: Align, nt: NoThrow) => None, memalign(al, size));

operator_delete! {
    _ZdlPv();
    _ZdaPv();
    _ZdlPvm(size: usize);
    _ZdaPvm(size: usize);
    _ZdlPvRKSt9nothrow_t(nt: NoThrow);
    _ZdaPvRKSt9nothrow_t(nt: NoThrow);
    _ZdlPvSt11align_val_t(al: Align);
    _ZdaPvSt11align_val_t(al: Align);
    _ZdlPvmSt11align_val_t(size: usize, al: Align);
    _ZdaPvmSt11align_val_t(size: usize, al: Align);
    _ZdlPvSt11align_val_tRKSt9nothrow_t(al: Align, nt: NoThrow);
    _ZdaPvSt11align_val_tRKSt9nothrow_t(al: Align, nt: NoThrow);
}
