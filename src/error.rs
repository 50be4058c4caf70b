//! The library's one error type.

use std::fmt;
use std::path::PathBuf;

use crate::diagnostic::Diagnostics;

/// Why a rule set could not be loaded.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
}

/// What went wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The rules folder or a file in it could not be read: `RuleSet::load_dir("missing/")`.
    Io {
        /// The path that could not be read.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The rules have errors (`when a = 1 -> post x`); every one is in the diagnostics.
    Rules(Diagnostics),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error {
            kind: ErrorKind::Io {
                path: path.into(),
                source,
            },
        }
    }

    pub(crate) fn rules(d: Diagnostics) -> Error {
        Error {
            kind: ErrorKind::Rules(d),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The diagnostics, when the rules have errors.
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        match &self.kind {
            ErrorKind::Rules(d) => Some(d),
            ErrorKind::Io { .. } => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Io { path, .. } => write!(f, "cannot read `{}`", path.display()),
            ErrorKind::Rules(d) => {
                let n = d.error_count();
                write!(
                    f,
                    "the rules have {n} error{}",
                    if n == 1 { "" } else { "s" }
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io { source, .. } => Some(source),
            ErrorKind::Rules(_) => None,
        }
    }
}

/// What failed, and why: the message and chained cause that the upper floors' errors with
/// a kind share (`DispatchError`, `reload::WatchError`, `server::ConfigError`). Displayed
/// as `what: cause`; the cause is also [`std::error::Error::source`], and `main`'s report
/// prints a chain without repeating a cause that a message already ends with.
#[cfg(any(feature = "dispatch", feature = "reload"))]
#[derive(Debug)]
pub(crate) struct Failed {
    what: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

#[cfg(any(feature = "dispatch", feature = "reload"))]
impl Failed {
    /// `what` failed, with no further cause.
    #[cfg_attr(not(feature = "dispatch"), allow(dead_code))]
    pub(crate) fn new(what: impl Into<String>) -> Failed {
        Failed {
            what: what.into(),
            source: None,
        }
    }

    /// `what` failed because of `source`.
    pub(crate) fn caused(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Failed {
        Failed {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// The cause, for an error's [`std::error::Error::source`].
    pub(crate) fn cause(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(any(feature = "dispatch", feature = "reload"))]
impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(s) => write!(f, "{}: {s}", self.what),
            None => f.write_str(&self.what),
        }
    }
}
