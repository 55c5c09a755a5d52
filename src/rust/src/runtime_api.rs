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
    tabnet_core::process::set_threads(n as usize);
    Ok(())
}

/// @noRd
#[extendr]
fn rs_get_threads() -> i32 {
    tabnet_core::process::threads() as i32
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

/// True in a process forked from the one that loaded tabnetrs.
/// @noRd
#[extendr]
fn rs_in_forked_child() -> bool {
    tabnet_core::process::in_forked_child()
}

extendr_module! {
    mod runtime_api;
    fn rs_init;
    fn rs_set_threads;
    fn rs_get_threads;
    fn rs_manual_seed;
    fn rs_cuda_available;
    fn rs_in_forked_child;
}
