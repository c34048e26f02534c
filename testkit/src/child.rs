//! One child-process runner: the test binary runs itself again.
//!
//! [`Child::run`] starts this test binary with `<current test> --exact --nocapture
//! --test-threads=1` and the environment variable [`CHILD_ENV`] set to the child's name.
//! The child runs the same test from its start; when it reaches the `run` call with that
//! name it runs the body and exits with status 0 (so a body that should have aborted and
//! did not is seen as a normal exit). Calls with other names do nothing in a child and
//! answer `None`. The parent gets the child's exit status, signal, stdout and stderr.
//!
//! So the body may use whatever the test built before the call: the child builds it
//! again, the same way (the code before the call must be deterministic). Unlike `fork`,
//! the child is a fresh process: no other test thread's locks, no half-copied state.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};

/// The environment variable naming the child body a re-run test binary should run.
pub const CHILD_ENV: &str = "UMEM_TESTKIT_CHILD";

/// What a child process did: how it ended and what it wrote.
#[derive(Debug)]
pub struct ChildOutput {
    /// How the child ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (the test harness's lines included).
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl ChildOutput {
    /// The signal that killed the child, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }

    /// The child's exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Whether the child died of SIGABRT.
    pub fn aborted(&self) -> bool {
        self.signal() == Some(libc::SIGABRT)
    }

    /// Status, stdout and stderr, for assertion messages.
    pub fn show(&self) -> String {
        format!(
            "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Whether this process is a child started by [`Child::run`].
pub fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// The name of the running test, as the test harness gave it to the test's thread.
///
/// # Panics
/// Outside a test thread (e.g. on the main thread of a harness-less binary).
#[track_caller]
pub fn current_test() -> String {
    match std::thread::current().name() {
        Some(n) if n != "main" => n.to_string(),
        _ => panic!("not on a test thread: name the test with Child::test"),
    }
}

/// A child process to run a body in; see the [module](self) documentation.
#[derive(Clone, Debug)]
pub struct Child {
    name: String,
    test: Option<String>,
    env: Vec<(OsString, Option<OsString>)>,
    before_exec: Option<fn() -> std::io::Result<()>>,
}

impl Child {
    /// A child that runs the body of the `run` call named `name` (unique within its
    /// test).
    pub fn new(name: &str) -> Child {
        Child {
            name: name.to_string(),
            test: None,
            env: Vec::new(),
            before_exec: None,
        }
    }

    /// Runs `f` in the forked child just before it executes the test binary (it must be
    /// async-signal-safe: e.g. [`crate::cpus::deny_rseq`]).
    pub fn before_exec(mut self, f: fn() -> std::io::Result<()>) -> Child {
        self.before_exec = Some(f);
        self
    }

    /// The test the child runs (its full name, e.g. `module::test_fn`); by default the
    /// one running now.
    pub fn test(mut self, test: &str) -> Child {
        self.test = Some(test.to_string());
        self
    }

    /// Sets an environment variable in the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Child {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes an environment variable in the child.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Child {
        self.env.push((key.into(), None));
        self
    }

    /// In the parent: runs the child and returns what it did. In a child started for
    /// this name: runs `body`, then exits with status 0 (never returns). In a child
    /// started for another name: returns `None` at once.
    ///
    /// # Panics
    /// If the test binary cannot be started again.
    #[track_caller]
    pub fn run(self, body: impl FnOnce()) -> Option<ChildOutput> {
        if let Some(want) = std::env::var_os(CHILD_ENV) {
            if want != *self.name {
                return None;
            }
            body();
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            // SAFETY: `_exit` ends the process at once without running anything of the
            // test harness; nothing is left to do in this child.
            unsafe { libc::_exit(0) };
        }
        let test = self.test.unwrap_or_else(current_test);
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(exe);
        cmd.args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &self.name);
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some(f) = self.before_exec {
            use std::os::unix::process::CommandExt;
            // SAFETY: `f` is async-signal-safe by the contract of `before_exec`.
            unsafe { cmd.pre_exec(f) };
        }
        let o = cmd
            .output()
            .unwrap_or_else(|e| panic!("starting child {:?} of {test}: {e}", self.name));
        Some(ChildOutput {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        })
    }
}

/// `Child::new(name).run(body)`: runs `body` in a child process (see [`Child::run`]).
#[track_caller]
pub fn run_child(name: &str, body: impl FnOnce()) -> Option<ChildOutput> {
    Child::new(name).run(body)
}

/// Runs `body` in a child process (see [`Child::run`]) and asserts that the child died of
/// SIGABRT and that its stderr contains `message`. Returns the child's output for further
/// checks (`None` in a child started for another name, where nothing is checked).
///
/// # Panics
/// If the child did not abort or did not say `message`; the message shows its output.
#[track_caller]
pub fn assert_aborts_with(name: &str, body: impl FnOnce(), message: &str) -> Option<ChildOutput> {
    let o = run_child(name, body)?;
    assert!(o.aborted(), "child {name:?} did not abort:\n{}", o.show());
    assert!(
        o.stderr.contains(message),
        "child {name:?} aborted without saying {message:?}:\n{}",
        o.show()
    );
    Some(o)
}

/// Runs `body` in a child process of its own (see [`Child::run`]) and asserts that it
/// passed (exit status 0). For a test whose checks read process-wide state that sibling
/// tests of the same binary may change meanwhile (the arena-list lock, the global free
/// list of segment structures): in the child no other test runs.
///
/// # Panics
/// If the child failed; the message shows its output.
#[track_caller]
pub fn run_alone(name: &str, body: impl FnOnce()) {
    if let Some(o) = run_child(name, body) {
        assert_eq!(o.code(), Some(0), "child {name:?} failed:\n{}", o.show());
    }
}
