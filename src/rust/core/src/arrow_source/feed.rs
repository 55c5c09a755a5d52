//! Training from a source with bounded memory.
//!
//! An epoch reads the source's units (a record batch of an IPC file-format
//! file, a whole stream-format file or C stream) in a random order, leaves
//! out the validation rows, and gathers rows into a shuffle buffer. Whenever
//! the buffer holds `chunk` rows or more (`chunk` = the buffer size rounded
//! down to whole batches), `chunk` rows drawn at random from it go to the
//! trainer as one part of the epoch (batched in a fresh random order), and
//! the rest wait for the next units. At the end of the source the buffer's
//! rest is the last part. So every batch but the epoch's last is full, an
//! epoch has exactly the batches of the in-memory path on the same rows, and
//! memory holds at most the buffer plus one record batch. The random draws
//! (unit order, buffer draws, batch order) come from libtorch's generator
//! in a fixed sequence, so a seed gives the same model for any thread count.
use super::columns::{to_dataset, ColumnSpec};
use super::pass::Pass;
use super::source::Source;
use crate::config::NetConfig;
use crate::data::Dataset;
use crate::error::{invalid, Error, Result};
use crate::model::Model;
use crate::msg;
use crate::trainer::{batch_sizes, Trainer};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// Rows `idx` (an Int64 CPU tensor) of `d`.
fn select(d: &Dataset, idx: &Tensor) -> Dataset {
    let sel = |t: &Tensor| t.index_select(0, idx);
    Dataset {
        n: idx.size()[0],
        x_num: sel(&d.x_num),
        x_cat: d.x_cat.as_ref().map(sel),
        present: d.present.as_ref().map(sel),
        y: d.y.as_ref().map(sel),
        w: d.w.as_ref().map(sel),
    }
}

/// `a`'s rows then `b`'s (a presence mask of ones for the one without).
fn concat(a: Dataset, b: Dataset) -> Dataset {
    let both = |x: Option<Tensor>, y: Option<Tensor>| match (x, y) {
        (Some(x), Some(y)) => Some(Tensor::cat(&[x, y], 0)),
        _ => None,
    };
    let present = match (&a.present, &b.present) {
        (None, None) => None,
        _ => {
            let ones = |d: &Dataset| {
                let f = d.x_num.size()[1] + d.x_cat.as_ref().map_or(0, |c| c.size()[1]);
                Tensor::ones(&[d.n, f], (Kind::Float, d.x_num.device()))
            };
            let pa = a
                .present
                .as_ref()
                .map_or_else(|| ones(&a), |p| p.shallow_clone());
            let pb = b
                .present
                .as_ref()
                .map_or_else(|| ones(&b), |p| p.shallow_clone());
            Some(Tensor::cat(&[pa, pb], 0))
        }
    };
    Dataset {
        n: a.n + b.n,
        x_num: Tensor::cat(&[a.x_num, b.x_num], 0),
        x_cat: both(a.x_cat, b.x_cat),
        present,
        y: both(a.y, b.y),
        w: both(a.w, b.w),
    }
}

fn append(pending: &mut Option<Dataset>, d: Dataset) {
    *pending = Some(match pending.take() {
        None => d,
        Some(p) => concat(p, d),
    });
}

fn to_device(d: Dataset, device: Device) -> Dataset {
    if device == Device::Cpu {
        return d;
    }
    let m = |t: Tensor| t.to_device(device);
    Dataset {
        n: d.n,
        x_num: m(d.x_num),
        x_cat: d.x_cat.map(m),
        present: d.present.map(m),
        y: d.y.map(m),
        w: d.w.map(m),
    }
}

/// Positions (within a record batch of `len` rows starting at source row
/// `first`) of the rows not in `held_out` (sorted source rows); `None`: all.
fn kept_rows(held_out: &[u64], first: u64, len: usize) -> Option<Vec<usize>> {
    let lo = held_out.partition_point(|&r| r < first);
    let hi = held_out.partition_point(|&r| r < first + len as u64);
    if lo == hi {
        return None;
    }
    let out = &held_out[lo..hi];
    let mut k = 0;
    Some(
        (0..len)
            .filter(|&i| {
                if k < out.len() && out[k] == first + i as u64 {
                    k += 1;
                    false
                } else {
                    true
                }
            })
            .collect(),
    )
}

