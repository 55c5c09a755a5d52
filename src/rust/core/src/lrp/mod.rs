//! Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019)
//! through the whole supervised TabNet, on the reference layers in eval mode.
//!
//! The relevance of one raw output (a class's logit, or a regression value)
//! of each row flows back, layer by layer, to the predictors:
//!
//! 1. **head** (bias-free linear `y_c = Σ_j w_cj d_j`): the linear rule
//!    ([`rules::linear`]) starting from `R = y_c`;
//! 2. **Σ over decision steps** `d = Σ_i d_i`: the z-rule ([`rules::sum_split`]),
//!    each step gets its share `d_ij / d_j`;
//! 3. **ReLU** of a step's first `n_d` outputs: relevance passes unchanged (a
//!    zeroed unit has zero share already); the step's last `n_a` outputs only
//!    feed the next attentive transformer and receive none;
//! 4. **feature transformer** (GLU blocks, √½ residual sums, batch norm folded
//!    into the FC at evaluation): [`glu`];
//! 5. **attentive mask** `x_masked = M ⊙ x`: M is held constant (a
//!    multiplicative constant on the masked input) so the relevance of
//!    `x_masked` goes to `x` unchanged; none flows into the attentive
//!    transformer, its prior or the splitter (whose outputs only feed them);
//!    the steps' relevances add up at `x`;
//! 6. **initial batch norm** `x = s ⊙ e + t` (element-wise affine at
//!    evaluation): [`rules::elementwise`];
//! 7. **embeddings**: the relevance of a categorical predictor's embedding
//!    dimensions is summed back to the predictor.
//!
//! A call runs on a thread of the kernels' pool, where libtorch's ops use one
//! thread (`runtime::on_pool`): its OpenMP workers on these small products
//! slowed a 100,000-row call from 7 s to minutes on a loaded 2-core machine.
//!
//! Biases (the batch norms' shifts) keep their share, and the ε stabiliser
//! absorbs a little: `output − Σ relevance` is what they took. Without them
//! relevance is conserved (tested on a network with every shift zeroed).
mod glu;
pub mod rules;

use crate::data::Dataset;
use crate::embedding::Embedder;
use crate::error::{invalid, Result};
use crate::model::Model;
use crate::msg;
use crate::trace::trace;
pub use rules::Rule;
use tch::{Device, Kind, Tensor};

/// Relevance of a slice of rows.
pub struct Relevance {
    /// (B, F) per original predictor, float64 on the CPU
    pub relevance: Tensor,
    /// (B) the explained raw output of each row, float64 on the CPU
    pub output: Tensor,
}

