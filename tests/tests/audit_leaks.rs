//! Issue 12, part B, through C programs under `LD_PRELOAD=libumem.so`:
//! audit stacks in error reports (`audit_double`), the leak report at exit
//! and on demand (`leaks`), and the normal mode not loading libgcc_s
//! (`maps_gcc`). The programs are built `-O2` without frame pointers (the
//! default) and linked `-rdynamic`, so `dladdr` names their functions.

use std::os::unix::process::ExitStatusExt;
use std::process::Output;
use umem_testkit::preload::{audit_stacks, run_c_flags, show};

const AUDIT: &[(&str, &str)] = &[("UMEM_DEBUG", "audit"), ("UMEM_OPTIONS", "findleaks")];

fn prog(name: &str, args: &[&str], env: &[(&str, &str)], preload: bool) -> Output {
    run_c_flags(name, &["-rdynamic"], args, env, preload)
}

/// The report's table rows: (cache, leaked, caller).
fn table(stderr: &str) -> Vec<(String, usize, String)> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in stderr.lines() {
        if line.starts_with("CACHE ") {
            in_table = true;
            continue;
        }
        if in_table {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 5 {
                break;
            }
            rows.push((f[0].to_string(), f[1].parse().unwrap(), f[4].to_string()));
        }
    }
    rows
}

#[test]
fn leak_report_at_exit_names_two_groups_and_nothing_else() {
    let base = prog("leaks", &[], &[], false);
    assert!(base.status.success(), "leaks under glibc:\n{}", show(&base));
    let o = prog("leaks", &[], AUDIT, true);
    assert!(o.status.success(), "leaks under umem:\n{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("leaks: OK"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("umem: findleaks (pid ")
            && err.contains("): 27 leaked blocks")
            && err.contains("in 2 groups"),
        "{}",
        show(&o)
    );
    let rows = table(&err);
    assert_eq!(rows.len(), 2, "{}", show(&o));
    // Largest first: leak_b's 7 blocks of 200 bytes, then leak_a's 20 of 24.
    assert_eq!(rows[0].1, 7, "{}", show(&o));
    assert!(rows[0].2.contains("!leak_b+"), "{}", show(&o));
    assert_eq!(rows[1].1, 20, "{}", show(&o));
    assert!(rows[1].2.contains("!leak_a+"), "{}", show(&o));
    // Each group's stack goes on to main.
    assert_eq!(err.matches("!main+").count(), 2, "{}", show(&o));
}

#[test]
fn leaked_large_blocks_have_their_stack() {
    let o = prog("leaks", &["large"], AUDIT, true);
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let rows = table(&err);
    // The two 300 KiB blocks come first (one group, or two when the
    // compiler unrolled leak_big's loop into two call sites).
    let big: Vec<_> = rows.iter().filter(|r| r.0 == "umem_oversize").collect();
    assert!(!big.is_empty() && big.len() <= 2, "{}", show(&o));
    assert_eq!(big.iter().map(|r| r.1).sum::<usize>(), 2, "{}", show(&o));
    assert!(
        big.iter().all(|r| r.2.contains("!leak_big+")),
        "{}",
        show(&o)
    );
    assert_eq!(
        rows[..big.len()]
            .iter()
            .filter(|r| r.0 == "umem_oversize")
            .count(),
        big.len()
    );
    let small: Vec<_> = rows[big.len()..].iter().map(|r| r.1).collect();
    assert_eq!(small, [7, 20], "{}", show(&o));
}

#[test]
fn leak_scan_on_demand_from_c() {
    let o = prog("leaks", &["ondemand"], &[("UMEM_DEBUG", "audit")], true);
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("leaks: ondemand 27"), "{}", show(&o));
    assert!(out.contains("!leak_a+"), "{}", show(&o));
    // Without findleaks, nothing at exit.
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("findleaks"),
        "{}",
        show(&o)
    );
    // Without audit there is nothing to scan.
    let o = prog("leaks", &["ondemand"], &[], true);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("leaks: ondemand -1"),
        "{}",
        show(&o)
    );
}

#[test]
fn findleaks_without_audit_warns() {
    let o = prog("leaks", &[], &[("UMEM_OPTIONS", "findleaks")], true);
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("findleaks needs UMEM_DEBUG=audit"),
        "{}",
        show(&o)
    );
    assert!(!err.contains("leaked block"), "{}", show(&o));
}

/// The block the program printed on its `PTR` line.
fn printed_ptr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("PTR ").map(str::to_string))
        .expect("PTR line")
}

#[test]
fn double_free_report_shows_the_audit_stacks() {
    let o = prog("audit_double", &[], &[("UMEM_DEBUG", "audit")], true);
    assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let ptr = printed_ptr(&o);
    // The debug report (`umem_global::debug_report`), its stacks section
    // the buffer's history.
    assert!(err.contains("heap error: double free"), "{}", show(&o));
    assert!(err.contains(&ptr), "{}", show(&o));
    let (allocated, freed) = audit_stacks(&err, &ptr);
    assert!(allocated.contains("!make_block+"), "{}", show(&o));
    assert!(freed.contains("!drop_block+"), "{}", show(&o));
    // An invalid (interior, misaligned) free names the block it falls in.
    let o = prog(
        "audit_double",
        &["interior"],
        &[("UMEM_DEBUG", "audit")],
        true,
    );
    assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let ptr = printed_ptr(&o);
    assert!(err.contains("heap error: invalid free"), "{}", show(&o));
    assert!(err.contains(&format!("buffer {ptr} ")), "{}", show(&o));
    assert!(err.contains("!make_block+"), "{}", show(&o));
    // audit=N sets the depth: one frame each.
    let o = prog("audit_double", &[], &[("UMEM_DEBUG", "audit=1")], true);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("!make_block+"), "{}", show(&o));
    assert!(!err.contains("!main+"), "{}", show(&o));
}

#[test]
fn normal_mode_does_not_load_libgcc_s() {
    let o = prog("maps_gcc", &[], &[], true);
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("maps_gcc: libgcc_s not loaded"),
        "{}",
        show(&o)
    );
    // `default` is libumem's `audit,contents,guards`: it loads it (below).
    for debug in ["guards", "contents", "lite"] {
        let o = prog("maps_gcc", &[], &[("UMEM_DEBUG", debug)], true);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("maps_gcc: libgcc_s not loaded"),
            "{}",
            show(&o)
        );
    }
    // Auditing loads it (that is where its stacks come from).
    for debug in ["audit", "default"] {
        let o = prog("maps_gcc", &[], &[("UMEM_DEBUG", debug)], true);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("maps_gcc: libgcc_s loaded"), "{}", show(&o));
    }
}
