//! Issue 11, defect 3: the words umem-slab keeps inside slab memory a program can overflow
//! into (a free chunk's free-list link, the owner tag at the start of an in-slab `Slab`
//! record) are encoded with a per-process secret and checked before use, so a linear
//! overflow aborts with a message naming the slab, the cache and the bad word instead of
//! making `alloc` return an address of the attacker's choosing. Aborting cases run in
//! child processes (the test kit's re-exec runner: each replays the test up to its case).

#![allow(clippy::manual_is_multiple_of)] // keep the workspace MSRV (1.80)

use std::ptr::NonNull;

use umem_slab::{Cache, CacheFlags, CacheOps, SlabError};
use umem_testkit::run_child;
use umem_vmem::{CreateFlags, Vmem};

/// Where an overflow would like `alloc` to return.
static mut TARGET: [usize; 64] = [0; 64];

fn target() -> usize {
    core::ptr::addr_of_mut!(TARGET) as usize + 128
}

/// Exit status of a child whose `alloc` returned the overflow's chosen address.
const GOT_TARGET: i32 = 4;

/// Allocate until `alloc` has returned `n` buffers; exit `GOT_TARGET` if one of them is
/// the chosen address.
fn alloc_n(c: &Cache, n: usize) {
    for _ in 0..n {
        let Some(p) = c.alloc() else { return };
        if p.as_ptr() as usize == target() {
            // SAFETY: leave the child at once.
            unsafe { libc::_exit(GOT_TARGET) };
        }
    }
}

/// Write `len` bytes of `word` (repeated) at `at`.
///
/// # Safety
/// `at..at + len` is writable memory of the test's cache.
unsafe fn smash(at: usize, len: usize, word: usize) {
    for k in (0..len).step_by(8) {
        // SAFETY: by the caller.
        unsafe { ((at + k) as *mut usize).write_unaligned(word) };
    }
}

/// Runs `f` in a child process (the kit's re-exec runner; `what` names the child) and
/// requires one line on stderr containing every word of `want`, then SIGABRT.
fn expect_abort(what: &str, want: &[&str], f: impl FnOnce()) {
    let Some(o) = run_child(what, f) else {
        return; // a child started for another case
    };
    let (aborted, code, msg) = (o.aborted(), o.code().unwrap_or(-1), o.stderr);
    assert_ne!(
        code, GOT_TARGET,
        "{what}: alloc returned the chosen address"
    );
    assert!(aborted, "{what}: no abort (exit {code}); stderr: {msg:?}");
    assert_eq!(msg.lines().count(), 1, "{what}: one line: {msg:?}");
    for w in want {
        assert!(msg.contains(w), "{what}: message {msg:?} lacks {w:?}");
    }
}

