//! Categorical embeddings and the maps between embedded dimensions, original
//! predictor columns and attention groups.
//!
//! The embedded input puts numeric columns first and each categorical column's
//! embedding after them; attention, priors and explanations stay in the
//! original column order. The attention has one entry per group (a column is
//! its own group unless `grouped_features` puts it in a larger one): a group's
//! mask is shared by its |g| columns (1/|g| each) and a column's share is
//! spread over its e embedding dimensions (1/e each), so the embedded mask of
//! dimension d is M[group(d)] / (|g| · e), as pytorch-tabnet 4.x's embedding
//! group matrix does.
use crate::config::NetConfig;
use tch::{nn, Device, Kind, Tensor};

#[derive(Debug)]
pub struct Embedder {
    pub tables: Vec<Tensor>,
    /// Original column of each embedded dimension (i64, length D).
    pub column_of_dim: Tensor,
    /// Attention group of each embedded dimension (i64, length D); the same
    /// values as `column_of_dim` without groups.
    pub group_of_dim: Tensor,
    /// 1/(|g|·e) for each embedded dimension (None when every column has
    /// width 1 and is alone in its group).
    pub dim_scale: Option<Tensor>,
    /// True when embedded dimensions, columns and groups coincide, in order.
    pub identity: bool,
    /// Group ↔ column maps; None without groups.
    grouping: Option<Grouping>,
}

/// How group-level masks and column-level presence convert into each other.
#[derive(Debug)]
struct Grouping {
    /// Group of each column (i64, length F).
    group_of_col: Tensor,
    /// 1/|g| for each column (length F).
    col_scale: Tensor,
    /// (F, G): 1/|g| where column j is in group g, else 0.
    mean_of_group: Tensor,
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
        let dev = p.device();
        let cols = cfg.column_of_dim();
        let column_of_dim = Tensor::of_slice(&cols).to_device(dev);
        if cfg.grouped_features.is_empty() {
            let identity = cols.iter().enumerate().all(|(i, &c)| i as i64 == c);
            let mut scale = Vec::with_capacity(cols.len());
            scale.extend(std::iter::repeat_n(1.0f32, cfg.num_cols.len()));
            for &e in &cfg.cat_emb_dims {
                scale.extend(std::iter::repeat_n(1.0 / e as f32, e));
            }
            let dim_scale = if cfg.cat_emb_dims.iter().all(|&e| e == 1) {
                None
            } else {
                Some(Tensor::of_slice(&scale).to_device(dev))
            };
            return Embedder {
                tables,
                group_of_dim: column_of_dim.shallow_clone(),
                column_of_dim,
                dim_scale,
                identity,
                grouping: None,
            };
        }
        let (group, size) = cfg.group_of_column();
        let (f, g) = (cfg.n_features(), cfg.n_groups());
        let mut width = vec![1usize; f];
        for (k, &c) in cfg.cat_cols.iter().enumerate() {
            width[c] = cfg.cat_emb_dims[k];
        }
        let scale: Vec<f32> = cols
            .iter()
            .map(|&c| 1.0 / (size[c as usize] * width[c as usize]) as f32)
            .collect();
        let col_scale: Vec<f32> = size.iter().map(|&s| 1.0 / s as f32).collect();
        let mut mean = vec![0.0f32; f * g];
        for c in 0..f {
            mean[c * g + group[c]] = col_scale[c];
        }
        let group_i64: Vec<i64> = group.iter().map(|&x| x as i64).collect();
        Embedder {
            tables,
            column_of_dim,
            group_of_dim: Tensor::of_slice(&cfg.group_of_dim()).to_device(dev),
            dim_scale: Some(Tensor::of_slice(&scale).to_device(dev)),
            identity: false,
            grouping: Some(Grouping {
                group_of_col: Tensor::of_slice(&group_i64).to_device(dev),
                col_scale: Tensor::of_slice(&col_scale).to_device(dev),
                mean_of_group: Tensor::of_slice(&mean)
                    .view([f as i64, g as i64])
                    .to_device(dev),
            }),
        }
    }

    /// True when the attention runs over groups larger than one column.
    pub fn grouped(&self) -> bool {
        self.grouping.is_some()
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

    /// Group-level mask (B, G) → embedded-level mask (B, D).
    pub fn expand(&self, m: &Tensor) -> Tensor {
        if self.identity {
            return m.shallow_clone();
        }
        let e = m.index_select(1, &self.group_of_dim);
        match &self.dim_scale {
            Some(s) => e * s,
            None => e,
        }
    }

    /// Group-level 0/1 mask (B, G) → 0/1 per embedded dimension (B, D).
    pub fn expand_binary(&self, m: &Tensor) -> Tensor {
        if self.identity {
            m.shallow_clone()
        } else {
            m.index_select(1, &self.group_of_dim)
        }
    }

    /// Column-level 0/1 mask (B, F) → 0/1 per embedded dimension (B, D).
    pub fn expand_columns_binary(&self, m: &Tensor) -> Tensor {
        if self.identity {
            m.shallow_clone()
        } else {
            m.index_select(1, &self.column_of_dim)
        }
    }

    /// Group-level mask (B, G) → column-level mask (B, F): each column gets
    /// its group's mask divided by the group's size (so rows still sum to 1).
    /// Without groups, the mask itself.
    pub fn to_columns(&self, m: &Tensor) -> Tensor {
        match &self.grouping {
            None => m.shallow_clone(),
            Some(g) => m.index_select(1, &g.group_of_col) * &g.col_scale,
        }
    }

    /// Column-level presence (B, F) of 0/1 → group-level prior (B, G): the
    /// share of a group's columns that are present. Without groups, the
    /// presence itself.
    pub fn group_prior(&self, present: &Tensor) -> Tensor {
        match &self.grouping {
            None => present.shallow_clone(),
            Some(g) => present.mm(&g.mean_of_group.to_kind(present.kind())),
        }
    }
}

