//! Where a training step's time goes: `cargo run --release --example step_profile -- [threads] [config]`
//! with config `defaults` (100,000 × 10, batch 1024, N_d = N_a = 8, 3 steps) or
//! `tabnet_s` (200,000 × 28, batch 16384, N_d 24, N_a 26, 5 steps). Times the
//! phases of one epoch's steps (gather, forward + loss, backward). Besides the
//! wall time it prints the process's CPU time, which another process on the
//! machine disturbs less (compare 1-thread runs by it on a busy machine).
mod common;

use common::{cpu_seconds, setup};
use std::time::Instant;
use tabnet_core::trainer::{TrainOptions, Trainer};
use tabnet_core::MaskType;
use tch::{Device, Kind, Tensor};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let config = args.get(2).map(String::as_str).unwrap_or("defaults");
    tabnet_core::runtime::set_threads(threads);
    let (model, data, n, batch) = setup(config, MaskType::Sparsemax);
    let opts = TrainOptions::example(batch);
    let mut t = Trainer::new(&model, opts).unwrap();
    for epoch in 0..4 {
        let nb = t.begin_epoch(&data).unwrap();
        let (t0, c0) = (Instant::now(), cpu_seconds());
        t.run(&model, &data, nb).unwrap();
        let loss = t.end_epoch();
        println!(
            "epoch {epoch}: {:.3} s wall, {:.3} s CPU ({nb} steps, loss {loss:.6})",
            t0.elapsed().as_secs_f64(),
            cpu_seconds() - c0
        );
    }
    // the phases, timed by hand on the same steps (the epoch is begun only
    // for the process settings a training epoch runs under)
    let perm = Tensor::randperm(n as i64, (Kind::Int64, Device::Cpu));
    let _ = t.begin_epoch(&data).unwrap();
    let vars: Vec<Tensor> = model.vs.trainable_variables();
    let (mut tg, mut tf, mut tb) = (0.0, 0.0, 0.0);
    let steps = (n as i64 / batch) as usize;
    for s in 0..steps {
        for v in &vars {
            let mut g = v.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let a = Instant::now();
        let b = data.batch(&perm.narrow(0, s as i64 * batch, batch));
        let bt = Instant::now();
        let bl = model
            .batch_loss(&b, true, t.opts.lambda_sparse, model.backend())
            .unwrap();
        let ft = Instant::now();
        bl.backward();
        let et = Instant::now();
        tg += (bt - a).as_secs_f64();
        tf += (ft - bt).as_secs_f64();
        tb += (et - ft).as_secs_f64();
    }
    t.release();
    let ms = |x: f64| 1e3 * x / steps as f64;
    println!(
        "per step: gather {:.3} ms, forward+loss {:.3} ms, backward {:.3} ms",
        ms(tg),
        ms(tf),
        ms(tb)
    );
}
