//! Kernel SHAP as kernelshap 0.9 (`kernelshap()`, Mayer & Watson) computes
//! it, per row: the coalitions of size 1..=deg and p−deg..p−1 enter exactly
//! with their Kernel SHAP weight (the "hybrid" part, degree `deg`); the
//! remaining weight is estimated by paired sampling (m/2 coalitions with
//! their sizes drawn by the kernel weights, and their complements) in
//! iterations. Each iteration's constrained least-squares solution is an
//! estimate; their spread gives the standard errors, and a row has
//! converged when max_j SE_j <= tol · (max_j β_j − min_j β_j) for every
//! output. The regression is solved with Σ_j β_j = v(all) − v(∅) as in
//! kernelshap (Covert & Lee's solver).
//!
//! The random numbers are this module's own (xoshiro256**): the values agree
//! with kernelshap's in distribution, not draw by draw.
use super::{Explainer, Polled, ShapBlock};
use crate::error::{invalid, Result};
use crate::model::Model;
use crate::msg;
use crate::rng::Rng;

#[derive(Clone, Copy, Debug)]
pub struct KernelOptions {
    /// Coalition sizes 1..=deg (and their complements) enter exactly.
    pub hybrid_degree: usize,
    /// Coalitions sampled per iteration (even).
    pub m: usize,
    pub tol: f64,
    pub max_iter: usize,
    pub seed: u64,
}

/// Coalitions with weights and A = Zᵀ diag(w) Z.
#[derive(Debug, Clone)]
pub struct Design {
    /// rows × p
    pub z: Vec<bool>,
    pub w: Vec<f64>,
    /// p × p
    pub a: Vec<f64>,
}

impl Design {
    fn rows(&self, p: usize) -> usize {
        self.z.len().checked_div(p).unwrap_or(0)
    }

    fn with_gram(z: Vec<bool>, w: Vec<f64>, p: usize) -> Design {
        let mut a = vec![0.0; p * p];
        for (r, row) in z.chunks(p).enumerate() {
            for i in 0..p {
                if !row[i] {
                    continue;
                }
                for j in 0..p {
                    if row[j] {
                        a[i * p + j] += w[r];
                    }
                }
            }
        }
        Design { z, w, a }
    }
}

/// Kernel SHAP weight of each coalition size in `sizes`, normalised:
/// ∝ 1 / (s (p − s)) (the per-coalition weight times C(p, s)).
pub fn weights_per_size(p: usize, sizes: &[usize]) -> Vec<f64> {
    let raw: Vec<f64> = sizes
        .iter()
        .map(|&s| 1.0 / (s as f64 * (p - s) as f64))
        .collect();
    let total: f64 = raw.iter().sum();
    raw.iter().map(|v| v / total).collect()
}

/// The share of the kernel weight on sizes {1..=deg} ∪ {p−deg..p−1}.
pub fn prop_exact(p: usize, deg: usize) -> f64 {
    if deg == 0 {
        return 0.0;
    }
    let sizes: Vec<usize> = (1..p).collect();
    let w = weights_per_size(p, &sizes);
    let head: f64 = w[..deg].iter().sum();
    2.0 * head - if p == 2 * deg { w[deg - 1] } else { 0.0 }
}

fn choose(n: usize, k: usize) -> f64 {
    let mut c = 1.0f64;
    for i in 0..k {
        c = c * (n - i) as f64 / (i + 1) as f64;
    }
    c
}

/// Every coalition with size in {k, p − k} for k = 1..=deg, weighted by the
/// kernel, the weights summing to `prop_exact(p, deg)`.
pub fn partly_exact(p: usize, deg: usize) -> Design {
    let mut z = Vec::new();
    let mut sizes = Vec::new();
    for k in 1..=deg {
        let start = z.len();
        // all k-subsets in lexicographic order
        let mut idx: Vec<usize> = (0..k).collect();
        loop {
            let mut row = vec![false; p];
            for &i in &idx {
                row[i] = true;
            }
            z.extend_from_slice(&row);
            sizes.push(k);
            // next combination
            let mut i = k;
            while i > 0 && idx[i - 1] == p - k + i - 1 {
                i -= 1;
            }
            if i == 0 {
                break;
            }
            idx[i - 1] += 1;
            for j in i..k {
                idx[j] = idx[j - 1] + 1;
            }
        }
        if p != 2 * k {
            let comp: Vec<bool> = z[start..].iter().map(|b| !b).collect();
            let count = comp.len() / p;
            z.extend_from_slice(&comp);
            sizes.extend(std::iter::repeat_n(p - k, count));
        }
    }
    // per-coalition kernel weight 1 / (C(p, s) s (p − s)), rescaled
    let raw: Vec<f64> = sizes
        .iter()
        .map(|&s| 1.0 / (choose(p, s) * s as f64 * (p - s) as f64))
        .collect();
    let total: f64 = raw.iter().sum();
    let target = prop_exact(p, deg);
    let w = raw.iter().map(|v| v / total * target).collect();
    Design::with_gram(z, w, p)
}

