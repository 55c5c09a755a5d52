//! Task losses per row, and their case-weighted batch mean; AUM ([`aum`]), a
//! loss of the whole batch.
use crate::config::{NetConfig, Task, TaskLoss};
use tch::{Device, Kind, Tensor};

mod aum;

/// The task loss of a batch: the case-weighted mean of [`per_row`], or for
/// `loss = "aum"` the weighted AUM of the score log p₂ − log p₁ (the logit of
/// the second class; the loss is the same, the classes swapped, for the
/// first's).
pub fn batch_loss(cfg: &NetConfig, out: &Tensor, y: &Tensor, w: Option<&Tensor>) -> Tensor {
    match cfg.loss {
        TaskLoss::Auto => weighted_mean(&per_row(cfg, out, y), w),
        TaskLoss::Aum => {
            let score = out.select(1, 1) - out.select(1, 0);
            aum::aum(&score, &y.select(1, 0), w)
        }
    }
}

/// Loss of each row, (B): mean over outcomes of the cross-entropy (one softmax
/// per outcome) or of the squared error; for a hierarchy, the mean over nodes
/// of C-HMCNN's MCLoss (see [`hierarchical_per_row`]).
pub fn per_row(cfg: &NetConfig, out: &Tensor, y: &Tensor) -> Tensor {
    match cfg.task {
        Task::Hierarchical => hierarchical_per_row(cfg, out, y),
        Task::Regression => (out - y)
            .square()
            .mean_dim(Some(&[1i64][..]), false, Kind::Float),
        Task::Classification => {
            let mut total: Option<Tensor> = None;
            let mut offset = 0i64;
            for (k, &d) in cfg.output_dims.iter().enumerate() {
                let logp = out.narrow(1, offset, d as i64).log_softmax(1, Kind::Float);
                let target = y.select(1, k as i64).unsqueeze(1);
                let nll = -logp.gather(1, &target, false).squeeze_dim(1);
                total = Some(match total {
                    None => nll,
                    Some(t) => t + nll,
                });
                offset += d as i64;
            }
            total.expect("at least one outcome") / cfg.output_dims.len() as f64
        }
    }
}

/// Σ w·L / Σ w, or the plain mean without weights.
pub fn weighted_mean(per_row: &Tensor, w: Option<&Tensor>) -> Tensor {
    match w {
        // (reduced in the rows' own precision: f32 in training, f64 in tests)
        None => per_row.mean(per_row.kind()),
        // A batch whose weights are all zero carries no information: its loss
        // is 0 (not 0/0 = NaN, which would spread to every weight).
        Some(w) => {
            (per_row * w).sum(per_row.kind())
                / w.sum(per_row.kind())
                    .clamp_min(f64::from(f32::MIN_POSITIVE))
        }
    }
}

/// Turns raw outputs into probabilities (softmax per outcome; for a
/// hierarchy, the constrained node probabilities [`mcm`]) or values.
pub fn activate(cfg: &NetConfig, out: &Tensor) -> Tensor {
    match cfg.task {
        Task::Hierarchical => {
            // MCM broadcasts (rows, d_k, d_{k+1}) between consecutive levels:
            // rows are taken in chunks that keep it near 2^24 elements
            let widest = cfg
                .output_dims
                .windows(2)
                .map(|w| w[0] * w[1])
                .max()
                .unwrap_or(1)
                .max(1) as i64;
            let chunk = ((1i64 << 24) / widest).max(1);
            let n = out.size()[0];
            if n <= chunk {
                return mcm(cfg, out);
            }
            let parts: Vec<Tensor> = (0..n)
                .step_by(chunk as usize)
                .map(|s| mcm(cfg, &out.narrow(0, s, chunk.min(n - s))))
                .collect();
            Tensor::cat(&parts, 0)
        }
        Task::Regression => out.shallow_clone(),
        Task::Classification => {
            let mut offset = 0i64;
            let parts: Vec<Tensor> = cfg
                .output_dims
                .iter()
                .map(|&d| {
                    let p = out.narrow(1, offset, d as i64).softmax(1, Kind::Float);
                    offset += d as i64;
                    p
                })
                .collect();
            Tensor::cat(&parts, 1)
        }
    }
}