/// LRP of rows `start .. start + targets.len()` of `data`: row `i` explains
/// the raw output column `targets[i]` (a class's logit; 0 for a single
/// regression outcome).
pub fn lrp(
    model: &Model,
    data: &Dataset,
    start: i64,
    targets: &[i64],
    rule: Rule,
) -> Result<Relevance> {
    let net = model.supervised()?;
    let len = targets.len() as i64;
    data.check_rows(start, len)?;
    let outputs = model.cfg.output_dims.iter().sum::<usize>() as i64;
    if let Some(t) = targets.iter().find(|&&t| t < 0 || t >= outputs) {
        return invalid(msg!(
            "Output {t} does not exist: the network has {n} output{?s}.",
            t = *t,
            n = outputs
        ));
    }
    if !(rule.epsilon() >= 0.0 && rule.epsilon().is_finite()) {
        return invalid(msg!(
            "{.arg epsilon} must be a finite number of at least 0."
        ));
    }
    if let Rule::Gamma { gamma, .. } = rule {
        if !(gamma >= 0.0 && gamma.is_finite()) {
            return invalid(msg!("{.arg gamma} must be a finite number of at least 0."));
        }
    }
    Ok(crate::runtime::on_pool(|| {
        let b = data.slice(start, len);
        let tr = trace(net, &b);
        let dev = tr.output.device();
        let idx = Tensor::of_slice(targets).to_device(dev);
        let output = tr.output.gather(1, &idx.unsqueeze(1), false).squeeze_dim(1);
        // 1. the head, per row the explained class's weights, from R = y_c
        let r_decision = head(rule, &tr.decision, &net.head.index_select(0, &idx), &output);
        // 2. the sum over steps
        let decisions: Vec<&Tensor> = tr.steps.iter().map(|s| &s.decision).collect();
        let r_steps = rules::sum_split(&decisions, &r_decision, rule.epsilon());
        let mut r_x0 = tr.normalised.zeros_like();
        for (step, r_d) in tr.steps.iter().zip(&r_steps) {
            // 3. ReLU passes it on; the attention outputs get none
            let width = step.transformer.output(&tr.normalised).size()[1];
            let r_out = Tensor::cat(
                &[
                    r_d.shallow_clone(),
                    r_d.new_zeros(&[len, width - r_d.size()[1]], (r_d.kind(), dev)),
                ],
                1,
            );
            // 4. the feature transformer; 5. the constant mask passes it to x
            r_x0 += glu::transformer(rule, &step.transformer, &r_out);
        }
        // 6. the initial batch norm
        let r_x = rules::elementwise(
            rule,
            &tr.embedded,
            &tr.initial_bn.scale,
            &tr.initial_bn.shift,
            &r_x0,
        );
        // 7. embedding dimensions back to their predictor
        let relevance = to_predictors(&net.embedder, &r_x, model.cfg.n_features() as i64);
        Relevance {
            relevance: relevance.to_kind(Kind::Double).to_device(Device::Cpu),
            output: output.to_kind(Kind::Double).to_device(Device::Cpu),
        }
    }))
}

/// The head `y_c = Σ_j w_cj d_j` (no bias), one row of weights per data row
/// (`w`: (B, n_d), the explained output's), from `R = y_c`: the linear rule.
fn head(rule: Rule, decision: &Tensor, w: &Tensor, output: &Tensor) -> Tensor {
    let contribution = decision * rule.rho(w);
    let z = contribution.sum_dim_intlist(Some(&[1i64][..]), true, contribution.kind());
    &contribution * output.unsqueeze(1) / rules::stabilise(&z, rule.epsilon())
}

