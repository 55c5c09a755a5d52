//! One read of a source: its units in a given order, record batch by record
//! batch, each with the source-order index of its first row (the rows of a
//! unit are numbered from where it sits in the source, whatever the order it
//! is read in, so a row keeps its number in every epoch).
use super::source::{arrow_error, Batches, Source, Unit};
use crate::error::{Error, Result};
use arrow_array::RecordBatch;

pub struct Pass {
    units: Vec<Unit>,
    /// first row of each unit of `units` (None: count as the pass goes,
    /// the order being the source's)
    starts: Option<Vec<u64>>,
    /// rows each unit must give (checked when it ends)
    expected: Option<Vec<u64>>,
    names: Vec<String>,
    next: usize,
    current: Option<Current>,
    counted: u64,
}

struct Current {
    batches: Batches,
    row: u64,
    rows_read: u64,
    expect: Option<u64>,
    what: String,
}

/// A record batch of a pass: its first row's source-order index and where it
/// came from (for messages).
pub struct Piece {
    pub batch: RecordBatch,
    pub first_row: u64,
    pub what: String,
}

impl Pass {
    /// Reads `units` in the given order; `unit_rows` are the rows of every
    /// unit of the source in source order (from a [`super::scan`]), or `None`
    /// for a pass in source order that counts them.
    pub fn new(
        source: &Source,
        order: Option<&[usize]>,
        unit_rows: Option<&[u64]>,
        names: Vec<String>,
    ) -> Result<Pass> {
        let all = source.units();
        let order: Vec<usize> = order.map_or_else(|| (0..all.len()).collect(), |o| o.to_vec());
        let (starts, expected) = match unit_rows {
            None => (None, None),
            Some(rows) => {
                if rows.len() != all.len() {
                    return Err(Error::Invalid(format!(
                        "the data now has {} parts, it had {} when it was first read: it changed during training",
                        all.len(),
                        rows.len()
                    ).into()));
                }
                let mut first = Vec::with_capacity(rows.len());
                let mut acc = 0u64;
                for r in rows {
                    first.push(acc);
                    acc += r;
                }
                (
                    Some(order.iter().map(|&u| first[u]).collect()),
                    Some(order.iter().map(|&u| rows[u]).collect()),
                )
            }
        };
        Ok(Pass {
            units: order.iter().map(|&u| all[u]).collect(),
            starts,
            expected,
            names,
            next: 0,
            current: None,
            counted: 0,
        })
    }

    /// Where the last record batch's unit is in the pass's order.
    pub fn position(&self) -> usize {
        self.next.saturating_sub(1)
    }

    /// The next record batch, or `None` at the end of the pass.
    pub(crate) fn next_piece(&mut self, source: &mut Source) -> Result<Option<Piece>> {
        loop {
            if self.current.is_none() {
                if self.next >= self.units.len() {
                    return Ok(None);
                }
                let k = self.next;
                let unit = self.units[k];
                self.next += 1;
                let batches = source.open(unit, &self.names)?;
                let row = self.starts.as_ref().map_or(self.counted, |s| s[k]);
                self.current = Some(Current {
                    batches,
                    row,
                    rows_read: 0,
                    expect: self.expected.as_ref().map(|e| e[k]),
                    what: source.describe(unit),
                });
            }
            let cur = self.current.as_mut().expect("set above");
            match cur.batches.next() {
                Some(Ok(batch)) => {
                    let n = batch.num_rows() as u64;
                    let piece = Piece {
                        batch,
                        first_row: cur.row + cur.rows_read,
                        what: cur.what.clone(),
                    };
                    cur.rows_read += n;
                    self.counted += n;
                    return Ok(Some(piece));
                }
                Some(Err(e)) => return Err(arrow_error(&cur.what, e)),
                None => {
                    if let Some(e) = cur.expect {
                        if e != cur.rows_read {
                            return Err(Error::Invalid(format!(
                                "{} gave {} rows, {} when it was first read: the data changed during training",
                                cur.what, cur.rows_read, e
                            ).into()));
                        }
                    }
                    self.current = None;
                }
            }
        }
    }
}
