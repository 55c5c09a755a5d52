//! An attentive transformer in the fused pass, M = mask(GBN(a Wᵀ) ⊙ prior)
//! (sparsemax or entmax-1.5 over the attention groups): the fused twin of
//! [`crate::attentive::AttentiveTransformer`] with [`crate::mask`]. Its saved
//! state ([`AttentionTape`]), its forward on one task's rows
//! ([`AttentionRun`]: the ghost-BN linear map of [`super::linear_bn`], then
//! per row the affine, the prior and the mask, [`kernels::mask_row`]), its
//! backward ([`AttentionBack`], [`kernels::mask_row_backward`]), and in eval
//! mode the folded product ([`AttentionPlan`]; up to
//! [`kernels::SPARSEMAX_MAX_GROUPS`] groups its masks run 16 rows at a time).
use super::buffers::Buffers;
use super::linear_bn::{fold, ChunkStats, LinearBn, LinearBnBack, LinearBnForward, TaskGrads};
use crate::attentive::AttentiveTransformer;
use crate::config::MaskType;
use crate::kernels::{self, values, Chunks, FoldedLinear, Strided};
use std::ops::Range;
use tch::Tensor;

/// Saved state of one attentive transformer: M = mask(GBN(a Wᵀ) ⊙ prior).
pub(super) struct AttentionTape {
    pub(super) lin: LinearBn,
    pub(super) prior: Tensor,
    pub(super) mask: Tensor,
    entmax: bool,
}

impl AttentionTape {
    /// The layer's saved state before the pass, from its input `a` (rows of
    /// n_a) and `prior` (rows of G): ẑ and the mask are allocated.
    pub(super) fn new(
        att: &AttentiveTransformer,
        a: &Tensor,
        prior: &Tensor,
        rows: usize,
        buf: &mut Buffers,
    ) -> AttentionTape {
        AttentionTape {
            lin: LinearBn::new(&att.fc, &att.bn.norm, a, rows, buf),
            prior: prior.shallow_clone(),
            mask: buf.take(rows, att.fc.size()[0] as usize),
            entmax: att.mask == MaskType::Entmax,
        }
    }
}

/// The attentive transformer's forward as the tasks run it.
pub(super) struct AttentionRun<'a> {
    lin: LinearBnForward<'a>,
    gamma: &'a [f32],
    beta: &'a [f32],
    entmax: bool,
}

impl<'a> AttentionRun<'a> {
    pub(super) fn of(t: &'a AttentionTape) -> Self {
        AttentionRun {
            lin: t.lin.forward_plan(),
            gamma: &t.lin.gamma,
            beta: &t.lin.beta,
            entmax: t.entmax,
        }
    }

    /// The task `t`'s rows: `a` its rows of the input, `prior` of the prior;
    /// writes its rows of ẑ and of the mask.
    pub(super) fn task(
        &self,
        chunks: &Chunks,
        t: &Range<usize>,
        a: Strided,
        prior: &[f32],
        zhat: &mut [f32],
        mask: &mut [f32],
    ) -> Vec<ChunkStats> {
        let (f, _) = chunks.task_rows(t);
        let g = self.gamma.len();
        self.lin.task(chunks, t, a, zhat, |first, zb, mean, rstd| {
            kernels::normalise_rows(zb, mean, rstd);
            let o = (first - f) * g;
            let m = &mut mask[o..o + zb.len()];
            let rows = zb
                .chunks_exact(g)
                .zip(prior[o..].chunks_exact(g))
                .zip(m.chunks_exact_mut(g));
            for ((zr, pr), mr) in rows {
                for j in 0..g {
                    mr[j] = (self.gamma[j] * zr[j] + self.beta[j]) * pr[j];
                }
            }
            mask_rows(m, g, self.entmax);
        })
    }
}

/// The attentive transformer's backward as the tasks run it: its saved
/// tensors (every row), read only.
pub(super) struct AttentionBack<'a> {
    /// the product and batch norm (input: the previous output's attention part)
    lin: LinearBnBack<'a>,
    entmax: bool,
    pub(super) prior: &'a [f32],
    pub(super) mask: &'a [f32],
}

