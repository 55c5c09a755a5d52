//! SHAP values: an explainer holding the explained rows and the background,
//! then blocks of rows, each computed in chunks of forward passes between
//! which Ctrl-C is polled (an interrupted block returns NULL; the R layer
//! raises the interrupt).
use crate::convert::{count, seed as seed_of, ApiError, ApiResult};
use crate::interrupt;
use extendr_api::prelude::*;
use tabnet_core::data::Dataset;
use tabnet_core::msg;
use tabnet_core::shap::kernel::{self, KernelOptions};
use tabnet_core::shap::{exact, Explainer, Output, ShapBlock};
use tabnet_core::Model;

/// `players`: a list of 0-based predictor indices per player; `bg_w`: NULL
/// or one weight per background row.
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_shap_new(
    model: ExternalPtr<Model>,
    x: ExternalPtr<Dataset>,
    bg: ExternalPtr<Dataset>,
    bg_w: Robj,
    players: List,
    output: &str,
    chunk_rows: f64,
) -> ApiResult<ExternalPtr<Explainer>> {
    let w: Option<&[f64]> = if bg_w.is_null() {
        None
    } else {
        Some(
            bg_w.as_real_slice()
                .ok_or_else(|| ApiError::internal("`bg_w` must be a double vector"))?,
        )
    };
    let players: Vec<Vec<usize>> = players
        .values()
        .map(|v| {
            v.as_integer_slice()
                .map(|s| s.iter().map(|&i| i.max(0) as usize).collect())
                .ok_or_else(|| ApiError::internal("SHAP players must be integer vectors"))
        })
        .collect::<ApiResult<_>>()?;
    let ex = Explainer::new(
        &model,
        &x,
        &bg,
        w,
        players,
        Output::parse(output)?,
        count(chunk_rows, "chunk_rows", 1, i32::MAX as i64)? as usize,
    )?;
    Ok(ExternalPtr::new(ex))
}

/// list(baseline = K values, predictions = n × K matrix).
/// @noRd
#[extendr]
fn rs_shap_info(ex: ExternalPtr<Explainer>) -> ApiResult<List> {
    let (n, k) = (ex.n(), ex.k);
    let col_major: Vec<f64> = (0..k)
        .flat_map(|c| (0..n).map(move |r| (r, c)))
        .map(|(r, c)| ex.predictions[r * k + c])
        .collect();
    let mut pred: Robj = Doubles::from_values(col_major).into();
    pred.set_attrib("dim", r!([n as i32, k as i32]))?;
    Ok(list!(baseline = ex.baseline.clone(), predictions = pred))
}

fn block_list(b: ShapBlock) -> Robj {
    list!(
        values = b.values,
        se = b.se,
        n_iter = b.n_iter.iter().map(|&v| v as i32).collect::<Vec<i32>>(),
        converged = b.converged
    )
    .into()
}

/// Exact SHAP of rows `start + 1 .. start + len` (R's numbering from 1
/// after `start`): list(values = rows × p × K row-major, se, n_iter,
/// converged), or NULL after Ctrl-C.
/// @noRd
#[extendr]
fn rs_shap_exact(
    ex: ExternalPtr<Explainer>,
    model: ExternalPtr<Model>,
    start: f64,
    len: f64,
) -> ApiResult<Robj> {
    let start = count(start, "start", 0, i32::MAX as i64)? as usize;
    let len = count(len, "len", 1, i32::MAX as i64)? as usize;
    let res = exact::shap(&ex, &model, start, len, &mut interrupt::pending)?;
    Ok(res.map(block_list).unwrap_or_else(|| ().into()))
}

/// Kernel SHAP of a block of rows (as [`rs_shap_exact`]).
/// @noRd
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_shap_kernel(
    ex: ExternalPtr<Explainer>,
    model: ExternalPtr<Model>,
    start: f64,
    len: f64,
    hybrid_degree: f64,
    m: f64,
    tol: f64,
    max_iter: f64,
    seed: f64,
) -> ApiResult<Robj> {
    let start = count(start, "start", 0, i32::MAX as i64)? as usize;
    let len = count(len, "len", 1, i32::MAX as i64)? as usize;
    if !(tol.is_finite() && tol >= 0.0) {
        return Err(ApiError::input(msg!(
            "{.arg tol} must be a finite number >= 0, not {tol}.",
            tol = tol
        )));
    }
    let opts = KernelOptions {
        hybrid_degree: count(hybrid_degree, "hybrid_degree", 0, 1 << 20)? as usize,
        m: count(m, "m", 2, i32::MAX as i64)? as usize,
        tol,
        max_iter: count(max_iter, "max_iter", 1, i32::MAX as i64)? as usize,
        seed: seed_of(seed)? as u64,
    };
    let res = kernel::shap(&ex, &model, start, len, &opts, &mut interrupt::pending)?;
    Ok(res.map(block_list).unwrap_or_else(|| ().into()))
}

extendr_module! {
    mod shap_api;
    fn rs_shap_new;
    fn rs_shap_info;
    fn rs_shap_exact;
    fn rs_shap_kernel;
}
