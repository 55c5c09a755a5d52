//! Arrow data (`tabnet_arrow()`): IPC files named by path, or an Arrow C
//! stream moved out of an R (nanoarrow) stream object into a [`StreamSlot`],
//! for the core's
//! `arrow_source`: schema, first scan, training feed, prediction, rows.
use crate::convert::{count, matrix, ApiError, ApiResult};
use crate::interrupt;
use arrow_array::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use extendr_api::prelude::*;
use tabnet_core::arrow_source::{self, ColumnKind, ColumnSpec, Feed, Source};
use tabnet_core::msg;
use tabnet_core::trainer::Trainer;
use tabnet_core::Model;

/// An Arrow C stream moved out of R's (nanoarrow's) `ArrowArrayStream`;
/// a source takes it from here once.
pub struct StreamSlot(Box<FFI_ArrowArrayStream>);

/// Moves the `ArrowArrayStream` at `address` (nanoarrow's
/// `nanoarrow_pointer_addr_chr()` of a valid stream) into a slot: the C data
/// interface's move, which leaves the source marked released.
/// @noRd
#[extendr]
fn rs_arrow_stream_take(address: &str) -> ApiResult<ExternalPtr<StreamSlot>> {
    let addr: usize = address
        .parse()
        .map_err(|_| ApiError::internal("a stream address is a decimal number"))?;
    if addr == 0 {
        return Err(ApiError::internal("a stream address is not null"));
    }
    let p = addr as *mut FFI_ArrowArrayStream;
    // SAFETY: the R layer passes the address of the `ArrowArrayStream`
    // struct of a valid nanoarrow stream object it holds during this call;
    // the struct is read once and replaced by a released (empty) one, so its
    // callbacks are owned and released by the slot alone.
    let stream = unsafe { std::ptr::replace(p, FFI_ArrowArrayStream::empty()) };
    Ok(ExternalPtr::new(StreamSlot(Box::new(stream))))
}

fn take_stream(mut slot: ExternalPtr<StreamSlot>) -> ApiResult<Source> {
    let stream = std::mem::replace(&mut *slot.0, FFI_ArrowArrayStream::empty());
    if stream.release.is_none() {
        return Err(ApiError::input(msg!(
            "The Arrow stream was already read and cannot be read again: give {.fn tabnet_arrow} a function that returns a fresh stream."
        )));
    }
    let reader = ArrowArrayStreamReader::try_new(stream).map_err(|e| {
        ApiError::input(msg!(
            "Cannot read the Arrow stream: {reason}.",
            reason = e.to_string()
        ))
    })?;
    Ok(Source::stream(Box::new(reader)))
}

/// A character vector of paths (IPC files or directories) or a stream slot.
fn source_of(source: Robj) -> ApiResult<Source> {
    if let Some(paths) = source.as_str_vector() {
        let paths: Vec<String> = paths.iter().map(|s| s.to_string()).collect();
        return Ok(Source::files(&paths)?);
    }
    match ExternalPtr::<StreamSlot>::try_from(source) {
        Ok(slot) => take_stream(slot),
        Err(_) => Err(ApiError::internal(
            "an Arrow source is paths or a stream slot",
        )),
    }
}

fn doubles_u64(x: &[u64]) -> Doubles {
    Doubles::from_values(x.iter().map(|&v| v as f64))
}

fn u64s(x: Robj, what: &str) -> ApiResult<Vec<u64>> {
    if x.is_null() {
        return Ok(Vec::new());
    }
    let v = x
        .as_real_slice()
        .ok_or_else(|| ApiError::internal(format!("`{what}` must be a double vector")))?;
    v.iter()
        .map(|&r| {
            if r.is_finite() && r >= 0.0 && r.fract() == 0.0 {
                Ok(r as u64)
            } else {
                Err(ApiError::internal(format!("`{what}` holds {r}")))
            }
        })
        .collect()
}

/// list(name, kind, arrow_type): the columns of the source's schema.
/// @noRd
#[extendr]
fn rs_arrow_schema(source: Robj) -> ApiResult<List> {
    let schema = source_of(source)?.schema()?;
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let kinds: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| ColumnKind::of(f.data_type()).name())
        .collect();
    let types: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().to_string())
        .collect();
    Ok(list!(name = names, kind = kinds, arrow_type = types))
}

/// The first read: list(n_rows, unit_rows, columns = list of list(name, kind,
/// nulls, infinite, values)); NULL when the user pressed Ctrl-C.
/// @noRd
#[extendr]
fn rs_arrow_scan(source: Robj, names: Strings) -> ApiResult<Robj> {
    let mut source = source_of(source)?;
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let scan = match arrow_source::scan(&mut source, &names, &mut interrupt::pending)? {
        Some(s) => s,
        None => return Ok(Robj::from(())),
    };
    let columns: Vec<Robj> = scan
        .columns
        .iter()
        .map(|c| {
            list!(
                name = c.name.clone(),
                kind = c.kind.name(),
                nulls = c.nulls as f64,
                infinite = c.infinite as f64,
                values = c.values.clone()
            )
            .into()
        })
        .collect();
    Ok(list!(
        n_rows = scan.n_rows as f64,
        unit_rows = doubles_u64(&scan.unit_rows),
        columns = List::from_values(columns)
    )
    .into())
}

