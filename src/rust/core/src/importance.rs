//! Feature importances: TabNet's own mask importance, and three model-agnostic
//! ones from the interpretability studies, all computed with batched forward
//! passes over the whole data (no per-row or per-feature work outside libtorch
//! except the metric, which runs in parallel over repeats with rayon).
//!
//! * permutation: drop of the metric when a column is shuffled (n repeats);
//! * occlusion: drop of the metric when a column is replaced by its mean
//!   (numeric) or its most frequent level (categorical);
//! * MAD relevance (mean absolute differential relevance, Khot, Neubauer &
//!   Roy 2022): under the same replacement, the relative change of the raw
//!   output of each row's true class, with outliers (beyond 1.5 IQR of the
//!   quartiles, per feature and class) set to 0, averaged in absolute value
//!   per class and overall ([`mad_relevance`]).
//!
//! Metric: AUC for one binary outcome, accuracy for other classification,
//! RMSE for regression (whose "drop" is its increase).
use crate::config::Task;
use crate::data::Dataset;
use crate::error::{invalid, Result};
use crate::inference;
use crate::metrics;
use crate::model::Model;
use crate::msg;
use crate::rng::Rng;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// Column sums of the unnormalised M_explain divided by their total (sums to 1).
pub fn mask_importance(model: &Model, data: &Dataset, batch_size: i64) -> Result<Vec<f64>> {
    let (m, _) = inference::explain(model, data, batch_size)?;
    let sums: Vec<f64> = Vec::from(&m.to_kind(Kind::Double).sum_dim_intlist(
        Some(&[0i64][..]),
        false,
        Kind::Double,
    ));
    let total: f64 = sums.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return Ok(vec![1.0 / sums.len() as f64; sums.len()]);
    }
    Ok(sums.iter().map(|s| s / total).collect())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Permutation,
    Occlusion,
    Mad,
}

impl Method {
    pub fn parse(s: &str) -> Result<Method> {
        match s {
            "permutation" => Ok(Method::Permutation),
            "occlusion" => Ok(Method::Occlusion),
            "mad" => Ok(Method::Mad),
            other => invalid(msg!(
                "Unknown importance method {.val {method}}.",
                method = other
            )),
        }
    }
}

pub struct Importance {
    /// importance[feature][repeat], features in original predictor order.
    pub values: Vec<Vec<f64>>,
    /// The metric on the untouched data (NaN for MAD).
    pub baseline: f64,
    pub metric: &'static str,
}

/// How predictions are scored against the outcome.
struct Scorer {
    task: Task,
    dims: Vec<usize>,
    y_class: Vec<i64>,
    y_value: Vec<f64>,
    /// one binary outcome (scored by the AUC): each row's label, class 2
    positive: Vec<bool>,
    /// hierarchical: the parent of each output node
    parent: Vec<Option<usize>>,
}

impl Scorer {
    fn new(model: &Model, data: &Dataset) -> Result<Scorer> {
        let y = match &data.y {
            Some(y) => y.to_device(Device::Cpu),
            None => {
                return invalid(msg!(
                    "This importance method needs the outcome in {.arg new_data}."
                ))
            }
        };
        let (y_class, y_value) = match model.cfg.task {
            Task::Classification | Task::Hierarchical => {
                (Vec::<i64>::from(&y.contiguous().view([-1])), vec![])
            }
            Task::Regression => (
                vec![],
                Vec::<f64>::from(&y.to_kind(Kind::Double).contiguous().view([-1])),
            ),
        };
        let binary = model.cfg.task == Task::Classification && model.cfg.output_dims == [2];
        let positive = if binary {
            y_class.iter().map(|&c| c == 1).collect()
        } else {
            Vec::new()
        };
        Ok(Scorer {
            task: model.cfg.task,
            dims: model.cfg.output_dims.clone(),
            y_class,
            y_value,
            positive,
            parent: model.cfg.parent.clone(),
        })
    }

