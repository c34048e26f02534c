//! Workload worker with umem (`umem_global::Umem`) as global allocator.
#[global_allocator]
static GLOBAL: umem_global::Umem = umem_global::Umem;

fn main() {
    umem_bench::worker_main("umem")
}
