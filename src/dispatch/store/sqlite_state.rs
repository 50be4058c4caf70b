//! The rules' memory in the outbox's SQLite file: the step function's [`State`] over the
//! writer's open transaction, so that state and the deliveries it lets through are
//! committed together.
//!
//! Rows are appended to one table, `memory (rowid, key, expires, value)`, in the order they
//! are written, and looked up through an index held in memory by the writer thread
//! ([`MemoryIndex`], loaded when the outbox opens). A B-tree keyed by hash would put every
//! new key on a random page: measured, that made each commit write several times the
//! pages of its deliveries, and durable ingest with `dedup` on unique alerts ran at 0.44x
//! the rate without it (docs/benchmarks.md). Appending writes about one row's bytes.
//!
//! The key is a keyed 128-bit SipHash-1-3 of the step's key bytes, with a random secret of
//! this outbox kept in `meta`: nobody can make two keys collide, and no alert data is
//! stored in a key. The value is the entry as JSON. Changes are applied to the in-memory
//! index only once their commit succeeded: a failed commit (a full disk) leaves the index
//! as the file is. Expired rows are deleted a bounded number per commit. Never: reads the
//! clock (the step's `now` comes from the submit), or lets an SQLite error pass silently
//! (the first one fails the commit).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hasher;

use rusqlite::{Connection, Transaction, params};
use siphasher::sip128::{Hasher128, SipHasher13};

use crate::state::{Entry, Group, Key, SilenceSpan, State};

/// The secret that keys the hash of state keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Secret(pub(crate) u64, pub(crate) u64);

impl Secret {
    /// The keyed 128-bit SipHash-1-3 of a key's bytes: what the outbox stores.
    pub(crate) fn hash(self, key: &Key<'_>) -> Hash {
        let mut h = SipHasher13::new_with_keys(self.0, self.1);
        h.write(&key.bytes);
        h.finish128().as_bytes()
    }
}

/// The most expired rows one commit deletes.
const COLLECT_PER_COMMIT: usize = 256;

/// The most entries the rules' memory holds (about 150 bytes of memory each, and a row of
/// the outbox). Past it, the entries closest to expiring are forgotten first, a bounded
/// number per commit: a forgotten `dedup` entry lets one duplicate through, a forgotten
/// `resolve once` announcement drops one resolution; memory never grows without bound.
#[cfg(not(test))]
pub(crate) const MAX_ENTRIES: usize = 1_000_000;
/// Small in unit tests, so that one can fill it.
#[cfg(test)]
pub(crate) const MAX_ENTRIES: usize = 50;

pub(crate) type Hash = [u8; 16];

/// A map by [`Hash`] (both stores' state maps), hashed by the hash's first 8 bytes. The
/// key is already a keyed SipHash of the state key, which nobody can steer into
/// collisions; hashing it again with the standard map's own SipHash cost about 5% of an
/// ingest with `dedup` (callgrind).
pub(crate) type ByHash<V> = HashMap<Hash, V, std::hash::BuildHasherDefault<Prehashed>>;

/// The [`std::hash::Hasher`] of [`ByHash`]: keeps the first 8 bytes written, ignores the
/// length prefix.
#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        if let Some(first) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*first);
        }
    }

    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

/// One entry as the index holds it: the entry, when it expires, and its row.
#[derive(Clone, Debug)]
struct Held {
    entry: Entry,
    expires: u64,
    rowid: i64,
}

/// Every live entry of the `memory` table, by key hash, and by expiry for collection.
#[derive(Debug, Default)]
pub(crate) struct MemoryIndex {
    entries: ByHash<Held>,
    by_expiry: BTreeSet<(u64, Hash)>,
    /// Every stored silence's span, by id: what the step asks ([`State::silence`]).
    silences: HashMap<u64, SilenceSpan>,
    /// Every group's next flush, earliest first: what the flush timer reads.
    groups: BTreeSet<(u64, Hash)>,
    /// The rowid the next row gets: rows are written with their rowid, so that a commit
    /// writes its rows together ([`Changes::write_rows`]).
    next_rowid: i64,
}

