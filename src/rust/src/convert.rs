//! Conversions between R values and core types, and the one error path to R.
//!
//! Every fallible entry point returns [`ApiResult`]. With extendr's
//! `result_condition` feature an `Err` reaches R as a value (a condition object
//! holding `list(kind, message, template, args)`), never as a panic; the R
//! wrapper (`rust_result()` in `R/errors.R`) translates the template through
//! the package's catalogue, fills in the arguments with cli, and raises it as
//! a `tabnetrs_error_<kind>` with the user's call (`message`, the English
//! text, is the fallback). Panics are silenced ([`init`]) and caught by extendr;
//! `rust_result()` reports them as internal errors.
use extendr_api::prelude::*;
use tabnet_core::columns_into;
use tabnet_core::error::{Arg, Message};
use tabnet_core::{msg, Error as CoreError, ErrorKind};
use tch::{Device, Tensor};

/// An error for R: its kind (the condition subclass) and a message for users.
#[derive(Debug)]
pub struct ApiError {
    kind: &'static str,
    message: Message,
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    /// The caller's data or arguments are unusable.
    pub fn input(message: impl Into<Message>) -> ApiError {
        ApiError {
            kind: "input",
            message: message.into(),
        }
    }

    /// A saved model is corrupted or was modified.
    pub fn model(message: impl Into<Message>) -> ApiError {
        ApiError {
            kind: "model",
            message: message.into(),
        }
    }

    /// A defect of tabnetrs (the R layer passed something it should not have).
    pub fn internal(message: impl Into<Message>) -> ApiError {
        ApiError {
            kind: "internal",
            message: message.into(),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        let kind = match e.kind() {
            ErrorKind::Input => "input",
            ErrorKind::Model => "model",
            ErrorKind::Internal => "internal",
        };
        let message = match e {
            CoreError::Invalid(m) | CoreError::Model(m) => m,
            other => Message::text(other.to_string()),
        };
        ApiError { kind, message }
    }
}

impl From<extendr_api::Error> for ApiError {
    fn from(e: extendr_api::Error) -> ApiError {
        ApiError::internal(e.to_string())
    }
}

impl From<ApiError> for Robj {
    fn from(e: ApiError) -> Robj {
        let args: Vec<(&str, Robj)> = e
            .message
            .args()
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Arg::Text(s) => Robj::from(s.as_str()),
                    Arg::Number(x) => Robj::from(*x),
                    Arg::Count(n) if i32::try_from(*n).is_ok() => Robj::from(*n as i32),
                    Arg::Count(n) => Robj::from(*n as f64),
                };
                (*k, v)
            })
            .collect();
        list!(
            kind = e.kind,
            message = e.message.to_string(),
            template = e.message.template_text(),
            args = List::from_pairs(args)
        )
        .into()
    }
}

/// Called once when the package loads: panics print nothing (extendr catches
/// them and R reports an internal error) unless the environment variable
/// `EXTENDR_BACKTRACE` is `true` or `1` (extendr's own hook: the debug switch
/// for developers), and this process is recorded as the one fork-based workers
/// are forked from.
pub fn init() {
    extendr_api::thread_safety::register_extendr_panic_hook();
    tabnet_core::runtime::init();
}

/// Reads a libtorch device name: "cpu" or "cuda" (or "cuda:N").
pub fn device(name: &str) -> ApiResult<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        s if s.starts_with("cuda") => {
            if !tch::Cuda::is_available() {
                return Err(ApiError::input(msg!(
                    "{.code device = \"cuda\"} was requested, but this libtorch has no CUDA support or no GPU is visible."
                )));
            }
            let idx = s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .unwrap_or(0);
            Ok(Device::Cuda(idx))
        }
        other => Err(ApiError::input(msg!(
            "Unknown device {.val {device}}.",
            device = other
        ))),
    }
}

/// The vectors of an R list, held so that slices of them can be borrowed
/// ([`Columns::reals`], [`Columns::integers`]) for as long as this value lives
/// (the list itself keeps the R objects alive for the call).
pub struct Columns(Vec<Robj>);

impl Columns {
    pub fn of(list: &List) -> Columns {
        Columns(list.values().collect())
    }

    /// Slices of the double vectors.
    pub fn reals(&self, what: &str) -> ApiResult<Vec<&[f64]>> {
        self.0
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_real_slice().ok_or_else(|| {
                    ApiError::internal(format!("{what} column {} must be a double vector", i + 1))
                })
            })
            .collect()
    }

    /// Slices of the integer vectors (factor codes).
    pub fn integers(&self, what: &str) -> ApiResult<Vec<&[i32]>> {
        self.0
            .iter()
            .enumerate()
            .map(|(i, v)| -> ApiResult<&[i32]> {
                v.as_integer_slice().ok_or_else(|| {
                    ApiError::internal(format!("{what} column {} must be an integer vector", i + 1))
                })
            })
            .collect()
    }
}

/// A whole number in `[lo, hi]` from an R double (R passes counts as doubles).
pub fn count(x: f64, what: &str, lo: i64, hi: i64) -> ApiResult<i64> {
    if !x.is_finite() || x.fract() != 0.0 || x < lo as f64 || x > hi as f64 {
        return Err(ApiError::input(msg!(
            "{.arg {what}} must be a whole number in [{lo}, {hi}], not {x}.",
            what = what,
            lo = lo,
            hi = hi,
            x = x
        )));
    }
    Ok(x as i64)
}

/// A seed from an R double: whole and exactly representable (|seed| <= 2^53),
/// so that distinct seeds stay distinct.
pub fn seed(x: f64) -> ApiResult<i64> {
    const MAX: f64 = 9_007_199_254_740_992.0; // 2^53
    if !x.is_finite() || x.fract() != 0.0 || x.abs() > MAX {
        return Err(ApiError::input(msg!(
            "{.arg seed} must be a whole number with |seed| <= 2^53, not {x}.",
            x = x
        )));
    }
    Ok(x as i64)
}

/// A 2-d tensor as a list of its columns (R double vectors), for tibbles:
/// they take the columns as they are, where a matrix would be copied into
/// columns again (large explanations spent as much time in R's allocator
/// and collector as in the pass).
pub fn columns(t: &Tensor) -> ApiResult<Robj> {
    let size = t.size();
    let (n, p) = (size[0] as usize, size[1] as usize);
    let mut cols: Vec<Robj> = (0..p).map(|_| Doubles::new(n).into()).collect();
    let mut outs: Vec<&mut [f64]> = cols
        .iter_mut()
        .map(|c| {
            c.as_real_slice_mut()
                .expect("a freshly allocated double vector")
        })
        .collect();
    // the tensor read in place (no copy), blocks of rows on the kernels' pool
    columns_into(t, &mut outs);
    Ok(List::from_values(cols).into())
}

/// A 2-d tensor as an R numeric matrix (column-major), written straight
/// from the tensor's f32 values into the R vector (no intermediate double
/// or transposed copies).
pub fn matrix(t: &Tensor) -> ApiResult<Robj> {
    let size = t.size();
    let (n, p) = (size[0] as usize, size[1] as usize);
    let mut robj: Robj = RMatrix::<f64>::new(n, p).into();
    let out = robj
        .as_real_slice_mut()
        .expect("a freshly allocated double matrix");
    // its columns are consecutive runs of n values: written as `columns` does
    if n > 0 {
        let mut cols: Vec<&mut [f64]> = out.chunks_exact_mut(n).collect();
        columns_into(t, &mut cols);
    }
    Ok(robj)
}
