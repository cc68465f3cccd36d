//! Gives the shared library its SONAME on Linux.

fn main() {
    let abi = env!("CARGO_PKG_VERSION_MAJOR");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmp_throttle.so.{abi}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
