//! Where record batches come from: Arrow IPC files (the file format, read
//! batch by batch at random positions, or the stream format, read in order)
//! and Arrow C streams (one pass each: a fresh stream per pass).
use crate::error::{Error, Result};
use crate::msg;
use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_ipc::reader::{FileReader, StreamReader};
use arrow_schema::{ArrowError, SchemaRef};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Record batches of one unit, in order.
pub type Batches = Box<dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + Send>;

/// The two IPC layouts: the file format (magic `ARROW1`, a footer indexing
/// its record batches) and the stream format (messages one after another).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    File,
    Stream,
}

#[derive(Clone, Debug)]
pub struct IpcFile {
    pub path: PathBuf,
    pub format: Format,
    /// record batches in the footer (the file format only)
    pub n_batches: usize,
}

/// A unit read on its own: one record batch of a file-format file, or a
/// whole stream-format file or C stream. An epoch reads units in random order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unit {
    pub file: usize,
    pub batch: Option<usize>,
}

pub enum Source {
    Files(Vec<IpcFile>),
    /// The stream of the current pass; `None` once it was read.
    Stream(Option<Box<dyn RecordBatchReader + Send>>),
}

/// An Arrow error about `what` (a file or "the stream") for the user.
pub(crate) fn arrow_error(what: &str, e: ArrowError) -> Error {
    let msg = match e {
        ArrowError::IoError(m, _) => m,
        ArrowError::ParseError(m) | ArrowError::InvalidArgumentError(m) => m,
        other => other.to_string(),
    };
    Error::Invalid(format!("cannot read {what} as Arrow IPC: {msg}").into())
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Invalid(msg!(
        "Cannot read {.file {path}}: {reason}.",
        path = path.display().to_string(),
        reason = e.to_string()
    ))
}

fn detect(path: &Path) -> Result<IpcFile> {
    let mut f = File::open(path).map_err(|e| io_error(path, e))?;
    let mut magic = [0u8; 6];
    let n = f.read(&mut magic).map_err(|e| io_error(path, e))?;
    f.seek(SeekFrom::Start(0)).map_err(|e| io_error(path, e))?;
    let format = if n == 6 && &magic == b"ARROW1" {
        Format::File
    } else {
        Format::Stream
    };
    let what = format!("`{}`", path.display());
    let n_batches = match format {
        Format::File => {
            let r =
                FileReader::try_new(BufReader::new(f), None).map_err(|e| arrow_error(&what, e))?;
            r.num_batches()
        }
        Format::Stream => {
            StreamReader::try_new(BufReader::new(f), None).map_err(|e| arrow_error(&what, e))?;
            0
        }
    };
    Ok(IpcFile {
        path: path.to_path_buf(),
        format,
        n_batches,
    })
}

