//! The harness's command line: its usage text, the options it takes and their defaults.

use std::path::PathBuf;

const USAGE: &str = "\
umem-bench: umem against glibc malloc, mimalloc, jemalloc and tcmalloc

usage: cargo run --release -p umem-bench -- [options]

  --quick           small inputs, 3 runs: checks that everything runs (CI); its numbers are
                    for checking, not for deciding
  --runs N          runs per workload and allocator; the median is reported (default 5)
  --threads N       threads of the multi-threaded workloads (default: CPU count, at least 2)
  --filter P[,P]    only workloads whose `section/name` contains one of the patterns,
                    e.g. `larson`, `c/`, `programs/`, `rust/glibc`
  --alloc A[,A]     only these allocators (glibc, the baseline, always runs)
  --sections S[,S]  rust, c, programs (default: all three)
  --seed N          seed of every workload (default 42)
  --scale X         multiply every workload's operation count by X
  --out DIR         where results go (default: <target dir>/umem-bench)
  --no-build        do not run cargo to build missing worker binaries or libumem.so
  --list            list workloads and allocators and exit
";

/// The command line, parsed.
pub struct Opts {
    pub quick: bool,
    pub runs: usize,
    pub threads: usize,
    pub filters: Vec<String>,
    pub allocs: Vec<String>,
    pub sections: Vec<String>,
    pub seed: u64,
    pub scale: f64,
    pub out: Option<PathBuf>,
    pub build: bool,
    pub list: bool,
}

/// Parses the command line (defaults filled in, `--help` printed and exited on).
pub fn parse_args() -> Result<Opts, String> {
    let ncpu = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut o = Opts {
        quick: false,
        runs: 0,
        threads: ncpu.max(2),
        filters: Vec::new(),
        allocs: Vec::new(),
        sections: Vec::new(),
        seed: 42,
        scale: 0.0,
        out: None,
        build: true,
        list: false,
    };
    let mut args = std::env::args().skip(1);
    let list = |s: String| -> Vec<String> {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--runs" => o.runs = val("--runs")?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--threads" => {
                o.threads = val("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "--filter" => o.filters.extend(list(val("--filter")?)),
            "--alloc" => o.allocs.extend(list(val("--alloc")?)),
            "--sections" => o.sections.extend(list(val("--sections")?)),
            "--seed" => o.seed = val("--seed")?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--scale" => {
                o.scale = val("--scale")?
                    .parse()
                    .map_err(|e| format!("--scale: {e}"))?
            }
            "--out" => o.out = Some(PathBuf::from(val("--out")?)),
            "--no-build" => o.build = false,
            "--list" => o.list = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    if o.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if o.runs == 0 {
        o.runs = if o.quick { 3 } else { 5 };
    }
    if o.scale <= 0.0 {
        o.scale = if o.quick { 0.1 } else { 1.0 };
    }
    for s in &o.sections {
        if !["rust", "c", "programs"].contains(&s.as_str()) {
            return Err(format!("unknown section {s:?} (rust, c, programs)"));
        }
    }
    Ok(o)
}
