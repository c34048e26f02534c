//! libFuzzer target (b): malloc/calloc/realloc/memalign/free sequences
//! through `umem_global::Umem` with content checks
//! (`umem_tests::fuzz::umem_alloc`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    umem_tests::fuzz::umem_alloc::run(data);
});
