//! Workload worker with mimalloc (the `mimalloc` crate) as global allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    umem_bench::worker_main("mimalloc")
}
