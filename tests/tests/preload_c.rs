//! C programs in tests/c, run first against glibc (so the programs themselves
//! are known right) and then with LD_PRELOAD=libumem.so.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use umem_testkit::preload::{compile_c, libumem, run, show, stats_seen};

fn both(name: &str, args: &[&str], expect: &str) {
    let exe = compile_c(name);
    let base = run(
        {
            let mut c = Command::new(&exe);
            c.args(args);
            c
        },
        false,
    );
    assert!(
        base.status.success(),
        "{name} fails under glibc:\n{}",
        show(&base)
    );
    let mut c = Command::new(&exe);
    c.args(args).env("UMEM_STATS", "1");
    let o = run(c, true);
    assert!(o.status.success(), "{name} under libumem:\n{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(expect),
        "{name}: expected {expect:?}\n{}",
        show(&o)
    );
    assert!(
        stats_seen(&o.stderr),
        "{name}: umem was not in use (no UMEM_STATS table)\n{}",
        show(&o)
    );
}

#[test]
fn edges() {
    both("edges", &[], "edges: OK");
}

#[test]
fn threads_cross_free() {
    both("threads", &["4", "100000"], "threads: OK");
}

#[test]
fn many_short_lived_threads() {
    both("manythreads", &[], "manythreads: OK");
}

#[test]
fn forks_while_threads_allocate() {
    both("forks", &[], "forks: OK");
}

#[test]
fn invalid_free_aborts_naming_the_pointer() {
    let exe = compile_c("badfree");
    for mode in [
        "stack",
        "global",
        "foreign",
        "misaligned",
        "interior",
        "second",
        "realloc",
    ] {
        let o = run(
            {
                let mut c = Command::new(&exe);
                c.arg(mode);
                c
            },
            true,
        );
        assert_eq!(
            o.status.signal(),
            Some(libc::SIGABRT),
            "{mode}: must abort\n{}",
            show(&o)
        );
        let out = String::from_utf8_lossy(&o.stdout);
        let ptr = out
            .lines()
            .find_map(|l| l.strip_prefix("PTR "))
            .unwrap_or_else(|| panic!("{mode}: no PTR line\n{}", show(&o)))
            .trim()
            .to_string();
        let err = String::from_utf8_lossy(&o.stderr);
        let line = err
            .lines()
            .find(|l| l.contains("invalid pointer"))
            .unwrap_or_else(|| panic!("{mode}: no 'invalid pointer' message\n{}", show(&o)));
        assert!(
            line.contains(&ptr),
            "{mode}: message does not name {ptr}: {line}"
        );
        let func = if mode == "realloc" { "realloc" } else { "free" };
        assert!(
            line.contains(func),
            "{mode}: message does not name {func}(): {line}"
        );
    }
}

#[test]
fn double_free_caught_with_umem_debug() {
    let exe = compile_c("badfree");
    let mut c = Command::new(&exe);
    c.arg("double").env("UMEM_DEBUG", "default");
    let o = run(c, true);
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGABRT),
        "double free must abort\n{}",
        show(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(
        err.contains("free"),
        "no message about the free\n{}",
        show(&o)
    );
    // And the debug layout does not break a normal run.
    let mut c = Command::new(compile_c("edges"));
    c.env("UMEM_DEBUG", "default");
    let o = run(c, true);
    assert!(
        o.status.success(),
        "edges under UMEM_DEBUG=default\n{}",
        show(&o)
    );
}

#[test]
fn dlopen_library() {
    let exe = compile_c("dlopen");
    let mut c = Command::new(&exe);
    c.arg(libumem());
    let o = run(c, false);
    assert!(o.status.success(), "dlopen test:\n{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("dlopen: OK"),
        "{}",
        show(&o)
    );
}

#[test]
fn unknown_option_warns_and_runs() {
    let exe = compile_c("edges");
    let mut c = Command::new(&exe);
    c.env("UMEM_OPTIONS", "nomagazines,bogus_option=3,reap_interval=1");
    let o = run(c, true);
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bogus_option"),
        "no warning naming the unknown option\n{}",
        show(&o)
    );
    assert!(
        !err.contains("'reap_interval=1'") && !err.contains("'nomagazines'"),
        "a known option was warned about\n{}",
        show(&o)
    );
}

#[test]
fn stats_table_lists_caches_and_arenas() {
    let exe = compile_c("edges");
    let mut c = Command::new(&exe);
    c.env("UMEM_STATS", "1");
    let o = run(c, true);
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for needle in [
        "cache",
        "buf",
        "in use",
        "alloc",
        "umem_alloc_64",
        "umem_oversize",
        "heap",
        "vmem arena",
    ] {
        assert!(err.contains(needle), "stats table lacks {needle:?}\n{err}");
    }
}

