use extendr_api::prelude::*;

/// @noRd
#[extendr]
fn rs_hello() -> i32 { 1 }

extendr_module! {
    mod tabnetrs;
    fn rs_hello;
}