impl MemoryIndex {
    /// Reads every row of the table. A row that cannot be read is deleted (forgetting one
    /// entry lets at most one duplicate through; it never loses an alert).
    pub(crate) fn load(conn: &Connection) -> rusqlite::Result<MemoryIndex> {
        let mut index = MemoryIndex::default();
        let mut bad = Vec::new();
        {
            let mut stmt = conn.prepare("SELECT rowid, key, expires, value FROM memory")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let rowid: i64 = row.get(0)?;
                index.next_rowid = index.next_rowid.max(rowid.saturating_add(1));
                let key: Vec<u8> = row.get(1)?;
                let expires = u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0);
                let value: Vec<u8> = row.get(3)?;
                match (
                    Hash::try_from(key.as_slice()),
                    super::entry_form::decode(&value),
                ) {
                    (Ok(hash), Ok(entry)) => {
                        if let Some(old) = index.entries.insert(
                            hash,
                            Held {
                                entry,
                                expires,
                                rowid,
                            },
                        ) {
                            bad.push(old.rowid);
                        }
                    }
                    _ => bad.push(rowid),
                }
            }
        }
        for rowid in bad {
            tracing::warn!(row = rowid, "a state entry cannot be read; it is forgotten");
            conn.execute("DELETE FROM memory WHERE rowid = ?1", params![rowid])?;
        }
        index.by_expiry = index
            .entries
            .iter()
            .map(|(h, held)| (held.expires, *h))
            .collect();
        index.groups = index
            .entries
            .iter()
            .filter_map(|(h, held)| group_flush(&held.entry).map(|at| (at, *h)))
            .collect();
        index.silences = super::sqlite_silence::spans(conn)?;
        Ok(index)
    }

    /// Applies a committed transaction's changes.
    pub(crate) fn apply(&mut self, changes: Changes) {
        self.next_rowid = self.next_rowid.max(changes.next_rowid.unwrap_or(0));
        for (id, span) in changes.silences {
            match span {
                Some(span) => self.silences.insert(id, span),
                None => self.silences.remove(&id),
            };
        }
        for (hash, change) in changes.entries {
            if let Some(old) = self.entries.remove(&hash) {
                self.by_expiry.remove(&(old.expires, hash));
                if let Some(at) = group_flush(&old.entry) {
                    self.groups.remove(&(at, hash));
                }
            }
            if let Some(held) = change {
                self.by_expiry.insert((held.expires, hash));
                if let Some(at) = group_flush(&held.entry) {
                    self.groups.insert((at, hash));
                }
                self.entries.insert(hash, held);
            }
        }
    }
}

/// When a group entry is next flushed; `None` for any other entry.
fn group_flush(entry: &Entry) -> Option<u64> {
    match entry {
        Entry::Group(g) => Some(g.next_flush),
        _ => None,
    }
}

/// What a transaction changed, to apply once it committed: entries by key hash, silences
/// by id (`None`: deleted).
#[derive(Debug, Default)]
pub(crate) struct Changes {
    entries: ByHash<Option<Held>>,
    pub(crate) silences: HashMap<u64, Option<SilenceSpan>>,
    /// Rows put and not written yet, by rowid from `first_rowid` (`None`: deleted before
    /// it was written): written together before the commit ([`Changes::write_rows`]).
    /// Nothing in a commit reads the table back.
    rows: Vec<Option<Row>>,
    /// The rowid of `rows[0]`.
    first_rowid: Option<i64>,
    /// The rowid of this commit's next row, once it has one.
    next_rowid: Option<i64>,
}

/// A row of the `memory` table, to be written. Its value is the entry this commit holds
/// under `key` (the row of an entry put again is dropped), encoded when the row is
/// written: an entry put many times in one commit (a group each alert of a burst joins)
/// is encoded once.
#[derive(Debug)]
struct Row {
    rowid: i64,
    key: Hash,
    expires: i64,
    rule: String,
    kind: &'static str,
    target: String,
}

