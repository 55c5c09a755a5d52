//! A GLU layer, out = GLU(GBN(h Wᵀ)) [+ h, × √½ when residual], in the fused
//! pass: the fused twin of [`crate::glu::GluLayer`] (and of one step of
//! [`crate::glu::GluBlock`] when residual). Its saved state
//! ([`LayerTape`]), its forward on one task's rows ([`LayerRun`]: the
//! ghost-BN linear map of [`super::linear_bn`] with the normalisation, GLU and
//! residual fused into one kernel, [`kernels::bn_glu_rows`]) and its backward
//! ([`LayerBack`], [`kernels::glu_grad_rows`]); in eval mode, the layer
//! folded ([`GluPlan`]).
use super::buffers::Buffers;
use super::linear_bn::{fold, ChunkStats, LinearBn, LinearBnBack, LinearBnForward, TaskGrads};
use crate::glu::GluLayer;
use crate::kernels::{self, Chunks, FoldedGlu, Strided};
use std::ops::Range;
use tch::Tensor;

const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Saved state of one GLU layer: out = GLU(GBN(h Wᵀ)) [+ h, × √½ when residual].
pub(super) struct LayerTape {
    pub(super) lin: LinearBn,
    pub(super) out: Tensor,
    pub(super) residual: bool,
}

impl LayerTape {
    /// The layer's saved state before the pass, from its input `x` (rows of
    /// the layer's fan-in): ẑ and the output are allocated.
    pub(super) fn new(
        layer: &GluLayer,
        residual: bool,
        x: &Tensor,
        rows: usize,
        buf: &mut Buffers,
    ) -> LayerTape {
        LayerTape {
            lin: LinearBn::new(&layer.fc, &layer.bn.norm, x, rows, buf),
            out: buf.take(rows, (layer.fc.size()[0] / 2) as usize),
            residual,
        }
    }
}

/// One task's rows of a GLU layer's outputs: ẑ (rows of 2d) and the output
/// (rows of d).
pub(super) struct LayerRows<'a> {
    pub(super) zhat: &'a mut [f32],
    pub(super) out: &'a mut [f32],
}

/// A GLU layer's forward as the tasks run it.
pub(super) struct LayerRun<'a> {
    lin: LinearBnForward<'a>,
    gamma: &'a [f32],
    beta: &'a [f32],
    /// output width
    pub(super) d: usize,
    residual: bool,
}

impl<'a> LayerRun<'a> {
    pub(super) fn of(t: &'a LayerTape) -> Self {
        LayerRun {
            lin: t.lin.forward_plan(),
            gamma: &t.lin.gamma,
            beta: &t.lin.beta,
            d: t.out.size()[1] as usize,
            residual: t.residual,
        }
    }

    /// The task `t`'s rows: `x` its rows of the input, `rows` its rows of the
    /// layer's outputs.
    pub(super) fn task(
        &self,
        chunks: &Chunks,
        t: &Range<usize>,
        x: Strided,
        rows: &mut LayerRows,
    ) -> Vec<ChunkStats> {
        let (f, _) = chunks.task_rows(t);
        let d = self.d;
        // a residual layer's input has the output's width
        assert!(!self.residual || (x.cols, x.ld) == (d, d));
        let out = &mut *rows.out;
        self.lin.task(chunks, t, x, rows.zhat, |r, zb, mean, rstd| {
            let n = zb.len() / (2 * d);
            let h: &[f32] = if self.residual {
                x.rows(r - f, n).data
            } else {
                &[]
            };
            let out = &mut out[(r - f) * d..(r - f + n) * d];
            kernels::bn_glu_rows(zb, mean, rstd, self.gamma, self.beta, h, out);
        })
    }
}

/// A layer's backward as the tasks run it: the saved input (rows of n_in) and
/// ẑ (rows of 2d), read only.
pub(super) struct LayerBack<'a> {
    lin: LinearBnBack<'a>,
    /// output width
    pub(super) d: usize,
    n_in: usize,
    residual: bool,
}

impl<'a> LayerBack<'a> {
    pub(super) fn of(t: &'a LayerTape) -> Self {
        LayerBack {
            lin: t.lin.back(),
            d: t.out.size()[1] as usize,
            n_in: t.lin.input.size()[1] as usize,
            residual: t.residual,
        }
    }

