//! Arena builders: `Vmem::create` with defaults, naming only what a test cares about.

use umem_vmem::{CreateFlags, Policy, Source, Vmem, VmemError};

/// The four allocation policies, for tests that pick one at random or try each.
pub const POLICIES: [Policy; 4] = [
    Policy::InstantFit,
    Policy::BestFit,
    Policy::FirstFit,
    Policy::NextFit,
];

/// The arguments of `Vmem::create`, with defaults: no initial span, quantum 1, no
/// source, no quantum caches (`qcache_max` 0), `CreateFlags::NONE`.
#[derive(Clone, Copy)]
pub struct ArenaBuilder<'a> {
    name: &'a str,
    span: Option<(usize, usize)>,
    quantum: usize,
    source: Option<&'static dyn Source>,
    qcache_max: usize,
    flags: CreateFlags,
}

impl<'a> ArenaBuilder<'a> {
    /// An arena called `name`, with every other argument at its default.
    pub fn new(name: &'a str) -> Self {
        ArenaBuilder {
            name,
            span: None,
            quantum: 1,
            source: None,
            qcache_max: 0,
            flags: CreateFlags::NONE,
        }
    }

    /// The initial span `[base, base + size)`.
    pub fn span(mut self, base: usize, size: usize) -> Self {
        self.span = Some((base, size));
        self
    }

    /// The quantum (a power of two).
    pub fn quantum(mut self, quantum: usize) -> Self {
        self.quantum = quantum;
        self
    }

    /// The source the arena imports from.
    pub fn source(mut self, source: &'static dyn Source) -> Self {
        self.source = Some(source);
        self
    }

    /// Import from vmem's `heap` arena (real, mapped memory).
    pub fn from_heap(self) -> Self {
        self.source(umem_vmem::heap())
    }

    /// The largest size served by quantum caches (0: none).
    pub fn qcache_max(mut self, qcache_max: usize) -> Self {
        self.qcache_max = qcache_max;
        self
    }

    /// The creation flags.
    pub fn flags(mut self, flags: CreateFlags) -> Self {
        self.flags = flags;
        self
    }

    /// `Vmem::create` with these arguments, its result as is.
    pub fn try_create(self) -> Result<&'static Vmem, VmemError> {
        #[cfg(feature = "slab")]
        crate::cache::magazine_mode_from_env();
        Vmem::create(
            self.name,
            self.span,
            self.quantum,
            self.source,
            self.qcache_max,
            self.flags,
        )
    }

    /// `Vmem::create` with these arguments.
    ///
    /// # Panics
    /// If the arena cannot be created (the message says why).
    #[track_caller]
    pub fn create(self) -> &'static Vmem {
        match self.try_create() {
            Ok(a) => a,
            Err(e) => panic!("creating arena {:?}: {e}", self.name),
        }
    }
}

/// A source-less arena over `[base, base + size)` with `quantum`.
#[track_caller]
pub fn span_arena(name: &str, base: usize, size: usize, quantum: usize) -> &'static Vmem {
    ArenaBuilder::new(name)
        .span(base, size)
        .quantum(quantum)
        .create()
}

/// An arena of `quantum`, initially empty, importing from vmem's `heap` arena (the shape
/// of arenas that hand out real memory).
#[track_caller]
pub fn heap_arena(name: &str, quantum: usize) -> &'static Vmem {
    ArenaBuilder::new(name)
        .quantum(quantum)
        .from_heap()
        .create()
}

/// An arena of `quantum`, initially empty, importing from `parent`.
#[track_caller]
pub fn child_arena(name: &str, quantum: usize, parent: &'static Vmem) -> &'static Vmem {
    ArenaBuilder::new(name)
        .quantum(quantum)
        .source(parent)
        .create()
}