/// Without the class region — switched off with `UMEM_OPTIONS=noregion`, or
/// impossible under an address-space limit far below its size — size
/// classes take their spans from `umem_default` and `free` finds every
/// block through the page map. The edge cases and the threaded test must
/// pass the same, and the stats table must show that there was no region
/// (while a normal run has one).
#[test]
fn without_a_class_region() {
    use std::os::unix::process::CommandExt;
    let region_line = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .find(|l| l.starts_with("class region:"))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no class region line\n{}", show(o)))
    };
    let mut c = Command::new(compile_c("edges"));
    c.env("UMEM_STATS", "1");
    let o = run(c, true);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        !region_line(&o).starts_with("class region: none"),
        "a normal run has no region\n{}",
        show(&o)
    );
    for how in ["option", "rlimit"] {
        for (prog, args, expect) in [
            ("edges", &[][..], "edges: OK"),
            ("threads", &["4", "50000"][..], "threads: OK"),
        ] {
            let mut c = Command::new(compile_c(prog));
            c.args(args).env("UMEM_STATS", "1");
            if how == "option" {
                c.env("UMEM_OPTIONS", "noregion");
            } else {
                // SAFETY: setrlimit is async-signal-safe; nothing else runs
                // between fork and exec.
                unsafe {
                    c.pre_exec(|| {
                        let lim = libc::rlimit {
                            rlim_cur: 16 << 30,
                            rlim_max: 16 << 30,
                        };
                        if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
            let o = run(c, true);
            assert!(o.status.success(), "{prog} ({how}):\n{}", show(&o));
            assert!(
                String::from_utf8_lossy(&o.stdout).contains(expect),
                "{prog} ({how}):\n{}",
                show(&o)
            );
            assert!(
                region_line(&o).starts_with("class region: none"),
                "{prog} ({how}) had a region\n{}",
                show(&o)
            );
        }
    }
}

/// A panic inside the library aborts with umem's own one-line message (the
/// hook the library installs when loaded), not Rust's default hook. The
/// library panics on purpose when loaded with `UMEM_SELFTEST_PANIC` set;
/// without it the same program runs normally.
#[test]
fn a_panic_inside_the_library_aborts_with_a_message() {
    let exe = compile_c("panic");
    let calm = run(Command::new(&exe), true);
    assert!(calm.status.success(), "{}", show(&calm));
    assert!(String::from_utf8_lossy(&calm.stdout).contains("MAIN-RAN"));
    let mut c = Command::new(&exe);
    c.env("UMEM_SELFTEST_PANIC", "1");
    let o = run(c, true);
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGABRT),
        "must abort\n{}",
        show(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("MAIN-RAN"), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("umem: panic:"))
        .unwrap_or_else(|| panic!("no 'umem: panic:' line\n{}", show(&o)));
    assert!(line.contains("lib.rs"), "no location: {line}");
    assert!(
        err.contains("index out of bounds"),
        "no panic message\n{}",
        show(&o)
    );
    assert!(
        !err.contains("thread 'main' panicked") && !err.contains("RUST_BACKTRACE"),
        "Rust's default hook ran\n{}",
        show(&o)
    );
}

/// Size classes are made on first use: a process that allocates one size
/// lists one class arena in its stats table (umem_alloc_112), not all 46;
/// and threads racing to make every class at once all get working caches.
#[test]
fn classes_are_made_on_first_use() {
    let exe = compile_c("lazy");
    let mut c = Command::new(&exe);
    c.arg("one").env("UMEM_STATS", "1");
    let o = run(c, true);
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let arenas: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.starts_with("vmem arena"))
        .filter(|l| l.starts_with("umem_alloc_"))
        .collect();
    assert!(
        arenas.iter().any(|l| l.starts_with("umem_alloc_112 ")),
        "no arena for the 112-byte class\n{err}"
    );
    assert!(
        arenas.len() < 5,
        "{} class arenas for one allocation size\n{err}",
        arenas.len()
    );
    both("lazy", &[], "lazy: OK");
}

/// libumem.so does not load libgcc_s (its constructor's `cpuid` probes cost
/// every process ~90 µs in a VM): the unwinder functions std refers to are
/// hidden local stand-ins. They must not interpose on the real unwinder, so
/// a C++ program's exceptions, thrown from several threads, still work.
#[test]
fn no_libgcc_s_and_cxx_exceptions_still_work() {
    let mut c = Command::new("cat");
    c.arg("/proc/self/maps");
    let o = run(c, true);
    assert!(o.status.success(), "{}", show(&o));
    let maps = String::from_utf8_lossy(&o.stdout);
    assert!(
        maps.contains("libumem"),
        "libumem.so was not loaded\n{maps}"
    );
    assert!(
        !maps.contains("libgcc_s"),
        "libumem.so brought in libgcc_s\n{maps}"
    );

    let o = cxx_under_both("cxx_throw", &["-pthread"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("cxx_throw: OK"),
        "{}",
        show(&o)
    );
}

/// Compiles `c/<name>.cc` with `c++ -O2` and `flags`, runs it under glibc
/// and then under the preload, requires both to succeed, and returns the
/// preloaded run's output.
fn cxx_under_both(name: &str, flags: &[&str]) -> std::process::Output {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("c/{name}.cc"));
    let exe = std::env::temp_dir().join(format!("umem-{name}-{}", std::process::id()));
    let cc = Command::new("c++")
        .arg("-O2")
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("c++ (g++) is needed: ci/install-deps installs it");
    assert!(cc.status.success(), "c++ failed: {}", show(&cc));
    let base = run(Command::new(&exe), false);
    assert!(base.status.success(), "under glibc: {}", show(&base));
    let o = run(Command::new(&exe), true);
    let _ = std::fs::remove_file(&exe);
    assert!(o.status.success(), "under libumem: {}", show(&o));
    o
}

/// C++'s `operator new` and `operator delete`, every form, come from
/// libumem.so under the preload (not libstdc++'s wrappers around `malloc`),
/// and keep the standard's semantics: aligned forms aligned, a failed `new`
/// calls the new-handler and then throws `std::bad_alloc`, the nothrow forms
/// return null (`c/cxx_new.cc`, written from [new.delete]).
#[test]
fn cxx_operator_new_and_delete_come_from_umem() {
    let o = cxx_under_both("cxx_new", &["-fsized-deallocation"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("cxx_new: OK"), "{}", show(&o));
    assert!(
        out.lines()
            .any(|l| l.starts_with("operator new from") && l.contains("libumem")),
        "operator new is not libumem's: {}",
        show(&o)
    );
}
