//! Workload worker with the system allocator (glibc malloc).
#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    umem_bench::worker_main("system")
}
