//! From a record batch to a [`Dataset`]: the model's predictors by name
//! (numeric, integer and boolean columns as numbers, dictionary columns as
//! factor codes matched by level), and the outcome (a string or dictionary
//! column for classification, a numeric one for regression). Nulls follow
//! the data-frame path: a missing predictor cell is NaN / NA (no prior
//! attention), a missing outcome is an error.
use crate::config::NetConfig;
use crate::data::{Dataset, Targets, NA_INTEGER};
use crate::error::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde::Deserialize;
use std::collections::HashMap;
use tch::Device;

/// What the model reads, in the layout the R layer fitted (`layout$names`).
#[derive(Clone, Debug, Deserialize)]
pub struct ColumnSpec {
    /// Predictor names, in the model's original column order.
    pub names: Vec<String>,
    /// Per predictor: its levels (a factor), or `None` (numeric).
    pub levels: Vec<Option<Vec<String>>>,
    pub outcome: Option<OutcomeSpec>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct OutcomeSpec {
    pub name: String,
    /// The class levels (classification), or `None` (regression).
    pub levels: Option<Vec<String>>,
}

impl ColumnSpec {
    pub fn from_json(json: &str) -> Result<ColumnSpec> {
        serde_json::from_str(json).map_err(Error::Config)
    }

    /// The columns a pass reads: predictors, then the outcome if `outcome`.
    pub fn columns(&self, outcome: bool) -> Vec<String> {
        let mut c = self.names.clone();
        if let (true, Some(o)) = (outcome, &self.outcome) {
            c.push(o.name.clone());
        }
        c
    }
}

/// How the R layer treats an Arrow column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// floating point: an R double
    Double,
    /// integers: an R integer (or double when beyond its range)
    Integer,
    Boolean,
    /// string-valued dictionary: an R factor
    Dictionary,
    String,
    Unsupported,
}

impl ColumnKind {
    pub fn of(dt: &DataType) -> ColumnKind {
        use DataType::*;
        match dt {
            Float16 | Float32 | Float64 => ColumnKind::Double,
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => ColumnKind::Integer,
            Boolean => ColumnKind::Boolean,
            Dictionary(_, v) if matches!(**v, Utf8 | LargeUtf8) => ColumnKind::Dictionary,
            Utf8 | LargeUtf8 => ColumnKind::String,
            _ => ColumnKind::Unsupported,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnKind::Double => "double",
            ColumnKind::Integer => "integer",
            ColumnKind::Boolean => "boolean",
            ColumnKind::Dictionary => "dictionary",
            ColumnKind::String => "string",
            ColumnKind::Unsupported => "unsupported",
        }
    }
}

macro_rules! prim_f64 {
    ($col:expr, $($t:ty),*) => {{
        $(if let Some(a) = $col.as_primitive_opt::<$t>() {
            return Some(a.iter().map(|v| v.map_or(f64::NAN, |x| x as f64)).collect());
        })*
    }};
}

/// A numeric, integer or boolean column as doubles, null → NaN.
pub fn numeric_values(col: &dyn Array) -> Option<Vec<f64>> {
    if let Some(a) = col.as_primitive_opt::<Float64Type>() {
        if a.null_count() == 0 {
            return Some(a.values().to_vec());
        }
        return Some(a.iter().map(|v| v.unwrap_or(f64::NAN)).collect());
    }
    if let Some(a) = col.as_primitive_opt::<Float16Type>() {
        return Some(a.iter().map(|v| v.map_or(f64::NAN, f64::from)).collect());
    }
    prim_f64!(
        col,
        Float32Type,
        Int8Type,
        Int16Type,
        Int32Type,
        Int64Type,
        UInt8Type,
        UInt16Type,
        UInt32Type,
        UInt64Type
    );
    if let Some(a) = col.as_boolean_opt() {
        return Some(
            a.iter()
                .map(|v| v.map_or(f64::NAN, |b| b as u8 as f64))
                .collect(),
        );
    }
    None
}

