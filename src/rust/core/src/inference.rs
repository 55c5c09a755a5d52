//! Batched prediction and explanation in eval mode under no-grad. Batch norm
//! uses running statistics, so a row's result does not depend on its batch.
//! With the fused CPU pass a call runs on a thread of the kernels' pool under
//! one [`RunSettings`] for all its batches (see [`run`]).
use crate::data::Dataset;
use crate::encoder::Backend;
use crate::error::Result;
use crate::kernels;
use crate::loss;
use crate::model::Model;
use crate::network::explain_encoder;
use crate::run_settings::RunSettings;
use tch::{Device, Tensor};

/// `f` under no-grad; with the fused CPU pass on a thread of the kernels' pool
/// (where libtorch runs on one thread, see [`kernels::in_pool`]) under one
/// [`RunSettings`]. Before, libtorch's ops between the kernels (the head, the
/// softmax) ran on the caller's thread with the session's count, so its
/// OpenMP workers spun beside the kernels' threads, and each batch switched
/// the settings (rebuilding libtorch's thread pool) twice.
fn run<R>(model: &Model, f: impl FnOnce() -> R) -> R {
    if model.backend() == Backend::Fused {
        let _settings = RunSettings::enter();
        kernels::on_pool(f)
    } else {
        tch::no_grad(f)
    }
}

/// Probabilities (softmax per outcome; the hierarchy's constrained sigmoids)
/// or values, (n, output_dim), on the CPU.
pub fn predict(model: &Model, data: &Dataset, batch_size: i64) -> Result<Tensor> {
    forward_batches(model, data, batch_size, |out| {
        loss::activate(&model.cfg, out)
    })
}

/// The network's output before softmax / sigmoid (the logits per class; the
/// values for regression), (n, output_dim), on the CPU. The one entry point
/// of raw outputs: SHAP and the MAD relevance run their forward passes here.
pub fn predict_raw(model: &Model, data: &Dataset, batch_size: i64) -> Result<Tensor> {
    forward_batches(model, data, batch_size, |out| out.shallow_clone())
}

/// The head's output of every batch of `data`, mapped by `map`, on the CPU.
fn forward_batches(
    model: &Model,
    data: &Dataset,
    batch_size: i64,
    map: impl Fn(&Tensor) -> Tensor,
) -> Result<Tensor> {
    let net = model.supervised()?;
    Ok(run(model, || {
        let mut parts = Vec::new();
        let mut start = 0;
        while start < data.n {
            let len = batch_size.min(data.n - start);
            let (out, _, _) = net.forward(&data.slice(start, len), false, model.backend());
            parts.push(map(&out).to_device(Device::Cpu));
            start += len;
        }
        Tensor::cat(&parts, 0)
    }))
}

/// (M_explain (n, F), masks: one (n, F) per step), on the CPU, columns in the
/// original predictor order. Works for supervised and pretrained encoders.
pub fn explain(model: &Model, data: &Dataset, batch_size: i64) -> Result<(Tensor, Vec<Tensor>)> {
    let (embedder, encoder) = model.net.embedder_encoder();
    let steps = model.cfg.n_steps;
    Ok(run(model, || {
        let mut agg = Vec::new();
        let mut masks: Vec<Vec<Tensor>> = (0..steps).map(|_| Vec::new()).collect();
        let mut start = 0;
        while start < data.n {
            let len = batch_size.min(data.n - start);
            let e = explain_encoder(embedder, encoder, &data.slice(start, len), model.backend());
            agg.push(e.m_explain.to_device(Device::Cpu));
            for (k, m) in e.masks.into_iter().enumerate() {
                masks[k].push(m.to_device(Device::Cpu));
            }
            start += len;
        }
        (
            Tensor::cat(&agg, 0),
            masks.into_iter().map(|m| Tensor::cat(&m, 0)).collect(),
        )
    }))
}