/// A logit below every real one: it stands for "no such node" in the masked
/// maxima (finite, so no inf − inf ever reaches the gradients).
const NO_NODE: f64 = -1e30;

/// Hierarchy: for each pair of consecutive levels (k, k + 1), the (d_k, d_{k+1})
/// boolean matrix whose entry (a, c) says that node c's parent is node a.
fn level_links(cfg: &NetConfig, device: Device) -> Vec<Tensor> {
    let mut starts = vec![0usize];
    for &d in &cfg.output_dims {
        starts.push(starts.last().copied().unwrap_or(0) + d);
    }
    cfg.output_dims
        .windows(2)
        .enumerate()
        .map(|(k, w)| {
            let (above, below) = (w[0], w[1]);
            let mut m = vec![false; above * below];
            for c in 0..below {
                if let Some(p) = cfg.parent.get(starts[k + 1] + c).copied().flatten() {
                    if p >= starts[k] && p < starts[k] + above {
                        m[(p - starts[k]) * below + c] = true;
                    }
                }
            }
            Tensor::of_slice(&m)
                .view([above as i64, below as i64])
                .to_device(device)
        })
        .collect()
}

/// For each row and node a, max of `z` over a and its descendants, (B, C):
/// bottom-up over the levels, a node's value is the max of its own and of its
/// children's (already maximal) values.
fn max_over_descendants(cfg: &NetConfig, z: &Tensor, links: &[Tensor]) -> Tensor {
    let n_levels = cfg.output_dims.len();
    let mut starts = vec![0i64];
    for &d in &cfg.output_dims {
        starts.push(starts.last().copied().unwrap_or(0) + d as i64);
    }
    let mut parts: Vec<Tensor> = Vec::with_capacity(n_levels);
    let mut below: Option<Tensor> = None;
    for k in (0..n_levels).rev() {
        let zk = z.narrow(1, starts[k], cfg.output_dims[k] as i64);
        let m = match (&below, links.get(k)) {
            (Some(b), Some(link)) => {
                // (B, 1, d_{k+1}) against (1, d_k, d_{k+1}): each node's children
                let children = b
                    .unsqueeze(1)
                    .where_scalarother(&link.unsqueeze(0), NO_NODE)
                    .amax(&[2], false);
                zk.maximum(&children)
            }
            _ => zk,
        };
        below = Some(m.shallow_clone());
        parts.push(m);
    }
    parts.reverse();
    Tensor::cat(&parts, 1)
}

/// C-HMCNN's max constraint module: with h = sigmoid(logits),
/// MCM(h)_a = max over b ∈ {a} ∪ descendants(a) of h_b, (B, C). A node's
/// probability is never below any descendant's. (As the sigmoid is
/// increasing, this is the sigmoid of the max logit.)
pub fn mcm(cfg: &NetConfig, logits: &Tensor) -> Tensor {
    let links = level_links(cfg, logits.device());
    max_over_descendants(cfg, logits, &links).sigmoid()
}

/// The 0/1 node membership (B, C) of class codes per level (B, levels): a row
/// belongs to its node at every level.
fn membership(cfg: &NetConfig, y: &Tensor) -> Tensor {
    let parts: Vec<Tensor> = cfg
        .output_dims
        .iter()
        .enumerate()
        .map(|(k, &d)| y.select(1, k as i64).one_hot(d as i64))
        .collect();
    Tensor::cat(&parts, 1)
}

