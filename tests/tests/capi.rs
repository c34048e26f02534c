//! libumem's C API (`include/umem.h`, `include/sys/vmem.h`) in `libumem.so`:
//! C programs in `tests/c/capi_*.c` compiled against the headers and LINKED
//! with `-lumem` (not preloaded), run as child processes.
//!
//! The library's soname is `libumem.so.0`, so each test links against a
//! scratch directory holding `libumem.so` and `libumem.so.0` symlinks to
//! the release build, with that directory as the program's rpath.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use umem_testkit::preload::{libumem, scratch, show};

/// A directory with `libumem.so` and `libumem.so.0` pointing at the build.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let lib = libumem();
        let d = scratch("capi-lib");
        for name in ["libumem.so", "libumem.so.0"] {
            std::os::unix::fs::symlink(lib, d.join(name)).expect("symlink libumem");
        }
        d
    })
}

fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../include")
}

/// Compiles `tests/c/<name>.c` (or, with `cxx`, as C++) against the headers
/// and links it with `-lumem`; once per process and name.
fn build(name: &str, cxx: bool) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let key = format!("{name}{}", if cxx { "+" } else { "" });
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| *n == key) {
        return p.clone();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("c")
        .join(format!("{name}.c"));
    let exe = scratch(&format!("capi-{key}")).join(name);
    let lib = lib_dir();
    let mut cmd = Command::new(if cxx { "c++" } else { "cc" });
    if cxx {
        cmd.args(["-x", "c++", "-fpermissive", "-w"]);
    } else {
        cmd.arg("-Wall");
    }
    cmd.args(["-O2", "-g", "-fno-builtin-malloc", "-pthread", "-I"])
        .arg(include_dir())
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lumem");
    let out = cmd.output().expect("running the C compiler");
    assert!(
        out.status.success(),
        "compiling {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    built.push((key, exe.clone()));
    exe
}

fn run(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(build(name, false));
    cmd.args(args)
        .env_remove("LD_PRELOAD")
        .env_remove("UMEM_DEBUG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawning a C test program")
}

fn ok(name: &str) -> Output {
    let o = run(name, &[], &[]);
    assert!(o.status.success(), "{name}: {}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("{name} ok")),
        "{name}: {}",
        show(&o)
    );
    o
}

fn aborted_with(o: &Output, what: &str) {
    assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{}", show(o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(what),
        "expected {what:?} on stderr: {}",
        show(o)
    );
}

#[test]
fn links_against_the_soname() {
    let exe = build("capi_doc", false);
    let out = Command::new("readelf").arg("-d").arg(&exe).output();
    if let Ok(out) = out {
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains("[libumem.so.0]"), "{s}");
    }
    let out = Command::new("readelf")
        .arg("-d")
        .arg(libumem())
        .output()
        .expect("readelf");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Library soname: [libumem.so.0]"));
}

#[test]
fn umem_alloc_family() {
    ok("capi_umem");
}

#[test]
fn nofail_callback_retries_then_exits_with_its_status() {
    let o = run("capi_umem", &["nofail"], &[]);
    assert_eq!(o.status.code(), Some(7), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nofail callback 1") && err.contains("nofail callback 2"),
        "{}",
        show(&o)
    );
    assert!(!err.contains("returned"), "{}", show(&o));
}

#[test]
fn nofail_without_callback_exits_255() {
    let o = run("capi_umem", &["nofail-default"], &[]);
    assert_eq!(o.status.code(), Some(255), "{}", show(&o));
}

#[test]
fn umem_free_with_the_wrong_size_aborts_under_umem_debug() {
    let o = run("capi_umem", &["badsize"], &[("UMEM_DEBUG", "default")]);
    aborted_with(&o, "umem_free(");
    aborted_with(
        &o,
        "wrong size: the buffer is a 112-byte block, a 300-byte allocation is a 320-byte block",
    );
    let o = run("capi_umem", &["foreign"], &[("UMEM_DEBUG", "default")]);
    aborted_with(&o, "not a buffer from umem_alloc");
    // Within one class too: the redzone word records the size allocated.
    let o = run(
        "capi_umem",
        &["badsize-sameclass"],
        &[("UMEM_DEBUG", "default")],
    );
    aborted_with(&o, "umem_free(");
    aborted_with(&o, "wrong size: the buffer was allocated with 100 bytes");
}

