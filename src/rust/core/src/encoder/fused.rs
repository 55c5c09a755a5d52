//! The fused backend: the encoder's training pass with a hand-derived backward,
//! and its eval pass (CPU, f32).
//!
//! Autograd would record a dozen full-batch libtorch kernels per GLU layer; here
//! each layer is one BLAS product plus one fused kernel per virtual batch (see
//! [`crate::kernels`]), forward and backward. The pass plugs into autograd at its
//! edges: the initial BN output enters as a detached copy, the step outputs and
//! the sparsity term leave as leaves that the head/decoder and the loss use
//! normally. After `loss.backward()`, [`Tape::backward`] reads the
//! leaves' gradients, runs the encoder backward by hand, and hands the parameter
//! and input gradients back to autograd with one surrogate `backward()`, so
//! gradient clipping, the optimiser, embeddings and the initial BN are unchanged.
//!
//! Equivalence with the autograd encoder (outputs, running statistics and every
//! parameter gradient) is tested in `tests/fused_vs_autograd.rs`.
use super::{Backend, Encoder, EncoderOutput, Pass};
use crate::attentive::AttentiveTransformer;
use crate::config::MaskType;
use crate::embedding::Embedder;
use crate::feature_transformer::FeatureTransformer;
use crate::ghost_bn::{chunk_sizes, BatchNorm};
use crate::glu::GluLayer;
use crate::kernels::{self, empty, linear_bn_backward, linear_bn_forward, ptr, BnStats, Chunks};
use tch::{Kind, Tensor};

const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Parameter gradients of the hand-derived backward. A parameter whose `.grad()`
/// already exists (every step after the first) is accumulated into in place;
/// the others are handed to autograd through the surrogate.
#[derive(Default)]
struct Grads {
    pending: Vec<(Tensor, Tensor)>,
}

impl Grads {
    fn existing(p: &Tensor) -> Option<Tensor> {
        let g = p.grad();
        (g.defined() && kernels::supported(&g)).then_some(g)
    }

    fn add_tensor(&mut self, p: &Tensor, g: Tensor) {
        match Self::existing(p) {
            Some(mut acc) => {
                let _ = acc.g_add_(&g);
            }
            None => self.pending.push((p.shallow_clone(), g)),
        }
    }

    fn add_vec(&mut self, p: &Tensor, g: &[f32]) {
        match Self::existing(p) {
            Some(acc) => kernels::add_row(
                // SAFETY: a parameter's gradient is written by this pass alone.
                unsafe { kernels::as_mut_slice(&acc) }.expect("checked by existing()"),
                g,
            ),
            None => self.pending.push((p.shallow_clone(), Tensor::of_slice(g))),
        }
    }
}

/// A parameter's values (contiguous f32 CPU) as a vector.
fn to_vec(t: &Tensor) -> Vec<f32> {
    // SAFETY: read only, and parameters are not written while the pass reads them.
    match unsafe { kernels::as_mut_slice(t) } {
        Some(v) => v.to_vec(),
        None => Vec::<f32>::from(&t.detach().to_kind(Kind::Float)),
    }
}

/// A bias-free linear map followed by ghost BN, as saved for the backward: the
/// weight (detached for the products, and as the parameter), the BN's γ, β and
/// their parameters, the input, ẑ and the per-virtual-batch statistics.
struct LinearBn {
    fc: Tensor,
    param: Tensor,
    weight: Tensor,
    bias: Tensor,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    input: Tensor,
    zhat: Tensor,
    stats: BnStats,
}

impl LinearBn {
    /// ẑ = GBN(input · fcᵀ) per virtual batch, then `epilogue(row, ẑ_row, γ, β)`
    /// on each row; updates the BN's running statistics.
    fn forward<F>(
        fc: &Tensor,
        bn: &BatchNorm,
        input: &Tensor,
        chunks: &Chunks,
        epilogue: F,
    ) -> LinearBn
    where
        F: Fn(usize, &[f32], &[f32], &[f32]) + Sync,
    {
        let input = kernels::operand(input);
        let param = fc.shallow_clone();
        let fc = fc.detach();
        let ch = fc.size()[0] as usize;
        let (gamma, beta) = (to_vec(&bn.weight), to_vec(&bn.bias));
        let zhat = empty(chunks.rows, ch);
        let stats = linear_bn_forward(&input, &fc, &zhat, chunks, bn.eps as f32, |r, zr| {
            epilogue(r, zr, &gamma, &beta)
        });
        bn.update_running_from(&stats.mean, &stats.var_unbiased);
        LinearBn {
            fc,
            param,
            weight: bn.weight.shallow_clone(),
            bias: bn.bias.shallow_clone(),
            gamma,
            beta,
            input,
            zhat,
            stats,
        }
    }

