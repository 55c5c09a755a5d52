//! Building, loading (verified) and saving networks.
use crate::convert::{self, device, ApiError, ApiResult};
use extendr_api::prelude::*;
use tabnet_core::digest::model_digest;
use tabnet_core::msg;
use tabnet_core::{Model, NetConfig};

fn parse_config(json: &str) -> ApiResult<NetConfig> {
    serde_json::from_str(json).map_err(|e| {
        ApiError::model(msg!(
            "The model's network configuration cannot be read: {reason}.",
            reason = e.to_string()
        ))
    })
}

fn ratio(kind: &str, pretraining_ratio: f64) -> ApiResult<Option<f64>> {
    match kind {
        "supervised" => Ok(None),
        "pretrain" => Ok(Some(pretraining_ratio)),
        other => Err(ApiError::internal(format!(
            "unknown model kind \"{other}\""
        ))),
    }
}

/// A freshly initialised network; `seed` seeds libtorch first.
/// @noRd
#[extendr]
fn rs_model_new(
    config_json: &str,
    kind: &str,
    pretraining_ratio: f64,
    seed: f64,
    device_name: &str,
) -> ApiResult<ExternalPtr<Model>> {
    let cfg = parse_config(config_json)?;
    let dev = device(device_name)?;
    tch::manual_seed(convert::seed(seed)?);
    let model = match ratio(kind, pretraining_ratio)? {
        Some(r) => Model::new_pretrainer(cfg, r, dev),
        None => Model::new(cfg, dev),
    }?;
    Ok(ExternalPtr::new(model))
}

/// The checksum saved with a model (see `tabnet_core::digest`).
/// @noRd
#[extendr]
fn rs_model_digest(kind: &str, config_json: &str, weights: Raw) -> String {
    model_digest(kind, config_json, weights.as_slice())
}

/// Rebuilds a network from its config and saved weights. `digest` is the
/// checksum stored with them ("" for models saved before checksums existed):
/// a mismatch means the bytes or the configuration were damaged or edited.
/// @noRd
#[extendr]
fn rs_model_load(
    config_json: &str,
    kind: &str,
    pretraining_ratio: f64,
    weights: Raw,
    device_name: &str,
    digest: &str,
) -> ApiResult<ExternalPtr<Model>> {
    if !digest.is_empty() && model_digest(kind, config_json, weights.as_slice()) != digest {
        return Err(ApiError::model(msg!(
            "The model's weights or network configuration do not match the checksum saved with them."
        )));
    }
    let cfg = parse_config(config_json)?;
    let model = Model::load(
        cfg,
        ratio(kind, pretraining_ratio)?,
        weights.as_slice(),
        device(device_name)?,
    )?;
    Ok(ExternalPtr::new(model))
}

/// Overwrites the weights of a live model (checkpoints, best epoch).
/// @noRd
#[extendr]
fn rs_model_set_weights(mut model: ExternalPtr<Model>, weights: Raw) -> ApiResult<()> {
    Ok(model.load_bytes(weights.as_slice())?)
}

/// The weights (parameters and batch-norm statistics) as bytes.
/// @noRd
#[extendr]
fn rs_model_weights(model: ExternalPtr<Model>) -> ApiResult<Raw> {
    Ok(Raw::from_bytes(&model.to_bytes()?))
}

/// @noRd
#[extendr]
fn rs_model_n_parameters(model: ExternalPtr<Model>) -> f64 {
    model.n_parameters() as f64
}

/// True when every weight is finite (training checks it after each epoch).
/// @noRd
#[extendr]
fn rs_model_is_finite(model: ExternalPtr<Model>) -> bool {
    model.is_finite()
}

/// The config as the core normalised it.
/// @noRd
#[extendr]
fn rs_model_config(model: ExternalPtr<Model>) -> String {
    model.config_json()
}

/// Copies embedder and encoder weights from `src` (fine-tuning); returns the count.
/// @noRd
#[extendr]
fn rs_model_copy_encoder(mut dst: ExternalPtr<Model>, src: ExternalPtr<Model>) -> ApiResult<i32> {
    Ok(dst.copy_encoder_from(&src)? as i32)
}

extendr_module! {
    mod model_api;
    fn rs_model_new;
    fn rs_model_digest;
    fn rs_model_load;
    fn rs_model_set_weights;
    fn rs_model_weights;
    fn rs_model_n_parameters;
    fn rs_model_is_finite;
    fn rs_model_config;
    fn rs_model_copy_encoder;
}
