//! The machine the harness runs on: its description for the results' header, the load
//! average that says whether other work competed for the CPUs, and where its programs and
//! shared libraries are.

use std::path::{Path, PathBuf};

/// What the results were measured on: commit, CPU, cores, memory, kernel, glibc, rustc and
/// the load average at start, as (label, value) pairs in header order.
pub fn machine_info() -> Vec<(String, String)> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    let glibc = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) }
        .to_string_lossy()
        .into_owned();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or("unknown".into(), |k| {
            format!("{:.1} GiB", k as f64 / 1048576.0)
        });
    let load = loadavg().map(|l| l.1).unwrap_or_default();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    let git = |args: &[&str]| {
        root.as_ref().and_then(|r| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(r)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        })
    };
    let commit = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!("{c}{}", if dirty { " + uncommitted changes" } else { "" })
        }
        None => "unknown".into(),
    };
    vec![
        ("commit".into(), commit),
        ("cpu".into(), cpu),
        ("cores".into(), cores.to_string()),
        ("memory".into(), mem),
        ("kernel".into(), kernel),
        ("glibc".into(), glibc),
        (
            "rustc".into(),
            option_env!("UMEM_BENCH_RUSTC")
                .unwrap_or("unknown")
                .to_string(),
        ),
        ("load average at start".into(), load),
    ]
}

/// The 1-minute load average (/proc/loadavg's first field) and all three as text.
pub fn loadavg() -> Option<(f64, String)> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let three = s.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    let one = s.split_whitespace().next()?.parse().ok()?;
    Some((one, three))
}

/// A warning when the load average at `when` is above the core count: something else was
/// running, so the times are inflated and noisier than the medians suggest.
pub fn load_warning(when: &str, load: Option<(f64, String)>, cores: usize) -> Option<String> {
    let (one, three) = load?;
    (one > cores as f64).then(|| {
        format!(
            "WARNING: load average {three} at {when} is above the {cores} cores: other work competed for the CPUs, so these times are inflated and noisy; rerun on an idle machine before drawing conclusions"
        )
    })
}

/// The first of `candidates` (shared-library file names) found in the usual library
/// directories.
pub fn find_lib(candidates: &[&str]) -> Option<PathBuf> {
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ];
    for c in candidates {
        for d in dirs {
            let p = Path::new(d).join(c);
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}

/// `cmd` as `$PATH` finds it.
pub fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(cmd))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_above_the_core_count_warns() {
        let w = load_warning("start", Some((2.86, "2.86 1.30 0.51".into())), 2).unwrap();
        assert!(
            w.starts_with("WARNING: load average 2.86 1.30 0.51 at start"),
            "{w}"
        );
        assert!(w.contains("above the 2 cores"), "{w}");
        assert_eq!(load_warning("end", Some((1.9, "1.9 1 1".into())), 2), None);
        assert_eq!(load_warning("end", None, 2), None);
    }
}
