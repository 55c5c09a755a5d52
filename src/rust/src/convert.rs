//! Conversions between R values and core types, and core errors → R errors.
use extendr_api::prelude::*;
use extendr_api::Result;
use tabnet_core::Error as CoreError;
use tch::{Device, Kind, Tensor};

/// Any core error becomes an R error carrying its message.
pub fn r_err(e: CoreError) -> Error {
    Error::Other(e.to_string())
}

/// Reads a libtorch device name: "cpu" or "cuda" (or "cuda:N").
pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        s if s.starts_with("cuda") => {
            if !tch::Cuda::is_available() {
                return Err(Error::Other(
                    "`device = \"cuda\"` was requested but this libtorch has no CUDA support or no GPU is visible".into(),
                ));
            }
            let idx = s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .unwrap_or(0);
            Ok(Device::Cuda(idx))
        }
        other => Err(Error::Other(format!("unknown device \"{other}\""))),
    }
}

/// Slices of the double vectors in an R list.
pub fn real_columns(list: &List, what: &str) -> Result<Vec<&'static [f64]>> {
    list.values()
        .enumerate()
        .map(|(i, v)| {
            v.as_real_slice()
                // SAFETY: the R objects outlive the call that uses these slices.
                .map(|s| unsafe { std::mem::transmute::<&[f64], &'static [f64]>(s) })
                .ok_or_else(|| {
                    Error::Other(format!("{what} column {} must be a double vector", i + 1))
                })
        })
        .collect()
}

/// Slices of the integer vectors (factor codes) in an R list.
pub fn integer_columns(list: &List, what: &str) -> Result<Vec<&'static [i32]>> {
    list.values()
        .enumerate()
        .map(|(i, v)| {
            v.as_integer_slice().ok_or_else(|| {
                Error::Other(format!("{what} column {} must be an integer vector", i + 1))
            })
        })
        .collect()
}

/// A 2-d tensor as an R numeric matrix (column-major).
pub fn matrix(t: &Tensor) -> Result<Robj> {
    let size = t.size();
    let (n, p) = (size[0] as usize, size[1] as usize);
    let values: Vec<f64> = Vec::from(&t.to_kind(Kind::Double).tr().contiguous().view([-1]));
    let mut robj: Robj = Doubles::from_values(values).into();
    robj.set_attrib("dim", r!([n as i32, p as i32]))?;
    Ok(robj)
}
