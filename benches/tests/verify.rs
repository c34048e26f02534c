//! Every workload checks its own results: run each one under a deliberately wrong allocator
//! (the `umem-bench-worker-broken` binary for the Rust side, `libumem-bench-broken.so` under
//! LD_PRELOAD for the C side) and it must report a content-check failure instead of a time.
//! The control (the same bump allocator without the fault) must pass with the checksum the
//! system allocator gives, so the failures come from the fault and nothing else.

use std::path::Path;
use std::process::Command;

const SYSTEM: &str = env!("CARGO_BIN_EXE_umem-bench-worker-system");
const BROKEN: &str = env!("CARGO_BIN_EXE_umem-bench-worker-broken");
const HARNESS: &str = env!("CARGO_BIN_EXE_umem-bench");
const CWORK: &str = env!("UMEM_BENCH_CWORK");
const BROKEN_SO: &str = env!("UMEM_BENCH_BROKEN_SO");

/// Small runs, except where a workload makes few allocations: it needs enough of them for
/// the fault (every K-th allocation after the 64th) to land in its objects.
fn args_for(w: &str) -> (Vec<String>, Option<&'static str>) {
    let (scale, every) = match w {
        "large" => ("0.12", Some("7")),
        // Few, huge blocks (and one small descriptor each): a small K so the fault lands.
        "huge" => ("0.02", Some("3")),
        "cache-scratch" | "cache-thrash" => ("0.2", None),
        _ => ("0.02", None),
    };
    (
        vec![w.to_string(), "2".into(), scale.into(), "42".into()],
        every,
    )
}

struct Out {
    ok: Option<u64>,
    line: String,
    signal: bool,
}

fn run(program: &str, w: &str, mode: Option<&str>, preload: Option<&str>) -> Out {
    let (args, every) = args_for(w);
    let mut c = Command::new(program);
    c.args(&args).env_remove("LD_PRELOAD");
    if let Some(m) = mode {
        c.env("UMEM_BENCH_BREAK", m);
        if let Some(k) = every {
            c.env("UMEM_BENCH_BREAK_EVERY", k);
        }
    }
    if let Some(p) = preload {
        c.env("LD_PRELOAD", p);
    }
    let o = c.output().expect("run worker");
    let line = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    let ok = line
        .strip_prefix("ok ")
        .filter(|_| o.status.success())
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok());
    Out {
        ok,
        line,
        signal: std::os::unix::process::ExitStatusExt::signal(&o.status).is_some(),
    }
}

fn rust_workloads() -> Vec<&'static str> {
    umem_bench::workloads::ALL.iter().map(|w| w.name).collect()
}

fn c_workloads() -> Vec<String> {
    assert!(!CWORK.is_empty(), "c/cwork.c was not compiled (no cc?)");
    let o = Command::new(CWORK)
        .arg("--list")
        .output()
        .expect("cwork --list");
    let v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(v.len() >= 8, "cwork lists {v:?}");
    v
}

#[test]
fn rust_workloads_pass_and_agree_under_correct_allocators() {
    for w in rust_workloads() {
        let a = run(SYSTEM, w, None, None);
        let b = run(BROKEN, w, Some("none"), None);
        assert!(a.ok.is_some(), "{w} under the system allocator: {}", a.line);
        assert!(
            b.ok.is_some(),
            "{w} under the fault-free bump allocator: {}",
            b.line
        );
        assert_eq!(
            a.ok, b.ok,
            "{w}: checksums differ between two correct allocators"
        );
    }
}

#[test]
fn c_workloads_pass_and_agree_under_correct_allocators() {
    for w in c_workloads() {
        let a = run(CWORK, &w, None, None);
        let b = run(CWORK, &w, Some("none"), Some(BROKEN_SO));
        assert!(a.ok.is_some(), "C {w} under glibc: {}", a.line);
        assert!(
            b.ok.is_some(),
            "C {w} under the fault-free bump malloc: {}",
            b.line
        );
        assert_eq!(
            a.ok, b.ok,
            "C {w}: checksums differ between two correct mallocs"
        );
    }
}

