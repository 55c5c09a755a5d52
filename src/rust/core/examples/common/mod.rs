//! What the profiling examples share: the benchmark configurations with
//! their data, and the process's CPU time.
use tabnet_core::data::Dataset;
use tabnet_core::{MaskType, Model, NetConfig, Task};
use tch::{Device, Kind, Tensor};

/// CPU seconds used by this process so far (all its threads).
pub fn cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + 1e-9 * t.tv_nsec as f64
}

/// `defaults` (100,000 × 10, batch 1024, N_d = N_a = 8, 3 steps) or
/// `tabnet_s` (200,000 × 28, batch 16384, N_d 24, N_a 26, 5 steps) with
/// `mask`: a new model, its data (x ~ N(0, 1), y = x₀x₁ + x₂ > 0, seed 1),
/// the rows and the batch size. `ROWS` in the environment sets the rows.
pub fn setup(config: &str, mask: MaskType) -> (Model, Dataset, usize, i64) {
    let (n, p, batch) = if config == "tabnet_s" {
        (200_000usize, 28usize, 16_384i64)
    } else {
        (100_000, 10, 1024)
    };
    let n = std::env::var("ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(n);
    let mut cfg = NetConfig::example(p, vec![2], Task::Classification);
    cfg.mask_type = mask;
    if config == "tabnet_s" {
        (cfg.n_d, cfg.n_a, cfg.n_steps, cfg.gamma) = (24, 26, 5, 1.5);
        (cfg.virtual_batch_size, cfg.momentum) = (512, 0.4);
    }
    tch::manual_seed(1);
    let x = Tensor::randn(&[p as i64, n as i64], (Kind::Double, Device::Cpu));
    let cols: Vec<Vec<f64>> = (0..p).map(|j| Vec::<f64>::from(&x.get(j as i64))).collect();
    let y: Vec<i32> = (0..n)
        .map(|r| (cols[0][r] * cols[1][r] + cols[2][r] > 0.0) as i32)
        .collect();
    let data = Dataset::classes_example(&cfg, &cols, &y).unwrap();
    let model = Model::new(cfg, Device::Cpu).unwrap();
    (model, data, n, batch)
}
