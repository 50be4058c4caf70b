//! The embedded outbox: one redb file under the data directory.
//!
//! Tables:
//! - `deliveries`: id -> the pending delivery (request, attempts, next attempt time);
//! - `queue`: (target, next attempt ms, id) -> (), so a target's due deliveries are one
//!   range read and a dead target's backlog never slows another target's reads;
//! - `dead`: id -> a delivery that ran out of retries, with its last error;
//! - `meta`: the next id and this store's random id (for idempotency keys).
//!
//! Every write goes through one writer thread. It takes every operation waiting in its
//! channel and commits them in one transaction, with one fsync (group commit): durability
//! costs one fsync per batch, not per alert.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::DispatchError;

const DELIVERIES: TableDefinition<u64, &[u8]> = TableDefinition::new("deliveries");
const QUEUE: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("queue");
const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("dead");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The most operations one group commit takes.
const MAX_BATCH: usize = 4096;

/// How a request is made: fixed when the delivery is queued, so a reload that changes or
/// removes the target does not change what is already in the outbox.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Spec {
    pub(crate) target: String,
    pub(crate) url: String,
    pub(crate) method: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) timeout_ms: u64,
    pub(crate) retries: u32,
    /// Where the delivery goes when this target cannot take it.
    pub(crate) fallback: Option<Box<Spec>>,
}

/// One delivery: an alert's body for one target, and where it stands.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Record {
    #[serde(default)]
    pub(crate) id: u64,
    pub(crate) spec: Spec,
    pub(crate) body: String,
    pub(crate) alert_id: Option<String>,
    pub(crate) attempts: u32,
    pub(crate) next_at_ms: u64,
    pub(crate) last_error: Option<String>,
    pub(crate) created_ms: u64,
    /// The target this delivery fell back from, if any.
    pub(crate) fallback_from: Option<String>,
}

/// A delivery that could not be made, kept for an operator.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    /// The dead letter's id (the delivery's id).
    pub id: u64,
    /// The target it was for.
    pub target: String,
    /// The alert's `@id`, when it has one.
    pub alert_id: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// The last error: a status line or a connection error.
    pub error: String,
    /// When the delivery was first queued, in ms since the Unix epoch.
    pub created_ms: u64,
    /// When it was given up, in ms since the Unix epoch.
    pub dead_ms: u64,
    /// The body that was to be sent.
    pub body: String,
    #[serde(rename = "spec")]
    pub(crate) spec: Spec,
}

impl DeadLetter {
    /// The URL it was for, as written in the rules (no secret values).
    pub fn method(&self) -> &str {
        &self.spec.method
    }
}

/// What happened to an attempt.
#[derive(Debug)]
pub(crate) enum Outcome {
    Delivered,
    Retry {
        attempts: u32,
        next_at_ms: u64,
        error: String,
    },
    /// Out of retries (or refused for good): to the fallback if any, else a dead letter.
    GiveUp {
        attempts: u32,
        error: String,
        now_ms: u64,
    },
}

enum Op {
    Append(Vec<Record>, oneshot::Sender<Result<Vec<u64>, String>>),
    Finish(
        u64,
        Outcome,
        oneshot::Sender<Result<Option<Record>, String>>,
    ),
    Replay(u64, u64, oneshot::Sender<Result<Option<Record>, String>>),
    Purge(Option<u64>, oneshot::Sender<Result<usize, String>>),
}

/// The outbox: reads from any thread, writes through the group-commit thread.
pub(crate) struct Store {
    db: Arc<Database>,
    /// `None` only while dropping.
    ops: Option<mpsc::Sender<Op>>,
    writer: Option<std::thread::JoinHandle<()>>,
    store_id: u64,
    path: PathBuf,
}

impl Drop for Store {
    /// Closes the database before returning, so the file can be opened again at once (a
    /// restart in the same process, a test): the writer finishes its last batch and exits.
    fn drop(&mut self) {
        self.ops.take();
        if let Some(w) = self.writer.take()
            && w.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "the outbox writer panicked");
        }
    }
}

