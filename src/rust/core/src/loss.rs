//! Task losses per row, and their case-weighted batch mean.
use crate::config::{NetConfig, Task};
use tch::{Kind, Tensor};

/// Loss of each row, (B): mean over outcomes of the cross-entropy (one softmax
/// per outcome) or of the squared error.
pub fn per_row(cfg: &NetConfig, out: &Tensor, y: &Tensor) -> Tensor {
    match cfg.task {
        Task::Regression => (out - y)
            .square()
            .mean_dim(Some(&[1i64][..]), false, Kind::Float),
        Task::Classification => {
            let mut total: Option<Tensor> = None;
            let mut offset = 0i64;
            for (k, &d) in cfg.output_dims.iter().enumerate() {
                let logp = out.narrow(1, offset, d as i64).log_softmax(1, Kind::Float);
                let target = y.select(1, k as i64).unsqueeze(1);
                let nll = -logp.gather(1, &target, false).squeeze_dim(1);
                total = Some(match total {
                    None => nll,
                    Some(t) => t + nll,
                });
                offset += d as i64;
            }
            total.expect("at least one outcome") / cfg.output_dims.len() as f64
        }
    }
}

/// Σ w·L / Σ w, or the plain mean without weights.
pub fn weighted_mean(per_row: &Tensor, w: Option<&Tensor>) -> Tensor {
    match w {
        None => per_row.mean(Kind::Float),
        // A batch whose weights are all zero carries no information: its loss
        // is 0 (not 0/0 = NaN, which would spread to every weight).
        Some(w) => {
            (per_row * w).sum(Kind::Float)
                / w.sum(Kind::Float).clamp_min(f64::from(f32::MIN_POSITIVE))
        }
    }
}

/// Turns raw outputs into probabilities (softmax per outcome) or values.
pub fn activate(cfg: &NetConfig, out: &Tensor) -> Tensor {
    match cfg.task {
        Task::Regression => out.shallow_clone(),
        Task::Classification => {
            let mut offset = 0i64;
            let parts: Vec<Tensor> = cfg
                .output_dims
                .iter()
                .map(|&d| {
                    let p = out.narrow(1, offset, d as i64).softmax(1, Kind::Float);
                    offset += d as i64;
                    p
                })
                .collect();
            Tensor::cat(&parts, 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn weighted_batch_loss_is_the_weighted_mean_of_row_losses() {
        let cfg = NetConfig::example(3, vec![3, 2], Task::Classification);
        tch::manual_seed(1);
        let out = Tensor::randn(&[6, 5], (Kind::Float, Device::Cpu));
        let y = Tensor::of_slice(&[0i64, 1, 2, 0, 1, 1, 0, 0, 2, 1, 1, 0]).view([6, 2]);
        let w = Tensor::of_slice(&[1.0f32, 0.0, 2.5, 1.0, 3.0, 0.5]);
        let rows = per_row(&cfg, &out, &y);
        // each row's loss from its own definition
        let logits: Vec<Vec<f32>> = (0..6).map(|r| Vec::<f32>::from(&out.get(r))).collect();
        let ys: Vec<i64> = Vec::from(&y.view([-1]));
        let ws: Vec<f32> = Vec::from(&w);
        let mut num = 0.0f64;
        let mut den = 0.0f64;
        for r in 0..6 {
            let ce = |lo: &[f32], t: usize| {
                let m = lo.iter().cloned().fold(f32::MIN, f32::max) as f64;
                let lse = m + lo.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
                lse - lo[t] as f64
            };
            let l = (ce(&logits[r][0..3], ys[2 * r] as usize)
                + ce(&logits[r][3..5], ys[2 * r + 1] as usize))
                / 2.0;
            assert!((rows.double_value(&[r as i64]) - l).abs() < 1e-5);
            num += ws[r] as f64 * l;
            den += ws[r] as f64;
        }
        let got = weighted_mean(&rows, Some(&w)).double_value(&[]);
        assert!((got - num / den).abs() < 1e-5, "{got} vs {}", num / den);
        // equal weights give the plain mean
        let ones = Tensor::ones(&[6], (Kind::Float, Device::Cpu)) * 4.0;
        let a = weighted_mean(&rows, Some(&ones)).double_value(&[]);
        let b = weighted_mean(&rows, None).double_value(&[]);
        assert!((a - b).abs() < 1e-6);
        // per-outcome probabilities sum to one
        let p = activate(&cfg, &out);
        let s1 = p
            .narrow(1, 0, 3)
            .sum_dim_intlist(Some(&[1i64][..]), false, Kind::Float);
        let s2 = p
            .narrow(1, 3, 2)
            .sum_dim_intlist(Some(&[1i64][..]), false, Kind::Float);
        assert!((s1 - 1.0).abs().max().double_value(&[]) < 1e-6);
        assert!((s2 - 1.0).abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn a_batch_of_zero_weights_has_loss_zero_and_finite_gradients() {
        let out = Tensor::randn(&[4, 1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let rows = (&out * 2.0).square().view([-1]);
        let w = Tensor::zeros(&[4], (Kind::Float, Device::Cpu));
        let l = weighted_mean(&rows, Some(&w));
        assert_eq!(l.double_value(&[]), 0.0);
        l.backward();
        let g = out.grad();
        assert_eq!(g.isfinite().all().int64_value(&[]), 1);
        assert_eq!(g.abs().max().double_value(&[]), 0.0);
    }
}
