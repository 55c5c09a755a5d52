//! A recorded eval-mode pass of the supervised TabNet on the reference (tch)
//! layers: every quantity layer-wise relevance propagation ([`crate::lrp`]),
//! the activation patterns ([`crate::nap`]) and the latent features read.
//!
//! Batch norm runs on its running statistics (eval mode, so a row's trace
//! never depends on the other rows), folded into a per-channel affine map
//! `y = s·x + t` with `s = γ / √(σ²_run + ε)` and `t = β − μ_run·s`
//! ([`Affine`]); a GLU layer's bias-free FC followed by its batch norm is then
//! the linear map `u = x (s ⊙ W)ᵀ + t`. The pass computes in the weights'
//! kind (float32, or float64 when the store was converted for a test).
use crate::data::Batch;
use crate::embedding::ones_prior;
use crate::feature_transformer::FeatureTransformer;
use crate::ghost_bn::BatchNorm;
use crate::glu::{GluBlock, GluLayer};
use crate::network::TabNet;
use tch::Tensor;

/// Batch norm at evaluation as `y = scale ⊙ x + shift` (per channel).
pub(crate) struct Affine {
    pub scale: Tensor,
    pub shift: Tensor,
}

impl Affine {
    pub(crate) fn of(bn: &BatchNorm) -> Affine {
        let scale = (&bn.running_var + bn.eps).rsqrt() * &bn.weight;
        let shift = &bn.bias - &bn.running_mean * &scale;
        Affine { scale, shift }
    }
}

/// A GLU layer folded at evaluation: `out = (x Wᵀ + b) ⊙ σ(x W_gᵀ + b_g)`.
pub(crate) struct FoldedGlu {
    /// the linear (signal) half's weight, BN scale folded in: (w, in)
    pub weight: Tensor,
    /// its BN shift: (w)
    pub bias: Tensor,
    /// the gate half's weight and bias
    pub gate_weight: Tensor,
    pub gate_bias: Tensor,
}

impl FoldedGlu {
    pub(crate) fn of(layer: &GluLayer) -> FoldedGlu {
        let a = Affine::of(&layer.bn.norm);
        let two_w = layer.fc.size()[0];
        let w = two_w / 2;
        let folded = &layer.fc * a.scale.unsqueeze(1);
        FoldedGlu {
            weight: folded.narrow(0, 0, w),
            bias: a.shift.narrow(0, 0, w),
            gate_weight: folded.narrow(0, w, w),
            gate_bias: a.shift.narrow(0, w, w),
        }
    }
}

/// One GLU layer of a block, as it ran.
pub(crate) struct GluTrace {
    /// the layer's input (B, in)
    pub input: Tensor,
    /// the signal half `x Wᵀ + b` (B, w)
    pub signal: Tensor,
    /// the gate `σ(x W_gᵀ + b_g)` (B, w)
    pub gate: Tensor,
    /// true when the block adds the input back: `y = √½ (x + signal ⊙ gate)`
    pub residual: bool,
    /// the layer's output after the residual sum (B, w)
    pub output: Tensor,
    pub folded: FoldedGlu,
}

/// A feature transformer: its shared block's layers, then its step block's.
pub(crate) struct TransformerTrace {
    pub shared: Vec<GluTrace>,
    pub specific: Vec<GluTrace>,
}

impl TransformerTrace {
    /// The transformer's output (its last layer's; the input when it has none).
    pub(crate) fn output<'a>(&'a self, input: &'a Tensor) -> &'a Tensor {
        self.specific
            .last()
            .or(self.shared.last())
            .map(|l| &l.output)
            .unwrap_or(input)
    }

    /// All layers in the order they ran.
    pub(crate) fn layers(&self) -> impl DoubleEndedIterator<Item = &GluTrace> {
        self.shared.iter().chain(self.specific.iter())
    }
}

