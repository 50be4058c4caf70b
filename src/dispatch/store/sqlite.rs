//! The embedded outbox: one SQLite database under the data directory, in WAL mode with
//! `synchronous=FULL`, so a commit is on disk when it returns.
//!
//! Tables:
//! - `fresh`: id, target, and a delivery not yet attempted, as JSON. New deliveries go here:
//!   the table has no secondary index, so a commit appends to its last pages only, however
//!   many targets the batch touches. After each commit the writer hands the new records to
//!   the [`FreshSink`] (the router's in-memory queues, `lanes.rs`), which is the only way
//!   they are found while the process runs; at start [`Store::fresh_pending`] lists them.
//!   Reading a delivery's JSON happens only here, never in a commit: the router hands the
//!   writer what to store ([`Finish`]), so a commit decodes nothing.
//! - `deliveries`: id, target, next attempt ms, and a delivery that was attempted (a retry),
//!   fell back, or was replayed, as JSON; an index on (target, next attempt, id) makes a
//!   target's due deliveries one range read, so a dead target's backlog never slows another
//!   target's reads. A delivery is in exactly one of the two tables: a retry moves it from
//!   `fresh` to `deliveries` in the commit that records the attempt.
//! - `dead`: id -> a delivery that ran out of retries, with its last error;
//! - `meta`: the next id and this store's random id (for idempotency keys).
//!
//! Every write goes through one writer thread. It takes every operation waiting in its
//! channel and commits them in one transaction, with one fsync (group commit): durability
//! costs one fsync per batch, not per alert. Operations reach the channel through
//! [`Gather`], which hands over those of one scheduler round together. Reads use a second
//! connection, which WAL lets run while the writer commits. `benches/outbox-stores`
//! measured SQLite against redb for this write pattern (docs/delivery.md).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use tokio::sync::oneshot;

