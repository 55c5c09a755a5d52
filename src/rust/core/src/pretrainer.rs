//! Self-supervised pretraining (paper §"Self-supervised learning"): random
//! column groups are obfuscated, the encoder sees the rest (prior 0 on the
//! obfuscated groups), the decoder reconstructs the embedded input.
//!
//! Loss per row: Σ_j S_bj (x̂_bj − z_bj)² divided by the number of
//! obfuscated cells, averaged over rows, where z_bj = (x_bj − μ_j) / σ_j is the
//! input standardised with the *training-set* mean and variance of embedded
//! dimension j (fixed at initialisation, variance floored). This is the
//! paper's Σ S (x̂ − x)² / σ² with the decoder predicting in standardised
//! units: the loss is never negative, the decoder never has to produce raw
//! scales (a column of scale 1e-3 or 1e3), and a constant column cannot make
//! it explode (its target is 0).
use crate::config::NetConfig;
use crate::data::{Batch, Dataset};
use crate::decoder::Decoder;
use crate::embedding::Embedder;
use crate::encoder::{Backend, Encoder, Pass};
use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub struct Pretrainer {
    pub embedder: Embedder,
    pub encoder: Encoder,
    pub decoder: Decoder,
    /// Training-set mean and variance of each embedded dimension (saved with
    /// the weights).
    pub target_mean: Tensor,
    pub target_var: Tensor,
    pub ratio: f64,
}

impl Pretrainer {
    pub fn new(p: &nn::Path, cfg: &NetConfig, ratio: f64) -> Self {
        Pretrainer {
            embedder: Embedder::new(&(p / "embedder"), cfg),
            encoder: Encoder::new(&(p / "encoder"), cfg),
            decoder: Decoder::new(&(p / "decoder"), cfg),
            target_mean: p.zeros_no_train("target_mean", &[cfg.embedded_dim() as i64]),
            target_var: p.ones_no_train("target_var", &[cfg.embedded_dim() as i64]),
            ratio,
        }
    }

    /// Sets μ and σ² from the training data (call once, before training);
    /// missing cells are left out.
    pub fn init_target_var(&self, data: &Dataset) {
        tch::no_grad(|| {
            let n = data.n.min(200_000);
            let b = data.slice(0, n);
            let x = self.embedder.forward(&b.x_num, b.x_cat.as_ref());
            let w = match &b.present {
                Some(p) => self.embedder.expand_columns_binary(p),
                None => x.ones_like(),
            };
            let dim = Some(&[0i64][..]);
            let count = w.sum_dim_intlist(dim, false, Kind::Float).clamp_min(1.0);
            let mean = (&x * &w).sum_dim_intlist(dim, false, Kind::Float) / &count;
            let var =
                ((&x - &mean).square() * &w).sum_dim_intlist(dim, false, Kind::Float) / &count;
            let mut m = self.target_mean.shallow_clone();
            m.copy_(&mean);
            let mut t = self.target_var.shallow_clone();
            t.copy_(&var.clamp_min(1e-6));
        });
    }

    /// (reconstruction loss of a batch (scalar), the sparsity term, the
    /// encoder's pass: in training, complete its backward after `loss.backward()`).
    pub fn loss(&self, b: &Batch, train: bool, backend: Backend) -> (Tensor, Tensor, Pass) {
        let x = self.embedder.forward(&b.x_num, b.x_cat.as_ref());
        if self.embedder.grouped() {
            return self.grouped_loss(&x, b, train, backend);
        }
        let (rows, f) = (x.size()[0], self.encoder.n_groups());
        let mut obf =
            Tensor::empty(&[rows, f], (Kind::Float, x.device())).bernoulli_float_(self.ratio);
        if let Some(p) = &b.present {
            obf *= p; // a missing cell is never a reconstruction target
        }
        let keep = 1.0f64 - &obf;
        let prior = match &b.present {
            Some(p) => &keep * p,
            None => keep.shallow_clone(),
        };
        let obf_d = self.embedder.expand_binary(&obf);
        let x_in = &x * (1.0f64 - &obf_d);
        self.reconstruction_loss(&x, &x_in, &prior, &obf_d, train, backend)
    }

    /// [`Pretrainer::loss`] with feature groups (pytorch-tabnet 4.x): whole
    /// groups are obfuscated (prior 0 on them), every embedded dimension of
    /// an obfuscated group is hidden from the encoder, and its present cells
    /// are the reconstruction targets. The prior of a group with missing
    /// cells is the share of its present columns.
    fn grouped_loss(
        &self,
        x: &Tensor,
        b: &Batch,
        train: bool,
        backend: Backend,
    ) -> (Tensor, Tensor, Pass) {
        let (rows, g) = (x.size()[0], self.encoder.n_groups());
        let obf = Tensor::empty(&[rows, g], (Kind::Float, x.device())).bernoulli_float_(self.ratio);
        let keep = 1.0f64 - &obf;
        let hidden_d = self.embedder.expand_binary(&obf);
        let (prior, obf_d) = match &b.present {
            Some(p) => (
                &keep * self.embedder.group_prior(p),
                &hidden_d * self.embedder.expand_columns_binary(p),
            ),
            None => (keep.shallow_clone(), hidden_d.shallow_clone()),
        };
        let x_in = x * (1.0f64 - &hidden_d);
        self.reconstruction_loss(x, &x_in, &prior, &obf_d, train, backend)
    }

    /// Encodes the obfuscated input `x_in` under `prior` and returns the mean
    /// over rows of the squared reconstruction error of the standardised `x`
    /// on the hidden cells `obf_d` (per row, divided by their count).
    fn reconstruction_loss(
        &self,
        x: &Tensor,
        x_in: &Tensor,
        prior: &Tensor,
        obf_d: &Tensor,
        train: bool,
        backend: Backend,
    ) -> (Tensor, Tensor, Pass) {
        let enc = self
            .encoder
            .forward(x_in, Some(prior), &self.embedder, train, false, backend);
        let recon = self.decoder.forward_t(&enc.steps, train);
        let target = (x.detach() - &self.target_mean) / self.target_var.sqrt();
        let err = (recon - target).square() * obf_d;
        let per_row = err.sum_dim_intlist(Some(&[1i64][..]), false, Kind::Float)
            / obf_d
                .sum_dim_intlist(Some(&[1i64][..]), false, Kind::Float)
                .clamp_min(1.0);
        (per_row.mean(Kind::Float), enc.m_loss, enc.pass)
    }
}
