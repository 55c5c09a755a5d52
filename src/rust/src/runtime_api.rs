//! The session's runtime: threads, seeds, devices.
use crate::convert::{self, ApiResult};
use extendr_api::prelude::*;

/// Called by `.onLoad()`: quiet panics, record the loading process (fork safety).
/// @noRd
#[extendr]
fn rs_init() {
    convert::init();
}

/// @noRd
#[extendr]
fn rs_set_threads(n: f64) -> ApiResult<()> {
    let n = convert::count(n, "num_threads", 1, 4096)?;
    tabnet_core::runtime::set_threads(n as usize);
    Ok(())
}

/// @noRd
#[extendr]
fn rs_get_threads() -> i32 {
    tabnet_core::runtime::threads() as i32
}

/// @noRd
#[extendr]
fn rs_manual_seed(seed: f64) -> ApiResult<()> {
    tch::manual_seed(convert::seed(seed)?);
    Ok(())
}

/// @noRd
#[extendr]
fn rs_cuda_available() -> bool {
    tch::Cuda::is_available()
}

/// list(core = OpenBLAS's kernel set or NA, best = the best one this CPU runs
/// or NA, fallback = whether OpenBLAS runs older kernels than the CPU supports,
/// kernels = the fused pass's products: "avx512", "avx2" or "blas", see
/// `TABNETRS_KERNELS`).
/// @noRd
#[extendr]
fn rs_blas_info() -> List {
    use tabnet_core::runtime::{best_blas_core, blas_core, blas_is_fallback};
    let core = blas_core();
    let best = best_blas_core();
    let fallback = matches!((&core, best), (Some(c), Some(b)) if blas_is_fallback(c, b));
    let na = || Robj::from(Strings::from_values([Rstr::na()]));
    list!(
        core = core.map(Robj::from).unwrap_or_else(na),
        best = best.map(Robj::from).unwrap_or_else(na),
        fallback = fallback,
        kernels = tabnet_core::runtime::selected_kernel().name()
    )
}

/// True in a process forked from the one that loaded tabnetrs.
/// @noRd
#[extendr]
fn rs_in_forked_child() -> bool {
    tabnet_core::runtime::in_forked_child()
}

extendr_module! {
    mod runtime_api;
    fn rs_init;
    fn rs_set_threads;
    fn rs_get_threads;
    fn rs_manual_seed;
    fn rs_cuda_available;
    fn rs_in_forked_child;
    fn rs_blas_info;
}