use super::gather::Gather;
use super::ledger::{self, Ledger, Loss};
use super::sqlite_record::{decode, encode_record};
use super::sqlite_state::{Changes, MemoryIndex, PreviewState, Secret, SqliteState};
use super::{
    DeadLetter, Depth, Expired, Finish, FreshSink, Health, Record, Stateful, Store, StoreFuture,
    Stored, Submission,
};
use crate::dispatch::{DispatchError, DispatchErrorKind};
use crate::state::{Listed, Silence, Verdict};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS deliveries (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        next_at INTEGER NOT NULL,
        record BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (target, next_at, id);
    CREATE TABLE IF NOT EXISTS fresh (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        record BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS dead (id INTEGER PRIMARY KEY, record BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS memory_pages (id INTEGER PRIMARY KEY, items BLOB NOT NULL);
";

/// The most operations one group commit takes.
const MAX_BATCH: usize = 4096;

enum Op {
    Submit(
        Vec<Submission>,
        oneshot::Sender<Result<Vec<Stored>, Failure>>,
    ),
    /// Runs the step without storing anything (`Store::preview`).
    Preview(
        Vec<Stateful>,
        oneshot::Sender<Result<Vec<Vec<Verdict>>, Failure>>,
    ),
    /// Which held firings an inhibit keeps out now (`Store::inhibitors`): a read of the
    /// rules' memory, in the writer's order.
    Inhibitors(
        Vec<crate::state::Recheck>,
        u64,
        oneshot::Sender<Result<super::Inhibitors, Failure>>,
    ),
    Finish(
        Box<Finish>,
        oneshot::Sender<Result<Option<Record>, Failure>>,
    ),
    Replay(u64, u64, oneshot::Sender<Result<Option<Record>, Failure>>),
    Purge(Option<u64>, oneshot::Sender<Result<usize, Failure>>),
    /// A pending delivery a read could not decode: move it to the dead letters, as it is.
    Quarantine(u64, String),
    /// Flushes the groups due (`Store::flush_groups`).
    FlushGroups(
        u64,
        super::GroupRender,
        oneshot::Sender<Result<super::Flushed, Failure>>,
    ),
    /// Stores a new silence (`Store::add_silence`).
    AddSilence(Silence, u64, oneshot::Sender<Result<Silence, Failure>>),
    /// Ends a silence early and releases what it held (`Store::expire_silence`).
    ExpireSilence(u64, u64, oneshot::Sender<Result<Option<Expired>, Failure>>),
}

/// What the store knows of its own state, shared by its readers and its writer.
#[derive(Default)]
struct Cells {
    /// Stored deliveries found unreadable since the outbox was opened.
    unreadable: AtomicU64,
    /// The last commit failed (a full disk, say): nothing can be recorded until one
    /// succeeds.
    failing: AtomicBool,
    /// Delivery ids the database lost (found by the ledger at open, and accepted).
    lost: AtomicU64,
    /// State entries forgotten before they expired, because the memory was full.
    evicted: AtomicU64,
    /// The entries the rules' memory holds, as the writer's index counts them after each
    /// commit (the pages on disk also hold copies no longer live).
    entries: AtomicU64,
}

/// The outbox: reads from any thread, writes through the group-commit thread.
pub(crate) struct SqliteStore {
    /// The read connection; WAL lets it read while the writer commits.
    reader: std::sync::Mutex<Connection>,
    ops: Gather<Op>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Held for the store's life: one process per outbox.
    _lock: std::fs::File,
    store_id: u64,
    path: PathBuf,
    health: Arc<Cells>,
}

impl Drop for SqliteStore {
    /// Closes the database before returning, so the file can be opened again at once (a
    /// restart in the same process, a test): the writer finishes its last batch and exits.
    fn drop(&mut self) {
        self.ops.close();
        if let Some(w) = self.writer.take()
            && w.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "the outbox writer panicked");
        }
    }
}

/// How long opening waits for another holder of the outbox lock to let go: a process that
/// is still exiting, or a child process just forked from this one (a fork holds a copy of
/// every open file, the lock's included, until it starts its own program).
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Takes the lock on `file`, trying again for up to `wait`.
fn lock_within(file: &std::fs::File, wait: Duration) -> bool {
    let started = std::time::Instant::now();
    loop {
        if file.try_lock().is_ok() {
            return true;
        }
        if started.elapsed() >= wait {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Checkpoints every 256 WAL pages (SQLite's default: 1,000). New deliveries fill new
    // pages, so a checkpoint copies about as many pages as the WAL holds, and the commit
    // that runs it waits for that: smaller, more frequent checkpoints halve ingest's p99
    // (5 -> 2.7 ms) at the same throughput (docs/benchmarks.md).
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;
         PRAGMA wal_autocheckpoint=256;",
    )?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (or creates) `<dir>/outbox.sqlite3` and starts the writer thread. New
    /// deliveries are only stored, not handed on ([`SqliteStore::open_with`]).
    /// Opened so, it only reports a loss the ledger finds (for inspecting an outbox).
    pub(crate) fn open(dir: &Path) -> Result<SqliteStore, DispatchError> {
        SqliteStore::open_with(dir, None, Loss::Report)
    }

    /// [`SqliteStore::open`], with `sink` taking every commit's new deliveries.
    /// `loss`: what to do when the ledger finds committed deliveries the database lost.
    pub(crate) fn open_with(
        dir: &Path,
        sink: Option<FreshSink>,
        loss: Loss,
    ) -> Result<SqliteStore, DispatchError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| DispatchError::store(DispatchErrorKind::Io, dir, e))?;
        let path = dir.join("outbox.sqlite3");
        let lock_path = dir.join("outbox.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| DispatchError::store(DispatchErrorKind::Io, &lock_path, e))?;
        if !lock_within(&lock, LOCK_WAIT) {
            return Err(DispatchError::store(
                DispatchErrorKind::Busy,
                &path,
                "in use by another switchyard process; stop it first, or use its HTTP API",
            ));
        }
        let writer_conn = connect(&path).map_err(|e| DispatchError::sqlite(&path, e))?;
        restrict_permissions(&path);
        let (store_id, secret) = init(&writer_conn).map_err(|e| DispatchError::sqlite(&path, e))?;
        let ledger = Ledger::open(dir, &writer_conn, loss).map_err(|e| {
            let kind = match &e {
                ledger::LedgerError::Lost(_) => DispatchErrorKind::Corrupt,
                ledger::LedgerError::Db(db) => DispatchErrorKind::of_sqlite(db),
                ledger::LedgerError::Io(_) => DispatchErrorKind::Io,
            };
            DispatchError::store(kind, &path, e)
        })?;
        let memory =
            MemoryIndex::load(&writer_conn).map_err(|e| DispatchError::sqlite(&path, e))?;
        let reader = connect(&path).map_err(|e| DispatchError::sqlite(&path, e))?;
        let (tx, rx) = mpsc::channel::<Vec<Op>>();
        let health = Arc::new(Cells::default());
        health.lost.store(ledger.lost, Ordering::Relaxed);
        health.entries.store(memory.len() as u64, Ordering::Relaxed);
        let writer_health = health.clone();
        let handle = std::thread::Builder::new()
            .name(String::from("switchyard-outbox"))
            .spawn(move || {
                let env = WriterEnv {
                    sink: sink.as_ref(),
                    health: &writer_health,
                    secret,
                };
                writer(writer_conn, &rx, &env, ledger, memory)
            })
            .map_err(|e| DispatchError::store(DispatchErrorKind::Io, &path, e))?;
        Ok(SqliteStore {
            reader: std::sync::Mutex::new(reader),
            ops: Gather::new(tx),
            writer: Some(handle),
            _lock: lock,
            store_id,
            path,
            health,
        })
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DispatchError> {
        let conn = self
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&conn).map_err(|e| DispatchError::sqlite(&self.path, e))
    }

    /// Hands one operation to the writer and waits for its commit.
    async fn write<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, Failure>>) -> Op,
    ) -> Result<T, DispatchError> {
        let (tx, rx) = oneshot::channel();
        self.send(op(tx))?;
        rx.await
            .map_err(|_| self.closed())?
            .map_err(|e| self.failed(e))
    }

    fn send(&self, op: Op) -> Result<(), DispatchError> {
        let pushed = match &op {
            Op::Submit(batch, _) => {
                let weight = batch
                    .iter()
                    .map(|s| s.plain.len() + s.stateful.as_ref().map_or(0, |st| st.choices.len()))
                    .sum();
                self.ops.push(op, weight)
            }
            // An attempt's outcome waits for others (its worker goes on sending
            // meanwhile), so that the outcomes of every target share a commit.
            Op::Finish(..) => self.ops.push_lazy(op, 1),
            _ => self.ops.push(op, 1),
        };
        pushed.map_err(|_| self.closed())
    }

    fn closed(&self) -> DispatchError {
        DispatchError::store(
            DispatchErrorKind::Closed,
            &self.path,
            "the outbox writer has stopped",
        )
    }

    fn failed(&self, e: Failure) -> DispatchError {
        DispatchError::store(e.kind, &self.path, e.message)
    }

    /// Moves deliveries that could not be decoded to the dead letters (in the next commit),
    /// logged and counted: nothing accepted disappears without a trace.
    fn quarantine(&self, bad: Vec<(u64, String)>) {
        for (id, error) in bad {
            self.health.unreadable.fetch_add(1, Ordering::Relaxed);
            tracing::error!(delivery = id, error = %error, "a stored delivery cannot be read; it is kept as a dead letter");
            if self.send(Op::Quarantine(id, error)).is_err() {
                tracing::error!(
                    delivery = id,
                    "the outbox is closed; the unreadable delivery stays where it is"
                );
            }
        }
    }

    fn due_now(
        &self,
        target: &str,
        now_ms: u64,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<Record>, DispatchError> {
        let mut bad = Vec::new();
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, record FROM deliveries WHERE target = ?1 AND next_at <= ?2 ORDER BY next_at, id",
            )?;
            let mut rows = stmt.query(params![target, to_i64(now_ms)])?;
            let mut out = Vec::new();
            while out.len() < limit
                && let Some(row) = rows.next()?
            {
                let id = from_i64(row.get(0)?);
                if skip(id) {
                    continue;
                }
                match decode(id, row.get_ref(1)?.as_blob()?) {
                    Ok(r) => out.push(r),
                    Err(e) => bad.push((id, e)),
                }
            }
            Ok(out)
        })
        .inspect(|_| self.quarantine(bad))
    }

    fn next_due_now(
        &self,
        target: &str,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<Option<u64>, DispatchError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, next_at FROM deliveries WHERE target = ?1 ORDER BY next_at, id",
            )?;
            let mut rows = stmt.query(params![target])?;
            while let Some(row) = rows.next()? {
                if !skip(from_i64(row.get(0)?)) {
                    return Ok(Some(from_i64(row.get(1)?)));
                }
            }
            Ok(None)
        })
    }

    fn fresh_records_now(&self, ids: &[u64]) -> Result<Vec<Record>, DispatchError> {
        let mut bad = Vec::new();
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT record FROM fresh WHERE id = ?1")?;
            let mut out = Vec::with_capacity(ids.len());
            for &id in ids {
                let bytes: Option<Vec<u8>> = stmt
                    .query_row(params![to_i64(id)], |r| r.get(0))
                    .optional()?;
                match bytes.map(|b| decode(id, &b)) {
                    Some(Ok(r)) => out.push(r),
                    Some(Err(e)) => bad.push((id, e)),
                    None => {}
                }
            }
            Ok(out)
        })
        .inspect(|_| self.quarantine(bad))
    }

    fn fresh_pending_now(&self, each: &mut dyn FnMut(u64, &str)) -> Result<(), DispatchError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT id, target FROM fresh ORDER BY id")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let id = from_i64(row.get(0)?);
                let target = row.get_ref(1)?.as_str()?;
                each(id, target);
            }
            Ok(())
        })
    }

    fn pending_alerts_now(
        &self,
        target: &str,
        now_ms: u64,
    ) -> Result<Vec<(u64, String)>, DispatchError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, record, 0 FROM fresh WHERE target = ?1
                 UNION ALL SELECT id, record, next_at FROM deliveries WHERE target = ?1 ORDER BY 1",
            )?;
            let mut rows = stmt.query([target])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let id = from_i64(row.get(0)?);
                let next_at = from_i64(row.get(2)?);
                // One that cannot be read is left out here: it becomes a dead letter when
                // its worker reaches it.
                if let Ok(r) = decode(id, row.get_ref(1)?.as_blob()?)
                    && let Some(alert) = r.alert_id
                    && !(r.attempts == 0 && next_at > now_ms)
                {
                    out.push((id, alert));
                }
            }
            Ok(out)
        })
    }

    fn outbox_view_now(&self, limit: usize) -> Result<super::OutboxView, DispatchError> {
        self.read(|c| {
            let mut view = super::OutboxView::default();
            let mut counts = c.prepare_cached(
                "SELECT target, count(*), 1 FROM fresh GROUP BY target
                 UNION ALL SELECT target, count(*), 0 FROM deliveries GROUP BY target",
            )?;
            let mut rows = counts.query([])?;
            while let Some(row) = rows.next()? {
                let target: String = row.get(0)?;
                let fresh: i64 = row.get(2)?;
                super::count_into(
                    &mut view.targets,
                    &target,
                    fresh == 1,
                    from_i64(row.get(1)?),
                );
            }
            let mut soonest = c.prepare_cached(
                "SELECT id, record FROM deliveries WHERE id IN
                 (SELECT id FROM deliveries ORDER BY next_at, id LIMIT ?1) ORDER BY next_at, id",
            )?;
            let mut rows = soonest.query([i64::try_from(limit).unwrap_or(i64::MAX)])?;
            while let Some(row) = rows.next()? {
                let id = from_i64(row.get(0)?);
                // One that cannot be read is left out here: it becomes a dead letter when
                // its worker reaches it.
                if let Ok(r) = decode(id, row.get_ref(1)?.as_blob()?) {
                    view.waiting.push(super::Waiting::of(&r));
                }
            }
            Ok(view)
        })
    }

    fn pending_targets_now(&self) -> Result<Vec<String>, DispatchError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT DISTINCT target FROM deliveries")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
    }
}

