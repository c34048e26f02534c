//! The object callbacks: constructor, destructor, reclaim ([`CacheOps`], [`ObjectOps`]).

use core::ptr::NonNull;

/// Object constructor: returns `false` when the object cannot be constructed (the
/// allocation then fails).
pub type CtorFn = fn(buf: NonNull<u8>, private: *mut ()) -> bool;
/// Object destructor.
pub type DtorFn = fn(buf: NonNull<u8>, private: *mut ());
/// Reclaim callback: an advisory plea to give memory back, called by `reap`.
pub type ReclaimFn = fn(private: *mut ());

/// The object-cache callbacks (libumem's constructor, destructor, reclaim and private
/// argument). The constructed-state contract: an object in the cache (slab layer excluded)
/// stays constructed; the constructor runs when a buffer leaves the slab layer, the
/// destructor only when it goes back to it.
#[derive(Clone, Copy, Debug)]
pub struct CacheOps {
    /// Constructor, run when a buffer leaves the slab layer.
    pub ctor: Option<CtorFn>,
    /// Destructor, run when a buffer goes back to the slab layer.
    pub dtor: Option<DtorFn>,
    /// Reclaim callback, run by `reap`.
    pub reclaim: Option<ReclaimFn>,
    /// Passed to every callback.
    pub private: *mut (),
}

// SAFETY: the private pointer is handed back to the callbacks only; whoever creates the
// cache promises the callbacks may run on any thread (as with libumem).
unsafe impl Send for CacheOps {}
// SAFETY: as above.
unsafe impl Sync for CacheOps {}

impl CacheOps {
    /// No callbacks.
    pub const NONE: CacheOps = CacheOps {
        ctor: None,
        dtor: None,
        reclaim: None,
        private: core::ptr::null_mut(),
    };

    /// Callbacks as methods of a `'static` object (the trait-object form).
    pub fn from_object<T: ObjectOps>(obj: &'static T) -> CacheOps {
        fn ctor<T: ObjectOps>(b: NonNull<u8>, p: *mut ()) -> bool {
            // SAFETY: `p` was made from a `&'static T` below.
            unsafe { &*(p as *const T) }.construct(b)
        }
        fn dtor<T: ObjectOps>(b: NonNull<u8>, p: *mut ()) {
            // SAFETY: as above.
            unsafe { &*(p as *const T) }.destruct(b)
        }
        fn reclaim<T: ObjectOps>(p: *mut ()) {
            // SAFETY: as above.
            unsafe { &*(p as *const T) }.reclaim()
        }
        CacheOps {
            ctor: if T::HAS_CTOR { Some(ctor::<T>) } else { None },
            dtor: if T::HAS_DTOR { Some(dtor::<T>) } else { None },
            reclaim: if T::HAS_RECLAIM {
                Some(reclaim::<T>)
            } else {
                None
            },
            private: obj as *const T as *mut (),
        }
    }
}

/// Object callbacks as a trait (see [`CacheOps::from_object`]).
pub trait ObjectOps: Sync + 'static {
    /// Whether `construct` is a real constructor (else the cache has none).
    const HAS_CTOR: bool = true;
    /// Whether `destruct` is a real destructor.
    const HAS_DTOR: bool = true;
    /// Whether `reclaim` is a real reclaim callback.
    const HAS_RECLAIM: bool = false;
    /// Construct the object at `_buf`; `false` when it cannot be.
    fn construct(&self, _buf: NonNull<u8>) -> bool {
        true
    }
    /// Destruct the object at `_buf`.
    fn destruct(&self, _buf: NonNull<u8>) {}
    /// Give memory back if you can (advisory).
    fn reclaim(&self) {}
}
