//! Training steps, evaluation, prediction, explanation and importances.
use crate::convert::{count, matrix, seed as seed_of, ApiResult};
use crate::interrupt;
use extendr_api::prelude::*;
use tabnet_core::data::Dataset;
use tabnet_core::importance::{mask_importance, model_agnostic, Method};
use tabnet_core::inference::{explain_polled, predict_polled};
use tabnet_core::trainer::{evaluate_loss, TrainOptions, Trainer};
use tabnet_core::Model;

/// `clip_value` and `decay_every` are ignored when <= 0.
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_trainer_new(
    model: ExternalPtr<Model>,
    batch_size: f64,
    drop_last: bool,
    lambda_sparse: f64,
    clip_value: f64,
    learn_rate: f64,
    decay_rate: f64,
    decay_every: f64,
) -> ApiResult<ExternalPtr<Trainer>> {
    let opts = TrainOptions {
        batch_size: count(batch_size, "batch_size", 2, i32::MAX as i64)?,
        drop_last,
        lambda_sparse,
        clip_value: if clip_value.is_finite() && clip_value > 0.0 {
            Some(clip_value)
        } else {
            None
        },
        learn_rate,
        exp_decay: if decay_every.is_finite() && decay_every >= 1.0 {
            Some((decay_rate, decay_every as i64))
        } else {
            None
        },
    };
    Ok(ExternalPtr::new(Trainer::new(&model, opts)?))
}

/// Prepares data-dependent model state (the pretrainer's target variances).
/// @noRd
#[extendr]
fn rs_model_prepare(model: ExternalPtr<Model>, data: ExternalPtr<Dataset>) {
    model.prepare(&data);
}

/// Starts an epoch; returns its number of batches.
/// @noRd
#[extendr]
fn rs_trainer_begin(
    mut trainer: ExternalPtr<Trainer>,
    data: ExternalPtr<Dataset>,
) -> ApiResult<i32> {
    Ok(trainer.begin_epoch(&data)? as i32)
}

/// Runs up to `max_batches` batches; returns how many remain in the epoch, or
/// -1 when the user pressed Ctrl-C (checked between batches, every 50 ms or
/// so; the R layer raises the interrupt).
/// @noRd
#[extendr]
fn rs_trainer_run(
    mut trainer: ExternalPtr<Trainer>,
    model: ExternalPtr<Model>,
    data: ExternalPtr<Dataset>,
    max_batches: f64,
) -> ApiResult<i32> {
    // Batches go to the kernels' pool in slices of about 50 ms (at least one
    // batch each), and R is asked about Ctrl-C between slices, on its own
    // thread: a pressed Ctrl-C stops training within a slice or one batch.
    const SLICE: std::time::Duration = std::time::Duration::from_millis(50);
    let mut left = count(max_batches, "max_batches", 1, i32::MAX as i64)?;
    loop {
        let before = trainer.remaining();
        let remaining = trainer.run_within(&model, &data, left, Some(SLICE))?;
        left -= before - remaining;
        // (no progress cannot happen: a call runs at least one batch)
        if remaining == 0 || remaining == before {
            return Ok(remaining as i32);
        }
        if interrupt::pending() {
            return Ok(-1);
        }
        if left <= 0 {
            return Ok(remaining as i32);
        }
    }
}

/// Ends the epoch; returns its mean training loss.
/// @noRd
#[extendr]
fn rs_trainer_end(mut trainer: ExternalPtr<Trainer>) -> f64 {
    trainer.end_epoch()
}

/// Restores the process settings held for an epoch (after an interrupt).
/// @noRd
#[extendr]
fn rs_trainer_release(mut trainer: ExternalPtr<Trainer>) {
    trainer.release()
}

/// @noRd
#[extendr]
fn rs_trainer_set_lr(mut trainer: ExternalPtr<Trainer>, lr: f64) {
    trainer.set_lr(lr);
}

/// @noRd
#[extendr]
fn rs_trainer_lr(trainer: ExternalPtr<Trainer>) -> f64 {
    trainer.lr()
}

/// Optimizer steps taken so far (the exponential schedule counts them).
/// @noRd
#[extendr]
fn rs_trainer_step(trainer: ExternalPtr<Trainer>) -> f64 {
    trainer.global_step as f64
}

