//! Batched prediction and explanation in eval mode under no-grad. Batch norm
//! uses running statistics, so a row's result does not depend on its batch.
use crate::data::Dataset;
use crate::error::Result;
use crate::loss;
use crate::model::{Model, Net};
use crate::network::explain_encoder;
use tch::{Device, Tensor};

/// Probabilities (softmax per outcome) or values, (n, output_dim), on the CPU.
pub fn predict(model: &Model, data: &Dataset, batch_size: i64) -> Result<Tensor> {
    let net = model.supervised()?;
    Ok(tch::no_grad(|| {
        let mut parts = Vec::new();
        let mut start = 0;
        while start < data.n {
            let len = batch_size.min(data.n - start);
            let (out, _, _) = net.forward(&data.slice(start, len), false, model.backend());
            parts.push(loss::activate(&model.cfg, &out).to_device(Device::Cpu));
            start += len;
        }
        Tensor::cat(&parts, 0)
    }))
}

/// (M_explain (n, F), masks: one (n, F) per step), on the CPU, columns in the
/// original predictor order. Works for supervised and pretrained encoders.
pub fn explain(model: &Model, data: &Dataset, batch_size: i64) -> Result<(Tensor, Vec<Tensor>)> {
    let (embedder, encoder) = match &model.net {
        Net::Supervised(n) => (&n.embedder, &n.encoder),
        Net::Pretrain(p) => (&p.embedder, &p.encoder),
    };
    let steps = model.cfg.n_steps;
    Ok(tch::no_grad(|| {
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
