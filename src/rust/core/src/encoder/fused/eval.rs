//! The eval-mode encoder pass with the fused kernels (running statistics).
use super::glue::{attention_row, forward_row};
use super::{initial_prior, layers_of, row, row_block, to_vec, Expansion};
use crate::attentive::AttentiveTransformer;
use crate::config::MaskType;
use crate::embedding::Embedder;
use crate::encoder::{Backend, Encoder, EncoderOutput, Pass};
use crate::feature_transformer::FeatureTransformer;
use crate::ghost_bn::BatchNorm;
use crate::kernels::{self, empty, ptr};
use tch::Tensor;

/// Eval-mode batch norm as an affine map: (scale, shift) with
/// scale = γ / √(running var + ε), shift = β − running mean · scale.
fn eval_affine(bn: &BatchNorm) -> (Vec<f32>, Vec<f32>) {
    let (g, b, m, v) = (
        to_vec(&bn.weight),
        to_vec(&bn.bias),
        to_vec(&bn.running_mean),
        to_vec(&bn.running_var),
    );
    let scale: Vec<f32> = g
        .iter()
        .zip(&v)
        .map(|(g, v)| g / (v + bn.eps as f32).sqrt())
        .collect();
    let shift: Vec<f32> = b
        .iter()
        .zip(&m)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    (scale, shift)
}

fn transformer_eval(ft: &FeatureTransformer, x: &Tensor) -> Tensor {
    let mut h = x.contiguous();
    for (layer, residual) in layers_of(ft) {
        let fc = layer.fc.detach();
        let d = (fc.size()[0] / 2) as usize;
        let rows = h.size()[0] as usize;
        let (scale, shift) = eval_affine(&layer.bn.norm);
        let out = empty(rows, d);
        let (op, hp) = (ptr(&out), ptr(&h));
        // the running statistics are in (scale, shift): nothing to normalise
        let (zero, one) = (vec![0f32; 2 * d], vec![1f32; 2 * d]);
        kernels::linear_rows(&h, &fc, |r, zb| {
            let n = zb.len() / (2 * d);
            let h: &[f32] = if residual {
                row_block(hp, r, n, d)
            } else {
                &[]
            };
            let out = row_block(op, r, n, d);
            kernels::bn_glu_rows(zb, &zero, &one, &scale, &shift, h, out);
        });
        h = out;
    }
    h
}

fn attention_eval(att: &AttentiveTransformer, a: &Tensor, prior: &Tensor) -> Tensor {
    let a = kernels::operand(a);
    let fc = att.fc.detach();
    let (rows, g) = (a.size()[0] as usize, fc.size()[0] as usize);
    let (scale, shift) = eval_affine(&att.bn.norm);
    let entmax = att.mask == MaskType::Entmax;
    let mask = empty(rows, g);
    let (mp, pp) = (ptr(&mask), ptr(prior));
    kernels::linear_rows(&a, &fc, |first, zb| {
        for (r, zr) in (first..).zip(zb.chunks_exact(g)) {
            attention_row(zr, &scale, &shift, row(pp, r, g), row(mp, r, g), entmax)
        }
    });
    mask
}

/// The step glue over every row ([`forward_row`]): (Σ over rows of
/// Σ M log(M + ε), next prior, x_m).
fn glue_eval(
    m: &Tensor,
    prior: &Tensor,
    x0: &Tensor,
    ex: &Expansion,
    gamma: f32,
    eps: f32,
) -> (f64, Tensor, Tensor) {
    let (rows, g) = (m.size()[0] as usize, m.size()[1] as usize);
    let dims = ex.col.len();
    let next = empty(rows, g);
    let xm = empty(rows, dims);
    let (mp, pp, xp, np, xmp) = (ptr(m), ptr(prior), ptr(x0), ptr(&next), ptr(&xm));
    let sums: Vec<f64> = kernels::with_pool(|| {
        use rayon::prelude::*;
        (0..rows)
            .into_par_iter()
            .with_min_len(256)
            .map(|r| {
                forward_row(
                    row(mp, r, g),
                    row(pp, r, g),
                    row(xp, r, dims),
                    row(np, r, g),
                    row(xmp, r, dims),
                    ex,
                    gamma,
                    eps,
                )
            })
            .collect()
    });
    (sums.iter().sum(), next, xm)
}

/// Eval-mode encoder pass (running statistics) with the fused kernels, from the
/// initial BN's output. Same outputs as the autograd encoder in eval mode.
pub(in crate::encoder) fn forward_eval(
    enc: &Encoder,
    embedder: &Embedder,
    x0: &Tensor,
    prior: Option<&Tensor>,
    keep_masks: bool,
) -> EncoderOutput {
    let _settings = crate::run_settings::RunSettings::enter();
    kernels::on_pool(|| {
        let x0 = x0.detach().contiguous();
        let rows = x0.size()[0] as usize;
        let (n_groups, n_a) = (enc.n_groups(), enc.n_a());
        let mut prior = initial_prior(prior, rows, n_groups);
        let ex = Expansion::of(embedder, x0.size()[1] as usize);
        let mut a = transformer_eval(&enc.splitter, &x0).narrow(1, enc.n_d, n_a);
        let (mut steps, mut masks) = (Vec::new(), Vec::new());
        let mut m_loss = 0f64;
        for (att, ft) in enc.attention.iter().zip(&enc.transformers) {
            let m = attention_eval(att, &a, &prior);
            let (m_sum, next_prior, xm) =
                glue_eval(&m, &prior, &x0, &ex, enc.gamma as f32, enc.epsilon as f32);
            m_loss += m_sum / rows as f64;
            let out = transformer_eval(ft, &xm);
            steps.push(out.narrow(1, 0, enc.n_d).relu());
            a = out.narrow(1, enc.n_d, n_a);
            if keep_masks {
                masks.push(m);
            }
            prior = next_prior;
        }
        let m_loss = Tensor::from((m_loss / enc.transformers.len() as f64) as f32);
        EncoderOutput {
            steps,
            decision: None,
            m_loss,
            masks,
            pass: Pass {
                backend: Backend::Fused,
                tape: None,
            },
        }
    })
}
