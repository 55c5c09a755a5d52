//! Batched prediction and explanation in eval mode under no-grad. Batch norm
//! uses running statistics, so a row's result does not depend on its batch.
//!
//! On the CPU every call runs the model's cached inference plan (the encoder
//! with its batch norms folded into the products, see `encoder::fused::eval`)
//! over the rows in calls of about [`SLICE`] each, on a thread of the kernels'
//! pool under one [`RunSettings`]; between calls the caller's `interrupted`
//! is asked whether to stop (R's Ctrl-C, polled on R's thread). Other devices
//! run the autograd modules batch by batch.
use crate::data::Dataset;
use crate::encoder::{run_batch, Backend, Outputs};
use crate::error::Result;
use crate::kernels;
use crate::loss;
use crate::model::Model;
use crate::network::explain_encoder;
use crate::runtime::RunSettings;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// About how long one slice of rows runs between two interrupt checks.
const SLICE: Duration = Duration::from_millis(100);

/// Cuts `n` rows into slices of at most `max` rows, each sized from the
/// last one's time to take about [`SLICE`]. Rows are independent, so the
/// cut never changes a result.
struct Slices {
    n: usize,
    start: usize,
    len: usize,
    max: usize,
    began: Instant,
}

impl Slices {
    fn new(n: i64, max: i64) -> Slices {
        let max = max.max(1) as usize;
        Slices {
            n: n as usize,
            start: 0,
            len: max.min(8192),
            max,
            began: Instant::now(),
        }
    }

    /// The next slice (start, rows), or None when every row is done.
    fn next(&mut self) -> Option<(usize, usize)> {
        if self.start > 0 {
            let took = self.began.elapsed().as_secs_f64().max(1e-6);
            let want = (self.len as f64 * SLICE.as_secs_f64() / took) as usize;
            self.len = want.clamp(1024.min(self.max), self.max);
        }
        if self.start >= self.n {
            return None;
        }
        let s = (self.start, self.len.min(self.n - self.start));
        self.start += s.1;
        self.began = Instant::now();
        Some(s)
    }

    fn done(&self) -> bool {
        self.start >= self.n
    }
}

/// The process settings of a run (threads, allocator) for a caller that
/// makes many predictions with the fused backend (SHAP, the importances):
/// held across them, the predictions' own tokens nest inside it instead of
/// each taking and restoring the settings (rebuilding libtorch's thread
/// pool and trimming the heap every time).
pub(crate) fn run_settings(model: &Model) -> Option<RunSettings> {
    (model.backend() == Backend::Fused).then(RunSettings::enter_inference)
}

/// The fused plan runs this call (CPU model and data).
fn fused(model: &Model, data: &Dataset) -> bool {
    model.backend() == Backend::Fused
        && data.device() == Device::Cpu
        && data.x_num.kind() == Kind::Float
}

/// Rows `start .. start + len` of a fresh (rows, w) f32 tensor this call writes.
// A tensor's storage is shared and mutable (see `kernels::as_mut_slice`):
// exclusive use of these fresh output tensors is this module's contract.
#[allow(clippy::mut_from_ref)]
fn rows_of(t: &Tensor, start: usize, len: usize) -> &mut [f32] {
    let w = t.size()[1] as usize;
    // SAFETY: the tensor was made by this call for its output and nothing else
    // uses it until the call returns; each slice of rows is written once.
    let all = unsafe { kernels::as_mut_slice(t) }.expect("a fresh f32 CPU tensor");
    &mut all[start * w..(start + len) * w]
}

/// Probabilities (softmax per outcome; the hierarchy's constrained sigmoids)
/// or values, (n, output_dim), on the CPU.
pub fn predict(model: &Model, data: &Dataset, batch_size: i64) -> Result<Tensor> {
    Ok(predict_polled(model, data, batch_size, &mut || false)?.expect("not interrupted"))
}