    fn name(&self) -> &'static str {
        match self.task {
            Task::Regression => "rmse",
            Task::Classification if self.dims == [2] => "roc_auc",
            Task::Classification | Task::Hierarchical => "accuracy",
        }
    }

    /// Higher is better for every score returned here (RMSE is negated).
    /// `pred` holds the network's float32 outputs: the AUC sorts them as
    /// they are, the other metrics take their float64 values.
    fn score(&self, pred32: &[f32]) -> f64 {
        let width: usize = self.dims.iter().sum();
        let n = pred32.len() / width;
        let k_out = self.dims.len();
        if !self.positive.is_empty() {
            let p: Vec<f32> = (0..n).map(|r| pred32[r * 2 + 1]).collect();
            return metrics::auc(&p, &self.positive);
        }
        let pred: Vec<f64> = pred32.iter().map(|&v| v as f64).collect();
        match self.task {
            Task::Regression => {
                let mut s = 0.0;
                for k in 0..k_out {
                    let p: Vec<f64> = (0..n).map(|r| pred[r * width + k]).collect();
                    let t: Vec<f64> = (0..n).map(|r| self.y_value[r * k_out + k]).collect();
                    s += metrics::rmse(&p, &t);
                }
                -s / k_out as f64
            }
            // the share of rows whose predicted path (chosen top-down, as
            // `predict()` does) has the right node, averaged over levels
            Task::Hierarchical => {
                let mut hits = 0usize;
                for r in 0..n {
                    let path = metrics::top_down_path(
                        &pred[r * width..(r + 1) * width],
                        &self.dims,
                        &self.parent,
                    );
                    hits += path
                        .iter()
                        .enumerate()
                        .filter(|(k, &c)| c as i64 == self.y_class[r * k_out + k])
                        .count();
                }
                hits as f64 / (n * k_out) as f64
            }
            Task::Classification => {
                let mut s = 0.0;
                let mut off = 0;
                for (k, &d) in self.dims.iter().enumerate() {
                    let p: Vec<f64> = (0..n)
                        .flat_map(|r| pred[r * width + off..r * width + off + d].to_vec())
                        .collect();
                    let t: Vec<i64> = (0..n).map(|r| self.y_class[r * k_out + k]).collect();
                    s += metrics::accuracy(&p, d, &t);
                    off += d;
                }
                s / k_out as f64
            }
        }
    }
}

fn to_host(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::from(&t.to_kind(Kind::Double).contiguous().view([-1]))
}

/// The network's outputs as they are (float32), for [`Scorer::score`].
fn to_host32(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::from(
        &t.to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous()
            .view([-1]),
    )
}

/// The column of `feature` in `work` (a shallow clone sharing its storage)
/// and its index there.
fn feature_column(model: &Model, work: &Dataset, feature: usize) -> (Tensor, i64) {
    let cfg = &model.cfg;
    match cfg.num_cols.iter().position(|&c| c == feature) {
        Some(k) => (work.x_num.shallow_clone(), k as i64),
        None => {
            let k = cfg
                .cat_cols
                .iter()
                .position(|&c| c == feature)
                .expect("feature is a column");
            (
                work.x_cat
                    .as_ref()
                    .expect("categorical tensor")
                    .shallow_clone(),
                k as i64,
            )
        }
    }
}

/// The occlusion value of a column: its mean (numeric) or its most frequent
/// level (categorical), for every row.
fn occluded(original: &Tensor) -> Tensor {
    if original.kind() == Kind::Int64 {
        let mode = original.bincount::<Tensor>(None, 0).argmax(None, false);
        original.zeros_like() + mode
    } else {
        original.zeros_like() + original.mean(Kind::Float)
    }
}

/// The crate's generator for one permutation, seeded by a draw from
/// libtorch's (so seeding libtorch, as `set.seed()` does through the R layer,
/// fixes the permutations).
fn permutation_rng() -> Rng {
    let seed = Tensor::randint(i64::MAX, &[1], (Kind::Int64, Device::Cpu)).int64_value(&[0]);
    Rng::new(seed as u64)
}

