//! Workspace-level integration tests of umem: cross-crate tests and whole-process tests
//! that run C programs and real programs under `LD_PRELOAD=libumem.so`. The tests are in
//! `tests/`; the C programs in `c/`. The helpers they share (locating or building
//! `libumem.so`, compiling the C programs, running with and without the preload) live in
//! the test kit, `umem_testkit::preload`.
