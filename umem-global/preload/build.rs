// libumem.so registers pthread_atfork handlers and a pthread key destructor
// that point into its code, and hands out memory other code keeps using:
// it must never be unloaded, even after dlclose. `-z nodelete` marks it so.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Installed as a C library (`ci/install-c`): programs linked with
    // -lumem record libumem.so.0, the name of the C ABI's major version
    // (umem.h, sys/vmem.h and the malloc family).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libumem.so.0");
    // The code ordinary programs run goes first, together (hot-text.ld,
    // made by ci/hot-text, says why). Its INSERT form keeps the linker's own
    // layout for everything else; GNU ld and lld both read it.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("x86_64-") && target.contains("-linux-") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{dir}/hot-text.ld");
        println!("cargo:rerun-if-changed=hot-text.ld");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
