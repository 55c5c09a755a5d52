//! Column data prepared once into tensors: numeric predictors as one (n, p)
//! float tensor, categorical codes as one (n, c) integer tensor, a presence
//! mask only when something is missing, outcomes and case weights.
//!
//! The conversion from column slices (R's column-major data frame) to the
//! row-major tensor runs in parallel over row blocks (rayon) straight into the
//! tensor's memory (ndarray view), so the data is copied exactly once.
use crate::config::{NetConfig, Task};
use crate::error::{invalid, Result};
use crate::msg;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// R's NA_integer_.
pub(crate) const NA_INTEGER: i32 = i32::MIN;

/// Outcome columns, one slice per outcome.
pub enum Targets<'a> {
    /// 0-based class codes per outcome.
    Classes(Vec<&'a [i32]>),
    Values(Vec<&'a [f64]>),
}

#[derive(Debug)]
pub struct Dataset {
    pub n: i64,
    pub x_num: Tensor,
    pub x_cat: Option<Tensor>,
    /// (n, F) 1.0 where the cell is observed; None when nothing is missing.
    pub present: Option<Tensor>,
    /// (n, n_outcomes): Int64 classes or Float values.
    pub y: Option<Tensor>,
    /// (n) case weights.
    pub w: Option<Tensor>,
}

/// One mini-batch, sliced from a [`Dataset`].
pub struct Batch {
    pub x_num: Tensor,
    pub x_cat: Option<Tensor>,
    pub present: Option<Tensor>,
    pub y: Option<Tensor>,
    pub w: Option<Tensor>,
}

const ROW_BLOCK: usize = 8192;

/// Rows converted at a time inside a block of [`fill_numeric`].
const TILE: usize = 64;

/// The first finite value of `col` that float32 cannot hold (it would become ±inf).
pub fn beyond_f32(col: &[f64]) -> Option<f64> {
    col.iter()
        .copied()
        .find(|v| v.is_finite() && v.abs() > f32::MAX as f64)
}

/// Fills a row-major (n, cols.len()) f32 tensor from column slices; NaN → 0.
/// Returns the tensor and, per column, whether it had missing values.
fn fill_numeric(cols: &[&[f64]], n: usize, names: &[String]) -> Result<(Tensor, Vec<bool>)> {
    let p = cols.len();
    let t = Tensor::empty(&[n as i64, p as i64], (Kind::Float, Device::Cpu));
    if n == 0 || p == 0 {
        return Ok((t, vec![false; p]));
    }
    // SAFETY: `t` is a fresh contiguous CPU tensor of n·p f32 that nothing else
    // references until this function returns.
    let buf = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n * p) };
    // one parallel pass reads every value once: it writes the row-major
    // float32 copy and notes, per block and column, a missing value and a
    // value beyond float32's range (infinite or too large); the error, if
    // any, is found after it, in the rare column that has such a value
    let flags: Vec<Vec<(bool, bool)>> = buf
        .par_chunks_mut(ROW_BLOCK * p)
        .enumerate()
        .map(|(bi, block)| {
            let start = bi * ROW_BLOCK;
            let mut flags = vec![(false, false); p];
            // TILE rows at a time: each column's values converted in one
            // loop (contiguous, vectorised) into a small column-major
            // scratch, then written out row by row (a strided store per
            // value into the whole block was most of the conversion)
            let mut scratch = vec![0f32; TILE * p];
            for (ti, rows) in block.chunks_mut(TILE * p).enumerate() {
                let at = start + ti * TILE;
                let m = rows.len() / p;
                for ((col, f), sc) in cols.iter().zip(&mut flags).zip(scratch.chunks_mut(TILE)) {
                    let (mut nan, mut beyond) = (false, false);
                    for (d, &v) in sc[..m].iter_mut().zip(&col[at..at + m]) {
                        nan |= v.is_nan();
                        beyond |= v.abs() > f32::MAX as f64;
                        *d = if v.is_nan() { 0.0 } else { v as f32 };
                    }
                    f.0 |= nan;
                    f.1 |= beyond;
                }
                for (r, row) in rows.chunks_exact_mut(p).enumerate() {
                    for (j, d) in row.iter_mut().enumerate() {
                        *d = scratch[j * TILE + r];
                    }
                }
            }
            flags
        })
        .collect();
    let column = |j: usize, f: fn(&(bool, bool)) -> bool| flags.iter().any(|b| f(&b[j]));
    let beyond: Vec<usize> = (0..p).filter(|&j| column(j, |b| b.1)).collect();
    if let Some(&j) = beyond
        .iter()
        .find(|&&j| cols[j].iter().any(|v| v.is_infinite()))
    {
        return invalid(msg!(
            "Predictor {.field {name}} contains infinite values.",
            name = &names[j]
        ));
    }
    if let Some((j, v)) = beyond
        .iter()
        .find_map(|&j| beyond_f32(cols[j]).map(|v| (j, v)))
    {
        return invalid(msg!(
            "Predictor {.field {name}} holds {v}, beyond the float32 range (about ±3.4e38) the network computes in; rescale it.",
            name = &names[j],
            v = v
        ));
    }
    Ok((t, (0..p).map(|j| column(j, |b| b.0)).collect()))
}

