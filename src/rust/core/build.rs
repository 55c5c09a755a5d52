//! Sets `cfg(tabnet_avx512)` when the compiler has the AVX-512 intrinsics and
//! target feature (stable since Rust 1.89; the crate's MSRV is 1.88, where the
//! fused pass runs its AVX2 micro-kernels instead).
use std::process::Command;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(tabnet_avx512)");
    println!("cargo:rerun-if-changed=build.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let minor = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| {
            let version = v.split_whitespace().nth(1)?.to_string();
            version.split('.').nth(1)?.parse::<u32>().ok()
        });
    if minor.is_some_and(|m| m >= 89) {
        println!("cargo:rustc-cfg=tabnet_avx512");
    }
}
