//! Error cases, policies' defining behaviours, imports, walk, handles, destroy, hash
//! rescale: one test binary, one module per subject.
// These tests rely on the lazily built tree (feature `std`).
#![cfg(feature = "std")]

mod errors;
mod fit;
mod handles;
mod hash_growth;
mod import;
mod lifecycle;
mod walk;
