//! The TabNet encoder: initial BN, initial splitter, and N decision steps of
//! attentive transformer → masked feature transformer.
use crate::attentive::AttentiveTransformer;
use crate::config::NetConfig;
use crate::embedding::{ones_prior, Embedder};
use crate::feature_transformer::{shared_fcs, FeatureTransformer};
use crate::ghost_bn::BatchNorm;
use crate::manual_encoder::{self, EncoderTape};
use tch::nn::ModuleT;
use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub struct Encoder {
    pub bn: BatchNorm,
    pub splitter: FeatureTransformer,
    pub transformers: Vec<FeatureTransformer>,
    pub attention: Vec<AttentiveTransformer>,
    pub n_d: i64,
    pub gamma: f64,
    pub epsilon: f64,
}

/// What one encoder pass produces.
pub struct EncoderOutput {
    /// ReLU decision output of each step, (B, n_d).
    pub steps: Vec<Tensor>,
    /// Mean over steps of Σ_j M log(M + ε) averaged over rows (≤ 0).
    pub m_loss: Tensor,
    /// Column-level masks per step, (B, F); empty unless requested.
    pub masks: Vec<Tensor>,
    /// Set by the hand-derived training pass ([`crate::manual_encoder`]): its
    /// backward must run after `loss.backward()`.
    pub tape: Option<EncoderTape>,
}

impl Encoder {
    pub fn new(p: &nn::Path, cfg: &NetConfig) -> Self {
        let d = cfg.embedded_dim() as i64;
        let h = (cfg.n_d + cfg.n_a) as i64;
        let vbs = cfg.virtual_batch_size as i64;
        let shared = shared_fcs(&(p / "shared"), d, h, cfg.n_shared);
        let ft = |name: String| {
            FeatureTransformer::new(
                &(p / name),
                &shared,
                d,
                h,
                cfg.n_independent,
                vbs,
                cfg.momentum,
            )
        };
        let splitter = ft("splitter".to_string());
        let transformers = (0..cfg.n_steps).map(|i| ft(format!("ft{i}"))).collect();
        let attention = (0..cfg.n_steps)
            .map(|i| {
                AttentiveTransformer::new(
                    &(p / format!("att{i}")),
                    cfg.n_a as i64,
                    cfg.n_features() as i64,
                    vbs,
                    cfg.momentum,
                    cfg.mask_type,
                )
            })
            .collect();
        Encoder {
            bn: BatchNorm::new(&(p / "initial_bn"), d, cfg.momentum),
            splitter,
            transformers,
            attention,
            n_d: cfg.n_d as i64,
            gamma: cfg.gamma,
            epsilon: cfg.epsilon,
        }
    }

    /// Plain (non-ghost) batch norm on the embedded input.
    pub fn initial_bn(&self, x: &Tensor, train: bool) -> Tensor {
        self.bn.forward_t(x, train)
    }

    /// Training pass: the hand-derived encoder when it applies (CPU, f32), else
    /// autograd. The caller must run `tape.backward()` after `loss.backward()`.
    pub fn forward_train(
        &self,
        x: &Tensor,
        prior: Option<&Tensor>,
        embedder: &Embedder,
    ) -> EncoderOutput {
        if manual_encoder::applicable(x, true) {
            let x0 = self.initial_bn(x, true);
            return manual_encoder::forward(self, embedder, &x0, prior);
        }
        self.forward_t(x, prior, embedder, true, false)
    }

    /// `x` is the embedded input (B, D) before the initial BN; `prior` the initial
    /// prior (B, F), ones when `None`.
    pub fn forward_t(
        &self,
        x: &Tensor,
        prior: Option<&Tensor>,
        embedder: &Embedder,
        train: bool,
        keep_masks: bool,
    ) -> EncoderOutput {
        if !train && manual_encoder::applicable(x, false) {
            let x0 = self.initial_bn(x, false);
            return manual_encoder::forward_eval(self, embedder, &x0, prior, keep_masks);
        }
        let b = x.size()[0];
        let x = self.initial_bn(x, train);
        let n_groups = self.attention[0].fc.size()[0];
        let mut prior = match prior {
            Some(p) => p.shallow_clone(),
            None => ones_prior(b, n_groups, x.device()),
        };
        let mut a =
            self.splitter
                .forward_t(&x, train)
                .narrow(1, self.n_d, self.attention[0].fc.size()[1]);
        let mut steps = Vec::with_capacity(self.transformers.len());
        let mut masks = Vec::new();
        let mut m_loss = Tensor::zeros(&[], (Kind::Float, x.device()));
        for (att, ft) in self.attention.iter().zip(&self.transformers) {
            let m = att.forward_t(&prior, &a, train);
            m_loss += (&m * (&m + self.epsilon).log())
                .sum_dim_intlist(Some(&[1i64][..]), false, Kind::Float)
                .mean(Kind::Float);
            prior = &prior * (self.gamma - &m);
            let out = ft.forward_t(&(embedder.expand(&m) * &x), train);
            steps.push(out.narrow(1, 0, self.n_d).relu());
            a = out.narrow(1, self.n_d, out.size()[1] - self.n_d);
            if keep_masks {
                masks.push(m);
            }
        }
        let n = self.transformers.len() as f64;
        EncoderOutput {
            steps,
            m_loss: m_loss / n,
            masks,
            tape: None,
        }
    }
}
