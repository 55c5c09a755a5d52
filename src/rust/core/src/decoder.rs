//! Self-supervised decoder: a feature transformer per step on that step's
//! decision output (its own shared FCs), outputs summed, then one bias-free
//! reconstruction FC back to the embedded width.
use crate::config::NetConfig;
use crate::feature_transformer::{shared_fcs, FeatureTransformer, LayerSettings};
use crate::init;
use tch::nn::ModuleT;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct Decoder {
    pub transformers: Vec<FeatureTransformer>,
    pub reconstruction: Tensor,
}

impl Decoder {
    pub fn new(p: &nn::Path, cfg: &NetConfig) -> Self {
        let n_d = cfg.n_d as i64;
        let vbs = cfg.virtual_batch_size as i64;
        let shared = shared_fcs(&(p / "shared"), n_d, n_d, cfg.n_shared_decoder, cfg.init);
        let transformers = (0..cfg.n_steps)
            .map(|i| {
                FeatureTransformer::new(
                    &(p / format!("ft{i}")),
                    &shared,
                    n_d,
                    n_d,
                    cfg.n_independent_decoder,
                    LayerSettings {
                        vbs,
                        momentum: cfg.momentum,
                        init: cfg.init,
                    },
                )
            })
            .collect();
        Decoder {
            transformers,
            reconstruction: p.var(
                "reconstruction",
                &[cfg.embedded_dim() as i64, n_d],
                init::non_glu_fc(cfg.init, n_d, cfg.embedded_dim() as i64),
            ),
        }
    }

    pub fn forward_t(&self, steps: &[Tensor], train: bool) -> Tensor {
        let mut sum: Option<Tensor> = None;
        for (ft, d) in self.transformers.iter().zip(steps) {
            let o = ft.forward_t(d, train);
            sum = Some(match sum {
                None => o,
                Some(s) => s + o,
            });
        }
        sum.expect("at least one step")
            .linear::<Tensor>(&self.reconstruction, None)
    }
}