/// The values of a column in a random order ([`permutation_rng`], then the
/// crate's Fisher-Yates shuffle: a third of the time of libtorch's `randperm`
/// and `index_select` on a million rows, both serial). The float32 column of
/// a CPU work copy is shuffled in place instead ([`Work`], from
/// [`ImportanceJob::perturb`]), with the same draws.
fn permuted(original: &Tensor, rng: &mut Rng) -> Tensor {
    let host = original.to_device(Device::Cpu).contiguous();
    let shuffled = if host.kind() == Kind::Int64 {
        let mut v = Vec::<i64>::from(&host);
        rng.shuffle(&mut v);
        Tensor::of_slice(&v)
    } else {
        let mut v = Vec::<f32>::from(&host.to_kind(Kind::Float));
        rng.shuffle(&mut v);
        Tensor::of_slice(&v).to_kind(host.kind())
    };
    shuffled.to_device(original.device())
}

/// A numeric column of the work copy's float32 rows, read and written in
/// place (the copy is the job's own: nothing else reads it meanwhile). The
/// column is one value in every row of a copy larger than the cache, so
/// reading or writing it is a pass over the whole copy: the rows are split
/// between the kernels' threads.
struct Work<'a> {
    rows: &'a mut [f32],
    width: usize,
    col: usize,
}

/// Rows per task of [`Work`]'s passes.
const WORK_ROWS: usize = 16_384;

