//! Inside the network: layer-wise relevance propagation, activation patterns
//! and latent features, one slice of rows per call (the R layer loops over
//! fixed-size chunks, showing progress and honouring Ctrl-C between them).
use crate::convert::{count, matrix, ApiError, ApiResult};
use extendr_api::prelude::*;
use tabnet_core::data::Dataset;
use tabnet_core::lrp::{lrp, Rule};
use tabnet_core::msg;
use tabnet_core::nap::{activity, latent};
use tabnet_core::Model;

fn rows_of(start: f64, data: &Dataset) -> ApiResult<i64> {
    count(start, "start", 0, data.n)
}

fn indices(x: &Robj, what: &str) -> ApiResult<Vec<i64>> {
    let v = x
        .as_integer_slice()
        .ok_or_else(|| ApiError::internal(format!("`{what}` must be an integer vector")))?;
    Ok(v.iter().map(|&i| i as i64).collect())
}

/// LRP of rows `start` (0-based) onwards, one per element of `targets` (the
/// 0-based raw output each row explains). list(relevance = n × F matrix,
/// output = the explained raw outputs).
/// @noRd
#[extendr]
fn rs_lrp(
    model: ExternalPtr<Model>,
    data: ExternalPtr<Dataset>,
    start: f64,
    targets: Robj,
    rule: &str,
    epsilon: f64,
    gamma: f64,
) -> ApiResult<List> {
    let rule = match rule {
        "epsilon" => Rule::Epsilon { epsilon },
        "gamma" => Rule::Gamma { gamma, epsilon },
        other => {
            return Err(ApiError::input(msg!(
                "Unknown LRP rule {.val {rule}}.",
                rule = other
            )))
        }
    };
    let r = lrp(
        &model,
        &data,
        rows_of(start, &data)?,
        &indices(&targets, "targets")?,
        rule,
    )?;
    Ok(list!(
        relevance = matrix(&r.relevance)?,
        output = Vec::<f64>::from(&r.output)
    ))
}

/// Per layer, Σ |activation| over the rows of each class for rows `start`
/// onwards (one per element of `classes`, 0-based). list(layer = names,
/// sums = list of classes × nodes matrices).
/// @noRd
#[extendr]
fn rs_nap(
    model: ExternalPtr<Model>,
    data: ExternalPtr<Dataset>,
    start: f64,
    classes: Robj,
    n_classes: f64,
) -> ApiResult<List> {
    let acts = activity(
        &model,
        &data,
        rows_of(start, &data)?,
        &indices(&classes, "classes")?,
        count(n_classes, "n_classes", 1, i32::MAX as i64)?,
    )?;
    let names: Vec<String> = acts.iter().map(|a| a.name.clone()).collect();
    let sums: Vec<Robj> = acts
        .iter()
        .map(|a| matrix(&a.sums))
        .collect::<ApiResult<_>>()?;
    Ok(list!(layer = names, sums = List::from_values(sums)))
}

/// The aggregated decision output (n × n_d) of `len` rows from `start`.
/// @noRd
#[extendr]
fn rs_latent(
    model: ExternalPtr<Model>,
    data: ExternalPtr<Dataset>,
    start: f64,
    len: f64,
) -> ApiResult<Robj> {
    let start = rows_of(start, &data)?;
    let len = count(len, "len", 0, data.n - start)?;
    matrix(&latent(&model, &data, start, len)?)
}

extendr_module! {
    mod lrp_api;
    fn rs_lrp;
    fn rs_nap;
    fn rs_latent;
}