    /// Backward from `grad_y(row, ẑ_row, gy_row)` (∂L/∂y, y = γ ẑ + β) with
    /// `post(row, ∂L/∂input row)`; accumulates the parameter gradients and
    /// returns ∂L/∂input.
    fn backward<F, P>(&self, chunks: &Chunks, grads: &mut Grads, grad_y: F, post: P) -> Tensor
    where
        F: Fn(usize, &[f32], &mut [f32]) + Sync,
        P: Fn(usize, &mut [f32]) + Sync,
    {
        let dz = empty(chunks.rows, self.zhat.size()[1] as usize);
        let g_in = empty(chunks.rows, self.input.size()[1] as usize);
        let (dgamma, dbeta, dw) = linear_bn_backward(
            &self.input,
            &self.fc,
            &self.zhat,
            &dz,
            &g_in,
            &self.stats,
            &self.gamma,
            chunks,
            grad_y,
            post,
        );
        grads.add_tensor(&self.param, dw);
        grads.add_vec(&self.weight, &dgamma);
        grads.add_vec(&self.bias, &dbeta);
        g_in
    }
}

/// Saved state of one GLU layer.
struct LayerTape {
    lin: LinearBn,
    residual: bool,
}

/// Saved state of one attentive transformer.
struct AttentionTape {
    lin: LinearBn,
    prior: Tensor,
    mask: Tensor,
    entmax: bool,
}

struct StepTape {
    attention: AttentionTape,
    layers: Vec<LayerTape>,
    /// the feature transformer's output (B, n_d + n_a), for the ReLU's gradient
    out: Tensor,
}

/// Everything the hand-derived backward needs, plus the autograd edges.
pub(super) struct Tape {
    chunks: Chunks,
    n_d: i64,
    gamma: f64,
    epsilon: f64,
    /// initial-BN output with its autograd history (the surrogate's input edge)
    x_graph: Tensor,
    /// the same values, detached
    x0: Tensor,
    /// embedded dimension → attention group, and per-dimension scale
    expansion: Expansion,
    splitter: Vec<LayerTape>,
    steps: Vec<StepTape>,
    /// the leaves handed to the rest of the graph
    step_leaves: Vec<Tensor>,
    m_loss_leaf: Tensor,
}

/// GLU layer forward: out = GLU(GBN(h Wᵀ)) [+ h, × √½ when residual].
fn layer_forward(
    layer: &GluLayer,
    h_in: &Tensor,
    residual: bool,
    chunks: &Chunks,
) -> (Tensor, LayerTape) {
    let d = (layer.fc.size()[0] / 2) as usize;
    let out = empty(chunks.rows, d);
    let h_in = h_in.contiguous();
    let (op, hp) = (ptr(&out), ptr(&h_in));
    let lin = LinearBn::forward(
        &layer.fc,
        &layer.bn.norm,
        &h_in,
        chunks,
        |r, zr, gamma, beta| {
            let h: &[f32] = if residual { row(hp, r, d) } else { &[] };
            kernels::glu_row(zr, gamma, beta, h, row(op, r, d));
        },
    );
    (out, LayerTape { lin, residual })
}

/// Backward of [`layer_forward`]: returns ∂L/∂h_in and accumulates parameter gradients.
fn layer_backward(t: &LayerTape, g_out: &Tensor, chunks: &Chunks, grads: &mut Grads) -> Tensor {
    let g_out = g_out.contiguous();
    let d = g_out.size()[1] as usize;
    let gp = ptr(&g_out);
    let (residual, scale) = (t.residual, if t.residual { SQRT_HALF } else { 1.0 });
    let (gamma, beta) = (&t.lin.gamma, &t.lin.beta);
    t.lin.backward(
        chunks,
        grads,
        |r, zr, gy| kernels::glu_grad_row(zr, gamma, beta, row(gp, r, d), scale, gy),
        |r, gi| {
            if residual {
                kernels::axpy_row(gi, row(gp, r, d), scale);
            }
        },
    )
}

