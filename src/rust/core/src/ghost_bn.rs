//! Ghost batch normalisation (Hoffer et al. 2017) with pytorch-tabnet's
//! chunking and statistics semantics, vectorised over virtual batches.
//!
//! A training batch of B rows is cut like `torch.chunk(ceil(B / vbs))`: chunks of
//! c = ceil(B / k) rows and a shorter last one. Each chunk is normalised with its
//! own biased mean/variance. The running statistics receive one PyTorch-style EMA
//! update per chunk, in order, with the chunk's unbiased variance; the k updates are
//! applied in closed form: r ← (1−m)^k r + Σᵢ m(1−m)^{k−1−i} sᵢ.
//! All equal-size chunks are normalised at once: chunk i of k takes rows
//! i, i + k, i + 2k, … (the batch is shuffled, so the assignment is as random as
//! torch.chunk's), which makes the batch a contiguous (c, k·C) view that
//! libtorch's fused batch norm handles in one kernel each way, with no copies.
//! A last chunk of one row is merged into the chunk before it, so
//! batch norm never sees a single row in training. Eval mode uses the running
//! statistics, so rows are independent of each other.
use tch::nn::ModuleT;
use tch::{nn, Kind, Tensor};

/// Plain batch norm over the rows of a (B, C) matrix (PyTorch's `BatchNorm1d`):
/// γ, β and the running statistics, which training updates PyTorch-style
/// (EMA with the batch's unbiased variance). The encoder's initial BN is one;
/// every [`GhostBatchNorm`] holds one for its parameters and statistics.
#[derive(Debug)]
pub(crate) struct BatchNorm {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) running_mean: Tensor,
    pub(crate) running_var: Tensor,
    pub(crate) momentum: f64,
    pub(crate) eps: f64,
}

impl BatchNorm {
    /// Another handle on the same parameters and statistics (updates through
    /// either reach both).
    pub(crate) fn shallow_clone(&self) -> BatchNorm {
        BatchNorm {
            weight: self.weight.shallow_clone(),
            bias: self.bias.shallow_clone(),
            running_mean: self.running_mean.shallow_clone(),
            running_var: self.running_var.shallow_clone(),
            momentum: self.momentum,
            eps: self.eps,
        }
    }

    /// Parameters `weight`, `bias` and statistics `running_mean`, `running_var`
    /// under `p`.
    pub fn new(p: &nn::Path, dim: i64, momentum: f64) -> Self {
        BatchNorm {
            weight: p.ones("weight", &[dim]),
            bias: p.zeros("bias", &[dim]),
            running_mean: p.zeros_no_train("running_mean", &[dim]),
            running_var: p.ones_no_train("running_var", &[dim]),
            momentum,
            eps: 1e-5,
        }
    }

    /// Applies one EMA update per chunk, in chunk order, to the running statistics
    /// from per-chunk means and variances (k, C), in closed form. The variances
    /// are unbiased, or biased over `biased_over` rows (Bessel's correction is
    /// then folded into their weights).
    pub(crate) fn update_running(&self, means: &Tensor, vars: &Tensor, biased_over: Option<i64>) {
        tch::no_grad(|| {
            let k = means.size()[0];
            let m = self.momentum;
            let weight = |i: i64| m * (1.0 - m).powi((k - 1 - i) as i32);
            let weights = |f: &dyn Fn(i64) -> f64| {
                let w: Vec<f32> = (0..k).map(|i| f(i) as f32).collect();
                Tensor::of_slice(&w).to_device(means.device()).view([k, 1])
            };
            let w_mean = weights(&weight);
            let w_var = match biased_over {
                None => w_mean.shallow_clone(),
                Some(n) => {
                    let n = n as f64;
                    weights(&|i| weight(i) * n / (n - 1.0))
                }
            };
            let decay = (1.0 - m).powi(k as i32);
            let new_mean = &self.running_mean * decay
                + (&w_mean * means).sum_dim_intlist(Some(&[0i64][..]), false, Kind::Float);
            let new_var = &self.running_var * decay
                + (&w_var * vars).sum_dim_intlist(Some(&[0i64][..]), false, Kind::Float);
            let mut rm = self.running_mean.shallow_clone();
            let mut rv = self.running_var.shallow_clone();
            rm.copy_(&new_mean);
            rv.copy_(&new_var);
        });
    }

