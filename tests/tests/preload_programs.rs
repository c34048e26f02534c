//! Real programs under LD_PRELOAD=libumem.so: their stdout must equal a run
//! without the preload, and the preloaded run must leave umem's UMEM_STATS
//! table in a file (proof that umem served the process). Each is run a
//! second time with `UMEM_DEBUG=audit UMEM_OPTIONS=findleaks` (issue 12):
//! the same output, exit status 0 — a leak report on stderr is information,
//! not a failure (what a program leaves unreferenced at exit, or keeps only
//! in memory the scan cannot see, such as its own mmap'd pools), and may be
//! missing (coreutils close stderr before they exit).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use umem_testkit::preload::{audit_stacks, have, run, scratch, show, stats_file, stats_seen_in};

/// Runs `make()` with and without the preload and compares stdout.
fn compare(what: &str, make: impl Fn(bool) -> Command) {
    let base = run(make(false), false);
    assert!(
        base.status.success(),
        "{what} without preload:\n{}",
        show(&base)
    );
    let mut c = make(true);
    let stats = stats_file(&what.replace([' ', '/'], "_"));
    c.env("UMEM_STATS", &stats);
    let o = run(c, true);
    assert!(o.status.success(), "{what} with preload:\n{}", show(&o));
    assert!(
        stats_seen_in(&stats),
        "{what}: umem not in use (no stats table in {})\n{}",
        stats.display(),
        show(&o)
    );
    let _ = std::fs::remove_file(&stats);
    assert!(
        base.stdout == o.stdout,
        "{what}: output differs\n--- glibc ---\n{}\n--- umem ---\n{}",
        String::from_utf8_lossy(&base.stdout),
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(!o.stdout.is_empty(), "{what}: no output");
    let mut c = make(true);
    c.env("UMEM_DEBUG", "audit")
        .env("UMEM_OPTIONS", "findleaks");
    let a = run(c, true);
    assert!(
        a.status.success(),
        "{what} with UMEM_DEBUG=audit UMEM_OPTIONS=findleaks:\n{}",
        show(&a)
    );
    assert!(
        base.stdout == a.stdout,
        "{what}: output differs under audit\n--- glibc ---\n{}\n--- umem audit ---\n{}",
        String::from_utf8_lossy(&base.stdout),
        String::from_utf8_lossy(&a.stdout)
    );
}

fn require(prog: &str) {
    assert!(have(prog), "{prog} is not installed (run ci/install-deps)");
}

const PY_DICT_JSON_SORT: &str = r#"
import json, hashlib, random
random.seed(42)
d = {f"k{i}": [i, str(i) * 3, {"x": i * 1.5, "y": [i] * (i % 7)}] for i in range(60000)}
s = json.dumps(d, sort_keys=True)
d2 = json.loads(s)
assert d2 == json.loads(json.dumps(d))
keys = sorted(d2, key=lambda k: (len(k), k[::-1]))
words = ["".join(random.choice("abcdefgh") for _ in range(random.randint(1, 20))) for _ in range(60000)]
words.sort()
big = [bytes(range(256)) * (i % 40) for i in range(3000)]
print(len(s), hashlib.sha256(s.encode()).hexdigest(), keys[:3], keys[-3:])
print(hashlib.md5("".join(words).encode()).hexdigest(), sum(map(len, big)))
"#;

const PY_THREADS: &str = r#"
import threading, queue
q = queue.Queue(maxsize=500)
res = []
lock = threading.Lock()
def prod(n, base):
    for i in range(n):
        q.put({"i": i + base, "s": "x" * (i % 700), "l": list(range(i % 60))})
    q.put(None)
def cons():
    tot = 0
    while True:
        o = q.get()
        if o is None:
            break
        tot += o["i"] + len(o["s"]) + sum(o["l"])
    with lock:
        res.append(tot)
def local(n):
    d = {}
    for i in range(n):
        d[str(i)] = [i] * (i % 30)
        if i % 3 == 0:
            del d[str(i // 2)]
    with lock:
        res.append(len(d))
ts = [threading.Thread(target=prod, args=(15000, k * 100000)) for k in range(2)]
ts += [threading.Thread(target=cons) for _ in range(2)]
ts += [threading.Thread(target=local, args=(40000,)) for _ in range(2)]
for t in ts: t.start()
for t in ts: t.join()
print(sum(res), len(res))
"#;

#[test]
fn python_dict_json_sort() {
    require("python3");
    compare("python3 dict/json/sort", |_| {
        let mut c = Command::new("python3");
        c.args(["-c", PY_DICT_JSON_SORT]);
        c
    });
}

#[test]
fn python_threads() {
    require("python3");
    compare("python3 threads", |_| {
        let mut c = Command::new("python3");
        c.args(["-c", PY_THREADS]);
        c
    });
}

/// Frees one block twice through ctypes: a heap bug inside a distribution binary.
const PY_DOUBLE_FREE: &str = r#"
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
p = libc.malloc(40)
print(hex(p), flush=True)
libc.free(p)
libc.free(p)
"#;

/// Audit stacks are useful in an ordinary distribution binary, built with
/// -O2 and no frame pointers (issue 12): Debian's python3 frees a block
/// twice through ctypes, and the report's allocating and freeing stacks walk
/// from libffi through the interpreter's evaluator down to
/// `__libc_start_main`, each frame named `module!symbol+0xoff` where the
/// module exports the symbol.
#[test]
fn python_double_free_report_walks_the_interpreter() {
    require("python3");
    let mut c = Command::new("python3");
    c.args(["-c", PY_DOUBLE_FREE]).env("UMEM_DEBUG", "audit=40");
    let o = run(c, true);
    assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let ptr = out.lines().next().expect("the pointer").trim();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("heap error: double free"), "{}", show(&o));
    assert!(err.contains(&format!("buffer  {ptr},")), "{}", show(&o));
    let (allocated, freed) = audit_stacks(&err, ptr);
    for stack in [allocated, freed] {
        let frames: Vec<&str> = stack
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    "))
            .collect();
        let names = |s: &str| frames.iter().any(|f| f.contains(s));
        assert!(
            names("!_PyEval_EvalFrameDefault+") && names("!__libc_start_main+"),
            "the stack does not reach from the interpreter to main's caller:\n{}",
            show(&o)
        );
        assert!(frames.len() >= 8, "{} frames:\n{}", frames.len(), show(&o));
    }
}

#[test]
fn perl_hash_sort_strings() {
    require("perl");
    let prog = r#"
my %h;
for my $i (1..120000) { $h{"key$i"} = join(",", $i, $i * 2, "v" x ($i % 50)); }
my @k = sort { $h{$a} cmp $h{$b} or $a cmp $b } keys %h;
my $s = 0; $s += length($h{$_}) for @k;
delete $h{"key$_"} for grep { $_ % 3 } 1..120000;
print scalar(@k), " $s $k[0] $k[-1] ", scalar(keys %h), "\n";
my $str = ""; $str .= chr(65 + $_ % 26) x ($_ % 5) for 1..300000;
my @parts = split /ABC/, $str;
print length($str), " ", substr($str, 50000, 12), " ", scalar(@parts), "\n";
"#;
    compare("perl", |_| {
        let mut c = Command::new("perl");
        c.args(["-e", prog]);
        c
    });
}

#[test]
fn sqlite3_queries() {
    require("sqlite3");
    let sql = "
CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c REAL);
WITH RECURSIVE cnt(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM cnt WHERE x < 60000)
  INSERT INTO t SELECT x, printf('%08d-%s', x * 7919 % 100003, substr('abcdefghij', x % 10, 5)), x * 0.5 FROM cnt;
CREATE INDEX tb ON t(b);
SELECT count(*), sum(c), min(b), max(b) FROM t;
SELECT substr(b, 1, 2) AS g, count(*), avg(c) FROM t GROUP BY g ORDER BY g LIMIT 12;
SELECT group_concat(a) FROM (SELECT a FROM t WHERE b LIKE '%cdefg' ORDER BY b LIMIT 20);
DELETE FROM t WHERE a % 3 = 0;
VACUUM;
SELECT count(*), total(length(b)) FROM t;
";
    let dir = scratch("sqlite");
    compare("sqlite3", |pre| {
        let db = dir.join(if pre { "umem.db" } else { "glibc.db" });
        let _ = std::fs::remove_file(&db);
        let mut c = Command::new("sqlite3");
        c.arg(db).arg(sql);
        c
    });
}

fn write_c_file(path: &Path) {
    let mut s = String::from("#include <stdio.h>\n#include <string.h>\n");
    for i in 0..150 {
        s += &format!(
            "struct s{i} {{ int a[{n}]; double d; }};\n\
             static int f{i}(int x) {{ struct s{i} v; memset(&v, 0, sizeof v); \
             for (int k = 0; k < {n}; k++) v.a[k] = x * k + {i}; \
             int t = 0; for (int k = 0; k < {n}; k++) t ^= v.a[k] << (k % 7); \
             return t + (x > {i} ? f{j}(x - 1) : 0); }}\n",
            n = i % 13 + 1,
            j = if i == 0 { 0 } else { i - 1 }
        );
    }
    s += "int main(void) { long t = 0;\n";
    for i in 0..150 {
        s += &format!("  t += f{i}({});\n", i % 5);
    }
    s += "  printf(\"%ld\\n\", t); return 0; }\n";
    std::fs::write(path, s).unwrap();
}

#[test]
fn gcc_compiles_a_file() {
    require("gcc");
    let dir = scratch("gcc");
    let src = dir.join("prog.c");
    write_c_file(&src);
    compare("gcc -S", |_| {
        let mut c = Command::new("gcc");
        c.args(["-O2", "-S", "-o", "-"]).arg(&src);
        c
    });
    // Compile and link under the preload, then run the result.
    let exe = dir.join("prog");
    let mut c = Command::new("gcc");
    c.args(["-O2", "-o"]).arg(&exe).arg(&src);
    let o = run(c, true);
    assert!(o.status.success(), "gcc link under preload:\n{}", show(&o));
    let r = run(Command::new(&exe), false);
    assert!(r.status.success() && !r.stdout.is_empty(), "{}", show(&r));
}

const GIT_SCRIPT: &str = r#"
set -e
cd "$1"
rm -rf repo
git init -q repo
cd repo
for c in $(seq 1 12); do
  for f in $(seq 1 40); do
    awk -v c=$c -v f=$f 'BEGIN { for (i = 0; i < 300; i++) printf "line %d of file %d, commit %d\n", i, f, (i % 17 == 0 ? c : 0) }' > file$f.txt
  done
  mkdir -p dir$((c % 3))
  seq $c 3 $((c * 500)) > dir$((c % 3))/numbers$c
  git add -A
  git commit -q -m "commit $c"
done
git repack -a -d -f --threads=2 --window=20 -q
git fsck --strict --no-progress
git log --format='%H %s' | head -20
git rev-list --objects --all | sort | git hash-object --stdin
git ls-tree -r HEAD | wc -l
git diff --stat HEAD~5 HEAD | tail -1
git count-objects -v | grep -E '^(count|in-pack|packs)'
"#;

#[test]
fn git_commits_and_threaded_repack() {
    require("git");
    let dir = scratch("git");
    compare("git", |pre| {
        let d = dir.join(if pre { "umem" } else { "glibc" });
        std::fs::create_dir_all(&d).unwrap();
        let mut c = Command::new("sh");
        c.args(["-c", GIT_SCRIPT, "sh"])
            .arg(&d)
            .env("HOME", &d)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "umem")
            .env("GIT_AUTHOR_EMAIL", "umem@example.com")
            .env("GIT_COMMITTER_NAME", "umem")
            .env("GIT_COMMITTER_EMAIL", "umem@example.com")
            .env("GIT_AUTHOR_DATE", "1700000000 +0000")
            .env("GIT_COMMITTER_DATE", "1700000000 +0000");
        c
    });
}

#[test]
fn sort_large_input() {
    require("sort");
    let dir = scratch("sort");
    let input = dir.join("input.txt");
    let mut s = String::new();
    let mut x: u64 = 0x2545F4914F6CDD1D;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s += &format!(
            "{:x} {}\n",
            x % 1_000_003,
            "y".repeat((x >> 40) as usize % 30)
        );
    }
    std::fs::write(&input, s).unwrap();
    compare("sort", |_| {
        let mut c = Command::new("sort");
        c.args(["--parallel=2", "-S", "2M", "-T"])
            .arg(&dir)
            .arg(&input)
            .env("LC_ALL", "C");
        c
    });
}
