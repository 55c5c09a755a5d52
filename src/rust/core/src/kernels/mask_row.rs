//! Sparsemax and entmax-1.5 of one row, and their backward.

/// Threshold of one row (values already sorted in descending order).
pub(crate) fn row_threshold(sorted: &[f64], entmax: bool) -> f64 {
    if !entmax {
        // the support is the longest prefix with k v > Σ − 1; τ = (Σ − 1)/k of
        // its last entry (the same division as below, done once)
        let (mut sum, mut last) = (0.0, None);
        for (i, &v) in sorted.iter().enumerate() {
            let k = (i + 1) as f64;
            sum += v;
            if k * v > sum - 1.0 {
                last = Some((k, sum));
            } else {
                break;
            }
        }
        return last.map_or(0.0, |(k, sum)| (sum - 1.0) / k);
    }
    let mut tau = 0.0;
    let (mut sum, mut sum_sq) = (0.0, 0.0);
    for (i, &v) in sorted.iter().enumerate() {
        let k = (i + 1) as f64;
        sum += v;
        sum_sq += v * v;
        let t = if entmax {
            let mean = sum / k;
            let delta = (1.0 - (sum_sq - k * mean * mean)) / k;
            mean - delta.max(0.0).sqrt()
        } else {
            (sum - 1.0) / k
        };
        if (entmax && t <= v) || (!entmax && k * v > sum - 1.0) {
            tau = t;
        } else {
            break;
        }
    }
    tau
}

/// Sparsemax (entmax = false) or entmax-1.5 of one row, in place (logits in,
/// mask out), with the same support rule and closed form as `mask.rs` (whose
/// threshold search, [`row_threshold`], is shared).
pub fn mask_row(m: &mut [f32], entmax: bool) {
    // Rows of up to SHORT groups (every usual table) sort on the stack by
    // insertion, the rest in a per-thread buffer; both give the same
    // descending sequence, so the masks are the same bit for bit.
    const SHORT: usize = 32;
    if m.len() <= SHORT {
        let (mut xs, mut sorted) = ([0f64; SHORT], [0f64; SHORT]);
        let n = m.len();
        mask_row_in(
            m,
            entmax,
            SUPPORT_BOUND,
            &mut xs[..n],
            &mut sorted[..n],
            |v| {
                for i in 1..v.len() {
                    let x = v[i];
                    let mut j = i;
                    while j > 0 && v[j - 1] < x {
                        v[j] = v[j - 1];
                        j -= 1;
                    }
                    v[j] = x;
                }
            },
        );
        return;
    }
    thread_local! {
        static SCRATCH: std::cell::RefCell<(Vec<f64>, Vec<f64>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    SCRATCH.with(|cell| {
        let (xs, sorted) = &mut *cell.borrow_mut();
        xs.resize(m.len(), 0.0);
        sorted.resize(m.len(), 0.0);
        mask_row_in(m, entmax, SUPPORT_BOUND, xs, sorted, |v| {
            v.sort_unstable_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal))
        });
    })
}

/// Only entries above max − 1 can be in a sparsemax or entmax-1.5 support
/// (the row's max alone would get more than all the mass otherwise), and the
/// threshold search stops at the first entry outside it: [`mask_row`] sorts
/// just the entries above this bound (the max is 0 in its units), which gives
/// the same threshold with far less sorting. The margin keeps every entry
/// rounding could let in.
const SUPPORT_BOUND: f64 = -1.0 - 1e-6;