    /// [`update_running`](Self::update_running) from per-chunk means and
    /// unbiased variances given as (k·C) slices; in place on the CPU.
    pub(crate) fn update_running_from(&self, means: &[f32], vars: &[f32]) {
        let ch = self.running_mean.numel();
        // SAFETY: the running statistics are distinct tensors, and nothing else
        // reads or writes them during the update.
        match unsafe {
            (
                crate::kernels::as_mut_slice(&self.running_mean),
                crate::kernels::as_mut_slice(&self.running_var),
            )
        } {
            (Some(rm), Some(rv)) => {
                let m = self.momentum as f32;
                for (mean, var) in means.chunks_exact(ch).zip(vars.chunks_exact(ch)) {
                    for j in 0..ch {
                        rm[j] = (1.0 - m) * rm[j] + m * mean[j];
                        rv[j] = (1.0 - m) * rv[j] + m * var[j];
                    }
                }
            }
            _ => {
                let k = (means.len() / ch) as i64;
                let dev = self.running_mean.device();
                let t = |v: &[f32]| Tensor::of_slice(v).view([k, ch as i64]).to_device(dev);
                self.update_running(&t(means), &t(vars), None);
            }
        }
    }
}

impl ModuleT for BatchNorm {
    /// Training: the batch's own statistics (and one update of the running
    /// ones); eval: the running statistics.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if !train {
            return normalise_eval(
                x,
                &self.weight,
                &self.bias,
                &self.running_mean,
                &self.running_var,
                self.eps,
            );
        }
        let (out, mean, var) =
            batch_norm_train(&x.contiguous(), &self.weight, &self.bias, self.eps);
        let rows = x.size()[0];
        self.update_running(&mean.view([1, -1]), &var.view([1, -1]), Some(rows));
        out
    }
}

/// Batch norm with statistics per virtual batch (see the module's notes).
#[derive(Debug)]
pub(crate) struct GhostBatchNorm {
    /// γ, β, running statistics, momentum and ε
    pub(crate) norm: BatchNorm,
    pub(crate) virtual_batch_size: i64,
}

/// Sizes of the chunks a batch of `b` rows is cut into.
pub fn chunk_sizes(b: i64, vbs: i64) -> Vec<i64> {
    if b <= 0 {
        return vec![];
    }
    let k = (b + vbs - 1) / vbs;
    let c = (b + k - 1) / k;
    let mut sizes = vec![c; (b / c) as usize];
    let r = b % c;
    if r == 1 && !sizes.is_empty() {
        *sizes.last_mut().unwrap() += 1;
    } else if r > 0 {
        sizes.push(r);
    }
    sizes
}

/// The row order under which this module's interleaved virtual batches
/// (chunk i = rows i, i + k, …, for libtorch's fused batch norm) are the
/// fused pass's contiguous ones: feed the module `x.index_select(0, p)` and
/// compare its output with the fused rows `index_select(0, p)` (the
/// equivalence tests of the fused pass use it).
pub fn interleaved_order(rows: usize, vbs: usize) -> Vec<i64> {
    let sizes = chunk_sizes(rows as i64, vbs as i64);
    let c = sizes[0] as usize;
    let k = sizes.iter().take_while(|&&s| s as usize == c).count();
    let mut p = vec![0i64; rows];
    for i in 0..k {
        for j in 0..c {
            p[i + j * k] = (i * c + j) as i64;
        }
    }
    for (r, slot) in p.iter_mut().enumerate().skip(k * c) {
        *slot = r as i64;
    }
    p
}

impl ModuleT for GhostBatchNorm {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if !train {
            return self.norm.forward_t(x, false);
        }
        let b = x.size()[0];
        let sizes = chunk_sizes(b, self.virtual_batch_size);
        let c = sizes[0];
        let n_equal = sizes.iter().take_while(|&&s| s == c).count() as i64;
        let mut outs = Vec::with_capacity(2);
        let mut means = Vec::with_capacity(2);
        let mut vars = Vec::with_capacity(2);
        // the equal-size chunks, all at once
        let (o, m, v) = self.normalise_chunks(&x.narrow(0, 0, n_equal * c), n_equal, c);
        outs.push(o);
        means.push(m);
        vars.push(v);
        // the last, differently sized chunk (if any)
        let rest = b - n_equal * c;
        if rest > 0 {
            let (o, m, v) = self.normalise_chunks(&x.narrow(0, n_equal * c, rest), 1, rest);
            outs.push(o);
            means.push(m);
            vars.push(v);
        }
        self.norm
            .update_running(&Tensor::cat(&means, 0), &Tensor::cat(&vars, 0), None);
        if outs.len() == 1 {
            outs.pop().unwrap()
        } else {
            Tensor::cat(&outs, 0)
        }
    }
}

