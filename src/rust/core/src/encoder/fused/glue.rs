//! The per-row arithmetic of a decision step between its layers (the
//! attentive transformer's is in [`super::attentive`]): the mask applied to
//! the input with the next prior and the sparsity term, and their gradients. Every function here
//! works on one row, so a pass can run it inside any task of rows.
use super::Expansion;
use crate::kernels;

crate::kernels::simd_fn! {
    /// Between attention and feature transformer, one row: next prior =
    /// prior ⊙ (γ − M), x_m = expand(M) ⊙ x0; returns Σ M log(M + ε) (the
    /// terms in f32, summed in f64 in order).
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
        let g = m.len();
        let (prior, next) = (&prior[..g], &mut next[..g]);
        for j in 0..g {
            next[j] = prior[j] * (gamma - m[j]);
        }
        let dims = xm.len();
        let (x0, scale) = (&x0[..dims], &ex.scale[..dims]);
        if ex.identity {
            let m = &m[..dims];
            for j in 0..dims {
                xm[j] = m[j] * scale[j] * x0[j];
            }
        } else {
            for j in 0..dims {
                xm[j] = m[ex.col[j]] * scale[j] * x0[j];
            }
        }
        // a masked-out entry adds 0 (0 · log ε would add −0: the same sum)
        let mut s = 0f64;
        for c in m.chunks(32) {
            let mut t = [0f32; 32];
            for (tj, &mj) in t.iter_mut().zip(c) {
                *tj = if mj != 0.0 { mj * kernels::ln_f32(mj + eps) } else { 0.0 };
            }
            for &v in &t[..c.len()] {
                s += v as f64;
            }
        }
        s
    }
}

crate::kernels::simd_fn! {
    /// After a step's feature transformer, a block of rows: the ReLU of the
    /// output's decision part (`out`, rows of n_d + n_a) into `decision`
    /// (rows of n_d), and the running sum over steps `sum` (the first step
    /// writes it, later ones add: d₀ + d₁ + … in step order).
    pub(super) fn decision_rows(out: &[f32], decision: &mut [f32], sum: &mut [f32], widths: (usize, usize), first: bool) {
        let (n_d, n_a) = widths;
        let w = n_d + n_a;
        for ((o, d), s) in out.chunks_exact(w).zip(decision.chunks_exact_mut(n_d)).zip(sum.chunks_exact_mut(n_d)) {
            let o = &o[..n_d];
            for j in 0..n_d {
                d[j] = if o[j] > 0.0 { o[j] } else { 0.0 };
            }
            if first {
                s.copy_from_slice(d);
            } else {
                for j in 0..n_d {
                    s[j] += d[j];
                }
            }
        }
    }
}

crate::kernels::simd_fn! {
    /// ∂L/∂(feature transformer output) of a block of rows into `g` (rows of
    /// n_d + n_a): the ReLU'd decision part where `out` > 0, from the step's
    /// own gradient `g_d` plus the sum's `g_s` (rows of n_d each; either is
    /// empty when it got no gradient), and the attention part `g_a` (rows of
    /// n_a).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn out_grad_rows(g_d: &[f32], g_s: &[f32], out: &[f32], g_a: &[f32], g: &mut [f32], n_d: usize, n_a: usize) {
        let w = n_d + n_a;
        for (i, gr) in g.chunks_exact_mut(w).enumerate() {
            let (gd, ga) = gr.split_at_mut(n_d);
            let o = &out[i * w..i * w + n_d];
            let rows = i * n_d..(i + 1) * n_d;
            match (g_d.is_empty(), g_s.is_empty()) {
                (true, true) => gd.iter_mut().for_each(|v| *v = 0.0),
                (false, true) | (true, false) => {
                    let d = if g_d.is_empty() { &g_s[rows] } else { &g_d[rows] };
                    for j in 0..n_d {
                        gd[j] = if o[j] > 0.0 { d[j] } else { 0.0 };
                    }
                }
                (false, false) => {
                    let (d, e) = (&g_d[rows.clone()], &g_s[rows]);
                    for j in 0..n_d {
                        gd[j] = if o[j] > 0.0 { d[j] + e[j] } else { 0.0 };
                    }
                }
            }
            ga.copy_from_slice(&g_a[i * n_a..(i + 1) * n_a]);
        }
    }
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