impl Store {
    /// Opens (or creates) `<dir>/outbox.redb` and starts the writer thread.
    pub(crate) fn open(dir: &Path) -> Result<Store, DispatchError> {
        std::fs::create_dir_all(dir).map_err(|e| DispatchError::store(dir, e))?;
        let path = dir.join("outbox.redb");
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(DispatchError::store(
                    &path,
                    "in use by another switchyard process; stop it first, or use its HTTP API",
                ));
            }
            Err(e) => return Err(DispatchError::store(&path, e)),
        };
        restrict_permissions(&path);
        let store_id = init(&db).map_err(|e| DispatchError::store(&path, e))?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel::<Op>();
        let writer_db = db.clone();
        let handle = std::thread::Builder::new()
            .name(String::from("switchyard-outbox"))
            .spawn(move || writer(&writer_db, &rx))
            .map_err(|e| DispatchError::store(&path, e))?;
        Ok(Store {
            db,
            ops: Some(tx),
            writer: Some(handle),
            store_id,
            path,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A random id of this store, for idempotency keys that stay unique across stores.
    pub(crate) fn store_id(&self) -> u64 {
        self.store_id
    }

    /// Appends deliveries durably; returns their ids once the commit is on disk.
    pub(crate) async fn append(&self, records: Vec<Record>) -> Result<Vec<u64>, DispatchError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        self.send(Op::Append(records, tx))?;
        rx.await
            .map_err(|_| self.closed())?
            .map_err(|e| self.failed(e))
    }

    /// Records an attempt's outcome. For a give-up with a fallback, returns the new record.
    pub(crate) async fn finish(
        &self,
        id: u64,
        outcome: Outcome,
    ) -> Result<Option<Record>, DispatchError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Finish(id, outcome, tx))?;
        rx.await
            .map_err(|_| self.closed())?
            .map_err(|e| self.failed(e))
    }

    /// Moves a dead letter back to the queue, due now, with its attempts reset.
    pub(crate) async fn replay(
        &self,
        id: u64,
        now_ms: u64,
    ) -> Result<Option<Record>, DispatchError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Replay(id, now_ms, tx))?;
        rx.await
            .map_err(|_| self.closed())?
            .map_err(|e| self.failed(e))
    }

    /// Deletes one dead letter, or all of them; returns how many were deleted.
    pub(crate) async fn purge(&self, id: Option<u64>) -> Result<usize, DispatchError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Purge(id, tx))?;
        rx.await
            .map_err(|_| self.closed())?
            .map_err(|e| self.failed(e))
    }

    fn send(&self, op: Op) -> Result<(), DispatchError> {
        match &self.ops {
            Some(ops) => ops.send(op).map_err(|_| self.closed()),
            None => Err(self.closed()),
        }
    }

    fn closed(&self) -> DispatchError {
        DispatchError::store(&self.path, "the outbox writer has stopped")
    }

    fn failed(&self, e: String) -> DispatchError {
        DispatchError::store(&self.path, e)
    }

    /// Up to `limit` deliveries for `target` due at `now_ms`, skipping `skip` (in flight).
    pub(crate) fn due(
        &self,
        target: &str,
        now_ms: u64,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<Vec<Record>, DispatchError> {
        let read = || -> Result<Vec<Record>, redb::Error> {
            let txn = self.db.begin_read()?;
            let queue = txn.open_table(QUEUE)?;
            let deliveries = txn.open_table(DELIVERIES)?;
            let mut out = Vec::new();
            for entry in queue.range((target, 0u64, 0u64)..=(target, now_ms, u64::MAX))? {
                let (key, _) = entry?;
                let (_, _, id) = key.value();
                if skip(id) {
                    continue;
                }
                if let Some(bytes) = deliveries.get(id)?
                    && let Ok(mut r) = serde_json::from_slice::<Record>(bytes.value())
                {
                    r.id = id;
                    out.push(r);
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        };
        read().map_err(|e| DispatchError::store(&self.path, e))
    }

    /// When the next delivery for `target` is due (not in flight), if any.
    pub(crate) fn next_due(
        &self,
        target: &str,
        skip: &dyn Fn(u64) -> bool,
    ) -> Result<Option<u64>, DispatchError> {
        let read = || -> Result<Option<u64>, redb::Error> {
            let txn = self.db.begin_read()?;
            let queue = txn.open_table(QUEUE)?;
            for entry in queue.range((target, 0u64, 0u64)..=(target, u64::MAX, u64::MAX))? {
                let (key, _) = entry?;
                let (_, at, id) = key.value();
                if !skip(id) {
                    return Ok(Some(at));
                }
            }
            Ok(None)
        };
        read().map_err(|e| DispatchError::store(&self.path, e))
    }

    /// Every target with pending deliveries, for resuming at start.
    pub(crate) fn pending_targets(&self) -> Result<Vec<String>, DispatchError> {
        let read = || -> Result<Vec<String>, redb::Error> {
            let txn = self.db.begin_read()?;
            let queue = txn.open_table(QUEUE)?;
            let mut out: Vec<String> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                // Skip from one target to the next without reading its whole backlog.
                let start = match &cursor {
                    Some(t) => {
                        let mut next = t.clone();
                        next.push('\u{0}');
                        next
                    }
                    None => String::new(),
                };
                let mut range = queue.range((start.as_str(), 0u64, 0u64)..)?;
                match range.next() {
                    Some(entry) => {
                        let (key, _) = entry?;
                        let t = key.value().0.to_owned();
                        out.push(t.clone());
                        cursor = Some(t);
                    }
                    None => break,
                }
            }
            Ok(out)
        };
        read().map_err(|e| DispatchError::store(&self.path, e))
    }

    /// How many deliveries are pending and how many are dead.
    pub(crate) fn depth(&self) -> Result<(u64, u64), DispatchError> {
        let read = || -> Result<(u64, u64), redb::Error> {
            let txn = self.db.begin_read()?;
            Ok((
                txn.open_table(DELIVERIES)?.len()?,
                txn.open_table(DEAD)?.len()?,
            ))
        };
        read().map_err(|e| DispatchError::store(&self.path, e))
    }

    /// Dead letters, oldest first, at most `limit`.
    pub(crate) fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, DispatchError> {
        let read = || -> Result<Vec<DeadLetter>, redb::Error> {
            let txn = self.db.begin_read()?;
            let dead = txn.open_table(DEAD)?;
            let mut out = Vec::new();
            for entry in dead.iter()? {
                let (_, v) = entry?;
                if let Ok(d) = serde_json::from_slice::<DeadLetter>(v.value()) {
                    out.push(d);
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        };
        read().map_err(|e| DispatchError::store(&self.path, e))
    }

    /// One dead letter.
    pub(crate) fn dead_letter(&self, id: u64) -> Result<Option<DeadLetter>, DispatchError> {
        let read = || -> Result<Option<DeadLetter>, redb::Error> {
            let txn = self.db.begin_read()?;
            let dead = txn.open_table(DEAD)?;
            Ok(dead
                .get(id)?
                .and_then(|v| serde_json::from_slice(v.value()).ok()))
        };
        read().map_err(|e| DispatchError::store(&self.path, e))
    }
}

fn init(db: &Database) -> Result<u64, redb::Error> {
    let txn = db.begin_write()?;
    let store_id;
    {
        txn.open_table(DELIVERIES)?;
        txn.open_table(QUEUE)?;
        txn.open_table(DEAD)?;
        let mut meta = txn.open_table(META)?;
        let existing = meta.get("store_id")?.map(|v| v.value());
        store_id = match existing {
            Some(id) => id,
            None => {
                let id = fastrand::u64(..);
                meta.insert("store_id", id)?;
                id
            }
        };
    }
    txn.commit()?;
    Ok(store_id)
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
fn writer(db: &Arc<Database>, rx: &mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit(db, batch);
    }
}

type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

fn commit(db: &Arc<Database>, batch: Vec<Op>) {
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    let result = (|| -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        {
            let mut deliveries = txn.open_table(DELIVERIES)?;
            let mut queue = txn.open_table(QUEUE)?;
            let mut dead = txn.open_table(DEAD)?;
            let mut meta = txn.open_table(META)?;
            let mut next_id = meta.get("next_id")?.map_or(1, |v| v.value());
            let put = |deliveries: &mut redb::Table<u64, &[u8]>,
                       queue: &mut redb::Table<(&str, u64, u64), ()>,
                       r: &Record|
             -> Result<(), redb::Error> {
                let bytes = serde_json::to_vec(r).unwrap_or_default();
                deliveries.insert(r.id, bytes.as_slice())?;
                queue.insert((r.spec.target.as_str(), r.next_at_ms, r.id), ())?;
                Ok(())
            };
            for op in batch {
                match op {
                    Op::Append(records, tx) => {
                        let mut ids = Vec::with_capacity(records.len());
                        for mut r in records {
                            r.id = next_id;
                            next_id += 1;
                            put(&mut deliveries, &mut queue, &r)?;
                            ids.push(r.id);
                        }
                        replies.push(Box::new(move |res| {
                            let _ = tx.send(res.map(|()| ids));
                        }));
                    }
                    Op::Finish(id, outcome, tx) => {
                        let existing = deliveries
                            .remove(id)?
                            .and_then(|v| serde_json::from_slice::<Record>(v.value()).ok());
                        let mut created = None;
                        if let Some(mut r) = existing {
                            r.id = id;
                            queue.remove((r.spec.target.as_str(), r.next_at_ms, id))?;
                            match outcome {
                                Outcome::Delivered => {}
                                Outcome::Retry {
                                    attempts,
                                    next_at_ms,
                                    error,
                                } => {
                                    r.attempts = attempts;
                                    r.next_at_ms = next_at_ms;
                                    r.last_error = Some(error);
                                    put(&mut deliveries, &mut queue, &r)?;
                                }
                                Outcome::GiveUp {
                                    attempts,
                                    error,
                                    now_ms,
                                } => match r.spec.fallback.take() {
                                    Some(fb) => {
                                        let from = r.spec.target.clone();
                                        let nr = Record {
                                            id: next_id,
                                            spec: *fb,
                                            body: r.body,
                                            alert_id: r.alert_id,
                                            attempts: 0,
                                            next_at_ms: now_ms,
                                            last_error: Some(format!("{from}: {error}")),
                                            created_ms: r.created_ms,
                                            fallback_from: Some(from),
                                        };
                                        next_id += 1;
                                        put(&mut deliveries, &mut queue, &nr)?;
                                        created = Some(nr);
                                    }
                                    None => {
                                        let d = DeadLetter {
                                            id,
                                            target: r.spec.target.clone(),
                                            alert_id: r.alert_id,
                                            attempts,
                                            error,
                                            created_ms: r.created_ms,
                                            dead_ms: now_ms,
                                            body: r.body,
                                            spec: r.spec,
                                        };
                                        let bytes = serde_json::to_vec(&d).unwrap_or_default();
                                        dead.insert(id, bytes.as_slice())?;
                                    }
                                },
                            }
                        }
                        replies.push(Box::new(move |res| {
                            let _ = tx.send(res.map(|()| created));
                        }));
                    }
                    Op::Replay(id, now_ms, tx) => {
                        let d = dead
                            .remove(id)?
                            .and_then(|v| serde_json::from_slice::<DeadLetter>(v.value()).ok());
                        let mut created = None;
                        if let Some(d) = d {
                            let r = Record {
                                id,
                                spec: d.spec,
                                body: d.body,
                                alert_id: d.alert_id,
                                attempts: 0,
                                next_at_ms: now_ms,
                                last_error: Some(d.error),
                                created_ms: d.created_ms,
                                fallback_from: None,
                            };
                            put(&mut deliveries, &mut queue, &r)?;
                            created = Some(r);
                        }
                        replies.push(Box::new(move |res| {
                            let _ = tx.send(res.map(|()| created));
                        }));
                    }
                    Op::Purge(id, tx) => {
                        let n = match id {
                            Some(id) => usize::from(dead.remove(id)?.is_some()),
                            None => {
                                let n = dead.len()? as usize;
                                dead.retain(|_, _| false)?;
                                n
                            }
                        };
                        replies.push(Box::new(move |res| {
                            let _ = tx.send(res.map(|()| n));
                        }));
                    }
                }
            }
            meta.insert("next_id", next_id)?;
        }
        txn.commit()?;
        Ok(())
    })();
    let result = result.map_err(|e| e.to_string());
    if let Err(e) = &result {
        tracing::error!(error = %e, "outbox commit failed; the batch's submits are refused");
    }
    for reply in replies {
        reply(result.clone());
    }
}