/// C-HMCNN's MCLoss per row, (B): with h = sigmoid(logits), y the membership
/// and R the descendant-or-self relation,
/// out_a = (1 − y_a)·max_b R[a,b]·h_b + y_a·max_b R[a,b]·y_b·h_b,
/// then the binary cross-entropy of out against y, averaged over nodes.
/// Computed on logits: both maxima are sigmoids of masked maxima of logits
/// (for y_a = 1 over the descendants in the row's path, which include a), so
/// the cross-entropy is taken with logits, without log(0).
pub fn hierarchical_per_row(cfg: &NetConfig, logits: &Tensor, y: &Tensor) -> Tensor {
    let links = level_links(cfg, logits.device());
    let member = membership(cfg, y).to_kind(logits.kind());
    let is_member = member.gt(0.5);
    let over_all = max_over_descendants(cfg, logits, &links);
    let in_path = max_over_descendants(cfg, &logits.where_scalarother(&is_member, NO_NODE), &links);
    let m = in_path.where_self(&is_member, &over_all);
    m.binary_cross_entropy_with_logits::<Tensor>(&member, None, None, tch::Reduction::None)
        .mean_dim(Some(&[1i64][..]), false, logits.kind())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_batch_loss_is_the_weighted_mean_of_row_losses() {
        let cfg = NetConfig::example(3, vec![3, 2], Task::Classification);
        tch::manual_seed(1);
        let out = Tensor::randn(&[6, 5], (Kind::Float, Device::Cpu));
        let y = Tensor::of_slice(&[0i64, 1, 2, 0, 1, 1, 0, 0, 2, 1, 1, 0]).view([6, 2]);
        let w = Tensor::of_slice(&[1.0f32, 0.0, 2.5, 1.0, 3.0, 0.5]);
        let rows = per_row(&cfg, &out, &y);
        // each row's loss from its own definition
        let logits: Vec<Vec<f32>> = (0..6).map(|r| Vec::<f32>::from(&out.get(r))).collect();
        let ys: Vec<i64> = Vec::from(&y.view([-1]));
        let ws: Vec<f32> = Vec::from(&w);
        let mut num = 0.0f64;
        let mut den = 0.0f64;
        for r in 0..6 {
            let ce = |lo: &[f32], t: usize| {
                let m = lo.iter().cloned().fold(f32::MIN, f32::max) as f64;
                let lse = m + lo.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
                lse - lo[t] as f64
            };
            let l = (ce(&logits[r][0..3], ys[2 * r] as usize)
                + ce(&logits[r][3..5], ys[2 * r + 1] as usize))
                / 2.0;
            assert!((rows.double_value(&[r as i64]) - l).abs() < 1e-5);
            num += ws[r] as f64 * l;
            den += ws[r] as f64;
        }
        let got = weighted_mean(&rows, Some(&w)).double_value(&[]);
        assert!((got - num / den).abs() < 1e-5, "{got} vs {}", num / den);
        // equal weights give the plain mean
        let ones = Tensor::ones(&[6], (Kind::Float, Device::Cpu)) * 4.0;
        let a = weighted_mean(&rows, Some(&ones)).double_value(&[]);
        let b = weighted_mean(&rows, None).double_value(&[]);
        assert!((a - b).abs() < 1e-6);
        // per-outcome probabilities sum to one
        let p = activate(&cfg, &out);
        let s1 = p
            .narrow(1, 0, 3)
            .sum_dim_intlist(Some(&[1i64][..]), false, Kind::Float);
        let s2 = p
            .narrow(1, 3, 2)
            .sum_dim_intlist(Some(&[1i64][..]), false, Kind::Float);
        assert!((s1 - 1.0).abs().max().double_value(&[]) < 1e-6);
        assert!((s2 - 1.0).abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn a_batch_of_zero_weights_has_loss_zero_and_finite_gradients() {
        let out = Tensor::randn(&[4, 1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let rows = (&out * 2.0).square().view([-1]);
        let w = Tensor::zeros(&[4], (Kind::Float, Device::Cpu));
        let l = weighted_mean(&rows, Some(&w));
        assert_eq!(l.double_value(&[]), 0.0);
        l.backward();
        let g = out.grad();
        assert_eq!(g.isfinite().all().int64_value(&[]), 1);
        assert_eq!(g.abs().max().double_value(&[]), 0.0);
    }

    #[test]
    fn aum_loss_is_the_aum_of_the_logit_difference_and_needs_one_binary_outcome() {
        let mut cfg = NetConfig::example(3, vec![2], Task::Classification);
        cfg.loss = TaskLoss::Aum;
        assert!(cfg.validate().is_ok());
        let out = crate::test_data::normal(&[30, 2], 4);
        let y = Tensor::of_slice(&(0..30).map(|i| i64::from(i % 3 == 0)).collect::<Vec<_>>())
            .view([30, 1]);
        let w = crate::test_data::normal(&[30], 5).abs();
        let got = batch_loss(&cfg, &out, &y, Some(&w)).double_value(&[]);
        let score = out.select(1, 1) - out.select(1, 0);
        let want = aum::aum(&score, &y.view([-1]), Some(&w)).double_value(&[]);
        assert_eq!(got, want);
        assert!(got > 0.0);
        // the default is the weighted mean of the rows' cross-entropies
        cfg.loss = TaskLoss::Auto;
        let ce = batch_loss(&cfg, &out, &y, Some(&w)).double_value(&[]);
        assert_eq!(
            ce,
            weighted_mean(&per_row(&cfg, &out, &y), Some(&w)).double_value(&[])
        );
        // three classes, two outcomes, regression: refused
        for (dims, task) in [
            (vec![3], Task::Classification),
            (vec![2, 2], Task::Classification),
            (vec![1], Task::Regression),
        ] {
            let mut c = NetConfig::example(3, dims, task);
            c.loss = TaskLoss::Aum;
            assert!(c.validate().is_err());
        }
        // left out of the JSON at the default (earlier models keep their digest)
        let json =
            serde_json::to_string(&NetConfig::example(3, vec![2], Task::Classification)).unwrap();
        assert!(!json.contains("loss"));
        let mut c = NetConfig::example(3, vec![2], Task::Classification);
        c.loss = TaskLoss::Aum;
        assert!(serde_json::to_string(&c)
            .unwrap()
            .contains(r#""loss":"aum""#));
    }

    /// Levels of 2, 3 and 2 nodes: A(0) B(1) | A1(2) A2(3) under A, B1(4)
    /// under B | A1x(5) under A1, B1x(6) under B1.
    fn tree() -> NetConfig {
        let mut cfg = NetConfig::example(2, vec![2, 3, 2], Task::Hierarchical);
        cfg.parent = vec![None, None, Some(0), Some(0), Some(1), Some(2), Some(4)];
        cfg.validate().unwrap();
        cfg
    }

    /// R[a][b]: b is a or a descendant of a (written out by hand for [`tree`]).
    fn descendant_or_self() -> Vec<Vec<usize>> {
        vec![
            vec![0, 2, 3, 5],
            vec![1, 4, 6],
            vec![2, 5],
            vec![3],
            vec![4, 6],
            vec![5],
            vec![6],
        ]
    }

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    fn rows_f64(t: &Tensor) -> Vec<Vec<f64>> {
        (0..t.size()[0])
            .map(|r| Vec::<f64>::from(&t.get(r).to_kind(Kind::Double)))
            .collect()
    }

    #[test]
    fn mcm_of_a_hand_computed_example() {
        let cfg = tree();
        let h = [0.2f64, 0.6, 0.1, 0.5, 0.3, 0.9, 0.4];
        let logits: Vec<f64> = h.iter().map(|p| (p / (1.0 - p)).ln()).collect();
        let z = Tensor::of_slice(&logits).view([1, 7]);
        let got = Vec::<f64>::from(&mcm(&cfg, &z).view([-1]));
        // max of h over each node and its descendants, by hand
        let want = [0.9, 0.6, 0.9, 0.5, 0.4, 0.9, 0.4];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        // activate() is MCM
        let p = activate(&cfg, &z);
        assert_eq!((p - mcm(&cfg, &z)).abs().max().double_value(&[]), 0.0);
    }

    /// Codes per level of two paths: A/A1/A1x and B/B1/B1x.
    fn targets() -> Tensor {
        Tensor::of_slice(&[0i64, 0, 0, 1, 2, 1, 0, 0, 0, 1, 2, 1, 1, 2, 1]).view([5, 3])
    }

    #[test]
    fn mcloss_matches_its_definition() {
        let cfg = tree();
        let z = crate::test_data::normal(&[5, 7], 3) * 2.0;
        let y = targets();
        let w = Tensor::of_slice(&[1.0f64, 0.5, 2.0, 0.0, 1.5]);
        let rows = per_row(&cfg, &z, &y);
        let zs = rows_f64(&z);
        let ys: Vec<i64> = Vec::from(&y.view([-1]));
        let ws: Vec<f64> = Vec::from(&w);
        let r = descendant_or_self();
        let (mut num, mut den) = (0.0, 0.0);
        for row in 0..5 {
            let path = [
                ys[3 * row] as usize,
                2 + ys[3 * row + 1] as usize,
                5 + ys[3 * row + 2] as usize,
            ];
            let y01: Vec<f64> = (0..7)
                .map(|a| if path.contains(&a) { 1.0 } else { 0.0 })
                .collect();
            let h: Vec<f64> = zs[row].iter().map(|&v| sigmoid(v)).collect();
            let mut l = 0.0;
            for a in 0..7 {
                let mcm_h = r[a].iter().map(|&b| h[b]).fold(0.0, f64::max);
                let mcm_yh = r[a].iter().map(|&b| y01[b] * h[b]).fold(0.0, f64::max);
                let out = (1.0 - y01[a]) * mcm_h + y01[a] * mcm_yh;
                l -= y01[a] * out.ln() + (1.0 - y01[a]) * (1.0 - out).ln();
            }
            l /= 7.0;
            let got = rows.double_value(&[row as i64]);
            assert!((got - l).abs() < 1e-12, "row {row}: {got} vs {l}");
            num += ws[row] * l;
            den += ws[row];
        }
        let got = weighted_mean(&rows, Some(&w)).double_value(&[]);
        assert!((got - num / den).abs() < 1e-12);
    }

    #[test]
    fn mcloss_gradient_matches_finite_differences() {
        let cfg = tree();
        let z0 = crate::test_data::normal(&[5, 7], 5) * 2.0;
        let y = targets();
        let w = Tensor::of_slice(&[1.0f64, 0.5, 2.0, 0.25, 1.5]);
        let loss = |z: &Tensor| weighted_mean(&per_row(&cfg, z, &y), Some(&w));
        let z = z0.copy().set_requires_grad(true);
        loss(&z).backward();
        let grad = rows_f64(&z.grad());
        let base = rows_f64(&z0);
        // The loss is smooth except where two logits of a row that a max
        // compares are equal; these logits are at least 1e-3 apart, far beyond
        // the step, so central differences see a smooth function. In f64 their
        // error is O(eps^2 * third derivative) + O(1e-16 / eps), about 1e-10 for
        // eps = 1e-6: hence a 1e-7 tolerance (gradient entries are ~0.01-0.3).
        for (i, row) in base.iter().enumerate() {
            for (j, x) in row.iter().enumerate() {
                for (a, b) in row.iter().enumerate() {
                    assert!(a == j || (b - x).abs() > 1e-3, "near tie at {i},{j}");
                }
            }
        }
        let eps = 1e-6;
        for i in 0..5 {
            for j in 0..7 {
                let bump = |d: f64| {
                    let mut v = base.clone();
                    v[i][j] += d;
                    let flat: Vec<f64> = v.concat();
                    loss(&Tensor::of_slice(&flat).view([5, 7])).double_value(&[])
                };
                let fd = (bump(eps) - bump(-eps)) / (2.0 * eps);
                assert!(
                    (fd - grad[i][j]).abs() < 1e-7,
                    "({i},{j}): fd {fd}, autograd {}",
                    grad[i][j]
                );
            }
        }
    }

    #[test]
    fn a_node_is_never_less_probable_than_its_child() {
        let cfg = tree();
        let z = (crate::test_data::normal(&[500, 7], 11) * 3.0).to_kind(Kind::Float);
        let p = rows_f64(&activate(&cfg, &z));
        let raw = rows_f64(&z.sigmoid());
        let mut raw_violations = 0;
        for (row, raw_row) in p.iter().zip(&raw) {
            for (c, parent) in cfg.parent.iter().enumerate() {
                if let Some(a) = *parent {
                    // exact: the parent's value is a max that includes the child's
                    assert!(row[a] >= row[c]);
                    if raw_row[a] < raw_row[c] {
                        raw_violations += 1;
                    }
                }
            }
        }
        // the plain sigmoid breaks the hierarchy on such logits: the
        // constraint is what makes it hold
        assert!(raw_violations > 100, "{raw_violations}");
    }
}