crate::kernels::simd_fn! {
    /// From ∂L/∂x_m of one row: ∂L/∂M into `g_m` (through x_m, the next
    /// prior and the sparsity term), ∂L/∂prior into `g_prior`, and ∂L/∂x0
    /// added into `dx0`; `k` holds the constants.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_row(
        k: &GlueGrad<'_>,
        g_xm: &[f32],
        x0: &[f32],
        m: &[f32],
        prior: &[f32],
        g_prior_next: &[f32],
        dx0: &mut [f32],
        g_m: &mut [f32],
        g_prior: &mut [f32],
    ) {
        let ex = k.ex;
        let dims = g_xm.len();
        let (x0, scale, dx0) = (&x0[..dims], &ex.scale[..dims], &mut dx0[..dims]);
        if ex.identity {
            let (m, g_m) = (&m[..dims], &mut g_m[..dims]);
            for j in 0..dims {
                g_m[j] = g_xm[j] * x0[j] * scale[j];
                dx0[j] += g_xm[j] * m[j] * scale[j];
            }
        } else {
            g_m.iter_mut().for_each(|v| *v = 0.0);
            for j in 0..dims {
                let c = ex.col[j];
                g_m[c] += g_xm[j] * x0[j] * scale[j];
                dx0[j] += g_xm[j] * m[c] * scale[j];
            }
        }
        let g = m.len();
        let (prior, g_prior_next) = (&prior[..g], &g_prior_next[..g]);
        let (g_m, g_prior) = (&mut g_m[..g], &mut g_prior[..g]);
        let (gamma, eps, c) = (k.gamma, k.eps, k.c);
        for j in 0..g {
            g_m[j] -= g_prior_next[j] * prior[j];
            g_prior[j] = g_prior_next[j] * (gamma - m[j]);
        }
        if c != 0.0 {
            for j in 0..g {
                let t = if m[j] == 0.0 {
                    k.log_eps
                } else {
                    kernels::ln_f32(m[j] + eps) + m[j] / (m[j] + eps)
                };
                g_m[j] += c * t;
            }
        }
    }
}

crate::kernels::simd_fn! {
    /// [`forward_row`]'s next prior and x_m for each row of a block (rows of
    /// `g` groups and of `dims` embedded values), without the sparsity sum.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mask_input_rows(
        m: &[f32],
        prior: &[f32],
        x0: &[f32],
        next: &mut [f32],
        xm: &mut [f32],
        ex: &Expansion,
        gamma: f32,
        widths: (usize, usize),
    ) {
        let (g, dims) = widths;
        let n = m.len() / g;
        if ex.identity && g == dims && ex.scale_rows.len() >= n * dims {
            // rows are contiguous and a group is a value: flat loops over the
            // block (rows of 8-32 values are too short to vectorise along),
            // each element's operations as below
            let (m, prior, next) = (&m[..n * g], &prior[..n * g], &mut next[..n * g]);
            for j in 0..n * g {
                next[j] = prior[j] * (gamma - m[j]);
            }
            let (x0, xm, scale) = (&x0[..n * dims], &mut xm[..n * dims], &ex.scale_rows[..n * dims]);
            for j in 0..n * dims {
                xm[j] = m[j] * scale[j] * x0[j];
            }
            return;
        }
        let scale = &ex.scale[..dims];
        for (((mr, pr), (xr, nr)), xmr) in m
            .chunks_exact(g)
            .zip(prior.chunks_exact(g))
            .zip(x0.chunks_exact(dims).zip(next.chunks_exact_mut(g)))
            .zip(xm.chunks_exact_mut(dims))
        {
            for j in 0..g {
                nr[j] = pr[j] * (gamma - mr[j]);
            }
            if ex.identity {
                let mr = &mr[..dims];
                for j in 0..dims {
                    xmr[j] = mr[j] * scale[j] * xr[j];
                }
            } else {
                for j in 0..dims {
                    xmr[j] = mr[ex.col[j]] * scale[j] * xr[j];
                }
            }
        }
    }
}

