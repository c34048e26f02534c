//! Quantum caches' maker: the [`QCacheFactory`] trait (implemented by
//! umem-slab) and the one installed factory, which `Vmem::create` asks for
//! an object cache of each small multiple of the quantum
//! (`arena/create.rs`). Above the arena type (the factory is handed the
//! arena), below arena creation.

use crate::arena::Vmem;
use crate::source::QCache;
use crate::sync::SpinLock;

/// The installed factory (a leaf lock).
pub(crate) static FACTORY: SpinLock<Option<&'static dyn QCacheFactory>> = SpinLock::new(None);

/// Makes quantum caches for arenas created with `qcache_max > 0`
/// (implemented by umem-slab; installed with
/// [`set_qcache_factory`](crate::set_qcache_factory)).
pub trait QCacheFactory: Sync {
    /// A cache of objects of `objsize` units (aligned to the arena's quantum)
    /// drawing slabs from `arena`, or `None` (then sizes from this one up go
    /// through the arena's segment path). `name` is `"<arena>_<objsize>"`.
    /// Called from `Vmem::create` with no vmem lock held.
    fn create(
        &self,
        arena: &'static Vmem,
        objsize: usize,
        name: &str,
    ) -> Option<&'static dyn QCache>;
}

/// The installed factory, if any.
pub(crate) fn qcache_factory() -> Option<&'static dyn QCacheFactory> {
    *FACTORY.lock()
}

/// Install the quantum-cache factory used by arenas created afterwards with
/// `qcache_max > 0`. The last call wins.
pub fn set_qcache_factory(factory: &'static dyn QCacheFactory) {
    *FACTORY.lock() = Some(factory);
}