impl<'a> AttentionBack<'a> {
    pub(super) fn of(t: &'a AttentionTape) -> Self {
        AttentionBack {
            lin: t.lin.back(),
            entmax: t.entmax,
            prior: values(&t.prior),
            mask: values(&t.mask),
        }
    }

    /// The task `t`'s rows: ∂L/∂a into `g_a` from ∂L/∂M `g_m`, adding
    /// ∂L/∂prior into `g_prior` (each the task's rows), with `dz` as scratch;
    /// returns the task's parameter gradients.
    pub(super) fn task(
        &self,
        chunks: &Chunks,
        t: &Range<usize>,
        g_m: &[f32],
        g_prior: &mut [f32],
        dz: &mut [f32],
        g_a: &mut [f32],
    ) -> TaskGrads {
        let (f, _) = chunks.task_rows(t);
        let g = self.lin.channels();
        // row r's range in a buffer of the task's rows, and in one of every row
        let local = |r: usize| (r - f) * g..(r - f + 1) * g;
        let global = |r: usize| r * g..(r + 1) * g;
        self.lin.task(
            chunks,
            t,
            dz,
            g_a,
            |first, zb, gyb, sum_g, sum_gz| {
                let rows = zb.chunks_exact(g).zip(gyb.chunks_exact_mut(g));
                for (r, (zr, gy)) in (first..).zip(rows) {
                    attention_grad_row(
                        zr,
                        self.lin.gamma,
                        self.lin.beta,
                        &self.mask[global(r)],
                        &self.prior[global(r)],
                        &g_m[local(r)],
                        &mut g_prior[local(r)],
                        gy,
                        self.entmax,
                    )
                }
                kernels::bn_grad_sums_rows(gyb, zb, sum_g, sum_gz);
            },
            |_, _| {},
        )
    }
}

/// ∂L/∂logits of the mask M = mask((a ẑ + b) ⊙ prior) into `gy` from
/// ∂L/∂M (`g_mask`), adding
/// ∂L/∂prior into `g_prior`: the attentive transformer's ∂L/∂y.
#[allow(clippy::too_many_arguments)]
fn attention_grad_row(
    z: &[f32],
    a: &[f32],
    b: &[f32],
    mask: &[f32],
    prior: &[f32],
    g_mask: &[f32],
    g_prior: &mut [f32],
    gy: &mut [f32],
    entmax: bool,
) {
    gy.copy_from_slice(g_mask);
    kernels::mask_row_backward(mask, gy, entmax); // now ∂L/∂logits
    for j in 0..gy.len() {
        g_prior[j] += gy[j] * (a[j] * z[j] + b[j]);
        gy[j] *= prior[j];
    }
}

/// The attentive transformer in eval mode: its batch norm (running
/// statistics) folded into the product.
pub(super) struct AttentionPlan {
    lin: FoldedLinear,
    entmax: bool,
}

impl AttentionPlan {
    pub(super) fn of(att: &AttentiveTransformer) -> AttentionPlan {
        AttentionPlan {
            lin: fold(&att.fc, &att.bn.norm),
            entmax: att.mask == MaskType::Entmax,
        }
    }

    /// The masks of `n` rows: `a` the input (rows `ld` apart), `prior` (rows
    /// of G); the logits go to `z`, the masks to `m` (rows of G each).
    pub(super) fn forward(
        &self,
        a: &[f32],
        n: usize,
        ld: usize,
        prior: &[f32],
        z: &mut [f32],
        m: &mut [f32],
    ) {
        self.lin.apply(a, n, ld, z);
        attention_rows(z, prior, m, self.lin.n_out, self.entmax);
    }
}

