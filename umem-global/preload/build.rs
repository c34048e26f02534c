// libumem.so registers pthread_atfork handlers and a pthread key destructor
// that point into its code, and hands out memory other code keeps using:
// it must never be unloaded, even after dlclose. `-z nodelete` marks it so.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
