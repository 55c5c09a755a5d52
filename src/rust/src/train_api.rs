//! Training steps, evaluation, prediction, explanation and importances.
use crate::convert::{columns, count, matrix, seed as seed_of, ApiError, ApiResult};
use crate::interrupt;
use extendr_api::prelude::*;
use tabnet_core::data::Dataset;
use tabnet_core::importance::{mad_relevance, mask_importance, ImportanceJob, Method};
use tabnet_core::inference::{explain_polled, predict_polled, predict_raw_polled};
use tabnet_core::msg;
use tabnet_core::schedule::ScheduleState;
use tabnet_core::trainer::{evaluate_loss, TrainOptions, Trainer};
use tabnet_core::Model;

/// A trainer for `model` with the options in `options_json` (a
/// `TrainOptions`: batch size, sparsity weight, clipping, learning rate and
/// schedule), continuing the schedule state `state_json` when it is not "".
/// @noRd
#[extendr]
fn rs_trainer_new(
    model: ExternalPtr<Model>,
    options_json: &str,
    state_json: &str,
) -> ApiResult<ExternalPtr<Trainer>> {
    let opts: TrainOptions = serde_json::from_str(options_json)
        .map_err(|e| ApiError::internal(format!("training options: {e}")))?;
    let mut trainer = Trainer::new(&model, opts)?;
    if !state_json.is_empty() {
        let state: ScheduleState = serde_json::from_str(state_json).map_err(|e| {
            ApiError::model(msg!(
                "The learning-rate schedule saved with the model cannot be read: {reason}.",
                reason = e.to_string()
            ))
        })?;
        trainer.resume(state)?;
    }
    Ok(ExternalPtr::new(trainer))
}

/// Ends an epoch for the schedule (`monitored`: the loss reduce-on-plateau
/// watches); returns the schedule's state after it, as JSON.
/// @noRd
#[extendr]
fn rs_trainer_schedule_epoch(mut trainer: ExternalPtr<Trainer>, monitored: f64) -> String {
    let state = trainer.schedule_epoch(monitored);
    serde_json::to_string(&state).unwrap_or_default()
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

/// The rate the next optimizer step uses.
/// @noRd
#[extendr]
fn rs_trainer_lr(trainer: ExternalPtr<Trainer>) -> f64 {
    trainer.lr()
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

/// The network's raw outputs (logits or values), an n × outputs matrix; NULL
/// when the user pressed Ctrl-C (as for `rs_predict`).
/// @noRd
#[extendr]
fn rs_predict_raw(
    model: ExternalPtr<Model>,
    data: ExternalPtr<Dataset>,
    batch_size: f64,
) -> ApiResult<Robj> {
    let batch = count(batch_size, "batch_size", 1, i32::MAX as i64)?;
    match predict_raw_polled(&model, &data, batch, &mut interrupt::pending)? {
        Some(p) => matrix(&p),
        None => Ok(Robj::from(())),
    }
}

/// list(M_explain = the n × F matrix's F columns, masks = a list of such
/// lists, one per step); NULL when
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
    // each as a list of its columns (see `columns`)
    let masks: Vec<Robj> = masks.iter().map(columns).collect::<ApiResult<_>>()?;
    Ok(list!(M_explain = columns(&agg)?, masks = List::from_values(masks)).into())
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

/// A permutation or occlusion importance job (see `ImportanceJob`).
/// @noRd
#[extendr]
fn rs_importance_job(
    model: ExternalPtr<Model>,
    data: ExternalPtr<Dataset>,
    method: &str,
    n_repeats: f64,
    batch_size: f64,
    seed: f64,
) -> ApiResult<ExternalPtr<ImportanceJob>> {
    tch::manual_seed(seed_of(seed)?);
    let job = ImportanceJob::new(
        &model,
        &data,
        Method::parse(method)?,
        count(n_repeats, "n_repeats", 1, i32::MAX as i64)? as usize,
        count(batch_size, "batch_size", 1, i32::MAX as i64)?,
    )?;
    Ok(ExternalPtr::new(job))
}

/// c(done, total) units after running for about `seconds`, or c(-1, total)
/// when the user pressed Ctrl-C (polled between prediction slices; the R
/// layer raises the interrupt).
/// @noRd
#[extendr]
fn rs_importance_run(
    mut job: ExternalPtr<ImportanceJob>,
    model: ExternalPtr<Model>,
    seconds: f64,
) -> ApiResult<Vec<f64>> {
    let slice = std::time::Duration::from_secs_f64(seconds.clamp(0.0, 3600.0));
    let ok = job.run(&model, slice, &mut interrupt::pending)?;
    let done = if ok { job.done() as f64 } else { -1.0 };
    Ok(vec![done, job.total() as f64])
}

/// list(values = F × repeats matrix, baseline, metric) of a finished job.
/// @noRd
#[extendr]
fn rs_importance_result(job: ExternalPtr<ImportanceJob>) -> ApiResult<List> {
    let imp = job.finish();
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

/// MAD relevance: list(overall = F values, by_class = groups × F matrix,
/// outcome, class (0-based per group), rows), or NULL after Ctrl-C.
/// @noRd
#[extendr]
fn rs_mad(
    model: ExternalPtr<Model>,
    data: ExternalPtr<Dataset>,
    batch_size: f64,
) -> ApiResult<Robj> {
    let batch = count(batch_size, "batch_size", 1, i32::MAX as i64)?;
    let Some(mad) = mad_relevance(&model, &data, batch, &mut |_| interrupt::pending())? else {
        return Ok(().into());
    };
    let (g, f) = (mad.groups.len(), mad.overall.len());
    let col_major: Vec<f64> = (0..f)
        .flat_map(|j| mad.by_class.iter().map(move |row| row[j]))
        .collect();
    let mut by_class: Robj = Doubles::from_values(col_major).into();
    by_class.set_attrib("dim", r!([g as i32, f as i32]))?;
    Ok(list!(
        overall = mad.overall,
        by_class = by_class,
        outcome = mad.groups.iter().map(|x| x.0 as i32).collect::<Vec<i32>>(),
        class = mad.groups.iter().map(|x| x.1 as i32).collect::<Vec<i32>>(),
        rows = mad.rows.iter().map(|&r| r as i32).collect::<Vec<i32>>()
    )
    .into())
}

extendr_module! {
    mod train_api;
    fn rs_trainer_new;
    fn rs_model_prepare;
    fn rs_trainer_begin;
    fn rs_trainer_run;
    fn rs_trainer_end;
    fn rs_trainer_release;
    fn rs_trainer_lr;
    fn rs_trainer_schedule_epoch;
    fn rs_eval_loss;
    fn rs_predict;
    fn rs_predict_raw;
    fn rs_explain;
    fn rs_mask_importance;
    fn rs_importance_job;
    fn rs_importance_run;
    fn rs_importance_result;
    fn rs_mad;
}