/// Positions of the rows of `wanted` (sorted source rows) in a record batch.
fn wanted_rows(wanted: &[u64], first: u64, len: usize) -> Vec<usize> {
    let lo = wanted.partition_point(|&r| r < first);
    let hi = wanted.partition_point(|&r| r < first + len as u64);
    wanted[lo..hi]
        .iter()
        .map(|&r| (r - first) as usize)
        .collect()
}

fn randperm(n: i64) -> Tensor {
    Tensor::randperm(n, (Kind::Int64, Device::Cpu))
}

pub struct Feed {
    source: Source,
    spec: ColumnSpec,
    unit_rows: Vec<u64>,
    held_out: Vec<u64>,
    n_train: i64,
    buffer_rows: i64,
    // the epoch under way
    pass: Option<Pass>,
    pending: Option<Dataset>,
    current: Option<Dataset>,
    chunk: i64,
    done: i64,
    total: i64,
}

impl Feed {
    /// Training from `source` (with the spec's outcome, if any: a pretrainer
    /// has none): `unit_rows` from its [`super::scan`],
    /// `held_out` the source rows kept for validation (sorted, 0-based),
    /// `buffer_rows` the shuffle buffer's size in rows.
    pub fn new(
        source: Source,
        spec: ColumnSpec,
        unit_rows: Vec<u64>,
        mut held_out: Vec<u64>,
        buffer_rows: i64,
    ) -> Result<Feed> {
        held_out.sort_unstable();
        held_out.dedup();
        let n: u64 = unit_rows.iter().sum();
        if held_out.last().is_some_and(|&r| r >= n) {
            return invalid("a validation row is beyond the data's rows");
        }
        let n_train = (n - held_out.len() as u64) as i64;
        if n_train < 2 {
            return invalid(msg!("Training needs at least 2 rows."));
        }
        if buffer_rows < 2 {
            return invalid("the shuffle buffer must hold at least 2 rows");
        }
        Ok(Feed {
            source,
            spec,
            unit_rows,
            held_out,
            n_train,
            buffer_rows,
            pass: None,
            pending: None,
            current: None,
            chunk: 0,
            done: 0,
            total: 0,
        })
    }

    /// Batches of the epoch not run yet.
    pub fn remaining(&self) -> i64 {
        self.total - self.done
    }

    /// A fresh C stream for the next epoch (a C-stream source is read once).
    pub fn set_source(&mut self, source: Source) {
        self.source = source;
    }

    /// Starts an epoch: draws the order of the units. Returns its batches.
    pub fn begin(&mut self, trainer: &mut Trainer) -> Result<i64> {
        let n_units = self.unit_rows.len();
        let order: Vec<usize> = if n_units > 1 {
            Vec::<i64>::from(&randperm(n_units as i64))
                .into_iter()
                .map(|u| u as usize)
                .collect()
        } else {
            (0..n_units).collect()
        };
        self.pass = Some(Pass::new(
            &self.source,
            Some(&order),
            Some(&self.unit_rows),
            self.spec.columns(true),
        )?);
        let bs = trainer.opts.batch_size;
        self.chunk = bs.max(self.buffer_rows / bs * bs);
        self.pending = None;
        self.current = None;
        self.done = 0;
        self.total = batch_sizes(self.n_train, bs, trainer.opts.drop_last).len() as i64;
        trainer.start_epoch();
        Ok(self.total)
    }

    /// The next part of the epoch for the trainer, `None` after the last.
    fn next_chunk(&mut self, cfg: &NetConfig, bs: i64, drop_last: bool) -> Result<Option<Dataset>> {
        let pass = match self.pass.as_mut() {
            Some(p) => p,
            None => return invalid("the epoch was not started"),
        };
        loop {
            let have = self.pending.as_ref().map_or(0, |d| d.n);
            if have >= self.chunk {
                let pending = self.pending.take().expect("have > 0");
                let perm = randperm(have);
                let chunk = select(&pending, &perm.narrow(0, 0, self.chunk));
                if have > self.chunk {
                    self.pending = Some(select(
                        &pending,
                        &perm.narrow(0, self.chunk, have - self.chunk),
                    ));
                }
                return Ok(Some(chunk));
            }
            match pass.next_piece(&mut self.source)? {
                None => break,
                Some(p) => {
                    let len = p.batch.num_rows();
                    let rows = kept_rows(&self.held_out, p.first_row, len);
                    if len == 0 || rows.as_ref().is_some_and(|r| r.is_empty()) {
                        continue;
                    }
                    let (d, _) =
                        to_dataset(cfg, &self.spec, &p.batch, rows.as_deref(), true, &p.what)?;
                    append(&mut self.pending, d);
                }
            }
        }
        // the end of the source: the buffer's rest
        Ok(match self.pending.take() {
            Some(d) if d.n >= bs || (d.n >= 2 && !drop_last) || self.n_train < bs => Some(d),
            _ => None,
        })
    }