impl GhostBatchNorm {
    pub fn new(p: &nn::Path, dim: i64, virtual_batch_size: i64, momentum: f64) -> Self {
        GhostBatchNorm {
            norm: BatchNorm::new(p, dim, momentum),
            virtual_batch_size,
        }
    }

    /// Normalises `k` chunks of `c` rows each. The chunks are interleaved: chunk `i`
    /// holds rows i, i + k, i + 2k, …, so the (k·c, C) batch is a contiguous
    /// (c, k·C) view and libtorch's fused batch norm (one kernel forward, one
    /// backward) normalises every (chunk, channel) pair at once. Batches are
    /// shuffled, so which rows share a chunk is as random as with contiguous chunks.
    /// Returns the output and the per-chunk means and unbiased variances (k, C).
    fn normalise_chunks(&self, x: &Tensor, k: i64, c: i64) -> (Tensor, Tensor, Tensor) {
        let ch = x.size()[1];
        let (w, b) = if k == 1 {
            (
                self.norm.weight.shallow_clone(),
                self.norm.bias.shallow_clone(),
            )
        } else {
            (self.norm.weight.repeat(&[k]), self.norm.bias.repeat(&[k]))
        };
        let (out, mean, var) =
            batch_norm_train(&x.contiguous().view([c, k * ch]), &w, &b, self.norm.eps);
        let out = out.view([k * c, ch]);
        let (mean, var) = tch::no_grad(|| {
            (
                mean.view([k, ch]),
                var.view([k, ch]) * (c as f64 / (c - 1) as f64),
            )
        });
        (out, mean, var)
    }
}

/// Training-mode batch norm of a contiguous (rows, C) matrix over its rows with
/// biased variance, through libtorch's fused `native_batch_norm` (autograd uses its
/// fused backward). Returns (output, mean, biased variance), the statistics detached.
pub(crate) fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> (Tensor, Tensor, Tensor) {
    let (out, mean, invstd) = x.native_batch_norm(
        Some(weight),
        Some(bias),
        None::<&Tensor>,
        None::<&Tensor>,
        true,
        0.0,
        eps,
    );
    let var = tch::no_grad(|| invstd.detach().square().reciprocal() - eps);
    (out, mean.detach(), var)
}

