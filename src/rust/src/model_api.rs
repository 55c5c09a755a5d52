//! Building, loading and saving networks.
use crate::convert::{device, r_err};
use extendr_api::prelude::*;
use extendr_api::Result;
use tabnet_core::{Model, NetConfig};

fn parse_config(json: &str) -> Result<NetConfig> {
    serde_json::from_str(json)
        .map_err(|e| Error::Other(format!("invalid network configuration: {e}")))
}

fn ratio(kind: &str, pretraining_ratio: f64) -> Result<Option<f64>> {
    match kind {
        "supervised" => Ok(None),
        "pretrain" => Ok(Some(pretraining_ratio)),
        other => Err(Error::Other(format!("unknown model kind \"{other}\""))),
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
) -> Result<ExternalPtr<Model>> {
    let cfg = parse_config(config_json)?;
    let dev = device(device_name)?;
    tch::manual_seed(seed as i64);
    let model = match ratio(kind, pretraining_ratio)? {
        Some(r) => Model::new_pretrainer(cfg, r, dev),
        None => Model::new(cfg, dev),
    }
    .map_err(r_err)?;
    Ok(ExternalPtr::new(model))
}

/// Rebuilds a network from its config and saved weights.
/// @noRd
#[extendr]
fn rs_model_load(
    config_json: &str,
    kind: &str,
    pretraining_ratio: f64,
    weights: Raw,
    device_name: &str,
) -> Result<ExternalPtr<Model>> {
    let cfg = parse_config(config_json)?;
    let model = Model::load(
        cfg,
        ratio(kind, pretraining_ratio)?,
        weights.as_slice(),
        device(device_name)?,
    )
    .map_err(r_err)?;
    Ok(ExternalPtr::new(model))
}

/// Overwrites the weights of a live model (checkpoints, best epoch).
/// @noRd
#[extendr]
fn rs_model_set_weights(mut model: ExternalPtr<Model>, weights: Raw) -> Result<()> {
    model.load_bytes(weights.as_slice()).map_err(r_err)
}

/// The weights (parameters and batch-norm statistics) as bytes.
/// @noRd
#[extendr]
fn rs_model_weights(model: ExternalPtr<Model>) -> Result<Raw> {
    Ok(Raw::from_bytes(&model.to_bytes().map_err(r_err)?))
}

/// @noRd
#[extendr]
fn rs_model_n_parameters(model: ExternalPtr<Model>) -> f64 {
    model.n_parameters() as f64
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
fn rs_model_copy_encoder(mut dst: ExternalPtr<Model>, src: ExternalPtr<Model>) -> Result<i32> {
    Ok(dst.copy_encoder_from(&src).map_err(r_err)? as i32)
}

extendr_module! {
    mod model_api;
    fn rs_model_new;
    fn rs_model_load;
    fn rs_model_set_weights;
    fn rs_model_weights;
    fn rs_model_n_parameters;
    fn rs_model_config;
    fn rs_model_copy_encoder;
}