impl Source {
    /// IPC files, or directories of them (their files in name order; names
    /// starting with `.` or `_` are skipped, as Arrow datasets do).
    pub fn files(paths: &[String]) -> Result<Source> {
        let mut files = Vec::new();
        for p in paths {
            let path = Path::new(p);
            if path.is_dir() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| io_error(path, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| !n.starts_with('.') && !n.starts_with('_'))
                    })
                    .collect();
                entries.sort();
                if entries.is_empty() {
                    return Err(Error::Invalid(msg!(
                        "The directory {.file {path}} holds no Arrow IPC files.",
                        path = p.as_str()
                    )));
                }
                for e in entries {
                    files.push(detect(&e)?);
                }
            } else if path.exists() {
                files.push(detect(path)?);
            } else {
                return Err(Error::Invalid(msg!(
                    "The file {.file {path}} does not exist.",
                    path = p.as_str()
                )));
            }
        }
        if files.is_empty() {
            return Err(Error::Invalid(msg!("No Arrow IPC file was given.")));
        }
        Ok(Source::Files(files))
    }

    /// One pass of a C stream.
    pub fn stream(reader: Box<dyn RecordBatchReader + Send>) -> Source {
        Source::Stream(Some(reader))
    }

    /// The schema (of the first file; every other file must have the same
    /// field names and types).
    pub fn schema(&self) -> Result<SchemaRef> {
        match self {
            Source::Stream(Some(r)) => Ok(r.schema()),
            Source::Stream(None) => Err(stream_used()),
            Source::Files(files) => {
                let first = file_schema(&files[0])?;
                for f in &files[1..] {
                    let s = file_schema(f)?;
                    let same = s.fields().len() == first.fields().len()
                        && s.fields()
                            .iter()
                            .zip(first.fields())
                            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
                    if !same {
                        return Err(Error::Invalid(format!(
                            "`{}` does not have the schema of `{}`: every file must have the same columns and types",
                            f.path.display(),
                            files[0].path.display()
                        ).into()));
                    }
                }
                Ok(first)
            }
        }
    }

    /// The units in source order.
    pub fn units(&self) -> Vec<Unit> {
        match self {
            Source::Stream(_) => vec![Unit {
                file: 0,
                batch: None,
            }],
            Source::Files(files) => files
                .iter()
                .enumerate()
                .flat_map(|(i, f)| match f.format {
                    Format::File => (0..f.n_batches)
                        .map(|b| Unit {
                            file: i,
                            batch: Some(b),
                        })
                        .collect::<Vec<_>>(),
                    Format::Stream => vec![Unit {
                        file: i,
                        batch: None,
                    }],
                })
                .collect(),
        }
    }

    /// What a unit is, for messages: its file, or "the stream".
    pub(crate) fn describe(&self, unit: Unit) -> String {
        match self {
            Source::Files(files) => format!("`{}`", files[unit.file].path.display()),
            Source::Stream(_) => "the stream".into(),
        }
    }

    /// The record batches of `unit`, with only the columns `names` (files;
    /// a C stream gives all its columns).
    pub(crate) fn open(&mut self, unit: Unit, names: &[String]) -> Result<Batches> {
        match self {
            Source::Stream(r) => match r.take() {
                Some(r) => Ok(Box::new(r)),
                None => Err(stream_used()),
            },
            Source::Files(files) => {
                let f = &files[unit.file];
                let what = format!("`{}`", f.path.display());
                let schema = file_schema(f)?;
                let mut projection = Vec::with_capacity(names.len());
                for n in names {
                    match schema.index_of(n) {
                        Ok(i) => projection.push(i),
                        Err(_) => {
                            return Err(Error::Invalid(
                                format!("the column `{n}` is missing from {what}").into(),
                            ))
                        }
                    }
                }
                projection.sort_unstable();
                projection.dedup();
                let file = File::open(&f.path).map_err(|e| io_error(&f.path, e))?;
                match unit.batch {
                    Some(b) => {
                        let mut r = FileReader::try_new(BufReader::new(file), Some(projection))
                            .map_err(|e| arrow_error(&what, e))?;
                        r.set_index(b).map_err(|e| arrow_error(&what, e))?;
                        Ok(Box::new(r.take(1)))
                    }
                    None => Ok(Box::new(
                        StreamReader::try_new(BufReader::new(file), Some(projection))
                            .map_err(|e| arrow_error(&what, e))?,
                    )),
                }
            }
        }
    }
}

fn stream_used() -> Error {
    Error::Invalid(
        "the Arrow stream was already read and cannot be read again: give `tabnet_arrow()` a function that returns a fresh stream".into(),
    )
}

fn file_schema(f: &IpcFile) -> Result<SchemaRef> {
    let what = format!("`{}`", f.path.display());
    let file = File::open(&f.path).map_err(|e| io_error(&f.path, e))?;
    match f.format {
        Format::File => Ok(FileReader::try_new(BufReader::new(file), None)
            .map_err(|e| arrow_error(&what, e))?
            .schema()),
        Format::Stream => Ok(StreamReader::try_new(BufReader::new(file), None)
            .map_err(|e| arrow_error(&what, e))?
            .schema()),
    }
}