/// Eval-mode batch norm with running statistics, as one fused `addcmul`.
pub(crate) fn normalise_eval(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Tensor {
    let scale = (running_var + eps).rsqrt() * weight;
    let shift = bias - running_mean * &scale;
    shift.addcmul(x, &scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    #[test]
    fn chunking_follows_torch_chunk() {
        assert_eq!(chunk_sizes(1000, 128), vec![125; 8]);
        assert_eq!(chunk_sizes(1030, 128), [vec![115; 8], vec![110]].concat());
        assert_eq!(chunk_sizes(100, 128), vec![100]);
        // a remainder of one row is merged, never normalised alone
        assert_eq!(chunk_sizes(257, 128), vec![86, 86, 85]);
        assert_eq!(chunk_sizes(7, 3), vec![3, 4]);
        assert_eq!(chunk_sizes(7, 3).iter().sum::<i64>(), 7);
    }

    /// Reference: per-chunk loop, exactly as the definition reads.
    fn reference(
        x: &Tensor,
        vbs: i64,
        m: f64,
        eps: f64,
        w: &Tensor,
        b: &Tensor,
    ) -> (Tensor, Tensor, Tensor) {
        let c = x.size()[1];
        let mut rm = Tensor::zeros(&[c], (Kind::Float, Device::Cpu));
        let mut rv = Tensor::ones(&[c], (Kind::Float, Device::Cpu));
        let mut outs = vec![];
        let sizes = chunk_sizes(x.size()[0], vbs);
        let k = sizes.iter().take_while(|&&s| s == sizes[0]).count() as i64;
        let equal = k * sizes[0];
        // chunk i of the k equal ones: rows i, i + k, i + 2k, … of the first k·c rows;
        // then the last, differently sized chunk (contiguous) if any
        let mut chunks: Vec<Vec<i64>> = (0..k)
            .map(|i| (i..equal).step_by(k as usize).collect())
            .collect();
        if equal < x.size()[0] {
            chunks.push((equal..x.size()[0]).collect());
        }
        let mut order = vec![];
        for rows in &chunks {
            let xc = x.index_select(0, &Tensor::of_slice(rows));
            order.extend_from_slice(rows);
            let mean = xc.mean_dim(Some(&[0i64][..]), false, Kind::Float);
            let var_b = xc.var_dim(Some(&[0i64][..]), false, false);
            let var_u = xc.var_dim(Some(&[0i64][..]), true, false);
            outs.push((&xc - &mean) / (&var_b + eps).sqrt() * w + b);
            rm = &rm * (1.0 - m) + mean * m;
            rv = &rv * (1.0 - m) + var_u * m;
        }
        // back to the rows' original order
        let inverse = Tensor::of_slice(&order).argsort(0, false);
        (Tensor::cat(&outs, 0).index_select(0, &inverse), rm, rv)
    }

    #[test]
    fn ghost_bn_matches_its_definition() {
        tch::manual_seed(3);
        for &(rows, vbs) in &[
            (1000i64, 128i64),
            (1030, 128),
            (257, 128),
            (64, 128),
            (7, 3),
        ] {
            let vs = VarStore::new(Device::Cpu);
            let gbn = GhostBatchNorm::new(&vs.root(), 5, vbs, 0.02);
            tch::no_grad(|| {
                let mut w = gbn.norm.weight.shallow_clone();
                w.copy_(&(Tensor::rand(&[5], (Kind::Float, Device::Cpu)) + 0.5));
                let mut b = gbn.norm.bias.shallow_clone();
                b.copy_(&Tensor::randn(&[5], (Kind::Float, Device::Cpu)));
            });
            let x = Tensor::randn(&[rows, 5], (Kind::Float, Device::Cpu)) * 3.0 + 1.0;
            let out = gbn.forward_t(&x, true);
            let (want, rm, rv) = reference(
                &x,
                vbs,
                0.02,
                1e-5,
                &gbn.norm.weight.detach(),
                &gbn.norm.bias.detach(),
            );
            let d = (&out - want).abs().max().double_value(&[]);
            assert!(d < 1e-4, "output differs by {d} (rows {rows}, vbs {vbs})");
            let dm = (&gbn.norm.running_mean - rm).abs().max().double_value(&[]);
            let dv = (&gbn.norm.running_var - rv).abs().max().double_value(&[]);
            assert!(dm < 1e-5 && dv < 1e-4, "running stats differ: {dm} {dv}");
        }
    }

    #[test]
    fn eval_mode_is_row_independent() {
        tch::manual_seed(4);
        let vs = VarStore::new(Device::Cpu);
        let gbn = GhostBatchNorm::new(&vs.root(), 3, 16, 0.1);
        let x = Tensor::randn(&[64, 3], (Kind::Float, Device::Cpu)) * 2.0;
        let _ = gbn.forward_t(&x, true);
        let all = gbn.forward_t(&x, false);
        let one = gbn.forward_t(&x.narrow(0, 5, 1), false);
        let d = (all.narrow(0, 5, 1) - one).abs().max().double_value(&[]);
        assert!(d < 1e-6);
        // training mode, by contrast, normalises with the chunk's own statistics
        let shifted = x.narrow(0, 0, 16).copy();
        let t1 = gbn.forward_t(&shifted, true).narrow(0, 5, 1);
        let _ = shifted.narrow(0, 0, 1).fill_(100.0);
        let t2 = gbn.forward_t(&shifted, true).narrow(0, 5, 1);
        assert!((t1 - t2).abs().max().double_value(&[]) > 1e-3);
    }

    #[test]
    fn gradients_flow_to_affine_parameters() {
        let vs = VarStore::new(Device::Cpu);
        let gbn = GhostBatchNorm::new(&vs.root(), 4, 8, 0.02);
        let x = Tensor::randn(&[40, 4], (Kind::Float, Device::Cpu));
        let loss = gbn.forward_t(&x, true).square().sum(Kind::Float);
        loss.backward();
        assert!(
            gbn.norm
                .weight
                .grad()
                .abs()
                .sum(Kind::Float)
                .double_value(&[])
                > 0.0
        );
    }
}
