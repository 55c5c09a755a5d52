//! The encoder's initial batch norm (statistics over the whole batch, not per
//! virtual batch) inside the fused training pass, forward and backward by
//! hand: the pass then starts from the embedded input, and when that input
//! carries no autograd history (numeric predictors only) the backward needs no
//! autograd call at all. Sums run over the rows in f64, in row order, on the
//! calling thread (the same bits on any number of threads); libtorch's CPU
//! batch norm also accumulates in double, so both agree to float32 rounding
//! (tested below).
use super::to_vec;
use crate::ghost_bn::BatchNorm;
use crate::kernels::{empty, values, values_mut};
use tch::{Kind, Tensor};

/// What the backward needs: the BN (γ and β as parameters; γ as values), 1/σ
/// per column and the normalised input x̂ (rows × dims, row-major).
pub(super) struct InitialBn {
    pub(super) bn: BatchNorm,
    gamma: Vec<f32>,
    rstd: Vec<f32>,
    xhat: Vec<f32>,
    dims: usize,
}

impl InitialBn {
    /// x0 = γ (x − μ)/σ + β over the batch `x` (rows ≥ 2, f32 CPU), with one
    /// update of the running statistics (unbiased variance, as libtorch).
    pub(super) fn forward(bn: &BatchNorm, x: &Tensor) -> (InitialBn, Tensor) {
        let x = x.detach().to_kind(Kind::Float).contiguous();
        let (rows, dims) = (x.size()[0] as usize, x.size()[1] as usize);
        let xs = values(&x);
        let n = rows as f64;
        let mut mean = vec![0f64; dims];
        for r in xs.chunks_exact(dims) {
            for (m, &v) in mean.iter_mut().zip(r) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut ss = vec![0f64; dims];
        for r in xs.chunks_exact(dims) {
            for ((s, &v), m) in ss.iter_mut().zip(r).zip(&mean) {
                let d = v as f64 - m;
                *s += d * d;
            }
        }
        let rstd: Vec<f64> = ss.iter().map(|s| 1.0 / (s / n + bn.eps).sqrt()).collect();
        let (gamma, beta) = (to_vec(&bn.weight), to_vec(&bn.bias));
        let mut xhat = vec![0f32; rows * dims];
        let x0 = empty(rows, dims);
        let mut x0_handle = x0.shallow_clone();
        // SAFETY: x0 is fresh and written here alone (its other handle is
        // not used until this slice is dropped).
        let out = unsafe { values_mut(&mut x0_handle) };
        for ((r, h), o) in xs
            .chunks_exact(dims)
            .zip(xhat.chunks_exact_mut(dims))
            .zip(out.chunks_exact_mut(dims))
        {
            for j in 0..dims {
                let v = ((r[j] as f64 - mean[j]) * rstd[j]) as f32;
                h[j] = v;
                o[j] = gamma[j] * v + beta[j];
            }
        }
        let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let var_unbiased: Vec<f32> = ss.iter().map(|s| (s / (n - 1.0)) as f32).collect();
        bn.update_running_from(&mean32, &var_unbiased);
        let tape = InitialBn {
            bn: bn.shallow_clone(),
            gamma,
            rstd: rstd.iter().map(|&s| s as f32).collect(),
            xhat,
            dims,
        };
        (tape, x0)
    }

    /// From ∂L/∂x0: (∂L/∂x, ∂L/∂γ, ∂L/∂β), with
    /// ∂L/∂x = γ/σ (g − mean(g) − x̂ mean(g x̂)), ∂L/∂γ = Σ g x̂, ∂L/∂β = Σ g.
    pub(super) fn backward(&self, dx0: &Tensor) -> (Tensor, Vec<f32>, Vec<f32>) {
        let dims = self.dims;
        let g = dx0.contiguous();
        let gs = values(&g);
        let rows = gs.len() / dims;
        let (mut sum_g, mut sum_gx) = (vec![0f64; dims], vec![0f64; dims]);
        for (gr, hr) in gs.chunks_exact(dims).zip(self.xhat.chunks_exact(dims)) {
            for j in 0..dims {
                sum_g[j] += gr[j] as f64;
                sum_gx[j] += gr[j] as f64 * hr[j] as f64;
            }
        }
        let n = rows as f64;
        let a: Vec<f32> = self
            .gamma
            .iter()
            .zip(&self.rstd)
            .map(|(g, s)| g * s)
            .collect();
        let mg: Vec<f32> = sum_g.iter().map(|s| (s / n) as f32).collect();
        let mgx: Vec<f32> = sum_gx.iter().map(|s| (s / n) as f32).collect();
        let dx = empty(rows, dims);
        let mut dx_handle = dx.shallow_clone();
        // SAFETY: dx is fresh and written here alone (its other handle is
        // not used until this slice is dropped).
        let out = unsafe { values_mut(&mut dx_handle) };
        for ((o, gr), hr) in out
            .chunks_exact_mut(dims)
            .zip(gs.chunks_exact(dims))
            .zip(self.xhat.chunks_exact(dims))
        {
            for j in 0..dims {
                o[j] = a[j] * (gr[j] - mg[j] - hr[j] * mgx[j]);
            }
        }
        let f32s = |v: &[f64]| v.iter().map(|&s| s as f32).collect::<Vec<f32>>();
        (dx, f32s(&sum_gx), f32s(&sum_g))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::close;
    use super::*;
    use crate::ghost_bn::batch_norm_train;
    use tch::nn::VarStore;

    /// Forward, running statistics and all three gradients against libtorch's
    /// batch norm (and its autograd) on 300 × 7 values with columns of
    /// different means and spreads. Tolerances (see `super::testing`): every
    /// value comes from sums over the 300 rows (ours in f64; libtorch's
    /// float32 roundings of its statistics and products reach ~u √n), n =
    /// 300, k = 16 (seen ≤ 0.9). A missing term moves values by O(1/√n) ≈
    /// 0.06 or more.
    #[test]
    fn matches_libtorch_batch_norm() {
        let z = crate::test_data::normal(&[300, 7], 3).to_kind(Kind::Float);
        let scale = Tensor::of_slice(&[1.0f32, 3.0, 0.2, 10.0, 1.0, 0.5, 2.0]);
        let shift = Tensor::of_slice(&[0.0f32, -2.0, 5.0, 1.0, 0.3, -0.1, 40.0]);
        let x = (&z * &scale + &shift).contiguous();
        let vs = VarStore::new(tch::Device::Cpu);
        let ours = BatchNorm::new(&(vs.root() / "a"), 7, 0.02);
        let theirs = BatchNorm::new(&(vs.root() / "b"), 7, 0.02);
        tch::no_grad(|| {
            for bn in [&ours, &theirs] {
                let mut w = bn.weight.shallow_clone();
                w.copy_(&Tensor::of_slice(&[1.5f32, 0.5, 2.0, 1.0, 0.7, 1.2, 0.9]));
                let mut b = bn.bias.shallow_clone();
                b.copy_(&Tensor::of_slice(&[0.1f32, -0.3, 0.0, 2.0, 0.5, -1.0, 0.2]));
            }
        });
        let upstream = crate::test_data::normal(&[300, 7], 4).to_kind(Kind::Float);
        // ours
        let (tape, x0) = InitialBn::forward(&ours, &x);
        let (dx, dgamma, dbeta) = tape.backward(&upstream);
        // libtorch, through autograd
        let xg = x.detach().set_requires_grad(true);
        let (out, mean, var) = batch_norm_train(&xg, &theirs.weight, &theirs.bias, theirs.eps);
        theirs.update_running(&mean.view([1, -1]), &var.view([1, -1]), Some(300));
        (&out * &upstream).sum(Kind::Float).backward();
        close("output", &x0, &out.detach(), 300, 16.0);
        close("∂L/∂x", &dx, &xg.grad(), 300, 16.0);
        let t = |v: &[f32]| Tensor::of_slice(v);
        close("∂L/∂γ", &t(&dgamma), &theirs.weight.grad(), 300, 16.0);
        close("∂L/∂β", &t(&dbeta), &theirs.bias.grad(), 300, 16.0);
        close(
            "running mean",
            &ours.running_mean,
            &theirs.running_mean,
            300,
            16.0,
        );
        close(
            "running variance",
            &ours.running_var,
            &theirs.running_var,
            300,
            16.0,
        );
    }
}
