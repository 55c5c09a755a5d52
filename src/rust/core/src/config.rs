//! The network's architecture, persisted beside its weights (serde JSON).
use crate::error::{invalid, Result};
use crate::msg;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskType {
    Sparsemax,
    Entmax,
}

/// How the linear layers' weights are drawn (see `init`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Initialization {
    /// pytorch-tabnet's Xavier-normal with custom gains (the default).
    #[default]
    PytorchTabnet,
    /// Glorot-uniform, as the paper's TensorFlow code (`tf.layers.dense`).
    GlorotUniform,
}

impl Initialization {
    fn is_default(&self) -> bool {
        *self == Initialization::PytorchTabnet
    }
}

/// The task loss of a supervised network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskLoss {
    /// The task's own: cross-entropy, squared error, or C-HMCNN's MCLoss.
    #[default]
    Auto,
    /// AUM, the area under min(FPR, FNR) of the batch's ROC curve (Hillman &
    /// Hocking, 2023; `loss::aum`): one binary classification outcome only.
    Aum,
}

impl TaskLoss {
    fn is_default(&self) -> bool {
        *self == TaskLoss::Auto
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// One softmax (cross-entropy) per outcome; `output_dims[k]` = number of classes.
    Classification,
    /// Mean squared error; `output_dims` are all 1.
    Regression,
    /// Hierarchical classification (C-HMCNN, Giunchiglia & Lukasiewicz, 2020):
    /// one sigmoid output per node of every outcome level (`output_dims[k]`
    /// nodes at level k, top level first), tied by [`NetConfig::parent`].
    Hierarchical,
}

/// Everything needed to rebuild the network before loading its weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Original (predictor-order) index of each numeric column, in tensor order.
    pub num_cols: Vec<usize>,
    /// Original index of each categorical column, in tensor order.
    pub cat_cols: Vec<usize>,
    /// Number of levels of each categorical column (slot 0 is reserved for
    /// NA / unseen levels, so each embedding table has `levels + 1` rows).
    pub cat_levels: Vec<usize>,
    /// Embedding width of each categorical column.
    pub cat_emb_dims: Vec<usize>,
    /// Output width per outcome (classes, or 1 for regression).
    pub output_dims: Vec<usize>,
    pub task: Task,
    pub n_d: usize,
    pub n_a: usize,
    pub n_steps: usize,
    pub gamma: f64,
    pub n_independent: usize,
    pub n_shared: usize,
    pub n_independent_decoder: usize,
    pub n_shared_decoder: usize,
    pub virtual_batch_size: usize,
    /// PyTorch convention: running = (1 - m)·running + m·batch.
    pub momentum: f64,
    pub epsilon: f64,
    pub mask_type: MaskType,
    /// Hierarchical task only: the parent of each output node (in output
    /// order), which is a node of the level above; `None` for the top level.
    /// Empty (and not serialised) for the other tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent: Vec<Option<usize>>,
    /// Column groups that share one attention weight (pytorch-tabnet 4.x's
    /// `grouped_features`), as original predictor indices. A column in no
    /// group is a group of its own; empty (and then left out of the JSON, so
    /// ungrouped models keep their configuration and digest) means no groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grouped_features: Vec<Vec<usize>>,
    /// How the weights were drawn; left out of the JSON at the default, so
    /// earlier models keep their configuration and digest.
    #[serde(default, skip_serializing_if = "Initialization::is_default")]
    pub init: Initialization,
    /// The task loss; left out of the JSON at the default, so earlier models
    /// keep their configuration and digest.
    #[serde(default, skip_serializing_if = "TaskLoss::is_default")]
    pub loss: TaskLoss,
}

impl NetConfig {
    /// Number of original predictor columns.
    pub fn n_features(&self) -> usize {
        self.num_cols.len() + self.cat_cols.len()
    }

    /// Number of attention groups (the width of every mask): the
    /// `grouped_features`, then one per column in no group.
    pub fn n_groups(&self) -> usize {
        self.attention_groups().len()
    }

    /// The attention groups as original column indices: `grouped_features`
    /// in their order, then every other column alone, in predictor order (the
    /// order of pytorch-tabnet's group matrix). Without groups, group j is
    /// column j. Assumes a validated configuration.
    pub(crate) fn attention_groups(&self) -> Vec<Vec<usize>> {
        let f = self.n_features();
        let mut grouped = vec![false; f];
        let mut out = self.grouped_features.clone();
        for &c in self.grouped_features.iter().flatten() {
            if c < f {
                grouped[c] = true;
            }
        }
        out.extend((0..f).filter(|&c| !grouped[c]).map(|c| vec![c]));
        out
    }

