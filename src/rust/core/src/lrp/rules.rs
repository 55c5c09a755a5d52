//! The propagation rules for a linear map `z_k = Σ_j a_j w_kj + b_k`, an
//! element-wise affine map and a sum, following Montavon, Binder, Lapuschkin,
//! Samek & Müller, "Layer-wise relevance propagation: an overview" (2019),
//! in *Explainable AI*, LNCS 11700, ch. 10, eqs. (1)-(5).
//!
//! Every rule redistributes the relevance `R_k` of an output in proportion to
//! each input's contribution `z_jk` to it; the bias's own contribution
//! `b_k / z_k · R_k` stays with the bias (it is what the caller's residual
//! reports). Without biases and with ε → 0 every rule conserves relevance:
//! `Σ_j R_j = Σ_k R_k`.
use tch::Tensor;

/// Which rule a linear map propagates relevance with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// LRP-ε (Montavon et al. 2019, eq. 4): `R_j = Σ_k a_j w_kj / (z_k + ε·sign(z_k)) · R_k`.
    Epsilon { epsilon: f64 },
    /// LRP-γ (Montavon et al. 2019, eq. 5): the weights and biases are
    /// `ρ(w) = w + γ·max(w, 0)`, favouring positive contributions;
    /// `R_j = Σ_k a_j ρ(w_kj) / (Σ_j a_j ρ(w_kj) + ρ(b_k) + ε·sign(·)) · R_k`
    /// (ε only as a stabiliser). γ = 0 is LRP-0. The rule was written for
    /// the non-negative activations after a ReLU; TabNet's GLU and batch-norm
    /// outputs are signed, and the formula is applied as written (ρ acts on
    /// the weights, not on the sign of the contribution), so it still conserves
    /// without biases.
    Gamma { gamma: f64, epsilon: f64 },
}

impl Rule {
    /// ρ of the rule applied to a weight or bias tensor.
    pub(crate) fn rho(&self, w: &Tensor) -> Tensor {
        match *self {
            Rule::Epsilon { .. } => w.shallow_clone(),
            Rule::Gamma { gamma, .. } => w + w.clamp_min(0.0) * gamma,
        }
    }

    pub(crate) fn epsilon(&self) -> f64 {
        match *self {
            Rule::Epsilon { epsilon } | Rule::Gamma { epsilon, .. } => epsilon,
        }
    }
}

/// `z + ε·sign(z)` with sign(0) = +1, so the denominator is never zero.
pub(crate) fn stabilise(z: &Tensor, epsilon: f64) -> Tensor {
    let sign = z.ge(0.0).to_kind(z.kind()) * 2.0 - 1.0;
    z + sign * epsilon
}

/// Relevance of the inputs `a` (B, in) of `z = a Wᵀ + b` (W: (out, in)) given
/// the outputs' relevance `r` (B, out).
pub(crate) fn linear(rule: Rule, a: &Tensor, w: &Tensor, b: Option<&Tensor>, r: &Tensor) -> Tensor {
    let w = rule.rho(w);
    let b = b.map(|b| rule.rho(b));
    let z = a.linear(&w, b.as_ref());
    let s = r / stabilise(&z, rule.epsilon());
    a * s.mm(&w)
}

/// Relevance of `a` (B, n) in `z_j = a_j · s_j + t_j` (one input per output,
/// `s`, `t`: (n) or (B, n)) given the outputs' relevance `r` (B, n): the
/// linear rule with a diagonal weight.
pub(crate) fn elementwise(rule: Rule, a: &Tensor, s: &Tensor, t: &Tensor, r: &Tensor) -> Tensor {
    let contribution = a * rule.rho(s);
    let z = &contribution + rule.rho(t);
    contribution * r / stabilise(&z, rule.epsilon())
}