/// m/2 coalitions with sizes in deg+1 ..= p−deg−1 drawn by the kernel
/// weights and uniform positions, then their complements; each weighs
/// (1 − prop_exact) / m.
pub fn sampling(p: usize, m: usize, deg: usize, rng: &mut Rng) -> Design {
    let sizes: Vec<usize> = (deg + 1..p - deg).collect();
    let probs = weights_per_size(p, &sizes);
    let half = m / 2;
    let mut z = vec![false; m * p];
    let mut pos: Vec<usize> = (0..p).collect();
    for r in 0..half {
        let u = rng.uniform();
        let mut acc = 0.0;
        let mut size = *sizes.last().expect("p >= 2 deg + 2");
        for (s, pr) in sizes.iter().zip(&probs) {
            acc += pr;
            if u < acc {
                size = *s;
                break;
            }
        }
        // partial Fisher-Yates: the first `size` of a random permutation
        for i in 0..size {
            let j = i + rng.below(p - i);
            pos.swap(i, j);
        }
        for &c in &pos[..size] {
            z[r * p + c] = true;
        }
        for c in 0..p {
            z[(half + r) * p + c] = !z[r * p + c];
        }
    }
    let w = (1.0 - prop_exact(p, deg)) / m as f64;
    Design::with_gram(z, vec![w; m], p)
}

/// Solves A X = B (A p × p, B p × q, row-major) by Gaussian elimination
/// with partial pivoting; None when A is singular.
fn solve(a: &[f64], b: &[f64], p: usize, q: usize) -> Option<Vec<f64>> {
    let mut m = a.to_vec();
    let mut x = b.to_vec();
    let scale = a.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    for col in 0..p {
        let piv =
            (col..p).max_by(|&i, &j| m[i * p + col].abs().total_cmp(&m[j * p + col].abs()))?;
        if m[piv * p + col].abs() <= 1e-13 * scale {
            return None;
        }
        if piv != col {
            for c in 0..p {
                m.swap(piv * p + c, col * p + c);
            }
            for c in 0..q {
                x.swap(piv * q + c, col * q + c);
            }
        }
        for r in col + 1..p {
            let f = m[r * p + col] / m[col * p + col];
            if f == 0.0 {
                continue;
            }
            for c in col..p {
                m[r * p + c] -= f * m[col * p + c];
            }
            for c in 0..q {
                x[r * q + c] -= f * x[col * q + c];
            }
        }
    }
    for col in (0..p).rev() {
        for c in 0..q {
            let mut s = x[col * q + c];
            for j in col + 1..p {
                s -= m[col * p + j] * x[j * q + c];
            }
            x[col * q + c] = s / m[col * p + col];
        }
    }
    Some(x)
}

/// Least squares Aβ = b under Σ_j β_j = constraint (per output): β = A⁻¹b −
/// A⁻¹1 (1ᵀA⁻¹b − constraint) / (1ᵀA⁻¹1). A p × p, b p × K.
pub fn constrained_solve(a: &[f64], b: &[f64], constraint: &[f64], p: usize) -> Result<Vec<f64>> {
    let k = constraint.len();
    let mut rhs = vec![0.0; p * (k + 1)];
    for j in 0..p {
        rhs[j * (k + 1)] = 1.0;
        rhs[j * (k + 1) + 1..(j + 1) * (k + 1)].copy_from_slice(&b[j * k..(j + 1) * k]);
    }
    let Some(x) = solve(a, &rhs, p, k + 1) else {
        return invalid(
            "the Kernel SHAP regression is singular: sample more coalitions per iteration (`m`)",
        );
    };
    let ainv1: Vec<f64> = (0..p).map(|j| x[j * (k + 1)]).collect();
    let s1: f64 = ainv1.iter().sum();
    let mut beta = vec![0.0; p * k];
    for c in 0..k {
        let sb: f64 = (0..p).map(|j| x[j * (k + 1) + 1 + c]).sum();
        let num = sb - constraint[c];
        for j in 0..p {
            beta[j * k + c] = x[j * (k + 1) + 1 + c] - ainv1[j] * num / s1;
        }
    }
    Ok(beta)
}