    /// The attention group of each original column, and the size of that
    /// group (both indexed by column). Assumes a validated configuration.
    pub(crate) fn group_of_column(&self) -> (Vec<usize>, Vec<usize>) {
        let f = self.n_features();
        let (mut group, mut size) = (vec![0; f], vec![1; f]);
        for (g, members) in self.attention_groups().iter().enumerate() {
            for &c in members {
                if c < f {
                    group[c] = g;
                    size[c] = members.len();
                }
            }
        }
        (group, size)
    }

    /// Width after embedding.
    pub fn embedded_dim(&self) -> usize {
        self.num_cols.len() + self.cat_emb_dims.iter().sum::<usize>()
    }

    pub(crate) fn output_dim(&self) -> usize {
        self.output_dims.iter().sum()
    }

    /// Checks that the architecture can be built; every message names the argument.
    pub(crate) fn validate(&self) -> Result<()> {
        let f = self.n_features();
        if f == 0 {
            return invalid(msg!("The model needs at least one predictor column."));
        }
        let mut seen = vec![false; f];
        for &c in self.num_cols.iter().chain(self.cat_cols.iter()) {
            if c >= f || seen[c] {
                return invalid(msg!(
                    "The column indices must be a permutation of the predictors."
                ));
            }
            seen[c] = true;
        }
        if self.cat_levels.len() != self.cat_cols.len()
            || self.cat_emb_dims.len() != self.cat_cols.len()
        {
            return invalid(msg!(
                "One level count and one embedding width are needed per categorical predictor."
            ));
        }
        if self.cat_emb_dims.contains(&0) {
            return invalid(msg!("{.arg cat_emb_dim} must be at least 1."));
        }
        if self.output_dims.is_empty() || self.output_dims.contains(&0) {
            return invalid(msg!("The model needs at least one outcome."));
        }
        if self.task == Task::Classification && self.output_dims.iter().any(|&d| d < 2) {
            return invalid(msg!("A classification outcome needs at least two levels."));
        }
        self.validate_hierarchy()?;
        if self.loss == TaskLoss::Aum
            && !(self.task == Task::Classification && self.output_dims == [2])
        {
            return invalid(msg!(
                "{.code loss = \"aum\"} needs a single binary classification outcome."
            ));
        }
        if self.n_d == 0 || self.n_a == 0 {
            return invalid(msg!(
                "{.arg decision_width} and {.arg attention_width} must be at least 1."
            ));
        }
        if self.n_steps == 0 {
            return invalid(msg!("{.arg num_steps} must be at least 1."));
        }
        if self.n_shared == 0 && self.n_independent == 0 {
            return invalid(msg!(
                "{.arg num_shared} and {.arg num_independent} cannot both be 0."
            ));
        }
        if self.n_shared_decoder == 0 && self.n_independent_decoder == 0 {
            return invalid(msg!(
                "{.arg num_shared_decoder} and {.arg num_independent_decoder} cannot both be 0."
            ));
        }
        if self.virtual_batch_size < 2 {
            return invalid(msg!("{.arg virtual_batch_size} must be at least 2."));
        }
        if !(self.momentum > 0.0 && self.momentum <= 1.0) {
            return invalid(msg!(
                "{.arg momentum} must be in (0, 1] (PyTorch convention)."
            ));
        }
        if self.gamma.is_nan() || self.gamma < 1.0 || !self.gamma.is_finite() {
            return invalid(msg!(
                "{.arg feature_reusage} (gamma) must be a finite number >= 1."
            ));
        }
        let mut in_group = vec![false; f];
        for members in &self.grouped_features {
            if members.is_empty() {
                return invalid(msg!(
                    "Every group of {.arg grouped_features} needs at least one predictor."
                ));
            }
            for &c in members {
                if c >= f {
                    return invalid(msg!(
                        "{.arg grouped_features} refers to predictor {column}, but there are {n}.",
                        column = c + 1,
                        n = f
                    ));
                }
                if in_group[c] {
                    return invalid(msg!(
                        "Predictor {column} is in more than one group of {.arg grouped_features}.",
                        column = c + 1
                    ));
                }
                in_group[c] = true;
            }
        }
        Ok(())
    }

