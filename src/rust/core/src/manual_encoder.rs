//! The encoder's training pass with a hand-derived backward (CPU, f32).
//!
//! Autograd would record a dozen full-batch libtorch kernels per GLU layer; here
//! each layer is one BLAS product plus one fused kernel per virtual batch (see
//! [`crate::kernels`]), forward and backward. The pass plugs into autograd at its
//! edges: the initial BN output enters as a detached copy, the step outputs and
//! the sparsity term leave as leaves that the head/decoder and the loss use
//! normally. After `loss.backward()`, [`EncoderTape::backward`] reads the
//! leaves' gradients, runs the encoder backward by hand, and hands the parameter
//! and input gradients back to autograd with one surrogate `backward()`, so
//! gradient clipping, the optimiser, embeddings and the initial BN are unchanged.
//!
//! Equivalence with the autograd encoder (outputs, running statistics and every
//! parameter gradient) is tested in `tests/manual_encoder.rs`.
use crate::attentive::AttentiveTransformer;
use crate::config::MaskType;
use crate::embedding::Embedder;
use crate::encoder::{Encoder, EncoderOutput};
use crate::feature_transformer::FeatureTransformer;
use crate::glu::GluLayer;
use crate::kernels::{self, empty, linear_bn_backward, linear_bn_forward, ptr, BnStats, Chunks};
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{Kind, Tensor};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Switches the hand-derived training pass on or off (autograd is used when off).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::from(&t.detach().to_kind(Kind::Float))
}

fn from_vec(v: &[f32]) -> Tensor {
    Tensor::of_slice(v)
}

/// Saved state of one GLU layer.
struct LayerTape {
    /// the FC weight, detached (for the products) and as the parameter
    fc: Tensor,
    param: Tensor,
    weight: Tensor,
    bias: Tensor,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    h_in: Tensor,
    zhat: Tensor,
    stats: BnStats,
    residual: bool,
}

/// Saved state of one attentive transformer.
struct AttentionTape {
    fc: Tensor,
    param: Tensor,
    weight: Tensor,
    bias: Tensor,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    a_in: Tensor,
    zhat: Tensor,
    stats: BnStats,
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
pub struct EncoderTape {
    chunks: Chunks,
    n_d: i64,
    gamma: f64,
    epsilon: f64,
    /// initial-BN output with its autograd history (the surrogate's input edge)
    x_graph: Tensor,
    /// the same values, detached
    x0: Tensor,
    /// embedded dimension → column, and per-dimension scale (None when identity)
    column_of_dim: Option<Tensor>,
    dim_scale: Option<Tensor>,
    splitter: Vec<LayerTape>,
    steps: Vec<StepTape>,
    /// the leaves handed to the rest of the graph
    step_leaves: Vec<Tensor>,
    m_loss_leaf: Tensor,
}

/// GLU layer forward: out = GLU(GBN(h Wᵀ)) [+ h, × √½ when residual].
fn layer_forward(layer: &GluLayer, h_in: &Tensor, residual: bool, chunks: &Chunks) -> (Tensor, LayerTape) {
    let h_in = h_in.contiguous();
    let fc = layer.fc.detach();
    let ch = fc.size()[0] as usize;
    let d = ch / 2;
    let rows = chunks.rows;
    let gamma = to_vec(&layer.bn.weight);
    let beta = to_vec(&layer.bn.bias);
    let z = empty(rows, ch);
    let out = empty(rows, d);
    let op = ptr(&out);
    let hp = ptr(&h_in);
    let stats = linear_bn_forward(&h_in, &fc, &z, chunks, layer.bn.eps as f32, |r, zr| {
        let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(r * d), d) };
        let h: &[f32] = if residual {
            unsafe { std::slice::from_raw_parts(hp.get().add(r * d) as *const f32, d) }
        } else {
            &[]
        };
        kernels::glu_row(zr, &gamma, &beta, h, o);
    });
    running_update(&layer.bn, &stats, chunks, ch);
    let tape = LayerTape {
        fc,
        weight: layer.bn.weight.shallow_clone(),
        bias: layer.bn.bias.shallow_clone(),
        param: layer.fc.shallow_clone(),
        gamma,
        beta,
        h_in,
        zhat: z,
        stats,
        residual,
    };
    (out, tape)
}

