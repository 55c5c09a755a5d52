//! The encoder pass on libtorch's autograd: the modules' own `forward_t`, on
//! any device and kind. It is the reference the fused pass is tested against
//! (`tests/fused_vs_autograd.rs`) and what runs on CUDA, in f64, or on request.
use super::{Backend, Encoder, EncoderOutput, Pass};
use crate::embedding::{ones_prior, Embedder};
use tch::nn::ModuleT;
use tch::{Kind, Tensor};

/// From the initial BN's output `x`; `prior` the initial prior (B, G), ones
/// when `None`. Training records the whole pass for `loss.backward()`.
pub(super) fn forward(
    enc: &Encoder,
    embedder: &Embedder,
    x: &Tensor,
    prior: Option<&Tensor>,
    train: bool,
    keep_masks: bool,
) -> EncoderOutput {
    let b = x.size()[0];
    let mut prior = match prior {
        Some(p) => p.shallow_clone(),
        None => ones_prior(b, enc.n_groups(), x.device()),
    };
    let mut a = enc
        .splitter
        .forward_t(x, train)
        .narrow(1, enc.n_d, enc.n_a());
    let mut steps = Vec::with_capacity(enc.transformers.len());
    let mut masks = Vec::new();
    let mut m_loss = Tensor::zeros(&[], (Kind::Float, x.device()));
    for (att, ft) in enc.attention.iter().zip(&enc.transformers) {
        let m = att.forward_t(&prior, &a, train);
        m_loss += (&m * (&m + enc.epsilon).log())
            .sum_dim_intlist(Some(&[1i64][..]), false, Kind::Float)
            .mean(Kind::Float);
        prior = &prior * (enc.gamma - &m);
        let out = ft.forward_t(&(embedder.expand(&m) * x), train);
        steps.push(out.narrow(1, 0, enc.n_d).relu());
        a = out.narrow(1, enc.n_d, out.size()[1] - enc.n_d);
        if keep_masks {
            masks.push(m);
        }
    }
    let n = enc.transformers.len() as f64;
    EncoderOutput {
        steps,
        decision: None,
        m_loss: m_loss / n,
        masks,
        pass: Pass {
            backend: Backend::Autograd,
            tape: None,
        },
    }
}