/// Σ M log(M + ε) of each row of a block of masks (rows of `g`), as
/// [`forward_row`] sums it, into `sums`.
pub(super) fn sparsity_rows(m: &[f32], g: usize, eps: f32, sums: &mut [f64]) {
    for (mr, s) in m.chunks_exact(g).zip(sums.iter_mut()) {
        let mut acc = 0f64;
        for c in mr.chunks(32) {
            let mut t = [0f32; 32];
            for (tj, &mj) in t.iter_mut().zip(c) {
                *tj = if mj != 0.0 {
                    mj * kernels::ln_f32(mj + eps)
                } else {
                    0.0
                };
            }
            for &v in &t[..c.len()] {
                acc += v as f64;
            }
        }
        *s = acc;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{close, input};
    use super::*;
    use crate::kernels::values;
    use tch::{Kind, Tensor};

    /// The step glue of 40 rows, one attention group per input dimension (6)
    /// and grouped (4 groups over 7 dimensions, scaled), against the
    /// autograd encoder's expressions (`encoder::autograd`): next prior =
    /// prior ⊙ (γ − M), x_m = expand(M) ⊙ x0, the sparsity term
    /// Σ M log(M + ε) per row, the decision outputs' ReLU and their sum over
    /// steps, and from upstream gradients of all of them ∂L/∂M, ∂L/∂prior,
    /// ∂L/∂x0 and ∂L/∂(transformer output), forward and eval versions.
    /// Masks are sparse distributions (exact zeros included, where the
    /// sparsity term's slope is log ε). Tolerances (see `testing`): each
    /// value is a product or two (n = 1) except the sparsity sums (n = G)
    /// and ∂L/∂M through a group of up to 3 dimensions plus the sparsity
    /// slope (n = 4); k = 8 (seen ≤ 1.1).
    #[test]
    fn matches_the_autograd_glue() {
        check(&Expansion::new((0..6).collect(), vec![1.0; 6]), 6);
        let col = vec![0, 1, 1, 2, 2, 2, 3];
        let scale = vec![1.0, 0.5, 0.5, 0.3, 0.3, 0.4, 1.0];
        check(&Expansion::new(col, scale), 4);
    }

    fn check(ex: &Expansion, g: usize) {
        let (rows, dims, n_d, n_a) = (40usize, ex.col.len(), 5usize, 3usize);
        let (gamma, eps) = (1.3f32, 1e-15f32);
        // sparse distributions: a third of the entries exactly 0
        let raw = input(rows, g, 61).exp() * input(rows, g, 62).gt(-0.4).to_kind(Kind::Float);
        let raw = raw.index_fill(1, &Tensor::of_slice(&[0i64]), 0.7);
        let m = (&raw / raw.sum_dim_intlist(Some(&[1i64][..]), true, Kind::Float)).contiguous();
        let prior = (input(rows, g, 63).abs() * 0.4 + 0.3).contiguous();
        let x0 = input(rows, dims, 64);
        let out = input(rows, n_d + n_a, 65);
        let sum_before = input(rows, n_d, 66);
        let (g_next, g_xm, g_d, g_s) = (
            input(rows, g, 67),
            input(rows, dims, 68),
            input(rows, n_d, 69),
            input(rows, n_d, 70),
        );
        let g_a = input(rows, n_a, 71);
        let c = 0.05f32;

        // fused, row by row as the pass runs it
        let (mv, pv, xv) = (values(&m), values(&prior), values(&x0));
        let (mut next, mut xm, mut sums) = (
            vec![0f32; rows * g],
            vec![0f32; rows * dims],
            vec![0f64; rows],
        );
        for (r, sum) in sums.iter_mut().enumerate() {
            let (gr, dr) = (r * g..(r + 1) * g, r * dims..(r + 1) * dims);
            *sum = forward_row(
                &mv[gr.clone()],
                &pv[gr.clone()],
                &xv[dr.clone()],
                &mut next[gr],
                &mut xm[dr],
                ex,
                gamma,
                eps,
            );
        }
        let k = GlueGrad {
            ex,
            gamma,
            eps,
            c,
            log_eps: eps.ln(),
        };
        let (gn, gx) = (values(&g_next), values(&g_xm));
        let (mut g_m, mut g_prior, mut dx0) = (
            vec![0f32; rows * g],
            vec![0f32; rows * g],
            vec![0f32; rows * dims],
        );
        for r in 0..rows {
            let (gr, dr) = (r * g..(r + 1) * g, r * dims..(r + 1) * dims);
            backward_row(
                &k,
                &gx[dr.clone()],
                &xv[dr.clone()],
                &mv[gr.clone()],
                &pv[gr.clone()],
                &gn[gr.clone()],
                &mut dx0[dr],
                &mut g_m[gr.clone()],
                &mut g_prior[gr],
            );
        }
        let (mut decision, mut sum) = (vec![0f32; rows * n_d], values(&sum_before).to_vec());
        decision_rows(values(&out), &mut decision, &mut sum, (n_d, n_a), false);
        let mut g_out = vec![0f32; rows * (n_d + n_a)];
        out_grad_rows(
            values(&g_d),
            values(&g_s),
            values(&out),
            values(&g_a),
            &mut g_out,
            n_d,
            n_a,
        );
        // the eval versions
        let (mut next_e, mut xm_e, mut sums_e) = (
            vec![0f32; rows * g],
            vec![0f32; rows * dims],
            vec![0f64; rows],
        );
        mask_input_rows(mv, pv, xv, &mut next_e, &mut xm_e, ex, gamma, (g, dims));
        sparsity_rows(mv, g, eps, &mut sums_e);

        // autograd
        let (mr, pr, xr, or) = (
            m.set_requires_grad(true),
            prior.set_requires_grad(true),
            x0.set_requires_grad(true),
            out.set_requires_grad(true),
        );
        let col = Tensor::of_slice(&ex.col.iter().map(|&c| c as i64).collect::<Vec<_>>());
        let expand = mr.index_select(1, &col) * Tensor::of_slice(&ex.scale);
        let next_r = &pr * (gamma as f64 - &mr);
        let xm_r = expand * &xr;
        let sums_r =
            (&mr * (&mr + eps as f64).log()).sum_dim_intlist(Some(&[1i64][..]), false, Kind::Float);
        let dec_r = or.narrow(1, 0, n_d as i64).relu();
        let loss = (&next_r * &g_next).sum(Kind::Float)
            + (&xm_r * &g_xm).sum(Kind::Float)
            + sums_r.sum(Kind::Float) * c as f64
            + (&dec_r * (&g_d + &g_s)).sum(Kind::Float)
            + (or.narrow(1, n_d as i64, n_a as i64) * &g_a).sum(Kind::Float);
        loss.backward();

        let t = |v: &[f32], w: usize| Tensor::of_slice(v).view([rows as i64, w as i64]);
        let t64 = |v: &[f64]| Tensor::of_slice(v);
        let what = |s: &str| format!("{s} (groups {g}, identity {})", ex.identity);
        close(&what("next prior"), &t(&next, g), &next_r.detach(), 1, 8.0);
        close(&what("x_m"), &t(&xm, dims), &xm_r.detach(), 1, 8.0);
        close(&what("sparsity"), &t64(&sums), &sums_r.detach(), g, 8.0);
        close(
            &what("eval next prior"),
            &t(&next_e, g),
            &next_r.detach(),
            1,
            8.0,
        );
        close(&what("eval x_m"), &t(&xm_e, dims), &xm_r.detach(), 1, 8.0);
        close(
            &what("eval sparsity"),
            &t64(&sums_e),
            &sums_r.detach(),
            g,
            8.0,
        );
        close(
            &what("decision"),
            &t(&decision, n_d),
            &dec_r.detach(),
            1,
            8.0,
        );
        close(
            &what("Σ decisions"),
            &t(&sum, n_d),
            &(&sum_before + dec_r.detach()),
            1,
            8.0,
        );
        close(&what("∂L/∂M"), &t(&g_m, g), &mr.grad(), 4, 8.0);
        close(&what("∂L/∂prior"), &t(&g_prior, g), &pr.grad(), 1, 8.0);
        close(&what("∂L/∂x0"), &t(&dx0, dims), &xr.grad(), 1, 8.0);
        close(&what("∂L/∂out"), &t(&g_out, n_d + n_a), &or.grad(), 1, 8.0);
    }
}
