//! Cache builders: `Cache::create` with defaults, naming only what a test cares about.

use umem_slab::{Cache, CacheFlags, CacheOps, SlabError};
use umem_vmem::Vmem;

/// The arguments of `Cache::create`, with defaults: natural alignment (0), no object
/// operations (`CacheOps::NONE`), `CacheFlags::NONE`.
#[derive(Clone, Copy)]
pub struct CacheBuilder<'a> {
    name: &'a str,
    size: usize,
    align: usize,
    ops: CacheOps,
    arena: &'static Vmem,
    flags: CacheFlags,
}

impl<'a> CacheBuilder<'a> {
    /// A cache called `name` of `size`-byte objects whose slabs come from `arena`.
    pub fn new(name: &'a str, size: usize, arena: &'static Vmem) -> Self {
        CacheBuilder {
            name,
            size,
            align: 0,
            ops: CacheOps::NONE,
            arena,
            flags: CacheFlags::NONE,
        }
    }

    /// The object alignment (0: the natural one).
    pub fn align(mut self, align: usize) -> Self {
        self.align = align;
        self
    }

    /// The object operations (constructor, destructor, reclaim callback).
    pub fn ops(mut self, ops: CacheOps) -> Self {
        self.ops = ops;
        self
    }

    /// The cache flags.
    pub fn flags(mut self, flags: CacheFlags) -> Self {
        self.flags = flags;
        self
    }

    /// `Cache::create` with these arguments, its result as is.
    pub fn try_create(self) -> Result<&'static Cache, SlabError> {
        magazine_mode_from_env();
        Cache::create(
            self.name, self.size, self.align, self.ops, self.arena, self.flags,
        )
    }

    /// `Cache::create` with these arguments.
    ///
    /// # Panics
    /// If the cache cannot be created (the message says why).
    #[track_caller]
    pub fn create(self) -> &'static Cache {
        match self.try_create() {
            Ok(c) => c,
            Err(e) => panic!("creating cache {:?} of {}: {e:?}", self.name, self.size),
        }
    }
}

/// A cache of `size`-byte objects on `arena`, every other argument at its default.
#[track_caller]
pub fn cache(name: &str, size: usize, arena: &'static Vmem) -> &'static Cache {
    CacheBuilder::new(name, size, arena).create()
}

/// umem-slab's tests run in either magazine mode: per CPU by default, per thread where
/// `UMEM_OPTIONS` names the word `nopercpu` (as umem-global reads it), set in umem-slab
/// before its `init` (the kit's arena and cache builders call this first; after `init`
/// it changes nothing).
pub fn magazine_mode_from_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let off = std::env::var("UMEM_OPTIONS")
            .map(|v| v.split(',').any(|w| w == "nopercpu"))
            .unwrap_or(false);
        umem_slab::set_percpu(!off);
    });
}
