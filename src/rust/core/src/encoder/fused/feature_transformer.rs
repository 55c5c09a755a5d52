//! A feature transformer in the fused pass: the fused twin of
//! [`crate::feature_transformer::FeatureTransformer`], its GLU layers
//! ([`super::glu_layer`]) in order with their residual flags
//! ([`layers_of`]): the saved state ([`transformer_tapes`]), the forward on
//! one task's rows ([`transformer_task`]), the backward
//! ([`transformer_back`]), and in eval mode the folded layers ([`plans`],
//! [`transformer`]).
use super::buffers::Buffers;
use super::eval::grow;
use super::glu_layer::{GluPlan, LayerBack, LayerRows, LayerRun, LayerTape};
use super::linear_bn::{ChunkStats, TaskGrads};
use crate::feature_transformer::FeatureTransformer;
use crate::glu::GluLayer;
use crate::kernels::{Chunks, Strided};
use std::ops::Range;
use tch::Tensor;

/// Layers of a feature transformer with their residual flags, in order.
pub(super) fn layers_of(ft: &FeatureTransformer) -> Vec<(&GluLayer, bool)> {
    let mut v = Vec::new();
    for block in [&ft.shared, &ft.specific].into_iter().flatten() {
        for (i, l) in block.layers.iter().enumerate() {
            v.push((l, !(i == 0 && block.first)));
        }
    }
    v
}

/// The tapes of a feature transformer's layers, from input `x`.
pub(super) fn transformer_tapes(
    layers: Vec<(&GluLayer, bool)>,
    x: &Tensor,
    rows: usize,
    buf: &mut Buffers,
) -> Vec<LayerTape> {
    let mut h = x.shallow_clone();
    let mut tapes = Vec::new();
    for (layer, residual) in layers {
        let tape = LayerTape::new(layer, residual, &h, rows, buf);
        h = tape.out.shallow_clone();
        tapes.push(tape);
    }
    tapes
}

/// A feature transformer's forward on one task's rows from its rows `x` of
/// the input; pushes each layer's chunk statistics.
pub(super) fn transformer_task(
    layers: &[LayerRun],
    chunks: &Chunks,
    t: &Range<usize>,
    x: Strided,
    rows: &mut [LayerRows],
    stats: &mut Vec<Vec<ChunkStats>>,
) {
    let mut x = x;
    for (l, r) in layers.iter().zip(rows.iter_mut()) {
        stats.push(l.task(chunks, t, x, r));
        x = Strided::dense(r.out, l.d);
    }
}

/// ∂L/∂(transformer input) from ∂L/∂(its output), layers in reverse.
pub(super) fn transformer_back(
    layers: &[LayerBack],
    chunks: &Chunks,
    t: &Range<usize>,
    g_out: Vec<f32>,
    dz: &mut [f32],
    out: &mut Vec<TaskGrads>,
) -> Vec<f32> {
    layers
        .iter()
        .rev()
        .fold(g_out, |g, l| l.task(chunks, t, &g, dz, out))
}

/// The transformer's layers folded for eval.
pub(super) fn plans(ft: &FeatureTransformer) -> Vec<GluPlan> {
    layers_of(ft)
        .into_iter()
        .map(|(l, residual)| GluPlan::of(l, residual))
        .collect()
}

/// A feature transformer over `n` rows of `input`: returns which of `h`
/// holds its output (rows of n_d + n_a).
pub(super) fn transformer(
    layers: &[GluPlan],
    input: &[f32],
    n: usize,
    z: &mut Vec<f32>,
    h: &mut [Vec<f32>; 2],
) -> usize {
    let mut cur: Option<usize> = None;
    for l in layers {
        let (k, d) = (l.glu.lin.n_in, l.glu.d());
        let dst = cur.map_or(0, |c| 1 - c);
        let (h0, h1) = h.split_at_mut(1);
        let (src, out) = if dst == 0 {
            (&h1[0], &mut h0[0])
        } else {
            (&h0[0], &mut h1[0])
        };
        let x: &[f32] = match cur {
            None => &input[..n * k],
            Some(_) => &src[..n * k],
        };
        l.forward(x, n, z, grow(out, n * d));
        cur = Some(dst);
    }
    cur.expect("a transformer has layers")
}