/// The workload must not report a time; it must say it found wrong content. Only
/// rust-collections under overlapping blocks may die first (of a signal, or an abort from
/// std): there the shared bytes are mostly BTreeMap/HashMap nodes, whose broken links std
/// trips over before the workload's own checks run — still no time.
fn assert_caught(what: &str, w: &str, o: &Out, may_crash: bool) {
    assert!(
        o.ok.is_none(),
        "{what} {w}: a wrong allocator got a time: {}",
        o.line
    );
    let reported = o.line.starts_with("FAIL") && o.line.contains("content check");
    assert!(
        reported || (may_crash && o.signal),
        "{what} {w}: expected a content-check failure, got {:?} (signal: {})",
        o.line,
        o.signal
    );
}

#[test]
fn rust_workloads_catch_overlapping_blocks() {
    for w in rust_workloads() {
        let o = run(BROKEN, w, Some("overlap"), None);
        assert_caught("overlap", w, &o, w == "rust-collections");
    }
}

#[test]
fn rust_workloads_catch_corrupted_bytes() {
    for w in rust_workloads() {
        let o = run(BROKEN, w, Some("corrupt"), None);
        assert_caught("corrupt", w, &o, false);
    }
}

#[test]
fn c_workloads_catch_overlapping_blocks() {
    for w in c_workloads() {
        let o = run(CWORK, &w, Some("overlap"), Some(BROKEN_SO));
        assert_caught("C overlap", &w, &o, false);
    }
}

#[test]
fn c_workloads_catch_corrupted_bytes() {
    for w in c_workloads() {
        let o = run(CWORK, &w, Some("corrupt"), Some(BROKEN_SO));
        assert_caught("C corrupt", &w, &o, false);
    }
}

/// The harness end to end on a tiny run: it writes a CSV with one well-formed line per
/// (workload, allocator) and an SVG document.
#[test]
fn harness_writes_csv_and_svg() {
    let out = std::env::temp_dir().join(format!("umem-bench-test-{}", std::process::id()));
    let st = Command::new(HARNESS)
        .args([
            "--filter",
            "glibc-simple,rust/large",
            "--runs",
            "1",
            "--scale",
            "0.01",
            "--no-build",
        ])
        .args(["--sections", "rust,c", "--out"])
        .arg(&out)
        .output()
        .expect("run harness");
    assert!(
        st.status.success(),
        "harness: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("results.csv");
    let mut lines = csv.lines();
    let header = lines.next().expect("header");
    let cols = header.split(',').count();
    assert_eq!(cols, 16, "{header}");
    let rows: Vec<&str> = lines.collect();
    for r in &rows {
        // Notes may hold quoted commas; the numeric fields come first.
        let f: Vec<&str> = r.splitn(16, ',').collect();
        assert_eq!(f.len(), 16, "{r}");
        assert!(["rust", "c"].contains(&f[0]), "{r}");
        if f[1] != "geomean" && f[3] == "glibc" {
            assert_eq!(f[4], "ok", "glibc must pass: {r}");
            assert!(f[6].parse::<f64>().is_ok_and(|t| t > 0.0), "{r}");
            assert!(f[9].parse::<f64>().is_ok_and(|k| k > 0.0), "{r}");
            assert_eq!(f[10], "1.0000", "{r}");
        }
    }
    for (s, w) in [
        ("rust", "glibc-simple"),
        ("rust", "large"),
        ("c", "glibc-simple"),
    ] {
        assert!(
            rows.iter().any(|r| r.starts_with(&format!("{s},{w},"))),
            "no {s}/{w} row in\n{csv}"
        );
    }
    assert!(
        !rows.iter().any(|r| r.starts_with("c,large,")),
        "filter ignored"
    );
    let svg = std::fs::read_to_string(out.join("results.svg")).expect("results.svg");
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("<rect") && svg.contains("glibc-simple"));
    assert!(Path::new(&out.join("results.txt")).exists());
    let _ = std::fs::remove_dir_all(&out);
}
