//! Whole-process helpers: locating (or building) the release `libumem.so`, compiling
//! the C test programs in `tests/c/` with the system `cc`, and running programs with and
//! without `LD_PRELOAD`.
//!
//! The library is looked up, in order, at `$UMEM_LIB`, then
//! `<target dir>/release/libumem.so` where the target directory is
//! `$CARGO_TARGET_DIR` or the one the running test binary was built into (its
//! grandparent directory). When none exists it is built once with
//! `cargo build --release -p umem-preload` into that target directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The workspace root (this crate lives in `<root>/testkit`).
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The cargo target directory the running test binary lives in.
pub fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        let p = PathBuf::from(d);
        if p.is_absolute() {
            return p;
        }
        return workspace_root().join(p);
    }
    // <target>/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("test binary is not inside a cargo target directory")
        .to_path_buf()
}

/// Path to the release `libumem.so`, building it if it does not exist yet.
pub fn libumem() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        if let Some(p) = std::env::var_os("UMEM_LIB") {
            let p = PathBuf::from(p);
            assert!(p.exists(), "UMEM_LIB={} does not exist", p.display());
            return p;
        }
        let target = target_dir();
        let lib = target.join("release").join("libumem.so");
        if !lib.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let st = Command::new(cargo)
                .args(["build", "--release", "-p", "umem-preload"])
                .env("CARGO_TARGET_DIR", &target)
                .current_dir(workspace_root())
                .status()
                .expect("running cargo build for libumem.so");
            assert!(st.success(), "cargo build --release -p umem-preload failed");
        }
        assert!(lib.exists(), "{} missing after build", lib.display());
        lib
    })
}

/// A scratch directory unique to this process and `tag`.
pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("umem-tests-{}-{}", std::process::id(), tag));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// Compiles `tests/c/<name>.c` with `cc` (once per process and name; tests
/// running in parallel share the executable) and returns its path.
pub fn compile_c(name: &str) -> PathBuf {
    compile_c_flags(name, &[])
}

/// [`compile_c`] with extra compiler flags (e.g. `-rdynamic`, so that
/// `dladdr` names the program's functions in audit stacks). A program is
/// always built with the flags of its first build in the process.
pub fn compile_c_flags(name: &str, flags: &[&str]) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let src = workspace_root()
        .join("tests")
        .join("c")
        .join(format!("{name}.c"));
    let dir = scratch(&format!("cc-{name}"));
    let exe = dir.join(name);
    let out = Command::new("cc")
        .args([
            "-O2",
            "-g",
            "-fno-builtin-malloc",
            "-Wall",
            "-pthread",
            "-o",
        ])
        .arg(&exe)
        .args(flags)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("running cc (install a C compiler: ci/install-deps)");
    assert!(
        out.status.success(),
        "cc {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    built.push((name.to_string(), exe.clone()));
    exe
}

/// Runs `cmd` with `LD_PRELOAD=libumem.so` when `preload` is set.
pub fn run(mut cmd: Command, preload: bool) -> Output {
    if preload {
        cmd.env("LD_PRELOAD", libumem());
    } else {
        cmd.env_remove("LD_PRELOAD");
    }
    cmd.output().expect("spawning test program")
}

/// Runs `tests/c/<name>.c` (compiled by [`compile_c`]) with `args` and `env`,
/// under umem when `preload`.
pub fn run_c(name: &str, args: &[&str], env: &[(&str, &str)], preload: bool) -> Output {
    run_c_flags(name, &[], args, env, preload)
}

/// [`run_c`] for a program built with extra compiler `flags`
/// ([`compile_c_flags`]; `-rdynamic` lets `dladdr` name its functions in
/// audit stacks).
pub fn run_c_flags(
    name: &str,
    flags: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
    preload: bool,
) -> Output {
    let mut c = Command::new(compile_c_flags(name, flags));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    run(c, preload)
}

/// Asserts that `tests/c/<name>.c` passes: exit 0 and its "`name`: OK" line,
/// under umem when `preload` (else under glibc: a failure there means the
/// program itself is wrong).
pub fn assert_c_passes(name: &str, args: &[&str], env: &[(&str, &str)], preload: bool) {
    let o = run_c(name, args, env, preload);
    let under = if preload { "libumem" } else { "glibc" };
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&format!("{name}: OK")),
        "{name} {args:?} {env:?} under {under}:\n{}",
        show(&o)
    );
}

/// Renders an Output for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Whether a program is installed (tests that need it fail loudly otherwise;
/// `ci/install-deps` installs them).
pub fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A fresh path for `UMEM_STATS=<path>`: umem appends its statistics table
/// to it at the exit of every process that used it (programs that close
/// stderr at exit, like coreutils, still leave it).
pub fn stats_file(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("umem-tests-{}-{}.stats", std::process::id(), tag));
    let _ = std::fs::remove_file(&p);
    p
}

/// Whether a statistics table shows that umem served allocations.
pub fn stats_seen_in(path: &Path) -> bool {
    match std::fs::read_to_string(path) {
        Ok(s) => s.contains("umem_alloc_") && s.contains("vmem arena"),
        Err(_) => false,
    }
}

/// Whether stderr carries umem's statistics table (`UMEM_STATS=1`).
pub fn stats_seen(stderr: &[u8]) -> bool {
    String::from_utf8_lossy(stderr).contains("umem_alloc_")
}

/// The stacks of buffer `ptr` in a debug report under `UMEM_DEBUG=audit`, from the buffer's
/// history after the report's one-line audit summary: `(allocated, last freed)`, each from its
/// heading line on.
pub fn audit_stacks<'a>(stderr: &'a str, ptr: &str) -> (&'a str, &'a str) {
    let at = stderr
        .find(&format!("umem: buffer {ptr} ("))
        .expect("buffer history");
    let h = &stderr[at..];
    let alloc = h.find("allocated by thread").expect("allocating stack");
    let freed = h.find("last freed by thread").expect("freeing stack");
    assert!(alloc < freed, "the allocating stack comes first:\n{h}");
    (&h[alloc..freed], &h[freed..])
}
