//! `UMEM_DEBUG` finds heap bugs in C programs run under the preload: one
//! program (`tests/c/debug_bugs.c`), one mode per bug kind; each report must
//! name the kind and the right buffer, then abort with SIGABRT (or carry on
//! under `noabort`). Under `audit` (part of `default`) each report also
//! prints the buffer's history, whose allocation stack names the C function
//! that allocated it (`alloc_for_<mode>`: the program is built `-rdynamic`,
//! so `dladdr` names its global functions).

use std::os::unix::process::ExitStatusExt;
use std::process::Output;
use umem_testkit::preload::{run_c_flags, show};

/// Runs `tests/c/debug_bugs.c` (built `-rdynamic`) under the preload.
fn run_c(name: &str, args: &[&str], env: &[(&str, &str)], preload: bool) -> Output {
    run_c_flags(name, &["-rdynamic"], args, env, preload)
}

fn bug(mode: &str, debug: &str) -> Output {
    run_c(
        "debug_bugs",
        &[mode],
        &[("UMEM_DEBUG", debug), ("UMEM_LOGGING", "")],
        true,
    )
}

/// The allocation stack in `report` (one report's text) of the buffer
/// `buf`'s history: the lines from "allocated by thread" to the last free
/// (or the end).
fn alloc_stack<'a>(report: &'a str, buf: &str) -> Option<&'a str> {
    let hist = &report[report.find(&format!("umem: buffer {buf} ("))?..];
    let hist = &hist[hist.find("allocated by thread")?..];
    Some(&hist[..hist.find("last freed").unwrap_or(hist.len())])
}

/// Asserts that the report in `o` prints the history of the buffer the
/// program printed, and that its allocation stack contains `func`.
fn allocated_in(o: &Output, func: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    let buf = printed(o, "buf");
    let stack = alloc_stack(&err, &buf)
        .unwrap_or_else(|| panic!("no allocation stack of {buf}\n{}", show(o)));
    assert!(
        stack.contains(&format!("debug_bugs!{func}+")),
        "{func} is not in the allocation stack of {buf}\n{}",
        show(o)
    );
}

/// Asserts that the history of the buffer the program printed has a
/// last-freeing stack with a frame of the program's `main`.
fn freed_in_main(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    let buf = printed(o, "buf");
    let hist = err
        .find(&format!("umem: buffer {buf} ("))
        .map(|at| &err[at..])
        .unwrap_or_else(|| panic!("no history of {buf}\n{}", show(o)));
    let freed = hist
        .find("last freed by thread")
        .unwrap_or_else(|| panic!("no free stack\n{}", show(o)));
    assert!(
        hist[freed..].contains("debug_bugs!main+"),
        "the free stack has no frame of main\n{}",
        show(o)
    );
}

/// The value printed as `key=<value>` on stdout.
fn printed(o: &Output, key: &str) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {key}= on stdout\n{}", show(o)))
}

/// Asserts a SIGABRT with a report of `kind` whose buffer line names the
/// buffer the program printed, and whose detail contains `detail`.
fn reported(o: &Output, kind: &str, detail: &str) {
    assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{}", show(o));
    let err = String::from_utf8_lossy(&o.stderr);
    let buf = printed(o, "buf");
    assert!(
        err.contains(&format!("umem: heap error: {kind}")),
        "no '{kind}' report\n{}",
        show(o)
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("umem:   buffer  ") && l.contains(&buf)),
        "the report does not name {buf}\n{}",
        show(o)
    );
    assert!(
        err.contains(detail),
        "no {detail:?} in the report\n{}",
        show(o)
    );
}

#[test]
fn double_free() {
    let o = bug("double", "default");
    reported(&o, "double free", "its buftag says free");
    // audit: the buffer's last transaction is named.
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("audit   last freed by thread"),
        "{}",
        show(&o)
    );
    // `default` includes `audit`: one report, whose stacks section is the
    // buffer's history (allocating and last-freeing threads and stacks).
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("umem: heap error:").count(), 1, "{}", show(&o));
    let buf = printed(&o, "buf");
    let hist = err
        .find(&format!("umem: buffer {buf} ("))
        .unwrap_or_else(|| panic!("no history of {buf}\n{}", show(&o)));
    let hist = &err[hist..];
    let alloc = hist.find("allocated by thread").expect("allocation stack");
    let freed = hist.find("last freed by thread").expect("free stack");
    assert!(alloc < freed, "{}", show(&o));
    assert!(hist[alloc..freed].contains("debug_bugs"), "{}", show(&o));
    assert!(hist[freed..].contains("debug_bugs"), "{}", show(&o));
    assert!(hist.contains("umem: aborting"), "{}", show(&o));
    // The C function that allocated it is named.
    allocated_in(&o, "alloc_for_double");
}

