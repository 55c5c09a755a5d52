//! Evaluation metrics on host vectors (used by the model-agnostic importances).

/// Area under the ROC curve of `score` for `label` (ties get half credit):
/// the Mann–Whitney count P(pos > neg) + ½ P(pos = neg) over all pairs. The
/// positives' and the negatives' scores are sorted apart (radix sorts of their
/// order keys, [`sort_keys`]: a comparison sort of the 1,000,000 pairs was a
/// third of a permutation importance), then two merges count, for each
/// positive, the negatives below it and the negatives up to it. Twice the
/// count is an integer below 2⁶⁴, so the result is the exact count divided
/// once (−0 and +0 are equal scores, as `==` has them). Float32 scores
/// (predictions as the network makes them) sort as 32-bit keys: the same
/// order, so the same AUC, as their float64 values.
///
/// The labels come in no order, so nothing here branches on one: the rows
/// are split by writing each key to both ends of one buffer and moving one
/// end on, and the merges step one of their two lists on by a comparison's
/// value (branches on these were mispredicted about half the time).
pub fn auc<S: Score>(score: &[S], label: &[bool]) -> f64 {
    assert_eq!(score.len(), label.len(), "a label per score");
    let n = score.len();
    // positives fill keys[..lo] from the front, negatives keys[hi..] from the
    // back; a key written to the other end's next slot is overwritten later
    // (that slot is still free: lo ≤ hi − 1 while rows remain)
    let mut keys = vec![S::Key::default(); n];
    let (mut lo, mut hi) = (0usize, n);
    for (&s, &l) in score.iter().zip(label) {
        let k = s.order_key();
        keys[hi - 1] = k;
        keys[lo] = k;
        lo += usize::from(l);
        hi -= usize::from(!l);
    }
    if lo == 0 || lo == n {
        return f64::NAN;
    }
    let mut scratch = vec![S::Key::default(); n];
    let (pos, neg) = keys.split_at_mut(lo);
    let (sp, sn) = scratch.split_at_mut(lo);
    sort_keys(pos, sp);
    sort_keys(neg, sn);
    // twice the wins: Σ over positives of #(neg < p) + #(neg ≤ p)
    let twice = count_below(pos, neg, |a, b| a < b) + count_below(pos, neg, |a, b| a <= b);
    twice as f64 / (2.0 * pos.len() as f64 * neg.len() as f64)
}

/// Σ over `pos` (ascending) of the number of `neg` (ascending) that are
/// `before` it: one pass over both lists, stepping one of them on each time.
fn count_below<K: Copy>(pos: &[K], neg: &[K], before: impl Fn(K, K) -> bool) -> u64 {
    let (mut i, mut j, mut sum) = (0usize, 0usize, 0u64);
    while i < pos.len() && j < neg.len() {
        let take = before(neg[j], pos[i]);
        sum += if take { 0 } else { j as u64 };
        j += usize::from(take);
        i += usize::from(!take);
    }
    // every positive left has all the negatives before it
    sum + (pos.len() - i) as u64 * j as u64
}

/// A score the AUC sorts: float32 or float64.
pub trait Score: Copy {
    /// the unsigned integer of the score's width
    type Key: Copy + Ord + Default + Into<u64>;
    /// The score's bits as a key in `total_cmp` order, −0 as +0 (+ 0.0 makes
    /// −0 into +0 and leaves every other value as it is).
    fn order_key(self) -> Self::Key;
}

impl Score for f64 {
    type Key = u64;
    fn order_key(self) -> u64 {
        let b = (self + 0.0).to_bits();
        if b >> 63 == 1 {
            !b
        } else {
            b | 1 << 63
        }
    }
}

impl Score for f32 {
    type Key = u32;
    fn order_key(self) -> u32 {
        let b = (self + 0.0).to_bits();
        if b >> 31 == 1 {
            !b
        } else {
            b | 1 << 31
        }
    }
}

/// Sorts `keys` ascending: least-significant-digit radix sort by bytes,
/// skipping the bytes every key shares (float32 scores as float64 keys have
/// their low 29 bits zero, so three of the eight passes at least;
/// probabilities share their top byte). `scratch` is as long as `keys`.
fn sort_keys<K: Copy + Into<u64>>(keys: &mut [K], scratch: &mut [K]) {
    let bytes = std::mem::size_of::<K>();
    let byte = |k: K, d: usize| (k.into() >> (8 * d)) as usize & 255;
    let mut counts = [[0usize; 256]; 8];
    for &k in keys.iter() {
        for (d, c) in counts.iter_mut().enumerate().take(bytes) {
            c[byte(k, d)] += 1;
        }
    }
    // each pass reads one buffer and writes the other
    let (mut from, mut to) = (&mut *keys, &mut *scratch);
    let mut moved = false;
    for (d, c) in counts.iter().enumerate().take(bytes) {
        if c.contains(&from.len()) {
            continue;
        }
        let mut start = [0usize; 256];
        let mut at = 0;
        for (s, &n) in start.iter_mut().zip(c) {
            *s = at;
            at += n;
        }
        for &k in from.iter() {
            let b = byte(k, d);
            to[start[b]] = k;
            start[b] += 1;
        }
        std::mem::swap(&mut from, &mut to);
        moved = !moved;
    }
    if moved {
        // the sorted keys are in `scratch`
        keys.copy_from_slice(scratch);
    }
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
        // as float32 scores (32-bit keys): the same order, the same AUC
        let score32: Vec<f32> = score.iter().map(|&v| v as f32).collect();
        assert_eq!(auc(&score32, &label), got);
    }

    /// The radix sort against the standard sort, on keys of float32 values
    /// (the usual case: low bytes shared), of mixed-sign doubles and of
    /// values with only the top byte differing.
    #[test]
    fn radix_sort_orders_keys() {
        let mut s = 99u64;
        let mut next = || {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            s
        };
        let cases: Vec<Vec<u64>> = vec![
            (0..5000)
                .map(|_| (((next() >> 40) as f32 / 1e7) as f64).order_key())
                .collect(),
            (0..5000)
                .map(|_| (f64::from_bits(next()) % 1e6).order_key())
                .collect(),
            (0..5000).map(|_| next() & (255 << 56)).collect(),
            vec![],
            vec![7],
        ];
        for mut keys in cases {
            let mut want = keys.clone();
            want.sort_unstable();
            let mut scratch = keys.clone();
            sort_keys(&mut keys, &mut scratch);
            assert_eq!(keys, want);
        }
        // 32-bit keys: float32 probabilities (top byte shared), any bits
        let cases32: Vec<Vec<u32>> = vec![
            (0..5000)
                .map(|_| ((next() >> 40) as f32 / 16_777_216.0).order_key())
                .collect(),
            (0..5000).map(|_| (next() >> 32) as u32).collect(),
            vec![],
        ];
        for mut keys in cases32 {
            let mut want = keys.clone();
            want.sort_unstable();
            let mut scratch = keys.clone();
            sort_keys(&mut keys, &mut scratch);
            assert_eq!(keys, want);
        }
        let mut v = [-1.5, -0.0, 0.0, 2.0, f64::NEG_INFINITY, 1e-300, -1e-300];
        v.sort_by_key(|a| a.order_key());
        assert_eq!(
            v.map(f64::to_bits),
            [f64::NEG_INFINITY, -1.5, -1e-300, -0.0, 0.0, 1e-300, 2.0].map(f64::to_bits)
        );
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