impl Changes {
    /// Writes the rows put in this commit, in multi-row statements of 32, 8 and 1 rows:
    /// a statement per row (run, bound, reset) was about a tenth of an ingest with
    /// `dedup`. Called once, before the commit.
    pub(crate) fn write_rows(&mut self, txn: &Transaction<'_>) -> rusqlite::Result<()> {
        static SQL: std::sync::LazyLock<[String; 3]> = std::sync::LazyLock::new(|| {
            super::sqlite::chunked(
                "INSERT INTO memory (rowid, key, expires, value, rule, kind, target) VALUES",
                7,
            )
        });
        let live = self
            .rows
            .iter()
            .flatten()
            .map(|r| {
                let held = self
                    .entries
                    .get(&r.key)
                    .and_then(Option::as_ref)
                    .filter(|held| held.rowid == r.rowid)
                    .ok_or_else(|| {
                        rusqlite::Error::ToSqlConversionFailure(
                            "a memory row to write without its entry".into(),
                        )
                    })?;
                let value = super::entry_form::encode(&held.entry)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                Ok((r, value))
            })
            .collect::<rusqlite::Result<Vec<(&Row, Vec<u8>)>>>()?;
        super::sqlite::insert_chunked(txn, &SQL, 7, &live, |stmt, at, (r, value)| {
            stmt.raw_bind_parameter(at, r.rowid)?;
            stmt.raw_bind_parameter(at + 1, &r.key[..])?;
            stmt.raw_bind_parameter(at + 2, r.expires)?;
            stmt.raw_bind_parameter(at + 3, value)?;
            stmt.raw_bind_parameter(at + 4, &r.rule)?;
            stmt.raw_bind_parameter(at + 5, r.kind)?;
            stmt.raw_bind_parameter(at + 6, &r.target)
        })?;
        self.rows.clear();
        self.first_rowid = None;
        Ok(())
    }

    /// Drops row `rowid` if it is one of this commit's not written yet; false if it is not.
    fn unput(&mut self, rowid: i64) -> bool {
        let Some(first) = self.first_rowid else {
            return false;
        };
        match usize::try_from(rowid - first)
            .ok()
            .and_then(|at| self.rows.get_mut(at))
        {
            Some(row) => row.take().is_some(),
            None => false,
        }
    }

    /// Holds `row` to be written; answers its rowid.
    fn put(&mut self, index: &MemoryIndex, mut row: Row) -> i64 {
        let next = self.next_rowid.unwrap_or(index.next_rowid.max(1));
        let first = *self.first_rowid.get_or_insert(next);
        let rowid = first + self.rows.len() as i64;
        row.rowid = rowid;
        self.rows.push(Some(row));
        self.next_rowid = Some(rowid + 1);
        rowid
    }

    /// Silence `id` as the transaction sees it.
    fn silence(&self, index: &MemoryIndex, id: u64) -> Option<SilenceSpan> {
        match self.silences.get(&id) {
            Some(change) => *change,
            None => index.silences.get(&id).copied(),
        }
    }
}

/// The step's state over an open transaction.
pub(crate) struct SqliteState<'t> {
    txn: &'t Transaction<'t>,
    secret: Secret,
    index: &'t MemoryIndex,
    changes: &'t mut Changes,
    /// The first SQLite error: the commit fails with it once the step returns.
    pub(crate) error: Option<rusqlite::Error>,
}