/// Codes 1..=levels keep their value, NA becomes 0 (the unknown slot) and is
/// reported missing, anything else (0 = a level unseen at fit time) becomes 0.
fn fill_codes(cols: &[&[i32]], levels: &[usize], n: usize) -> (Tensor, Vec<bool>) {
    let c = cols.len();
    let mut out = vec![0i64; n * c];
    out.par_chunks_mut(ROW_BLOCK * c.max(1))
        .enumerate()
        .for_each(|(bi, block)| {
            let start = bi * ROW_BLOCK;
            for (j, col) in cols.iter().enumerate() {
                for (r, slot) in block.chunks_mut(c).enumerate() {
                    let v = col[start + r];
                    slot[j] = if v >= 1 && (v as usize) <= levels[j] {
                        v as i64
                    } else {
                        0
                    };
                }
            }
        });
    let na = cols
        .par_iter()
        .map(|col| col.contains(&NA_INTEGER))
        .collect();
    (Tensor::of_slice(&out).view([n as i64, c as i64]), na)
}

impl Dataset {
    /// Numeric predictors `cols` (named V0, V1, …) and class labels `y` on the
    /// CPU: the small data sets of tests and examples.
    pub fn classes_example(cfg: &NetConfig, cols: &[Vec<f64>], y: &[i32]) -> Result<Dataset> {
        let refs: Vec<&[f64]> = cols.iter().map(|c| c.as_slice()).collect();
        let names: Vec<String> = (0..cols.len()).map(|j| format!("V{j}")).collect();
        Dataset::from_columns(
            cfg,
            &refs,
            &[],
            &names,
            Some(Targets::Classes(vec![y])),
            None,
            Device::Cpu,
        )
    }