/// The string of each row of a string or dictionary column (`None`: null),
/// given to `f` row by row.
pub fn for_each_label(col: &dyn Array, mut f: impl FnMut(Option<&str>)) -> bool {
    if let Some(a) = col.as_string_opt::<i32>() {
        a.iter().for_each(f);
        return true;
    }
    if let Some(a) = col.as_string_opt::<i64>() {
        a.iter().for_each(f);
        return true;
    }
    if let Some(d) = col.as_any_dictionary_opt() {
        let values: Vec<Option<&str>> = if let Some(v) = d.values().as_string_opt::<i32>() {
            v.iter().collect()
        } else if let Some(v) = d.values().as_string_opt::<i64>() {
            v.iter().collect()
        } else {
            return false;
        };
        if values.is_empty() {
            (0..col.len()).for_each(|_| f(None));
            return true;
        }
        let keys = d.normalized_keys();
        let nulls = d.keys().logical_nulls();
        for (i, k) in keys.into_iter().enumerate() {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                f(None)
            } else {
                f(values[k])
            }
        }
        return true;
    }
    false
}

/// The values of a dictionary column's dictionary (its factor levels).
pub fn dictionary_values(col: &dyn Array) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(d) = col.as_any_dictionary_opt() {
        if let Some(v) = d.values().as_string_opt::<i32>() {
            out.extend(v.iter().flatten().map(String::from));
        } else if let Some(v) = d.values().as_string_opt::<i64>() {
            out.extend(v.iter().flatten().map(String::from));
        }
    }
    out
}

fn gather<T: Copy>(v: Vec<T>, rows: Option<&[usize]>) -> Vec<T> {
    match rows {
        None => v,
        Some(r) => r.iter().map(|&i| v[i]).collect(),
    }
}

/// Checks that `batch` has every column the spec needs, of a usable kind.
fn column<'a>(batch: &'a RecordBatch, name: &str, what: &str) -> Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| Error::Invalid(format!("the column `{name}` is missing from {what}").into()))
}

/// Converts `batch` (its rows `rows`, or all) into a data set for `cfg`.
/// With `outcome`, it carries the spec's outcome. Returns the data set and
/// the number of factor cells whose level the fit did not see (they use the
/// unknown slot). `what` names the file or stream in errors.
pub(crate) fn to_dataset(
    cfg: &NetConfig,
    spec: &ColumnSpec,
    batch: &RecordBatch,
    rows: Option<&[usize]>,
    outcome: bool,
    what: &str,
) -> Result<(Dataset, usize)> {
    let mut num: Vec<Vec<f64>> = Vec::with_capacity(cfg.num_cols.len());
    for &j in &cfg.num_cols {
        let name = &spec.names[j];
        let col = column(batch, name, what)?;
        let kind = ColumnKind::of(col.data_type());
        let v = match numeric_values(col) {
            Some(v) => v,
            None => {
                return Err(Error::Invalid(format!(
                    "the predictor `{name}` in {what} is a {} column; the model was fitted with a numeric one",
                    kind.name()
                ).into()))
            }
        };
        num.push(gather(v, rows));
    }
    let mut unseen = 0usize;
    let mut cat: Vec<Vec<i32>> = Vec::with_capacity(cfg.cat_cols.len());
    for &j in &cfg.cat_cols {
        let name = &spec.names[j];
        let col = column(batch, name, what)?;
        let levels = spec.levels[j].as_deref().unwrap_or(&[]);
        let index: HashMap<&str, i32> = levels
            .iter()
            .enumerate()
            .map(|(k, l)| (l.as_str(), k as i32 + 1))
            .collect();
        let mut codes = Vec::with_capacity(col.len());
        let kind = ColumnKind::of(col.data_type());
        if kind != ColumnKind::Dictionary
            || !for_each_label(col, |l| {
                codes.push(match l {
                    None => NA_INTEGER,
                    // a level the model has not seen is a missing value,
                    // as a data frame's (hardhat makes it NA) and a workflow's
                    Some(s) => index.get(s).copied().unwrap_or_else(|| {
                        unseen += 1;
                        NA_INTEGER
                    }),
                })
            })
        {
            return Err(Error::Invalid(format!(
                "the predictor `{name}` in {what} is a {} column; the model was fitted with a factor (an Arrow dictionary)",
                kind.name()
            ).into()));
        }
        cat.push(gather(codes, rows));
    }
    let targets = match (&spec.outcome, outcome) {
        (Some(o), true) => Some(outcome_values(o, batch, rows, what)?),
        _ => None,
    };
    let n_refs: Vec<&[f64]> = num.iter().map(|c| c.as_slice()).collect();
    let c_refs: Vec<&[i32]> = cat.iter().map(|c| c.as_slice()).collect();
    let targets = targets.map(|t| match t {
        Outcome::Classes(c) => (Some(c), None),
        Outcome::Values(v) => (None, Some(v)),
    });
    let (classes, values) = targets.unwrap_or((None, None));
    let t = match (&classes, &values) {
        (Some(c), _) => Some(Targets::Classes(vec![c.as_slice()])),
        (None, Some(v)) => Some(Targets::Values(vec![v.as_slice()])),
        _ => None,
    };
    let data = Dataset::from_columns(cfg, &n_refs, &c_refs, &spec.names, t, None, Device::Cpu)
        .map_err(|e| match e {
            Error::Invalid(m) => Error::Invalid(format!("{m} (in {what})").into()),
            other => other,
        })?;
    Ok((data, unseen))
}

