//! Compiles the C-ABI workloads (`c/cwork.c`) with the system C compiler. Without one the
//! harness still builds and says that the C section is skipped.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    if let Ok(o) = Command::new(rustc).arg("--version").output() {
        let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
        println!("cargo:rustc-env=UMEM_BENCH_RUSTC={v}");
    }
    println!("cargo:rerun-if-changed=c/cwork.c");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("umem-bench-cwork");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&cc)
        .args(["-O2", "-g", "-pthread", "-Wall", "-o"])
        .arg(&out)
        .arg("c/cwork.c")
        .arg("-lm")
        .status();
    let broken = out.with_file_name("libumem-bench-broken.so");
    println!("cargo:rerun-if-changed=c/broken_malloc.c");
    let st = Command::new(&cc)
        .args(["-O2", "-shared", "-fPIC", "-Wall", "-o"])
        .arg(&broken)
        .arg("c/broken_malloc.c")
        .status();
    match st {
        Ok(s) if s.success() => {
            println!("cargo:rustc-env=UMEM_BENCH_BROKEN_SO={}", broken.display())
        }
        _ => println!("cargo:rustc-env=UMEM_BENCH_BROKEN_SO="),
    }
    let launch = out.with_file_name("umem-bench-launch");
    println!("cargo:rerun-if-changed=c/launch.c");
    let st = Command::new(&cc)
        .args(["-O2", "-Wall", "-o"])
        .arg(&launch)
        .arg("c/launch.c")
        .status();
    match st {
        Ok(s) if s.success() => println!("cargo:rustc-env=UMEM_BENCH_LAUNCH={}", launch.display()),
        _ => println!("cargo:rustc-env=UMEM_BENCH_LAUNCH="),
    }
    match status {
        Ok(s) if s.success() => {
            println!("cargo:rustc-env=UMEM_BENCH_CWORK={}", out.display());
        }
        other => {
            println!("cargo:warning=could not compile c/cwork.c with `{cc}` ({other:?}): the C-ABI section will be skipped");
            println!("cargo:rustc-env=UMEM_BENCH_CWORK=");
        }
    }
}
