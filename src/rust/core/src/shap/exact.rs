//! Exact SHAP: v(S) for all 2^p coalitions of every row, then Shapley's
//! formula φ_j = Σ_{S ∌ j} |S|! (p − |S| − 1)! / p! · (v(S ∪ {j}) − v(S)).
//! v(∅) (the baseline) and v(all) (the prediction) are known, so 2^p − 2
//! coalitions per row go through the network (kernelshap's
//! `permshap(exact = TRUE)` evaluates the same ones).
use super::{Explainer, Polled, ShapBlock};
use crate::error::{invalid, Result};
use crate::model::Model;
use crate::msg;

/// The most players exact SHAP accepts (2^20 coalitions per row).
pub const MAX_PLAYERS: usize = 20;

/// Shapley weight of a coalition of `s` other players among `p`:
/// s! (p − s − 1)! / p! = 1 / (p · C(p − 1, s)).
pub fn shapley_weight(p: usize, s: usize) -> f64 {
    let mut c = 1.0f64; // C(p - 1, s)
    for i in 0..s {
        c = c * (p - 1 - i) as f64 / (i + 1) as f64;
    }
    1.0 / (p as f64 * c)
}

/// φ for one row from its coalition values `v` (2^p × K, indexed by the
/// coalition's bit pattern: bit j = player j), into `phi` (p × K).
pub fn shapley_from_values(p: usize, k: usize, v: &[f64], phi: &mut [f64]) {
    let w: Vec<f64> = (0..p).map(|s| shapley_weight(p, s)).collect();
    phi.iter_mut().for_each(|x| *x = 0.0);
    for code in 0..(1usize << p) {
        let size = code.count_ones() as usize;
        for j in 0..p {
            if code & (1 << j) != 0 {
                continue;
            }
            let with = code | (1 << j);
            let wt = w[size];
            for c in 0..k {
                phi[j * k + c] += wt * (v[with * k + c] - v[code * k + c]);
            }
        }
    }
}

/// Exact SHAP values of rows `start .. start + len` (rows × p × K).
pub fn shap(
    ex: &Explainer,
    model: &Model,
    start: usize,
    len: usize,
    poll: &mut dyn FnMut() -> bool,
) -> Result<Polled<ShapBlock>> {
    let p = ex.p();
    let k = ex.k;
    if p > MAX_PLAYERS {
        return invalid(msg!(
            "Exact SHAP handles at most {max} predictors (2^{max} coalitions per row), not {p}.",
            max = MAX_PLAYERS,
            p = p
        ));
    }
    if start + len > ex.n() {
        return invalid(msg!("The rows asked for lie beyond the explained data."));
    }
    let full = (1usize << p) - 1;
    let per_row = full.saturating_sub(1); // codes 1 ..= 2^p - 2
    let vals = ex.values(
        model,
        len * per_row,
        |t, z| {
            let code = t % per_row + 1;
            for (j, slot) in z.iter_mut().enumerate() {
                *slot = code & (1 << j) != 0;
            }
            start + t / per_row
        },
        poll,
    )?;
    let Some(vals) = vals else { return Ok(None) };
    let mut values = vec![0.0; len * p * k];
    let mut v = vec![0.0; (full + 1) * k];
    for r in 0..len {
        v[..k].copy_from_slice(&ex.baseline);
        v[full * k..].copy_from_slice(&ex.predictions[(start + r) * k..(start + r + 1) * k]);
        v[k..full * k].copy_from_slice(&vals[r * per_row * k..(r + 1) * per_row * k]);
        shapley_from_values(p, k, &v, &mut values[r * p * k..(r + 1) * p * k]);
    }
    Ok(Some(ShapBlock {
        values,
        se: vec![0.0; len * p * k],
        n_iter: vec![1; len],
        converged: vec![true; len],
    }))
}