/// Layers of a feature transformer with their residual flags, in order.
fn layers_of(ft: &FeatureTransformer) -> Vec<(&GluLayer, bool)> {
    let mut v = Vec::new();
    for block in [&ft.shared, &ft.specific].into_iter().flatten() {
        for (i, l) in block.layers.iter().enumerate() {
            v.push((l, !(i == 0 && block.first)));
        }
    }
    v
}

fn transformer_forward(
    ft: &FeatureTransformer,
    x: &Tensor,
    chunks: &Chunks,
) -> (Tensor, Vec<LayerTape>) {
    let mut h = x.shallow_clone();
    let mut tapes = Vec::new();
    for (layer, residual) in layers_of(ft) {
        let (out, tape) = layer_forward(layer, &h, residual, chunks);
        h = out;
        tapes.push(tape);
    }
    (h, tapes)
}

fn transformer_backward(
    tapes: &[LayerTape],
    g_out: Tensor,
    chunks: &Chunks,
    grads: &mut Grads,
) -> Tensor {
    tapes
        .iter()
        .rev()
        .fold(g_out, |g, t| layer_backward(t, &g, chunks, grads))
}

/// Attentive transformer forward: M = mask(GBN(a Wᵀ) ⊙ prior).
fn attention_forward(
    att: &AttentiveTransformer,
    a: &Tensor,
    prior: &Tensor,
    chunks: &Chunks,
) -> AttentionTape {
    let g = att.fc.size()[0] as usize;
    let mask = empty(chunks.rows, g);
    let (mp, pp) = (ptr(&mask), ptr(prior));
    let entmax = att.mask == MaskType::Entmax;
    let lin = LinearBn::forward(&att.fc, &att.bn.norm, a, chunks, |r, zr, gamma, beta| {
        attention_row(zr, gamma, beta, row(pp, r, g), row(mp, r, g), entmax)
    });
    AttentionTape {
        lin,
        prior: prior.shallow_clone(),
        mask,
        entmax,
    }
}

/// One row of an attentive transformer after its product: M = mask((a ẑ + b) ⊙ prior),
/// the logits written into `m` and overwritten by the mask.
fn attention_row(z: &[f32], a: &[f32], b: &[f32], prior: &[f32], m: &mut [f32], entmax: bool) {
    for j in 0..m.len() {
        m[j] = (a[j] * z[j] + b[j]) * prior[j];
    }
    kernels::mask_row(m, entmax);
}

/// Backward of [`attention_forward`] from ∂L/∂M. Adds ∂L/∂prior into `g_prior`,
/// returns ∂L/∂a and accumulates parameter gradients.
fn attention_backward(
    t: &AttentionTape,
    g_mask: &Tensor,
    g_prior: &Tensor,
    chunks: &Chunks,
    grads: &mut Grads,
) -> Tensor {
    let g = t.mask.size()[1] as usize;
    let (gm, mp, pp, gpp) = (ptr(g_mask), ptr(&t.mask), ptr(&t.prior), ptr(g_prior));
    let (gamma, beta, entmax) = (&t.lin.gamma, &t.lin.beta, t.entmax);
    t.lin.backward(
        chunks,
        grads,
        |r, zr, gy| {
            let (mr, pr, gpr) = (row(mp, r, g), row(pp, r, g), row(gpp, r, g));
            gy.copy_from_slice(row(gm, r, g));
            kernels::mask_row_backward(mr, gy, entmax); // now ∂L/∂logits
            for j in 0..g {
                gpr[j] += gy[j] * (gamma[j] * zr[j] + beta[j]);
                gy[j] *= pr[j];
            }
        },
        |_, _| {},
    )
}

/// How the group-level mask reaches the embedded input: x_m = M[group(j)] · s_j · x_j
/// (s_j = 1/(|g|·e), see [`crate::embedding`]).
struct Expansion {
    col: Vec<usize>,
    scale: Vec<f32>,
}