#[test]
fn object_caches_with_constructors() {
    let o = ok("capi_cache");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("fresh: ctor 300 dtor 300"), "{out}");
    assert!(out.contains("threads: ctor"), "{out}");
}

#[test]
fn object_caches_under_umem_debug() {
    let o = run("capi_cache", &[], &[("UMEM_DEBUG", "default")]);
    assert!(o.status.success(), "{}", show(&o));
    let o = run("capi_cache", &["wrongcache"], &[("UMEM_DEBUG", "default")]);
    aborted_with(&o, "umem_cache_free()");
    aborted_with(&o, "cache_a");
}

#[test]
fn failing_constructor_under_nofail_goes_to_the_callback() {
    let o = run("capi_cache", &["ctorfail-nofail"], &[]);
    assert_eq!(o.status.code(), Some(9), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nofail callback 3"),
        "{}",
        show(&o)
    );
}

#[test]
fn vmem_arenas_imports_walks_and_sizes() {
    ok("capi_vmem");
}

#[test]
fn vmem_misuse_aborts_with_a_message() {
    let o = run("capi_vmem", &["badfree"], &[]);
    aborted_with(&o, "vmem_free(arena 'ids'");
    let o = run("capi_vmem", &["panic"], &[]);
    aborted_with(&o, "failed (VM_PANIC)");
}

#[test]
fn mallinfo2_and_malloc_info_report_umem() {
    let o = ok("capi_mallinfo");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("<malloc version=\"1\">") && out.contains("</malloc>"),
        "{out}"
    );
    assert!(out.contains("<heap nr=\"0\">"), "{out}");
    // malloc_stats: umem's table on stderr.
    assert!(umem_testkit::preload::stats_seen(&o.stderr), "{}", show(&o));
}

#[test]
fn a_program_written_from_the_man_pages_runs_unchanged() {
    let o = ok("capi_doc");
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 constructed, 2 destructed"));
}

#[test]
fn the_headers_build_as_cxx() {
    // capi_doc.c compiled as C++ (-fpermissive for C's implicit void *
    // conversions): the headers' declarations must link as extern "C".
    if !umem_testkit::preload::have("c++") {
        panic!("no c++ compiler (ci/install-deps installs one)");
    }
    let exe = build("capi_doc", true);
    let o = Command::new(exe).output().expect("run");
    assert!(o.status.success(), "{}", show(&o));
}

#[test]
fn installs_with_headers_and_pkg_config() {
    // ci/install-c into a scratch prefix (with the library already built),
    // then build the man-page program the way a user would:
    // `cc $(pkg-config --cflags --libs umem)`.
    let prefix = scratch("capi-install").join("usr");
    let target = libumem()
        .parent()
        .and_then(Path::parent)
        .expect("libumem.so in <target>/release");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = Command::new(root.join("ci/install-c"))
        .arg(&prefix)
        .env("UMEM_INSTALL_NO_BUILD", "1")
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("running ci/install-c");
    assert!(o.status.success(), "{}", show(&o));
    for f in [
        "lib/libumem.so.0",
        "lib/libumem.so",
        "include/umem.h",
        "include/sys/vmem.h",
        "lib/pkgconfig/umem.pc",
    ] {
        assert!(prefix.join(f).exists(), "{f} not installed");
    }
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/umem.pc")).unwrap();
    assert!(pc.contains(&format!("prefix={}", prefix.display())), "{pc}");
    assert!(pc.contains("Libs: -L${libdir} -lumem"), "{pc}");
    let flags = if umem_testkit::preload::have("pkg-config") {
        let o = Command::new("pkg-config")
            .args(["--cflags", "--libs", "umem"])
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
            .output()
            .expect("pkg-config");
        assert!(o.status.success(), "{}", show(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    } else {
        format!("-I{0}/include -L{0}/lib -lumem", prefix.display())
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/capi_doc.c");
    let exe = prefix.join("capi_doc");
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cc -O2 -pthread -o '{}' '{}' {flags}",
            exe.display(),
            src.display()
        ))
        .output()
        .expect("cc");
    assert!(o.status.success(), "{}", show(&o));
    let o = Command::new(&exe)
        .env("LD_LIBRARY_PATH", prefix.join("lib"))
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", show(&o));
    let o = Command::new("ldd")
        .arg(&exe)
        .env("LD_LIBRARY_PATH", prefix.join("lib"))
        .output();
    if let Ok(o) = o {
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(
            s.contains(&format!("{}/lib/libumem.so.0", prefix.display())),
            "{s}"
        );
    }
}