/// One row block's masks: M = mask(logits ⊙ prior), the logits (rows of g)
/// already batch-normalised by the folded product ([`mask_rows`]).
fn attention_rows(z: &[f32], prior: &[f32], m: &mut [f32], g: usize, entmax: bool) {
    for ((zr, pr), mr) in z
        .chunks_exact(g)
        .zip(prior.chunks_exact(g))
        .zip(m.chunks_exact_mut(g))
    {
        for j in 0..g {
            mr[j] = zr[j] * pr[j];
        }
    }
    mask_rows(m, g, entmax);
}

/// The mask of each row of `m` (rows of g logits) in place, in training as in
/// eval: up to 32 groups 16 rows at a time ([`kernels::sparsemax_rows`],
/// [`kernels::entmax_rows`]), longer rows row by row.
fn mask_rows(m: &mut [f32], g: usize, entmax: bool) {
    if g <= kernels::SPARSEMAX_MAX_GROUPS {
        if entmax {
            kernels::entmax_rows(m, g)
        } else {
            kernels::sparsemax_rows(m, g)
        }
    } else {
        m.chunks_exact_mut(g)
            .for_each(|mr| kernels::mask_row(mr, entmax));
    }
}

#[cfg(test)]
mod tests {
    use super::super::buffers::TapeBuffers;
    use super::super::linear_bn::merge_grads;
    use super::super::testing::{close, input, interleaving};
    use super::*;
    use crate::config::Initialization;
    use crate::ghost_bn::chunk_sizes;
    use crate::kernels::{split_rows, values, values_mut, view};
    use std::sync::Arc;
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    /// An attentive transformer (n_a = 8 → 10 groups), sparsemax and
    /// entmax-1.5, training forward and backward run task by task over 301
    /// rows (virtual batches 61, 61, 61, 61, 57), then the eval forward,
    /// against [`AttentiveTransformer::forward_t`] (with [`crate::mask`]) and
    /// autograd on the same parameters: the mask, ∂L/∂a, ∂L/∂prior, ∂L/∂γ,
    /// ∂L/∂β, ∂L/∂W. Tolerances (see `testing`): the mask and ∂L/∂a, ∂L/∂prior
    /// pass the product (fan-in 8) and the batch norm's sums over a virtual
    /// batch (n = 61), the parameter gradients sum over the 301 rows (n =
    /// 301), the eval mask only the product (n = 8); k = 32: the mask's
    /// threshold sums up to 10 values and divides (seen ≤ 2.7; the eval mask,
    /// through the folded product, ≤ 5.7, both under OpenBLAS's Prescott
    /// kernels). The data have
    /// no entry within rounding of a threshold (the mask's support, and so
    /// its Jacobian, is the same on both sides).
    #[test]
    fn matches_the_attentive_transformer() {
        for mask in [MaskType::Sparsemax, MaskType::Entmax] {
            check(mask);
        }
    }