impl Expansion {
    fn of(embedder: &Embedder, dims: usize) -> Expansion {
        let col: Vec<usize> = if embedder.identity {
            (0..dims).collect()
        } else {
            Vec::<i64>::from(&embedder.group_of_dim)
                .into_iter()
                .map(|c| c as usize)
                .collect()
        };
        let scale = match &embedder.dim_scale {
            Some(s) => to_vec(s),
            None => vec![1.0; dims],
        };
        Expansion { col, scale }
    }
}

fn row<'a>(p: kernels::SendPtr, r: usize, n: usize) -> &'a mut [f32] {
    // SAFETY: `p` points at a live contiguous (rows, n) tensor; each row is
    // touched by one rayon task only.
    unsafe { std::slice::from_raw_parts_mut(p.get().add(r * n), n) }
}

/// Between attention and feature transformer, per row: Σ M log(M + ε) (returned,
/// summed over rows), next prior = prior ⊙ (γ − M), x_m = expand(M) ⊙ x0.
fn step_glue_forward(
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
                let (mr, pr, nr) = (row(mp, r, g), row(pp, r, g), row(np, r, g));
                let (xr, xmr) = (row(xp, r, dims), row(xmp, r, dims));
                let mut s = 0f64;
                for j in 0..g {
                    // a masked-out entry adds 0 · log ε = −0: skipping the
                    // logarithm leaves the sum bit-identical
                    if mr[j] != 0.0 {
                        s += (mr[j] * (mr[j] + eps).ln()) as f64;
                    }
                    nr[j] = pr[j] * (gamma - mr[j]);
                }
                for j in 0..dims {
                    xmr[j] = mr[ex.col[j]] * ex.scale[j] * xr[j];
                }
                s
            })
            .collect()
    });
    (sums.iter().sum(), next, xm)
}

/// ∂L/∂(feature transformer output) per row: the ReLU'd decision part and the
/// attention part.
fn step_glue_out_grad(g_d: Option<&Tensor>, out: &Tensor, g_a: &Tensor, n_d: usize) -> Tensor {
    let (rows, w) = (out.size()[0] as usize, out.size()[1] as usize);
    let n_a = w - n_d;
    let g = empty(rows, w);
    let (gp, op, ap) = (ptr(&g), ptr(out), ptr(g_a));
    let dp = g_d.map(ptr);
    kernels::par_rows(rows, |r| {
        let (gr, or, ar) = (row(gp, r, w), row(op, r, w), row(ap, r, n_a));
        match dp {
            Some(dp) => {
                let dr = row(dp, r, n_d);
                for j in 0..n_d {
                    gr[j] = if or[j] > 0.0 { dr[j] } else { 0.0 };
                }
            }
            None => gr[..n_d].iter_mut().for_each(|v| *v = 0.0),
        }
        gr[n_d..].copy_from_slice(ar);
    });
    g
}

/// From ∂L/∂x_m, per row: ∂L/∂M (through x_m, the next prior and the sparsity
/// term with weight `c`), ∂L/∂prior_i, and ∂L/∂x0 accumulated into `dx0`.
#[allow(clippy::too_many_arguments)]
fn step_glue_backward(
    g_xm: &Tensor,
    x0: &Tensor,
    m: &Tensor,
    prior: &Tensor,
    g_prior_next: &Tensor,
    dx0: &Tensor,
    ex: &Expansion,
    gamma: f32,
    eps: f32,
    c: f32,
) -> (Tensor, Tensor) {
    let (rows, g) = (m.size()[0] as usize, m.size()[1] as usize);
    let dims = ex.col.len();
    let g_m = empty(rows, g);
    let g_prior = empty(rows, g);
    let (gxp, xp, mp, pp, gnp, dxp, gmp, gpp) = (
        ptr(g_xm),
        ptr(x0),
        ptr(m),
        ptr(prior),
        ptr(g_prior_next),
        ptr(dx0),
        ptr(&g_m),
        ptr(&g_prior),
    );
    // ∂(M log(M + ε))/∂M at M = 0 is log ε (exactly what the general
    // expression gives there), computed once
    let log_eps = eps.ln();
    kernels::par_rows(rows, |r| {
        let (gxr, xr, dxr) = (row(gxp, r, dims), row(xp, r, dims), row(dxp, r, dims));
        let (mr, pr, gnr, gmr, gpr) = (
            row(mp, r, g),
            row(pp, r, g),
            row(gnp, r, g),
            row(gmp, r, g),
            row(gpp, r, g),
        );
        gmr.iter_mut().for_each(|v| *v = 0.0);
        for j in 0..dims {
            let k = ex.col[j];
            gmr[k] += gxr[j] * xr[j] * ex.scale[j];
            dxr[j] += gxr[j] * mr[k] * ex.scale[j];
        }
        for j in 0..g {
            gmr[j] -= gnr[j] * pr[j];
            gpr[j] = gnr[j] * (gamma - mr[j]);
            if c != 0.0 {
                gmr[j] += c * if mr[j] == 0.0 {
                    log_eps
                } else {
                    (mr[j] + eps).ln() + mr[j] / (mr[j] + eps)
                };
            }
        }
    });
    (g_m, g_prior)
}