/// The training feed: `spec_json` the columns (`ColumnSpec`), `unit_rows`
/// from the scan, `held_out` the validation rows (0-based source rows).
/// @noRd
#[extendr]
fn rs_arrow_feed_new(
    source: Robj,
    spec_json: &str,
    unit_rows: Robj,
    held_out: Robj,
    buffer_rows: f64,
) -> ApiResult<ExternalPtr<Feed>> {
    let feed = Feed::new(
        source_of(source)?,
        ColumnSpec::from_json(spec_json)?,
        u64s(unit_rows, "unit_rows")?,
        u64s(held_out, "held_out")?,
        count(buffer_rows, "shuffle_buffer", 2, i64::MAX / 4)?,
    )?;
    Ok(ExternalPtr::new(feed))
}

/// The next epoch's C stream (a stream is read once).
/// @noRd
#[extendr]
fn rs_arrow_feed_set_stream(
    mut feed: ExternalPtr<Feed>,
    slot: ExternalPtr<StreamSlot>,
) -> ApiResult<()> {
    feed.set_source(take_stream(slot)?);
    Ok(())
}

/// Starts an epoch from the feed; returns its number of batches.
/// @noRd
#[extendr]
fn rs_arrow_trainer_begin(
    mut trainer: ExternalPtr<Trainer>,
    mut feed: ExternalPtr<Feed>,
) -> ApiResult<i32> {
    Ok(feed.begin(&mut trainer)? as i32)
}

/// `rs_trainer_run()` for a feed: up to `max_batches` batches; the batches
/// left in the epoch, or -1 on Ctrl-C.
/// @noRd
#[extendr]
fn rs_arrow_trainer_run(
    mut trainer: ExternalPtr<Trainer>,
    model: ExternalPtr<Model>,
    mut feed: ExternalPtr<Feed>,
    max_batches: f64,
) -> ApiResult<i32> {
    const SLICE: std::time::Duration = std::time::Duration::from_millis(50);
    let mut left = count(max_batches, "max_batches", 1, i32::MAX as i64)?;
    loop {
        let before = feed.remaining();
        let remaining = feed.run(&mut trainer, &model, left, Some(SLICE))?;
        left -= before - remaining;
        // (no progress cannot happen: a call runs at least one batch)
        if remaining == 0 || remaining == before {
            return Ok(remaining as i32);
        }
        if interrupt::pending() {
            return Ok(-1);
        }
        if left <= 0 {
            return Ok(remaining as i32);
        }
    }
}

/// Rows of the source as a data set: `rows` (sorted 0-based source rows, or
/// NULL for all), with the outcome when `outcome`. list(data, unseen), or
/// NULL on Ctrl-C.
/// @noRd
#[extendr]
fn rs_arrow_collect(
    model: ExternalPtr<Model>,
    source: Robj,
    spec_json: &str,
    unit_rows: Robj,
    rows: Robj,
    outcome: bool,
) -> ApiResult<Robj> {
    let mut source = source_of(source)?;
    let spec = ColumnSpec::from_json(spec_json)?;
    let unit_rows = if unit_rows.is_null() {
        None
    } else {
        Some(u64s(unit_rows, "unit_rows")?)
    };
    let wanted = if rows.is_null() {
        None
    } else {
        Some(u64s(rows, "rows")?)
    };
    let got = arrow_source::collect(
        &model.cfg,
        &mut source,
        &spec,
        unit_rows.as_deref(),
        wanted.as_deref(),
        outcome,
        &mut interrupt::pending,
    )?;
    Ok(match got {
        None => Robj::from(()),
        Some((data, unseen)) => {
            let device = model.vs.device();
            let data = if device == tch::Device::Cpu {
                data
            } else {
                tabnet_core::Dataset {
                    n: data.n,
                    x_num: data.x_num.to_device(device),
                    x_cat: data.x_cat.map(|t| t.to_device(device)),
                    present: data.present.map(|t| t.to_device(device)),
                    y: data.y.map(|t| t.to_device(device)),
                    w: data.w.map(|t| t.to_device(device)),
                }
            };
            list!(data = ExternalPtr::new(data), unseen = unseen as f64).into()
        }
    })
}