impl<'a> Work<'a> {
    /// Column `col` of `x` (the work copy's numeric predictors), when they
    /// are contiguous float32 CPU values.
    fn of(x: &'a mut Tensor, col: usize) -> Option<Work<'a>> {
        if !crate::kernels::supported(x) {
            return None;
        }
        let width = x.size()[1] as usize;
        // SAFETY: a contiguous f32 CPU tensor (checked), the job's own copy,
        // borrowed mutably for as long as the slice lives.
        let rows = unsafe { crate::kernels::values_mut(x) };
        Some(Work { rows, width, col })
    }

    fn column(&self) -> Vec<f32> {
        let (width, col) = (self.width, self.col);
        let mut out = vec![0f32; self.rows.len() / width];
        crate::runtime::with_pool(|| {
            out.par_chunks_mut(WORK_ROWS)
                .zip(self.rows.par_chunks(WORK_ROWS * width))
                .for_each(|(o, rows)| {
                    let src = rows[col..].iter().step_by(width);
                    o.iter_mut().zip(src).for_each(|(d, &v)| *d = v);
                })
        });
        out
    }

    fn set(&mut self, values: &[f32]) {
        let (width, col) = (self.width, self.col);
        let rows = &mut *self.rows;
        crate::runtime::with_pool(|| {
            rows.par_chunks_mut(WORK_ROWS * width)
                .zip(values.par_chunks(WORK_ROWS))
                .for_each(|(rows, v)| {
                    let dst = rows[col..].iter_mut().step_by(width);
                    dst.zip(v).for_each(|(d, &v)| *d = v);
                })
        });
    }
}

/// The column a job is perturbing, with its values before (put back after
/// the predictor's last unit, or when a unit is stopped).
struct Perturbed {
    feature: usize,
    before: Before,
}

enum Before {
    /// numeric column `k` of a float32 CPU work copy, permuted in place
    /// ([`Work`]); `now` holds its values as they are in the copy
    Rows {
        k: usize,
        before: Vec<f32>,
        now: Vec<f32>,
    },
    /// any other column (a factor, a work copy on a GPU, an occlusion)
    Tensor(Tensor),
}

/// A copy of `data`'s predictors (the work copy perturbed column by column).
fn work_copy(data: &Dataset) -> Dataset {
    Dataset {
        n: data.n,
        x_num: data.x_num.copy(),
        x_cat: data.x_cat.as_ref().map(|t| t.copy()),
        present: data.present.as_ref().map(|t| t.shallow_clone()),
        y: None,
        w: None,
    }
}

/// R's default (type 7) quantile of sorted values.
fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    let h = (v.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// Σ |δ| over `d` with the values outside [Q1 − 1.5 IQR, Q3 + 1.5 IQR] set
/// to 0 (Khot et al.'s clipping).
fn clipped_abs_sum(d: &[f64]) -> f64 {
    if d.is_empty() {
        return 0.0;
    }
    let mut sorted = d.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (q1, q3) = (
        quantile_sorted(&sorted, 0.25),
        quantile_sorted(&sorted, 0.75),
    );
    let (lo, hi) = (q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1));
    d.iter()
        .filter(|v| **v >= lo && **v <= hi)
        .map(|v| v.abs())
        .sum()
}

/// MAD relevance per feature, per class and overall.
#[derive(Debug, Clone)]
pub struct Mad {
    /// Per feature: the mean over all kept (row, outcome) pairs.
    pub overall: Vec<f64>,
    /// (outcome, class) of each group; for regression (outcome, 0).
    pub groups: Vec<(usize, usize)>,
    /// by_class[group][feature] (NaN for a group without kept rows).
    pub by_class: Vec<Vec<f64>>,
    /// Rows kept per group (raw output not exactly 0).
    pub rows: Vec<usize>,
}

/// MAD relevance (Khot, Neubauer & Roy 2022): for each predictor replaced by
/// its mean (a factor by its most frequent level), δ_i = (z'_i − z_i) / z_i
/// with z_i the raw output of row i's true class (the value for regression;
/// a row with z_i = 0 is left out); per class, the δ outside [Q1 − 1.5 IQR,
/// Q3 + 1.5 IQR] are set to 0; MAD = mean |δ|. Classification needs the
/// outcome in `data`. `poll` is called after each predictor (None = stop).
pub fn mad_relevance(
    model: &Model,
    data: &Dataset,
    batch_size: i64,
    poll: &mut dyn FnMut(usize) -> bool,
) -> Result<Option<Mad>> {
    model.supervised()?;
    let _settings = inference::run_settings(model);
    let cfg = &model.cfg;
    let width: usize = cfg.output_dims.iter().sum();
    let n = data.n as usize;
    let k_out = cfg.output_dims.len();
    let offsets: Vec<usize> = cfg
        .output_dims
        .iter()
        .scan(0, |acc, &d| {
            let o = *acc;
            *acc += d;
            Some(o)
        })
        .collect();
    // the output node of each (row, outcome), and the groups
    let (node, groups): (Vec<usize>, Vec<(usize, usize)>) = match cfg.task {
        Task::Regression => (
            (0..n)
                .flat_map(|_| offsets.iter().copied())
                .collect::<Vec<_>>(),
            (0..k_out).map(|k| (k, 0)).collect(),
        ),
        Task::Classification | Task::Hierarchical => {
            let y =
                match &data.y {
                    Some(y) => Vec::<i64>::from(&y.to_device(Device::Cpu).contiguous().view([-1])),
                    None => return invalid(
                        "the MAD relevance needs the outcome in `new_data` (each row's true class)",
                    ),
                };
            let node = (0..n)
                .flat_map(|r| (0..k_out).map(move |k| (r, k)))
                .map(|(r, k)| offsets[k] + y[r * k_out + k] as usize)
                .collect();
            let groups = (0..k_out)
                .flat_map(|k| (0..cfg.output_dims[k]).map(move |c| (k, c)))
                .collect();
            (node, groups)
        }
    };
    let group_of = |r: usize, k: usize| -> usize {
        let (ok, c) = (k, node[r * k_out + k] - offsets[k]);
        groups.iter().position(|&g| g == (ok, c)).expect("group")
    };
    let base = to_host(&inference::predict_raw(model, data, batch_size)?);
    // kept (row, outcome) pairs per group: z != 0
    let mut members: Vec<Vec<(usize, f64)>> = vec![Vec::new(); groups.len()];
    for r in 0..n {
        for k in 0..k_out {
            let z = base[r * width + node[r * k_out + k]];
            if z != 0.0 {
                members[group_of(r, k)].push((r * width + node[r * k_out + k], z));
            }
        }
    }
    let work = work_copy(data);
    let f = cfg.n_features();
    let mut overall = vec![0.0; f];
    let mut by_class = vec![vec![f64::NAN; f]; groups.len()];
    let kept: usize = members.iter().map(|m| m.len()).sum();
    for feature in 0..f {
        let (tensor, col) = feature_column(model, &work, feature);
        let original = tensor.select(1, col).copy();
        tensor.select(1, col).copy_(&occluded(&original));
        let out = inference::predict_raw(model, &work, batch_size);
        tensor.select(1, col).copy_(&original);
        let out = to_host(&out?);
        let mut total = 0.0;
        for (g, m) in members.iter().enumerate() {
            let d: Vec<f64> = m.iter().map(|&(at, z)| (out[at] - z) / z).collect();
            let s = clipped_abs_sum(&d);
            total += s;
            if !d.is_empty() {
                by_class[g][feature] = s / d.len() as f64;
            }
        }
        overall[feature] = if kept > 0 {
            total / kept as f64
        } else {
            f64::NAN
        };
        if feature + 1 < f && poll(feature + 1) {
            return Ok(None);
        }
    }
    Ok(Some(Mad {
        overall,
        groups,
        by_class,
        rows: members.iter().map(|m| m.len()).collect(),
    }))
}

/// A permutation or occlusion importance worked through in units (one
/// predictor and repeat: a perturbed copy of one column, made here, and one
/// prediction of every row), so that the caller can show progress and stop
/// between them.
pub struct ImportanceJob {
    method: Method,
    repeats: usize,
    batch_size: i64,
    scorer: Scorer,
    baseline: f64,
    work: Dataset,
    values: Vec<Vec<f64>>,
    /// the next unit: feature · repeats + repeat
    next: usize,
    /// predictions of the current feature's repeats
    preds: Vec<Vec<f32>>,
    /// the column the current feature's units perturb
    perturbed: Option<Perturbed>,
}

impl ImportanceJob {
    /// Scores the untouched data. Permutations are seeded from libtorch's RNG
    /// (seed it first).
    pub fn new(
        model: &Model,
        data: &Dataset,
        method: Method,
        n_repeats: usize,
        batch_size: i64,
    ) -> Result<ImportanceJob> {
        model.supervised()?;
        if method == Method::Mad {
            return invalid(msg!(
                "The MAD relevance is computed by {.fn mad_relevance}, not as an importance job."
            ));
        }
        let scorer = Scorer::new(model, data)?;
        let base = {
            let _settings = inference::run_settings(model);
            to_host32(&inference::predict(model, data, batch_size)?)
        };
        let baseline = scorer.score(&base);
        Ok(ImportanceJob {
            method,
            repeats: if method == Method::Permutation {
                n_repeats.max(1)
            } else {
                1
            },
            batch_size,
            scorer,
            baseline,
            work: work_copy(data),
            values: vec![Vec::new(); model.cfg.n_features()],
            next: 0,
            preds: Vec::new(),
            perturbed: None,
        })
    }