    /// Builds the tensors for `cfg`'s column layout. `num` and `cat` are in the
    /// config's tensor order; `names` are the original predictor names (for errors).
    pub fn from_columns(
        cfg: &NetConfig,
        num: &[&[f64]],
        cat: &[&[i32]],
        names: &[String],
        targets: Option<Targets>,
        weights: Option<&[f64]>,
        device: Device,
    ) -> Result<Dataset> {
        // on the kernels' pool, never rayon's global one (which cannot be
        // rebuilt in a forked child, see `crate::runtime`)
        crate::runtime::with_pool(|| {
            if num.len() != cfg.num_cols.len() || cat.len() != cfg.cat_cols.len() {
                return invalid(msg!(
                    "Expected {num} numeric and {cat} categorical predictors, got {got_num} and {got_cat}.",
                    num = cfg.num_cols.len(),
                    cat = cfg.cat_cols.len(),
                    got_num = num.len(),
                    got_cat = cat.len()
                ));
            }
            let n = num
                .first()
                .map(|c| c.len())
                .or(cat.first().map(|c| c.len()))
                .unwrap_or(0);
            if num.iter().any(|c| c.len() != n) || cat.iter().any(|c| c.len() != n) {
                return invalid(msg!("All predictor columns must have the same length."));
            }
            if n == 0 {
                return invalid(msg!("The data has zero rows."));
            }
            let num_names: Vec<String> = cfg
                .num_cols
                .iter()
                .map(|&j| {
                    names
                        .get(j)
                        .cloned()
                        .unwrap_or_else(|| format!("#{}", j + 1))
                })
                .collect();
            let (x_num, num_na) = fill_numeric(num, n, &num_names)?;
            let (x_cat, cat_na) = if cat.is_empty() {
                (None, vec![])
            } else {
                let (t, na) = fill_codes(cat, &cfg.cat_levels, n);
                (Some(t), na)
            };
            let present = if num_na.iter().chain(&cat_na).any(|&b| b) {
                let f = cfg.n_features() as i64;
                let mut pres = Tensor::ones(&[n as i64, f], (Kind::Float, Device::Cpu));
                for (k, &j) in cfg.num_cols.iter().enumerate() {
                    if num_na[k] {
                        let miss: Vec<f32> = num[k]
                            .par_iter()
                            .map(|v| if v.is_nan() { 0.0 } else { 1.0 })
                            .collect();
                        pres.select(1, j as i64).copy_(&Tensor::of_slice(&miss));
                    }
                }
                for (k, &j) in cfg.cat_cols.iter().enumerate() {
                    if cat_na[k] {
                        let miss: Vec<f32> = cat[k]
                            .par_iter()
                            .map(|&v| if v == NA_INTEGER { 0.0 } else { 1.0 })
                            .collect();
                        pres.select(1, j as i64).copy_(&Tensor::of_slice(&miss));
                    }
                }
                let _ = &mut pres;
                Some(pres)
            } else {
                None
            };
            let y = match targets {
                None => None,
                Some(t) => Some(targets_tensor(cfg, t, n)?),
            };
            let w = match weights {
                None => None,
                Some(w) => {
                    if w.len() != n {
                        return invalid(msg!(
                            "{.arg weights} has length {len}, the data has {n} row{?s}.",
                            len = w.len(),
                            n = n
                        ));
                    }
                    if w.iter().any(|v| !v.is_finite() || *v < 0.0) {
                        return invalid(msg!("{.arg weights} must be finite and non-negative."));
                    }
                    if let Some(v) = beyond_f32(w) {
                        return invalid(msg!(
                            "{.arg weights} holds {v}, beyond the float32 range (about 3.4e38); rescale the weights.",
                            v = v
                        ));
                    }
                    if w.iter().sum::<f64>() <= 0.0 {
                        return invalid(msg!("{.arg weights} must not all be zero."));
                    }
                    let w32: Vec<f32> = w.iter().map(|&v| v as f32).collect();
                    Some(Tensor::of_slice(&w32))
                }
            };
            let dev = |t: Tensor| {
                if device == Device::Cpu {
                    t
                } else {
                    t.to_device(device)
                }
            };
            Ok(Dataset {
                n: n as i64,
                x_num: dev(x_num),
                x_cat: x_cat.map(dev),
                present: present.map(dev),
                y: y.map(dev),
                w: w.map(dev),
            })
        })
    }

    /// Rows `idx` (an Int64 tensor on the data's device).
    pub fn batch(&self, idx: &Tensor) -> Batch {
        let sel = |t: &Tensor| t.index_select(0, idx);
        Batch {
            x_num: sel(&self.x_num),
            x_cat: self.x_cat.as_ref().map(sel),
            present: self.present.as_ref().map(sel),
            y: self.y.as_ref().map(sel),
            w: self.w.as_ref().map(sel),
        }
    }

    /// An error unless rows `start .. start + len` lie inside the data.
    pub fn check_rows(&self, start: i64, len: i64) -> Result<()> {
        if start < 0 || len < 0 || start + len > self.n {
            return invalid(msg!(
                "Rows {start}..{end} are outside the data's {n} row{?s}.",
                start = start,
                end = start + len,
                n = self.n
            ));
        }
        Ok(())
    }

    /// Rows `start .. start + len`, without copying.
    pub fn slice(&self, start: i64, len: i64) -> Batch {
        let nar = |t: &Tensor| t.narrow(0, start, len);
        Batch {
            x_num: nar(&self.x_num),
            x_cat: self.x_cat.as_ref().map(nar),
            present: self.present.as_ref().map(nar),
            y: self.y.as_ref().map(nar),
            w: self.w.as_ref().map(nar),
        }
    }

    pub fn device(&self) -> Device {
        self.x_num.device()
    }
}