#[test]
fn overflows_into_slab_words_abort() {
    umem_slab::set_update_interval_ms(0);
    let a = Vmem::create(
        "corrupt_arena",
        None,
        4096,
        Some(umem_vmem::heap()),
        0,
        CreateFlags::NONE,
    )
    .unwrap();
    // Without magazines every alloc and free goes to the slab layer, so the layout is
    // known: a fresh slab hands out its chunks in address order.
    let mk = |name: &str, size: usize| {
        let c = Cache::create(name, size, 0, CacheOps::NONE, a, CacheFlags::NOMAGAZINE).unwrap();
        assert!(!c.is_hashed());
        c
    };

    for size in [16usize, 32, 48, 64, 128, 200, 448] {
        let c = mk(&format!("corr{size}"), size);
        let cs = c.chunk_size();
        let name = c.name().to_string();

        // Sanity: untouched, consecutive allocations are consecutive chunks and free
        // lists survive a round of frees in a scrambled order.
        let p = c.alloc().unwrap().as_ptr() as usize;
        let q = c.alloc().unwrap().as_ptr() as usize;
        assert_eq!(q, p + cs, "size {size}");
        let v: Vec<NonNull<u8>> = (0..40).map(|_| c.alloc().unwrap()).collect();
        for (i, b) in v.iter().enumerate() {
            if i % 3 != 1 {
                // SAFETY: allocated above, freed once.
                unsafe { c.free(*b) };
            }
        }
        c.verify().unwrap();
        for (i, b) in v.iter().enumerate() {
            if i % 3 == 1 {
                // SAFETY: allocated above, freed once.
                unsafe { c.free(*b) };
            }
        }
        // SAFETY: allocated above.
        unsafe { c.free(NonNull::new(q as *mut u8).unwrap()) };
        c.verify().unwrap();
        // Now q (= p + cs) heads the free list and p is allocated.

        // 1. Overflow p by a whole chunk with the chosen address (every word of the free
        //    neighbour, its link included).
        expect_abort(
            &format!("size {size}: chunk overflow"),
            &["corrupt free-list link", &name, "slab 0x"],
            || {
                // SAFETY: p's chunk and its free neighbour are this cache's memory.
                unsafe { smash(p + size, cs + (cs - size), target()) };
                alloc_n(c, 8);
            },
        );
        // 2. A one-byte overwrite of the neighbour's link (its low byte).
        expect_abort(
            &format!("size {size}: low byte"),
            &["corrupt free-list link", &name],
            || {
                // SAFETY: inside the free neighbour chunk.
                unsafe { *((q + cs - 8) as *mut u8) ^= 0x40 };
                alloc_n(c, 8);
            },
        );
        // 3. Zeros (a memset overflow) no longer read as "end of list".
        expect_abort(&format!("size {size}: zeroed"), &["corrupt", &name], || {
            // SAFETY: inside the free neighbour chunk.
            unsafe { smash(q, cs, 0) };
            alloc_n(c, 8);
        });
        // 4. An interior free reaching the slab layer is refused.
        expect_abort(
            &format!("size {size}: interior free"),
            &["not a buffer start", &name],
            || {
                // SAFETY: deliberately wrong; the cache must abort before using it.
                unsafe { c.free(NonNull::new((p + 8) as *mut u8).unwrap()) };
            },
        );
        // 5. verify() reports a bad link instead of following it; repaired, all is well.
        // SAFETY: the link word of a free chunk of this cache; restored below.
        let saved = unsafe { *((q + cs - 8) as *const usize) };
        // SAFETY: as above.
        unsafe { *((q + cs - 8) as *mut usize) = target() };
        match c.verify() {
            Err(SlabError::Corrupt { .. }) => {}
            other => panic!("size {size}: verify of a bad link gave {other:?}"),
        }
        // SAFETY: as above.
        unsafe { *((q + cs - 8) as *mut usize) = saved };
        c.verify().unwrap();

        // 6. An overflow out of a slab's last chunk reaches the slab record's owner tag
        //    first: fill the rest of the slab, then overwrite its record (the last 64
        //    bytes, the whole record) with the chosen address.
        let slab_end = (p & !(c.slab_size() - 1)) + c.slab_size();
        expect_abort(
            &format!("size {size}: slab record"),
            &["corrupt slab record", &name, "slab 0x"],
            || {
                // SAFETY: the record at the end of p's slab is this cache's memory.
                unsafe { smash(slab_end - 64, 64, target()) };
                alloc_n(c, 2 * c.buffers_per_slab());
            },
        );
        // The same overflow, then a free of a buffer of that slab.
        expect_abort(
            &format!("size {size}: slab record, free"),
            &["no slab owns it", &name],
            || {
                // SAFETY: as above; then a free of a live buffer of that slab.
                unsafe {
                    smash(slab_end - 64, 64, target());
                    c.free(NonNull::new(p as *mut u8).unwrap());
                }
            },
        );

        // SAFETY: allocated above, freed once.
        unsafe { c.free(NonNull::new(p as *mut u8).unwrap()) };
        c.verify().unwrap();
        assert_eq!(c.stats().buf_inuse, 0);
    }
}

/// A free-map slab (8-byte `FREE_KEY` chunks: the free list is a bitmap after the record,
/// `slab.rs`): a linear overflow out of the last chunk reaches the record's owner tag
/// before the map; a double free that reaches the slab layer finds its bit set and aborts
/// instead of handing the buffer out twice; `verify` reports a map bit past the last chunk.
#[test]
fn free_map_slabs_refuse_overflows_and_double_frees() {
    umem_slab::set_update_interval_ms(0);
    let a = umem_testkit::heap_arena("corrupt_map_arena", 4096);
    let flags = CacheFlags::NOMAGAZINE | CacheFlags::FREE_KEY;
    let c = umem_testkit::CacheBuilder::new("corrmap", 8, a)
        .flags(flags)
        .create();
    let name = c.name().to_string();
    assert_eq!((c.chunk_size(), c.buffers_per_slab()), (8, 496));
    let p = c.alloc().unwrap().as_ptr() as usize;
    let slab_end = (p & !(c.slab_size() - 1)) + c.slab_size();

    // 1. A second free of a buffer already on its slab's map.
    expect_abort("free map: double free", &["duplicate free", &name], || {
        // SAFETY: p is live; the second free is the bug under test.
        unsafe {
            c.free(NonNull::new(p as *mut u8).unwrap());
            c.free(NonNull::new(p as *mut u8).unwrap());
        }
    });
    // 2. An overflow from the last chunk over the record and the map.
    expect_abort(
        "free map: slab record",
        &["corrupt slab record", &name, "slab 0x"],
        || {
            // SAFETY: the record and map at the end of p's slab are this cache's memory.
            unsafe { smash(slab_end - 128, 128, target()) };
            alloc_n(c, 2 * c.buffers_per_slab());
        },
    );
    // 3. A map bit for a chunk the slab does not have: verify says so; repaired, all is
    //    well. (496 chunks: bit 48 of the last word is the first past them.)
    let last = (slab_end - 8) as *mut u64;
    // SAFETY: the last map word of p's slab; restored below.
    unsafe { *last |= 1 << 48 };
    match c.verify() {
        Err(SlabError::Corrupt { .. }) => {}
        other => panic!("verify of a bad map gave {other:?}"),
    }
    // SAFETY: as above.
    unsafe { *last &= !(1 << 48) };
    c.verify().unwrap();
    // SAFETY: allocated above, freed once.
    unsafe { c.free(NonNull::new(p as *mut u8).unwrap()) };
    c.verify().unwrap();
    assert_eq!(c.stats().buf_inuse, 0);
}
