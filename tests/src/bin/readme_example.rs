// The README's "Use it from Rust" program, verbatim below this comment: tests/tests/readme.rs
// checks that the two stay equal and runs this binary. Change both together.

#[global_allocator]
static GLOBAL: umem_global::Umem = umem_global::Umem;

fn main() {
    // Every Box, Vec and String of the program now comes from umem.
    let words: Vec<String> = (0..1000).map(|i| format!("word {i}")).collect();
    assert_eq!(words.len(), 1000);
    // Optional: what umem holds, and giving cached memory back to the system now.
    let stats = umem_global::stats();
    println!("umem: {} bytes in use", stats.bytes_in_use());
    umem_global::reap();
}
