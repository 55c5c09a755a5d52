//! AUM: the Area Under the Min(FPR, FNR) curve (Hillman & Hocking, "Optimizing
//! ROC curves with a sort-based surrogate loss for binary classification and
//! changepoint detection", JMLR 24, 2023), the tabnet package's
//! `nn_aum_loss()`, with case weights.
//!
//! With the scores sorted in decreasing order, s₍₁₎ ≥ … ≥ s₍ₙ₎, predicting
//! the first i rows positive gives FPR_i = Σ_{j≤i} w₍ⱼ₎·neg₍ⱼ₎ / W_neg and
//! FNR_i = Σ_{j>i} w₍ⱼ₎·pos₍ⱼ₎ / W_pos, constant while the threshold lies in
//! (s₍ᵢ₊₁₎, s₍ᵢ₎). The loss is
//!
//! AUM = Σ_{i=1}^{n−1} min(FPR_i, FNR_i) · (s₍ᵢ₎ − s₍ᵢ₊₁₎),
//!
//! piecewise linear in the scores: for a fixed order the min terms are
//! constants, so ∂AUM/∂s₍ₖ₎ = m_k − m_{k−1} with m_i = min(FPR_i, FNR_i)
//! and m_0 = m_n = 0 (the directional derivative where scores tie). Tied
//! scores add zero-width intervals, so the sum equals Hillman's over the
//! unique thresholds. Unit weights give the unweighted AUM; a weight w counts
//! a row w times. A batch without positives or negatives has AUM 0.
use tch::Tensor;