/// Writes go to the writer thread; reads run on the caller's thread on the read
/// connection (short indexed reads: a future that is ready at once).
impl Store for SqliteStore {
    fn store_id(&self) -> u64 {
        self.store_id
    }

    fn location(&self) -> &Path {
        &self.path
    }

    fn submit(
        &self,
        batch: Vec<Submission>,
    ) -> StoreFuture<'_, Result<Vec<Stored>, DispatchError>> {
        Box::pin(async move {
            if batch
                .iter()
                .all(|s| s.plain.is_empty() && s.stateful.is_none())
            {
                return Ok(batch.iter().map(|_| Stored::default()).collect());
            }
            self.write(|tx| Op::Submit(batch, tx)).await
        })
    }

    fn preview(
        &self,
        batch: Vec<Stateful>,
    ) -> StoreFuture<'_, Result<Vec<Vec<Verdict>>, DispatchError>> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(Vec::new());
            }
            self.write(|tx| Op::Preview(batch, tx)).await
        })
    }

    fn inhibitors(
        &self,
        checks: Vec<crate::state::Recheck>,
        now: u64,
    ) -> StoreFuture<'_, Result<super::Inhibitors, DispatchError>> {
        Box::pin(async move {
            if checks.is_empty() {
                return Ok(Vec::new());
            }
            self.write(|tx| Op::Inhibitors(checks, now, tx)).await
        })
    }

    fn state_list(
        &self,
        now: u64,
        limit: usize,
    ) -> StoreFuture<'_, Result<Vec<Listed>, DispatchError>> {
        Box::pin(std::future::ready(
            self.read(|c| super::sqlite_state::list(c, now, limit)),
        ))
    }

    fn state_entries(&self) -> Result<u64, DispatchError> {
        Ok(self.health.entries.load(Ordering::Acquire))
    }

    /// Every operation is queued before any is awaited, so the writer takes them as one
    /// batch (one fsync).
    fn finish(
        &self,
        items: Vec<Finish>,
    ) -> StoreFuture<'_, Vec<Result<Option<Record>, DispatchError>>> {
        Box::pin(async move {
            let mut waiting = Vec::with_capacity(items.len());
            for item in items {
                let (tx, rx) = oneshot::channel();
                waiting.push(self.send(Op::Finish(Box::new(item), tx)).map(|()| rx));
            }
            let mut out = Vec::with_capacity(waiting.len());
            for w in waiting {
                out.push(match w {
                    Ok(rx) => rx
                        .await
                        .map_err(|_| self.closed())
                        .and_then(|r| r.map_err(|e| self.failed(e))),
                    Err(e) => Err(e),
                });
            }
            out
        })
    }

    fn replay(
        &self,
        id: u64,
        now_ms: u64,
    ) -> StoreFuture<'_, Result<Option<Record>, DispatchError>> {
        Box::pin(self.write(move |tx| Op::Replay(id, now_ms, tx)))
    }

    fn purge(&self, id: Option<u64>) -> StoreFuture<'_, Result<usize, DispatchError>> {
        Box::pin(self.write(move |tx| Op::Purge(id, tx)))
    }

    fn due<'a>(
        &'a self,
        target: &'a str,
        now_ms: u64,
        limit: usize,
        skip: &'a (dyn Fn(u64) -> bool + Sync),
    ) -> StoreFuture<'a, Result<Vec<Record>, DispatchError>> {
        Box::pin(std::future::ready(
            self.due_now(target, now_ms, limit, skip),
        ))
    }

    fn next_due<'a>(
        &'a self,
        target: &'a str,
        skip: &'a (dyn Fn(u64) -> bool + Sync),
    ) -> StoreFuture<'a, Result<Option<u64>, DispatchError>> {
        Box::pin(std::future::ready(self.next_due_now(target, skip)))
    }

    fn fresh_records<'a>(
        &'a self,
        ids: &'a [u64],
    ) -> StoreFuture<'a, Result<Vec<Record>, DispatchError>> {
        Box::pin(std::future::ready(self.fresh_records_now(ids)))
    }

    fn fresh_pending<'a>(
        &'a self,
        each: &'a mut (dyn FnMut(u64, &str) + Send),
    ) -> StoreFuture<'a, Result<(), DispatchError>> {
        Box::pin(std::future::ready(self.fresh_pending_now(each)))
    }

    fn pending_targets(&self) -> StoreFuture<'_, Result<Vec<String>, DispatchError>> {
        Box::pin(std::future::ready(self.pending_targets_now()))
    }

    fn outbox_view(
        &self,
        limit: usize,
    ) -> StoreFuture<'_, Result<super::OutboxView, DispatchError>> {
        Box::pin(std::future::ready(self.outbox_view_now(limit)))
    }

    fn pending_alerts<'a>(
        &'a self,
        target: &'a str,
        now_ms: u64,
    ) -> StoreFuture<'a, Result<Vec<(u64, String)>, DispatchError>> {
        Box::pin(std::future::ready(self.pending_alerts_now(target, now_ms)))
    }

    fn depth(&self) -> Result<Depth, DispatchError> {
        self.read(|c| {
            let pending: i64 = c.query_row(
                "SELECT (SELECT count(*) FROM deliveries) + (SELECT count(*) FROM fresh)",
                [],
                |r| r.get(0),
            )?;
            let dead: i64 = c.query_row("SELECT count(*) FROM dead", [], |r| r.get(0))?;
            Ok(Depth {
                pending: from_i64(pending),
                dead: from_i64(dead),
            })
        })
    }

    fn dead_letters(
        &self,
        limit: usize,
    ) -> StoreFuture<'_, Result<Vec<DeadLetter>, DispatchError>> {
        Box::pin(std::future::ready(self.dead_letters_now(limit)))
    }

    #[cfg(test)]
    fn dead_letter(&self, id: u64) -> StoreFuture<'_, Result<Option<DeadLetter>, DispatchError>> {
        Box::pin(std::future::ready(self.dead_letter_now(id)))
    }

    fn health(&self) -> Health {
        Health {
            writable: !self.health.failing.load(Ordering::Acquire),
            unreadable: self.health.unreadable.load(Ordering::Relaxed),
            lost: self.health.lost.load(Ordering::Relaxed),
        }
    }

    fn flush_groups(
        &self,
        now: u64,
        render: super::GroupRender,
    ) -> StoreFuture<'_, Result<super::Flushed, DispatchError>> {
        Box::pin(self.write(move |tx| Op::FlushGroups(now, render, tx)))
    }

    fn silences(&self) -> StoreFuture<'_, Result<Vec<Silence>, DispatchError>> {
        Box::pin(std::future::ready(self.read(super::sqlite_silence::list)))
    }

    fn add_silence(
        &self,
        silence: Silence,
        now: u64,
    ) -> StoreFuture<'_, Result<Silence, DispatchError>> {
        Box::pin(self.write(move |tx| Op::AddSilence(silence, now, tx)))
    }

    fn expire_silence(
        &self,
        id: u64,
        now: u64,
    ) -> StoreFuture<'_, Result<Option<Expired>, DispatchError>> {
        Box::pin(self.write(move |tx| Op::ExpireSilence(id, now, tx)))
    }
}