/// One decision step.
pub(crate) struct StepTrace {
    /// the attentive transformer's mask over the groups (B, G)
    pub mask: Tensor,
    pub transformer: TransformerTrace,
    /// ReLU of the first n_d outputs: the step's decision output (B, n_d)
    pub decision: Tensor,
}

/// The whole pass.
pub(crate) struct Trace {
    /// the embedded input before the initial BN (B, D)
    pub embedded: Tensor,
    pub initial_bn: Affine,
    /// the initial BN's output (B, D)
    pub normalised: Tensor,
    pub splitter: TransformerTrace,
    pub steps: Vec<StepTrace>,
    /// Σ of the steps' decision outputs (B, n_d): the latent features
    pub decision: Tensor,
    /// the head's raw output (B, outputs)
    pub output: Tensor,
}

fn glu_block(block: &GluBlock, x: &Tensor, out: &mut Vec<GluTrace>) -> Tensor {
    let scale = 0.5f64.sqrt();
    let mut h = x.shallow_clone();
    for (i, layer) in block.layers.iter().enumerate() {
        let folded = FoldedGlu::of(layer);
        let signal = h.linear(&folded.weight, Some(&folded.bias));
        let gate = h
            .linear(&folded.gate_weight, Some(&folded.gate_bias))
            .sigmoid();
        let residual = !(i == 0 && block.first);
        let y = &signal * &gate;
        let output = if residual { (&h + y) * scale } else { y };
        out.push(GluTrace {
            input: h,
            signal,
            gate,
            residual,
            output: output.shallow_clone(),
            folded,
        });
        h = output;
    }
    h
}

fn transformer(ft: &FeatureTransformer, x: &Tensor) -> TransformerTrace {
    let mut shared = Vec::new();
    let mut specific = Vec::new();
    let h = match &ft.shared {
        Some(b) => glu_block(b, x, &mut shared),
        None => x.shallow_clone(),
    };
    if let Some(b) = &ft.specific {
        let _ = glu_block(b, &h, &mut specific);
    }
    TransformerTrace { shared, specific }
}

/// Runs the supervised network on `b` in eval mode, recording every layer.
/// Call under no-grad.
pub(crate) fn trace(net: &TabNet, b: &Batch) -> Trace {
    let enc = &net.encoder;
    let emb = &net.embedder;
    let kind = net.head.kind();
    let x = emb
        .forward(&b.x_num.to_kind(kind), b.x_cat.as_ref())
        .to_kind(kind);
    let rows = x.size()[0];
    let initial_bn = Affine::of(&enc.initial_bn);
    let x0 = &x * &initial_bn.scale + &initial_bn.shift;
    let mut prior = match &b.present {
        Some(p) => emb.group_prior(p).to_kind(kind),
        None => ones_prior(rows, enc.n_groups(), x.device()).to_kind(kind),
    };
    let splitter = transformer(&enc.splitter, &x0);
    let n_d = enc.n_d;
    let width = |t: &Tensor| t.size()[1];
    let split_out = splitter.output(&x0);
    let mut a = split_out.narrow(1, n_d, width(split_out) - n_d);
    let mut steps = Vec::with_capacity(enc.transformers.len());
    for (att, ft) in enc.attention.iter().zip(&enc.transformers) {
        let mask = att.forward_t(&prior, &a, false);
        prior = &prior * (enc.gamma - &mask);
        let masked = emb.expand(&mask) * &x0;
        let t = transformer(ft, &masked);
        let out = t.output(&masked).shallow_clone();
        let decision = out.narrow(1, 0, n_d).relu();
        a = out.narrow(1, n_d, width(&out) - n_d);
        steps.push(StepTrace {
            mask,
            transformer: t,
            decision,
        });
    }
    let decision = steps
        .iter()
        .skip(1)
        .fold(steps[0].decision.shallow_clone(), |acc, s| {
            acc + &s.decision
        });
    let output = decision.linear::<Tensor>(&net.head, None);
    Trace {
        embedded: x,
        initial_bn,
        normalised: x0,
        splitter,
        steps,
        decision,
        output,
    }
}