/// Relevance per embedded dimension (B, D) summed into its predictor (B, F).
fn to_predictors(embedder: &Embedder, r_x: &Tensor, f: i64) -> Tensor {
    if embedder.identity {
        return r_x.shallow_clone();
    }
    let rows = r_x.size()[0];
    r_x.new_zeros(&[rows, f], (r_x.kind(), r_x.device()))
        .index_add(1, &embedder.column_of_dim, r_x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NetConfig, Task};
    use crate::data::Targets;
    use crate::encoder::Backend;
    use crate::test_data::normal;

    fn data(cfg: &NetConfig, n: usize, seed: u64) -> Dataset {
        let x = normal(&[cfg.num_cols.len() as i64, n as i64], seed);
        let cols: Vec<Vec<f64>> = (0..cfg.num_cols.len() as i64)
            .map(|j| Vec::<f64>::from(&x.get(j)))
            .collect();
        let cat: Vec<Vec<i32>> = cfg
            .cat_levels
            .iter()
            .enumerate()
            .map(|(k, &l)| (0..n).map(|i| ((i * 7 + k) % l) as i32 + 1).collect())
            .collect();
        let num: Vec<&[f64]> = cols.iter().map(|c| c.as_slice()).collect();
        let catr: Vec<&[i32]> = cat.iter().map(|c| c.as_slice()).collect();
        let y: Vec<i32> = (0..n).map(|i| (i % 3) as i32).collect();
        let names: Vec<String> = (0..cfg.n_features()).map(|j| format!("V{j}")).collect();
        Dataset::from_columns(
            cfg,
            &num,
            &catr,
            &names,
            Some(Targets::Classes(vec![&y])),
            None,
            Device::Cpu,
        )
        .unwrap()
    }

    fn config(cats: bool) -> NetConfig {
        let mut cfg = NetConfig::example(5, vec![3], Task::Classification);
        if cats {
            cfg.num_cols = vec![0, 2, 3, 4, 5];
            cfg.cat_cols = vec![1, 6];
            cfg.cat_levels = vec![4, 3];
            cfg.cat_emb_dims = vec![3, 1];
        }
        cfg
    }

    /// Random statistics and affine parameters for every batch norm, so
    /// the trained-network case (non-trivial folding) is what runs.
    fn perturb_batch_norms(m: &Model, zero_shift: bool) {
        tch::no_grad(|| {
            for (name, t) in m.vs.variables() {
                let mut t = t;
                let seed = name.len() as u64 * 31 + name.bytes().map(|b| b as u64).sum::<u64>();
                let noise = normal(&t.size(), seed).to_kind(t.kind());
                if name.ends_with("running_var") {
                    t.copy_(&(noise.abs() + 0.5));
                } else if name.ends_with("bn.weight") || name.ends_with("initial_bn.weight") {
                    t.copy_(&(noise * 0.3 + 1.0));
                } else if name.ends_with("running_mean") || name.ends_with(".bias") {
                    if zero_shift {
                        let _ = t.zero_();
                    } else {
                        t.copy_(&(noise * 0.3));
                    }
                }
            }
        });
    }

    fn model(cats: bool, double: bool, zero_shift: bool) -> Model {
        tch::manual_seed(7);
        let mut m = Model::new(config(cats), Device::Cpu).unwrap();
        if double {
            m.vs.double();
        }
        perturb_batch_norms(&m, zero_shift);
        m
    }

    #[test]
    fn head_rule_matches_brute_force() {
        let d = normal(&[3, 4], 50).relu();
        let w = normal(&[3, 4], 51);
        let y = normal(&[3], 52);
        for rule in [
            Rule::Epsilon { epsilon: 0.01 },
            Rule::Gamma {
                gamma: 2.0,
                epsilon: 0.01,
            },
        ] {
            let got = head(rule, &d, &w, &y);
            let rho = |v: f64| match rule {
                Rule::Gamma { gamma, .. } => v + gamma * v.max(0.0),
                _ => v,
            };
            for i in 0..3 {
                let di: Vec<f64> = Vec::from(&d.get(i));
                let wi: Vec<f64> = Vec::from(&w.get(i));
                let z: f64 = (0..4).map(|j| di[j] * rho(wi[j])).sum();
                let den = z + if z >= 0.0 { 0.01 } else { -0.01 };
                for j in 0..4 {
                    let want = di[j] * rho(wi[j]) / den * y.double_value(&[i]);
                    let g = got.double_value(&[i, j as i64]);
                    // float64: a few ulp of O(1) terms
                    assert!((g - want).abs() < 1e-9 * (1.0 + want.abs()), "{rule:?}");
                }
            }
        }
    }

    #[test]
    fn embedding_dimensions_sum_into_their_predictor() {
        let m = model(true, true, false);
        let emb = &m.supervised().unwrap().embedder;
        let cfg = &m.cfg;
        let dims = cfg.embedded_dim() as i64;
        let r_x = normal(&[2, dims], 53);
        let got = to_predictors(emb, &r_x, cfg.n_features() as i64);
        // brute force from the config: numeric columns first (tensor order),
        // then each categorical column's e dimensions
        let mut owner: Vec<usize> = cfg.num_cols.clone();
        for (k, &c) in cfg.cat_cols.iter().enumerate() {
            owner.extend(std::iter::repeat_n(c, cfg.cat_emb_dims[k]));
        }
        for i in 0..2i64 {
            for c in 0..cfg.n_features() {
                let want: f64 = (0..dims as usize)
                    .filter(|&d| owner[d] == c)
                    .map(|d| r_x.double_value(&[i, d as i64]))
                    .sum();
                let g = got.double_value(&[i, c as i64]);
                // float64 sums of at most 3 terms
                assert!(
                    (g - want).abs() < 1e-12,
                    "row {i} column {c}: {g} vs {want}"
                );
            }
        }
    }

    #[test]
    fn the_trace_reproduces_the_network() {
        for cats in [false, true] {
            let m = model(cats, false, false);
            let d = data(&m.cfg, 50, 3);
            let net = m.supervised().unwrap();
            let b = d.slice(0, 50);
            let (want, _, _) = tch::no_grad(|| net.forward(&b, false, Backend::Autograd));
            let got = tch::no_grad(|| trace(net, &b).output);
            // float32, same ops in the same order except the folded batch norm
            // (s·(Wx) vs (s⊙W)x: a few ulp of O(1) logits)
            let err = (got - &want).abs().max().double_value(&[]);
            assert!(err < 1e-4, "cats {cats}: {err}");
        }
    }

    #[test]
    fn relevance_is_conserved_on_a_bias_free_network() {
        for cats in [false, true] {
            for rule in [
                Rule::Epsilon { epsilon: 1e-12 },
                Rule::Gamma {
                    gamma: 2.0,
                    epsilon: 1e-12,
                },
            ] {
                let m = model(cats, true, true);
                let d = data(&m.cfg, 40, 5);
                let targets: Vec<i64> = (0..40).map(|i| (i % 3) as i64).collect();
                let r = lrp(&m, &d, 0, &targets, rule).unwrap();
                let sum = r
                    .relevance
                    .sum_dim_intlist(Some(&[1i64][..]), false, Kind::Double);
                // float64 network: every layer's Σ R_in = Σ z/(z ± ε) R_out is off by
                // ε/|z| (1e-12 / |z|) and rounding; 1e-6 relative to Σ|R| bounds both
                // unless some |z| < 1e-6 (a near-cancelling sum), which these draws avoid
                let scale =
                    r.relevance
                        .abs()
                        .sum_dim_intlist(Some(&[1i64][..]), false, Kind::Double)
                        + 1.0;
                let err = ((sum - &r.output).abs() / scale).max().double_value(&[]);
                assert!(err < 1e-6, "cats {cats} {rule:?}: {err}");
            }
        }
    }

    #[test]
    fn the_shifts_take_a_share_so_a_trained_network_has_a_residual() {
        let m = model(false, true, false);
        let d = data(&m.cfg, 40, 5);
        let targets = vec![1i64; 40];
        let r = lrp(&m, &d, 0, &targets, Rule::Epsilon { epsilon: 1e-12 }).unwrap();
        let sum = r
            .relevance
            .sum_dim_intlist(Some(&[1i64][..]), false, Kind::Double);
        let gap = (sum - &r.output).abs().max().double_value(&[]);
        assert!(gap > 1e-3, "{gap}");
    }

    #[test]
    fn output_is_the_explained_logit_and_bad_targets_are_errors() {
        let m = model(true, false, false);
        let d = data(&m.cfg, 30, 9);
        let targets: Vec<i64> = (0..30).map(|i| (i % 3) as i64).collect();
        let r = lrp(&m, &d, 0, &targets, Rule::Epsilon { epsilon: 1e-6 }).unwrap();
        let net = m.supervised().unwrap();
        let (out, _, _) = tch::no_grad(|| net.forward(&d.slice(0, 30), false, Backend::Autograd));
        for (i, &t) in targets.iter().enumerate() {
            let want = out.double_value(&[i as i64, t]);
            let got = r.output.double_value(&[i as i64]);
            // the recorded pass folds each batch norm into its product
            // (w·γ/σ), so it rounds differently from the unfolded forward:
            // about 20 float32 products of width <= 16 with batch-norm gains
            // up to ~10 on these random statistics, <= 20·16·10 u ≈ 2e-4 of
            // the scale (seen: 1.6e-4 under the Prescott kernels)
            assert!(
                (got - want).abs() < 1e-3 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
        assert_eq!(r.relevance.size(), vec![30, 7]);
        assert!(lrp(&m, &d, 0, &[3], Rule::Epsilon { epsilon: 0.0 }).is_err());
        assert!(lrp(&m, &d, 29, &[0, 0], Rule::Epsilon { epsilon: 0.0 }).is_err());
    }
}
