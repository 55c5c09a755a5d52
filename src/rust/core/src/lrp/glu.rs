//! Relevance through a GLU layer and a GLU block (a feature transformer).
//!
//! A layer computes `g ⊙ (x Wᵀ + b)` with the gate `g = σ(x W_gᵀ + b_g)`
//! (batch norm folded into `W, b` at evaluation, see [`crate::trace`]). The
//! gate is held constant and the whole relevance of an output goes to its
//! signal half: the "signal-take-all" rule of Arras, Montavon, Müller & Samek,
//! "Explaining recurrent neural network predictions in sentiment analysis"
//! (WASSA 2017, arXiv 1706.07206), for multiplicative gates. The signal half
//! is then a linear map and takes the linear rule ([`super::rules::linear`]).
//!
//! A residual layer outputs `√½ (x + f(x))`: its relevance splits between the
//! two terms `√½ x` and `√½ f(x)` in proportion (the z-rule,
//! [`super::rules::sum_split`]); the skip share goes straight to `x`, the
//! other through the layer, and both add up at `x`.
use super::rules::{linear, sum_split, Rule};
use crate::trace::{GluTrace, TransformerTrace};
use tch::Tensor;

/// Relevance of a GLU layer's input given its output's (before any residual).
pub(crate) fn layer(rule: Rule, l: &GluTrace, r_out: &Tensor) -> Tensor {
    // signal-take-all: R(signal_k) = R(out_k), the gate g_k gets none
    linear(
        rule,
        &l.input,
        &l.folded.weight,
        Some(&l.folded.bias),
        r_out,
    )
}

/// Relevance of a layer's input given the relevance of what it outputs
/// after its residual sum (if any).
pub(crate) fn residual_layer(rule: Rule, l: &GluTrace, r: &Tensor) -> Tensor {
    if !l.residual {
        return layer(rule, l, r);
    }
    let scale = 0.5f64.sqrt();
    let skip = &l.input * scale;
    let through = &l.signal * &l.gate * scale;
    let parts = sum_split(&[&skip, &through], r, rule.epsilon());
    // R of f(x) = R of its √½-scaled term (a positive scaling moves no relevance)
    &parts[0] + layer(rule, l, &parts[1])
}

/// Relevance of a feature transformer's input given its output's.
pub(crate) fn transformer(rule: Rule, t: &TransformerTrace, r_out: &Tensor) -> Tensor {
    t.layers()
        .rev()
        .fold(r_out.shallow_clone(), |r, l| residual_layer(rule, l, &r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::normal;
    use crate::trace::FoldedGlu;
    use tch::Kind;

    fn vals(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::from(&t.contiguous().view([-1]))
    }

    /// A tiny residual GLU layer (3 → 3) traced by hand.
    fn tiny(residual: bool, seed: u64) -> GluTrace {
        let x = normal(&[2, 3], seed);
        let w = normal(&[3, 3], seed + 1);
        let b = normal(&[3], seed + 2);
        let wg = normal(&[3, 3], seed + 3);
        let bg = normal(&[3], seed + 4);
        let signal = x.linear(&w, Some(&b));
        let gate = x.linear(&wg, Some(&bg)).sigmoid();
        let y = &signal * &gate;
        let output = if residual {
            (&x + &y) * 0.5f64.sqrt()
        } else {
            y
        };
        GluTrace {
            input: x,
            signal,
            gate,
            residual,
            output,
            folded: FoldedGlu {
                weight: w,
                bias: b,
                gate_weight: wg,
                gate_bias: bg,
            },
        }
    }

    #[test]
    fn residual_glu_layer_matches_brute_force() {
        let eps = 1e-3;
        let l = tiny(true, 20);
        let r = normal(&[2, 3], 30);
        let got = vals(&residual_layer(Rule::Epsilon { epsilon: eps }, &l, &r));
        let (x, w, b) = (vals(&l.input), vals(&l.folded.weight), vals(&l.folded.bias));
        let (g, rv) = (vals(&l.gate), vals(&r));
        let st = |z: f64| z + if z >= 0.0 { eps } else { -eps };
        let c = 0.5f64.sqrt();
        for i in 0..2 {
            for j in 0..3 {
                // skip share of output j, plus what flows back through every signal k
                let sig =
                    |k: usize| (0..3).map(|m| x[i * 3 + m] * w[k * 3 + m]).sum::<f64>() + b[k];
                let y = |k: usize| c * (x[i * 3 + k] + sig(k) * g[i * 3 + k]);
                let mut want = c * x[i * 3 + j] / st(y(j)) * rv[i * 3 + j];
                for k in 0..3 {
                    let r_through = c * sig(k) * g[i * 3 + k] / st(y(k)) * rv[i * 3 + k];
                    want += x[i * 3 + j] * w[k * 3 + j] / st(sig(k)) * r_through;
                }
                let got = got[i * 3 + j];
                // float64; rounding of O(1) terms
                assert!(
                    (got - want).abs() < 1e-9 * (1.0 + want.abs()),
                    "{got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn gate_takes_no_relevance_and_bias_free_layers_conserve() {
        // no biases: the signal half conserves; the gate's value does not matter
        let mut l = tiny(false, 40);
        l.folded.bias = l.folded.bias.zeros_like();
        l.signal = l.input.linear::<Tensor>(&l.folded.weight, None);
        let r = normal(&[2, 3], 41);
        let rule = Rule::Epsilon { epsilon: 1e-12 };
        let r_in = layer(rule, &l, &r);
        let lhs = r_in.sum_dim_intlist(Some(&[1i64][..]), false, Kind::Double);
        let rhs = r.sum_dim_intlist(Some(&[1i64][..]), false, Kind::Double);
        assert!((lhs - rhs).abs().max().double_value(&[]) < 1e-8);
        let mut l2 = tiny(false, 40);
        l2.folded.bias = l.folded.bias.shallow_clone();
        l2.signal = l.signal.shallow_clone();
        l2.gate = l.gate.rand_like();
        assert!(layer(rule, &l2, &r).allclose(&r_in, 0.0, 0.0, false));
    }
}
