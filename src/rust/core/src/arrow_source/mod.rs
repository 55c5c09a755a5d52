//! Arrow data read record batch by record batch: IPC files (file or stream
//! format, or directories of them) and Arrow C streams, for training with
//! bounded memory ([`Feed`]), prediction and collecting rows.
//!
//! * `source`: where record batches come from, and the units an epoch shuffles;
//! * `pass`: one read of a source, numbering rows in source order;
//! * `columns`: the column spec a model reads, and record batch → `Dataset`;
//! * `scan`: the first read (rows, nulls, factor levels);
//! * `feed`: the epoch's shuffle buffer, prediction and collecting rows.
mod columns;
mod feed;
mod pass;
mod scan;
mod source;

pub use columns::{
    dictionary_values, for_each_label, numeric_values, ColumnKind, ColumnSpec, OutcomeSpec,
};
pub use feed::{collect, for_each_batch, predict, Feed};
pub use scan::{scan, ColumnScan, Scan};
pub use source::{Format, Source};
