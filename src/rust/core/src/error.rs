//! Error type of the core. Each variant says whose problem it is, so that the
//! R layer can raise the matching condition class (see [`Error::kind`]).
//!
//! The messages users act on ([`Error::Invalid`], [`Error::Model`]) are
//! [`Message`]s: a template and its arguments, made with [`msg!`](crate::msg).
//! The template is written in the R layer's cli syntax (`{.arg x}`, `{.val
//! {v}}`, `{.field {name}}`, `{n}` for an argument) and is the message's id in
//! the R package's catalogue (`po/R-fr.po`, extracted by `tools/update-po.R`):
//! the R layer translates the template, then cli fills in the arguments, so a
//! message from the core reads like the R layer's, in the user's language.
//! [`Message`]'s `Display` is the English text (cli markup rendered as a
//! console without colours shows it), for Rust callers and as the fallback.
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller passed data or an argument the model cannot use; the text says what.
    #[error("{0}")]
    Invalid(Message),
    /// A saved model is corrupted, was modified, or does not fit its configuration.
    #[error("{0}")]
    Model(Message),
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
pub(crate) fn invalid<T>(msg: impl Into<Message>) -> Result<T> {
    Err(Error::Invalid(msg.into()))
}

/// Shorthand for an [`Error::Model`].
pub(crate) fn corrupt<T>(msg: impl Into<Message>) -> Result<T> {
    Err(Error::Model(msg.into()))
}

/// A message for users: a cli template (the catalogue's id) and the values
/// of its placeholders. Text made with `From<String>` (or `&str`) is kept
/// as it is: not a template, not translated (its braces are escaped).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    template: Cow<'static, str>,
    args: Vec<(&'static str, Arg)>,
}

/// The value of a placeholder (to R: a string, a double or an integer).
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Text(String),
    Number(f64),
    Count(i64),
}

/// A [`Message`] from a template literal and its arguments:
/// `msg!("{.arg weights} has length {n}, the data has {rows} row{?s}.", n = w.len(), rows = n)`.
/// Templates are literals (`tools/update-po.R` extracts them from `msg!`).
#[macro_export]
macro_rules! msg {
    ($t:literal $(, $k:ident = $v:expr)* $(,)?) => {
        $crate::error::Message::template($t, vec![$((stringify!($k), $crate::error::Arg::from($v))),*])
    };
}

impl Message {
    /// A template and its arguments (use [`msg!`](crate::msg)).
    pub fn template(template: &'static str, args: Vec<(&'static str, Arg)>) -> Message {
        Message {
            template: Cow::Borrowed(template),
            args,
        }
    }

    /// Plain text (not translated).
    pub fn text(text: impl Into<String>) -> Message {
        let text: String = text.into();
        Message {
            template: Cow::Owned(text.replace('{', "{{").replace('}', "}}")),
            args: Vec::new(),
        }
    }

    /// The cli template (with escaped braces for plain text).
    pub fn template_text(&self) -> &str {
        &self.template
    }

    /// The placeholders' values by name.
    pub fn args(&self) -> &[(&'static str, Arg)] {
        &self.args
    }

    fn arg(&self, name: &str) -> Option<&Arg> {
        self.args.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

impl From<String> for Message {
    fn from(s: String) -> Message {
        Message::text(s)
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Message {
        Message::text(s)
    }
}

macro_rules! arg_from {
    ($variant:ident, $as:ty: $($t:ty),*) => {
        $(impl From<$t> for Arg {
            fn from(v: $t) -> Arg {
                Arg::$variant(v as $as)
            }
        })*
    };
}
arg_from!(Number, f64: f64, f32);
arg_from!(Count, i64: i64, i32, u32, u64, usize);

impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}

impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(v.clone())
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_string())
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Text(s) => f.write_str(s),
            Arg::Number(x) => write!(f, "{x}"),
            Arg::Count(n) => write!(f, "{n}"),
        }
    }
}

/// The English text of a template as cli prints it without colours:
/// `{x}` its value, `{.arg x}`, `{.code x}`, `{.field x}`, `{.file x}` in
/// backticks, `{.fn f}` as `` `f()` ``, `{.cls C}` as `<C>`, `{.val {x}}` quoted when text, `{?s}` plurals after the last
/// count, `{{`/`}}` braces.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = None;
        f.write_str(&render(&self.template, self, &mut last))
    }
}

fn render(t: &str, m: &Message, last: &mut Option<i64>) -> String {
    let mut out = String::new();
    let mut rest = t;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let c = rest.as_bytes()[i];
        if rest[i + 1..].starts_with(c as char) {
            out.push(c as char);
            rest = &rest[i + 2..];
            continue;
        }
        if c == b'}' {
            out.push('}');
            rest = &rest[i + 1..];
            continue;
        }
        // the matching brace
        let mut depth = 0;
        let mut end = rest.len();
        for (j, b) in rest.bytes().enumerate().skip(i) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let inner = &rest[i + 1..end.min(rest.len())];
        out.push_str(&expression(inner, m, last));
        rest = &rest[(end + 1).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

fn expression(e: &str, m: &Message, last: &mut Option<i64>) -> String {
    if let Some(forms) = e.strip_prefix('?') {
        let plural = *last != Some(1);
        let (one, many) = forms.split_once('/').unwrap_or(("", forms));
        return if plural { many } else { one }.to_string();
    }
    if let Some(styled) = e.strip_prefix('.') {
        let (class, body) = styled.split_once(' ').unwrap_or((styled, ""));
        let text = render(body, m, last);
        return match class {
            "arg" | "code" | "field" | "envvar" | "var" | "file" => format!("`{text}`"),
            "fn" => format!("`{text}()`"),
            "cls" => format!("<{text}>"),
            "val" => match body
                .trim()
                .strip_prefix('{')
                .and_then(|b| b.strip_suffix('}'))
            {
                Some(name) if matches!(m.arg(name), Some(Arg::Text(_))) => format!("\"{text}\""),
                _ => text,
            },
            _ => text,
        };
    }
    match m.arg(e.trim()) {
        Some(a) => {
            if let Arg::Count(n) = a {
                *last = Some(*n);
            }
            a.to_string()
        }
        None => format!("{{{e}}}"),
    }
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

    #[test]
    fn messages_render_as_cli_prints_them() {
        let m = crate::msg!(
            "{.arg weights} has {n} value{?s}, not {.val {what}} or {.val {x}} ({{braces}}).",
            n = 1usize,
            what = "abc",
            x = 2.5
        );
        assert_eq!(
            m.to_string(),
            "`weights` has 1 value, not \"abc\" or 2.5 ({braces})."
        );
        let m = crate::msg!("{n} row{?s} in {.field {col}}.", n = 3usize, col = "V1");
        assert_eq!(m.to_string(), "3 rows in `V1`.");
        assert_eq!(m.template_text(), "{n} row{?s} in {.field {col}}.");
        // plain text is not a template: its braces are escaped, shown as they are
        let t = Message::from(format!("a {} b", "{x}"));
        assert_eq!(t.template_text(), "a {{x}} b");
        assert_eq!(t.to_string(), "a {x} b");
        assert!(t.args().is_empty());
    }
}
