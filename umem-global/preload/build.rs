// libumem.so registers pthread_atfork handlers and a pthread key destructor
// that point into its code, and hands out memory other code keeps using:
// it must never be unloaded, even after dlclose. `-z nodelete` marks it so.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // Installed as a C library (`ci/install-c`): programs linked with
    // -lumem record libumem.so.0, the name of the C ABI's major version
    // (umem.h, sys/vmem.h and the malloc family).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libumem.so.0");
    println!("cargo:rerun-if-changed=build.rs");
}