    /// ∂L/∂input (the task's rows) from ∂L/∂out `g_out` (the task's rows),
    /// with `dz` as scratch; pushes the task's parameter gradients.
    pub(super) fn task(
        &self,
        chunks: &Chunks,
        t: &Range<usize>,
        g_out: &[f32],
        dz: &mut [f32],
        out: &mut Vec<TaskGrads>,
    ) -> Vec<f32> {
        let (f, _) = chunks.task_rows(t);
        let n = g_out.len() / self.d;
        let mut g_in = vec![0f32; n * self.n_in];
        let d = self.d;
        let scale = if self.residual { SQRT_HALF } else { 1.0 };
        out.push(self.lin.task(
            chunks,
            t,
            dz,
            &mut g_in,
            |r, zb, gy, sum_g, sum_gz| {
                let go = &g_out[(r - f) * d..(r - f) * d + zb.len() / 2];
                kernels::glu_grad_rows(
                    zb,
                    self.lin.gamma,
                    self.lin.beta,
                    go,
                    scale,
                    gy,
                    sum_g,
                    sum_gz,
                )
            },
            |_, gi| {
                // a residual layer's input has the output's width
                if self.residual {
                    kernels::axpy_row(gi, g_out, scale);
                }
            },
        ));
        g_in
    }
}

/// The layer in eval mode: its batch norm (running statistics) folded into
/// the product, the gate in the product's epilogue ([`FoldedGlu`]).
pub(super) struct GluPlan {
    pub(super) glu: FoldedGlu,
}

impl GluPlan {
    pub(super) fn of(layer: &GluLayer, residual: bool) -> GluPlan {
        GluPlan {
            glu: FoldedGlu::new(fold(&layer.fc, &layer.bn.norm), residual),
        }
    }

