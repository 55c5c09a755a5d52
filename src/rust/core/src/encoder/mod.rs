//! The TabNet encoder: initial BN, initial splitter, and N decision steps of
//! attentive transformer → masked feature transformer.
//!
//! One pass, two implementations, picked per call with a [`Backend`]:
//! [`autograd`] runs the modules under libtorch's autograd (any device and
//! kind; the reference), [`fused`] is the hand-derived forward and backward
//! with fused CPU kernels (f32 on the CPU; the default there). Both see the
//! encoder's parameters through this module only.
mod autograd;
mod fused;
pub(crate) use fused::TapeBuffers;
pub(crate) use fused::{run_batch, EvalPlan, Outputs};

use crate::attentive::AttentiveTransformer;
use crate::config::NetConfig;
use crate::embedding::Embedder;
use crate::feature_transformer::{shared_fcs, FeatureTransformer, LayerSettings};
use crate::ghost_bn::BatchNorm;
use tch::nn::ModuleT;
use tch::{nn, Device, Tensor};

/// Which implementation runs an encoder pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The hand-derived pass with fused CPU kernels. It handles f32 CPU input
    /// (of at least two rows in training); other input runs on autograd, and
    /// the pass reports which one ran (`Pass::backend`).
    Fused,
    /// libtorch's autograd over the modules: any device and kind.
    Autograd,
}

impl Backend {
    /// The default on `device`: fused on the CPU, autograd elsewhere.
    pub fn for_device(device: Device) -> Backend {
        if device == Device::Cpu {
            Backend::Fused
        } else {
            Backend::Autograd
        }
    }
}

#[derive(Debug)]
pub struct Encoder {
    pub(crate) initial_bn: BatchNorm,
    pub(crate) splitter: FeatureTransformer,
    pub(crate) transformers: Vec<FeatureTransformer>,
    pub(crate) attention: Vec<AttentiveTransformer>,
    pub(crate) n_d: i64,
    pub(crate) gamma: f64,
    epsilon: f64,
    /// the fused training tape's activations, recycled across batches
    pub(crate) tape_buffers: std::sync::Arc<fused::TapeBuffers>,
}

/// What one encoder pass produces.
pub struct EncoderOutput {
    /// ReLU decision output of each step, (B, n_d).
    pub steps: Vec<Tensor>,
    /// Their sum, when the pass made it (the fused training pass, as its own
    /// autograd leaf: its gradient reaches every step); see [`EncoderOutput::decision`].
    pub decision: Option<Tensor>,
    /// Mean over steps of Σ_j M log(M + ε) averaged over rows (≤ 0).
    pub m_loss: Tensor,
    /// Group-level masks per step, (B, G); empty unless requested.
    pub masks: Vec<Tensor>,
    /// Which backend ran, and what of it remains to run.
    pub pass: Pass,
}

impl EncoderOutput {
    /// Σ over steps of the decision outputs, (B, n_d): what the supervised
    /// head reads.
    pub fn decision(&self) -> Tensor {
        match &self.decision {
            Some(d) => d.shallow_clone(),
            None => self
                .steps
                .iter()
                .skip(1)
                .fold(self.steps[0].shallow_clone(), |acc, s| acc + s),
        }
    }
}

/// The rest of an encoder pass: which backend ran it and, for a fused
/// training pass, its hand-derived backward, to run after `loss.backward()`.
pub struct Pass {
    backend: Backend,
    tape: Option<fused::Tape>,
}

impl Pass {
    /// The backend that ran the pass.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Completes the backward of a fused training pass: call it after
    /// `loss.backward()`. Nothing to do for autograd (or in eval mode).
    pub fn backward(self) {
        if let Some(t) = self.tape {
            t.backward();
        }
    }
}

impl Encoder {
    pub fn new(p: &nn::Path, cfg: &NetConfig) -> Self {
        let d = cfg.embedded_dim() as i64;
        let h = (cfg.n_d + cfg.n_a) as i64;
        let vbs = cfg.virtual_batch_size as i64;
        let shared = shared_fcs(&(p / "shared"), d, h, cfg.n_shared, cfg.init);
        let ft = |name: String| {
            FeatureTransformer::new(
                &(p / name),
                &shared,
                d,
                h,
                cfg.n_independent,
                LayerSettings {
                    vbs,
                    momentum: cfg.momentum,
                    init: cfg.init,
                },
            )
        };
        let splitter = ft("splitter".to_string());
        let transformers = (0..cfg.n_steps).map(|i| ft(format!("ft{i}"))).collect();
        let attention = (0..cfg.n_steps)
            .map(|i| {
                AttentiveTransformer::new(
                    &(p / format!("att{i}")),
                    cfg.n_a as i64,
                    cfg.n_groups() as i64,
                    vbs,
                    cfg.momentum,
                    cfg.mask_type,
                    cfg.init,
                )
            })
            .collect();
        Encoder {
            initial_bn: BatchNorm::new(&(p / "initial_bn"), d, cfg.momentum),
            splitter,
            transformers,
            attention,
            n_d: cfg.n_d as i64,
            gamma: cfg.gamma,
            epsilon: cfg.epsilon,
            tape_buffers: Default::default(),
        }
    }

    /// Number of attention groups the masks select from (the columns, unless
    /// `grouped_features` joins some).
    pub fn n_groups(&self) -> i64 {
        self.attention[0].fc.size()[0]
    }

    /// Width of the attention part of each step's output.
    fn n_a(&self) -> i64 {
        self.attention[0].fc.size()[1]
    }

    /// `x` is the embedded input (B, D) before the initial BN; `prior` the
    /// initial prior over the groups (B, G), ones when `None`. In training the output's
    /// [`Pass::backward`] must run after `loss.backward()`; `keep_masks` (for
    /// explanations) keeps each step's mask.
    pub fn forward(
        &self,
        x: &Tensor,
        prior: Option<&Tensor>,
        embedder: &Embedder,
        train: bool,
        keep_masks: bool,
        backend: Backend,
    ) -> EncoderOutput {
        let fused = backend == Backend::Fused && fused::applicable(x, train);
        if fused && train && !keep_masks {
            // the fused training pass (its own initial BN; it keeps no masks)
            return fused::forward_train(self, embedder, x, prior);
        }
        let x0 = self.initial_bn.forward_t(x, train);
        if fused && !train {
            fused::forward_eval(self, embedder, &x0, prior, keep_masks)
        } else {
            autograd::forward(self, embedder, &x0, prior, train, keep_masks)
        }
    }
}
