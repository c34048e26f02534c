//! Memory per thread with the default per-CPU magazines (issue 16), as a whole process
//! under the preload: `tests/c/threadpool.c` — 512 threads each allocate and free 200
//! blocks of every power-of-two size from 16 B to 4 KiB, then all wait alive before being
//! joined — must grow the resident set by at most 64 KiB per live thread and by at most
//! 32 MiB once they are joined. Per-thread magazines (`nopercpu`, the fallback) are run
//! too (no bound: they hold memory in proportion to the threads; the numbers are printed).

use umem_testkit::preload::{assert_c_passes, run_c, show};

const THREADS: &str = "512";
const PER_THREAD_KIB: &str = "64";
const JOINED_KIB: &str = "32768";

fn stderr_says(o: &std::process::Output, what: &str) -> bool {
    String::from_utf8_lossy(&o.stderr).contains(what)
}

#[test]
fn per_cpu_magazines_bound_memory_by_cpus_not_threads() {
    // The program itself, with its bounds, under glibc.
    assert_c_passes("threadpool", &[THREADS], &[], false);
    // The default options (whatever the environment of the test run says).
    let o = run_c(
        "threadpool",
        &[THREADS, PER_THREAD_KIB, JOINED_KIB],
        &[("UMEM_OPTIONS", ""), ("UMEM_STATS", "1")],
        true,
    );
    println!("default: {}", String::from_utf8_lossy(&o.stdout).trim());
    if stderr_says(&o, "magazines: per CPU") {
        assert!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("threadpool: OK"),
            "per-CPU magazines over the bounds:\n{}",
            show(&o)
        );
    } else {
        // No rseq here: the per-thread fallback runs (and says so); no bound applies.
        assert!(stderr_says(&o, "magazines: per thread"), "{}", show(&o));
    }
}

#[test]
fn per_thread_magazines_still_work_with_many_threads() {
    let o = run_c(
        "threadpool",
        &[THREADS],
        &[("UMEM_OPTIONS", "nopercpu"), ("UMEM_STATS", "1")],
        true,
    );
    println!("perthread: {}", String::from_utf8_lossy(&o.stdout).trim());
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("threadpool: OK"),
        "{}",
        show(&o)
    );
    assert!(stderr_says(&o, "magazines: per thread"), "{}", show(&o));
}