/// Ones of shape (B, F): the initial prior when nothing is missing.
pub fn ones_prior(b: i64, f: i64, device: Device) -> Tensor {
    Tensor::ones(&[b, f], (Kind::Float, device))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Task;
    use crate::mask::sparsemax;

    /// 7 columns: numeric 0, 1, 3, 4, 5 and categorical 2 (width 3), 6
    /// (width 1); groups {0, 2, 4} and {6, 1}, so G = 2 + 3 singletons.
    fn cfg() -> NetConfig {
        let mut c = NetConfig::example(5, vec![2], Task::Classification);
        c.num_cols = vec![0, 1, 3, 4, 5];
        c.cat_cols = vec![2, 6];
        c.cat_levels = vec![4, 3];
        c.cat_emb_dims = vec![3, 1];
        c.grouped_features = vec![vec![0, 2, 4], vec![6, 1]];
        c
    }

    fn embedder(c: &NetConfig) -> Embedder {
        let vs = nn::VarStore::new(Device::Cpu);
        Embedder::new(&vs.root(), c)
    }

    #[test]
    fn groups_are_ordered_like_pytorch_tabnet() {
        let c = cfg();
        assert!(c.validate().is_ok());
        assert_eq!(
            c.attention_groups(),
            vec![vec![0, 2, 4], vec![6, 1], vec![3], vec![5]]
        );
        assert_eq!(c.n_groups(), 4);
        let (group, size) = c.group_of_column();
        assert_eq!(group, vec![0, 1, 0, 2, 0, 3, 1]);
        assert_eq!(size, vec![3, 2, 3, 1, 3, 1, 2]);
        // tensor order: numeric 0, 1, 3, 4, 5, then 2 (3 dims), then 6
        assert_eq!(c.group_of_dim(), vec![0, 1, 2, 0, 3, 0, 0, 0, 1]);
        // without groups, group j is column j
        let mut plain = c.clone();
        plain.grouped_features.clear();
        assert_eq!(plain.n_groups(), 7);
        assert_eq!(plain.group_of_dim(), plain.column_of_dim());
    }

    #[test]
    fn invalid_groups_are_refused() {
        for bad in [
            vec![vec![0, 1], vec![]],
            vec![vec![0, 7]],
            vec![vec![0, 1], vec![1, 2]],
            vec![vec![3, 3]],
        ] {
            let mut c = cfg();
            c.grouped_features = bad.clone();
            assert!(c.validate().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ungrouped_configurations_serialise_as_before() {
        let mut c = cfg();
        c.grouped_features.clear();
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("grouped_features"), "{json}");
        // a configuration saved before groups existed still reads
        let back: NetConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let g = cfg();
        let back: NetConfig = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        assert_eq!(back.grouped_features, g.grouped_features);
    }

    /// The group matrix, embedded: dimension d gets M[group(d)] / (|g| · e).
    #[test]
    fn group_mask_expands_to_columns_and_dimensions() {
        let c = cfg();
        let e = embedder(&c);
        assert!(e.grouped() && !e.identity);
        let m = Tensor::of_slice(&[0.5f64, 0.2, 0.3, 0.0]).view([1, 4]);
        let dims = Vec::<f64>::from(&e.expand(&m).view([-1]));
        // f32 scales: 1/(|g|·e) is rounded once (relative 2⁻²⁴ ≈ 6e-8)
        let want = [
            0.5 / 3.0, // col 0
            0.2 / 2.0, // col 1
            0.3,       // col 3
            0.5 / 3.0, // col 4
            0.0,       // col 5
            0.5 / 9.0, // col 2, 3 dims
            0.5 / 9.0,
            0.5 / 9.0,
            0.2 / 2.0, // col 6
        ];
        for (a, b) in dims.iter().zip(want) {
            assert!((a - b).abs() < 1e-7, "{dims:?}");
        }
        let cols = Vec::<f64>::from(&e.to_columns(&m).view([-1]));
        let want = [0.5 / 3.0, 0.1, 0.5 / 3.0, 0.3, 0.5 / 3.0, 0.0, 0.1];
        for (a, b) in cols.iter().zip(want) {
            assert!((a - b).abs() < 1e-7, "{cols:?}");
        }
        // a categorical column's dims sum back to its column's share, and the
        // dims of a row sum to the group mask's total
        assert!((dims.iter().sum::<f64>() - 1.0).abs() < 1e-7);
        // presence → prior: the share of a group's columns that are present
        let present = Tensor::of_slice(&[1.0f32, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]).view([1, 7]);
        let prior = Vec::<f32>::from(&e.group_prior(&present).view([-1]));
        let want = [2.0f32 / 3.0, 0.5, 1.0, 1.0];
        for (a, b) in prior.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{prior:?}");
        }
        // 0/1 maps
        let obf = Tensor::of_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([1, 4]);
        assert_eq!(
            Vec::<f32>::from(&e.expand_binary(&obf).view([-1])),
            vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
        );
        assert_eq!(
            Vec::<f32>::from(&e.expand_columns_binary(&present).view([-1])),
            vec![1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
        );
    }

    #[test]
    fn ungrouped_maps_are_unchanged() {
        let mut c = cfg();
        c.grouped_features.clear();
        let e = embedder(&c);
        assert!(!e.grouped());
        let m = Tensor::of_slice(&[0.1f32, 0.2, 0.3, 0.1, 0.1, 0.1, 0.1]).view([1, 7]);
        assert!(e.to_columns(&m).equal(&m));
        assert!(e.group_prior(&m).equal(&m));
        assert!(e.group_of_dim.equal(&e.column_of_dim));
    }

    /// Gradient of a grouped attention step, L = Σ w ⊙ x ⊙ expand(sparsemax(z)),
    /// against central finite differences (f64; h = 1e-6 gives truncation
    /// error ~h² and rounding ~1e-16/h ≈ 1e-10 per entry).
    #[test]
    fn grouped_attention_gradient_matches_finite_differences() {
        let c = cfg();
        let e = embedder(&c);
        let opts = (Kind::Double, Device::Cpu);
        let z0 = crate::test_data::normal(&[6, 4], 3);
        let x = crate::test_data::normal(&[6, 9], 4);
        let w = crate::test_data::normal(&[6, 9], 5);
        let f = |z: &Tensor| (e.expand(&sparsemax(z)) * &x * &w).sum(Kind::Double);
        let z = z0.copy().set_requires_grad(true);
        f(&z).backward();
        let analytic = z.grad();
        let h = 1e-6;
        let mut max_err = 0.0f64;
        for r in 0..6 {
            for k in 0..4 {
                let bump = Tensor::zeros(&[6, 4], opts);
                let _ = bump.get(r).get(k).fill_(h);
                let numeric = (f(&(&z0 + &bump)).double_value(&[])
                    - f(&(&z0 - &bump)).double_value(&[]))
                    / (2.0 * h);
                max_err = max_err.max((numeric - analytic.double_value(&[r, k])).abs());
            }
        }
        assert!(max_err < 1e-6, "gradient mismatch {max_err}");
    }
}
