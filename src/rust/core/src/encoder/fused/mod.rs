//! The fused backend: the encoder's training pass with a hand-derived backward
//! ([`train`]), and its eval pass ([`eval`]) (CPU, f32).
//!
//! Autograd would record a dozen full-batch libtorch kernels per GLU layer; here
//! each layer is one product plus one fused kernel per virtual batch (see
//! [`crate::kernels`]), forward and backward, and a whole pass runs inside one
//! parallel task of virtual batches: everything after the initial BN is local
//! to a virtual batch (ghost-BN statistics, masks, priors), so the tasks need
//! no synchronisation until the pass ends, when the batch statistics and the
//! parameter gradients are merged in task order. The pass plugs into autograd
//! at its edges: the embedded input enters as a detached copy, the step
//! outputs and the sparsity term leave as leaves that the head/decoder and the
//! loss use normally. After `loss.backward()`, [`Tape::backward`] reads the
//! leaves' gradients, runs the encoder backward by hand, and hands the
//! parameter and input gradients back to autograd with one surrogate
//! `backward()`, so gradient clipping, the optimiser, embeddings and the
//! initial BN are unchanged.
//!
//! The code is laid out by layer, each unit the fused twin of a reference
//! layer (tch ops + autograd) with its saved state, its forward on one task's
//! rows, its backward, its eval form, and a test against that twin (forward
//! values, running statistics and every gradient, tolerances from float32
//! rounding, see [`testing`]):
//!
//! | unit | reference twin |
//! |---|---|
//! | [`linear_bn`]: bias-free linear map + ghost BN | `x.linear(W)` + [`crate::ghost_bn::GhostBatchNorm`] |
//! | [`glu_layer`]: GLU layer (residual or not) | [`crate::glu::GluLayer`], a step of [`crate::glu::GluBlock`] |
//! | [`feature_transformer`]: its GLU layers in order | [`crate::feature_transformer::FeatureTransformer`] |
//! | [`attentive`]: attentive transformer + mask | [`crate::attentive::AttentiveTransformer`], [`crate::mask`] |
//! | [`glue`]: a step's glue (x_m, next prior, sparsity, decision) | the expressions of [`super::autograd`] |
//! | [`initial_bn`]: the initial batch norm | [`crate::ghost_bn::BatchNorm`] |
//!
//! [`train`] and [`eval`] compose them into the passes; rows reach the tasks
//! as slices handed out by the borrow checker (each output tensor's storage
//! taken once, see [`crate::kernels::values_mut`], then split by task).
//! Equivalence of the whole pass with the autograd encoder (outputs, running
//! statistics and every parameter gradient) is tested in
//! `tests/fused_vs_autograd.rs`.
use crate::embedding::Embedder;
use crate::kernels;
use tch::{Kind, Tensor};

mod attentive;
mod buffers;
mod eval;
mod feature_transformer;
mod glu_layer;
mod glue;
mod initial_bn;
mod linear_bn;
#[cfg(test)]
mod testing;
mod train;

pub(crate) use buffers::TapeBuffers;
pub(super) use eval::forward_eval;
pub(crate) use eval::{run_batch, EvalPlan, Outputs};
pub(super) use train::{forward_train, Tape};

/// True when the fused passes can run for this input (training needs two rows
/// for batch statistics).
pub(super) fn applicable(x: &Tensor, train: bool) -> bool {
    let min_rows = if train { 2 } else { 1 };
    x.device() == tch::Device::Cpu
        && x.kind() == Kind::Float
        && x.dim() == 2
        && x.size()[0] >= min_rows
}

/// A parameter's values as a vector (f32).
fn to_vec(t: &Tensor) -> Vec<f32> {
    if kernels::supported(t) {
        kernels::values(t).to_vec()
    } else {
        Vec::<f32>::from(&t.detach().to_kind(Kind::Float))
    }
}

/// How the group-level mask reaches the embedded input: x_m = M[group(j)] · s_j · x_j
/// (s_j = 1/(|g|·e), see [`crate::embedding`]).
struct Expansion {
    col: Vec<usize>,
    scale: Vec<f32>,
    /// col[j] = j for every j (one attention group per embedded dimension)
    identity: bool,
    /// `scale` repeated for a block of rows (eval::BLOCK_ROWS), so that an
    /// identity expansion scales a block's values in one flat loop
    scale_rows: Vec<f32>,
}

impl Expansion {
    fn of(embedder: &Embedder, dims: usize) -> Expansion {
        let col: Vec<usize> = if embedder.identity {
            (0..dims).collect()
        } else {
            Vec::<i64>::from(&embedder.group_of_dim)
                .into_iter()
                .map(|c| c as usize)
                .collect()
        };
        let scale = match &embedder.dim_scale {
            Some(s) => to_vec(s),
            None => vec![1.0; dims],
        };
        Expansion::new(col, scale)
    }

    /// Embedded dimension j belongs to group col[j] and is scaled by scale[j].
    fn new(col: Vec<usize>, scale: Vec<f32>) -> Expansion {
        let identity = col.iter().enumerate().all(|(i, &c)| i == c);
        let scale_rows = scale.repeat(eval::BLOCK_ROWS);
        Expansion {
            col,
            scale,
            identity,
            scale_rows,
        }
    }
}

/// The first step's prior: the given one (missing values), else ones.
fn initial_prior(prior: Option<&Tensor>, rows: usize, n_groups: i64) -> Tensor {
    match prior {
        Some(p) => p.to_kind(Kind::Float).contiguous(),
        None => Tensor::ones(&[rows as i64, n_groups], (Kind::Float, tch::Device::Cpu)),
    }
}