/// A double free of a debug buffer must not touch it: the free hit never
/// takes a debug block (no address passes its block-start test under
/// `UMEM_DEBUG`), so no free key lands on a free buffer's fill and its
/// reuse finds nothing wrong. Under `noabort`: one report per double free,
/// none when the buffers are handed out again.
#[test]
fn double_frees_under_noabort_leave_the_buffer_alone() {
    for debug in ["guards,noabort", "default,noabort"] {
        let o = bug("double-reuse", debug);
        assert!(o.status.success(), "{debug}: {}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            err.matches("umem: heap error: double free").count(),
            10,
            "{debug}: {}",
            show(&o)
        );
        assert_eq!(
            err.matches("umem: heap error:").count(),
            10,
            "{debug}: {}",
            show(&o)
        );
    }
}

#[test]
fn interior_free() {
    let o = bug("interior", "default");
    let buf = printed(&o, "buf");
    reported(
        &o,
        "invalid free",
        &format!("16 bytes into the buffer at {buf}"),
    );
    allocated_in(&o, "alloc_for_interior");
}

#[test]
fn overrun_by_one_past_the_request_for_every_size_up_to_256() {
    let o = bug("overrun", "default,noabort");
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    let reports: Vec<&str> = err.split("umem: heap error: ").skip(1).collect();
    assert_eq!(reports.len(), 256, "{}", show(&o));
    for line in out.lines() {
        let mut it = line.split_whitespace();
        let size: usize = it
            .next()
            .unwrap()
            .trim_start_matches("size=")
            .parse()
            .unwrap();
        let buf = it.next().unwrap().trim_start_matches("buf=");
        let r = reports
            .iter()
            .find(|r| r.contains(&format!("buffer  {buf},")))
            .unwrap_or_else(|| panic!("no report for size {size} at {buf}\n{err}"));
        assert!(r.starts_with("redzone overrun"), "size {size}: {r}");
        assert!(
            r.contains(&format!("{size} bytes requested"))
                && r.contains(&format!("byte at offset {size} "))
                && r.contains("is 0x42")
                && r.contains("1 byte past the request"),
            "size {size}: {r}"
        );
        // `default` includes audit: the buffer's allocation stack.
        let stack = alloc_stack(r, buf)
            .unwrap_or_else(|| panic!("size {size}: no allocation stack of {buf}\n{r}"));
        assert!(
            stack.contains("debug_bugs!alloc_for_overrun+"),
            "size {size}: {r}"
        );
    }
}

#[test]
fn overrun_of_a_one_mebibyte_block() {
    let o = bug("overrun-big", "default");
    reported(
        &o,
        "redzone overrun",
        "byte at offset 1048576 (0x100000) is 0x42",
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("a large block"));
    // A large block's history: its allocation (its free record goes with
    // the block).
    allocated_in(&o, "alloc_for_overrun_big");
}

#[test]
fn underrun() {
    let o = bug("underrun", "default");
    reported(&o, "redzone underrun", "the word before the buffer");
    allocated_in(&o, "alloc_for_underrun");
}

#[test]
fn write_after_free() {
    let o = bug("write-after-free", "default");
    reported(
        &o,
        "modified free buffer",
        "word at offset 8 (0x8) is 0xdeadbeefdeadbe42",
    );
    allocated_in(&o, "alloc_for_write_after_free");
    freed_in_main(&o);
}

#[test]
fn fresh_blocks_hold_baddcafe() {
    let o = bug("uninit", "default");
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(printed(&o, "word"), "baddcafe", "{}", show(&o));
}

#[test]
fn bad_realloc() {
    let o = bug("bad-realloc", "guards");
    reported(&o, "bad realloc: redzone overrun", "byte at offset 30");
    // Under `default` (with audit) the report has the allocation stack.
    let o = bug("bad-realloc", "default");
    reported(&o, "bad realloc: redzone overrun", "byte at offset 30");
    allocated_in(&o, "alloc_for_bad_realloc");
}

#[test]
fn checknull_aborts_instead_of_returning_null() {
    let o = bug("checknull", "checknull");
    assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("allocation failure (UMEM_DEBUG=checknull"),
        "{}",
        show(&o)
    );
    assert!(
        err.contains("request 4611686018427387904 bytes"),
        "{}",
        show(&o)
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("returned"));
    // Without checknull the same program gets NULL.
    let o = bug("checknull", "guards");
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("returned (nil)"),
        "{}",
        show(&o)
    );
    // With audit: no buffer, so the report prints the failing call's stack.
    let o = bug("checknull", "checknull,audit");
    assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let at = err
        .find("umem: the failing call, by thread")
        .unwrap_or_else(|| panic!("no stack of the failing call\n{}", show(&o)));
    assert!(
        err[at..].contains("debug_bugs!alloc_for_checknull+"),
        "{}",
        show(&o)
    );
}

#[test]
fn mtbf_injects_failures_and_the_fail_log_has_them() {
    let o = run_c(
        "debug_bugs",
        &["mtbf"],
        &[("UMEM_DEBUG", "mtbf=5"), ("UMEM_LOGGING", "fail")],
        true,
    );
    assert!(o.status.success(), "{}", show(&o));
    // 100 consecutive mallocs, every 5th fails.
    assert_eq!(printed(&o, "nulls"), "20", "{}", show(&o));
    assert_eq!(printed(&o, "logged"), "20", "{}", show(&o));
}

