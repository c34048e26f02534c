//! `umem-bench`: runs every workload under every allocator in separate processes and reports
//! median wall time and peak RSS, ratios to glibc and to the best other allocator, and
//! geometric means,
//! as a terminal table, `results.csv`, `results.svg` and `results.txt` under
//! `<target dir>/umem-bench/`. See the library's theory statement for the worker protocol.

mod args;
mod machine;
mod report;
mod runner;
mod svg;

use args::parse_args;
use machine::{find_lib, load_warning, loadavg, machine_info, which};
use report::{Cell, Outcome, Row, Section};
use runner::{run_job, Job};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use umem_bench::workloads;

/// An allocator of one section: how to run a job under it, or why it is skipped.
#[derive(Clone)]
struct Alloc {
    name: &'static str,
    /// Rust side: the worker binary. C side and programs: the LD_PRELOAD library (None = glibc).
    path: Option<PathBuf>,
    skip: Option<String>,
}

/// One thing to measure.
struct Bench {
    section: Section,
    name: String,
    threads: usize,
    about: String,
    /// Builds the job for an allocator.
    job: Box<dyn Fn(&Alloc) -> Job>,
}

/// What `--quick` prints beside its results.
const QUICK_NOTE: &str = "--quick: small inputs and 3 runs; these numbers are for checking that every workload runs and passes, not for deciding which allocator is faster (run without --quick for that)";

/// The header as an indented block and each table under a bold title: ready to paste into
/// `docs/benchmarks.md` (the harness tables there are this file, pasted unchanged).
fn markdown(header: &str, tables: &str) -> String {
    let mut o = String::new();
    for l in header.lines() {
        o.push_str(&format!("    {l}\n"));
    }
    for block in tables.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut lines = block.trim().lines();
        if let Some(title) = lines.next() {
            o.push_str(&format!("\n**{title}**\n\n"));
        }
        for l in lines {
            o.push_str(l);
            o.push('\n');
        }
    }
    o
}

/// The cargo flags that select the profile whose output directory is `bin_dir`.
fn profile_flags(bin_dir: &Path) -> Vec<String> {
    match bin_dir.file_name().and_then(|n| n.to_str()) {
        Some("release") | None => vec!["--release".into()],
        Some("debug") => vec![],
        Some(p) => vec!["--profile".into(), p.into()],
    }
}

/// Runs `cargo build <profile of bin_dir> ARGS` in the workspace, into the target directory
/// this harness lives in (so CARGO_TARGET_DIR is respected).
fn cargo_build(bin_dir: &Path, args: &[&str]) -> Result<String, String> {
    let mut flags = profile_flags(bin_dir);
    flags.extend(args.iter().map(|a| a.to_string()));
    let how = format!("cargo build {}", flags.join(" "));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    let target = bin_dir.parent().map(Path::to_path_buf);
    match (root, target, which("cargo")) {
        (Some(root), Some(target), Some(cargo)) if root.join("Cargo.toml").exists() => {
            eprintln!("umem-bench: running `{how}` ...");
            let st = std::process::Command::new(cargo)
                .arg("build")
                .args(&flags)
                .current_dir(&root)
                .env("CARGO_TARGET_DIR", &target)
                .status();
            match st {
                Ok(s) if s.success() => Ok(how),
                _ => Err(format!("`{how}` failed")),
            }
        }
        _ => Err(format!("cannot run `{how}` (no cargo or no workspace)")),
    }
}

/// The worker binaries beside the harness: `cargo run -p umem-bench` builds only the harness,
/// so every run (unless `--no-build`) has cargo bring the other bins of the package up to
/// date — a no-op when nothing changed, and never a measurement of stale code.
fn ensure_workers(bin_dir: &Path, build: bool, notes: &mut Vec<String>) {
    if !build {
        return;
    }
    match cargo_build(bin_dir, &["-p", "umem-bench", "--bins"]) {
        Ok(how) => notes.push(format!("worker binaries brought up to date with `{how}`")),
        Err(e) => {
            notes.push(format!("{e}; trying without umem"));
            if let Ok(how) = cargo_build(
                bin_dir,
                &["-p", "umem-bench", "--bins", "--no-default-features"],
            ) {
                notes.push(format!("built the peer workers with `{how}`"));
            }
        }
    }
}

