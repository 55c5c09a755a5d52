//! Feature importances: TabNet's own mask importance, and three model-agnostic
//! ones from the interpretability studies, all computed with batched forward
//! passes over the whole data (no per-row or per-feature work outside libtorch
//! except the metric, which runs in parallel over repeats with rayon).
//!
//! * permutation: drop of the metric when a column is shuffled (n repeats);
//! * occlusion: drop of the metric when a column is replaced by its mean
//!   (numeric) or its most frequent level (categorical);
//! * MAD relevance: mean absolute change of the model output under the same
//!   replacement.
//!
//! Metric: AUC for one binary outcome, accuracy for other classification,
//! RMSE for regression (whose "drop" is its increase).
use crate::config::Task;
use crate::data::Dataset;
use crate::error::{invalid, Result};
use crate::inference;
use crate::metrics;
use crate::model::Model;
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
            other => invalid(format!("unknown importance method \"{other}\"")),
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
    /// hierarchical: the parent of each output node
    parent: Vec<Option<usize>>,
}

impl Scorer {
    fn new(model: &Model, data: &Dataset) -> Result<Scorer> {
        let y = match &data.y {
            Some(y) => y.to_device(Device::Cpu),
            None => return invalid("this importance method needs the outcome in `new_data`"),
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
        Ok(Scorer {
            task: model.cfg.task,
            dims: model.cfg.output_dims.clone(),
            y_class,
            y_value,
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
    fn score(&self, pred: &[f64]) -> f64 {
        let width: usize = self.dims.iter().sum();
        let n = pred.len() / width;
        let k_out = self.dims.len();
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
            Task::Classification if self.dims == [2] => {
                let p: Vec<f64> = (0..n).map(|r| pred[r * 2 + 1]).collect();
                let l: Vec<bool> = self.y_class.iter().map(|&c| c == 1).collect();
                metrics::auc(&p, &l)
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

/// Model-agnostic importance of every predictor column.
pub fn model_agnostic(
    model: &Model,
    data: &Dataset,
    method: Method,
    n_repeats: usize,
    batch_size: i64,
) -> Result<Importance> {
    model.supervised()?;
    let scorer = if method == Method::Mad {
        None
    } else {
        Some(Scorer::new(model, data)?)
    };
    let base_pred = inference::predict(model, data, batch_size)?;
    let base_host = to_host(&base_pred);
    let baseline = scorer
        .as_ref()
        .map(|s| s.score(&base_host))
        .unwrap_or(f64::NAN);
    let repeats = if method == Method::Permutation {
        n_repeats.max(1)
    } else {
        1
    };
    let work = Dataset {
        n: data.n,
        x_num: data.x_num.copy(),
        x_cat: data.x_cat.as_ref().map(|t| t.copy()),
        present: data.present.as_ref().map(|t| t.shallow_clone()),
        y: None,
        w: None,
    };
    let cfg = &model.cfg;
    let mut values = vec![Vec::new(); cfg.n_features()];
    for (feature, slot) in values.iter_mut().enumerate() {
        // a shallow clone shares storage: writing into it edits `work`
        let (tensor, col) = match cfg.num_cols.iter().position(|&c| c == feature) {
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
        };
        let original = tensor.select(1, col).copy();
        let mut preds = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            let replacement = match method {
                Method::Permutation => original.index_select(
                    0,
                    &Tensor::randperm(data.n, (Kind::Int64, original.device())),
                ),
                _ if original.kind() == Kind::Int64 => {
                    let mode = original.bincount::<Tensor>(None, 0).argmax(None, false);
                    original.zeros_like() + mode
                }
                _ => original.zeros_like() + original.mean(Kind::Float),
            };
            tensor.select(1, col).copy_(&replacement);
            let p = inference::predict(model, &work, batch_size)?;
            preds.push(match method {
                Method::Mad => vec![(p - &base_pred).abs().mean(Kind::Double).double_value(&[])],
                _ => to_host(&p),
            });
        }
        tensor.select(1, col).copy_(&original);
        *slot = match &scorer {
            None => preds.into_iter().map(|v| v[0]).collect(),
            // on the kernels' pool (fork-safe, see `crate::process`)
            Some(s) => crate::kernels::with_pool(|| {
                preds
                    .par_iter()
                    .map(|p| {
                        let v = s.score(p);
                        baseline - v
                    })
                    .collect()
            }),
        };
    }
    Ok(Importance {
        values,
        baseline: if scorer.as_ref().map(|s| s.task) == Some(Task::Regression) {
            -baseline
        } else {
            baseline
        },
        metric: scorer.as_ref().map(|s| s.name()).unwrap_or("mad"),
    })
}
