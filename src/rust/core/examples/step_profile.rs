//! Where a training step's time goes (forward, backward, optimizer), under the
//! training-run settings: `step_profile THREADS [s]` (s: TabNet-S, else defaults).
use std::time::Instant;
use tabnet_core::data::{Dataset, Targets};
use tabnet_core::{Model, NetConfig, Task};
use tch::{Device, Kind, Tensor};

fn main() {
    let threads: i32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let (batch, vbs, nd, steps, p) = match std::env::args().nth(2).as_deref() {
        Some("s") => (16384i64, 512usize, 24usize, 5usize, 28usize),
        _ => (1024, 128, 8, 3, 10),
    };
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let n = batch as usize * 4;
    let x = Tensor::randn(&[p as i64, n as i64], (Kind::Double, Device::Cpu));
    let cols: Vec<Vec<f64>> = (0..p).map(|j| Vec::<f64>::from(&x.get(j as i64))).collect();
    let y: Vec<i32> = (0..n)
        .map(|r| (cols[2][r] + cols[3][r] > 0.0) as i32)
        .collect();
    let mut cfg = NetConfig::example(p, vec![2], Task::Classification);
    cfg.virtual_batch_size = vbs;
    cfg.n_d = nd;
    cfg.n_a = if nd == 24 { 26 } else { nd };
    cfg.n_steps = steps;
    let refs: Vec<&[f64]> = cols.iter().map(|c| c.as_slice()).collect();
    let names: Vec<String> = (0..p).map(|j| format!("V{j}")).collect();
    let data = Dataset::from_columns(
        &cfg,
        &refs,
        &[],
        &names,
        Some(Targets::Classes(vec![&y])),
        None,
        Device::Cpu,
    )
    .unwrap();
    let model = Model::new(cfg, Device::Cpu).unwrap();
    let mut opt = tabnet_core::adam::Adam::new(&model.vs, 0.02);
    let _settings = tabnet_core::run_settings::RunSettings::enter();
    let (mut tf, mut tb, mut to) = (0.0, 0.0, 0.0);
    let reps = if batch > 2000 { 8 } else { 400 };
    for i in 0..reps + 5 {
        let idx = Tensor::randperm(n as i64, (Kind::Int64, Device::Cpu)).narrow(0, 0, batch);
        let b = data.batch(&idx);
        let t0 = Instant::now();
        let bl = model.batch_loss(&b, true, 1e-3).unwrap();
        let t1 = Instant::now();
        opt.zero_grad();
        bl.backward();
        let t2 = Instant::now();
        opt.step();
        let t3 = Instant::now();
        if i >= 5 {
            tf += (t1 - t0).as_secs_f64();
            tb += (t2 - t1).as_secs_f64();
            to += (t3 - t2).as_secs_f64();
        }
    }
    let r = reps as f64 * 1e-3;
    println!(
        "per step: forward {:.2} ms, backward {:.2} ms, adam {:.2} ms",
        tf / r,
        tb / r,
        to / r
    );
}