/// Sets the optimizer-step counter (resuming an exponential schedule).
/// @noRd
#[extendr]
fn rs_trainer_set_step(mut trainer: ExternalPtr<Trainer>, step: f64) -> ApiResult<()> {
    trainer.global_step = count(step, "step", 0, i64::MAX / 2)?;
    Ok(())
}

/// Eval-mode task loss over a dataset.
/// @noRd
#[extendr]
fn rs_eval_loss(
    model: ExternalPtr<Model>,
    data: ExternalPtr<Dataset>,
    batch_size: f64,
) -> ApiResult<f64> {
    Ok(evaluate_loss(
        &model,
        &data,
        count(batch_size, "batch_size", 1, i32::MAX as i64)?,
    )?)
}

/// Probabilities or values, an n × outputs matrix; NULL when the user
/// pressed Ctrl-C (asked between slices of rows, about every 0.1 s; the R
/// layer raises the interrupt).
/// @noRd
#[extendr]
fn rs_predict(
    model: ExternalPtr<Model>,
    data: ExternalPtr<Dataset>,
    batch_size: f64,
) -> ApiResult<Robj> {
    let batch = count(batch_size, "batch_size", 1, i32::MAX as i64)?;
    match predict_polled(&model, &data, batch, &mut interrupt::pending)? {
        Some(p) => matrix(&p),
        None => Ok(Robj::from(())),
    }
}

/// list(M_explain = n × F matrix, masks = list of n × F matrices); NULL when
/// the user pressed Ctrl-C (as for `rs_predict`).
/// @noRd
#[extendr]
fn rs_explain(
    model: ExternalPtr<Model>,
    data: ExternalPtr<Dataset>,
    batch_size: f64,
) -> ApiResult<Robj> {
    let batch = count(batch_size, "batch_size", 1, i32::MAX as i64)?;
    let (agg, masks) = match explain_polled(&model, &data, batch, &mut interrupt::pending)? {
        Some(e) => e,
        None => return Ok(Robj::from(())),
    };
    let masks: Vec<Robj> = masks.iter().map(matrix).collect::<ApiResult<_>>()?;
    Ok(list!(M_explain = matrix(&agg)?, masks = List::from_values(masks)).into())
}

/// Mask importance (sums to 1), in original predictor order.
/// @noRd
#[extendr]
fn rs_mask_importance(
    model: ExternalPtr<Model>,
    data: ExternalPtr<Dataset>,
    batch_size: f64,
) -> ApiResult<Vec<f64>> {
    Ok(mask_importance(
        &model,
        &data,
        count(batch_size, "batch_size", 1, i32::MAX as i64)?,
    )?)
}

/// list(values = F × repeats matrix, baseline, metric).
/// @noRd
#[extendr]
fn rs_importance(
    model: ExternalPtr<Model>,
    data: ExternalPtr<Dataset>,
    method: &str,
    n_repeats: f64,
    batch_size: f64,
    seed: f64,
) -> ApiResult<List> {
    tch::manual_seed(seed_of(seed)?);
    let m = Method::parse(method)?;
    let imp = model_agnostic(
        &model,
        &data,
        m,
        count(n_repeats, "n_repeats", 1, i32::MAX as i64)? as usize,
        count(batch_size, "batch_size", 1, i32::MAX as i64)?,
    )?;
    let reps = imp.values.first().map(|v| v.len()).unwrap_or(0);
    let flat: Vec<f64> = (0..reps)
        .flat_map(|r| imp.values.iter().map(move |v| v[r]))
        .collect();
    let mut values: Robj = Doubles::from_values(flat).into();
    values.set_attrib("dim", r!([imp.values.len() as i32, reps as i32]))?;
    Ok(list!(
        values = values,
        baseline = imp.baseline,
        metric = imp.metric
    ))
}

extendr_module! {
    mod train_api;
    fn rs_trainer_new;
    fn rs_model_prepare;
    fn rs_trainer_begin;
    fn rs_trainer_run;
    fn rs_trainer_end;
    fn rs_trainer_release;
    fn rs_trainer_set_lr;
    fn rs_trainer_lr;
    fn rs_trainer_step;
    fn rs_trainer_set_step;
    fn rs_eval_loss;
    fn rs_predict;
    fn rs_explain;
    fn rs_mask_importance;
    fn rs_importance;
}
