//! The supervised TabNet: embedder → encoder → Σ step outputs → bias-free head.
use crate::config::NetConfig;
use crate::data::Batch;
use crate::embedding::Embedder;
use crate::encoder::{Backend, Encoder, Pass};
use crate::init;
use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub struct TabNet {
    pub(crate) embedder: Embedder,
    pub(crate) encoder: Encoder,
    pub(crate) head: Tensor,
}

/// Explanation of a batch at column level.
pub struct Explanation {
    /// Σ_i η_i M_i, (B, F), not normalised (pytorch-tabnet's `M_explain`);
    /// with groups, each column holds its group's value divided by the group's size.
    pub m_explain: Tensor,
    /// M_i per step, (B, F) (per column, as `m_explain`).
    pub masks: Vec<Tensor>,
    /// The backend that ran the encoder.
    pub backend: Backend,
}

impl TabNet {
    pub fn new(p: &nn::Path, cfg: &NetConfig) -> Self {
        TabNet {
            embedder: Embedder::new(&(p / "embedder"), cfg),
            encoder: Encoder::new(&(p / "encoder"), cfg),
            head: p.var(
                "head",
                &[cfg.output_dim() as i64, cfg.n_d as i64],
                init::non_glu_fc(cfg.init, cfg.n_d as i64, cfg.output_dim() as i64),
            ),
        }
    }

    /// Returns (logits or values (B, out), sparsity term M_loss ≤ 0, the
    /// encoder's pass: in training, complete its backward after
    /// `loss.backward()`, see [`Encoder::forward`]).
    pub fn forward(&self, b: &Batch, train: bool, backend: Backend) -> (Tensor, Tensor, Pass) {
        let x = self.embedder.forward(&b.x_num, b.x_cat.as_ref());
        let prior = b.present.as_ref().map(|p| self.embedder.group_prior(p));
        let enc = self
            .encoder
            .forward(&x, prior.as_ref(), &self.embedder, train, false, backend);
        let out = enc.decision().linear::<Tensor>(&self.head, None);
        (out, enc.m_loss, enc.pass)
    }

    pub fn explain(&self, b: &Batch, backend: Backend) -> Explanation {
        explain_encoder(&self.embedder, &self.encoder, b, backend)
    }
}

/// Masks of an encoder (supervised or pretrained) in eval mode, without
/// obfuscation: η_i = Σ_c ReLU(d_i,c) weighs step i's mask in M_explain.
pub fn explain_encoder(
    embedder: &Embedder,
    encoder: &Encoder,
    b: &Batch,
    backend: Backend,
) -> Explanation {
    let x = embedder.forward(&b.x_num, b.x_cat.as_ref());
    let prior = b.present.as_ref().map(|p| embedder.group_prior(p));
    let enc = encoder.forward(&x, prior.as_ref(), embedder, false, true, backend);
    // at group level, then each column gets its group's share (1/|g|)
    let mut m_explain = Tensor::zeros_like(&enc.masks[0]);
    for (m, d) in enc.masks.iter().zip(&enc.steps) {
        let eta = d.sum_dim_intlist(Some(&[1i64][..]), true, Kind::Float);
        m_explain += m * eta;
    }
    Explanation {
        m_explain: embedder.to_columns(&m_explain),
        masks: enc.masks.iter().map(|m| embedder.to_columns(m)).collect(),
        backend: enc.pass.backend(),
    }
}