/// b += Zᵀ diag(w) (vz − v0): vz is rows × K.
fn add_b(b: &mut [f64], d: &Design, vz: &[f64], v0: &[f64], p: usize) {
    let k = v0.len();
    for r in 0..d.rows(p) {
        for j in 0..p {
            if !d.z[r * p + j] {
                continue;
            }
            for c in 0..k {
                b[j * k + c] += d.w[r] * (vz[r * k + c] - v0[c]);
            }
        }
    }
}

/// Per row of the iterations.
struct RowState {
    b_exact: Vec<f64>,
    a_sum: Vec<f64>,
    b_sum: Vec<f64>,
    est: Vec<Vec<f64>>,
    beta: Vec<f64>,
    sigma: Vec<f64>,
    converged: bool,
}

/// Standard errors from the iterations' estimates: sqrt(var / n), the
/// variance without Bessel's correction (kernelshap's `get_sigma`).
fn sigma(est: &[Vec<f64>]) -> Vec<f64> {
    let n = est.len() as f64;
    let len = est[0].len();
    (0..len)
        .map(|i| {
            let mean = est.iter().map(|e| e[i]).sum::<f64>() / n;
            let var = est.iter().map(|e| (e[i] - mean).powi(2)).sum::<f64>() / n;
            (var / n).sqrt()
        })
        .collect()
}

fn check_convergence(beta: &[f64], sigma: &[f64], tol: f64, p: usize, k: usize) -> bool {
    (0..k).all(|c| {
        let col = (0..p).map(|j| beta[j * k + c]);
        let range =
            col.clone().fold(f64::NEG_INFINITY, f64::max) - col.fold(f64::INFINITY, f64::min);
        let max_se = (0..p)
            .map(|j| sigma[j * k + c])
            .fold(f64::NEG_INFINITY, f64::max);
        max_se <= tol * range
    })
}

/// Whether these options give exact values (no sampling).
pub fn is_exact(p: usize, deg: usize) -> bool {
    p < 2 || p / 2 == deg
}

