//! The layout of libumem.so's code (`umem-global/preload/hot-text.ld`, made by
//! `ci/hot-text`): the functions ordinary programs run lie together in one
//! section at the front of the code, each aligned to 64 bytes. Checked on the
//! release library with binutils (`readelf`, `nm`), which the C toolchain brings.
//! If build.rs stopped passing the script, or a rename dropped one of these
//! functions from it, the function would lie in `.text` and this test fails.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::process::Command;
use umem_testkit::preload::libumem;

fn tool(args: &[&str]) -> String {
    let o = Command::new(args[0])
        .args(&args[1..])
        .arg(libumem())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e} (binutils not installed?)", args[0]));
    assert!(o.status.success(), "{} failed", args.join(" "));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `[start, end)` and alignment of the hot section.
fn hot_section() -> (u64, u64, u64) {
    let out = tool(&["readelf", "-SW"]);
    let line = out
        .lines()
        .find(|l| l.contains(" .text.umem_hot "))
        .unwrap_or_else(|| panic!("no .text.umem_hot section in libumem.so:\n{out}"));
    // `[Nr] Name Type Address Off Size ES Flg Lk Inf Al`, after the `]`.
    let f: Vec<&str> = line.split(']').nth(1).unwrap().split_whitespace().collect();
    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
    let (addr, size) = (hex(f[2]), hex(f[4]));
    let align: u64 = f.last().unwrap().parse().unwrap();
    (addr, addr + size, align)
}

/// Address of the first symbol (in `nm -C` output) whose name is `name` or
/// starts with `name::h` (a Rust symbol's hash).
fn address(nm: &str, name: &str) -> u64 {
    nm.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ' ');
            let (a, t, n) = (f.next()?, f.next()?, f.next()?);
            let hashed = n.strip_prefix(name).is_some_and(|r| r.starts_with("::h"));
            ((t == "T" || t == "t") && (n == name || hashed))
                .then(|| u64::from_str_radix(a, 16).ok())?
        })
        .next()
        .unwrap_or_else(|| panic!("no symbol {name} in libumem.so"))
}

#[test]
fn the_code_programs_run_lies_in_one_aligned_section() {
    let (start, end, align) = hot_section();
    assert!(align >= 64, "hot section aligned to {align}");
    assert!(
        end - start > 64 << 10,
        "hot section of only {} bytes",
        end - start
    );
    let nm = tool(&["nm", "-C"]);
    for f in [
        // the C ABI's entry points
        "malloc",
        "free",
        "calloc",
        "realloc",
        "posix_memalign",
        "aligned_alloc",
        "malloc_usable_size",
        "operator new(unsigned long)",
        // libumem's own allocation entry points
        "umem_alloc",
        "umem_free",
        "umem_cache_alloc",
        "umem_cache_free",
        // start-up, the slow paths down to vmem, the update
        "umem_global::init::ensure_init",
        "umem_global::alloc::c_alloc_miss",
        "umem::malloc_miss",
        "umem_vmem::bootstrap::init",
        "umem_slab::create::init",
        "umem_slab::miss::<impl umem_slab::cache::Cache>::alloc_slow",
        "umem_slab::slab_layer::<impl umem_slab::cache::Cache>::slab_alloc_batch",
        "umem_vmem::arena::fit::<impl umem_vmem::arena::Vmem>::xalloc_impl",
        "umem_slab::update::maybe_update_now",
    ] {
        let a = address(&nm, f);
        assert!(
            (start..end).contains(&a),
            "{f} at {a:#x}, outside the hot section [{start:#x}, {end:#x}): \
             regenerate umem-global/preload/hot-text.ld with ci/hot-text"
        );
        assert_eq!(a % 64, 0, "{f} at {a:#x} is not 64-byte aligned");
    }
    // And what no ordinary program runs stays out of it.
    for f in ["umem_global::verify::verify", "umem_global::stats::stats"] {
        let a = address(&nm, f);
        assert!(
            !(start..end).contains(&a),
            "{f} at {a:#x} is in the hot section"
        );
    }
}