/// Predictions for every row of the source, in its order: list(pred = n ×
/// outputs matrix, unseen), or NULL on Ctrl-C.
/// @noRd
#[extendr]
fn rs_arrow_predict(
    model: ExternalPtr<Model>,
    source: Robj,
    spec_json: &str,
    batch_size: f64,
) -> ApiResult<Robj> {
    let mut source = source_of(source)?;
    let spec = ColumnSpec::from_json(spec_json)?;
    let bs = count(batch_size, "batch_size", 1, i32::MAX as i64)?;
    Ok(
        match arrow_source::predict(&model, &mut source, &spec, bs, &mut interrupt::pending)? {
            None => Robj::from(()),
            Some((pred, unseen)) => list!(pred = matrix(&pred)?, unseen = unseen as f64).into(),
        },
    )
}

/// The columns `names` of every row, for a data frame: list(values = list
/// of double / logical / character vectors, levels = list of the
/// dictionaries' values, NULL for other columns); NULL on Ctrl-C.
/// @noRd
#[extendr]
fn rs_arrow_read(source: Robj, names: Strings) -> ApiResult<Robj> {
    let mut source = source_of(source)?;
    let schema = source.schema()?;
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut kinds = Vec::with_capacity(names.len());
    for n in &names {
        let f = schema.field_with_name(n).map_err(|_| {
            ApiError::input(msg!(
                "The column {.field {name}} is not in the data.",
                name = n
            ))
        })?;
        kinds.push(ColumnKind::of(f.data_type()));
    }
    let mut nums: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut bools: Vec<Vec<Rbool>> = vec![Vec::new(); names.len()];
    let mut labels: Vec<Vec<Option<String>>> = vec![Vec::new(); names.len()];
    let mut levels: Vec<Vec<String>> = vec![Vec::new(); names.len()];
    let done = arrow_source::for_each_batch(
        &mut source,
        &names,
        &mut interrupt::pending,
        &mut |batch, what| {
            for (k, n) in names.iter().enumerate() {
                let col = batch.column_by_name(n).ok_or_else(|| {
                    tabnet_core::Error::Invalid(
                        format!("the column `{n}` is missing from {what}").into(),
                    )
                })?;
                match kinds[k] {
                    ColumnKind::Boolean => {
                        let v = arrow_source::numeric_values(col.as_ref()).unwrap_or_default();
                        bools[k].extend(v.iter().map(|&x| {
                            if x.is_nan() {
                                Rbool::na()
                            } else {
                                Rbool::from(x != 0.0)
                            }
                        }));
                    }
                    ColumnKind::Double | ColumnKind::Integer => {
                        let v = arrow_source::numeric_values(col.as_ref()).unwrap_or_default();
                        nums[k].extend(v);
                    }
                    ColumnKind::Dictionary | ColumnKind::String => {
                        for l in arrow_source::dictionary_values(col.as_ref()) {
                            if !levels[k].contains(&l) {
                                levels[k].push(l);
                            }
                        }
                        arrow_source::for_each_label(col.as_ref(), |l| {
                            labels[k].push(l.map(String::from))
                        });
                    }
                    ColumnKind::Unsupported => {
                        return Err(tabnet_core::Error::Invalid(
                            format!(
                            "the column `{n}` has the Arrow type {}, which tabnetrs cannot read",
                            col.data_type()
                        )
                            .into(),
                        ))
                    }
                }
            }
            Ok(())
        },
    )?;
    if !done {
        return Ok(Robj::from(()));
    }
    let mut values: Vec<Robj> = Vec::with_capacity(names.len());
    let mut lv: Vec<Robj> = Vec::with_capacity(names.len());
    for (k, kind) in kinds.iter().enumerate() {
        values.push(match kind {
            ColumnKind::Boolean => Logicals::from_values(std::mem::take(&mut bools[k])).into(),
            ColumnKind::Dictionary | ColumnKind::String => {
                let v: Vec<Option<String>> = std::mem::take(&mut labels[k]);
                Strings::from_values(v.into_iter().map(|s| match s {
                    Some(s) => Rstr::from(s),
                    None => Rstr::na(),
                }))
                .into()
            }
            _ => {
                let v = std::mem::take(&mut nums[k]);
                Doubles::from_values(v.into_iter().map(|x| {
                    if x.is_nan() {
                        Rfloat::na()
                    } else {
                        Rfloat::from(x)
                    }
                }))
                .into()
            }
        });
        lv.push(if *kind == ColumnKind::Dictionary {
            Robj::from(std::mem::take(&mut levels[k]))
        } else {
            Robj::from(())
        });
    }
    Ok(list!(
        values = List::from_values(values),
        levels = List::from_values(lv)
    )
    .into())
}

extendr_module! {
    mod arrow_api;
    fn rs_arrow_stream_take;
    fn rs_arrow_schema;
    fn rs_arrow_scan;
    fn rs_arrow_feed_new;
    fn rs_arrow_feed_set_stream;
    fn rs_arrow_trainer_begin;
    fn rs_arrow_trainer_run;
    fn rs_arrow_collect;
    fn rs_arrow_predict;
    fn rs_arrow_read;
}
