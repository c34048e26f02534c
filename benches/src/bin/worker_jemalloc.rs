//! Workload worker with jemalloc (the `tikv-jemallocator` crate) as global allocator.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    umem_bench::worker_main("jemalloc")
}