    /// Runs up to `max_batches` batches of the epoch, stopping after the
    /// batch during which `budget` ran out. Returns the batches left.
    pub fn run(
        &mut self,
        trainer: &mut Trainer,
        model: &Model,
        max_batches: i64,
        budget: Option<Duration>,
    ) -> Result<i64> {
        let deadline = budget.map(|b| Instant::now() + b);
        let bs = trainer.opts.batch_size;
        let drop_last = trainer.opts.drop_last;
        let mut left = max_batches;
        let mut ended = false;
        while left > 0 && self.done < self.total {
            if trainer.remaining() == 0 {
                match self.next_chunk(&model.cfg, bs, drop_last)? {
                    Some(c) => {
                        let c = to_device(c, model.vs.device());
                        trainer.begin_part(&c)?;
                        self.current = Some(c);
                    }
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            let data = self.current.as_ref().expect("a part is loaded");
            let before = trainer.remaining();
            let rest = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let after = trainer.run_within(model, data, left, rest)?;
            self.done += before - after;
            left -= before - after;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        if ended && self.done < self.total {
            return Err(Error::Invalid(format!(
                "the data gave {} batches in this epoch, {} were expected: it changed during training",
                self.done, self.total
            ).into()));
        }
        if self.done >= self.total {
            // the epoch's buffers go
            self.current = None;
            self.pending = None;
            self.pass = None;
        }
        Ok(self.total - self.done)
    }
}

/// Reads `source` in its order and hands `f` data sets of at least `min_rows`
/// rows (the last may be smaller): the rows `wanted` (sorted source rows; all
/// when `None`), with the outcome when `outcome`. `interrupted` is asked
/// between record batches (`Ok(false)` when it said yes). `f` also gets the
/// count of factor cells with levels the fit did not see.
#[allow(clippy::too_many_arguments)]
pub(crate) fn for_each_part(
    cfg: &NetConfig,
    source: &mut Source,
    spec: &ColumnSpec,
    unit_rows: Option<&[u64]>,
    wanted: Option<&[u64]>,
    outcome: bool,
    min_rows: i64,
    interrupted: &mut dyn FnMut() -> bool,
    f: &mut dyn FnMut(Dataset, usize) -> Result<()>,
) -> Result<bool> {
    let mut pass = Pass::new(source, None, unit_rows, spec.columns(outcome))?;
    let mut pending: Option<Dataset> = None;
    let mut unseen = 0usize;
    while let Some(p) = pass.next_piece(source)? {
        if interrupted() {
            return Ok(false);
        }
        let len = p.batch.num_rows();
        let rows = wanted.map(|w| wanted_rows(w, p.first_row, len));
        if len == 0 || rows.as_ref().is_some_and(|r| r.is_empty()) {
            continue;
        }
        let (d, u) = to_dataset(cfg, spec, &p.batch, rows.as_deref(), outcome, &p.what)?;
        unseen += u;
        append(&mut pending, d);
        if pending.as_ref().is_some_and(|d| d.n >= min_rows) {
            f(pending.take().expect("checked"), unseen)?;
            unseen = 0;
        }
    }
    if let Some(d) = pending {
        f(d, unseen)?;
    }
    Ok(true)
}

/// Every record batch of `source` in its order, with only the columns
/// `names` (files; a C stream gives all its columns): the R layer reads
/// small Arrow data into a data frame with it. `Ok(false)` when interrupted.
pub fn for_each_batch(
    source: &mut Source,
    names: &[String],
    interrupted: &mut dyn FnMut() -> bool,
    f: &mut dyn FnMut(&arrow_array::RecordBatch, &str) -> Result<()>,
) -> Result<bool> {
    let mut pass = Pass::new(source, None, None, names.to_vec())?;
    while let Some(p) = pass.next_piece(source)? {
        if interrupted() {
            return Ok(false);
        }
        f(&p.batch, &p.what)?;
    }
    Ok(true)
}

/// All the rows [`for_each_part`] gives, as one data set (`Ok(None)` when
/// interrupted), and the count of unseen factor levels.
#[allow(clippy::too_many_arguments)]
pub fn collect(
    cfg: &NetConfig,
    source: &mut Source,
    spec: &ColumnSpec,
    unit_rows: Option<&[u64]>,
    wanted: Option<&[u64]>,
    outcome: bool,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Option<(Dataset, usize)>> {
    let mut all: Option<Dataset> = None;
    let mut unseen = 0;
    let done = for_each_part(
        cfg,
        source,
        spec,
        unit_rows,
        wanted,
        outcome,
        1 << 16,
        interrupted,
        &mut |d, u| {
            unseen += u;
            append(&mut all, d);
            Ok(())
        },
    )?;
    if !done {
        return Ok(None);
    }
    match all {
        Some(d) => Ok(Some((d, unseen))),
        None => invalid(msg!("The data has zero rows.")),
    }
}

/// Predictions for every row of `source` in its order (see
/// [`crate::inference::predict`]); `Ok(None)` when interrupted.
pub fn predict(
    model: &Model,
    source: &mut Source,
    spec: &ColumnSpec,
    batch_size: i64,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Option<(Tensor, usize)>> {
    let mut outs = Vec::new();
    let mut unseen = 0;
    let device = model.vs.device();
    let done = for_each_part(
        &model.cfg,
        source,
        spec,
        None,
        None,
        false,
        batch_size,
        interrupted,
        &mut |d, u| {
            unseen += u;
            outs.push(crate::inference::predict(
                model,
                &to_device(d, device),
                batch_size,
            )?);
            Ok(())
        },
    )?;
    if !done {
        return Ok(None);
    }
    if outs.is_empty() {
        return invalid(msg!("The data has zero rows."));
    }
    Ok(Some((Tensor::cat(&outs, 0), unseen)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrow_source::scan;
    use crate::config::Task;
    use arrow_array::builder::StringDictionaryBuilder;
    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
    use arrow_ipc::writer::{FileWriter, StreamWriter};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn held_out_rows_are_left_out_by_source_row() {
        assert_eq!(kept_rows(&[3, 10, 12], 0, 5), Some(vec![0, 1, 2, 4]));
        assert_eq!(kept_rows(&[3, 10, 12], 5, 5), None);
        assert_eq!(kept_rows(&[3, 10, 12], 10, 3), Some(vec![1]));
        assert_eq!(wanted_rows(&[3, 10, 12], 10, 3), vec![0, 2]);
        assert!(wanted_rows(&[3], 4, 3).is_empty());
    }

    /// Rows `from..to`: `a` = the row number (NaN for row 2), `f` a
    /// dictionary cycling through "w", "u", "v", `y` a string class.
    fn batch(schema: &Arc<Schema>, from: usize, to: usize) -> RecordBatch {
        let a: Float64Array = (from..to)
            .map(|i| if i == 2 { None } else { Some(i as f64) })
            .collect();
        // the same dictionary in every batch (the file format has one per field)
        let dict = StringArray::from(vec!["w", "u", "v"]);
        let mut f =
            StringDictionaryBuilder::<Int32Type>::new_with_dictionary(to - from, &dict).unwrap();
        for i in from..to {
            f.append_value(["w", "u", "v"][i % 3]);
        }
        let y: StringArray = (from..to)
            .map(|i| Some(if i % 2 == 0 { "even" } else { "odd" }))
            .collect();
        let cols: Vec<ArrayRef> = vec![Arc::new(a), Arc::new(f.finish()), Arc::new(y)];
        RecordBatch::try_new(schema.clone(), cols).unwrap()
    }

    /// A directory with an IPC file-format file of three record batches
    /// (rows 0-4, 5-11, 12-15) and a stream-format file (rows 16-21).
    fn write_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tabnet-arrow-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Float64, true),
            Field::new(
                "f",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("y", DataType::Utf8, true),
        ]));
        let file = std::fs::File::create(dir.join("a.arrow")).unwrap();
        let mut w = FileWriter::try_new(file, &schema).unwrap();
        for (from, to) in [(0, 5), (5, 12), (12, 16)] {
            w.write(&batch(&schema, from, to)).unwrap();
        }
        w.finish().unwrap();
        let file = std::fs::File::create(dir.join("b.arrows")).unwrap();
        let mut w = StreamWriter::try_new(file, &schema).unwrap();
        w.write(&batch(&schema, 16, 22)).unwrap();
        w.finish().unwrap();
        dir
    }

    fn spec() -> ColumnSpec {
        ColumnSpec::from_json(
            r#"{"names": ["a", "f"], "levels": [null, ["w", "u", "v"]],
                "outcome": {"name": "y", "levels": ["even", "odd"]}}"#,
        )
        .unwrap()
    }

    fn config() -> NetConfig {
        let mut cfg = NetConfig::example(2, vec![2], Task::Classification);
        cfg.num_cols = vec![0];
        cfg.cat_cols = vec![1];
        cfg.cat_levels = vec![3];
        cfg.cat_emb_dims = vec![2];
        cfg
    }

    #[test]
    fn files_of_both_formats_are_scanned_and_converted_by_name() {
        let dir = write_dir("scan");
        let mut source = Source::files(&[dir.to_string_lossy().into_owned()]).unwrap();
        // three record batches of the file format, one stream-format file
        assert_eq!(source.units().len(), 4);
        let names: Vec<String> = ["y", "f", "a"].iter().map(|s| s.to_string()).collect();
        let s = scan::scan(&mut source, &names, &mut || false)
            .unwrap()
            .unwrap();
        assert_eq!(s.n_rows, 22);
        assert_eq!(s.unit_rows, vec![5, 7, 4, 6]);
        assert_eq!(s.columns[0].values, vec!["even", "odd"]);
        assert_eq!(s.columns[1].values, vec!["w", "u", "v"]);
        assert_eq!(s.columns[2].nulls, 1);
        // rows 1, 2 and 17: source order across units and files
        let (d, unseen) = collect(
            &config(),
            &mut source,
            &spec(),
            Some(&s.unit_rows),
            Some(&[1, 2, 17]),
            true,
            &mut || false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(unseen, 0);
        assert_eq!(Vec::<f64>::from(&d.x_num.view([-1])), vec![1.0, 0.0, 17.0]);
        // f: row 1 is "u" (code 2), row 2 "v" (3), row 17 (17 % 3 = 2) "v"
        assert_eq!(
            Vec::<i64>::from(&d.x_cat.as_ref().unwrap().view([-1])),
            vec![2, 3, 3]
        );
        // the missing cell of row 2 is marked absent
        let present = Vec::<f64>::from(&d.present.as_ref().unwrap().select(1, 0));
        assert_eq!(present, vec![1.0, 0.0, 1.0]);
        assert_eq!(
            Vec::<i64>::from(&d.y.as_ref().unwrap().view([-1])),
            vec![1, 0, 1]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An epoch gives every training row exactly once, in parts of whole
    /// batches but the last, leaving out the held-out rows.
    #[test]
    fn an_epoch_gives_each_training_row_once_in_whole_batches() {
        let dir = write_dir("feed");
        let source = Source::files(&[dir.to_string_lossy().into_owned()]).unwrap();
        let held_out = vec![0, 7, 21];
        let mut feed = Feed::new(source, spec(), vec![5, 7, 4, 6], held_out.clone(), 9).unwrap();
        let model = Model::new(config(), Device::Cpu).unwrap();
        let mut opts = crate::trainer::TrainOptions::example(4);
        opts.drop_last = false;
        let mut trainer = Trainer::new(&model, opts).unwrap();
        tch::manual_seed(1);
        // 19 training rows in batches of 4: 4 full ones and one of 3
        assert_eq!(feed.begin(&mut trainer).unwrap(), 5);
        // the buffer (9 rows) rounded down to whole batches
        assert_eq!(feed.chunk, 8);
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        while let Some(c) = feed.next_chunk(&model.cfg, 4, false).unwrap() {
            sizes.push(c.n);
            seen.extend(Vec::<f64>::from(&c.x_num.view([-1])));
        }
        assert_eq!(sizes, vec![8, 8, 3]);
        // row 2 is NaN in the file and 0 in the tensor
        let mut expected: Vec<f64> = (0..22)
            .filter(|r| !held_out.contains(r))
            .map(|r| if r == 2 { 0.0 } else { r as f64 })
            .collect();
        seen.sort_by(f64::total_cmp);
        expected.sort_by(f64::total_cmp);
        assert_eq!(seen, expected);
        // and training through the feed runs exactly the announced batches
        assert_eq!(feed.begin(&mut trainer).unwrap(), 5);
        assert_eq!(feed.run(&mut trainer, &model, i64::MAX, None).unwrap(), 0);
        assert!(trainer.end_epoch().is_finite());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