/// The first step's prior: the given one (missing values), else ones.
fn initial_prior(prior: Option<&Tensor>, rows: usize, n_groups: i64) -> Tensor {
    match prior {
        Some(p) => p.to_kind(Kind::Float).contiguous(),
        None => Tensor::ones(&[rows as i64, n_groups], (Kind::Float, tch::Device::Cpu)),
    }
}

/// True when the fused passes can run for this input (training needs two rows
/// for batch statistics).
pub(super) fn applicable(x: &Tensor, train: bool) -> bool {
    let min_rows = if train { 2 } else { 1 };
    x.device() == tch::Device::Cpu
        && x.kind() == Kind::Float
        && x.dim() == 2
        && x.size()[0] >= min_rows
}

/// Training forward of the encoder from the initial BN's output `x_graph`
/// (with autograd history). Returns the output whose steps and sparsity term
/// are autograd leaves; its pass must be completed ([`Pass::backward`]) after
/// `loss.backward()`.
pub(super) fn forward_train(
    enc: &Encoder,
    embedder: &Embedder,
    x_graph: &Tensor,
    prior: Option<&Tensor>,
) -> EncoderOutput {
    kernels::on_pool(|| {
        let x0 = x_graph.detach().contiguous();
        let rows = x0.size()[0] as usize;
        let vbs = enc.attention[0].bn.virtual_batch_size;
        let chunks = Chunks::from_sizes(&chunk_sizes(rows as i64, vbs));
        let (n_groups, n_a) = (enc.n_groups(), enc.n_a());
        let mut prior = initial_prior(prior, rows, n_groups);
        let (split_out, splitter) = transformer_forward(&enc.splitter, &x0, &chunks);
        let mut a = split_out.narrow(1, enc.n_d, n_a);
        let mut steps = Vec::new();
        let mut leaves = Vec::new();
        let ex = Expansion::of(embedder, x0.size()[1] as usize);
        let mut m_loss = 0f64;
        for (att, ft) in enc.attention.iter().zip(&enc.transformers) {
            let at = attention_forward(att, &a, &prior, &chunks);
            let (m_sum, next_prior, xm) = step_glue_forward(
                &at.mask,
                &prior,
                &x0,
                &ex,
                enc.gamma as f32,
                enc.epsilon as f32,
            );
            m_loss += m_sum / rows as f64;
            let (out, layers) = transformer_forward(ft, &xm, &chunks);
            leaves.push(out.narrow(1, 0, enc.n_d).relu().set_requires_grad(true));
            a = out.narrow(1, enc.n_d, n_a);
            steps.push(StepTape {
                attention: at,
                layers,
                out,
            });
            prior = next_prior;
        }
        let m_loss_leaf =
            Tensor::from((m_loss / enc.transformers.len() as f64) as f32).set_requires_grad(true);
        let tape = Tape {
            chunks,
            n_d: enc.n_d,
            gamma: enc.gamma,
            epsilon: enc.epsilon,
            x_graph: x_graph.shallow_clone(),
            x0,
            expansion: ex,
            splitter,
            steps,
            step_leaves: leaves.iter().map(|l| l.shallow_clone()).collect(),
            m_loss_leaf: m_loss_leaf.shallow_clone(),
        };
        EncoderOutput {
            steps: leaves,
            m_loss: m_loss_leaf,
            masks: Vec::new(),
            pass: Pass {
                backend: Backend::Fused,
                tape: Some(tape),
            },
        }
    })
}

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
        let z = empty(rows, 2 * d);
        let out = empty(rows, d);
        let (op, hp) = (ptr(&out), ptr(&h));
        kernels::linear_rows(&h, &fc, &z, |r, zr| {
            let h: &[f32] = if residual { row(hp, r, d) } else { &[] };
            kernels::glu_row(zr, &scale, &shift, h, row(op, r, d));
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
    let z = empty(rows, g);
    let mask = empty(rows, g);
    let (mp, pp) = (ptr(&mask), ptr(prior));
    kernels::linear_rows(&a, &fc, &z, |r, zr| {
        attention_row(zr, &scale, &shift, row(pp, r, g), row(mp, r, g), entmax)
    });
    mask
}

/// Eval-mode encoder pass (running statistics) with the fused kernels, from the
/// initial BN's output. Same outputs as the autograd encoder in eval mode.
pub(super) fn forward_eval(
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
                step_glue_forward(&m, &prior, &x0, &ex, enc.gamma as f32, enc.epsilon as f32);
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
            m_loss,
            masks,
            pass: Pass {
                backend: Backend::Fused,
                tape: None,
            },
        }
    })
}