    /// Units in all.
    pub fn total(&self) -> usize {
        self.values.len() * self.repeats
    }

    /// Units done.
    pub fn done(&self) -> usize {
        self.next
    }

    pub fn finished(&self) -> bool {
        self.next >= self.total()
    }

    /// Runs units for about `slice` (at least one); `poll` is asked between
    /// prediction slices and units. Returns false when `poll` stopped it.
    pub fn run(
        &mut self,
        model: &Model,
        slice: std::time::Duration,
        poll: &mut dyn FnMut() -> bool,
    ) -> Result<bool> {
        let started = std::time::Instant::now();
        // one set of process settings for all units (see `run_settings`)
        let _settings = inference::run_settings(model);
        while self.next < self.total() {
            let feature = self.next / self.repeats;
            let last = self.next % self.repeats == self.repeats - 1;
            self.perturb(model, feature);
            let p = inference::predict_polled(model, &self.work, self.batch_size, poll);
            if last || !matches!(p, Ok(Some(_))) {
                // the predictor is done, or its unit stopped: the copy is
                // whole again (a stopped unit starts over from the values
                // before: its permutation is as random)
                self.restore(model);
            }
            let Some(p) = p? else { return Ok(false) };
            self.preds.push(to_host32(&p));
            self.next += 1;
            if self.preds.len() == self.repeats {
                let (scorer, baseline) = (&self.scorer, self.baseline);
                let preds = std::mem::take(&mut self.preds);
                // on the kernels' pool (fork-safe, see `crate::runtime`)
                self.values[feature] = crate::runtime::with_pool(|| {
                    preds
                        .par_iter()
                        .map(|p| baseline - scorer.score(p))
                        .collect()
                });
            }
            if self.next < self.total() {
                if poll() {
                    return Ok(false);
                }
                if started.elapsed() >= slice {
                    return Ok(true);
                }
            }
        }
        Ok(true)
    }