    fn check(mask: MaskType) {
        let (rows, n_a, g, vbs) = (301usize, 8usize, 10usize, 64usize);
        let build = |vs: &VarStore| {
            let init = Initialization::PytorchTabnet;
            AttentiveTransformer::new(
                &vs.root(),
                n_a as i64,
                g as i64,
                vbs as i64,
                0.3,
                mask,
                init,
            )
        };
        let (vs_f, mut vs_r) = (VarStore::new(Device::Cpu), VarStore::new(Device::Cpu));
        let (fused, reference) = (build(&vs_f), build(&vs_r));
        tch::no_grad(|| {
            fused.fc.shallow_clone().copy_(&(input(g, n_a, 51) * 0.4));
            fused
                .bn
                .norm
                .weight
                .shallow_clone()
                .copy_(&(input(1, g, 52).view([-1]).abs() + 0.5));
            fused
                .bn
                .norm
                .bias
                .shallow_clone()
                .copy_(&(input(1, g, 53).view([-1]) * 0.3));
        });
        vs_r.copy(&vs_f).expect("the same variables");
        let a = input(rows, n_a, 54);
        let prior = input(rows, g, 55).abs() * 0.3 + 0.5;
        let g_m = input(rows, g, 56);

        // fused, task by task
        let chunks = Chunks::from_sizes(&chunk_sizes(rows as i64, vbs as i64));
        let tasks = chunks.tasks();
        let counts: Vec<usize> = tasks.iter().map(|t| chunks.task_rows(t).1).collect();
        let mut buf = Buffers::new(Arc::new(TapeBuffers::default()));
        let mut tape = AttentionTape::new(&fused, &a, &prior, rows, &mut buf);
        let (av, pv) = (view(&a), values(&prior));
        let stats: Vec<Vec<ChunkStats>> = {
            let run = AttentionRun::of(&tape);
            let (mut zh, mut mh) = (tape.lin.zhat.shallow_clone(), tape.mask.shallow_clone());
            // SAFETY: ẑ and the mask are this layer's own buffers, used
            // through no other handle until the slices are dropped.
            let (z, m) = unsafe { (values_mut(&mut zh), values_mut(&mut mh)) };
            let z = split_rows(z, g, counts.iter().copied());
            let m = split_rows(m, g, counts.iter().copied());
            tasks
                .iter()
                .zip(z.into_iter().zip(m))
                .map(|(t, (zt, mt))| {
                    let (f, n) = chunks.task_rows(t);
                    run.task(&chunks, t, av.rows(f, n), &pv[f * g..(f + n) * g], zt, mt)
                })
                .collect()
        };
        tape.lin.finish(stats.iter().map(|s| s.as_slice()));
        let back = AttentionBack::of(&tape);
        let gm = values(&g_m);
        let (mut parts, mut g_a, mut g_prior) = (Vec::new(), Vec::new(), Vec::new());
        for t in &tasks {
            let (f, n) = chunks.task_rows(t);
            let (mut dz, mut ga, mut gp) =
                (vec![0f32; n * g], vec![0f32; n * n_a], vec![0f32; n * g]);
            parts.push(back.task(
                &chunks,
                t,
                &gm[f * g..(f + n) * g],
                &mut gp,
                &mut dz,
                &mut ga,
            ));
            g_a.extend(ga);
            g_prior.extend(gp);
        }
        let (dgamma, dbeta, dw) = merge_grads(parts);

        // the reference, rows ordered so that its virtual batches are the same
        let p = interleaving(rows, vbs);
        let ar = a.index_select(0, &p).set_requires_grad(true);
        let pr = prior.index_select(0, &p).set_requires_grad(true);
        let mr = reference.forward_t(&pr, &ar, true);
        (&mr * g_m.index_select(0, &p)).sum(Kind::Float).backward();

        let what = |s: &str| format!("{s} ({mask:?})");
        close(
            &what("mask"),
            &tape.mask.index_select(0, &p),
            &mr.detach(),
            61,
            32.0,
        );
        let t2 = |v: &[f32], w: usize| Tensor::of_slice(v).view([rows as i64, w as i64]);
        close(
            &what("∂L/∂a"),
            &t2(&g_a, n_a).index_select(0, &p),
            &ar.grad(),
            61,
            32.0,
        );
        close(
            &what("∂L/∂prior"),
            &t2(&g_prior, g).index_select(0, &p),
            &pr.grad(),
            61,
            32.0,
        );
        let (t, bn) = (|v: &[f32]| Tensor::of_slice(v), &reference.bn.norm);
        close(&what("∂L/∂γ"), &t(&dgamma), &bn.weight.grad(), 301, 32.0);
        close(&what("∂L/∂β"), &t(&dbeta), &bn.bias.grad(), 301, 32.0);
        let dw = t(&dw).view([g as i64, n_a as i64]);
        close(&what("∂L/∂W"), &dw, &reference.fc.grad(), 301, 32.0);

        // eval: the running statistics both sides updated, folded
        let (mut z, mut m) = (vec![0f32; rows * g], vec![0f32; rows * g]);
        AttentionPlan::of(&fused).forward(av.data, rows, n_a, pv, &mut z, &mut m);
        let want = tch::no_grad(|| reference.forward_t(&prior, &a, false));
        close(&what("eval mask"), &t2(&m, g), &want, n_a, 32.0);
    }
}
