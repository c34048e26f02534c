//! Building and tearing down an arena's structure (the work of
//! `vmem_create` and `vmem_destroy`): validate, take a `Vmem` from
//! `vmem_vmem` (or a static slot during bootstrap), link its sentinels,
//! fill a populator's reserve, add the first span, put it on the arena
//! list, make its quantum caches; and the reverse.
//!
//! `bootstrap.rs` builds the internal arenas with `create_common`; the
//! public `Vmem::create` (`arena/lifecycle.rs`) first makes sure those
//! exist. Keeping the two apart keeps the file graph acyclic: bootstrap
//! needs this file, and the public constructor needs bootstrap.

use super::import::check_span;
use super::{Inner, Kstat, Vmem, FREELISTS, HASH_INITIAL};
use crate::arena::populate::register_populator;
use crate::arenas::{list_append, next_id};
use crate::diag::{vmem_fatal, StackStr};
use crate::error::VmemError;
use crate::internal::{alloc_vmem_struct, free_hash_table, free_vmem_struct};
use crate::p2::round_up;
use crate::qcache::qcache_factory;
use crate::seg::{
    a_insert_after, a_remove, k_remove, Seg, T_ALLOC, T_FREE, T_HEAD, T_ROTOR, T_SPAN, T_WALKER,
};
use crate::segpool::putsegs_global;
use crate::source::Source;
use crate::sync::RawSpin;
use crate::types::{Addr, CreateFlags, NAME_MAX, QCACHE_MAX_CACHES};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Arguments of the internal create.
pub(crate) struct CreateArgs<'a> {
    pub name: &'a str,
    pub span: Option<(Addr, usize)>,
    pub quantum: usize,
    pub source: Option<&'static dyn Source>,
    pub qcache_max: usize,
    pub flags: CreateFlags,
    /// Where to build the structure (the static early arenas), else from
    /// `vmem_vmem`.
    pub mem: Option<*mut Vmem>,
    /// Smallest import (internal arenas import in chunks).
    pub import_min: usize,
    /// Initial `retain_max` (see [`Vmem::set_retain`]).
    pub retain: usize,
}

// -------------------------------------------------------------------------
// Create
// -------------------------------------------------------------------------

impl Vmem {
    pub(crate) fn create_common(a: CreateArgs<'_>) -> Result<&'static Vmem, VmemError> {
        let q = a.quantum;
        if q == 0 || !q.is_power_of_two() {
            return Err(VmemError::BadQuantum { quantum: q });
        }
        if let Some((base, size)) = a.span {
            check_span(base, size, q)?;
        }
        let p = match a.mem {
            Some(p) => p,
            None => alloc_vmem_struct()?,
        };
        let mut name = [0u8; NAME_MAX + 1];
        let mut n = a.name.len().min(NAME_MAX);
        while !a.name.is_char_boundary(n) {
            n -= 1;
        }
        name[..n].copy_from_slice(&a.name.as_bytes()[..n]);
        let source_quantum = a.source.map_or(1, |s| s.quantum().max(1));
        let qshift = q.trailing_zeros();
        let vm = Vmem {
            lock: RawSpin::new(),
            qcache_max: AtomicUsize::new(0),
            quantum: q,
            qshift,
            id: next_id(),
            inner: UnsafeCell::new(Inner {
                freemap: 0,
                qshift,
                hash_shift: 64 - HASH_INITIAL.trailing_zeros(),
                hash_table: ptr::null_mut(),
                hash_mask: HASH_INITIAL - 1,
                grow_at: HASH_INITIAL,
                segfree: ptr::null_mut(),
                nsegfree: 0,
                nsegresv: 0,
                nalloc: 0,
                nhandle: 0,
                nfree: 0,
                nspans: 0,
                vm: ptr::null(),
                has_source: a.source.is_some(),
                retain_max: a.retain,
                quantum: q,
                ks: Kstat::default(),
                freelist: [ptr::null_mut(); FREELISTS],
                seg0: Seg::empty(T_HEAD),
                rotor: Seg::empty(T_ROTOR),
                hash0: [ptr::null_mut(); HASH_INITIAL],
            }),
            source: a.source,
            source_quantum,
            import_min: a.import_min,
            cflags: a.flags,
            qcache: UnsafeCell::new([None; QCACHE_MAX_CACHES]),
            grow_wait: AtomicUsize::new(0),
            next: AtomicPtr::new(ptr::null_mut()),
            name,
            name_len: n as u8,
        };
        // SAFETY: p is fresh, suitably aligned memory for a Vmem (static
        // early slot or from vmem_vmem, which is 64-aligned); we link the
        // self-referential sentinels once it is in place.
        let vm: &'static Vmem = unsafe {
            ptr::write(p, vm);
            let inner = &mut *(*p).inner.get();
            let seg0: *mut Seg = &mut inner.seg0;
            (*seg0).anext = seg0;
            (*seg0).aprev = seg0;
            (*seg0).knext = seg0;
            (*seg0).kprev = seg0;
            let rotor: *mut Seg = &mut inner.rotor;
            a_insert_after(seg0, rotor);
            inner.hash_table = inner.hash0.as_mut_ptr();
            inner.vm = p;
            &*p
        };
        if vm.is_populator() {
            register_populator(vm);
            vm.lock();
            let ok = vm.populate();
            vm.unlock();
            if !ok {
                vmem_fatal(format_args!(
                    "cannot populate populator arena {}",
                    vm.name()
                ));
            }
        }
        if let Some((base, size)) = a.span {
            if let Err(e) = vm.add(base, size) {
                // SAFETY: nobody else has seen the arena yet.
                unsafe { vm.teardown(false) };
                return Err(e);
            }
        }
        list_append(vm);
        if a.qcache_max >= q && !a.flags.contains(CreateFlags::NO_QCACHE) {
            vm.make_qcaches(a.qcache_max);
        }
        Ok(vm)
    }

