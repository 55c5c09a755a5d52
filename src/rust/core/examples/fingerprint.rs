//! A fingerprint of training and inference bits: `cargo run --release --example
//! fingerprint -- [threads]` trains two small models for 3 epochs (sparsemax,
//! virtual batches of 128; entmax with feature groups, virtual batches of 100
//! and an uneven last one) and prints the bits of each epoch's loss and hashes
//! of the weights, `predict()` and `explain()` outputs. A change meant to keep
//! the numerics (a refactoring of the fused pass) must print the same lines,
//! on any thread count (and with `TABNETRS_KERNELS=blas`, its own lines).
use tabnet_core::data::Dataset;
use tabnet_core::trainer::{TrainOptions, Trainer};
use tabnet_core::{MaskType, Model, NetConfig, Task};
use tch::{Device, Kind, Tensor};

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    tabnet_core::runtime::set_threads(threads);
    for (mask, grouped, vbs) in [
        (MaskType::Sparsemax, false, 128),
        (MaskType::Entmax, true, 100),
    ] {
        let (n, p, batch) = (3000usize, 10usize, 1024i64);
        let mut cfg = NetConfig::example(p, vec![3], Task::Classification);
        cfg.mask_type = mask;
        cfg.virtual_batch_size = vbs;
        if grouped {
            cfg.grouped_features = vec![vec![0, 1, 2], vec![5, 7]];
        }
        tch::manual_seed(7);
        let x = Tensor::randn(&[p as i64, n as i64], (Kind::Double, Device::Cpu));
        let cols: Vec<Vec<f64>> = (0..p).map(|j| Vec::<f64>::from(&x.get(j as i64))).collect();
        let y: Vec<i32> = (0..n)
            .map(|r| {
                ((cols[0][r] * cols[1][r] + cols[2][r] > 0.0) as i32) + (cols[3][r] > 1.0) as i32
            })
            .collect();
        let data = Dataset::classes_example(&cfg, &cols, &y).unwrap();
        let model = Model::new(cfg, Device::Cpu).unwrap();
        let mut t = Trainer::new(&model, TrainOptions::example(batch)).unwrap();
        let mut losses = Vec::new();
        for _ in 0..3 {
            let nb = t.begin_epoch(&data).unwrap();
            t.run(&model, &data, nb).unwrap();
            losses.push(t.end_epoch());
        }
        let w = fnv(&model.to_bytes().unwrap());
        let pred = tabnet_core::inference::predict(&model, &data, 700).unwrap();
        let pv = Vec::<f32>::from(&pred.to_kind(Kind::Float).contiguous().view([-1]));
        let pb: Vec<u8> = pv.iter().flat_map(|v| v.to_le_bytes()).collect();
        let (e, masks) = tabnet_core::inference::explain(&model, &data, 700).unwrap();
        let mut eb: Vec<u8> = Vec::new();
        for t in std::iter::once(&e).chain(masks.iter()) {
            let v = Vec::<f32>::from(&t.to_kind(Kind::Float).contiguous().view([-1]));
            eb.extend(v.iter().flat_map(|v| v.to_le_bytes()));
        }
        let lb: Vec<String> = losses
            .iter()
            .map(|l| format!("{:016x}", l.to_bits()))
            .collect();
        println!(
            "{mask:?} losses {} weights {w:016x} pred {:016x} explain {:016x}",
            lb.join(","),
            fnv(&pb),
            fnv(&eb)
        );
    }
}
