//! Where a permutation importance's time goes: `cargo run --release --example importance_profile -- [threads] [repeats]`
//! on the `defaults` configuration with 1,000,000 rows (`ROWS` sets them):
//! trains one epoch (so the masks are a trained model's), then times `importance::model_agnostic` (permutation, the given
//! repeats, 5 by default) with its wall and CPU time, against the time of
//! one prediction of every row (the Rust pass alone, without R's
//! conversions; `bench/targets.R` times the whole call).
mod common;

use common::{cpu_seconds, setup};
use std::time::Instant;
use tabnet_core::importance::{model_agnostic, Method};
use tabnet_core::trainer::{TrainOptions, Trainer};
use tabnet_core::{inference, MaskType};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let repeats: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    if std::env::var("ROWS").is_err() {
        std::env::set_var("ROWS", "1000000");
    }
    let (model, data, n, batch) = setup("defaults", MaskType::Sparsemax);
    tabnet_core::runtime::set_threads(threads);
    let mut t = Trainer::new(&model, TrainOptions::example(batch)).unwrap();
    let nb = t.begin_epoch(&data).unwrap();
    t.run(&model, &data, nb).unwrap();
    t.end_epoch();
    t.release();
    let mut predict = f64::INFINITY;
    for _ in 0..3 {
        let t0 = Instant::now();
        let _ = inference::predict(&model, &data, 65_536).unwrap();
        predict = predict.min(t0.elapsed().as_secs_f64());
    }
    tch::manual_seed(3);
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let imp = model_agnostic(&model, &data, Method::Permutation, repeats, 65_536).unwrap();
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    let units = imp.values.len() * repeats + 1;
    println!(
        "permutation importance, {n} rows x {} predictors x {repeats} repeats, {threads} thread(s): {wall:.2} s wall, {cpu:.2} s CPU; \
         {units} predictions of {:.3} s each would take {:.2} s",
        imp.values.len(),
        predict,
        units as f64 * predict
    );
}
