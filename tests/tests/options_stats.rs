//! Options that help and statistics a person reads, seen from outside: C
//! programs under `LD_PRELOAD=libumem.so` with `UMEM_OPTIONS` and
//! `UMEM_STATS` set, checking what they print on stderr and where the
//! statistics table goes.

use std::process::{Command, Output};
use umem_testkit::preload::{compile_c, run, scratch, show, stats_seen, stats_seen_in};

/// `edges` under the preload with `env`, run in `dir` if given; it must
/// succeed.
fn edges(env: &[(&str, &str)], dir: Option<&std::path::Path>) -> Output {
    let mut c = Command::new(compile_c("edges"));
    c.env_remove("UMEM_OPTIONS").env_remove("UMEM_STATS");
    for (k, v) in env {
        c.env(k, v);
    }
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let o = run(c, true);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("edges: OK"),
        "{}",
        show(&o)
    );
    o
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The warning line about `item`.
fn warning<'a>(err: &'a str, item: &str) -> &'a str {
    let head = format!("umem: UMEM_OPTIONS: '{item}' ignored: ");
    err.lines()
        .find(|l| l.starts_with(&head))
        .unwrap_or_else(|| panic!("no warning about {item:?} in\n{err}"))
}

#[test]
fn a_malformed_value_says_what_was_expected() {
    let o = edges(
        &[(
            "UMEM_OPTIONS",
            "reap_interval=5s,large_cache=lots,nomagazines=1",
        )],
        None,
    );
    let err = stderr(&o);
    assert_eq!(
        warning(&err, "reap_interval=5s"),
        "umem: UMEM_OPTIONS: 'reap_interval=5s' ignored: reap_interval expects a whole number \
         of seconds (e.g. reap_interval=5; 0 turns the periodic update off)"
    );
    assert!(
        warning(&err, "large_cache=lots").contains("large_cache expects a number of bytes"),
        "{err}"
    );
    assert!(
        warning(&err, "nomagazines=1").contains("nomagazines takes no value"),
        "{err}"
    );
}

#[test]
fn a_misspelled_word_lists_the_valid_ones() {
    let o = edges(&[("UMEM_OPTIONS", "nomagazine,reap_interval=1")], None);
    let err = stderr(&o);
    let w = warning(&err, "nomagazine");
    assert!(
        w.contains("unknown option (did you mean nomagazines?)"),
        "{w}"
    );
    for word in [
        "nomagazines",
        "noregion",
        "stats_all",
        "reap_interval=<seconds>",
        "large_cache=<bytes>",
        "backend=mmap",
        "concurrency=<n>",
        "max_contention=<n>",
        "perthread_cache=<bytes>",
    ] {
        assert!(w.contains(word), "the warning does not list {word}: {w}");
    }
    assert!(
        !err.contains("'reap_interval=1'"),
        "a valid option was warned about\n{err}"
    );
    // Far from every word: no suggestion, still the list.
    let o = edges(&[("UMEM_OPTIONS", "xyzzy")], None);
    let err = stderr(&o);
    let w = warning(&err, "xyzzy");
    assert!(!w.contains("did you mean"), "{w}");
    assert!(w.contains("valid options: nomagazines"), "{w}");
}

