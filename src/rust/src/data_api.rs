//! Column data from R into device tensors, done once per fit / predict.
use crate::convert::{ApiError, ApiResult, Columns};
use extendr_api::prelude::*;
use tabnet_core::data::{beyond_f32, Dataset, Targets};
use tabnet_core::msg;
use tabnet_core::Model;

/// `num`/`cat`: lists of double / integer (factor code) vectors in the model's
/// tensor order; `names`: predictor names in original order; `y_class` (0-based
/// codes) or `y_value`: named lists of outcome columns, or NULL; `weights` or NULL.
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
) -> ApiResult<ExternalPtr<Dataset>> {
    let (num, cat) = (Columns::of(&num), Columns::of(&cat));
    let num = num.reals("numeric predictor")?;
    let cat = cat.integers("categorical predictor")?;
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let class_cols = match &y_class {
        Nullable::NotNull(l) => Some(Columns::of(l)),
        Nullable::Null => None,
    };
    let classes = match &class_cols {
        Some(c) => Some(c.integers("outcome")?),
        None => None,
    };
    let value_cols = match &y_value {
        Nullable::NotNull(l) => Some((Columns::of(l), l)),
        Nullable::Null => None,
    };
    let values = match &value_cols {
        Some((c, l)) => {
            let cols = c.reals("outcome")?;
            let outcome_names: Vec<String> = l
                .names()
                .map(|n| n.map(String::from).collect())
                .unwrap_or_default();
            for (k, col) in cols.iter().enumerate() {
                if let Some(v) = beyond_f32(col) {
                    let name = outcome_names
                        .get(k)
                        .cloned()
                        .unwrap_or_else(|| format!("#{}", k + 1));
                    return Err(ApiError::input(msg!(
                        "Outcome {.field {name}} holds {v}, beyond the float32 range (about ±3.4e38) the network computes in; rescale it.",
                        name = name,
                        v = v
                    )));
                }
            }
            Some(cols)
        }
        None => None,
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
                .ok_or_else(|| ApiError::internal("`weights` must be a double vector"))?,
        )
    };
    let device = model.vs.device();
    let data = Dataset::from_columns(&model.cfg, &num, &cat, &names, targets, w, device)?;
    Ok(ExternalPtr::new(data))
}

extendr_module! {
    mod data_api;
    fn rs_dataset;
}