/// AUM of `score` (B) against the 0/1 classes `positive` (B, any kind;
/// nonzero = positive), with optional case weights `w` (B). A scalar tensor
/// in `score`'s kind, differentiable in `score` (sort values carry the
/// gradient to the rows they came from).
pub fn aum(score: &Tensor, positive: &Tensor, w: Option<&Tensor>) -> Tensor {
    let kind = score.kind();
    let n = score.size()[0];
    if n < 2 {
        return score.sum(kind) * 0.0;
    }
    let pos = positive.ne(0).to_kind(kind);
    let w = match w {
        Some(w) => w.to_kind(kind),
        None => pos.ones_like(),
    };
    let w_pos = &w * &pos;
    let w_neg = &w - &w_pos;
    let (sorted, order) = score.sort(0, true);
    // (a class absent from the batch: its rates are 0/tiny = 0, so every min is 0)
    let tiny = f64::from(f32::MIN_POSITIVE);
    let fpr = w_neg.index_select(0, &order).cumsum(0, kind) / w_neg.sum(kind).clamp_min(tiny);
    // positives at sorted positions > i: a suffix sum (no cancellation)
    let pos_sorted = w_pos.index_select(0, &order);
    let suffix = pos_sorted.flip(&[0]).cumsum(0, kind).flip(&[0]);
    let fnr = suffix.narrow(0, 1, n - 1) / w_pos.sum(kind).clamp_min(tiny);
    let m = fpr.narrow(0, 0, n - 1).minimum(&fnr);
    let gaps = sorted.narrow(0, 0, n - 1) - sorted.narrow(0, 1, n - 1);
    (m * gaps).sum(kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Hillman & Hocking's reference algorithm (their Python `ROC_AUM`, with
    /// weights), over the unique thresholds, in plain f64: the AUM and its
    /// gradient ∂AUM/∂s for every row.
    fn reference(s: &[f64], pos: &[bool], w: &[f64]) -> (f64, Vec<f64>) {
        let n = s.len();
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap());
        let w_pos: f64 = (0..n).filter(|&i| pos[i]).map(|i| w[i]).sum();
        let w_neg: f64 = (0..n).filter(|&i| !pos[i]).map(|i| w[i]).sum();
        // unique thresholds, high to low, with the rates once all rows at or
        // above each were predicted positive
        let mut groups: Vec<(f64, Vec<usize>)> = Vec::new();
        for &i in &idx {
            match groups.last_mut() {
                Some((t, members)) if *t == s[i] => members.push(i),
                _ => groups.push((s[i], vec![i])),
            }
        }
        let (mut fp, mut fneg) = (0.0, w_pos);
        let mut mins = Vec::new();
        for (_, members) in &groups {
            for &i in members {
                if pos[i] {
                    fneg -= w[i];
                } else {
                    fp += w[i];
                }
            }
            let fpr = if w_neg > 0.0 { fp / w_neg } else { 0.0 };
            let fnr = if w_pos > 0.0 {
                fneg.max(0.0) / w_pos
            } else {
                0.0
            };
            mins.push(fpr.min(fnr));
        }
        let mut value = 0.0;
        let mut grad = vec![0.0; n];
        for g in 0..groups.len() {
            let before = if g == 0 { 0.0 } else { mins[g - 1] };
            let here = if g + 1 == groups.len() { 0.0 } else { mins[g] };
            if g + 1 < groups.len() {
                value += mins[g] * (groups[g].0 - groups[g + 1].0);
            }
            for &i in &groups[g].1 {
                grad[i] = here - before;
            }
        }
        (value, grad)
    }

    fn example(n: usize, seed: u64) -> (Vec<f64>, Vec<bool>, Vec<f64>) {
        let s =
            Vec::<f64>::from(&crate::test_data::normal(&[n as i64], seed).to_kind(Kind::Double));
        let u = Vec::<f64>::from(
            &crate::test_data::normal(&[n as i64], seed + 100).to_kind(Kind::Double),
        );
        let v = Vec::<f64>::from(
            &crate::test_data::normal(&[n as i64], seed + 200).to_kind(Kind::Double),
        );
        // overlapping classes (about one positive in three, more at high scores)
        let pos: Vec<bool> = (0..n).map(|i| 0.5 * s[i] + u[i] > 0.7).collect();
        let w: Vec<f64> = v.iter().map(|x| 0.25 + x.abs()).collect();
        (s, pos, w)
    }

    fn tensor(v: &[f64]) -> Tensor {
        Tensor::of_slice(v).to_device(Device::Cpu)
    }

    fn labels(pos: &[bool]) -> Tensor {
        Tensor::of_slice(&pos.iter().map(|&p| i64::from(p)).collect::<Vec<_>>())
    }

    #[test]
    fn value_and_autograd_gradient_match_the_reference_algorithm() {
        for seed in 0..5 {
            let (s, pos, w) = example(40, seed);
            assert!(pos.iter().any(|&p| p) && pos.iter().any(|&p| !p));
            for weighted in [false, true] {
                let ws = if weighted {
                    w.clone()
                } else {
                    vec![1.0; s.len()]
                };
                let (want, want_grad) = reference(&s, &pos, &ws);
                let st = tensor(&s).set_requires_grad(true);
                let wt = tensor(&ws);
                let got = aum(&st, &labels(&pos), weighted.then_some(&wt));
                got.backward();
                let grad = Vec::<f64>::from(&st.grad());
                // f64 sums of 40 terms of size <= range(s) ~ 6: rounding
                // below 40 · 2^-52 · 6 ~ 5e-14
                assert!((got.double_value(&[]) - want).abs() < 1e-12, "{seed}");
                for (g, r) in grad.iter().zip(&want_grad) {
                    // each a difference of two rates in [0, 1]
                    assert!((g - r).abs() < 1e-12, "{grad:?} vs {want_grad:?}");
                }
            }
        }
    }

    #[test]
    fn gradient_matches_central_finite_differences() {
        for seed in 10..15 {
            let (s, pos, w) = example(40, seed);
            let wt = tensor(&w);
            let f = |v: &[f64]| aum(&tensor(v), &labels(&pos), Some(&wt)).double_value(&[]);
            let st = tensor(&s).set_requires_grad(true);
            aum(&st, &labels(&pos), Some(&wt)).backward();
            let grad = Vec::<f64>::from(&st.grad());
            // a step below half the smallest gap between scores keeps their
            // order, where AUM is linear: the central difference is then
            // exact but for rounding. Each evaluation sums n terms of size at
            // most range(s), so its rounding error is below
            // n · ε · range(s) (ε = 2^-52), and the difference's below
            // 2 · n · ε · range / (2h) = n · ε · range / h.
            let mut sorted = s.clone();
            sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let gap = sorted
                .windows(2)
                .map(|p| p[1] - p[0])
                .fold(f64::INFINITY, f64::min);
            let range = sorted[sorted.len() - 1] - sorted[0];
            let h = gap / 4.0;
            let tol = 4.0 * s.len() as f64 * f64::EPSILON * range / h;
            for k in 0..s.len() {
                let (mut up, mut down) = (s.clone(), s.clone());
                up[k] += h;
                down[k] -= h;
                let fd = (f(&up) - f(&down)) / (2.0 * h);
                assert!(
                    (fd - grad[k]).abs() <= tol,
                    "row {k}: fd {fd} vs autograd {} (tol {tol})",
                    grad[k]
                );
            }
            // not a vacuous check: many rows have a nonzero gradient
            let moving = grad.iter().filter(|g| g.abs() > 1e-3).count();
            assert!(moving > 5, "{moving} {grad:?} {pos:?}");
        }
    }

    #[test]
    fn ties_weights_and_edge_cases() {
        // tied scores: the same value as over the unique thresholds
        let s = [2.0, 1.0, 1.0, 1.0, 0.5, -1.0, -1.0, -3.0];
        let pos = [true, false, true, true, false, true, false, false];
        let ones = vec![1.0; s.len()];
        let (want, _) = reference(&s, &pos, &ones);
        let got = aum(&tensor(&s), &labels(&pos), None).double_value(&[]);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        assert!(want > 0.0);
        // an integer weight counts a row that many times
        let w = [1.0, 3.0, 1.0, 2.0, 1.0, 1.0, 2.0, 1.0];
        let mut s_rep = Vec::new();
        let mut pos_rep = Vec::new();
        for i in 0..s.len() {
            for _ in 0..(w[i] as usize) {
                s_rep.push(s[i]);
                pos_rep.push(pos[i]);
            }
        }
        let weighted = aum(&tensor(&s), &labels(&pos), Some(&tensor(&w))).double_value(&[]);
        let repeated = aum(&tensor(&s_rep), &labels(&pos_rep), None).double_value(&[]);
        assert!(
            (weighted - repeated).abs() < 1e-12,
            "{weighted} vs {repeated}"
        );
        // perfectly separated classes: AUM 0; one class only: 0; one row: 0
        let sep = aum(
            &tensor(&[3.0, 2.0, -1.0, -2.0]),
            &labels(&[true, true, false, false]),
            None,
        );
        assert_eq!(sep.double_value(&[]), 0.0);
        let one_class = aum(
            &tensor(&[3.0, 2.0, -1.0]),
            &labels(&[true, true, true]),
            None,
        );
        assert_eq!(one_class.double_value(&[]), 0.0);
        assert_eq!(
            aum(&tensor(&[1.0]), &labels(&[true]), None).double_value(&[]),
            0.0
        );
        // reversed: every positive below every negative, AUM > 0 and finite
        let rev = aum(
            &tensor(&[3.0, 2.0, -1.0, -2.0]),
            &labels(&[false, false, true, true]),
            None,
        );
        assert!(rev.double_value(&[]) > 0.0);
        // f32 in training: finite, close to the f64 value
        let (s, pos, w) = example(500, 3);
        let v64 = aum(&tensor(&s), &labels(&pos), Some(&tensor(&w))).double_value(&[]);
        let v32 = aum(
            &tensor(&s).to_kind(Kind::Float),
            &labels(&pos),
            Some(&tensor(&w).to_kind(Kind::Float)),
        )
        .double_value(&[]);
        // float32 cumulative sums of 500 weights: relative error below
        // 500 · 2^-24 ~ 3e-5 per rate, times range ~ 7
        assert!(
            (v64 - v32).abs() < 500.0 * f64::from(f32::EPSILON) * 7.0,
            "{v64} vs {v32}"
        );
    }
}
