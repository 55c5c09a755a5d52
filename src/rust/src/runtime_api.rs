//! libtorch runtime: threads, seeds, devices, and a matmul rate probe.
use extendr_api::prelude::*;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// @noRd
#[extendr]
fn rs_set_threads(n: i32) {
    tch::set_num_threads(n.max(1));
}

/// @noRd
#[extendr]
fn rs_get_threads() -> i32 {
    tch::get_num_threads()
}

/// @noRd
#[extendr]
fn rs_manual_seed(seed: f64) {
    tch::manual_seed(seed as i64);
}

/// @noRd
#[extendr]
fn rs_cuda_available() -> bool {
    tch::Cuda::is_available()
}

/// GFLOP/s of an (m × k)·(k × n) f32 product on the CPU, best of `reps`.
/// @noRd
#[extendr]
fn rs_sgemm_gflops(m: f64, k: f64, n: f64, reps: i32) -> f64 {
    let a = Tensor::randn(&[m as i64, k as i64], (Kind::Float, Device::Cpu));
    let b = Tensor::randn(&[k as i64, n as i64], (Kind::Float, Device::Cpu));
    let _ = a.matmul(&b);
    let mut best = f64::MAX;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let c = a.matmul(&b);
        let _ = c.double_value(&[0, 0]);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * m * k * n / best / 1e9
}

extendr_module! {
    mod runtime_api;
    fn rs_set_threads;
    fn rs_get_threads;
    fn rs_manual_seed;
    fn rs_cuda_available;
    fn rs_sgemm_gflops;
}
