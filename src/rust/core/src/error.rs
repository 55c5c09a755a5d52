//! Error type of the core. Each variant says whose problem it is, so that the
//! R layer can raise the matching condition class (see [`Error::kind`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller passed data or an argument the model cannot use; the text says what.
    #[error("{0}")]
    Invalid(String),
    /// A saved model is corrupted, was modified, or does not fit its configuration.
    #[error("{0}")]
    Model(String),
    /// libtorch raised an exception (shown without its C++ stack trace).
    #[error("libtorch error: {}", torch_message(.0))]
    Torch(#[from] tch::TchError),
    /// Reading or writing model bytes failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The persisted configuration could not be read.
    #[error("the model's network configuration cannot be read: {0}")]
    Config(#[from] serde_json::Error),
}

/// Who is to act on an error: the caller (bad input), the owner of a saved
/// model (corrupted or modified), or tabnetrs's developers (a defect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Input,
    Model,
    Internal,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) => ErrorKind::Input,
            Error::Model(_) | Error::Config(_) => ErrorKind::Model,
            Error::Torch(_) | Error::Io(_) => ErrorKind::Internal,
        }
    }
}

/// The first meaningful line of a libtorch message: libtorch appends
/// "Exception raised from ..." and a C++ stack trace, which say nothing to a user.
pub(crate) fn torch_message(e: &tch::TchError) -> String {
    let full = e.to_string();
    let head = full.split("Exception raised from").next().unwrap_or(&full);
    let head = head
        .trim_start()
        .strip_prefix("Internal torch error:")
        .unwrap_or(head);
    head.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("libtorch failed")
        .to_string()
}

/// Shorthand for an [`Error::Invalid`].
pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Invalid(msg.into()))
}

/// Shorthand for an [`Error::Model`].
pub(crate) fn corrupt<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Model(msg.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_messages_lose_their_stack_trace() {
        let e = tch::TchError::Torch(
            "PytorchStreamReader failed reading zip archive: failed finding central directory\n\
             Exception raised from valid at ../caffe2/serialize/inline_container.cc:184 (most recent call first):\n\
             frame #0: c10::Error::Error(...)"
                .into(),
        );
        assert_eq!(
            torch_message(&e),
            "PytorchStreamReader failed reading zip archive: failed finding central directory"
        );
        assert_eq!(Error::Torch(e).kind(), ErrorKind::Internal);
        assert_eq!(Error::Invalid("x".into()).kind(), ErrorKind::Input);
    }
}
