//! The first read of a source, before a fit: rows per unit, and per column
//! its nulls, infinite values and (string or dictionary columns) its values,
//! from which the R layer builds the factor levels (as `factor()` would).
use super::columns::{dictionary_values, for_each_label, numeric_values, ColumnKind};
use super::pass::Pass;
use super::source::Source;
use crate::error::{Error, Result};
use crate::msg;
use std::collections::HashSet;

pub struct ColumnScan {
    pub name: String,
    pub kind: ColumnKind,
    pub nulls: u64,
    pub infinite: u64,
    /// Distinct values: a dictionary's values (union of the record batches'
    /// dictionaries, first seen first), a string column's values in first-seen
    /// order; empty for other columns.
    pub values: Vec<String>,
}

pub struct Scan {
    pub n_rows: u64,
    /// rows of each unit of the source, in source order
    pub unit_rows: Vec<u64>,
    pub columns: Vec<ColumnScan>,
}

/// Reads `names` from every record batch of `source`. `interrupted` is asked
/// between record batches; `Ok(None)` when it said yes.
pub fn scan(
    source: &mut Source,
    names: &[String],
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Option<Scan>> {
    let schema = source.schema()?;
    let mut columns = Vec::with_capacity(names.len());
    for n in names {
        let f = schema.field_with_name(n).map_err(|_| {
            Error::Invalid(msg!(
                "The column {.field {name}} is not in the data.",
                name = n
            ))
        })?;
        columns.push(ColumnScan {
            name: n.clone(),
            kind: ColumnKind::of(f.data_type()),
            nulls: 0,
            infinite: 0,
            values: Vec::new(),
        });
    }
    let mut seen: Vec<HashSet<String>> = vec![HashSet::new(); names.len()];
    let units = source.units();
    let mut unit_rows = vec![0u64; units.len()];
    let mut pass = Pass::new(source, None, None, names.to_vec())?;
    let mut n_rows = 0u64;
    while let Some(piece) = pass.next_piece(source)? {
        if interrupted() {
            return Ok(None);
        }
        let b = &piece.batch;
        for (k, c) in columns.iter_mut().enumerate() {
            let col = b.column_by_name(&c.name).ok_or_else(|| {
                Error::Invalid(
                    format!("the column `{}` is missing from {}", c.name, piece.what).into(),
                )
            })?;
            let kind = ColumnKind::of(col.data_type());
            if kind != c.kind {
                return Err(Error::Invalid(
                    format!(
                        "the column `{}` is a {} column in {} but a {} column elsewhere",
                        c.name,
                        kind.name(),
                        piece.what,
                        c.kind.name()
                    )
                    .into(),
                ));
            }
            c.nulls += col.logical_null_count() as u64;
            match kind {
                ColumnKind::Double => {
                    if let Some(v) = numeric_values(col.as_ref()) {
                        c.infinite += v.iter().filter(|x| x.is_infinite()).count() as u64;
                    }
                }
                ColumnKind::Dictionary => {
                    for v in dictionary_values(col.as_ref()) {
                        if seen[k].insert(v.clone()) {
                            c.values.push(v);
                        }
                    }
                }
                ColumnKind::String => {
                    let s = &mut seen[k];
                    let vals = &mut c.values;
                    for_each_label(col.as_ref(), |l| {
                        if let Some(l) = l {
                            if !s.contains(l) {
                                s.insert(l.to_string());
                                vals.push(l.to_string());
                            }
                        }
                    });
                }
                _ => {}
            }
        }
        n_rows += b.num_rows() as u64;
        unit_rows[pass.position()] += b.num_rows() as u64;
    }
    Ok(Some(Scan {
        n_rows,
        unit_rows,
        columns,
    }))
}