/// Kernel SHAP of rows `start .. start + len`; the rows iterate together
/// (each until it converges or reaches `max_iter`).
pub fn shap(
    ex: &Explainer,
    model: &Model,
    start: usize,
    len: usize,
    opts: &KernelOptions,
    poll: &mut dyn FnMut() -> bool,
) -> Result<Polled<ShapBlock>> {
    let p = ex.p();
    let k = ex.k;
    let deg = opts.hybrid_degree;
    if start + len > ex.n() {
        return invalid(msg!("The rows asked for lie beyond the explained data."));
    }
    if p >= 2 && 2 * deg > p {
        return invalid(msg!(
            "{.arg hybrid_degree} must be between 0 and {half} (half the number of predictors), not {deg}.",
            half = p / 2,
            deg = deg
        ));
    }
    if opts.m < 2 || !opts.m.is_multiple_of(2) {
        return invalid(msg!("{.arg m} must be an even number of at least 2."));
    }
    if opts.max_iter < 1 {
        return invalid(msg!("{.arg max_iter} must be at least 1."));
    }
    let v0 = &ex.baseline;
    let constraint = |r: usize| -> Vec<f64> {
        (0..k)
            .map(|c| ex.predictions[(start + r) * k + c] - v0[c])
            .collect()
    };
    if p < 2 {
        // one player: φ = v(all) − v(∅)
        let values = (0..len).flat_map(constraint).collect();
        return Ok(Some(ShapBlock {
            values,
            se: vec![0.0; len * p * k],
            n_iter: vec![1; len],
            converged: vec![true; len],
        }));
    }
    let exact_part = (deg >= 1).then(|| partly_exact(p, deg));
    let zero_a = vec![0.0; p * p];
    let a_exact = exact_part.as_ref().map_or(&zero_a, |d| &d.a);
    let mut rows: Vec<RowState> = (0..len)
        .map(|_| RowState {
            b_exact: vec![0.0; p * k],
            a_sum: vec![0.0; p * p],
            b_sum: vec![0.0; p * k],
            est: Vec::new(),
            beta: vec![0.0; p * k],
            sigma: vec![f64::NAN; p * k],
            converged: false,
        })
        .collect();
    if let Some(d) = &exact_part {
        let me = d.rows(p);
        let Some(vz) = ex.values(
            model,
            len * me,
            |t, z| {
                z.copy_from_slice(&d.z[(t % me) * p..(t % me + 1) * p]);
                start + t / me
            },
            poll,
        )?
        else {
            return Ok(None);
        };
        for (r, st) in rows.iter_mut().enumerate() {
            add_b(&mut st.b_exact, d, &vz[r * me * k..(r + 1) * me * k], v0, p);
        }
        if is_exact(p, deg) {
            let mut values = Vec::with_capacity(len * p * k);
            for (r, st) in rows.iter().enumerate() {
                values.extend(constrained_solve(a_exact, &st.b_exact, &constraint(r), p)?);
            }
            return Ok(Some(ShapBlock {
                values,
                se: vec![0.0; len * p * k],
                n_iter: vec![1; len],
                converged: vec![true; len],
            }));
        }
    }
    let mut rng = Rng::new(opts.seed);
    for iter in 1..=opts.max_iter {
        let active: Vec<usize> = (0..len).filter(|&r| !rows[r].converged).collect();
        if active.is_empty() {
            break;
        }
        let designs: Vec<Design> = active
            .iter()
            .map(|_| sampling(p, opts.m, deg, &mut rng))
            .collect();
        let m = opts.m;
        let Some(vz) = ex.values(
            model,
            active.len() * m,
            |t, z| {
                let d = &designs[t / m];
                z.copy_from_slice(&d.z[(t % m) * p..(t % m + 1) * p]);
                start + active[t / m]
            },
            poll,
        )?
        else {
            return Ok(None);
        };
        for (a, &r) in active.iter().enumerate() {
            let d = &designs[a];
            let st = &mut rows[r];
            let a_temp: Vec<f64> = a_exact.iter().zip(&d.a).map(|(x, y)| x + y).collect();
            let mut b_temp = st.b_exact.clone();
            add_b(&mut b_temp, d, &vz[a * m * k..(a + 1) * m * k], v0, p);
            for (s, v) in st.a_sum.iter_mut().zip(&a_temp) {
                *s += v;
            }
            for (s, v) in st.b_sum.iter_mut().zip(&b_temp) {
                *s += v;
            }
            st.est
                .push(constrained_solve(&a_temp, &b_temp, &constraint(r), p)?);
            let n = iter as f64;
            if iter >= 2 {
                let a_mean: Vec<f64> = st.a_sum.iter().map(|v| v / n).collect();
                let b_mean: Vec<f64> = st.b_sum.iter().map(|v| v / n).collect();
                st.beta = constrained_solve(&a_mean, &b_mean, &constraint(r), p)?;
                st.sigma = sigma(&st.est);
                st.converged = check_convergence(&st.beta, &st.sigma, opts.tol, p, k);
            } else if opts.max_iter == 1 {
                st.beta = constrained_solve(&st.a_sum, &st.b_sum, &constraint(r), p)?;
            }
        }
        if iter < opts.max_iter && rows.iter().any(|s| !s.converged) && poll() {
            return Ok(None);
        }
    }
    let mut out = ShapBlock {
        values: Vec::with_capacity(len * p * k),
        se: Vec::with_capacity(len * p * k),
        n_iter: Vec::with_capacity(len),
        converged: Vec::with_capacity(len),
    };
    for st in &rows {
        out.values.extend_from_slice(&st.beta);
        out.se.extend_from_slice(&st.sigma);
        out.n_iter.push(st.est.len());
        out.converged.push(st.converged);
    }
    Ok(Some(out))
}