/// The z-rule for a sum `y = Σ_i p_i` of same-shape terms: `R_i = p_i / y · R`
/// (Montavon et al. 2019, eq. 1 with the terms as contributions; for the
/// residual sums `√½ (x + f(x))` the terms are `√½ x` and `√½ f(x)`). Plain
/// proportions whatever the rule (a sum has no weights for ρ to act on).
pub(crate) fn sum_split(terms: &[&Tensor], r: &Tensor, epsilon: f64) -> Vec<Tensor> {
    let y = terms
        .iter()
        .skip(1)
        .fold(terms[0].shallow_clone(), |acc, t| acc + *t);
    let s = r / stabilise(&y, epsilon);
    terms.iter().map(|t| *t * &s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::normal;
    use tch::Kind;

    /// Brute force of the linear rule in loops over f64 values.
    fn brute_linear(
        rule: Rule,
        a: &[Vec<f64>],
        w: &[Vec<f64>],
        b: &[f64],
        r: &[Vec<f64>],
    ) -> Vec<Vec<f64>> {
        let rho = |v: f64| match rule {
            Rule::Epsilon { .. } => v,
            Rule::Gamma { gamma, .. } => v + gamma * v.max(0.0),
        };
        let eps = rule.epsilon();
        a.iter()
            .zip(r)
            .map(|(ai, ri)| {
                (0..ai.len())
                    .map(|j| {
                        (0..w.len())
                            .map(|k| {
                                let z: f64 =
                                    (0..ai.len()).map(|l| ai[l] * rho(w[k][l])).sum::<f64>()
                                        + rho(b[k]);
                                let den = z + if z >= 0.0 { eps } else { -eps };
                                ai[j] * rho(w[k][j]) / den * ri[k]
                            })
                            .sum()
                    })
                    .collect()
            })
            .collect()
    }

    fn rows(t: &Tensor) -> Vec<Vec<f64>> {
        let n = t.size()[0];
        (0..n).map(|i| Vec::<f64>::from(&t.get(i))).collect()
    }

    #[test]
    fn linear_rules_match_brute_force() {
        let a = normal(&[4, 3], 1);
        let w = normal(&[2, 3], 2);
        let b = normal(&[2], 3);
        let r = normal(&[4, 2], 4);
        for rule in [
            Rule::Epsilon { epsilon: 0.1 },
            Rule::Epsilon { epsilon: 1e-9 },
            Rule::Gamma {
                gamma: 2.0,
                epsilon: 1e-3,
            },
        ] {
            let got = rows(&linear(rule, &a, &w, Some(&b), &r));
            let want = brute_linear(rule, &rows(&a), &rows(&w), &Vec::<f64>::from(&b), &rows(&r));
            for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                // float64 throughout: the two summation orders differ by a few ulp of
                // terms of size ~|a w R / z|, far below 1e-9 for these O(1) draws
                assert!(
                    (g - w).abs() <= 1e-9 * (1.0 + w.abs()),
                    "{rule:?}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn elementwise_rule_is_the_linear_rule_with_a_diagonal_weight() {
        let a = normal(&[5, 3], 5);
        let s = normal(&[3], 6);
        let t = normal(&[3], 7);
        let r = normal(&[5, 3], 8);
        let rule = Rule::Gamma {
            gamma: 2.0,
            epsilon: 1e-4,
        };
        let got = rows(&elementwise(rule, &a, &s, &t, &r));
        let sv = Vec::<f64>::from(&s);
        let tv = Vec::<f64>::from(&t);
        for (i, ai) in rows(&a).iter().enumerate() {
            for j in 0..3 {
                // a one-input linear map per column, by brute force
                let w = vec![vec![sv[j]]];
                let want =
                    brute_linear(rule, &[vec![ai[j]]], &w, &[tv[j]], &[vec![rows(&r)[i][j]]]);
                assert!((got[i][j] - want[0][0]).abs() <= 1e-9 * (1.0 + want[0][0].abs()));
            }
        }
    }

    #[test]
    fn sum_split_is_proportional_and_conserves() {
        let p1 = normal(&[6, 4], 9);
        let p2 = normal(&[6, 4], 10);
        let r = normal(&[6, 4], 11);
        let parts = sum_split(&[&p1, &p2], &r, 0.0);
        let y = &p1 + &p2;
        // brute force: each term's share p_i / y of R
        let (p1v, yv, rv) = (rows(&p1), rows(&y), rows(&r));
        for (i, row) in rows(&parts[0]).iter().enumerate() {
            for j in 0..4 {
                let want = p1v[i][j] / yv[i][j] * rv[i][j];
                assert!((row[j] - want).abs() <= 1e-9 * (1.0 + want.abs()));
            }
        }
        // conservation: ε = 0, so R_1 + R_2 = R up to float64 rounding of p/y·R
        let total = (&parts[0] + &parts[1] - &r).abs().max().double_value(&[]);
        assert!(total < 1e-9, "{total}");
        assert_eq!(parts[0].kind(), Kind::Double);
    }

    #[test]
    fn without_bias_the_epsilon_rule_conserves_as_epsilon_vanishes() {
        let a = normal(&[8, 5], 12);
        let w = normal(&[3, 5], 13);
        let r = normal(&[8, 3], 14);
        for rule in [
            Rule::Epsilon { epsilon: 1e-12 },
            Rule::Gamma {
                gamma: 2.0,
                epsilon: 1e-12,
            },
        ] {
            let ra = linear(rule, &a, &w, None, &r);
            let lhs = ra.sum_dim_intlist(Some(&[1i64][..]), false, Kind::Double);
            let rhs = r.sum_dim_intlist(Some(&[1i64][..]), false, Kind::Double);
            // Σ_j R_j = Σ_k z_k/(z_k ± ε) R_k: off by ε/|z_k| (≤ 1e-9 unless some
            // |z_k| < 1e-3, which these draws do not have) plus float64 rounding
            let err = (lhs - rhs).abs().max().double_value(&[]);
            assert!(err < 1e-8, "{rule:?}: {err}");
        }
        // a bias takes its share: the same map with a bias does not conserve
        let b = normal(&[3], 15);
        let ra = linear(Rule::Epsilon { epsilon: 1e-12 }, &a, &w, Some(&b), &r);
        let gap = (ra.sum(Kind::Double) - r.sum(Kind::Double))
            .abs()
            .double_value(&[]);
        assert!(gap > 1e-3, "{gap}");
    }
}