    /// Perturbs the feature's column for its next unit. A permutation
    /// shuffles the column as the previous repeat left it: a uniformly
    /// random permutation of the values again, without putting them back
    /// in between (the column is read once per predictor and written once
    /// per unit).
    fn perturb(&mut self, model: &Model, feature: usize) {
        if self.perturbed.as_ref().map(|p| p.feature) != Some(feature) {
            let numeric = model.cfg.num_cols.iter().position(|&c| c == feature);
            let rows = match (self.method, numeric) {
                (Method::Permutation, Some(k)) => Work::of(&mut self.work.x_num, k).map(|w| {
                    let before = w.column();
                    let now = before.clone();
                    Before::Rows { k, before, now }
                }),
                _ => None,
            };
            let before = rows.unwrap_or_else(|| {
                let (tensor, col) = feature_column(model, &self.work, feature);
                Before::Tensor(tensor.select(1, col).copy())
            });
            self.perturbed = Some(Perturbed { feature, before });
        }
        let perturbed = self.perturbed.as_mut().expect("set above");
        match &mut perturbed.before {
            Before::Rows { k, now, .. } => {
                permutation_rng().shuffle(now);
                Work::of(&mut self.work.x_num, *k)
                    .expect("as when read")
                    .set(now);
            }
            Before::Tensor(before) => {
                let (tensor, col) = feature_column(model, &self.work, feature);
                let replacement = match self.method {
                    Method::Permutation => permuted(&tensor.select(1, col), &mut permutation_rng()),
                    _ => occluded(before),
                };
                tensor.select(1, col).copy_(&replacement);
            }
        }
    }

    /// Puts the perturbed column's values back.
    fn restore(&mut self, model: &Model) {
        let Some(perturbed) = self.perturbed.take() else {
            return;
        };
        match perturbed.before {
            Before::Rows { k, before, .. } => Work::of(&mut self.work.x_num, k)
                .expect("as when read")
                .set(&before),
            Before::Tensor(before) => {
                let (tensor, col) = feature_column(model, &self.work, perturbed.feature);
                tensor.select(1, col).copy_(&before);
            }
        }
    }