    pub(super) fn make_qcaches(&'static self, qcache_max: usize) {
        let Some(factory) = qcache_factory() else {
            return;
        };
        let n = (qcache_max >> self.qshift).min(QCACHE_MAX_CACHES);
        let mut made = 0;
        for i in 0..n {
            let objsize = (i + 1) * self.quantum;
            let mut buf = StackStr::<64>::new();
            let _ = core::fmt::write(&mut buf, format_args!("{}_{}", self.name(), objsize));
            match factory.create(self, objsize, buf.as_str()) {
                Some(c) => {
                    // SAFETY: the qcache array is written only here, before
                    // qcache_max publishes it; readers only read entries
                    // below qcache_max.
                    unsafe { (*self.qcache.get())[i] = Some(c) };
                    made = i + 1;
                }
                None => break,
            }
        }
        self.qcache_max
            .store(made * self.quantum, Ordering::Release);
    }
}

// -------------------------------------------------------------------------
// Teardown
// -------------------------------------------------------------------------

impl Vmem {
    /// Release everything the arena holds and free the structure.
    ///
    /// # Safety
    /// No other thread uses the arena (it is being destroyed, or was never
    /// published), and neither the arena nor its handles are used afterwards.
    pub(super) unsafe fn teardown(&'static self, release_imports: bool) -> usize {
        self.lock();
        // SAFETY: lock held.
        let leaked = unsafe { self.inner().ks.mem_inuse } as usize;
        // Release imported spans whole.
        if release_imports {
            loop {
                // SAFETY: lock held; span list well formed.
                let found = unsafe {
                    let inner = self.inner();
                    let seg0: *mut Seg = &mut inner.seg0;
                    let mut s = (*seg0).knext;
                    while s != seg0 && !(*s).import {
                        s = (*s).knext;
                    }
                    if s == seg0 {
                        None
                    } else {
                        let (a, n) = ((*s).start, (*s).end - (*s).start);
                        inner.drop_span_segments(s);
                        Some((a, n))
                    }
                };
                match found {
                    Some((a, n)) => {
                        self.unlock();
                        if let Some(src) = self.source {
                            src.release(a, n);
                        }
                        self.lock();
                    }
                    None => break,
                }
            }
        }
        // SAFETY: lock held; nobody else uses the arena.
        let (table, tsize) = unsafe {
            let inner = self.inner();
            let seg0: *mut Seg = &mut inner.seg0;
            let rotor: *mut Seg = &mut inner.rotor;
            a_remove(rotor);
            // Chain every structure (segments, then the reserve) and give
            // the chain to the global list in one go.
            let mut head = inner.segfree;
            let mut s = (*seg0).anext;
            while s != seg0 {
                let next = (*s).anext;
                debug_assert!((*s).typ & T_WALKER == 0);
                (*s).knext = head;
                head = s;
                s = next;
            }
            inner.segfree = ptr::null_mut();
            inner.nsegfree = 0;
            putsegs_global(head);
            let t = if inner.hash_table != inner.hash0.as_mut_ptr() {
                Some(inner.hash_table)
            } else {
                None
            };
            (t, inner.hash_mask + 1)
        };
        self.unlock();
        if let Some(t) = table {
            free_hash_table(t, tsize);
        }
        free_vmem_struct(self as *const Vmem as *mut Vmem);
        leaked
    }
}

impl Inner {
    /// Remove every segment of the span `span` (used by destroy).
    ///
    /// # Safety
    /// The arena lock is held and `span` is a span marker on the arena's list.
    pub(super) unsafe fn drop_span_segments(&mut self, span: *mut Seg) {
        // SAFETY: lock held; span is a marker on the list.
        unsafe {
            let mut s = (*span).anext;
            while (*s).typ & (T_SPAN | T_HEAD) == 0 {
                let next = (*s).anext;
                match (*s).typ {
                    T_FREE => {
                        self.freelist_delete(s);
                        self.seg_destroy(s);
                    }
                    T_ALLOC => {
                        if (*s).handle {
                            // Not hashed (its handle must never be used again:
                            // `destroy`'s contract).
                            self.nhandle -= 1;
                        } else {
                            // Unhash the leaked segment.
                            let mut pp = self.bucket((*s).start);
                            while *pp != s {
                                pp = &mut (**pp).knext;
                            }
                            *pp = (*s).knext;
                            self.nalloc -= 1;
                        }
                        let real = round_up((*s).end - (*s).start, self.quantum).unwrap_or(0);
                        self.ks.mem_inuse -= real as u64;
                        self.seg_destroy(s);
                    }
                    _ => {}
                }
                s = next;
            }
            let size = ((*span).end - (*span).start) as u64;
            if (*span).import {
                self.ks.mem_import -= size;
            }
            self.ks.mem_total -= size;
            k_remove(span);
            self.seg_destroy(span);
            self.nspans -= 1;
        }
    }
}