fn running_update(bn: &crate::ghost_bn::GhostBatchNorm, stats: &BnStats, chunks: &Chunks, ch: usize) {
    let k = chunks.count() as i64;
    let means = from_vec(&stats.mean).view([k, ch as i64]);
    let vars = from_vec(&stats.var_unbiased).view([k, ch as i64]);
    bn.update_running(&means, &vars);
}

/// Backward of [`layer_forward`]: returns ∂L/∂h_in and pushes parameter gradients.
fn layer_backward(t: &LayerTape, g_out: &Tensor, chunks: &Chunks, grads: &mut Vec<(Tensor, Tensor)>) -> Tensor {
    let g_out = g_out.contiguous();
    let ch = t.zhat.size()[1] as usize;
    let d = ch / 2;
    let gp = ptr(&g_out);
    let dz = empty(chunks.rows, ch);
    let g_in = empty(chunks.rows, t.h_in.size()[1] as usize);
    let scale = if t.residual { SQRT_HALF } else { 1.0 };
    let (gamma, beta, residual) = (&t.gamma, &t.beta, t.residual);
    let go_row = |r: usize| unsafe { std::slice::from_raw_parts(gp.get().add(r * d) as *const f32, d) };
    let (dgamma, dbeta, dw) = linear_bn_backward(
        &t.h_in,
        &t.fc,
        &t.zhat,
        &dz,
        &g_in,
        &t.stats,
        gamma,
        chunks,
        |r, zr, gy| kernels::glu_grad_row(zr, gamma, beta, go_row(r), scale, gy),
        |r, gi| {
            if residual {
                kernels::axpy_row(gi, go_row(r), scale);
            }
        },
    );
    grads.push((t.param.shallow_clone(), dw));
    grads.push((t.weight.shallow_clone(), from_vec(&dgamma)));
    grads.push((t.bias.shallow_clone(), from_vec(&dbeta)));
    g_in
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

fn transformer_forward(ft: &FeatureTransformer, x: &Tensor, chunks: &Chunks) -> (Tensor, Vec<LayerTape>) {
    let mut h = x.shallow_clone();
    let mut tapes = Vec::new();
    for (layer, residual) in layers_of(ft) {
        let (out, tape) = layer_forward(layer, &h, residual, chunks);
        h = out;
        tapes.push(tape);
    }
    (h, tapes)
}

fn transformer_backward(tapes: &[LayerTape], g_out: Tensor, chunks: &Chunks, grads: &mut Vec<(Tensor, Tensor)>) -> Tensor {
    tapes.iter().rev().fold(g_out, |g, t| layer_backward(t, &g, chunks, grads))
}

/// Attentive transformer forward: M = mask(GBN(a Wᵀ) ⊙ prior).
fn attention_forward(att: &AttentiveTransformer, a: &Tensor, prior: &Tensor, chunks: &Chunks) -> AttentionTape {
    let a_in = a.contiguous();
    let fc = att.fc.detach();
    let g = fc.size()[0] as usize;
    let gamma = to_vec(&att.bn.weight);
    let beta = to_vec(&att.bn.bias);
    let z = empty(chunks.rows, g);
    let mask = empty(chunks.rows, g);
    let mp = ptr(&mask);
    let pp = ptr(prior);
    let entmax = att.mask == MaskType::Entmax;
    let stats = linear_bn_forward(&a_in, &fc, &z, chunks, att.bn.eps as f32, |r, zr| {
        let p = unsafe { std::slice::from_raw_parts(pp.get().add(r * g) as *const f32, g) };
        let m = unsafe { std::slice::from_raw_parts_mut(mp.get().add(r * g), g) };
        // the logits go into `m`, the mask overwrites them
        for j in 0..g {
            m[j] = (gamma[j] * zr[j] + beta[j]) * p[j];
        }
        kernels::mask_row(m, entmax);
    });
    running_update(&att.bn, &stats, chunks, g);
    AttentionTape {
        fc,
        param: att.fc.shallow_clone(),
        weight: att.bn.weight.shallow_clone(),
        bias: att.bn.bias.shallow_clone(),
        gamma,
        beta,
        a_in,
        zhat: z,
        stats,
        prior: prior.shallow_clone(),
        mask,
        entmax,
    }
}

/// Backward of [`attention_forward`] from ∂L/∂M. Adds ∂L/∂prior into `g_prior`,
/// returns ∂L/∂a and pushes parameter gradients.
fn attention_backward(t: &AttentionTape, g_mask: &Tensor, g_prior: &Tensor, chunks: &Chunks, grads: &mut Vec<(Tensor, Tensor)>) -> Tensor {
    let g = t.zhat.size()[1] as usize;
    let dz = empty(chunks.rows, g);
    let g_a = empty(chunks.rows, t.a_in.size()[1] as usize);
    let (gm, mp, pp, gpp) = (ptr(g_mask), ptr(&t.mask), ptr(&t.prior), ptr(g_prior));
    let (gamma, beta, entmax) = (&t.gamma, &t.beta, t.entmax);
    let (dgamma, dbeta, dw) = linear_bn_backward(
        &t.a_in,
        &t.fc,
        &t.zhat,
        &dz,
        &g_a,
        &t.stats,
        gamma,
        chunks,
        |r, zr, gy| {
            let row = |p: kernels::SendPtr| unsafe { std::slice::from_raw_parts_mut(p.get().add(r * g), g) };
            let (gmr, mr, pr, gpr) = (row(gm), row(mp), row(pp), row(gpp));
            gy.copy_from_slice(gmr);
            kernels::mask_row_backward(mr, gy, entmax); // now ∂L/∂logits
            for j in 0..g {
                gpr[j] += gy[j] * (gamma[j] * zr[j] + beta[j]);
                gy[j] *= pr[j];
            }
        },
        |_, _| {},
    );
    grads.push((t.param.shallow_clone(), dw));
    grads.push((t.weight.shallow_clone(), from_vec(&dgamma)));
    grads.push((t.bias.shallow_clone(), from_vec(&dbeta)));
    g_a
}

/// True when the hand-derived pass can run for this input.
pub fn applicable(x: &Tensor) -> bool {
    enabled() && x.device() == tch::Device::Cpu && x.kind() == Kind::Float && x.dim() == 2 && x.size()[0] > 1
}

/// Training forward of the encoder from the initial BN's output `x_graph`
/// (with autograd history). Returns the output whose steps and sparsity term
/// are autograd leaves; its `tape` must be given to [`EncoderTape::backward`]
/// after `loss.backward()`.
pub fn forward(enc: &Encoder, embedder: &Embedder, x_graph: &Tensor, prior: Option<&Tensor>) -> EncoderOutput {
    tch::no_grad(|| {
        let x0 = x_graph.detach().contiguous();
        let rows = x0.size()[0] as usize;
        let chunks = Chunks::new(rows, enc.attention[0].bn.virtual_batch_size as usize);
        let n_groups = enc.attention[0].fc.size()[0];
        let n_a = enc.attention[0].fc.size()[1];
        let mut prior = match prior {
            Some(p) => p.to_kind(Kind::Float).contiguous(),
            None => Tensor::ones(&[rows as i64, n_groups], (Kind::Float, tch::Device::Cpu)),
        };
        let (split_out, splitter) = transformer_forward(&enc.splitter, &x0, &chunks);
        let mut a = split_out.narrow(1, enc.n_d, n_a);
        let mut steps = Vec::new();
        let mut leaves = Vec::new();
        let mut m_loss = Tensor::zeros(&[], (Kind::Float, tch::Device::Cpu));
        for (att, ft) in enc.attention.iter().zip(&enc.transformers) {
            let at = attention_forward(att, &a, &prior, &chunks);
            let m = &at.mask;
            m_loss += (m * (m + enc.epsilon).log()).sum_dim_intlist(Some(&[1i64][..]), false, Kind::Float).mean(Kind::Float);
            let next_prior = &prior * (enc.gamma - m);
            let xm = embedder.expand(m) * &x0;
            let (out, layers) = transformer_forward(ft, &xm, &chunks);
            leaves.push(out.narrow(1, 0, enc.n_d).relu().set_requires_grad(true));
            a = out.narrow(1, enc.n_d, n_a);
            steps.push(StepTape { attention: at, layers, out });
            prior = next_prior;
        }
        let m_loss_leaf = (m_loss / enc.transformers.len() as f64).set_requires_grad(true);
        let tape = EncoderTape {
            chunks,
            n_d: enc.n_d,
            gamma: enc.gamma,
            epsilon: enc.epsilon,
            x_graph: x_graph.shallow_clone(),
            x0,
            column_of_dim: (!embedder.identity).then(|| embedder.column_of_dim.shallow_clone()),
            dim_scale: embedder.dim_scale.as_ref().map(|s| s.shallow_clone()),
            splitter,
            steps,
            step_leaves: leaves.iter().map(|l| l.shallow_clone()).collect(),
            m_loss_leaf: m_loss_leaf.shallow_clone(),
        };
        EncoderOutput { steps: leaves, m_loss: m_loss_leaf, masks: Vec::new(), tape: Some(tape) }
    })
}

fn grad_or_zeros(t: &Tensor) -> Tensor {
    let g = t.grad();
    if g.defined() {
        g.contiguous()
    } else {
        t.zeros_like()
    }
}

impl EncoderTape {
    /// Back-propagates through the encoder by hand from the gradients autograd
    /// left on the leaves, then passes the parameter and input gradients back
    /// to autograd (accumulating into `.grad()` like any backward).
    pub fn backward(self) {
        let (grads, dx0) = tch::no_grad(|| self.manual_backward());
        let mut surrogate = (&self.x_graph * dx0).sum(Kind::Float);
        for (p, g) in &grads {
            surrogate += (p * g).sum(Kind::Float);
        }
        surrogate.backward();
    }

    /// The hand-derived backward: (parameter, gradient) pairs and ∂L/∂x0.
    fn manual_backward(&self) -> (Vec<(Tensor, Tensor)>, Tensor) {
        let rows = self.chunks.rows as i64;
        let n = self.steps.len();
        let g_mloss = {
            let g = self.m_loss_leaf.grad();
            if g.defined() { g.double_value(&[]) } else { 0.0 }
        };
        let mut grads = Vec::new();
        let mut dx0 = self.x0.zeros_like();
        let n_groups = self.steps[0].attention.mask.size()[1];
        let n_a = self.steps[0].attention.a_in.size()[1];
        let mut g_a = Tensor::zeros(&[rows, n_a], (Kind::Float, tch::Device::Cpu));
        let mut g_prior = Tensor::zeros(&[rows, n_groups], (Kind::Float, tch::Device::Cpu));
        for (i, st) in self.steps.iter().enumerate().rev() {
            let d_out = st.out.narrow(1, 0, self.n_d);
            let g_d = grad_or_zeros(&self.step_leaves[i]) * d_out.gt(0.0).to_kind(Kind::Float);
            let g_out = Tensor::cat(&[g_d, g_a.shallow_clone()], 1);
            let g_xm = transformer_backward(&st.layers, g_out, &self.chunks, &mut grads);
            let m = &st.attention.mask;
            // x_m = expand(M) ⊙ x0
            let gx = &g_xm * &self.x0;
            let mut g_m = match &self.column_of_dim {
                None => gx,
                Some(cols) => {
                    let gx = match &self.dim_scale {
                        Some(s) => gx * s,
                        None => gx,
                    };
                    Tensor::zeros(&[rows, n_groups], (Kind::Float, tch::Device::Cpu)).index_add(1, cols, &gx)
                }
            };
            let m_exp = match &self.column_of_dim {
                None => m.shallow_clone(),
                Some(cols) => {
                    let e = m.index_select(1, cols);
                    match &self.dim_scale {
                        Some(s) => e * s,
                        None => e,
                    }
                }
            };
            dx0 += &g_xm * m_exp;
            // prior_{i+1} = prior_i ⊙ (γ − M_i)
            let prior = &st.attention.prior;
            g_m -= &g_prior * prior;
            let g_prior_i = (&g_prior * (self.gamma - m)).contiguous();
            // sparsity term: mean over steps of mean over rows of Σ M log(M + ε)
            if g_mloss != 0.0 {
                let c = g_mloss / (n as f64 * rows as f64);
                g_m += ((m + self.epsilon).log() + m / (m + self.epsilon)) * c;
            }
            let g_m = g_m.contiguous();
            g_a = attention_backward(&st.attention, &g_m, &g_prior_i, &self.chunks, &mut grads);
            g_prior = g_prior_i;
        }
        let zeros_d = Tensor::zeros(&[rows, self.n_d], (Kind::Float, tch::Device::Cpu));
        let g_split = Tensor::cat(&[zeros_d, g_a], 1);
        dx0 += transformer_backward(&self.splitter, g_split, &self.chunks, &mut grads);
        (grads, dx0)
    }
}
