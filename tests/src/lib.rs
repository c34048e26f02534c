//! Workspace-level integration tests of umem: cross-crate tests and whole-process tests
//! that run C programs and real programs under `LD_PRELOAD=libumem.so`. The tests are in
//! `tests/`; the C programs in `c/`. The helpers they share (locating or building
//! `libumem.so`, compiling the C programs, running with and without the preload) live in
//! the test kit, `umem_testkit::preload`.

/// Fuzz targets (`run(data)` per target) shared by the `cargo fuzz` project in `fuzz/` and
/// the stable smoke driver `tests/tests/fuzz_smoke.rs`.
pub mod fuzz;
