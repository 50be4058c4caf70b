//! The outbox's ledger: the highest delivery id ever committed, kept in a small file beside
//! the database (`outbox.ledger`), where SQLite's recovery cannot take it back.
//!
//! SQLite replays its write-ahead log up to the first frame that fails its checksum and
//! drops everything after it without a word: a damaged log loses commits that were
//! acknowledged. The ledger is written after each commit that created deliveries (one
//! `pwrite`, no `fsync`: a crash of the process keeps it, since the kernel has it; after a
//! power loss it may lag, which never raises a false alarm). At start the database must
//! know of the ledger's id: as a row still in a table, or as the `high_water` mark the
//! writer keeps when it deletes the newest row. If it does not, commits were lost, and the
//! outbox refuses to open unless told to accept the loss.
//!
//! What it cannot see: a loss among older ids while a newer one survives, a ledger lost
//! with its disk, and anything before the ledger existed. docs/delivery.md says so.

use std::fs::File;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

/// The file's first bytes, then the id as 8 bytes, little-endian.
const MAGIC: &[u8; 8] = b"SYLEDG01";

/// What an outbox opening does when the database lost committed deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loss {
    /// Refuse to open, saying what was lost and how to go on.
    Refuse,
    /// Open, log the loss as an error, count it, and start a new ledger.
    Accept,
    /// Open for inspection (the dead-letter commands): warn, change nothing.
    Report,
}

/// The ledger file, and what it and the database said at open.
pub(crate) struct Ledger {
    file: File,
    written: u64,
    /// The `high_water` mark last written to the database.
    pub(crate) high_water: u64,
    /// Ids that may be lost (ledger id minus what the database knows), when accepted.
    pub(crate) lost: u64,
}

/// Why an outbox did not open: its database lost committed deliveries.
#[derive(Debug)]
pub(crate) struct Lost {
    pub(crate) ledger: u64,
    pub(crate) known: u64,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the database has lost committed deliveries: its ledger says delivery {} was committed, and the database knows of none after {}; a damaged write-ahead log (outbox.sqlite3-wal) is the likely cause, and deliveries {}..={} may be lost. Keep a copy of the data directory for inspection; to start anyway, pass --accept-outbox-loss (the loss is logged and counted)",
            self.ledger,
            self.known,
            self.known + 1,
            self.ledger
        )
    }
}

impl std::error::Error for Lost {}

/// The highest id the database knows of: any row's, or the `high_water` mark.
pub(crate) fn known(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    let mark: u64 = conn
        .query_row("SELECT value FROM meta WHERE key = 'high_water'", [], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .map_or(0, |v| u64::try_from(v).unwrap_or(0));
    let mut max = mark;
    for table in ["fresh", "deliveries", "dead"] {
        let id: Option<i64> =
            conn.query_row(&format!("SELECT max(id) FROM {table}"), [], |r| r.get(0))?;
        max = max.max(id.map_or(0, |v| u64::try_from(v).unwrap_or(0)));
    }
    Ok((max, mark))
}

/// The id a ledger file holds; 0 when it is missing or cannot be read (then nothing is
/// checked, and it says so).
fn read(path: &Path) -> u64 {
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() == 16 && bytes.starts_with(MAGIC) => {
            let mut id = [0u8; 8];
            id.copy_from_slice(&bytes[8..16]);
            u64::from_le_bytes(id)
        }
        Ok(_) => {
            tracing::warn!(path = %path.display(), "the outbox ledger is not readable; this start cannot check for lost deliveries, and a new ledger begins");
            0
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the outbox ledger; this start cannot check for lost deliveries");
            0
        }
    }
}

impl Ledger {
    /// Opens `<dir>/outbox.ledger` and checks it against the database, on the writer's
    /// connection, before anything is written. Ids go on after the ledger's, whatever
    /// the database says, so that no id (and no idempotency key) is ever used twice.
    pub(crate) fn open(dir: &Path, conn: &Connection, loss: Loss) -> Result<Ledger, LedgerError> {
        let path = dir.join("outbox.ledger");
        let ledger = read(&path);
        let (known, mark) = known(conn).map_err(LedgerError::Db)?;
        let mut lost = 0;
        if ledger > known {
            let e = Lost { ledger, known };
            match loss {
                Loss::Refuse => return Err(LedgerError::Lost(e)),
                Loss::Accept => {
                    lost = ledger - known;
                    tracing::error!(ledger, known, lost, "{e} (accepted: starting anyway)");
                }
                Loss::Report => tracing::warn!("{e}"),
            }
        }
        let mut high_water = mark;
        if loss != Loss::Report {
            // Never hand out an id at or below the ledger's again.
            let next: Option<i64> = conn
                .query_row("SELECT value FROM meta WHERE key = 'next_id'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(LedgerError::Db)?;
            let next = next.map_or(1, |v| u64::try_from(v).unwrap_or(0));
            if next <= ledger {
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_id', ?1)",
                    params![i64::try_from(ledger + 1).unwrap_or(i64::MAX)],
                )
                .map_err(LedgerError::Db)?;
            }
            if ledger > known {
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('high_water', ?1)",
                    params![i64::try_from(ledger).unwrap_or(i64::MAX)],
                )
                .map_err(LedgerError::Db)?;
                high_water = ledger;
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(LedgerError::Io)?;
        Ok(Ledger {
            file,
            written: ledger.max(known),
            high_water,
            lost,
        })
    }

    /// The highest id written to the ledger.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Records that every id up to `id` is committed (after the commit). A failed write is
    /// logged: it only weakens the next start's check.
    pub(crate) fn advance(&mut self, id: u64) {
        if id <= self.written {
            return;
        }
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8..].copy_from_slice(&id.to_le_bytes());
        match write_at(&self.file, &bytes) {
            Ok(()) => self.written = id,
            Err(e) => {
                tracing::warn!(error = %e, "cannot write the outbox ledger; the next start may not see lost deliveries")
            }
        }
    }
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    file.write_all_at(bytes, 0)
}

#[cfg(not(unix))]
fn write_at(file: &File, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::{Seek as _, Write as _};
    let mut f = file;
    f.seek(std::io::SeekFrom::Start(0))?;
    f.write_all(bytes)
}

/// Why the ledger could not be opened.
#[derive(Debug)]
pub(crate) enum LedgerError {
    Lost(Lost),
    Db(rusqlite::Error),
    Io(std::io::Error),
}

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerError::Lost(l) => l.fmt(f),
            LedgerError::Db(e) => write!(f, "cannot check the outbox ledger: {e}"),
            LedgerError::Io(e) => write!(f, "cannot open the outbox ledger: {e}"),
        }
    }
}

impl std::error::Error for LedgerError {}