impl Tape {
    /// Back-propagates through the encoder by hand from the gradients autograd
    /// left on the leaves, then passes the parameter and input gradients back
    /// to autograd (accumulating into `.grad()` like any backward).
    pub(super) fn backward(self) {
        let (grads, dx0) = kernels::on_pool(|| self.manual_backward());
        let mut surrogate = (&self.x_graph * dx0).sum(Kind::Float);
        for (p, g) in &grads.pending {
            surrogate += (p * g).sum(Kind::Float);
        }
        surrogate.backward();
    }

    /// The hand-derived backward: (parameter, gradient) pairs and ∂L/∂x0.
    fn manual_backward(&self) -> (Grads, Tensor) {
        let rows = self.chunks.rows as i64;
        let n = self.steps.len();
        let g_mloss = {
            let g = self.m_loss_leaf.grad();
            if g.defined() {
                g.double_value(&[])
            } else {
                0.0
            }
        };
        let mut grads = Grads::default();
        let dx0 = self.x0.zeros_like();
        let n_groups = self.steps[0].attention.mask.size()[1];
        let n_a = self.steps[0].attention.lin.input.size()[1];
        let mut g_a = Tensor::zeros(&[rows, n_a], (Kind::Float, tch::Device::Cpu));
        let mut g_prior = Tensor::zeros(&[rows, n_groups], (Kind::Float, tch::Device::Cpu));
        let c = (g_mloss / (n as f64 * rows as f64)) as f32;
        for (i, st) in self.steps.iter().enumerate().rev() {
            let leaf_grad = self.step_leaves[i].grad();
            let g_d = leaf_grad.defined().then(|| leaf_grad.contiguous());
            let g_out = step_glue_out_grad(g_d.as_ref(), &st.out, &g_a, self.n_d as usize);
            let g_xm = transformer_backward(&st.layers, g_out, &self.chunks, &mut grads);
            let (g_m, g_prior_i) = step_glue_backward(
                &g_xm,
                &self.x0,
                &st.attention.mask,
                &st.attention.prior,
                &g_prior,
                &dx0,
                &self.expansion,
                self.gamma as f32,
                self.epsilon as f32,
                c,
            );
            g_a = attention_backward(&st.attention, &g_m, &g_prior_i, &self.chunks, &mut grads);
            g_prior = g_prior_i;
        }
        let zeros_d = Tensor::zeros(&[rows, self.n_d], (Kind::Float, tch::Device::Cpu));
        let g_split = Tensor::cat(&[zeros_d, g_a], 1);
        let dx_split = transformer_backward(&self.splitter, g_split, &self.chunks, &mut grads);
        (grads, dx0 + dx_split)
    }
}
