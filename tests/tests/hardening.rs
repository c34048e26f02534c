//! Regression tests for issue 11 (hardening), through the C programs
//! `tests/c/hard_*.c` run with `LD_PRELOAD=libumem.so`:
//!
//! 1. recovery after exhaustion (`hard_exhaust`),
//! 2. realloc's reserved room under an address-space limit (`hard_realloc_room`),
//! 3. a linear overflow into a free chunk's in-band link (`hard_link`),
//! 4. double, interior and wild frees in every layer (`hard_double`): an
//!    abort with one line naming the pointer (and, for the size classes, the
//!    class and what was wrong; large blocks too),
//! 5. freed small-block memory going back on `malloc_trim(0)`, and within
//!    one reap interval without it (`hard_trim`),
//!
//! and the heap-corruption family (`hard_corrupt`, and `hard_double` over
//! many classes): every case ends in a clean abort with a message or in
//! correct behaviour, never in two live blocks sharing memory or a pointer
//! outside the heap. Where glibc behaves correctly the program is run
//! against it first, so the program itself is known right; where it does
//! not (glibc's own heap is not hardened against every overflow, and does
//! not trim exited threads' arenas), a sanity mode of the program is run
//! instead.

use std::os::unix::process::ExitStatusExt;
use std::process::Output;
use umem_testkit::preload::{assert_c_passes, run_c, show};

fn prog(name: &str, args: &[&str], env: &[(&str, &str)], preload: bool) -> Output {
    run_c(name, args, env, preload)
}

/// The program passes (exit 0 and its "`name`: OK" line) under glibc.
fn passes_under_glibc(name: &str, args: &[&str]) {
    assert_c_passes(name, args, &[], false)
}

/// The program passes (exit 0 and its "`name`: OK" line) under umem.
fn passes_under_umem(name: &str, args: &[&str], env: &[(&str, &str)]) {
    assert_c_passes(name, args, env, true)
}

// ------------------------------------------------------------ defect 1 --

/// Under RLIMIT_AS = 200 MiB: fill with 64-byte blocks until NULL, free all;
/// malloc(200) and malloc(300000) must then succeed within ~1 s.
#[test]
fn exhaustion_is_recovered_from_at_once() {
    passes_under_glibc("hard_exhaust", &["200"]);
    passes_under_umem("hard_exhaust", &["200"], &[]);
}

// ------------------------------------------------------------ defect 2 --

/// Under RLIMIT_AS = 200 MiB, 20,000 buffers grown 16 B -> 6 KiB by realloc
/// must fit (glibc: ~33,600), contents intact.
#[test]
fn realloc_room_does_not_exhaust_the_address_space() {
    passes_under_glibc("hard_realloc_room", &["200", "20000"]);
    passes_under_umem("hard_realloc_room", &["200", "20000"], &[]);
}

// ------------------------------------------------------------ defect 3 --

/// 15 classes x 20 heap layouts: a block overflowed by its size with a
/// static buffer's address; malloc must never return that address (an
/// abort must say "corrupt").
#[test]
fn overflow_into_a_free_link_never_returns_the_chosen_address() {
    // Sanity: without the overflow every layout is clean, under both.
    let sanity = ["20", "-1"];
    passes_under_glibc("hard_link", &sanity);
    passes_under_umem("hard_link", &sanity, &[]);
    passes_under_umem("hard_link", &["20"], &[("HARD_ABORT_WORD", "corrupt")]);
    passes_under_umem(
        "hard_link",
        &["20"],
        &[
            ("HARD_ABORT_WORD", "corrupt"),
            ("UMEM_OPTIONS", "nomagazines"),
        ],
    );
}

// ------------------------------------------------------------ defect 4 --