    /// The result (after every unit ran).
    pub fn finish(&self) -> Importance {
        Importance {
            values: self.values.clone(),
            baseline: if self.scorer.task == Task::Regression {
                -self.baseline
            } else {
                self.baseline
            },
            metric: self.scorer.name(),
        }
    }
}

/// Model-agnostic importance of every predictor column, in one go (the
/// permutation and occlusion importances; the MAD relevance's overall value
/// per predictor, in `values`).
pub fn model_agnostic(
    model: &Model,
    data: &Dataset,
    method: Method,
    n_repeats: usize,
    batch_size: i64,
) -> Result<Importance> {
    if method == Method::Mad {
        let mad = mad_relevance(model, data, batch_size, &mut |_| false)?.expect("not stopped");
        return Ok(Importance {
            values: mad.overall.iter().map(|&v| vec![v]).collect(),
            baseline: f64::NAN,
            metric: "mad",
        });
    }
    let mut job = ImportanceJob::new(model, data, method, n_repeats, batch_size)?;
    while !job.finished() {
        job.run(model, std::time::Duration::MAX, &mut || false)?;
    }
    Ok(job.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetConfig;
    use crate::data::Targets;

    #[test]
    fn clipping_follows_r_quantiles() {
        // R: quantile(c(1, 2, 3, 4, 100), c(.25, .75)) = 2, 4; IQR 2; bounds
        // [-1, 7]: 100 is set to 0
        let v = [1.0, 2.0, 3.0, 4.0, 100.0];
        assert_eq!(quantile_sorted(&v, 0.25), 2.0);
        assert_eq!(quantile_sorted(&v, 0.75), 4.0);
        assert_eq!(clipped_abs_sum(&[4.0, -1.0, 3.0, 100.0, 2.0]), 10.0);
        // R: quantile(c(0, 1, 5, 6), .25) = 0.75 (type 7 interpolates)
        assert!((quantile_sorted(&[0.0, 1.0, 5.0, 6.0], 0.25) - 0.75).abs() < 1e-12);
    }

    fn small() -> (Model, Dataset, Vec<Vec<f64>>, Vec<i32>) {
        let cfg = NetConfig::example(3, vec![3], Task::Classification);
        tch::manual_seed(5);
        let model = Model::new(cfg.clone(), Device::Cpu).unwrap();
        let z = Vec::<f64>::from(&crate::test_data::normal(&[3 * 90], 9));
        let cols: Vec<Vec<f64>> = (0..3).map(|j| z[j * 90..(j + 1) * 90].to_vec()).collect();
        let y: Vec<i32> = (0..90).map(|i| i % 3).collect();
        let d = Dataset::classes_example(&cfg, &cols, &y).unwrap();
        (model, d, cols, y)
    }

    /// The in-place shuffle of a work copy's float32 column gives the values
    /// the tensor path gives for the same draws, touches no other column, and
    /// the column's old values put back restore the copy bit for bit (90
    /// rows: one task of the parallel passes; the job test below has more).
    #[test]
    fn in_place_permutation_is_the_tensor_permutation() {
        let (_, d, _, _) = small();
        let mut work = work_copy(&d);
        let before = Vec::<f32>::from(&work.x_num.contiguous().view([-1]));
        let original = work.x_num.select(1, 1).copy();
        let want = Vec::<f32>::from(&permuted(&original, &mut Rng::new(5)));
        let mut w = Work::of(&mut work.x_num, 1).expect("float32 CPU rows");
        let old = w.column();
        assert_eq!(old, Vec::<f32>::from(&original));
        let mut v = old.clone();
        Rng::new(5).shuffle(&mut v);
        w.set(&v);
        assert_eq!(w.column(), want);
        assert_ne!(want, old, "a shuffle of distinct values moved some");
        let after = Vec::<f32>::from(&work.x_num.contiguous().view([-1]));
        let width = work.x_num.size()[1] as usize;
        for (i, (a, b)) in after.iter().zip(&before).enumerate() {
            if i % width != 1 {
                assert_eq!(a.to_bits(), b.to_bits(), "value {i} of another column");
            }
        }
        Work::of(&mut work.x_num, 1).unwrap().set(&old);
        let restored = Vec::<f32>::from(&work.x_num.contiguous().view([-1]));
        assert_eq!(restored, before);
    }

    /// MAD against a direct computation: each column replaced by its mean
    /// in the raw columns, the true class's logit re-predicted.
    #[test]
    fn mad_is_the_clipped_mean_relative_change_of_the_true_logit() {
        let (model, d, cols, y) = small();
        let mad = mad_relevance(&model, &d, 7, &mut |_| false)
            .unwrap()
            .unwrap();
        let names: Vec<String> = (0..3).map(|j| format!("V{j}")).collect();
        let raw = |cols: &[Vec<f64>]| {
            let refs: Vec<&[f64]> = cols.iter().map(|c| c.as_slice()).collect();
            let d = Dataset::from_columns(
                &model.cfg,
                &refs,
                &[],
                &names,
                Some(Targets::Classes(vec![&y])),
                None,
                Device::Cpu,
            )
            .unwrap();
            to_host(&inference::predict_raw(&model, &d, 1000).unwrap())
        };
        let base = raw(&cols);
        for j in 0..3 {
            let mut c = cols.clone();
            // the mean as the core takes it: in float32
            let mean = c[j].iter().map(|&v| v as f32).sum::<f32>() / 90.0;
            c[j] = vec![mean as f64; 90];
            let out = raw(&c);
            let mut all = 0.0;
            for class in 0..3 {
                let d: Vec<f64> = (0..90)
                    .filter(|&i| y[i] == class)
                    .map(|i| {
                        let at = i * 3 + class as usize;
                        (out[at] - base[at]) / base[at]
                    })
                    .collect();
                // outliers: recomputed here by sorting
                let mut s = d.clone();
                s.sort_by(f64::total_cmp);
                let q = |p: f64| {
                    let h = (s.len() - 1) as f64 * p;
                    let lo = h.floor() as usize;
                    s[lo] + (h - lo as f64) * (s[(lo + 1).min(s.len() - 1)] - s[lo])
                };
                let (lo, hi) = (
                    q(0.25) - 1.5 * (q(0.75) - q(0.25)),
                    q(0.75) + 1.5 * (q(0.75) - q(0.25)),
                );
                let sum: f64 = d
                    .iter()
                    .filter(|v| **v >= lo && **v <= hi)
                    .map(|v| v.abs())
                    .sum();
                all += sum;
                let want = sum / d.len() as f64;
                // float32 means may round differently from the core's mean
                // kernel (one ulp of the replaced value): relative 1e-4
                let got = mad.by_class[class as usize][j];
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs() + 1e-7,
                    "{j} {class}: {got} vs {want}"
                );
            }
            let got = mad.overall[j];
            assert!((got - all / 90.0).abs() <= 1e-4 * got.abs() + 1e-7);
        }
        assert_eq!(mad.rows, vec![30, 30, 30]);
    }

    #[test]
    fn importance_jobs_stop_when_polled_and_resume() {
        let (model, d, _, _) = small();
        tch::manual_seed(1);
        let mut job = ImportanceJob::new(&model, &d, Method::Permutation, 3, 16).unwrap();
        assert_eq!(job.total(), 9);
        let data = |job: &ImportanceJob| Vec::<f32>::from(&job.work.x_num.contiguous().view([-1]));
        let before = data(&job);
        // stopped inside the first unit's prediction slices: the work copy
        // is whole again
        assert!(!job
            .run(&model, std::time::Duration::MAX, &mut || true)
            .unwrap());
        assert_eq!(job.done(), 0);
        assert_eq!(data(&job), before);
        // one unit per call with a zero time slice: the first predictor's
        // column stays permuted between its repeats (the same values in
        // another order), the others untouched
        assert!(job
            .run(&model, std::time::Duration::ZERO, &mut || false)
            .unwrap());
        assert_eq!(job.done(), 1);
        let mid = data(&job);
        assert_ne!(mid, before);
        let column = |v: &[f32], j: usize| {
            let mut c: Vec<u32> = v.iter().skip(j).step_by(3).map(|x| x.to_bits()).collect();
            c.sort_unstable();
            c
        };
        assert_eq!(column(&mid, 0), column(&before, 0));
        for j in [1, 2] {
            let pick = |v: &[f32]| v.iter().skip(j).step_by(3).copied().collect::<Vec<f32>>();
            assert_eq!(pick(&mid), pick(&before), "column {j}");
        }
        while !job.finished() {
            job.run(&model, std::time::Duration::MAX, &mut || false)
                .unwrap();
        }
        // every predictor's values put back, bit for bit
        assert_eq!(data(&job), before);
        let imp = job.finish();
        assert_eq!(imp.values.len(), 3);
        assert!(imp.values.iter().all(|v| v.len() == 3));
    }
}