    /// The hierarchy must be a forest over the output levels: every node of
    /// the top level is a root, every other node's parent is a node of the
    /// level just above (so there are no cycles).
    fn validate_hierarchy(&self) -> Result<()> {
        if self.task != Task::Hierarchical {
            if !self.parent.is_empty() {
                return invalid(msg!("Only a hierarchical outcome has a node hierarchy."));
            }
            return Ok(());
        }
        if self.parent.len() != self.output_dim() {
            return invalid(msg!(
                "The hierarchy needs one parent entry per output node."
            ));
        }
        let mut start = 0;
        let mut above: Option<(usize, usize)> = None;
        for &d in &self.output_dims {
            for node in start..start + d {
                match (self.parent[node], above) {
                    (None, None) => {}
                    (Some(p), Some((lo, hi))) if p >= lo && p < hi => {}
                    (None, Some(_)) => {
                        return invalid(msg!(
                            "Hierarchy node {node} below the top level has no parent.",
                            node = node
                        ))
                    }
                    (Some(_), _) => {
                        return invalid(msg!(
                            "The parent of hierarchy node {node} is not a node of the level above.",
                            node = node
                        ))
                    }
                }
            }
            above = Some((start, start + d));
            start += d;
        }
        Ok(())
    }

    /// The original column of every embedded dimension, in tensor order.
    pub(crate) fn column_of_dim(&self) -> Vec<i64> {
        let mut out: Vec<i64> = self.num_cols.iter().map(|&c| c as i64).collect();
        for (k, &c) in self.cat_cols.iter().enumerate() {
            out.extend(std::iter::repeat_n(c as i64, self.cat_emb_dims[k]));
        }
        out
    }

    /// The attention group of every embedded dimension, in tensor order.
    pub(crate) fn group_of_dim(&self) -> Vec<i64> {
        let (group, _) = self.group_of_column();
        self.column_of_dim()
            .into_iter()
            .map(|c| group[c as usize] as i64)
            .collect()
    }

    /// A small config for tests.
    pub fn example(n_num: usize, output_dims: Vec<usize>, task: Task) -> Self {
        NetConfig {
            num_cols: (0..n_num).collect(),
            cat_cols: vec![],
            cat_levels: vec![],
            cat_emb_dims: vec![],
            output_dims,
            task,
            n_d: 8,
            n_a: 8,
            n_steps: 3,
            gamma: 1.3,
            n_independent: 2,
            n_shared: 2,
            n_independent_decoder: 1,
            n_shared_decoder: 1,
            virtual_batch_size: 128,
            momentum: 0.02,
            epsilon: 1e-15,
            mask_type: MaskType::Sparsemax,
            parent: vec![],
            grouped_features: vec![],
            init: Initialization::PytorchTabnet,
            loss: TaskLoss::Auto,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hier(output_dims: Vec<usize>, parent: Vec<Option<usize>>) -> NetConfig {
        let mut cfg = NetConfig::example(2, output_dims, Task::Hierarchical);
        cfg.parent = parent;
        cfg
    }

    #[test]
    fn a_hierarchy_is_validated() {
        // 2 roots, 3 children
        assert!(
            hier(vec![2, 3], vec![None, None, Some(0), Some(0), Some(1)])
                .validate()
                .is_ok()
        );
        // one level: no parents at all
        assert!(hier(vec![3], vec![None, None, None]).validate().is_ok());
        // wrong length
        assert!(hier(vec![2, 3], vec![None, None, Some(0)])
            .validate()
            .is_err());
        // a parent in the same level (a cycle is impossible otherwise)
        assert!(
            hier(vec![2, 3], vec![None, None, Some(0), Some(3), Some(1)])
                .validate()
                .is_err()
        );
        // a parent two levels up
        assert!(hier(vec![1, 1, 1], vec![None, Some(0), Some(0)])
            .validate()
            .is_err());
        // a top-level node with a parent, a lower node without one
        assert!(hier(vec![1, 1], vec![Some(0), Some(0)]).validate().is_err());
        assert!(hier(vec![1, 1], vec![None, None]).validate().is_err());
        // a self-parent
        assert!(hier(vec![1, 1], vec![None, Some(1)]).validate().is_err());
        // other tasks have no hierarchy
        let mut cfg = NetConfig::example(2, vec![2], Task::Classification);
        cfg.parent = vec![None, None];
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn the_hierarchy_is_serialised_only_when_there_is_one() {
        let cfg = NetConfig::example(2, vec![2], Task::Classification);
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(!json.contains("parent"));
        let back: NetConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cfg);
        let h = hier(vec![1, 2], vec![None, Some(0), Some(0)]);
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.contains("\"task\":\"hierarchical\""));
        assert!(json.contains("\"parent\":[null,0,0]"));
        let back: NetConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
    }
}
