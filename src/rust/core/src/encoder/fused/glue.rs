//! The per-row arithmetic of a decision step between its layers: the
//! attentive transformer's epilogue, the mask applied to the input with the
//! next prior and the sparsity term, and their gradients. Every function here
//! works on one row, so a pass can run it inside any task of rows.
use super::Expansion;
use crate::kernels;

/// One row of an attentive transformer after its product: M = mask((a ẑ + b) ⊙ prior),
/// the logits written into `m` and overwritten by the mask.
pub(super) fn attention_row(
    z: &[f32],
    a: &[f32],
    b: &[f32],
    prior: &[f32],
    m: &mut [f32],
    entmax: bool,
) {
    for j in 0..m.len() {
        m[j] = (a[j] * z[j] + b[j]) * prior[j];
    }
    kernels::mask_row(m, entmax);
}

/// ∂L/∂logits of [`attention_row`] into `gy` from ∂L/∂M (`g_mask`), adding
/// ∂L/∂prior into `g_prior`: the attentive transformer's ∂L/∂y.
#[allow(clippy::too_many_arguments)]
pub(super) fn attention_grad_row(
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

/// Between attention and feature transformer, one row: next prior =
/// prior ⊙ (γ − M), x_m = expand(M) ⊙ x0; returns Σ M log(M + ε).
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_row(
    m: &[f32],
    prior: &[f32],
    x0: &[f32],
    next: &mut [f32],
    xm: &mut [f32],
    ex: &Expansion,
    gamma: f32,
    eps: f32,
) -> f64 {
    let mut s = 0f64;
    for j in 0..m.len() {
        // a masked-out entry adds 0 · log ε = −0: skipping the logarithm
        // leaves the sum bit-identical
        if m[j] != 0.0 {
            s += (m[j] * (m[j] + eps).ln()) as f64;
        }
        next[j] = prior[j] * (gamma - m[j]);
    }
    for j in 0..xm.len() {
        xm[j] = m[ex.col[j]] * ex.scale[j] * x0[j];
    }
    s
}

/// ∂L/∂(feature transformer output) of one row into `g`: the ReLU'd decision
/// part (`g_d`, none when the step's output got no gradient) and the
/// attention part `g_a`.
pub(super) fn out_grad_row(g_d: Option<&[f32]>, out: &[f32], g_a: &[f32], g: &mut [f32]) {
    let n_d = g.len() - g_a.len();
    match g_d {
        Some(d) => {
            for j in 0..n_d {
                g[j] = if out[j] > 0.0 { d[j] } else { 0.0 };
            }
        }
        None => g[..n_d].iter_mut().for_each(|v| *v = 0.0),
    }
    g[n_d..].copy_from_slice(g_a);
}

/// The constants of [`backward_row`]: γ, ε, the sparsity term's weight `c`
/// per row and log ε (∂(M log(M + ε))/∂M at M = 0, exactly what the general
/// expression gives there, computed once).
pub(super) struct GlueGrad<'a> {
    pub ex: &'a Expansion,
    pub gamma: f32,
    pub eps: f32,
    pub c: f32,
    pub log_eps: f32,
}

impl GlueGrad<'_> {
    /// From ∂L/∂x_m of one row: ∂L/∂M into `g_m` (through x_m, the next
    /// prior and the sparsity term), ∂L/∂prior into `g_prior`, and ∂L/∂x0
    /// added into `dx0`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_row(
        &self,
        g_xm: &[f32],
        x0: &[f32],
        m: &[f32],
        prior: &[f32],
        g_prior_next: &[f32],
        dx0: &mut [f32],
        g_m: &mut [f32],
        g_prior: &mut [f32],
    ) {
        let ex = self.ex;
        g_m.iter_mut().for_each(|v| *v = 0.0);
        for j in 0..g_xm.len() {
            let k = ex.col[j];
            g_m[k] += g_xm[j] * x0[j] * ex.scale[j];
            dx0[j] += g_xm[j] * m[k] * ex.scale[j];
        }
        let (gamma, eps, c) = (self.gamma, self.eps, self.c);
        for j in 0..m.len() {
            g_m[j] -= g_prior_next[j] * prior[j];
            g_prior[j] = g_prior_next[j] * (gamma - m[j]);
            if c != 0.0 {
                g_m[j] += c * if m[j] == 0.0 {
                    self.log_eps
                } else {
                    (m[j] + eps).ln() + m[j] / (m[j] + eps)
                };
            }
        }
    }
}
