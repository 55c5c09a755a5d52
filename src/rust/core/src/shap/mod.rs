//! SHAP values (interventional Shapley values against a background sample)
//! of a fitted network, computed natively: the coalitions are built inside
//! the batch ([`coalition`]), forwarded through [`crate::inference`] in
//! fixed-size chunks and averaged over the background there.
//!
//! * [`exact`]: all 2^p coalitions with Shapley's weights (the values of
//!   kernelshap's `permshap(exact = TRUE)`);
//! * [`kernel`]: Kernel SHAP as kernelshap implements it (hybrid degree,
//!   paired sampling, iterations until the standard errors are small).
//!
//! A player is an original predictor (a factor's embedding columns move
//! together) or a group of predictors (a model's `grouped_features`).
//! `v(S)` is the background-weighted mean of the explained output with the
//! players of S taken from the row and the others from the background row.
pub mod coalition;
pub mod exact;
pub mod kernel;

use crate::error::{invalid, Result};
use crate::model::Model;
use crate::msg;
use coalition::Mixer;

/// What is explained: the probabilities (values for regression) or the raw
/// network output (logits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Prob,
    Raw,
}

impl Output {
    pub fn parse(s: &str) -> Result<Output> {
        match s {
            "prob" => Ok(Output::Prob),
            "raw" => Ok(Output::Raw),
            other => invalid(msg!(
                "Unknown SHAP output type {.val {kind}}.",
                kind = other
            )),
        }
    }
}

/// The explained rows and the background, copied to the host once, with
/// the baseline `v(∅)` and the predictions `v(all)`.
pub struct Explainer {
    pub(crate) mixer: Mixer,
    /// Background weights, summing to 1.
    pub(crate) bg_w: Vec<f64>,
    pub(crate) output: Output,
    /// Output width K.
    pub k: usize,
    /// v(∅): the weighted mean output over the background, (K).
    pub baseline: Vec<f64>,
    /// v(all): the outputs of the explained rows, (n × K) row-major.
    pub predictions: Vec<f64>,
    /// Mixed rows per forward pass.
    pub(crate) chunk_rows: usize,
}

/// Stopped by the caller's poll (Ctrl-C): no result.
pub type Polled<T> = Option<T>;

impl Explainer {
    /// `players`: original predictor indices per player, a partition of the
    /// model's predictors. `bg_w`: None for equal weights.
    pub fn new(
        model: &Model,
        x: &crate::Dataset,
        bg: &crate::Dataset,
        bg_w: Option<&[f64]>,
        players: Vec<Vec<usize>>,
        output: Output,
        chunk_rows: usize,
    ) -> Result<Explainer> {
        model.supervised()?;
        if bg.n < 1 {
            return invalid(msg!("The background data has zero rows."));
        }
        let w = match bg_w {
            None => vec![1.0 / bg.n as f64; bg.n as usize],
            Some(w) => {
                if w.len() != bg.n as usize {
                    return invalid(msg!(
                        "{.arg bg_w} has {n} value{?s}, the background has {rows} row{?s}.",
                        n = w.len(),
                        rows = bg.n
                    ));
                }
                if w.iter().any(|v| !v.is_finite() || *v < 0.0) {
                    return invalid(msg!("{.arg bg_w} must be finite and non-negative."));
                }
                let total: f64 = w.iter().sum();
                if total <= 0.0 {
                    return invalid(msg!("{.arg bg_w} must not all be zero."));
                }
                w.iter().map(|v| v / total).collect()
            }
        };
        let mixer = Mixer::new(&model.cfg, x, bg, players)?;
        let mut ex = Explainer {
            mixer,
            bg_w: w,
            output,
            k: model.cfg.output_dims.iter().sum(),
            baseline: vec![],
            predictions: vec![],
            chunk_rows: chunk_rows.max(1),
        };
        let bg_out = ex.outputs(model, &ex.mixer.background_dataset(model))?;
        let mut base = vec![0.0; ex.k];
        for (b, row) in bg_out.chunks(ex.k).enumerate() {
            for (acc, v) in base.iter_mut().zip(row) {
                *acc += ex.bg_w[b] * v;
            }
        }
        ex.baseline = base;
        ex.predictions = ex.outputs(model, &ex.mixer.explained_dataset(model))?;
        Ok(ex)
    }

    /// Number of players.
    pub fn p(&self) -> usize {
        self.mixer.players.len()
    }

    /// Number of explained rows.
    pub fn n(&self) -> usize {
        self.mixer.n_rows()
    }

    /// The explained output of every row of `data`, (rows × K) row-major.
    fn outputs(&self, model: &Model, data: &crate::Dataset) -> Result<Vec<f64>> {
        let raw = crate::inference::predict_raw(model, data, self.chunk_rows.max(1) as i64)?;
        let out = match self.output {
            Output::Raw => raw,
            Output::Prob => crate::loss::activate(&model.cfg, &raw),
        };
        Ok(Vec::<f64>::from(
            &out.to_kind(tch::Kind::Double).contiguous().view([-1]),
        ))
    }

    /// v(z) for `n_jobs` (row, coalition) pairs, (n_jobs × K) row-major.
    /// `job(t, z)` writes job t's coalition into `z` (one flag per player:
    /// true = from the row) and returns its row. Forward passes run in
    /// chunks of about `chunk_rows` mixed rows; `poll` is called between
    /// them and stops the work (None) when it returns true.
    pub(crate) fn values(
        &self,
        model: &Model,
        n_jobs: usize,
        mut job: impl FnMut(usize, &mut [bool]) -> usize,
        poll: &mut dyn FnMut() -> bool,
    ) -> Result<Polled<Vec<f64>>> {
        // one set of process settings (threads, allocator) for all chunks:
        // each forward pass would otherwise take and restore them, trimming
        // the heap every time (the passes' own tokens nest inside this one)
        let _settings = crate::inference::run_settings(model);
        let m = self.bg_w.len();
        let per_chunk = (self.chunk_rows / m).max(1);
        let p = self.p();
        let mut out = Vec::with_capacity(n_jobs * self.k);
        let mut start = 0;
        let mut rows = Vec::with_capacity(per_chunk);
        let mut masks = vec![false; per_chunk * p];
        while start < n_jobs {
            let len = per_chunk.min(n_jobs - start);
            rows.clear();
            for t in 0..len {
                rows.push(job(start + t, &mut masks[t * p..(t + 1) * p]));
            }
            let data = self.mixer.mix(model, &rows, &masks[..len * p]);
            let y = self.outputs(model, &data)?;
            // background-weighted mean per job
            for t in 0..len {
                let mut acc = vec![0.0; self.k];
                for (b, w) in self.bg_w.iter().enumerate() {
                    let r = &y[(t * m + b) * self.k..(t * m + b + 1) * self.k];
                    for (a, v) in acc.iter_mut().zip(r) {
                        *a += w * v;
                    }
                }
                out.extend_from_slice(&acc);
            }
            start += len;
            if start < n_jobs && poll() {
                return Ok(None);
            }
        }
        Ok(Some(out))
    }
}

/// Results for a block of rows: values and (Kernel SHAP) standard errors,
/// each (rows × p × K) row-major, iterations and convergence per row.
#[derive(Debug, Clone)]
pub struct ShapBlock {
    pub values: Vec<f64>,
    pub se: Vec<f64>,
    pub n_iter: Vec<usize>,
    pub converged: Vec<bool>,
}

#[cfg(test)]
pub(crate) mod tests;