impl<'t> SqliteState<'t> {
    pub(crate) fn new(
        txn: &'t Transaction<'t>,
        secret: Secret,
        index: &'t MemoryIndex,
        changes: &'t mut Changes,
    ) -> SqliteState<'t> {
        SqliteState {
            txn,
            secret,
            index,
            changes,
            error: None,
        }
    }

    fn hash(&self, key: &Key<'_>) -> Hash {
        self.secret.hash(key)
    }

    fn fail(&mut self, e: rusqlite::Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// The entry under `hash` as this transaction sees it.
    fn held(&self, hash: &Hash) -> Option<&Held> {
        match self.changes.entries.get(hash) {
            Some(change) => change.as_ref(),
            None => self.index.entries.get(hash),
        }
    }

    /// Deletes the row that holds `hash`, if any: a row of this commit not written yet is
    /// dropped before it is.
    fn delete_row(&mut self, hash: &Hash) -> rusqlite::Result<()> {
        if let Some(rowid) = self.held(hash).map(|h| h.rowid)
            && !self.changes.unput(rowid)
        {
            self.txn
                .prepare_cached("DELETE FROM memory WHERE rowid = ?1")?
                .execute(params![rowid])?;
        }
        Ok(())
    }

    fn put_row(&mut self, key: &Key<'_>, entry: Entry, expires: u64) -> rusqlite::Result<()> {
        let hash = self.hash(key);
        self.delete_row(&hash)?;
        let rowid = self.changes.put(
            self.index,
            Row {
                rowid: 0,
                key: hash,
                expires: i64::try_from(expires).unwrap_or(i64::MAX),
                rule: key.rule.to_owned(),
                kind: key.kind,
                target: key.target.to_owned(),
            },
        );
        self.changes.entries.insert(
            hash,
            Some(Held {
                entry,
                expires,
                rowid,
            }),
        );
        Ok(())
    }

    /// Deletes up to [`COLLECT_PER_COMMIT`] entries that expired before `now`; and, while
    /// the memory holds more than [`MAX_ENTRIES`], the entries closest to expiring, expired
    /// or not. Returns how many it deleted before their time.
    pub(crate) fn collect(&mut self, now: u64) -> usize {
        let held = self.index.entries.len() + self.changes.entries.len();
        let over = held.saturating_sub(MAX_ENTRIES);
        let mut early = 0usize;
        let victims: Vec<Hash> = self
            .index
            .by_expiry
            .iter()
            .filter(|(_, h)| !self.changes.entries.contains_key(h))
            .take_while(|(expires, _)| {
                if *expires <= now {
                    return true;
                }
                early += 1;
                early <= over
            })
            .map(|(_, h)| *h)
            .take(COLLECT_PER_COMMIT.max(over.min(4 * COLLECT_PER_COMMIT)))
            .collect();
        let early = early.min(over).min(victims.len());
        for hash in victims {
            if let Err(e) = self.delete_row(&hash) {
                self.fail(e);
                return 0;
            }
            self.changes.entries.insert(hash, None);
        }
        early
    }
}

/// The step's state for a preview (`POST /api/explain`): reads what the outbox holds (and
/// what the open transaction changed), keeps what the step writes to itself, and writes
/// nothing to the file or the index.
pub(crate) struct PreviewState<'t> {
    secret: Secret,
    index: &'t MemoryIndex,
    changes: &'t Changes,
    overlay: ByHash<Option<(Entry, u64)>>,
}

impl<'t> PreviewState<'t> {
    pub(crate) fn new(
        secret: Secret,
        index: &'t MemoryIndex,
        changes: &'t Changes,
    ) -> PreviewState<'t> {
        PreviewState {
            secret,
            index,
            changes,
            overlay: ByHash::default(),
        }
    }

    fn hash(&self, key: &Key<'_>) -> Hash {
        self.secret.hash(key)
    }
}