/// [`mask_row`] with the bound below which entries are not sorted, its scratch
/// rows (`xs`, `sorted`: `m.len()` each) and the descending sort to use.
fn mask_row_in(
    m: &mut [f32],
    entmax: bool,
    keep_above: f64,
    xs: &mut [f64],
    sorted: &mut [f64],
    sort_desc: impl FnOnce(&mut [f64]),
) {
    {
        let max = m.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let scale = if entmax { 0.5 } else { 1.0 };
        for (x, &v) in xs.iter_mut().zip(m.iter()) {
            *x = (v as f64 - max) * scale;
        }
        // branch-free compaction: every entry is written, only those above
        // the bound advance (n ≤ the entry's index, so the write is in range)
        let mut n = 0;
        for &x in xs.iter() {
            sorted[n] = x;
            n += usize::from(x > keep_above);
        }
        sort_desc(&mut sorted[..n]);
        let thr = row_threshold(&sorted[..n], entmax);
        // closed form on the support {x > thr}
        let (mut k, mut s, mut s2) = (0f64, 0f64, 0f64);
        for &x in xs.iter() {
            if x > thr {
                k += 1.0;
                s += x;
                s2 += x * x;
            }
        }
        if entmax {
            let mu = s / k;
            let delta = (1.0 - k * (s2 / k - mu * mu)) / k;
            let tau = mu - delta.max(1e-12).sqrt();
            for (o, &x) in m.iter_mut().zip(xs.iter()) {
                let v = (x - tau).max(0.0);
                *o = (v * v) as f32;
            }
        } else {
            let tau = (s - 1.0) / k;
            for (o, &x) in m.iter_mut().zip(xs.iter()) {
                *o = (x - tau).max(0.0) as f32;
            }
        }
    }
}

/// ∂L/∂t of one mask row from ∂L/∂m (`g`), written into `g` in place.
pub fn mask_row_backward(m: &[f32], g: &mut [f32], entmax: bool) {
    if entmax {
        // dX = √m ⊙ (g − Σ g√m / Σ √m)
        let (mut num, mut den) = (0f32, 0f32);
        for (&mi, &gi) in m.iter().zip(g.iter()) {
            let r = mi.sqrt();
            num += gi * r;
            den += r;
        }
        let q = num / den;
        for (gi, &mi) in g.iter_mut().zip(m) {
            *gi = mi.sqrt() * (*gi - q);
        }
    } else {
        // on the support: g − mean over the support of g; 0 elsewhere
        let (mut s, mut k) = (0f32, 0f32);
        for (&mi, &gi) in m.iter().zip(g.iter()) {
            if mi > 0.0 {
                s += gi;
                k += 1.0;
            }
        }
        let v = s / k;
        for (gi, &mi) in g.iter_mut().zip(m) {
            *gi = if mi > 0.0 { *gi - v } else { 0.0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sorting only the entries above max − 1 changes no mask: bit-identical
    /// to sorting the whole row, on rows of 1 to 40 groups (both scratch
    /// paths), scales from 1e-3 to 1e3, ties, and entries at the bound.
    #[test]
    fn pruned_sort_gives_the_same_masks() {
        let z = crate::test_data::normal(&[4000, 40], 21);
        let z: Vec<f64> = Vec::from(&z.view([-1]));
        let mut checked = 0;
        for (r, row) in z.chunks(40).enumerate() {
            let n = 1 + r % 40;
            let scale = 10f64.powi((r % 7) as i32 - 3);
            let mut logits: Vec<f32> = row[..n].iter().map(|v| (v * scale) as f32).collect();
            if r % 5 == 0 && n > 3 {
                logits[1] = logits[0]; // a tie
                logits[2] = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) - 1.0;
            }
            for entmax in [false, true] {
                let mut fast = logits.clone();
                mask_row(&mut fast, entmax);
                let mut full = logits.clone();
                let (mut xs, mut sorted) = (vec![0.0; n], vec![0.0; n]);
                mask_row_in(
                    &mut full,
                    entmax,
                    f64::NEG_INFINITY,
                    &mut xs,
                    &mut sorted,
                    |v| v.sort_unstable_by(|a, b| b.partial_cmp(a).unwrap()),
                );
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&full), "row {r}, entmax {entmax}");
                checked += 1;
            }
        }
        assert_eq!(checked, 8000);
    }
}