/// Hierarchical outcomes: each row's node at a level must be a child of its
/// node at the level above (row-major codes, `levels` per row).
fn check_paths(cfg: &NetConfig, codes: &[i64], levels: usize) -> Result<()> {
    let mut starts = vec![0usize];
    for &d in &cfg.output_dims {
        starts.push(starts.last().copied().unwrap_or(0) + d);
    }
    for (r, row) in codes.chunks(levels).enumerate() {
        for k in 1..levels {
            let node = starts[k] + row[k] as usize;
            let above = starts[k - 1] + row[k - 1] as usize;
            if cfg.parent.get(node).copied().flatten() != Some(above) {
                return invalid(msg!(
                    "The outcome of row {row} is not a path of the hierarchy (level {level} is not a child of level {above}).",
                    row = r + 1,
                    level = k + 2,
                    above = k + 1
                ));
            }
        }
    }
    Ok(())
}

fn targets_tensor(cfg: &NetConfig, t: Targets, n: usize) -> Result<Tensor> {
    match (cfg.task, t) {
        (Task::Classification | Task::Hierarchical, Targets::Classes(cols)) => {
            if cols.len() != cfg.output_dims.len() {
                return invalid(msg!("One outcome column is needed per model output."));
            }
            let mut out = vec![0i64; n * cols.len()];
            for (k, col) in cols.iter().enumerate() {
                if col.len() != n {
                    return invalid(msg!("The outcome and the predictors have different numbers of rows."));
                }
                for (r, &v) in col.iter().enumerate() {
                    if v == NA_INTEGER {
                        return invalid(msg!("The outcome has missing values."));
                    }
                    if v < 0 || v as usize >= cfg.output_dims[k] {
                        return invalid(msg!(
                            "Class code {code} is outside the outcome's levels.",
                            code = v
                        ));
                    }
                    out[r * cols.len() + k] = v as i64;
                }
            }
            if cfg.task == Task::Hierarchical {
                check_paths(cfg, &out, cols.len())?;
            }
            Ok(Tensor::of_slice(&out).view([n as i64, cols.len() as i64]))
        }
        (Task::Regression, Targets::Values(cols)) => {
            if cols.len() != cfg.output_dims.len() {
                return invalid(msg!("One outcome column is needed per model output."));
            }
            let mut out = vec![0f32; n * cols.len()];
            for (k, col) in cols.iter().enumerate() {
                if col.len() != n {
                    return invalid(msg!("The outcome and the predictors have different numbers of rows."));
                }
                for (r, &v) in col.iter().enumerate() {
                    if !v.is_finite() {
                        return invalid(msg!("The outcome has missing or infinite values."));
                    }
                    out[r * cols.len() + k] = v as f32;
                }
            }
            Ok(Tensor::of_slice(&out).view([n as i64, cols.len() as i64]))
        }
        _ => invalid(msg!("The outcome type does not match the model (factor for classification, numeric for regression).")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_become_row_major_tensors_with_a_presence_mask() {
        let mut cfg = NetConfig::example(2, vec![2], Task::Classification);
        cfg.num_cols = vec![0, 2];
        cfg.cat_cols = vec![1];
        cfg.cat_levels = vec![3];
        cfg.cat_emb_dims = vec![2];
        let n = 20000usize;
        let a: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let mut b: Vec<f64> = (0..n).map(|i| -(i as f64)).collect();
        b[5] = f64::NAN;
        let codes: Vec<i32> = (0..n).map(|i| (i % 5) as i32).collect(); // 0 and 4 are unknown
        let mut codes = codes;
        codes[7] = NA_INTEGER;
        let y: Vec<i32> = (0..n).map(|i| (i % 2) as i32).collect();
        let names: Vec<String> = vec!["a".into(), "f".into(), "b".into()];
        let d = Dataset::from_columns(
            &cfg,
            &[&a, &b],
            &[&codes],
            &names,
            Some(Targets::Classes(vec![&y])),
            None,
            Device::Cpu,
        )
        .unwrap();
        assert_eq!(d.x_num.size(), vec![n as i64, 2]);
        assert_eq!(d.x_num.double_value(&[12345, 0]), 12345.0);
        assert_eq!(d.x_num.double_value(&[12345, 1]), -12345.0);
        assert_eq!(d.x_num.double_value(&[5, 1]), 0.0);
        // every value in its row and column (blocks and tiles of rows, the
        // last of each partial), a missing one as 0
        let rows = Vec::<f32>::from(&d.x_num.contiguous().view([-1]));
        for i in 0..n {
            let want_b = if i == 5 { 0.0 } else { b[i] as f32 };
            assert_eq!(
                (rows[2 * i], rows[2 * i + 1]),
                (a[i] as f32, want_b),
                "row {i}"
            );
        }
        let cat = d.x_cat.as_ref().unwrap();
        assert_eq!(cat.int64_value(&[3, 0]), 3);
        assert_eq!(cat.int64_value(&[4, 0]), 0);
        assert_eq!(cat.int64_value(&[7, 0]), 0);
        let p = d.present.as_ref().unwrap();
        assert_eq!(p.double_value(&[5, 2]), 0.0);
        assert_eq!(p.double_value(&[7, 1]), 0.0);
        assert_eq!(p.double_value(&[4, 1]), 1.0);
        assert_eq!(p.sum(Kind::Float).double_value(&[]), (3 * n - 2) as f64);
        assert_eq!(d.y.as_ref().unwrap().int64_value(&[3, 0]), 1);
    }

    #[test]
    fn bad_values_are_named() {
        let cfg = NetConfig::example(1, vec![1], Task::Regression);
        let a = vec![1.0, f64::INFINITY];
        let err =
            Dataset::from_columns(&cfg, &[&a], &[], &["speed".into()], None, None, Device::Cpu)
                .unwrap_err();
        assert!(err.to_string().contains("speed"), "{err}");
        let e: Vec<f64> = vec![];
        assert!(
            Dataset::from_columns(&cfg, &[&e], &[], &["x".into()], None, None, Device::Cpu)
                .is_err()
        );
        // over several blocks of rows: an infinite value is named before a
        // value beyond float32 in an earlier column; the first such value
        // (in row order) is the one quoted; a column's missing values are
        // seen in any block
        let n = 3 * ROW_BLOCK + 17;
        let names: Vec<String> = vec!["a".into(), "b".into()];
        let mut a: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
        let mut b: Vec<f64> = (0..n).map(|i| -(i as f64)).collect();
        a[2 * ROW_BLOCK + 5] = 1e39;
        a[2 * ROW_BLOCK + 9] = -2e39;
        b[3 * ROW_BLOCK + 3] = f64::NEG_INFINITY;
        let cfg2 = NetConfig::example(2, vec![1], Task::Regression);
        let from = |a: &[f64], b: &[f64]| {
            Dataset::from_columns(&cfg2, &[a, b], &[], &names, None, None, Device::Cpu)
        };
        let err = from(&a, &b).unwrap_err().to_string();
        assert_eq!(err, "Predictor `b` contains infinite values.");
        b[3 * ROW_BLOCK + 3] = f64::NAN;
        let err = from(&a, &b).unwrap_err().to_string();
        assert!(
            err.starts_with("Predictor `a` holds 1000000000000000000000000000000000000000, beyond"),
            "{err}"
        );
        a[2 * ROW_BLOCK + 5] = f64::NAN;
        a[2 * ROW_BLOCK + 9] = 3.0;
        let d = from(&a, &b).unwrap();
        let x = Vec::<f32>::from(&d.x_num.contiguous().view([-1]));
        for r in [
            0,
            ROW_BLOCK - 1,
            2 * ROW_BLOCK + 5,
            2 * ROW_BLOCK + 9,
            3 * ROW_BLOCK + 3,
            n - 1,
        ] {
            let want = |v: f64| if v.is_nan() { 0.0 } else { v as f32 };
            assert_eq!(
                (x[2 * r], x[2 * r + 1]),
                (want(a[r]), want(b[r])),
                "row {r}"
            );
        }
        let present = Vec::<f32>::from(&d.present.expect("missing values").contiguous().view([-1]));
        assert_eq!(present[2 * (2 * ROW_BLOCK + 5)], 0.0);
        assert_eq!(present[2 * (3 * ROW_BLOCK + 3) + 1], 0.0);
        assert_eq!(present[2 * (3 * ROW_BLOCK + 4) + 1], 1.0);
    }
}
