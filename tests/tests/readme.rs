//! The README's code runs as written: its Rust program (kept verbatim as the
//! `readme_example` binary of this crate) runs with umem as the global
//! allocator, its C program compiles with `cc` and runs under
//! `LD_PRELOAD=libumem.so`, and its statistics example has the columns that
//! umem prints today.

use std::path::Path;
use std::process::Command;
use umem_testkit::preload::{have, libumem, run, scratch, show, stats_seen};

const README: &str = include_str!("../../README.md");
const EXAMPLE: &str = include_str!("../src/bin/readme_example.rs");

/// The first fenced block of language `lang` after the heading `heading`.
fn block(heading: &str, lang: &str) -> &'static str {
    let at = README
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no heading {heading:?}"));
    let fence = format!("```{lang}\n");
    let start = README[at..]
        .find(&fence)
        .map(|i| at + i + fence.len())
        .unwrap_or_else(|| panic!("no ```{lang} block after {heading:?}"));
    let len = README[start..].find("```").expect("unclosed code block");
    &README[start..start + len]
}

#[test]
fn rust_snippet_is_the_example_binary() {
    let snippet = block("## Use it from Rust", "rust");
    // The binary is the snippet after its leading comment.
    let body: String = EXAMPLE
        .lines()
        .skip_while(|l| l.starts_with("//") || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        body, snippet,
        "tests/src/bin/readme_example.rs and the README's Rust snippet differ"
    );
    assert!(snippet
        .contains("#[global_allocator]\nstatic GLOBAL: umem_global::Umem = umem_global::Umem;"));
}

#[test]
fn rust_snippet_runs_with_umem() {
    let o = Command::new(env!("CARGO_BIN_EXE_readme_example"))
        .env_remove("LD_PRELOAD")
        .env("UMEM_STATS", "1")
        .output()
        .expect("run readme_example");
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().next().unwrap_or("");
    let n: u64 = line
        .strip_prefix("umem: ")
        .and_then(|r| r.strip_suffix(" bytes in use"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {line:?}\n{}", show(&o)));
    assert!(n > 0, "the words are live when stats() runs: {line}");
    assert!(
        stats_seen(&o.stderr),
        "umem did not serve the program\n{}",
        show(&o)
    );
}

#[test]
fn cargo_toml_line_names_the_crate() {
    let toml = block("## Use it from Rust", "toml");
    assert!(toml.contains("[dependencies]\numem-global = {"), "{toml}");
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../umem-global/Cargo.toml"),
    )
    .expect("umem-global/Cargo.toml");
    assert!(manifest.contains("name = \"umem-global\""));
}

#[test]
fn c_snippet_compiles_and_runs_under_the_preload() {
    assert!(have("cc"), "no C compiler (ci/install-deps installs one)");
    let src = block("## Use it from C", "c");
    let sh = block("## Use it from C", "sh");
    assert!(
        sh.contains("cargo build --release") && sh.contains("LD_PRELOAD=target/release/libumem.so"),
        "{sh}"
    );
    assert!(libumem().ends_with("release/libumem.so"));
    let dir = scratch("readme-c");
    std::fs::write(dir.join("hello.c"), src).expect("write hello.c");
    // The README's command, `cc -o hello hello.c`, in that directory.
    let cc = Command::new("cc")
        .args(["-o", "hello", "hello.c"])
        .current_dir(&dir)
        .output()
        .expect("run cc");
    assert!(cc.status.success(), "cc hello.c:\n{}", show(&cc));
    let exe = dir.join("hello");
    let plain = run(Command::new(&exe), false);
    assert!(
        plain.status.success(),
        "hello under glibc:\n{}",
        show(&plain)
    );
    let mut c = Command::new(&exe);
    c.env("UMEM_STATS", "1");
    let o = run(c, true);
    assert!(o.status.success(), "hello under libumem.so:\n{}", show(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello from a umem block\n"
    );
    assert!(
        stats_seen(&o.stderr),
        "umem did not serve hello\n{}",
        show(&o)
    );
    // The statistics example in the README has the column headings umem prints.
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let mut heads = 0;
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("cache ") || l.starts_with("vmem arena ") {
            for h in &lines[i..(i + 3).min(lines.len())] {
                assert!(
                    README.contains(&format!("\n{h}\n")),
                    "README's statistics example lacks the line {h:?} that umem prints; regenerate it"
                );
            }
            heads += 1;
        }
    }
    assert!(heads >= 2, "no statistics tables in\n{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
