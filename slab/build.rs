//! Feature probe: `asm!` label operands (`asm goto`) are stable from Rust 1.87; the
//! per-CPU free hit (`src/rseq.rs`) jumps straight out of its restartable sequence with one
//! when the compiler has them (`cfg(umem_asm_goto)`), and tests a returned word otherwise.
//! The crate's minimum Rust stays 1.82.

use std::process::Command;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(umem_asm_goto)");
    println!("cargo:rerun-if-changed=build.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let minor = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    if minor.is_some_and(|m| m >= 87) {
        println!("cargo:rustc-cfg=umem_asm_goto");
    }
}