/// SQLite integers are signed; ids and times stay far below 2^63.
pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn from_i64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Creates the tables if needed; answers this store's random id and state secret.
fn init(conn: &Connection) -> rusqlite::Result<(u64, Secret)> {
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(super::sqlite_silence::SCHEMA)?;
    // Notes of held deliveries that went (or were cancelled) since: nothing to release.
    conn.execute(
        "DELETE FROM silenced WHERE delivery NOT IN (SELECT id FROM deliveries)",
        [],
    )?;
    let store_id = random_meta(conn, "store_id")?;
    let secret = Secret(
        random_meta(conn, "state_key_0")?,
        random_meta(conn, "state_key_1")?,
    );
    Ok((store_id, secret))
}

/// A random 64-bit value kept in `meta` under `key`: made once, read back at every open.
fn random_meta(conn: &Connection, key: &str) -> rusqlite::Result<u64> {
    let existing: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
            r.get(0)
        })
        .optional()?;
    match existing {
        Some(v) => Ok(v as u64),
        None => {
            let v = fastrand::u64(..);
            // Stored as the same 64 bits, read back with `as`.
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![key, v as i64],
            )?;
            Ok(v)
        }
    }
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // The outbox holds request headers, which may carry credentials.
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %path.display(), error = %e, "cannot restrict the outbox file's permissions");
    }
}

