//! Stable-Rust smoke driver for the fuzz targets in `umem_tests::fuzz`
//! (the same `run` functions `cargo fuzz` calls from `fuzz/`): each target
//! gets random inputs for `UMEM_FUZZ_SECS` seconds (default 10; at most 30
//! is meant for the test command) in a child process (this binary again),
//! so an abort inside the allocator fails the test instead of killing the
//! harness. The child prints executions per second and, on a finding, the
//! seed, iteration and input (hex) to replay it:
//! `UMEM_FUZZ_INPUT=<hex> cargo test -p umem-tests --profile ci --test fuzz_smoke <target>`.
//! `UMEM_FUZZ_SEED` fixes the seed (default: from the clock, printed).

use std::process::Command;
use std::time::{Duration, Instant};

const CHILD: &str = "UMEM_FUZZ_CHILD";

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex input"))
        .collect()
}

/// The child's loop: random inputs until the time is up.
fn drive(name: &str, target: fn(&[u8])) {
    if let Ok(h) = std::env::var("UMEM_FUZZ_INPUT") {
        target(&unhex(&h));
        println!("{name}: replayed input ran clean");
        return;
    }
    let secs: f64 = std::env::var("UMEM_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let seed: u64 = std::env::var("UMEM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("{name}: seed {seed}, {secs} s");
    let start = Instant::now();
    let mut execs = 0u64;
    let mut input = Vec::with_capacity(4096);
    while start.elapsed() < Duration::from_secs_f64(secs) {
        // xorshift64*, reseeded per iteration so one can be replayed alone.
        let mut x = seed ^ execs.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let len = 8 + (next() % 2048) as usize;
        input.clear();
        while input.len() < len {
            input.extend_from_slice(&next().to_le_bytes());
        }
        let r = std::panic::catch_unwind(|| target(&input));
        if r.is_err() {
            println!(
                "{name}: FOUND at seed {seed}, iteration {execs}, after {:.1} s\nUMEM_FUZZ_INPUT={}",
                start.elapsed().as_secs_f64(),
                hex(&input)
            );
            std::process::exit(1);
        }
        execs += 1;
    }
    let t = start.elapsed().as_secs_f64();
    println!(
        "{name}: {execs} executions in {t:.1} s = {:.0} exec/s, nothing found",
        execs as f64 / t
    );
}

/// Runs `test` in a child and requires that it found nothing.
fn smoke(test: &str, name: &str, target: fn(&[u8])) {
    if std::env::var(CHILD).is_ok() || std::env::var("UMEM_FUZZ_INPUT").is_ok() {
        drive(name, target);
        return;
    }
    let o = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    // Shown with --nocapture (the exec/s line).
    for l in out.lines().filter(|l| l.starts_with(name)) {
        println!("{l}");
    }
    assert!(
        o.status.success(),
        "fuzz target {name} found a failure ({:?}):\n{out}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn vmem_model() {
    smoke(
        "vmem_model",
        "vmem_model",
        umem_tests::fuzz::vmem_model::run,
    );
}

#[test]
fn umem_alloc() {
    smoke(
        "umem_alloc",
        "umem_alloc",
        umem_tests::fuzz::umem_alloc::run,
    );
}