impl State for PreviewState<'_> {
    fn peek(&mut self, key: &Key<'_>, now: u64) -> Option<&Entry> {
        let hash = self.hash(key);
        let (entry, expires) = match self.overlay.get(&hash) {
            Some(Some((e, x))) => (e, *x),
            Some(None) => return None,
            None => {
                let held = match self.changes.entries.get(&hash) {
                    Some(change) => change.as_ref(),
                    None => self.index.entries.get(&hash),
                }?;
                (&held.entry, held.expires)
            }
        };
        (expires > now).then_some(entry)
    }

    fn put(&mut self, key: &Key<'_>, entry: Entry, expires: u64) {
        let hash = self.hash(key);
        self.overlay.insert(hash, Some((entry, expires)));
    }

    fn delete(&mut self, key: &Key<'_>) {
        let hash = self.hash(key);
        self.overlay.insert(hash, None);
    }

    fn silence(&mut self, id: u64) -> Option<SilenceSpan> {
        self.changes.silence(self.index, id)
    }

    /// A preview flushes nothing.
    fn due_groups(&mut self, _: u64, _: usize) -> Vec<Group> {
        Vec::new()
    }
}

impl State for SqliteState<'_> {
    fn peek(&mut self, key: &Key<'_>, now: u64) -> Option<&Entry> {
        let hash = self.hash(key);
        self.held(&hash)
            .filter(|h| h.expires > now)
            .map(|h| &h.entry)
    }

    fn put(&mut self, key: &Key<'_>, entry: Entry, expires: u64) {
        if let Err(e) = self.put_row(key, entry, expires) {
            self.fail(e);
        }
    }

    /// An entry this commit put is deleted and handed over; one committed before is copied.
    fn take(&mut self, key: &Key<'_>, now: u64) -> Option<Entry> {
        let hash = self.hash(key);
        if !matches!(self.changes.entries.get(&hash), Some(Some(held)) if held.expires > now) {
            return self.get(key, now);
        }
        if let Err(e) = self.delete_row(&hash) {
            self.fail(e);
        }
        self.changes
            .entries
            .insert(hash, None)
            .flatten()
            .map(|held| held.entry)
    }

    fn delete(&mut self, key: &Key<'_>) {
        let hash = self.hash(key);
        match self.delete_row(&hash) {
            Ok(()) => {
                self.changes.entries.insert(hash, None);
            }
            Err(e) => self.fail(e),
        }
    }

    fn silence(&mut self, id: u64) -> Option<SilenceSpan> {
        self.changes.silence(self.index, id)
    }

    fn due_groups(&mut self, now: u64, limit: usize) -> Vec<Group> {
        let stored = self
            .index
            .groups
            .iter()
            .take_while(|(at, _)| *at <= now)
            .filter(|(_, h)| !self.changes.entries.contains_key(h))
            .filter_map(|(_, h)| self.index.entries.get(h));
        let changed = self.changes.entries.values().flatten();
        let entries = stored.chain(changed).map(|h| (&h.entry, h.expires));
        crate::state::due_among(entries, now, limit)
    }
}

impl SqliteState<'_> {
    /// When the next group is due to be flushed, as this transaction leaves them.
    pub(crate) fn next_group_flush(&self) -> Option<u64> {
        let stored = self
            .index
            .groups
            .iter()
            .find(|(_, h)| !self.changes.entries.contains_key(h))
            .map(|(at, _)| *at);
        let changed = self
            .changes
            .entries
            .values()
            .flatten()
            .filter_map(|held| group_flush(&held.entry))
            .min();
        stored.into_iter().chain(changed).min()
    }
}

/// Up to `limit` live entries, newest first, for an operator (`GET /api/state`).
pub(crate) fn list(
    conn: &Connection,
    now: u64,
    limit: usize,
) -> rusqlite::Result<Vec<crate::state::Listed>> {
    let mut stmt = conn.prepare_cached(
        "SELECT rule, kind, target, expires, value FROM memory WHERE expires > ?1 ORDER BY rowid DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        params![
            i64::try_from(now).unwrap_or(i64::MAX),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (rule, kind, target, expires, value) = row?;
        if let Ok(entry) = super::entry_form::decode(&value) {
            out.push(crate::state::Listed {
                rule,
                kind,
                target,
                expires: u64::try_from(expires).unwrap_or(0),
                entry,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "sqlite_state_test.rs"]
mod tests;
