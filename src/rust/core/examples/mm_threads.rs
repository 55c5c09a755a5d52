//! sgemm rate at TabNet-S shapes for 1 and 2 threads.
use std::time::Instant;
use tch::{Device, Kind, Tensor};
fn main() {
    for t in [1, 2] {
        tch::set_num_threads(t);
        let a = Tensor::randn(&[16384, 50], (Kind::Float, Device::Cpu));
        let w = Tensor::randn(&[100, 50], (Kind::Float, Device::Cpu));
        let g = Tensor::randn(&[2048, 2048], (Kind::Float, Device::Cpu));
        for _ in 0..3 {
            let _ = a.mm(&w.tr());
            let _ = g.mm(&g);
        }
        let s = Instant::now();
        for _ in 0..50 {
            let _ = a.mm(&w.tr());
        }
        let e = s.elapsed().as_secs_f64() / 50.0;
        let s2 = Instant::now();
        for _ in 0..5 {
            let _ = g.mm(&g);
        }
        let e2 = s2.elapsed().as_secs_f64() / 5.0;
        println!(
            "threads {t}: 16384x50x100 {:.1} GFLOP/s, 2048^3 {:.1} GFLOP/s",
            2.0 * 16384.0 * 50.0 * 100.0 / e / 1e9,
            2.0 * 2048f64.powi(3) / e2 / 1e9
        );
    }
}