/// `libumem.so` next to the harness (`target/release/libumem.so`); cargo brings it up to
/// date first (unless `--no-build`, which takes it as it is).
fn libumem(bin_dir: &Path, build: bool, notes: &mut Vec<String>) -> Result<PathBuf, String> {
    let so = bin_dir.join("libumem.so");
    if so.exists() && !build {
        return Ok(so);
    }
    let how = format!(
        "cargo build {} -p umem-preload",
        profile_flags(bin_dir).join(" ")
    );
    if !build {
        return Err(format!("{} is missing (run `{how}`)", so.display()));
    }
    match cargo_build(bin_dir, &["-p", "umem-preload"]) {
        Ok(how) if so.exists() => {
            notes.push(format!("{} brought up to date with `{how}`", so.display()));
            Ok(so)
        }
        Ok(_) => Err(format!("`{how}` did not leave {}", so.display())),
        Err(e) => Err(format!("{e}, so {} is missing", so.display())),
    }
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("umem-bench: {e}");
            std::process::exit(2);
        }
    };
    let exe = std::env::current_exe().expect("current_exe");
    let bin_dir = exe.parent().expect("bin dir").to_path_buf();
    // <target>/release/umem-bench: results go to <target>/umem-bench (CARGO_TARGET_DIR respected).
    let target_dir = bin_dir
        .parent()
        .map_or_else(|| bin_dir.clone(), Path::to_path_buf);
    let out_dir = o
        .out
        .clone()
        .unwrap_or_else(|| target_dir.join("umem-bench"));
    let mut notes: Vec<String> = Vec::new();

    // ---------------------------------------------------------------- allocators
    let want_rust = o.sections.is_empty() || o.sections.iter().any(|s| s == "rust");
    if want_rust && !o.list {
        ensure_workers(&bin_dir, o.build, &mut notes);
    }
    let worker = |name: &str| {
        let p = bin_dir.join(format!("umem-bench-worker-{name}"));
        if p.exists() {
            (Some(p), None)
        } else {
            let why = if name == "umem" {
                format!(
                    "{} is missing: build with the `umem` feature (the default)",
                    p.display()
                )
            } else {
                format!(
                    "{} is missing: run `cargo build --release -p umem-bench`",
                    p.display()
                )
            };
            (None, Some(why))
        }
    };
    let mk = |name: &'static str, (path, skip): (Option<PathBuf>, Option<String>)| Alloc {
        name,
        path,
        skip,
    };
    let rust_allocs = vec![
        mk("glibc", worker("system")),
        mk("umem", worker("umem")),
        mk("mimalloc", worker("mimalloc")),
        mk("jemalloc", worker("jemalloc")),
    ];
    let want_c = o.sections.is_empty() || o.sections.iter().any(|s| s == "c" || s == "programs");
    let want_umem = o.allocs.is_empty() || o.allocs.iter().any(|a| a == "umem");
    let umem_so = if want_c && want_umem {
        libumem(&bin_dir, o.build, &mut notes)
    } else {
        Err("not requested".into())
    };
    let lib = |name: &'static str, c: &[&str], pkg: &str| match find_lib(c) {
        Some(p) => Alloc {
            name,
            path: Some(p),
            skip: None,
        },
        None => Alloc {
            name,
            path: None,
            skip: Some(format!(
                "{} not installed (apt-get install {pkg}, or ci/install-deps)",
                c[0]
            )),
        },
    };
    let preload_allocs = vec![
        Alloc {
            name: "glibc",
            path: None,
            skip: None,
        },
        match &umem_so {
            Ok(p) => Alloc {
                name: "umem",
                path: Some(p.clone()),
                skip: None,
            },
            Err(e) => Alloc {
                name: "umem",
                path: None,
                skip: Some(e.clone()),
            },
        },
        lib(
            "mimalloc",
            &["libmimalloc.so.2", "libmimalloc.so"],
            "libmimalloc2.0",
        ),
        lib(
            "jemalloc",
            &["libjemalloc.so.2", "libjemalloc.so"],
            "libjemalloc2",
        ),
        lib(
            "tcmalloc",
            &["libtcmalloc_minimal.so.4", "libtcmalloc.so.4"],
            "libgoogle-perftools4",
        ),
    ];
    let keep_alloc = |a: &Alloc| {
        a.name == "glibc" || o.allocs.is_empty() || o.allocs.iter().any(|x| x == a.name)
    };
    let rust_allocs: Vec<Alloc> = rust_allocs.into_iter().filter(keep_alloc).collect();
    let preload_allocs: Vec<Alloc> = preload_allocs.into_iter().filter(keep_alloc).collect();

    // ---------------------------------------------------------------- benches
    let threads = o.threads;
    let scale = o.scale;
    let seed = o.seed;
    let threads_of = |w: &workloads::Workload| {
        if !w.threads {
            1
        } else if w.name == "xmalloc" || w.name == "channel" {
            threads.max(2)
        } else {
            threads
        }
    };
    let mut benches: Vec<Bench> = Vec::new();
    for w in workloads::ALL {
        let name = w.name;
        benches.push(Bench {
            section: Section::Rust,
            name: name.to_string(),
            threads: threads_of(w),
            about: w.about.to_string(),
            job: Box::new(move |a: &Alloc| {
                Job::internal(
                    a.path.clone().expect("worker path"),
                    vec![
                        name.into(),
                        threads.to_string(),
                        scale.to_string(),
                        seed.to_string(),
                    ],
                )
            }),
        });
    }
    let cwork = option_env!("UMEM_BENCH_CWORK").unwrap_or("");
    let c_names = [
        "larson",
        "xmalloc",
        "cache-scratch",
        "cache-thrash",
        "mstress",
        "sh6bench",
        "glibc-simple",
        "glibc-thread",
        "large",
        "realloc",
        "heap-growth",
        "huge",
        "tiny-bursts",
        "mixed-realloc",
    ];
    if cwork.is_empty() || !Path::new(cwork).exists() {
        notes.push(
            "C-ABI section skipped: c/cwork.c was not compiled (no `cc` at build time?)".into(),
        );
    } else {
        for name in c_names {
            let w = workloads::find(name).expect("C workload has a Rust twin");
            benches.push(Bench {
                section: Section::C,
                name: name.to_string(),
                threads: threads_of(w),
                about: w.about.to_string(),
                job: Box::new(move |a: &Alloc| {
                    let mut j = Job::internal(
                        PathBuf::from(cwork),
                        vec![
                            name.into(),
                            threads.to_string(),
                            scale.to_string(),
                            seed.to_string(),
                        ],
                    );
                    j.preload = a.path.clone();
                    j
                }),
            });
        }
    }
    let work = out_dir.join("work");
    for p in runner::programs(&work, scale, threads) {
        match p {
            Ok(p) => {
                let cmd = p.cmd.clone();
                let dir = p.dir.clone();
                benches.push(Bench {
                    section: Section::Programs,
                    name: p.name.to_string(),
                    threads: p.threads,
                    about: p.about,
                    job: Box::new(move |a: &Alloc| {
                        let mut j =
                            Job::external(PathBuf::from("/bin/sh"), vec!["-c".into(), cmd.clone()]);
                        j.cwd = Some(dir.clone());
                        j.preload = a.path.clone();
                        j
                    }),
                });
            }
            Err(note) => notes.push(note),
        }
    }
    benches.retain(|b| {
        let id = format!("{}/{}", b.section.key(), b.name);
        (o.sections.is_empty() || o.sections.iter().any(|s| s == b.section.key()))
            && (o.filters.is_empty() || o.filters.iter().any(|f| id.contains(f.as_str())))
    });

    if o.list {
        for b in &benches {
            println!(
                "{:<28} {:>2} thr  {}",
                format!("{}/{}", b.section.key(), b.name),
                b.threads,
                b.about
            );
        }
        for (s, al) in [("rust", &rust_allocs), ("c/programs", &preload_allocs)] {
            for a in al.iter() {
                match (&a.skip, &a.path) {
                    (Some(why), _) => println!("{s:<10} {:<9} skipped: {why}", a.name),
                    (None, Some(p)) => println!("{s:<10} {:<9} {}", a.name, p.display()),
                    (None, None) => println!("{s:<10} {:<9} (no LD_PRELOAD)", a.name),
                }
            }
        }
        let _ = std::fs::remove_dir_all(&work);
        return;
    }
    if benches.is_empty() {
        eprintln!("umem-bench: no workload matches {:?}", o.filters);
        std::process::exit(2);
    }

    // ---------------------------------------------------------------- header
    let info = machine_info();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut warnings: Vec<String> = Vec::new();
    if o.quick {
        warnings.push(QUICK_NOTE.to_string());
    }
    warnings.extend(load_warning("start", loadavg(), cores));
    let started = Instant::now();
    let mut header = String::new();
    header.push_str("umem-bench");
    header.push_str(if o.quick { " --quick" } else { "" });
    header.push('\n');
    for (k, v) in &info {
        header.push_str(&format!("  {k:<22} {v}\n"));
    }
    header.push_str(&format!(
        "  {:<22} {} runs per cell (median), seed {}, scale {}, {} threads for multi-threaded workloads\n",
        "method", o.runs, o.seed, o.scale, o.threads
    ));
    header.push_str(
        "  rust section: the same workload code as one worker binary per #[global_allocator] (glibc = std::alloc::System)\n  c section and programs: the C malloc family under LD_PRELOAD (glibc = no preload)\n  time: the workload's own wall time (programs: whole process); rss: peak resident set of the process\n  columns: each allocator's median and its ratio to glibc; umem/glibc; umem/best other: umem over the best of the other allocators (mimalloc, jemalloc, tcmalloc; glibc is never counted there, it has its own column), and which one it was\n",
    );
    eprint!("{header}");
    for w in &warnings {
        eprintln!("  {w}");
    }
    for n in &notes {
        eprintln!("  note: {n}");
    }
    let mut said = Vec::new();
    for a in rust_allocs.iter().chain(preload_allocs.iter()) {
        if let Some(why) = &a.skip {
            if !said.contains(why) {
                eprintln!("  note: {} skipped: {why}", a.name);
                said.push(why.clone());
            }
        }
    }

    // ---------------------------------------------------------------- run
    let tty = std::io::stderr().is_terminal();
    let timeout = Duration::from_secs(if o.quick { 30 } else { 120 });
    let total: usize = benches
        .iter()
        .map(|b| {
            o.runs
                * if b.section == Section::Rust {
                    rust_allocs.len()
                } else {
                    preload_allocs.len()
                }
        })
        .sum();
    let mut done = 0usize;
    let mut rows: Vec<Row> = Vec::new();
    // Allocators that hang twice in a section are not run again in it.
    let mut timeouts: BTreeMap<(Section, &'static str), usize> = BTreeMap::new();
    for b in &benches {
        let allocs = if b.section == Section::Rust {
            &rust_allocs
        } else {
            &preload_allocs
        };
        let mut cells: Vec<Cell> = allocs
            .iter()
            .map(|a| Cell::new(a.name, a.skip.clone()))
            .collect();
        for run in 0..o.runs {
            // Rotate the order each run so no allocator always runs first (or after a hog).
            for k in 0..allocs.len() {
                let ai = (k + run) % allocs.len();
                let a = &allocs[ai];
                done += 1;
                let cell = &mut cells[ai];
                if !matches!(cell.outcome, Outcome::Pending) {
                    continue;
                }
                if timeouts.get(&(b.section, a.name)).copied().unwrap_or(0) >= 2 {
                    cell.outcome = Outcome::Skipped(format!(
                        "hung twice before in the {} section",
                        b.section.key()
                    ));
                    continue;
                }
                if tty {
                    eprint!(
                        "\r\x1b[K[{done:>4}/{total}] {:<26} {:<9} run {}/{} ",
                        format!("{}/{}", b.section.key(), b.name),
                        a.name,
                        run + 1,
                        o.runs
                    );
                    let _ = std::io::stderr().flush();
                }
                let r = run_job(&(b.job)(a), timeout);
                match r {
                    Ok(m) => cell.add(m),
                    Err(e) => {
                        if e.contains("timed out") {
                            *timeouts.entry((b.section, a.name)).or_default() += 1;
                        }
                        cell.outcome = Outcome::Failed(e);
                    }
                }
            }
        }
        for c in cells.iter_mut() {
            if matches!(c.outcome, Outcome::Pending) {
                c.outcome = if c.times.is_empty() {
                    Outcome::Skipped("no runs".into())
                } else {
                    Outcome::Ok
                };
            }
        }
        report::cross_check(&mut cells);
        let row = Row {
            section: b.section,
            name: b.name.clone(),
            threads: b.threads,
            about: b.about.clone(),
            cells,
        };
        if tty {
            eprint!("\r\x1b[K");
        }
        eprintln!("[{done:>4}/{total}] {}", report::progress_line(&row));
        rows.push(row);
    }
    let elapsed = started.elapsed();
    let table = report::text_tables(&rows);
    let mut failures = report::failures(&rows);
    failures.extend(notes.iter().map(|n| format!("note: {n}")));
    let mut text = String::new();
    text.push_str(&header);
    text.push_str(&format!(
        "  {:<22} {:.1} s\n",
        "harness wall time",
        elapsed.as_secs_f64()
    ));
    let end_load = loadavg();
    text.push_str(&format!(
        "  {:<22} {}\n",
        "load average at end",
        end_load.as_ref().map_or("", |l| l.1.as_str())
    ));
    warnings.extend(load_warning("end", end_load, cores));
    for w in &warnings {
        text.push_str(&format!("  {w}\n"));
    }
    text.push('\n');
    text.push_str(&table);
    text.push_str("Workloads:\n");
    for r in &rows {
        let line = format!("  {:<18} {}\n", r.name, r.about);
        if !text.contains(&line) {
            text.push_str(&line);
        }
    }
    if !failures.is_empty() {
        text.push_str("\nFailures and skips:\n");
        for f in &failures {
            text.push_str(&format!("  {f}\n"));
        }
    }
    for w in &warnings {
        text.push_str(&format!("\n{w}"));
    }
    if !warnings.is_empty() {
        text.push('\n');
    }
    println!("\n{text}");
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("umem-bench: cannot create {}: {e}", out_dir.display());
        std::process::exit(1);
    }
    let title = format!(
        "umem-bench{}: {} · {} cores · glibc {} · {} runs, {} threads",
        if o.quick { " --quick" } else { "" },
        info[1].1,
        info[2].1,
        info[5].1,
        o.runs,
        o.threads
    );
    let files = [
        ("results.csv", report::csv(&rows)),
        ("results.svg", svg::svg(&rows, &title, &warnings)),
        ("results.txt", text.clone()),
        (
            "results.md",
            markdown(&text[..text.find("\n\n").unwrap_or(0)], &table),
        ),
    ];
    for (f, body) in files {
        let p = out_dir.join(f);
        if let Err(e) = std::fs::write(&p, body) {
            eprintln!("umem-bench: cannot write {}: {e}", p.display());
            std::process::exit(1);
        }
        eprintln!("wrote {}", p.display());
    }
    let _ = std::fs::remove_dir_all(&work);
}