#[cfg(test)]
mod tests {
    use super::super::buffers::TapeBuffers;
    use super::super::linear_bn::merge_grads;
    use super::super::testing::{close, input, interleaving};
    use super::*;
    use crate::config::Initialization;
    use crate::feature_transformer::{shared_fcs, LayerSettings};
    use crate::ghost_bn::chunk_sizes;
    use crate::kernels::{split_rows, values, values_mut, view};
    use std::sync::Arc;
    use tch::nn::{ModuleT, VarStore};
    use tch::{Device, Kind};

    /// A feature transformer of two shared and two step-specific GLU layers
    /// (12 → 16 wide), training forward and backward run task by task over
    /// 301 rows (virtual batches 61, 61, 61, 61, 57), then the eval forward,
    /// against [`FeatureTransformer::forward_t`] and autograd on the same
    /// parameters. Tolerances (see `testing`): as for one GLU layer (n = 61
    /// for the output and ∂L/∂x, 301 for the parameter gradients, the widest
    /// fan-in 16 for eval) with k = 32: four layers in a row, each adding its
    /// rounding to its input's (seen ≤ 1.6, under OpenBLAS's Prescott kernels).
    #[test]
    fn matches_the_feature_transformer() {
        let (rows, n_in, width, vbs) = (301usize, 12usize, 16usize, 64usize);
        let settings = LayerSettings {
            vbs: vbs as i64,
            momentum: 0.3,
            init: Initialization::PytorchTabnet,
        };
        let build = |vs: &VarStore| {
            let root = vs.root();
            let fcs = shared_fcs(
                &(&root / "shared"),
                n_in as i64,
                width as i64,
                2,
                Initialization::PytorchTabnet,
            );
            FeatureTransformer::new(
                &(&root / "ft"),
                &fcs,
                n_in as i64,
                width as i64,
                2,
                settings,
            )
        };
        let (vs_f, mut vs_r) = (VarStore::new(Device::Cpu), VarStore::new(Device::Cpu));
        let (fused, reference) = (build(&vs_f), build(&vs_r));
        // seeded parameters (not the global RNG's), so the data are the same
        // on every run
        tch::no_grad(|| {
            for (i, (l, _)) in layers_of(&fused).into_iter().enumerate() {
                let seed = 100 + 3 * i as u64;
                let w = input(l.fc.size()[0] as usize, l.fc.size()[1] as usize, seed) * 0.3;
                l.fc.shallow_clone().copy_(&w);
                let bn = &l.bn.norm;
                let ch = bn.weight.numel();
                bn.weight
                    .shallow_clone()
                    .copy_(&(input(1, ch, seed + 1).view([-1]).abs() + 0.5));
                bn.bias
                    .shallow_clone()
                    .copy_(&(input(1, ch, seed + 2).view([-1]) * 0.3));
            }
        });
        vs_r.copy(&vs_f).expect("the same variables");
        let x = input(rows, n_in, 41);
        let g_out = input(rows, width, 42);

        // fused, task by task
        let chunks = Chunks::from_sizes(&chunk_sizes(rows as i64, vbs as i64));
        let tasks = chunks.tasks();
        let counts: Vec<usize> = tasks.iter().map(|t| chunks.task_rows(t).1).collect();
        let mut buf = Buffers::new(Arc::new(TapeBuffers::default()));
        let mut tapes = transformer_tapes(layers_of(&fused), &x, rows, &mut buf);
        let xs = view(&x);
        let logs: Vec<Vec<Vec<ChunkStats>>> = {
            let runs: Vec<LayerRun> = tapes.iter().map(LayerRun::of).collect();
            let mut handles: Vec<(Tensor, Tensor)> = tapes
                .iter()
                .map(|t| (t.lin.zhat.shallow_clone(), t.out.shallow_clone()))
                .collect();
            let mut per_layer: Vec<_> = handles
                .iter_mut()
                .map(|(z, o)| {
                    let (zw, ow) = (z.size()[1] as usize, o.size()[1] as usize);
                    // SAFETY: ẑ and the output are the layers' own buffers,
                    // used through no other handle until the slices are dropped.
                    let (z, o) = unsafe { (values_mut(z), values_mut(o)) };
                    let z = split_rows(z, zw, counts.iter().copied()).into_iter();
                    let o = split_rows(o, ow, counts.iter().copied()).into_iter();
                    z.zip(o)
                })
                .collect();
            tasks
                .iter()
                .map(|t| {
                    let (f, n) = chunks.task_rows(t);
                    let mut rows: Vec<LayerRows> = per_layer
                        .iter_mut()
                        .map(|it| {
                            let (zhat, out) = it.next().expect("a piece per task");
                            LayerRows { zhat, out }
                        })
                        .collect();
                    let mut stats = Vec::new();
                    transformer_task(&runs, &chunks, t, xs.rows(f, n), &mut rows, &mut stats);
                    stats
                })
                .collect()
        };
        for (i, tape) in tapes.iter_mut().enumerate() {
            tape.lin.finish(logs.iter().map(|l| l[i].as_slice()));
        }
        let backs: Vec<LayerBack> = tapes.iter().map(LayerBack::of).collect();
        let go = values(&g_out);
        let mut per_task = Vec::new();
        let mut dx = Vec::new();
        for t in &tasks {
            let (f, n) = chunks.task_rows(t);
            let mut dz = vec![0f32; n * 2 * width];
            let mut grads = Vec::new();
            let g = go[f * width..(f + n) * width].to_vec();
            dx.extend(transformer_back(&backs, &chunks, t, g, &mut dz, &mut grads));
            per_task.push(grads.into_iter());
        }
        // per task, the layers' gradients in backward order
        let mut merged: Vec<_> = (0..tapes.len())
            .map(|_| merge_grads(per_task.iter_mut().map(|it| it.next().expect("a layer"))))
            .collect();
        merged.reverse();

        // the reference, rows ordered so that its virtual batches are the same
        let p = interleaving(rows, vbs);
        let xr = x.index_select(0, &p).set_requires_grad(true);
        let yr = reference.forward_t(&xr, true);
        (&yr * g_out.index_select(0, &p))
            .sum(Kind::Float)
            .backward();

        let out = tapes.last().expect("layers").out.index_select(0, &p);
        close("out", &out, &yr.detach(), 61, 32.0);
        let dx = Tensor::of_slice(&dx).view([rows as i64, n_in as i64]);
        close("∂L/∂x", &dx.index_select(0, &p), &xr.grad(), 61, 32.0);
        let t = |v: &[f32]| Tensor::of_slice(v);
        for (i, ((l, _), (dgamma, dbeta, dw))) in
            layers_of(&reference).into_iter().zip(&merged).enumerate()
        {
            let bn = &l.bn.norm;
            close(
                &format!("layer {i} ∂L/∂γ"),
                &t(dgamma),
                &bn.weight.grad(),
                301,
                32.0,
            );
            close(
                &format!("layer {i} ∂L/∂β"),
                &t(dbeta),
                &bn.bias.grad(),
                301,
                32.0,
            );
            let dw = t(dw).view(l.fc.size().as_slice());
            close(&format!("layer {i} ∂L/∂W"), &dw, &l.fc.grad(), 301, 32.0);
        }

        // eval: the running statistics both sides updated, folded
        let (mut z, mut h) = (Vec::new(), [Vec::new(), Vec::new()]);
        let cur = transformer(&plans(&fused), values(&x), rows, &mut z, &mut h);
        let out = Tensor::of_slice(&h[cur][..rows * width]).view([rows as i64, width as i64]);
        let want = tch::no_grad(|| reference.forward_t(&x, false));
        close("eval out", &out, &want, width, 32.0);
    }
}
