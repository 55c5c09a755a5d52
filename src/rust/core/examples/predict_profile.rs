//! Where prediction's time goes: `cargo run --release --example predict_profile -- [threads] [config] [mask]`
//! with config `defaults` (100,000 × 10, N_d = N_a = 8, 3 steps) or `tabnet_s`
//! (200,000 × 28, N_d 24, N_a 26, 5 steps) and mask `sparsemax` or `entmax`.
//! Trains one epoch (so the masks are a trained model's), then times
//! `inference::predict` on every row ten times (`PREDICT_REPS`) and prints the best wall and
//! CPU time with the rows per second (the Rust pass alone, without R's
//! conversions; `bench/targets.R` times the whole call).
mod common;

use common::{cpu_seconds, setup};
use std::time::Instant;
use tabnet_core::trainer::{TrainOptions, Trainer};
use tabnet_core::{inference, MaskType};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let config = args.get(2).map(String::as_str).unwrap_or("defaults");
    let mask = args.get(3).map(String::as_str).unwrap_or("sparsemax");
    let mask_type = if mask == "entmax" {
        MaskType::Entmax
    } else {
        MaskType::Sparsemax
    };
    let (model, data, n, batch) = setup(config, mask_type);
    tabnet_core::runtime::set_threads(2);
    let mut t = Trainer::new(&model, TrainOptions::example(batch)).unwrap();
    let nb = t.begin_epoch(&data).unwrap();
    t.run(&model, &data, nb).unwrap();
    t.end_epoch();
    t.release();
    tabnet_core::runtime::set_threads(threads);
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    // PREDICT_REPS=100 for a profile of prediction alone (`perf record -D`)
    let reps: usize = std::env::var("PREDICT_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    for _ in 0..reps {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let out = inference::predict(&model, &data, 1 << 20).unwrap();
        wall = wall.min(t0.elapsed().as_secs_f64());
        cpu = cpu.min(cpu_seconds() - c0);
        assert_eq!(out.size()[0], n as i64);
    }
    let mrs = |s: f64| n as f64 / s / 1e6;
    println!(
        "{config} {mask}, {threads} thread(s): predict {n} rows best {:.2} ms wall ({:.2} M rows/s), {:.2} ms CPU ({:.2} M rows/s)",
        1e3 * wall,
        mrs(wall),
        1e3 * cpu,
        mrs(cpu)
    );
}