/// Runs `hard_double mode size` under umem (with `env`), requires that it
/// dies of SIGABRT, and answers the pointer it freed badly (its `PTR` line)
/// and its stderr.
fn bad_free(mode: &str, size: &str, env: &[(&str, &str)]) -> (String, String) {
    let o = prog("hard_double", &[mode, size], env, true);
    let out = String::from_utf8_lossy(&o.stdout);
    let ptr = out
        .lines()
        .find_map(|l| l.strip_prefix("PTR "))
        .unwrap_or_else(|| panic!("{mode} {size} {env:?}: no PTR line\n{}", show(&o)))
        .trim()
        .to_string();
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGABRT),
        "{mode} free of {ptr} (size {size}, {env:?}) must abort with a message\n{}",
        show(&o)
    );
    (ptr, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// [`bad_free`], and the abort message names the bad pointer and `free` on
/// one line.
fn aborts_naming_the_pointer(mode: &str, size: &str, env: &[(&str, &str)]) {
    let (ptr, err) = bad_free(mode, size, env);
    assert!(
        err.lines().any(|l| l.contains(&ptr) && l.contains("free")),
        "{mode} (size {size}, {env:?}): no one-line message naming free() and {ptr}\n{err}"
    );
}

/// [`bad_free`], and the first line naming the pointer also names the class
/// (`umem_alloc_<size>`) and contains `what`.
fn aborts_naming(mode: &str, size: usize, env: &[(&str, &str)], what: &str) {
    let (ptr, err) = bad_free(mode, &size.to_string(), env);
    let line = err
        .lines()
        .find(|l| l.contains(&ptr))
        .unwrap_or_else(|| panic!("{mode} {size}: no line names {ptr}\n{err}"));
    assert!(
        line.contains(what) && line.contains(&format!("umem_alloc_{size}")),
        "{mode} {size} {env:?}: {line:?} lacks {what:?} or the class"
    );
}

#[test]
fn double_free_in_the_magazine_aborts() {
    aborts_naming_the_pointer("mag", "32", &[]);
}

#[test]
fn double_free_in_the_depot_aborts() {
    aborts_naming_the_pointer("depot", "32", &[]);
}

#[test]
fn double_free_in_the_slab_aborts() {
    aborts_naming_the_pointer("mag", "32", &[("UMEM_OPTIONS", "nomagazines")]);
    aborts_naming_the_pointer("depot", "32", &[("UMEM_OPTIONS", "nomagazines")]);
    aborts_naming_the_pointer("slab", "32", &[]);
}

#[test]
fn interior_pointer_free_aborts() {
    aborts_naming_the_pointer("interior", "48", &[]);
    aborts_naming_the_pointer("interior", "48", &[("UMEM_OPTIONS", "nomagazines")]);
    // 4 bytes into an 8-byte block (a free-map slab's chunk).
    aborts_naming_the_pointer("interior", "8", &[]);
    aborts_naming_the_pointer("interior", "8", &[("UMEM_OPTIONS", "nomagazines")]);
}

#[test]
fn never_allocated_address_free_aborts() {
    aborts_naming_the_pointer("wild", "32", &[]);
    aborts_naming_the_pointer("wild", "320", &[("UMEM_OPTIONS", "nomagazines")]);
}

#[test]
fn double_frees_abort_in_every_layer() {
    for env in [&[][..], &[("UMEM_OPTIONS", "nomagazines")][..]] {
        for size in [8usize, 16, 32, 48, 64, 128, 448, 512, 640, 4096, 8192] {
            for mode in ["mag", "depot"] {
                // Without magazines a freed block of a one-block slab (4096
                // bytes and up) takes its slab back to the arena, so the
                // second free finds no block there.
                let what = if env.is_empty() || size < 4096 {
                    "double free"
                } else {
                    "not an allocated"
                };
                aborts_naming(mode, size, env, what);
            }
        }
        // The block back on its slab (malloc_trim). In the 4096- and
        // 8192-byte classes the trim gives the block's one-block slab back and
        // discards its page (the free key with it); the page map, kept told
        // where such a class's slabs live, catches the second free.
        for size in [8usize, 16, 32, 48, 64, 128, 448, 512, 640, 4096, 8192] {
            aborts_naming("slab", size, env, "double free");
        }
    }
}

/// A double free after the block's slab went back (`hard_double dead`:
/// every block of the slab freed, then `malloc_trim(0)`, which destroys the
/// slab and discards its pages, so the block no longer holds the free key):
/// the slab watch marked the slab's pages dead, so the hit misses and the
/// miss aborts naming the pointer — "no slab holds it" while the class keeps
/// the span, "invalid pointer" once the span went back too. Every class
/// from 8 bytes to one-block slabs, with and without magazines.
#[test]
fn double_free_after_the_slab_went_back_aborts() {
    for env in [&[][..], &[("UMEM_OPTIONS", "nomagazines")][..]] {
        for size in [
            "8", "16", "32", "48", "64", "128", "256", "448", "512", "640", "1024", "2048", "3072",
            "4096", "8192", "40960",
        ] {
            aborts_naming_the_pointer("dead", size, env);
        }
    }
}

#[test]
fn interior_pointers_into_hashed_classes_abort() {
    // Aligned like a block start (the block's alignment into it), so only
    // the chunk-boundary test of its slab refuses it (issue 11, item 2a).
    for env in [&[][..], &[("UMEM_OPTIONS", "nomagazines")][..]] {
        for size in [640usize, 896, 1152, 1344, 4544, 9216, 24576] {
            aborts_naming("interior", size, env, "not the start of a block");
        }
    }
}

#[test]
fn interior_and_never_allocated_frees_abort() {
    // 16 bytes into a 48-byte block: aligned, so only the block-start test
    // (not the alignment test) refuses it.
    aborts_naming("interior", 48, &[], "not the start of a block");
    aborts_naming(
        "interior",
        48,
        &[("UMEM_OPTIONS", "nomagazines")],
        "not the start of a block",
    );
    for size in [80usize, 112] {
        aborts_naming("interior", size, &[], "not the start of a block");
    }
    // A never-allocated chunk start in a live block's slab.
    for size in [8usize, 16, 32, 48, 64, 128, 448, 512, 640] {
        aborts_naming("wild", size, &[], "double free");
    }
}

/// Large blocks: the page-map entry is cleared when a block is freed (into
/// the large-block cache or back to its arena), so a second free finds no
/// block start and aborts naming the pointer (this held before issue 11;
/// kept here as the large-block member of the family).
#[test]
fn large_double_free_aborts() {
    for size in ["300000", "5000000"] {
        let (ptr, err) = bad_free("mag", size, &[]);
        assert!(
            err.lines()
                .any(|l| l.contains(&ptr) && l.contains("invalid pointer")),
            "large {size}: {err:?}"
        );
    }
}

// ------------------------------------------------------------ defect 5 --

/// 256 MiB in 64-byte blocks (the 1 GiB takes ~7 s under umem on a
/// shared 2-core machine; 256 MiB shows the same defect: ~46 MiB stays),
/// freed, malloc_trim(0): RSS back within 16 MiB of the start.
#[test]
fn freed_small_blocks_go_back_on_malloc_trim() {
    passes_under_glibc("hard_trim", &["bulk", "256"]);
    passes_under_umem("hard_trim", &["bulk", "256"], &[]);
}

/// Issue 11 item 5: after a program frees 128 MiB of small blocks and goes
/// on allocating (a large block every 10 ms, no `malloc_trim`), the
/// periodic update gives the memory back within one reap interval of the
/// last free (`reap_interval=4`: within 4 s, plus 0.6 s for the update's
/// own work on a loaded machine). Before, the update ran once an interval,
/// a depot magazine went back at the second update after its free and the
/// magazines' own memory at a later one: 8 s and more.
#[test]
fn freed_small_blocks_go_back_within_one_reap_interval() {
    passes_under_umem(
        "hard_trim",
        &["periodic", "4600", "128"],
        &[("UMEM_OPTIONS", "reap_interval=4")],
    );
}

/// 16 threads each allocate and free 32 MiB of small blocks and exit;
/// malloc_trim(0) then brings RSS back within 16 MiB of the start. (glibc
/// does not: its exited threads' arenas keep their top chunks, ~285 MiB;
/// so there is no glibc baseline here.)
#[test]
fn exited_threads_memory_goes_back_on_malloc_trim() {
    passes_under_umem("hard_trim", &["threads", "16"], &[]);
}

// ------------------------------------------- the heap-corruption family --

/// Overflow by 8/16/32/64 bytes into live, magazine-free and slab-free
/// neighbours of every class up to 896 bytes (with and without magazines):
/// clean abort or correct behaviour, never aliasing or a wild pointer.
#[test]
fn overflows_into_neighbours_end_cleanly() {
    // Sanity: no overflow, every case clean (the cases need umem's
    // adjacent chunks, so this runs under umem, not glibc).
    passes_under_umem("hard_corrupt", &["896", "0"], &[]);
    passes_under_umem("hard_corrupt", &["896", "8,16,32,64"], &[]);
    passes_under_umem(
        "hard_corrupt",
        &["896", "8,16,32,64"],
        &[("UMEM_OPTIONS", "nomagazines")],
    );
}

/// Double free in every layer, interior and wild frees, for classes from
/// 16 to 896 bytes, with and without magazines: an abort with a message, or
/// a run in which no two live blocks overlap (exit 0).
#[test]
fn bad_frees_of_every_class_end_cleanly() {
    let mut failures = Vec::new();
    for env in [&[][..], &[("UMEM_OPTIONS", "nomagazines")][..]] {
        for size in ["16", "32", "64", "128", "256", "448", "896"] {
            for mode in ["mag", "depot", "slab", "dead", "interior", "wild"] {
                let o = prog("hard_double", &[mode, size], env, true);
                let aborted = o.status.signal() == Some(libc::SIGABRT) && !o.stderr.is_empty();
                if !(o.status.success() || aborted) {
                    let out = String::from_utf8_lossy(&o.stdout);
                    let last = out.lines().last().unwrap_or("").to_string();
                    failures.push(format!("{mode} {size} {env:?}: {:?}: {last}", o.status));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} bad-free cases ended in aliasing or a crash:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
