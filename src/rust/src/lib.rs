//! The extendr layer of tabnetrs: converts and validates R values, calls the
//! pure `tabnet_core` crate, and turns its errors into R errors. Every entry
//! point is internal (`rs_*`, `@noRd`); the R layer owns the user API.
use extendr_api::prelude::*;

mod arrow_api;
mod convert;
mod data_api;
mod export_api;
mod interrupt;
mod lrp_api;
mod model_api;
mod runtime_api;
mod shap_api;
mod train_api;

extendr_module! {
    mod tabnetrs;
    use arrow_api;
    use data_api;
    use export_api;
    use lrp_api;
    use model_api;
    use runtime_api;
    use shap_api;
    use train_api;
}