    /// The layer on `n` rows of `x` (rows of the fan-in) into `out` (rows of
    /// d), with `z` as scratch.
    pub(super) fn forward(&self, x: &[f32], n: usize, z: &mut Vec<f32>, out: &mut [f32]) {
        self.glu.apply(x, n, z, out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::buffers::TapeBuffers;
    use super::super::linear_bn::merge_grads;
    use super::super::testing::{close, input, interleaving};
    use super::*;
    use crate::ghost_bn::chunk_sizes;
    use crate::kernels::{split_rows, values, values_mut, view};
    use std::sync::Arc;
    use tch::nn::{ModuleT, VarStore};
    use tch::Kind;

    /// One GLU layer, without and with the residual (fan-in 12 and 8 → 8),
    /// training forward and backward run task by task over 301 rows (virtual
    /// batches 61, 61, 61, 61, 57), then the eval forward (running
    /// statistics folded into the product), against [`GluLayer`]'s
    /// `forward_t` (with `(h + layer(h)) √½` when residual) and autograd on
    /// the same parameters. Tolerances (see `testing`): the output and ∂L/∂h
    /// pass the product (n = fan-in) and the batch norm's sums over a virtual
    /// batch (n = 61); the parameter gradients sum over the 301 rows (n =
    /// 301); the eval output only the product (n = fan-in). k = 16 (the GLU's
    /// σ and product add a few roundings; seen ≤ 1.2).
    #[test]
    fn matches_the_glu_layer() {
        for (residual, n_in) in [(false, 12usize), (true, 8)] {
            check(residual, n_in);
        }
    }

    fn check(residual: bool, n_in: usize) {
        let (rows, d, vbs) = (301usize, 8usize, 64usize);
        let x = input(rows, n_in, 31);
        let w = input(2 * d, n_in, 32) * 0.3;
        let g_out = input(rows, d, 33);
        let (gamma, beta) = (
            input(1, 2 * d, 34).view([-1]),
            input(1, 2 * d, 35).view([-1]),
        );
        let vs = VarStore::new(tch::Device::Cpu);
        let make = |name: &str| {
            let fc = vs.root().var_copy(&format!("{name}_fc"), &w);
            let layer = GluLayer::new(&(vs.root() / name), fc, d as i64, vbs as i64, 0.3);
            tch::no_grad(|| {
                layer.bn.norm.weight.shallow_clone().copy_(&gamma);
                layer.bn.norm.bias.shallow_clone().copy_(&beta);
            });
            layer
        };
        let (fused, reference) = (make("fused"), make("reference"));

        // fused, task by task
        let chunks = Chunks::from_sizes(&chunk_sizes(rows as i64, vbs as i64));
        let tasks = chunks.tasks();
        let counts: Vec<usize> = tasks.iter().map(|t| chunks.task_rows(t).1).collect();
        let mut buf = Buffers::new(Arc::new(TapeBuffers::default()));
        let mut tape = LayerTape::new(&fused, residual, &x, rows, &mut buf);
        let xs = view(&x);
        let stats: Vec<Vec<ChunkStats>> = {
            let run = LayerRun::of(&tape);
            let (mut zh, mut oh) = (tape.lin.zhat.shallow_clone(), tape.out.shallow_clone());
            // SAFETY: ẑ and the output are this layer's own buffers, used
            // through no other handle until the slices are dropped.
            let (z, o) = unsafe { (values_mut(&mut zh), values_mut(&mut oh)) };
            let z = split_rows(z, 2 * d, counts.iter().copied());
            let o = split_rows(o, d, counts.iter().copied());
            tasks
                .iter()
                .zip(z.into_iter().zip(o))
                .map(|(t, (zhat, out))| {
                    let (f, n) = chunks.task_rows(t);
                    run.task(&chunks, t, xs.rows(f, n), &mut LayerRows { zhat, out })
                })
                .collect()
        };
        tape.lin.finish(stats.iter().map(|s| s.as_slice()));
        let back = LayerBack::of(&tape);
        let go = values(&g_out);
        let mut parts = Vec::new();
        let mut dx = Vec::new();
        for t in &tasks {
            let (f, n) = chunks.task_rows(t);
            let mut dz = vec![0f32; n * 2 * d];
            let mut grads = Vec::new();
            dx.extend(back.task(&chunks, t, &go[f * d..(f + n) * d], &mut dz, &mut grads));
            parts.extend(grads);
        }
        let (dgamma, dbeta, dw) = merge_grads(parts);

        // the reference, rows ordered so that its virtual batches are the same
        let p = interleaving(rows, vbs);
        let xr = x.index_select(0, &p).set_requires_grad(true);
        let layer_out = reference.forward_t(&xr, true);
        let yr = if residual {
            (&xr + layer_out) * 0.5f64.sqrt()
        } else {
            layer_out
        };
        (&yr * g_out.index_select(0, &p))
            .sum(Kind::Float)
            .backward();

        let what = |s: &str| format!("{s} (residual {residual})");
        let out = tape.out.index_select(0, &p);
        close(&what("out"), &out, &yr.detach(), 61, 16.0);
        let dx = Tensor::of_slice(&dx).view([rows as i64, n_in as i64]);
        close(
            &what("∂L/∂h"),
            &dx.index_select(0, &p),
            &xr.grad(),
            61,
            16.0,
        );
        let (t, bn) = (|v: &[f32]| Tensor::of_slice(v), &reference.bn.norm);
        close(&what("∂L/∂γ"), &t(&dgamma), &bn.weight.grad(), 301, 16.0);
        close(&what("∂L/∂β"), &t(&dbeta), &bn.bias.grad(), 301, 16.0);
        let dw = t(&dw).view([2 * d as i64, n_in as i64]);
        close(&what("∂L/∂W"), &dw, &reference.fc.grad(), 301, 16.0);

        // eval: the running statistics both sides updated, folded
        let plan = GluPlan::of(&fused, residual);
        let mut z = vec![0f32; rows * 2 * d];
        let mut out = vec![0f32; rows * d];
        plan.forward(values(&x), rows, &mut z, &mut out);
        let want = tch::no_grad(|| {
            let o = reference.forward_t(&x, false);
            if residual {
                (&x + o) * 0.5f64.sqrt()
            } else {
                o
            }
        });
        let out = Tensor::of_slice(&out).view([rows as i64, d as i64]);
        close(&what("eval out"), &out, &want, n_in, 16.0);
    }
}
