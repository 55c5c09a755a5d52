//! TorchScript export of a fitted network (see `tabnet_core::export`).
use crate::convert::ApiResult;
use extendr_api::prelude::*;
use tabnet_core::Model;

/// Writes the traced module of `model` to `path` with `metadata` (JSON) as
/// its extra file `tabnetrs.json`. The R layer checks the path and builds the
/// metadata.
/// @noRd
#[extendr]
fn rs_model_export(model: ExternalPtr<Model>, path: &str, metadata: &str) -> ApiResult<()> {
    Ok(tabnet_core::export::export(
        &model,
        std::path::Path::new(path),
        metadata,
    )?)
}

extendr_module! {
    mod export_api;
    fn rs_model_export;
}