#[cfg(not(unix))]
fn restrict_permissions(_: &Path) {}

/// The group-commit loop: one transaction per batch of waiting operations.
/// Delivery ids are handed out from blocks reserved in `meta.next_id`, so a commit
/// writes the meta row once per [`ID_BLOCK`] ids instead of every time. After a restart
/// numbering resumes at the end of the last reserved block: ids stay unique (the
/// idempotency keys depend on it), some are skipped.
const ID_BLOCK: u64 = 4096;

#[derive(Clone, Copy)]
struct Ids {
    next: u64,
    reserved: u64,
}

/// What the writer's commits share and never change.
struct WriterEnv<'a> {
    /// Where new deliveries go once committed.
    sink: Option<&'a FreshSink>,
    health: &'a Cells,
    /// Keys the hash of state keys.
    secret: Secret,
}

fn writer(
    mut conn: Connection,
    rx: &mpsc::Receiver<Vec<Op>>,
    env: &WriterEnv<'_>,
    mut ledger: Ledger,
    mut memory: MemoryIndex,
) {
    let mut errors = ErrorLog::default();
    let mut ids: Option<Ids> = None;
    while let Ok(mut batch) = rx.recv() {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(ops) => batch.extend(ops),
                Err(_) => break,
            }
        }
        commit(
            &mut conn,
            batch,
            &mut ids,
            env,
            &mut errors,
            &mut ledger,
            &mut memory,
        );
    }
}

type Reply = Box<dyn FnOnce(Result<(), Failure>) + Send>;

/// Why a commit (or one operation of it) failed, as its waiters are told: the kind
/// survives the trip from the writer thread.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    kind: DispatchErrorKind,
    message: String,
}

impl Failure {
    fn of(e: &rusqlite::Error) -> Failure {
        Failure {
            kind: DispatchErrorKind::of_sqlite(e),
            message: e.to_string(),
        }
    }
}

fn put(txn: &rusqlite::Transaction<'_>, r: &Record) -> rusqlite::Result<()> {
    let bytes = encode_record(r)?;
    txn.prepare_cached(
        "INSERT OR REPLACE INTO deliveries (id, target, next_at, record) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        to_i64(r.id),
        r.spec.target,
        to_i64(r.next_at_ms),
        bytes
    ])?;
    Ok(())
}

/// A commit's new deliveries, written together: one multi-row `INSERT` per up to 32 rows
/// instead of a statement each (running, binding and resetting a statement per delivery
/// was about a tenth of a durable ingest's instructions). Written before anything else in
/// the commit reads or deletes deliveries, and before the commit: see [`commit`].
#[derive(Default)]
struct FreshRows(Vec<(i64, String, Vec<u8>)>);

/// The sizes of the multi-row statements a commit's rows are written with, largest first.
const CHUNKS: [usize; 3] = [32, 8, 1];

/// `insert` (an `INSERT ... VALUES` without its rows) for each size of [`CHUNKS`], with
/// `columns` parameters per row.
pub(super) fn chunked(insert: &str, columns: usize) -> [String; 3] {
    let row = format!("({})", vec!["?"; columns].join(", "));
    CHUNKS.map(|n| format!("{insert} {}", vec![row.as_str(); n].join(", ")))
}

