//! The rules' memory in the outbox's SQLite file: the step function's [`State`] over the
//! writer's open transaction, so that state and the deliveries it lets through are
//! committed together.
//!
//! One table, `state (key, expires, value)`: the key is a keyed 128-bit SipHash-1-3 of the
//! step's key bytes (the key is a random secret of this outbox, kept in `meta`: nobody can
//! make two keys collide, and no alert data is stored in a key); the value is the entry as
//! JSON. Expired rows are deleted a bounded number at a time ([`collect`]), so a commit's
//! cost stays flat however much state there is. Never: reads the clock (the step's `now`
//! comes from the submit), or lets an SQLite error pass silently (the first one fails the
//! commit).

use std::hash::Hasher;

use rusqlite::{OptionalExtension, Transaction, params};
use siphasher::sip128::{Hasher128, SipHasher13};

use crate::state::{Entry, Key, State};

/// The secret that keys the hash of state keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Secret(pub(crate) u64, pub(crate) u64);

/// The most expired rows one commit deletes.
const COLLECT_PER_COMMIT: i64 = 256;

/// The step's state over an open transaction.
pub(crate) struct SqliteState<'t> {
    txn: &'t Transaction<'t>,
    secret: Secret,
    /// The first SQLite error: the commit fails with it once the step returns.
    pub(crate) error: Option<rusqlite::Error>,
}

impl<'t> SqliteState<'t> {
    pub(crate) fn new(txn: &'t Transaction<'t>, secret: Secret) -> SqliteState<'t> {
        SqliteState {
            txn,
            secret,
            error: None,
        }
    }

    fn hash(&self, key: &Key) -> [u8; 16] {
        let mut h = SipHasher13::new_with_keys(self.secret.0, self.secret.1);
        h.write(&key.0);
        h.finish128().as_bytes()
    }

    fn fail(&mut self, e: rusqlite::Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

impl State for SqliteState<'_> {
    fn get(&mut self, key: &Key, now: u64) -> Option<Entry> {
        let hash = self.hash(key);
        let row: rusqlite::Result<Option<(i64, Vec<u8>)>> = self
            .txn
            .prepare_cached("SELECT expires, value FROM state WHERE key = ?1")
            .and_then(|mut s| {
                s.query_row(params![&hash[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            });
        match row {
            Ok(Some((expires, value))) if u64::try_from(expires).unwrap_or(0) > now => {
                match serde_json::from_slice(&value) {
                    Ok(entry) => Some(entry),
                    Err(e) => {
                        // Forgetting one entry lets one duplicate through; it never loses
                        // an alert.
                        tracing::error!(error = %e, "a state entry cannot be read; it is forgotten");
                        None
                    }
                }
            }
            Ok(_) => None,
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    fn put(&mut self, key: &Key, entry: &Entry, expires: u64) {
        let hash = self.hash(key);
        let value = match serde_json::to_vec(entry) {
            Ok(v) => v,
            Err(e) => {
                self.fail(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
                return;
            }
        };
        let done = self
            .txn
            .prepare_cached(
                "INSERT OR REPLACE INTO state (key, expires, value) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    &hash[..],
                    i64::try_from(expires).unwrap_or(i64::MAX),
                    value
                ])
            });
        if let Err(e) = done {
            self.fail(e);
        }
    }

    fn delete(&mut self, key: &Key) {
        let hash = self.hash(key);
        let done = self
            .txn
            .prepare_cached("DELETE FROM state WHERE key = ?1")
            .and_then(|mut s| s.execute(params![&hash[..]]));
        if let Err(e) = done {
            self.fail(e);
        }
    }
}

/// Deletes up to [`COLLECT_PER_COMMIT`] entries that expired before `now`.
pub(crate) fn collect(txn: &Transaction<'_>, now: u64) -> rusqlite::Result<usize> {
    txn.prepare_cached(
        "DELETE FROM state WHERE key IN (SELECT key FROM state WHERE expires <= ?1 LIMIT ?2)",
    )?
    .execute(params![
        i64::try_from(now).unwrap_or(i64::MAX),
        COLLECT_PER_COMMIT
    ])
}
