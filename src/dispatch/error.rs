//! The router's errors: a [`DispatchError`] carries a kind a caller can match
//! ([`DispatchErrorKind`]: a full disk is not a damaged file, nor a locked one), what
//! failed, and its source chained. The server maps kinds to HTTP statuses in one place
//! (`server/error.rs`).

use std::fmt;
use std::path::Path;

use crate::error::Failed;

/// Why a router could not start or accept an alert.
#[derive(Debug)]
pub struct DispatchError {
    kind: DispatchErrorKind,
    failed: Failed,
}

/// What kind of failure a [`DispatchError`] is, for a caller to act on: a full disk is
/// not a damaged file, nor a locked one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DispatchErrorKind {
    /// The outbox's disk is full: nothing can be written until there is room.
    Full,
    /// Another process holds the outbox, or its database is locked.
    Busy,
    /// The outbox's files are damaged, or its database lost committed deliveries.
    Corrupt,
    /// The router is stopping: its outbox takes no more work.
    Closed,
    /// Reading or writing the outbox failed otherwise (permissions, I/O).
    Io,
    /// A setting is wrong (no rule set, an HTTP client that cannot be built).
    Config,
    /// The operation is refused for this item: a dead letter holding a delivery that could
    /// not be read cannot be replayed.
    Refused,
    /// The shared store (NATS JetStream) did not answer, or has no quorum: whether the
    /// write was stored is unknown until it is read again.
    Unavailable,
}

impl DispatchErrorKind {
    /// The kind of an SQLite error.
    pub(crate) fn of_sqlite(e: &rusqlite::Error) -> DispatchErrorKind {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::DiskFull) => DispatchErrorKind::Full,
            Some(C::DatabaseBusy | C::DatabaseLocked) => DispatchErrorKind::Busy,
            Some(C::DatabaseCorrupt | C::NotADatabase) => DispatchErrorKind::Corrupt,
            _ => DispatchErrorKind::Io,
        }
    }

    /// A few words for messages: `the disk is full`.
    pub fn describe(self) -> &'static str {
        match self {
            DispatchErrorKind::Full => "the disk is full",
            DispatchErrorKind::Busy => "the outbox is busy or locked",
            DispatchErrorKind::Corrupt => "the outbox is damaged",
            DispatchErrorKind::Closed => "the router is stopping",
            DispatchErrorKind::Io => "the outbox cannot be read or written",
            DispatchErrorKind::Config => "a setting is wrong",
            DispatchErrorKind::Refused => "refused for this item",
            DispatchErrorKind::Unavailable => "the shared store is unreachable or has no quorum",
        }
    }
}

impl DispatchError {
    pub(crate) fn store(
        kind: DispatchErrorKind,
        path: &Path,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> DispatchError {
        DispatchError::caused(kind, format!("outbox `{}`", path.display()), e)
    }

    /// An SQLite error on the outbox at `path`, of the kind its code says.
    pub(crate) fn sqlite(path: &Path, e: rusqlite::Error) -> DispatchError {
        DispatchError::store(DispatchErrorKind::of_sqlite(&e), path, e)
    }

    pub(crate) fn other(kind: DispatchErrorKind, what: impl Into<String>) -> DispatchError {
        DispatchError {
            kind,
            failed: Failed::new(what),
        }
    }

    /// A failure of `what`, caused by `e`.
    pub(crate) fn caused(
        kind: DispatchErrorKind,
        what: impl Into<String>,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> DispatchError {
        DispatchError {
            kind,
            failed: Failed::caused(what, e),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> DispatchErrorKind {
        self.kind
    }
}

impl fmt::Display for DispatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.failed.fmt(f)
    }
}

impl std::error::Error for DispatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failed.cause()
    }
}
