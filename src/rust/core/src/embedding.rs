//! Categorical embeddings and the map between embedded dimensions and the
//! original predictor columns (the attention groups).
//!
//! The embedded input puts numeric columns first and each categorical column's
//! embedding after them; attention, priors and explanations stay in the
//! original column order, and a column's mask is spread over its embedding
//! dimensions (weight 1/e each, as in pytorch-tabnet 4.x), so one column's
//! embedding always shares one attention weight.
use crate::config::NetConfig;
use tch::{nn, Device, Kind, Tensor};

#[derive(Debug)]
pub struct Embedder {
    pub tables: Vec<Tensor>,
    /// Original column of each embedded dimension (i64, length D).
    pub column_of_dim: Tensor,
    /// 1/e for each embedded dimension (None when every column has width 1).
    pub dim_scale: Option<Tensor>,
    /// True when embedded dimensions and columns coincide, in order.
    pub identity: bool,
}

impl Embedder {
    pub fn new(p: &nn::Path, cfg: &NetConfig) -> Self {
        let tables = cfg
            .cat_levels
            .iter()
            .zip(&cfg.cat_emb_dims)
            .enumerate()
            .map(|(k, (&levels, &e))| {
                p.var(
                    &format!("cat{k}"),
                    &[levels as i64 + 1, e as i64],
                    nn::Init::Randn {
                        mean: 0.0,
                        stdev: 1.0,
                    },
                )
            })
            .collect();
        let cols = cfg.column_of_dim();
        let identity = cols.iter().enumerate().all(|(i, &c)| i as i64 == c);
        let mut scale = Vec::with_capacity(cols.len());
        scale.extend(std::iter::repeat_n(1.0f32, cfg.num_cols.len()));
        for &e in &cfg.cat_emb_dims {
            scale.extend(std::iter::repeat_n(1.0 / e as f32, e));
        }
        let dim_scale = if cfg.cat_emb_dims.iter().all(|&e| e == 1) {
            None
        } else {
            Some(Tensor::of_slice(&scale).to_device(p.device()))
        };
        Embedder {
            tables,
            column_of_dim: Tensor::of_slice(&cols).to_device(p.device()),
            dim_scale,
            identity,
        }
    }

    /// (B, n_num) floats and (B, n_cat) codes → (B, D).
    pub fn forward(&self, x_num: &Tensor, x_cat: Option<&Tensor>) -> Tensor {
        match x_cat {
            None => x_num.shallow_clone(),
            Some(codes) => {
                let mut parts = Vec::with_capacity(self.tables.len() + 1);
                if x_num.size()[1] > 0 {
                    parts.push(x_num.shallow_clone());
                }
                for (k, table) in self.tables.iter().enumerate() {
                    parts.push(Tensor::embedding(
                        table,
                        &codes.select(1, k as i64),
                        -1,
                        false,
                        false,
                    ));
                }
                Tensor::cat(&parts, 1)
            }
        }
    }

    /// Column-level mask (B, F) → embedded-level mask (B, D).
    pub fn expand(&self, m: &Tensor) -> Tensor {
        if self.identity {
            return m.shallow_clone();
        }
        let e = m.index_select(1, &self.column_of_dim);
        match &self.dim_scale {
            Some(s) => e * s,
            None => e,
        }
    }

    /// Column-level 0/1 mask (B, F) → 0/1 per embedded dimension (B, D).
    pub fn expand_binary(&self, m: &Tensor) -> Tensor {
        if self.identity {
            m.shallow_clone()
        } else {
            m.index_select(1, &self.column_of_dim)
        }
    }
}

/// Ones of shape (B, F): the initial prior when nothing is missing.
pub fn ones_prior(b: i64, f: i64, device: Device) -> Tensor {
    Tensor::ones(&[b, f], (Kind::Float, device))
}