/// Writes `rows`, in order, with the statements [`chunked`] made (`sql`): as many rows per
/// statement as [`CHUNKS`] allows. `bind` binds one row's `columns` values from the
/// parameter it is given.
pub(super) fn insert_chunked<R>(
    txn: &rusqlite::Transaction<'_>,
    sql: &[String; 3],
    columns: usize,
    rows: &[R],
    bind: impl Fn(&mut rusqlite::Statement<'_>, usize, &R) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut rest = rows;
    while !rest.is_empty() {
        let (k, n) = CHUNKS
            .into_iter()
            .enumerate()
            .find(|&(_, n)| rest.len() >= n)
            .unwrap_or((CHUNKS.len() - 1, 1));
        let (chunk, tail) = rest.split_at(n);
        let mut stmt = txn.prepare_cached(&sql[k])?;
        for (i, row) in chunk.iter().enumerate() {
            bind(&mut stmt, columns * i + 1, row)?;
        }
        stmt.raw_execute()?;
        rest = tail;
    }
    Ok(())
}

/// The deliveries a commit found delivered, deleted together: each table's statement is
/// taken from the cache once for all of them, where taking it and giving it back for each
/// delivery was a quarter of the delete (a multi-row `DELETE ... WHERE id IN` cost more
/// than it saved: SQLite builds a temporary index of the list). A delivered delivery was
/// committed by an earlier commit (a worker only has what is on disk), so the commit's
/// own new rows never hold one, and a plain submit, which only adds rows under new ids,
/// may come between; anything else in the commit that reads or deletes deliveries comes
/// after these are deleted: see [`commit`].
#[derive(Default)]
struct Delivered(Vec<u64>);

impl Delivered {
    /// Deletes every delivery held from whichever table holds it; answers the highest id
    /// held (no row keeps any of them afterwards), 0 when none was.
    fn delete(&mut self, txn: &rusqlite::Transaction<'_>) -> rusqlite::Result<u64> {
        let mut ids = std::mem::take(&mut self.0);
        let Some(&highest) = ids.iter().max() else {
            return Ok(0);
        };
        // Most were delivered at their first attempt, so are fresh: the other table is
        // only asked for those not found there.
        for table in [
            "DELETE FROM fresh WHERE id = ?1",
            "DELETE FROM deliveries WHERE id = ?1",
        ] {
            if ids.is_empty() {
                break;
            }
            let mut stmt = txn.prepare_cached(table)?;
            let mut missing = Vec::new();
            for id in ids {
                if stmt.execute([to_i64(id)])? == 0 {
                    missing.push(id);
                }
            }
            ids = missing;
        }
        Ok(highest)
    }
}

impl FreshRows {
    fn push(&mut self, r: &Record) -> rusqlite::Result<()> {
        self.0
            .push((to_i64(r.id), r.spec.target.clone(), encode_record(r)?));
        Ok(())
    }

    /// Inserts every row held, in order (a later row with the same id replaces an earlier
    /// one, as one statement each did).
    fn write(&mut self, txn: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        static SQL: std::sync::LazyLock<[String; 3]> = std::sync::LazyLock::new(|| {
            chunked(
                "INSERT OR REPLACE INTO fresh (id, target, record) VALUES",
                3,
            )
        });
        insert_chunked(txn, &SQL, 3, &self.0, |stmt, at, (id, target, bytes)| {
            stmt.raw_bind_parameter(at, id)?;
            stmt.raw_bind_parameter(at + 1, target)?;
            stmt.raw_bind_parameter(at + 2, bytes)
        })?;
        self.0.clear();
        Ok(())
    }
}

/// Makes held delivery `id` due at `now`, if it is still pending and due later; answers
/// its target when it was. A record that cannot be read is left as it is (it becomes a
/// dead letter when it is reached, at its old time).
fn release(txn: &rusqlite::Transaction<'_>, id: u64, now: u64) -> rusqlite::Result<Option<String>> {
    let row: Option<(i64, Vec<u8>)> = txn
        .prepare_cached("SELECT next_at, record FROM deliveries WHERE id = ?1")?
        .query_row(params![to_i64(id)], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((next_at, bytes)) = row else {
        return Ok(None);
    };
    if from_i64(next_at) <= now {
        return Ok(None);
    }
    let Ok(mut r) = decode(id, &bytes) else {
        return Ok(None);
    };
    r.next_at_ms = now;
    put(txn, &r)?;
    Ok(Some(r.spec.target))
}

/// Deletes a delivery from whichever table holds it; returns whether one did. Its stored
/// record is not read: what replaces it comes from the router.
fn remove(txn: &rusqlite::Transaction<'_>, id: u64) -> rusqlite::Result<bool> {
    for delete in [
        "DELETE FROM fresh WHERE id = ?1",
        "DELETE FROM deliveries WHERE id = ?1",
    ] {
        if txn.prepare_cached(delete)?.execute(params![to_i64(id)])? > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deletes a delivery from whichever table holds it; returns its target and stored record.
fn take(txn: &rusqlite::Transaction<'_>, id: u64) -> rusqlite::Result<Option<(String, Vec<u8>)>> {
    for delete in [
        "DELETE FROM fresh WHERE id = ?1 RETURNING target, record",
        "DELETE FROM deliveries WHERE id = ?1 RETURNING target, record",
    ] {
        let row: Option<(String, Vec<u8>)> = txn
            .prepare_cached(delete)?
            .query_row(params![to_i64(id)], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if row.is_some() {
            return Ok(row);
        }
    }
    Ok(None)
}

/// A stored dead letter; one that cannot be read is shown as unreadable, never skipped.
fn decode_dead(id: u64, bytes: &[u8]) -> DeadLetter {
    serde_json::from_slice::<DeadLetter>(bytes)
        .unwrap_or_else(|e| DeadLetter::unreadable(id, String::from("?"), bytes, &e.to_string(), 0))
}

/// A dead letter's stored form (JSON). Serializing one cannot fail (its keys are strings);
/// if it ever did, the commit fails, rather than storing an empty blob.
fn encode(r: &impl Serialize) -> rusqlite::Result<Vec<u8>> {
    serde_json::to_vec(r).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Moves a pending delivery that cannot be decoded to the dead letters, raw bytes kept.
fn quarantine(
    txn: &rusqlite::Transaction<'_>,
    id: u64,
    target: String,
    bytes: &[u8],
    error: &str,
) -> rusqlite::Result<()> {
    let d = DeadLetter::unreadable(id, target, bytes, error, now_ms());
    txn.prepare_cached("INSERT OR REPLACE INTO dead (id, record) VALUES (?1, ?2)")?
        .execute(params![to_i64(id), encode(&d)?])?;
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// At most one log line per [`ErrorLog::EVERY`] for failed commits, with how many were
/// not logged: a full disk fails every commit, and a line each would flood the log.
#[derive(Default)]
struct ErrorLog {
    last: Option<std::time::Instant>,
    quiet: u64,
}

impl ErrorLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn failed(&mut self, error: &str) {
        if self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            self.quiet += 1;
            return;
        }
        tracing::error!(error = %error, not_logged_since_last = self.quiet, "outbox commit failed; the batch's submits are refused and outcomes are kept for later (one line per 10 s)");
        self.last = Some(std::time::Instant::now());
        self.quiet = 0;
    }
}

fn commit(
    conn: &mut Connection,
    batch: Vec<Op>,
    ids: &mut Option<Ids>,
    env: &WriterEnv<'_>,
    errors: &mut ErrorLog,
    ledger: &mut Ledger,
    memory: &mut MemoryIndex,
) {
    let WriterEnv {
        sink,
        health,
        secret,
    } = *env;
    let mut high_water = None;
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    let mut fresh: Vec<Record> = Vec::new();
    let before = *ids;
    let result = (|| -> rusqlite::Result<()> {
        let txn = conn.transaction()?;
        let start = match *ids {
            Some(i) => i,
            None => {
                let stored = txn
                    .query_row("SELECT value FROM meta WHERE key = 'next_id'", [], |r| {
                        r.get::<_, i64>(0)
                    })
                    .optional()?
                    .map_or(1, from_i64);
                Ids {
                    next: stored,
                    reserved: stored,
                }
            }
        };
        let mut next_id = start.next;
        // The highest id this commit deletes outright (no row keeps it), and whether it
        // purges every dead letter: what the ledger's mark depends on.
        let mut deleted_max = 0u64;
        let mut purged_all = false;
        // The latest `now` of a stateful submission: state that expired before it is
        // collected, a bounded number of rows per commit.
        let mut collect_before = 0u64;
        // What the rules' memory changes, applied to the index once the commit succeeded.
        let mut changes = Changes::default();
        // New deliveries not written yet: only submits add to them, and they are written
        // before any other operation, any delete of a delivery, and the end of the batch.
        let mut pending = FreshRows::default();
        // Deliveries found delivered, not deleted yet: deleted before any operation but
        // another of them or a plain submit, and before the end of the batch.
        let mut delivered = Delivered::default();
        for op in batch {
            let is_delivered =
                matches!(&op, Op::Finish(item, _) if matches!(**item, Finish::Delivered(_)));
            if !matches!(op, Op::Submit(..)) && !is_delivered {
                pending.write(&txn)?;
            }
            let plain =
                matches!(&op, Op::Submit(subs, _) if subs.iter().all(|s| s.stateful.is_none()));
            if !is_delivered && !plain {
                deleted_max = deleted_max.max(delivered.delete(&txn)?);
            }
            match op {
                Op::Submit(submissions, tx) => {
                    let mut out = Vec::with_capacity(submissions.len());
                    for sub in submissions {
                        let mut stored = Stored {
                            ids: Vec::with_capacity(sub.plain.len()),
                            ..Stored::default()
                        };
                        let mut kept = super::Kept {
                            now: sub.plain,
                            ..super::Kept::default()
                        };
                        for r in &mut kept.now {
                            r.id = next_id;
                            next_id += 1;
                        }
                        if let Some(st) = sub.stateful {
                            collect_before = collect_before.max(st.now);
                            let mut state = SqliteState::new(secret, memory, &mut changes);
                            let mut ids = || {
                                next_id += 1;
                                next_id - 1
                            };
                            stored.verdicts = super::run_step(&mut state, *st, &mut ids, &mut kept);
                        }
                        if !kept.cancelled.is_empty() {
                            pending.write(&txn)?;
                        }
                        for (_, id) in kept.cancelled {
                            if remove(&txn, id)? {
                                deleted_max = deleted_max.max(id);
                            }
                        }
                        for r in kept.later {
                            put(&txn, &r)?;
                            stored.push_later(&r);
                        }
                        for (delivery, silence) in kept.silenced {
                            super::sqlite_silence::note_held(&txn, delivery, silence)?;
                        }
                        for r in kept.now {
                            pending.push(&r)?;
                            stored.push(&r);
                            if sink.is_some() {
                                fresh.push(r);
                            }
                        }
                        out.push(stored);
                    }
                    replies.push(Box::new(move |res| {
                        let _ = tx.send(res.map(|()| out));
                    }));
                }
                Op::Preview(batch, tx) => {
                    let mut state = PreviewState::new(secret, memory, &changes);
                    let out: Vec<Vec<Verdict>> = batch
                        .into_iter()
                        .map(|st| super::preview_one(&mut state, st))
                        .collect();
                    replies.push(Box::new(move |res| {
                        let _ = tx.send(res.map(|()| out));
                    }));
                }
                Op::Inhibitors(checks, now, tx) => {
                    let mut state = PreviewState::new(secret, memory, &changes);
                    let out: super::Inhibitors = checks
                        .iter()
                        .map(|c| c.inhibitor(&mut state, now))
                        .collect();
                    replies.push(Box::new(move |res| {
                        let _ = tx.send(res.map(|()| out));
                    }));
                }
                Op::Finish(item, tx) => {
                    let id = item.id();
                    let mut created = None;
                    if let Finish::Delivered(_) = *item {
                        delivered.0.push(id);
                    // Each other applies only to a delivery still fresh or pending.
                    } else if remove(&txn, id)? {
                        match *item {
                            // Held above, deleted with the others.
                            Finish::Delivered(_) => {}
                            Finish::Inhibited { check, now, .. } => {
                                deleted_max = deleted_max.max(id);
                                let mut state = SqliteState::new(secret, memory, &mut changes);
                                check.forget(&mut state, id, now);
                            }
                            Finish::Retry(r) => put(&txn, &r)?,
                            Finish::FallBack { to: mut r, .. } => {
                                deleted_max = deleted_max.max(id);
                                r.id = next_id;
                                next_id += 1;
                                put(&txn, &r)?;
                                created = Some(r);
                            }
                            Finish::Dead(d) => {
                                txn.prepare_cached(
                                    "INSERT OR REPLACE INTO dead (id, record) VALUES (?1, ?2)",
                                )?
                                .execute(params![to_i64(id), encode(&d)?])?;
                            }
                        }
                    }
                    replies.push(Box::new(move |res| {
                        let _ = tx.send(res.map(|()| created));
                    }));
                }
                Op::Replay(id, now_ms, tx) => {
                    let bytes: Option<Vec<u8>> = txn
                        .prepare_cached("SELECT record FROM dead WHERE id = ?1")?
                        .query_row(params![to_i64(id)], |r| r.get(0))
                        .optional()?;
                    // Decoded before anything is deleted: a dead letter that cannot be read,
                    // or holds an unreadable delivery, stays where it is.
                    let retry = bytes.map(|b| decode_dead(id, &b).into_retry(now_ms));
                    let created = match retry {
                        Some(Err(message)) => {
                            let why = Failure {
                                kind: DispatchErrorKind::Refused,
                                message,
                            };
                            replies.push(Box::new(move |_| {
                                let _ = tx.send(Err(why));
                            }));
                            continue;
                        }
                        Some(Ok(r)) => {
                            txn.prepare_cached("DELETE FROM dead WHERE id = ?1")?
                                .execute(params![to_i64(id)])?;
                            put(&txn, &r)?;
                            Some(r)
                        }
                        None => None,
                    };
                    replies.push(Box::new(move |res| {
                        let _ = tx.send(res.map(|()| created));
                    }));
                }
                Op::FlushGroups(now, mut render, tx) => {
                    collect_before = collect_before.max(now);
                    let mut kept = super::Kept::default();
                    let mut state = SqliteState::new(secret, memory, &mut changes);
                    let mut ids = || {
                        next_id += 1;
                        next_id - 1
                    };
                    let sent = super::run_flush(&mut state, now, &mut ids, &mut kept, &mut render);
                    let next = state.next_group_flush();
                    let mut flushed = super::Flushed {
                        sent,
                        targets: Vec::new(),
                        next,
                    };
                    for r in kept.now {
                        pending.push(&r)?;
                        if !flushed.targets.contains(&r.spec.target) {
                            flushed.targets.push(r.spec.target.clone());
                        }
                        if sink.is_some() {
                            fresh.push(r);
                        }
                    }
                    replies.push(Box::new(move |res| {
                        let _ = tx.send(res.map(|()| flushed));
                    }));
                }
                Op::AddSilence(silence, now, tx) => {
                    let mut forgotten = Vec::new();
                    let stored = super::sqlite_silence::add(&txn, silence, now, &mut forgotten)?;
                    changes.silences.insert(stored.id, Some(stored.span()));
                    for id in forgotten {
                        changes.silences.insert(id, None);
                    }
                    replies.push(Box::new(move |res| {
                        let _ = tx.send(res.map(|()| stored));
                    }));
                }
                Op::ExpireSilence(id, now, tx) => {
                    let expired = match super::sqlite_silence::expire(&txn, id, now)? {
                        None => None,
                        Some((silence, held)) => {
                            changes.silences.insert(silence.id, Some(silence.span()));
                            let mut released = Vec::new();
                            for delivery in held {
                                if let Some(target) = release(&txn, delivery, now)?
                                    && !released.contains(&target)
                                {
                                    released.push(target);
                                }
                            }
                            Some(Expired { silence, released })
                        }
                    };
                    replies.push(Box::new(move |res| {
                        let _ = tx.send(res.map(|()| expired));
                    }));
                }
                Op::Quarantine(id, error) => {
                    if let Some((target, bytes)) = take(&txn, id)? {
                        quarantine(&txn, id, target, &bytes, &error)?;
                    }
                }
                Op::Purge(id, tx) => {
                    match id {
                        Some(id) => deleted_max = deleted_max.max(id),
                        None => purged_all = true,
                    }
                    let n = match id {
                        Some(id) => {
                            txn.execute("DELETE FROM dead WHERE id = ?1", params![to_i64(id)])?
                        }
                        None => txn.execute("DELETE FROM dead", [])?,
                    };
                    replies.push(Box::new(move |res| {
                        let _ = tx.send(res.map(|()| n));
                    }));
                }
            }
        }
        pending.write(&txn)?;
        deleted_max = deleted_max.max(delivered.delete(&txn)?);
        if collect_before > 0 {
            let mut state = SqliteState::new(secret, memory, &mut changes);
            let early = state.collect(collect_before);
            if early > 0 {
                let before = health.evicted.fetch_add(early as u64, Ordering::Relaxed);
                // One line per 10,000 entries forgotten early, not one per commit.
                if before / 10_000 != (before + early as u64) / 10_000 || before == 0 {
                    tracing::warn!(
                        forgotten_early = before + early as u64,
                        limit = super::sqlite_state::MAX_ENTRIES,
                        "the rules' memory is full; the entries closest to expiring are forgotten first (a duplicate may go through)"
                    );
                }
            }
        }
        changes.write(&txn, memory)?;
        // A commit that deletes the newest row (the highest id committed) leaves the
        // database a mark of it, for the ledger's check at the next start. Known from the
        // ids this commit deleted, without a query; only purging every dead letter asks
        // the tables.
        let highest = ledger.written().max(next_id.saturating_sub(1));
        let newest_gone =
            deleted_max == highest || (purged_all && ledger::known(&txn)?.0 < highest);
        if newest_gone && ledger.high_water < highest {
            txn.prepare_cached(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('high_water', ?1)",
            )?
            .execute(params![to_i64(highest)])?;
            high_water = Some(highest);
        }
        let mut reserved = start.reserved;
        if next_id > reserved {
            reserved = next_id + ID_BLOCK;
            txn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_id', ?1)",
                params![to_i64(reserved)],
            )?;
        }
        txn.commit()?;
        memory.apply(changes);
        health.entries.store(memory.len() as u64, Ordering::Release);
        *ids = Some(Ids {
            next: next_id,
            reserved,
        });
        if next_id > start.next {
            ledger.advance(next_id - 1);
        }
        if let Some(h) = high_water {
            ledger.high_water = h;
        }
        Ok(())
    })();
    if result.is_err() {
        // Nothing of the batch was written: neither were its ids nor its reservation.
        *ids = before;
    }
    let result = result.map_err(|e| Failure::of(&e));
    match &result {
        Err(e) => {
            health.failing.store(true, Ordering::Release);
            errors.failed(&e.message);
        }
        Ok(()) => {
            if health.failing.swap(false, Ordering::AcqRel) {
                tracing::info!(not_logged = errors.quiet, "outbox commits succeed again");
                errors.quiet = 0;
                errors.last = None;
            }
        }
    }
    // The new deliveries go to the sink before anyone is answered: a submitter that wakes
    // a worker after its reply finds them queued.
    if result.is_ok()
        && let Some(sink) = sink
        && !fresh.is_empty()
    {
        sink(fresh);
    }
    for reply in replies {
        reply(result.clone());
    }
}

/// Reads the offline `Outbox` makes on its own thread.
impl SqliteStore {
    /// Dead letters, oldest first, at most `limit`: a read on the calling thread (the
    /// offline `Outbox` uses it).
    pub(crate) fn dead_letters_now(&self, limit: usize) -> Result<Vec<DeadLetter>, DispatchError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT id, record FROM dead ORDER BY id LIMIT ?1")?;
            let rows = stmt.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((from_i64(r.get(0)?), r.get::<_, Vec<u8>>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, bytes) = row?;
                out.push(decode_dead(id, &bytes));
            }
            Ok(out)
        })
    }

    /// One dead letter: a read on the calling thread.
    pub(crate) fn dead_letter_now(&self, id: u64) -> Result<Option<DeadLetter>, DispatchError> {
        self.read(|c| {
            let bytes: Option<Vec<u8>> = c
                .query_row(
                    "SELECT record FROM dead WHERE id = ?1",
                    params![to_i64(id)],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(bytes.map(|b| decode_dead(id, &b)))
        })
    }
}

#[cfg(test)]
#[path = "sqlite_test.rs"]
mod tests;
