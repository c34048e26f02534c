//! libFuzzer target (a): vmem operation sequences against a model
//! (`umem_tests::fuzz::vmem_model`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    umem_tests::fuzz::vmem_model::run(data);
});
