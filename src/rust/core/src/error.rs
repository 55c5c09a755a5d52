//! Error type of the core: invalid input or a libtorch failure.
use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// The caller passed something the model cannot use; the text says what.
    Invalid(String),
    /// libtorch raised an exception.
    Torch(tch::TchError),
    /// Reading or writing model bytes failed.
    Io(std::io::Error),
    /// The persisted configuration could not be read.
    Config(serde_json::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) => write!(f, "{m}"),
            Error::Torch(e) => write!(f, "libtorch error: {e}"),
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::Config(e) => write!(f, "invalid model configuration: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Torch(e)
    }
}
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Config(e)
    }
}

/// Shorthand for an [`Error::Invalid`].
pub fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Invalid(msg.into()))
}