#[test]
fn umem_stats_with_a_relative_path_writes_that_file() {
    let dir = scratch("stats-relative");
    let o = edges(&[("UMEM_STATS", "stats.txt")], Some(&dir));
    assert!(
        !stats_seen(&o.stderr),
        "the table went to stderr as well\n{}",
        show(&o)
    );
    let file = dir.join("stats.txt");
    assert!(
        stats_seen_in(&file),
        "{} holds no table\n{}",
        file.display(),
        show(&o)
    );
    // Appended to by the next process.
    let once = std::fs::read_to_string(&file).expect("read stats.txt");
    edges(&[("UMEM_STATS", "stats.txt")], Some(&dir));
    let twice = std::fs::read_to_string(&file).expect("read stats.txt");
    assert_eq!(twice.matches("vmem arena").count(), 2, "{twice}");
    assert!(twice.starts_with(&once));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn umem_stats_keywords_go_to_stderr() {
    let dir = scratch("stats-keywords");
    for v in ["1", "stderr", "all"] {
        let o = edges(&[("UMEM_STATS", v)], Some(&dir));
        assert!(stats_seen(&o.stderr), "UMEM_STATS={v}\n{}", show(&o));
    }
    for v in ["0", ""] {
        let o = edges(&[("UMEM_STATS", v)], Some(&dir));
        assert!(!stats_seen(&o.stderr), "UMEM_STATS={v:?}\n{}", show(&o));
    }
    let left: Vec<_> = std::fs::read_dir(&dir).expect("scratch").collect();
    assert!(left.is_empty(), "a keyword made a file: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn umem_stats_to_a_file_that_cannot_be_opened_warns_and_uses_stderr() {
    let o = edges(&[("UMEM_STATS", "/nonexistent-dir/stats.txt")], None);
    let err = stderr(&o);
    assert!(
        err.contains("umem: UMEM_STATS: cannot open '/nonexistent-dir/stats.txt'"),
        "{err}"
    );
    assert!(stats_seen(&o.stderr), "{}", show(&o));
}

/// The rows of the caches table.
fn cache_rows(err: &str) -> Vec<&str> {
    err.lines()
        .skip_while(|l| !l.starts_with("cache "))
        .take_while(|l| !l.starts_with("large-block cache:"))
        .filter(|l| l.starts_with("umem_alloc_"))
        .collect()
}

#[test]
fn the_table_lists_used_caches_unless_asked_for_all() {
    let used = stderr(&edges(&[("UMEM_STATS", "1")], None));
    let all = stderr(&edges(&[("UMEM_STATS", "all")], None));
    let all_opt = stderr(&edges(
        &[("UMEM_STATS", "1"), ("UMEM_OPTIONS", "stats_all")],
        None,
    ));
    assert_eq!(cache_rows(&all).len(), 46, "{all}");
    assert_eq!(cache_rows(&all_opt).len(), 46, "{all_opt}");
    let n = cache_rows(&used).len();
    assert!(n > 0 && n < 46, "{n} rows\n{used}");
    let note = format!(
        "({} unused size classes not listed; UMEM_STATS=all lists every one)",
        46 - n
    );
    assert!(used.contains(&note), "no {note:?} in\n{used}");
    assert!(!all.contains("not listed"), "{all}");
    for r in cache_rows(&used) {
        let alloc: u64 = r
            .split_whitespace()
            .nth(5)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("row {r:?}"));
        let total: u64 = r
            .split_whitespace()
            .nth(3)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("row {r:?}"));
        assert!(alloc > 0 || total > 0, "an unused cache is listed: {r}");
    }
}

#[test]
fn the_table_has_units_totals_and_the_region_in_words() {
    let err = stderr(&edges(&[("UMEM_STATS", "1")], None));
    let total = err
        .lines()
        .find(|l| l.starts_with("total "))
        .unwrap_or_else(|| panic!("no totals row\n{err}"));
    assert!(total.split_whitespace().count() >= 5, "{total}");
    // The 128 KiB class is shown with a unit, not as 131072; below 10 KiB
    // sizes are exact.
    let all = stderr(&edges(&[("UMEM_STATS", "all")], None));
    let big = all
        .lines()
        .find(|l| l.starts_with("umem_alloc_131072 "))
        .unwrap_or_else(|| panic!("no umem_alloc_131072 row\n{all}"));
    assert_eq!(big.split_whitespace().nth(1), Some("128K"), "{big}");
    let mid = all
        .lines()
        .find(|l| l.starts_with("umem_alloc_12288 "))
        .unwrap_or_else(|| panic!("no umem_alloc_12288 row\n{all}"));
    assert_eq!(mid.split_whitespace().nth(1), Some("12.0K"), "{mid}");
    let small = all
        .lines()
        .find(|l| l.starts_with("umem_alloc_1152 "))
        .unwrap_or_else(|| panic!("no umem_alloc_1152 row\n{all}"));
    assert_eq!(small.split_whitespace().nth(1), Some("1152"), "{small}");
    assert!(
        !err.contains("1099511627776"),
        "the region is given as a raw number\n{err}"
    );
    let region = err
        .lines()
        .find(|l| l.starts_with("class region:"))
        .unwrap_or_else(|| panic!("no class region line\n{err}"));
    assert!(
        region.starts_with(
            "class region: 1.0 TiB of address space reserved (PROT_NONE, not memory), "
        ),
        "{region}"
    );
    assert!(region.contains("MiB of it made accessible"), "{region}");
    for line in ["in use by the program: ", "held from the kernel:  "] {
        assert!(
            err.lines().any(|l| l.starts_with(line)),
            "no {line:?} line\n{err}"
        );
    }
}
