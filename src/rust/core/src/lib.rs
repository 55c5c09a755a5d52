//! `tabnet_core`: TabNet (Arik & Pfister, AAAI 2021) on libtorch through `tch`.
//!
//! Pure Rust: no R types. The R package talks to it through the thin extendr
//! layer in `src/rust/src`. One concept per module (the public ones are the
//! API the bridge and the integration tests use):
//!
//! * `mask`: sparsemax and entmax-1.5 attention normalisers;
//! * [`ghost_bn`]: plain and ghost batch normalisation (vectorised over virtual batches);
//! * `glu`, `feature_transformer`, `attentive`: the encoder's blocks;
//! * `embedding`: categorical embeddings and the column-group map;
//! * `encoder`, `network`: the TabNet encoder (its autograd and fused
//!   backends, picked per call with a [`Backend`]) and the supervised network;
//! * `kernels`: the fused pass's CPU kernels (no network types, no process state);
//! * `decoder`, `pretrainer`: the self-supervised reconstruction model;
//! * [`arrow_source`]: Arrow IPC files and C streams read record batch by record batch;
//! * [`data`]: column data prepared once into device tensors;
//! * `loss`, [`trainer`], [`schedule`]: weighted task losses, the mini-batch loop
//!   and its learning-rate schedules;
//! * [`inference`]: batched prediction and explanation under no-grad;
//! * `trace`: a recorded eval-mode pass over the reference layers, which
//!   [`lrp`] (layer-wise relevance propagation), [`nap`] (activation
//!   patterns) and the latent features read;
//! * [`metrics`], [`importance`]: evaluation metrics and feature importances;
//! * [`shap`]: exact and Kernel SHAP with coalitions mixed inside the batch;
//! * [`model`]: a network with its `VarStore`, config and verified (de)serialisation;
//! * [`digest`]: the checksum tying saved weights to their configuration;
//! * [`export`]: the TorchScript module of a supervised network (traced on the reference layers);
//! * [`runtime`]: the process: threads, the kernels' rayon pool, fork safety,
//!   OpenBLAS's controls, the product kernel and the allocator during runs
//!   (every process-wide static of the crate lives there);
//! * [`gemm`]: the fused pass's own AVX2 / AVX-512 micro-kernels for its small products.

pub(crate) mod adam;
pub mod arrow_source;
pub(crate) mod attentive;
pub mod config;
pub mod data;
pub(crate) mod decoder;
pub mod digest;
pub(crate) mod embedding;
pub(crate) mod encoder;
pub mod error;
pub mod export;
pub(crate) mod feature_transformer;
pub mod gemm;
pub mod ghost_bn;
pub(crate) mod glu;
pub mod importance;
pub mod inference;
pub(crate) mod init;
pub(crate) mod kernels;
pub(crate) mod loss;
pub mod lrp;
pub(crate) mod mask;
pub mod metrics;
pub mod model;
pub mod nap;
pub(crate) mod network;
pub(crate) mod pretrainer;
pub(crate) mod rng;
pub mod runtime;
pub mod schedule;
pub mod shap;
#[cfg(test)]
pub(crate) mod test_data;
pub(crate) mod trace;
pub mod trainer;

// run settings are process state (`runtime`); the path is kept for callers

pub use config::{Initialization, MaskType, NetConfig, Task, TaskLoss};
pub use data::Dataset;
pub use encoder::Backend;
pub use error::{Error, ErrorKind, Result};
pub use kernels::columns_into;
pub use model::Model;
