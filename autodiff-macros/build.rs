//! Tells the macro whether it is being compiled with optimisations (cargo's `OPT_LEVEL` for
//! this crate, which `[profile.*.build-override] opt-level` sets): the expansion of long
//! functions on in-process tokens (`src/transfer.rs`) pays for itself only then.
fn main() {
    println!("cargo:rustc-check-cfg=cfg(autodiff_optimized)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=OPT_LEVEL");
    if std::env::var("OPT_LEVEL").is_ok_and(|level| level != "0") {
        println!("cargo:rustc-cfg=autodiff_optimized");
    }
}
