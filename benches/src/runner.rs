//! Spawning one measured process: wall time, peak RSS (from `wait4`), a timeout, and the
//! real-program jobs of the last section.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One process to run.
pub struct Job {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub preload: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    /// The process prints `ok NANOS CHECKSUM` (workers); else the whole process is timed and
    /// its standard output is the checksum.
    pub internal: bool,
}

impl Job {
    pub fn internal(program: PathBuf, args: Vec<String>) -> Job {
        Job {
            program,
            args,
            preload: None,
            cwd: None,
            internal: true,
        }
    }
    pub fn external(program: PathBuf, args: Vec<String>) -> Job {
        Job {
            internal: false,
            ..Job::internal(program, args)
        }
    }
}

/// What one run measured.
pub struct Measure {
    pub secs: f64,
    pub rss_kib: u64,
    pub checksum: u64,
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn tail(b: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(&b[b.len().saturating_sub(n)..]).into_owned();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut v);
        }
        v
    })
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGFPE => "SIGFPE".into(),
        s => format!("signal {s}"),
    }
}

/// Runs `job` to the end (or kills it after `timeout`); `Err` says what went wrong in one line.
pub fn run_job(job: &Job, timeout: Duration) -> Result<Measure, String> {
    // Through the launcher (see c/launch.c) when there is one: it measures the peak RSS
    // without the harness's own address space in it, and sets LD_PRELOAD for the job only.
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let launch =
        option_env!("UMEM_BENCH_LAUNCH").filter(|l| !l.is_empty() && Path::new(l).exists());
    let report = std::env::temp_dir().join(format!(
        "umem-bench-{}-{}.report",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&report);
    let mut cmd = match launch {
        Some(l) => {
            let mut c = Command::new(l);
            c.arg(&report)
                .arg(job.preload.as_deref().unwrap_or(Path::new("-")))
                .arg(&job.program);
            c
        }
        None => {
            let mut c = Command::new(&job.program);
            if let Some(p) = &job.preload {
                c.env("LD_PRELOAD", p);
            }
            c
        }
    };
    cmd.args(&job.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if launch.is_some() || job.preload.is_none() {
        cmd.env_remove("LD_PRELOAD");
    }
    if let Some(d) = &job.cwd {
        cmd.current_dir(d);
    }
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", job.program.display()))?;
    let pid = child.id() as libc::pid_t;
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let finished = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let dog = {
        let finished = finished.clone();
        let killed = killed.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !finished.load(Ordering::Acquire) {
                if start.elapsed() > timeout {
                    killed.store(true, Ordering::Release);
                    // SAFETY: plain syscall on the child's process group (the launcher and
                    // the job), which lives while `finished` is false (the reaper sets it
                    // right after wait4 returns).
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            finished.store(true, Ordering::Release);
            return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    finished.store(true, Ordering::Release);
    let _ = dog.join();
    drop(child); // already reaped; std does not wait on drop
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let mut rss_kib = ru.ru_maxrss as u64;
    let mut wall = wall;
    if killed.load(Ordering::Acquire) {
        let _ = std::fs::remove_file(&report);
        return Err(format!("timed out after {} s", timeout.as_secs()));
    }
    if launch.is_some() {
        // "rss_kib wall_ns exit_code signal"
        let r = std::fs::read_to_string(&report).unwrap_or_default();
        let _ = std::fs::remove_file(&report);
        let f: Vec<i64> = r
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() == 4 {
            rss_kib = f[0] as u64;
            wall = f[1] as f64 / 1e9;
            if f[3] != 0 {
                return Err(format!(
                    "killed by {} {}",
                    signal_name(f[3] as i32),
                    tail(&stderr, 200)
                ));
            }
        } else {
            return Err(format!(
                "the launcher wrote no report: {}",
                tail(&stderr, 300)
            ));
        }
    }
    if libc::WIFSIGNALED(status) {
        return Err(format!(
            "killed by {} {}",
            signal_name(libc::WTERMSIG(status)),
            tail(&stderr, 200)
        ));
    }
    let code = libc::WEXITSTATUS(status);
    if job.internal {
        let line = String::from_utf8_lossy(&stdout);
        let line = line.lines().last().unwrap_or("").to_string();
        let mut f = line.split_whitespace();
        if code == 0 && f.next() == Some("ok") {
            let ns: u128 = f
                .next()
                .and_then(|x| x.parse().ok())
                .ok_or("bad worker output")?;
            let sum: u64 = f
                .next()
                .and_then(|x| x.parse().ok())
                .ok_or("bad worker output")?;
            return Ok(Measure {
                secs: ns as f64 / 1e9,
                rss_kib,
                checksum: sum,
            });
        }
        if line.starts_with("FAIL") {
            return Err(line);
        }
        return Err(format!(
            "exit status {code}: {} {}",
            tail(&stdout, 200),
            tail(&stderr, 200)
        ));
    }
    if code != 0 {
        return Err(format!("exit status {code}: {}", tail(&stderr, 300)));
    }
    Ok(Measure {
        secs: wall,
        rss_kib,
        checksum: fnv(&stdout),
    })
}

/// A real program of the last section.
pub struct Program {
    pub name: &'static str,
    pub threads: usize,
    pub about: String,
    /// Shell command run in `dir` (with LD_PRELOAD set, so `sh` and every child use the malloc).
    pub cmd: String,
    pub dir: PathBuf,
}

const PY: &str = r#"
import json, sys, threading, hashlib
n = int(sys.argv[1]); t = int(sys.argv[2])
d = {}
for i in range(n):
    d["k%07d" % ((i * 7919) % n)] = {"i": i, "s": str(i) * (i % 7), "l": list(range(i % 11))}
s = json.dumps(d, sort_keys=True)
back = json.loads(s)
assert back == d
keys = sorted(d, key=lambda k: (len(d[k]["s"]), k))
h = hashlib.sha256(s.encode()).hexdigest()
out = [None] * t
def work(j):
    acc = []
    for i in range(n // t):
        acc.append(("%d-%d" % (j, i)) * (i % 5))
        if len(acc) > 1000:
            acc = sorted(acc)[500:]
    out[j] = len(acc)
ths = [threading.Thread(target=work, args=(j,)) for j in range(t)]
for x in ths: x.start()
for x in ths: x.join()
print(h, keys[0], keys[-1], out)
"#;

const PERL: &str = r#"
my $n = $ARGV[0]; my %h;
for my $i (0..$n-1) { $h{"k" . (($i * 7919) % $n)} = join(",", ($i) x ($i % 9)); }
my @k = sort { length($h{$a}) <=> length($h{$b}) or $a cmp $b } keys %h;
my $s = 0; for my $k (@k) { $s += length($h{$k}); delete $h{$k} if $s % 3 == 0; }
print scalar(keys %h), " $s $k[0] $k[-1]\n";
"#;

/// The programs found on this machine (or why each is skipped), with their inputs written
/// under `work`.
pub fn programs(work: &Path, scale: f64, threads: usize) -> Vec<Result<Program, String>> {
    let mut v = Vec::new();
    let _ = std::fs::create_dir_all(work);
    let n = |base: f64| ((base * scale) as usize).max(1000);
    let have = |c: &str| crate::machine::which(c).is_some();
    let write = |name: &str, body: &str| -> Result<(), String> {
        std::fs::write(work.join(name), body)
            .map_err(|e| format!("cannot write {}: {e}", work.display()))
    };
    let prog = |name: &'static str, threads: usize, about: String, cmd: String| Program {
        name,
        threads,
        about,
        cmd,
        dir: work.to_path_buf(),
    };
    if have("python3") {
        v.push(write("work.py", PY).map(|_| {
            prog(
                "python3",
                threads,
                "python3: dict build, json dump/load, sort, string churn in threads".into(),
                format!("python3 work.py {} {threads}", n(100_000.0)),
            )
        }));
    } else {
        v.push(Err("programs/python3 skipped: python3 not installed".into()));
    }
    if have("perl") {
        v.push(write("work.pl", PERL).map(|_| {
            prog(
                "perl",
                1,
                "perl: hash build, sort by value length, deletes".into(),
                format!("perl work.pl {}", n(150_000.0)),
            )
        }));
    } else {
        v.push(Err("programs/perl skipped: perl not installed".into()));
    }
    if have("sqlite3") {
        let rows = n(300_000.0);
        let sql = format!(
            "CREATE TABLE t(a INTEGER, b TEXT, c REAL);\n\
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < {rows})\n\
             INSERT INTO t SELECT (i*7919) % {rows}, printf('row-%08d-%s', i, substr('abcdefghij', 1 + i % 10)), i * 0.5 FROM s;\n\
             CREATE INDEX ta ON t(a);\nCREATE INDEX tb ON t(b);\n\
             SELECT count(*), sum(a), max(b) FROM t;\n\
             SELECT a % 100 AS g, count(*), group_concat(substr(b, 5, 3), '') FROM t GROUP BY g ORDER BY g LIMIT 5;\n\
             DELETE FROM t WHERE a % 3 = 0;\nSELECT count(*), min(b) FROM t;\n"
        );
        v.push(write("work.sql", &sql).map(|_| {
            prog(
                "sqlite3",
                1,
                "sqlite3 :memory:: bulk insert, two indexes, group by, delete".into(),
                "sqlite3 :memory: < work.sql".into(),
            )
        }));
    } else {
        v.push(Err("programs/sqlite3 skipped: sqlite3 not installed".into()));
    }
    if have("git") {
        let files = n(2000.0) / 4;
        let cmd = format!(
            "set -e; rm -rf repo; mkdir repo; cd repo; export GIT_AUTHOR_NAME=b GIT_AUTHOR_EMAIL=b@b \
             GIT_COMMITTER_NAME=b GIT_COMMITTER_EMAIL=b@b GIT_AUTHOR_DATE='2000-01-01T00:00:00Z' \
             GIT_COMMITTER_DATE='2000-01-01T00:00:00Z' GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1; \
             git init -q -b main .; i=0; while [ $i -lt {files} ]; do \
             printf 'file %d\\n%0500d\\n' $i $i > f$i.txt; i=$((i+1)); done; \
             git add .; git commit -q -m one; \
             i=0; while [ $i -lt {files} ]; do echo change >> f$i.txt; i=$((i+3)); done; \
             git commit -q -a -m two; git repack -q -a -d -f --threads={threads}; git fsck --no-progress --no-dangling; \
             git rev-parse HEAD; git count-objects -v | grep -v size"
        );
        v.push(Ok(prog(
            "git",
            threads,
            format!("git: init, add and commit {files} files, commit changes, repack -adf --threads={threads}, fsck"),
            cmd,
        )));
    } else {
        v.push(Err("programs/git skipped: git not installed".into()));
    }
    if have("sort") {
        let lines = n(600_000.0);
        let mut r = umem_bench::Rng::new(7);
        let mut s = String::with_capacity(lines * 24);
        for _ in 0..lines {
            s.push_str(&format!("{:016x} {}\n", r.next_u64(), r.below(1000)));
        }
        v.push(write("sort.in", &s).map(|_| {
            prog(
                "sort",
                threads,
                format!("coreutils sort of {lines} lines, --parallel={threads}"),
                format!("LC_ALL=C sort --parallel={threads} -S 64M -k2,2n -k1,1 sort.in | cksum"),
            )
        }));
    } else {
        v.push(Err("programs/sort skipped: sort not installed".into()));
    }
    v
}