/// [`predict`], asking `interrupted` between slices of rows (about every
/// 0.1 s): None when it said yes.
pub fn predict_polled(
    model: &Model,
    data: &Dataset,
    batch_size: i64,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Option<Tensor>> {
    forward_polled(model, data, batch_size, false, interrupted)
}

/// The network's output before softmax / sigmoid (the logits per class; the
/// values for regression), (n, output_dim), on the CPU. The one entry point
/// of raw outputs: SHAP and the MAD relevance run their forward passes here.
pub fn predict_raw(model: &Model, data: &Dataset, batch_size: i64) -> Result<Tensor> {
    Ok(predict_raw_polled(model, data, batch_size, &mut || false)?.expect("not interrupted"))
}

/// [`predict_raw`], asking `interrupted` between slices of rows.
pub fn predict_raw_polled(
    model: &Model,
    data: &Dataset,
    batch_size: i64,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Option<Tensor>> {
    forward_polled(model, data, batch_size, true, interrupted)
}

/// The head's output of every row of `data` (`raw`: the logits; else
/// activated as `predict()` returns it), on the CPU; None when `interrupted`
/// said yes between two slices.
fn forward_polled(
    model: &Model,
    data: &Dataset,
    batch_size: i64,
    raw: bool,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Option<Tensor>> {
    let net = model.supervised()?;
    if !fused(model, data) {
        let mut parts = Vec::new();
        let mut start = 0;
        while start < data.n {
            let len = batch_size.min(data.n - start);
            let out = tch::no_grad(|| {
                let (out, _, _) = net.forward(&data.slice(start, len), false, model.backend());
                if raw {
                    out.to_device(Device::Cpu)
                } else {
                    loss::activate(&model.cfg, &out).to_device(Device::Cpu)
                }
            });
            parts.push(out);
            start += len;
            if start < data.n && interrupted() {
                return Ok(None);
            }
        }
        return Ok(Some(Tensor::cat(&parts, 0)));
    }
    let _settings = RunSettings::enter_inference();
    let folded = model.eval_plan();
    let plan = &folded.plan;
    let out = kernels::empty(data.n as usize, plan.outputs());
    let mut slices = Slices::new(data.n, batch_size);
    while let Some((start, len)) = slices.next() {
        let dst = rows_of(&out, start, len);
        crate::runtime::on_pool(|| {
            let b = data.slice(start as i64, len as i64);
            run_batch(
                plan,
                &net.embedder,
                &b,
                Outputs {
                    out: Some(&mut *dst),
                    raw,
                    ..Default::default()
                },
            );
            if !raw && plan.activates_later() {
                let logits = Tensor::of_slice(dst).view([len as i64, -1]);
                let p = loss::activate(&model.cfg, &logits).contiguous();
                dst.copy_from_slice(&Vec::<f32>::from(&p.view([-1])));
            }
        });
        if !slices.done() && interrupted() {
            return Ok(None);
        }
    }
    Ok(Some(out))
}

/// (M_explain (n, F), masks: one (n, F) per step), on the CPU, columns in the
/// original predictor order. Works for supervised and pretrained encoders.
pub fn explain(model: &Model, data: &Dataset, batch_size: i64) -> Result<(Tensor, Vec<Tensor>)> {
    Ok(explain_polled(model, data, batch_size, &mut || false)?.expect("not interrupted"))
}

/// [`explain`], asking `interrupted` between slices of rows (about every
/// 0.1 s): None when it said yes.
pub fn explain_polled(
    model: &Model,
    data: &Dataset,
    batch_size: i64,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Option<(Tensor, Vec<Tensor>)>> {
    let (embedder, encoder) = model.net.embedder_encoder();
    let steps = model.cfg.n_steps;
    if !fused(model, data) {
        let mut agg = Vec::new();
        let mut masks: Vec<Vec<Tensor>> = (0..steps).map(|_| Vec::new()).collect();
        let mut start = 0;
        while start < data.n {
            let len = batch_size.min(data.n - start);
            let e = tch::no_grad(|| {
                explain_encoder(embedder, encoder, &data.slice(start, len), model.backend())
            });
            agg.push(e.m_explain.to_device(Device::Cpu));
            for (k, m) in e.masks.into_iter().enumerate() {
                masks[k].push(m.to_device(Device::Cpu));
            }
            start += len;
            if start < data.n && interrupted() {
                return Ok(None);
            }
        }
        return Ok(Some((
            Tensor::cat(&agg, 0),
            masks.into_iter().map(|m| Tensor::cat(&m, 0)).collect(),
        )));
    }
    let _settings = RunSettings::enter_inference();
    let folded = model.eval_plan();
    let plan = &folded.plan;
    let (n, g) = (data.n as usize, plan.groups());
    let m_explain = kernels::empty(n, g);
    let masks: Vec<Tensor> = (0..plan.n_steps()).map(|_| kernels::empty(n, g)).collect();
    let mut slices = Slices::new(data.n, batch_size);
    while let Some((start, len)) = slices.next() {
        crate::runtime::on_pool(|| {
            run_batch(
                plan,
                embedder,
                &data.slice(start as i64, len as i64),
                Outputs {
                    m_explain: Some(rows_of(&m_explain, start, len)),
                    masks: masks.iter().map(|m| rows_of(m, start, len)).collect(),
                    ..Default::default()
                },
            )
        });
        if !slices.done() && interrupted() {
            return Ok(None);
        }
    }
    // group level → columns (each column its group's share), on the pool
    Ok(Some(crate::runtime::on_pool(|| {
        (
            embedder.to_columns(&m_explain),
            masks.iter().map(|m| embedder.to_columns(m)).collect(),
        )
    })))
}