enum Outcome {
    Classes(Vec<i32>),
    Values(Vec<f64>),
}

fn outcome_values(
    o: &OutcomeSpec,
    batch: &RecordBatch,
    rows: Option<&[usize]>,
    what: &str,
) -> Result<Outcome> {
    let col = column(batch, &o.name, what)?;
    let name = &o.name;
    let missing =
        || Error::Invalid(format!("the outcome `{name}` has missing values in {what}").into());
    match &o.levels {
        Some(levels) => {
            let index: HashMap<&str, i32> = levels
                .iter()
                .enumerate()
                .map(|(k, l)| (l.as_str(), k as i32))
                .collect();
            // -1: null, -2: a value that is not a level (the first is kept)
            let mut codes = Vec::with_capacity(col.len());
            let mut bad: Option<String> = None;
            let ok = for_each_label(col, |l| {
                codes.push(match l {
                    None => -1,
                    Some(s) => index.get(s).copied().unwrap_or_else(|| {
                        bad.get_or_insert_with(|| s.to_string());
                        -2
                    }),
                })
            });
            if !ok {
                return Err(Error::Invalid(format!(
                    "the outcome `{name}` in {what} is a {} column; a classification outcome is a string or dictionary column",
                    ColumnKind::of(col.data_type()).name()
                ).into()));
            }
            let codes = gather(codes, rows);
            if codes.contains(&-1) {
                return Err(missing());
            }
            if codes.contains(&-2) {
                let b = bad.unwrap_or_default();
                return Err(Error::Invalid(format!(
                    "the outcome `{name}` in {what} has the value \"{b}\", which is not one of the levels the model was fitted with"
                ).into()));
            }
            Ok(Outcome::Classes(codes))
        }
        None => {
            let v = numeric_values(col).ok_or_else(|| {
                Error::Invalid(format!(
                    "the outcome `{name}` in {what} is a {} column; a regression outcome is numeric",
                    ColumnKind::of(col.data_type()).name()
                ).into())
            })?;
            let v = gather(v, rows);
            if v.iter().any(|x| x.is_nan()) {
                return Err(missing());
            }
            Ok(Outcome::Values(v))
        }
    }
}
