//! Column data from R into device tensors, done once per fit / predict.
use crate::convert::{integer_columns, r_err, real_columns};
use extendr_api::prelude::*;
use extendr_api::Result;
use tabnet_core::data::{Dataset, Targets};
use tabnet_core::Model;

/// `num`/`cat`: lists of double / integer (factor code) vectors in the model's
/// tensor order; `names`: predictor names in original order; `y_class` (0-based
/// codes) or `y_value`: lists of outcome columns, or NULL; `weights` or NULL.
/// @noRd
#[extendr]
fn rs_dataset(
    model: ExternalPtr<Model>,
    num: List,
    cat: List,
    names: Strings,
    y_class: Nullable<List>,
    y_value: Nullable<List>,
    weights: Robj,
) -> Result<ExternalPtr<Dataset>> {
    let num = real_columns(&num, "numeric predictor")?;
    let cat = integer_columns(&cat, "categorical predictor")?;
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let classes = match &y_class {
        Nullable::NotNull(l) => Some(integer_columns(l, "outcome")?),
        Nullable::Null => None,
    };
    let values = match &y_value {
        Nullable::NotNull(l) => Some(real_columns(l, "outcome")?),
        Nullable::Null => None,
    };
    let targets = match (classes, values) {
        (Some(c), _) => Some(Targets::Classes(c)),
        (None, Some(v)) => Some(Targets::Values(v)),
        _ => None,
    };
    let w: Option<&[f64]> = if weights.is_null() {
        None
    } else {
        Some(
            weights
                .as_real_slice()
                .ok_or_else(|| Error::Other("`weights` must be a double vector".into()))?,
        )
    };
    let device = model.vs.device();
    let data =
        Dataset::from_columns(&model.cfg, &num, &cat, &names, targets, w, device).map_err(r_err)?;
    Ok(ExternalPtr::new(data))
}

/// @noRd
#[extendr]
fn rs_dataset_nrow(data: ExternalPtr<Dataset>) -> f64 {
    data.n as f64
}

extendr_module! {
    mod data_api;
    fn rs_dataset;
    fn rs_dataset_nrow;
}
