//! Evaluation metrics on host vectors (used by the model-agnostic importances).

/// Area under the ROC curve of `score` for `label` (ties get half credit),
/// through the Mann–Whitney rank statistic. The (score, label) pairs are
/// sorted together (contiguous, not indices into `score`: a third of the time
/// of a 1,000,000-row permutation importance went to that sort); a run of
/// equal scores shares its mean rank. Ranks are half-integers below 2⁵² and
/// their sums exact in f64, so the order of summation does not matter.
pub fn auc(score: &[f64], label: &[bool]) -> f64 {
    let n_pos = label.iter().filter(|&&l| l).count();
    let n_neg = label.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return f64::NAN;
    }
    let mut pairs: Vec<(f64, bool)> = score.iter().copied().zip(label.iter().copied()).collect();
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut sum_pos = 0f64;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let positives = pairs[i..=j].iter().filter(|p| p.1).count();
        sum_pos += rank * positives as f64;
        i = j + 1;
    }
    let (n_pos, n_neg) = (n_pos as f64, n_neg as f64);
    (sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

/// Share of rows whose most probable class (row-major `prob`, `k` classes) is `truth`.
pub(crate) fn accuracy(prob: &[f64], k: usize, truth: &[i64]) -> f64 {
    let hits = truth
        .iter()
        .enumerate()
        .filter(|(r, &t)| {
            let row = &prob[r * k..(r + 1) * k];
            let best = row
                .iter()
                .enumerate()
                .fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
            best as i64 == t
        })
        .count();
    hits as f64 / truth.len() as f64
}

/// Hierarchy: the node chosen at each level (index within the level) from one
/// row of node probabilities, top-down: the most probable node of the top
/// level, then at each level the most probable child of the node chosen above
/// (ties: the first). `parent` gives each node's parent (global index).
pub fn top_down_path(prob: &[f64], dims: &[usize], parent: &[Option<usize>]) -> Vec<usize> {
    let mut path = Vec::with_capacity(dims.len());
    let mut start = 0;
    let mut chosen: Option<usize> = None;
    for &d in dims {
        let mut best: Option<usize> = None;
        for i in 0..d {
            let node = start + i;
            let allowed = chosen.is_none() || parent.get(node).copied().flatten() == chosen;
            if allowed && best.is_none_or(|b| prob[node] > prob[start + b]) {
                best = Some(i);
            }
        }
        // a node without children (only in hand-built hierarchies): stop
        // following the path and take the level's most probable node
        let i = best.unwrap_or_else(|| {
            (0..d).fold(0, |b, i| {
                if prob[start + i] > prob[start + b] {
                    i
                } else {
                    b
                }
            })
        });
        path.push(i);
        chosen = Some(start + i);
        start += d;
    }
    path
}

pub(crate) fn rmse(pred: &[f64], truth: &[f64]) -> f64 {
    (pred
        .iter()
        .zip(truth)
        .map(|(p, t)| (p - t).powi(2))
        .sum::<f64>()
        / truth.len() as f64)
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_known_cases() {
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), 0.0);
        assert_eq!(auc(&[0.5, 0.5], &[false, true]), 0.5);
        // 1 discordant pair of 4
        assert_eq!(
            auc(&[0.1, 0.6, 0.5, 0.9], &[false, false, true, true]),
            0.75
        );
    }

    /// Against the pair count it estimates (P(pos > neg) + ½ P(pos = neg)),
    /// on scores with many ties (20 distinct values) and a few -0.0/+0.0:
    /// equal to rounding of the final division (both sides are exact sums of
    /// halves before it).
    #[test]
    fn auc_is_the_pair_count_with_ties() {
        let mut s = 12345u64;
        let mut next = || {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (s >> 33) as u32
        };
        let n = 501;
        let score: Vec<f64> = (0..n)
            .map(|i| match i % 50 {
                0 => -0.0,
                1 => 0.0,
                _ => (next() % 20) as f64 / 20.0,
            })
            .collect();
        let label: Vec<bool> = score
            .iter()
            .map(|&v| (next() % 100) as f64 / 100.0 < v)
            .collect();
        let (mut wins, mut pairs) = (0f64, 0f64);
        for (a, &la) in score.iter().zip(&label) {
            for (b, &lb) in score.iter().zip(&label) {
                if la && !lb {
                    pairs += 1.0;
                    wins += if a > b {
                        1.0
                    } else if a == b {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        let want = wins / pairs;
        let got = auc(&score, &label);
        assert!((got - want).abs() <= 4.0 * f64::EPSILON, "{got} vs {want}");
    }

    #[test]
    fn other_metrics() {
        let p = [0.9, 0.1, 0.2, 0.8, 0.6, 0.4];
        assert!((accuracy(&p, 2, &[0, 1, 1]) - 2.0 / 3.0).abs() < 1e-12);
        assert!((rmse(&[1.0, 3.0], &[0.0, 3.0]) - (0.5f64).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn top_down_paths_stay_in_the_hierarchy() {
        // A(0) B(1) | A1(2) A2(3) under A, B1(4) under B
        let parent = [None, None, Some(0), Some(0), Some(1)];
        // B wins the top level, so B1 is chosen although A1 is more probable
        assert_eq!(
            top_down_path(&[0.4, 0.6, 0.4, 0.1, 0.3], &[2, 3], &parent),
            vec![1, 2]
        );
        assert_eq!(
            top_down_path(&[0.7, 0.6, 0.4, 0.5, 0.3], &[2, 3], &parent),
            vec![0, 1]
        );
    }
}