/// `mtbf` with `audit`: umem's own allocations while it loads the unwinder
/// are not failed (the stacks stay on, the program's 100 mallocs still get
/// every 5th failed), and with `checknull` the injected failure's report
/// prints the failing call's stack, which names the C function.
#[test]
fn mtbf_under_audit_keeps_stacks_and_checknull_prints_the_failing_call() {
    let o = run_c(
        "debug_bugs",
        &["mtbf"],
        &[("UMEM_DEBUG", "mtbf=5,audit"), ("UMEM_LOGGING", "fail")],
        true,
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(printed(&o, "nulls"), "20", "{}", show(&o));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("cannot load"),
        "{}",
        show(&o)
    );
    let o = bug("mtbf", "mtbf=5,checknull,audit");
    assert_eq!(o.status.signal(), Some(libc::SIGABRT), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("UMEM_DEBUG=mtbf injects failures"),
        "{}",
        show(&o)
    );
    let at = err
        .find("umem: the failing call, by thread")
        .unwrap_or_else(|| panic!("no stack of the failing call\n{}", show(&o)));
    assert!(
        err[at..].contains("debug_bugs!alloc_for_mtbf+"),
        "{}",
        show(&o)
    );
}

#[test]
fn firewall_faults_on_the_store_past_the_end() {
    let o = bug("firewall", "firewall=4k");
    assert_eq!(o.status.code(), Some(42), "no fault\n{}", show(&o));
    assert_eq!(printed(&o, "fault"), printed(&o, "end"), "{}", show(&o));
}

#[test]
fn verify_on_demand_finds_an_overrun_of_a_live_block() {
    let o = bug("verify", "default");
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(printed(&o, "clean"), "0", "{}", show(&o));
    assert_eq!(printed(&o, "damaged"), "1", "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("verify: redzone overrun"), "{}", show(&o));
    assert!(err.contains(&printed(&o, "buf")), "{}", show(&o));
}

#[test]
fn verify_at_exit_runs_with_the_option() {
    let o = run_c(
        "debug_bugs",
        &["usable"],
        &[
            ("UMEM_DEBUG", "default"),
            ("UMEM_OPTIONS", "verify_at_exit"),
        ],
        true,
    );
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("umem: verify at exit:") && err.contains(": 0 problems"),
        "{}",
        show(&o)
    );
    // malloc_usable_size is the request under UMEM_DEBUG.
    assert_eq!(printed(&o, "usable"), "30", "{}", show(&o));
}

#[test]
fn every_word_is_accepted_or_explained() {
    let o = run_c(
        "debug_bugs",
        &["uninit"],
        &[
            (
                "UMEM_DEBUG",
                "audit=20,contents=64,guards,verbose,nosignal,firewall=1m,lite,maxverify=128,noabort,mtbf=1000000,checknull,bogus",
            ),
            ("UMEM_LOGGING", "transaction=1m,contents,fail=8k,slab"),
        ],
        true,
    );
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("'nosignal' cannot apply on Linux"),
        "{}",
        show(&o)
    );
    assert!(err.contains("'bogus' unknown option"), "{}", show(&o));
    assert!(err.contains("'slab' is not supported"), "{}", show(&o));
    assert_eq!(
        err.matches("umem:").count(),
        3,
        "only the three warnings\n{}",
        show(&o)
    );
}

#[test]
fn underrun_and_interior_free_in_the_in_slab_layout() {
    // `guards` alone keeps small classes in one-page slabs (no audit bufctls).
    let o = bug("underrun", "guards");
    reported(&o, "redzone underrun", "the word before the buffer");
    let o = bug("interior", "guards");
    reported(&o, "invalid free", "16 bytes into the buffer at");
}

#[test]
fn lite_keeps_redzones_and_drops_patterns() {
    let o = bug("bad-realloc", "lite");
    reported(&o, "bad realloc: redzone overrun", "byte at offset 30");
    let o = bug("uninit", "lite");
    assert!(o.status.success(), "{}", show(&o));
    assert_ne!(printed(&o, "word"), "baddcafe", "{}", show(&o));
    let o = bug("write-after-free", "lite");
    assert!(o.status.success(), "lite checks no fill\n{}", show(&o));
}

#[test]
fn maxverify_limits_the_fill_check() {
    // The write is at offset 8: checking 8 bytes misses it, 16 find it.
    let o = bug("write-after-free", "guards,maxverify=8");
    assert!(o.status.success(), "{}", show(&o));
    let o = bug("write-after-free", "guards,maxverify=16");
    reported(&o, "modified free buffer", "word at offset 8");
}

#[test]
fn verbose_dumps_the_damaged_bytes() {
    let o = bug("write-after-free", "guards,verbose");
    reported(&o, "modified free buffer", "word at offset 8");
    let buf = printed(&o, "buf");
    let line = format!("umem:   {buf}: ef be ad de ef be ad de 42 be ad de");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&line),
        "{}",
        show(&o)
    );
}
