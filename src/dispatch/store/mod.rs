//! The outbox's interface, and what it stores: every delivery the router accepted, until
//! it is delivered or kept as a dead letter.
//!
//! [`Store`] is the seam between delivery policy (`dispatch/`: when to retry, where a
//! delivery goes when its target gives up) and where deliveries live. A store keeps, for
//! each accepted delivery, exactly one of: *fresh* (never attempted), *pending* (attempted,
//! due again at a time), *dead* (given up). It decides nothing: the router tells it what
//! an attempt came to ([`Finish`]), and it records that atomically.
//!
//! Implementations:
//! - [`sqlite::SqliteStore`]: the default; one SQLite file, durable (fsync) before a write
//!   returns, group commit on one writer thread.
//! - [`memory::MemoryStore`]: the same contract in memory, for tests and embedding;
//!   nothing survives the process.
//!
//! Every implementation passes the one conformance suite (`conformance_test.rs`); a new
//! one (the NATS JetStream backend) is added there with one line.
//!
//! A store must never: lose an accepted delivery without a trace (one it cannot read
//! becomes a dead letter holding its raw bytes), hand out an id twice, or answer a write
//! before it is as durable as the implementation promises.

mod entry_form;
mod gather;
mod ledger;
pub(crate) mod memory;
mod memory_page;
#[cfg(feature = "nats")]
pub(crate) mod nats;
#[cfg(feature = "nats")]
mod nats_coalesce;
#[cfg(feature = "nats")]
pub(crate) mod nats_queue;
#[cfg(feature = "nats")]
pub(crate) mod nats_silence;
#[cfg(feature = "nats")]
pub(crate) mod nats_state;
#[cfg(feature = "nats")]
pub(crate) mod nats_store;
pub(crate) mod sqlite;
mod sqlite_record;
mod sqlite_silence;
mod sqlite_state;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use super::DispatchError;
pub(crate) use crate::engine::Method;
use crate::state::{AlertFacts, RuleChoice, Verdict};

pub(crate) use ledger::Loss;

/// What a store's asynchronous operations return: a boxed future, so that the router can
/// hold any store as `dyn Store` (one allocation per operation, beside a commit's fsync).
pub(crate) type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What [`Store::inhibitors`] answers: per held firing, in order, the inhibit that keeps it
/// out and the `@id` of a source firing for it, or `None` (it goes).
pub(crate) type Inhibitors = Vec<Option<(String, String)>>;

/// Takes the deliveries a write has just made durable (ids set), in id order, before the
/// writer is answered: the router's in-memory queues (`lanes.rs`).
pub(crate) type FreshSink = Box<dyn Fn(Vec<Record>) + Send + Sync>;

/// How a request is made: fixed when the delivery is queued, so a reload that changes or
/// removes the target does not change what is already in the outbox.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Spec {
    pub(crate) target: String,
    pub(crate) url: String,
    pub(crate) method: Method,
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
    /// The body as it may be shown, when `body` holds a secret (`${env.NAME}` kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shown_body: Option<String>,
    pub(crate) alert_id: Option<String>,
    pub(crate) attempts: u32,
    pub(crate) next_at_ms: u64,
    pub(crate) last_error: Option<String>,
    pub(crate) created_ms: u64,
    /// The target this delivery fell back from, if any.
    pub(crate) fallback_from: Option<String>,
    /// A held firing that inhibits name as a target: checked when it is first due
    /// ([`Store::inhibitors`]); a source firing by then keeps it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) recheck: Option<Box<crate::state::Recheck>>,
}

#[cfg(test)]
impl Record {
    /// A new delivery to `target` (a local URL nobody listens on), for unit tests.
    pub(crate) fn for_test(target: &str, body: String) -> Record {
        Record {
            id: 0,
            spec: Spec {
                target: target.to_owned(),
                url: String::from("http://127.0.0.1:9/x"),
                method: Method::Post,
                headers: Vec::new(),
                timeout_ms: 1000,
                retries: 0,
                fallback: None,
            },
            body,
            shown_body: None,
            alert_id: None,
            attempts: 0,
            next_at_ms: 0,
            last_error: None,
            created_ms: 0,
            fallback_from: None,
            recheck: None,
        }
    }
}

/// A delivery that could not be made, kept for an operator.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
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
    /// The body that was to be sent, secrets included: kept for a replay, never shown.
    pub(crate) body: String,
    /// The body as it may be shown, when `body` holds a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shown_body: Option<String>,
    #[serde(rename = "spec")]
    pub(crate) spec: Spec,
    /// The stored delivery could not be read: `body` holds its raw bytes (which may hold
    /// secrets: they are never shown), and it cannot be sent again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) unreadable: bool,
}

/// Shows what an operator may see: the shown body, no header or URL (either may hold a
/// secret).
impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetter")
            .field("id", &self.id)
            .field("target", &self.target)
            .field("alert_id", &self.alert_id)
            .field("attempts", &self.attempts)
            .field("error", &self.error)
            .field("created_ms", &self.created_ms)
            .field("dead_ms", &self.dead_ms)
            .field("body", &self.body())
            .finish_non_exhaustive()
    }
}

impl DeadLetter {
    /// A dead letter for a stored delivery that could not be read: its raw bytes and the
    /// error, so that nothing accepted disappears without a trace.
    pub(crate) fn unreadable(
        id: u64,
        target: String,
        bytes: &[u8],
        error: &str,
        now_ms: u64,
    ) -> DeadLetter {
        DeadLetter {
            id,
            error: format!(
                "the stored delivery could not be read ({error}); its {} bytes are kept in this dead letter, and it cannot be sent again",
                bytes.len()
            ),
            alert_id: None,
            attempts: 0,
            created_ms: now_ms,
            dead_ms: now_ms,
            body: String::from_utf8_lossy(bytes).into_owned(),
            shown_body: Some(format!(
                "\"unreadable: {} bytes kept in the outbox (table dead, id {id})\"",
                bytes.len()
            )),
            spec: Spec {
                target: target.clone(),
                url: String::new(),
                method: Method::Post,
                headers: Vec::new(),
                timeout_ms: 0,
                retries: 0,
                fallback: None,
            },
            target,
            unreadable: true,
        }
    }

    /// Whether the stored delivery could not be read (see [`DeadLetter::error`]): it cannot
    /// be sent again.
    pub fn is_unreadable(&self) -> bool {
        self.unreadable
    }

    /// The body that was to be sent, as it may be shown: a `${env.NAME}` of the target's
    /// body template stays as written, never its value.
    pub fn body(&self) -> &str {
        self.shown_body.as_deref().unwrap_or(&self.body)
    }

    /// The HTTP method it was to be sent with: `POST` or `PUT`.
    pub fn method(&self) -> &'static str {
        self.spec.method.as_str()
    }
}

/// What an attempt came to, as the store records it: the router's policy (retry, fall
/// back, give up) is decided before this, in `dispatch/attempt.rs`.
///
/// Each applies only while the delivery is still fresh or pending: finishing one that is
/// gone (finished already, or never stored) writes nothing and answers `Ok(None)`.
#[derive(Debug)]
pub(crate) enum Finish {
    /// Delivered: forget it.
    Delivered(u64),
    /// Attempt again: the record (same id) with its attempts, next time and last error.
    Retry(Record),
    /// Replace delivery `from` with `to`, a delivery to the fallback target; the store
    /// gives `to` a new id and answers it.
    FallBack { from: u64, to: Record },
    /// Given up, no fallback: keep it as a dead letter (same id).
    Dead(DeadLetter),
    /// Held firing `id`, which an inhibit keeps out now that it is due: forget it, unsent,
    /// with what the step noted for it ([`crate::state::Recheck::forget`] at `now`).
    Inhibited {
        id: u64,
        check: Box<crate::state::Recheck>,
        now: u64,
    },
}

impl Finish {
    /// Whether the delivery is no longer pending for its target after this (delivered,
    /// dead, or handed to a fallback): every outcome but a retry.
    pub(crate) fn settles(&self) -> bool {
        !matches!(self, Finish::Retry(_))
    }

    /// The delivery this finishes.
    pub(crate) fn id(&self) -> u64 {
        match self {
            Finish::Delivered(id)
            | Finish::Inhibited { id, .. }
            | Finish::FallBack { from: id, .. } => *id,
            Finish::Retry(r) => r.id,
            Finish::Dead(d) => d.id,
        }
    }
}

impl DeadLetter {
    /// The delivery a replay queues: due at `now_ms`, attempts reset, the last error kept.
    /// Refused (with the reason) for a dead letter whose delivery could not be read.
    pub(crate) fn into_retry(self, now_ms: u64) -> Result<Record, String> {
        if self.unreadable {
            return Err(format!(
                "dead letter {} holds a delivery that could not be read: {}",
                self.id, self.error
            ));
        }
        Ok(Record {
            id: self.id,
            spec: self.spec,
            body: self.body,
            shown_body: self.shown_body,
            alert_id: self.alert_id,
            attempts: 0,
            next_at_ms: now_ms,
            last_error: Some(self.error),
            created_ms: self.created_ms,
            fallback_from: None,
            recheck: None,
        })
    }
}

/// One alert's deliveries, as a submit hands them to the store.
#[derive(Clone, Debug)]
pub(crate) struct Submission {
    /// Deliveries no clause has a say in: stored as they are.
    pub(crate) plain: Vec<Record>,
    /// Deliveries chosen by rules that remember: the store runs the step function on them
    /// (`state::step`) inside the write that stores what it keeps.
    pub(crate) stateful: Option<Box<Stateful>>,
}

/// What the step kept of one alert's records: deliveries due now, deliveries held for
/// later (`next_at_ms` set to when they are due), and held deliveries to cancel.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    /// Due now: stored as fresh.
    pub(crate) now: Vec<Record>,
    /// Due later: stored as pending, due at their `next_at_ms`.
    pub(crate) later: Vec<Record>,
    /// Held deliveries that are not to go out: (target, delivery).
    pub(crate) cancelled: Vec<(String, u64)>,
    /// Held deliveries that wait for a silence: (delivery, silence).
    pub(crate) silenced: Vec<(u64, u64)>,
}

/// What expiring a silence did: the silence as it is now, and the targets of the held
/// deliveries it released (due now), whose workers to tell.
#[derive(Clone, Debug)]
pub(crate) struct Expired {
    pub(crate) silence: crate::state::Silence,
    pub(crate) released: Vec<String>,
}

/// The step's sink for a store: ids from the store, records into [`Kept`].
struct StoreSink<'a> {
    ids: &'a mut dyn FnMut() -> u64,
    kept: &'a mut Kept,
}

impl crate::state::Sink<Record> for StoreSink<'_> {
    fn id(&mut self) -> u64 {
        (self.ids)()
    }

    fn deliver(&mut self, _target: &str, mut r: Record, id: u64, at: Option<u64>) {
        r.id = id;
        match at {
            Some(at) => {
                r.next_at_ms = at;
                self.kept.later.push(r);
            }
            None => self.kept.now.push(r),
        }
    }

    fn cancel(&mut self, target: &str, id: u64) {
        // Held in this very write: it never reaches the outbox.
        if let Some(i) = self.kept.later.iter().position(|r| r.id == id) {
            self.kept.later.remove(i);
        } else {
            self.kept.cancelled.push((target.to_owned(), id));
        }
    }

    fn held_by(&mut self, delivery: u64, silence: u64) {
        self.kept.silenced.push((delivery, silence));
    }

    fn recheck(&mut self, delivery: u64, check: crate::state::Recheck) {
        if let Some(r) = self.kept.later.iter_mut().find(|r| r.id == delivery) {
            r.recheck = Some(Box::new(check));
        }
    }
}

/// Runs the step on one alert's records: what it keeps goes into `kept`, with ids from
/// `ids`. What every store runs inside the write that stores `kept`.
pub(crate) fn run_step(
    state: &mut dyn crate::state::State,
    st: Stateful,
    ids: &mut dyn FnMut() -> u64,
    kept: &mut Kept,
) -> Vec<Verdict> {
    crate::state::step(
        state,
        &st.facts,
        st.choices,
        st.probes,
        st.now,
        &mut StoreSink { ids, kept },
    )
}

/// Renders a group's notification as a delivery, or `None` when it cannot go (its target
/// is gone from the rules).
pub(crate) type GroupRender = Box<dyn FnMut(&crate::state::GroupNote<'_>) -> Option<Record> + Send>;

/// What a flush of the groups did: the notifications stored (due now), their targets, and
/// when the next group is due.
#[derive(Debug, Default)]
pub(crate) struct Flushed {
    pub(crate) sent: usize,
    pub(crate) targets: Vec<String>,
    pub(crate) next: Option<u64>,
}

/// Flushes the groups due by `now` into `kept.now`, with ids from `ids`. What every store
/// runs inside the write that stores the notifications.
pub(crate) fn run_flush(
    state: &mut dyn crate::state::State,
    now: u64,
    ids: &mut dyn FnMut() -> u64,
    kept: &mut Kept,
    render: &mut GroupRender,
) -> usize {
    crate::state::flush(state, now, &mut StoreSink { ids, kept }, &mut **render)
}

/// Runs the step for a preview: nothing kept, ids 0.
pub(crate) fn preview_one(state: &mut dyn crate::state::State, st: Stateful) -> Vec<Verdict> {
    run_step(state, st, &mut || 0, &mut Kept::default())
}

/// The step's input for one alert, with stored records as payloads.
#[derive(Clone, Debug)]
pub(crate) struct Stateful {
    pub(crate) facts: AlertFacts,
    /// The submit's time: the step's `now`.
    pub(crate) now: u64,
    pub(crate) choices: Vec<RuleChoice<Record>>,
    pub(crate) probes: Vec<RuleChoice<Record>>,
}

/// What a store did with one [`Submission`].
#[derive(Debug, Default)]
pub(crate) struct Stored {
    /// The ids of the deliveries stored: the plain ones, then those the step kept.
    pub(crate) ids: Vec<u64>,
    /// The step's verdicts (empty for a plain submission).
    pub(crate) verdicts: Vec<Verdict>,
    /// The targets of the deliveries stored, each once: whose workers to wake.
    pub(crate) targets: Vec<String>,
    /// The targets of deliveries stored for later (held), each once: whose workers to tell
    /// to read the table of due deliveries again.
    pub(crate) later: Vec<String>,
}

impl Stored {
    /// Notes a delivery stored for later.
    pub(crate) fn push_later(&mut self, r: &Record) {
        self.ids.push(r.id);
        if !self.later.contains(&r.spec.target) {
            self.later.push(r.spec.target.clone());
        }
    }

    /// Notes a stored delivery.
    pub(crate) fn push(&mut self, r: &Record) {
        self.ids.push(r.id);
        if !self.targets.contains(&r.spec.target) {
            self.targets.push(r.spec.target.clone());
        }
    }
}

/// How many deliveries a store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Depth {
    /// Fresh and pending (in flight included).
    pub(crate) pending: u64,
    /// Dead letters.
    pub(crate) dead: u64,
}

/// What waits in a store, for an operator (the console's Deliveries page).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxView {
    /// Per target with anything waiting, by name.
    pub targets: Vec<TargetDepth>,
    /// Deliveries due later (a retry, or one held), soonest first, at most the limit asked.
    pub waiting: Vec<Waiting>,
}

/// How many deliveries wait for one target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetDepth {
    /// The target.
    pub target: String,
    /// Never attempted, due now.
    pub fresh: u64,
    /// Due later: retries, and deliveries held (a silence, a delay).
    pub waiting: u64,
    /// Being sent now by this process (filled in by the router, not the store).
    pub in_flight: u64,
    /// How many this process may send at once now: the target's adaptive limit, or the
    /// most when it does not adapt; 0 while no worker has started for it (filled in by
    /// the router).
    pub in_flight_limit: u64,
}

/// One delivery due later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// The delivery's id.
    pub id: u64,
    /// Its target.
    pub target: String,
    /// The alert's `@id`, if it has one.
    pub alert_id: Option<String>,
    /// Attempts made (0: held, never attempted).
    pub attempts: u32,
    /// When it is due, in ms since the epoch.
    pub next_at_ms: u64,
    /// What the last attempt came to.
    pub last_error: Option<String>,
}

impl Waiting {
    pub(crate) fn of(r: &Record) -> Waiting {
        Waiting {
            id: r.id,
            target: r.spec.target.clone(),
            alert_id: r.alert_id.clone(),
            attempts: r.attempts,
            next_at_ms: r.next_at_ms,
            last_error: r.last_error.clone(),
        }
    }
}

/// Adds one delivery to a view's per-target counts (`fresh` or `waiting`).
pub(crate) fn count_into(targets: &mut Vec<TargetDepth>, target: &str, fresh: bool, n: u64) {
    let at = match targets.binary_search_by(|t| t.target.as_str().cmp(target)) {
        Ok(at) => at,
        Err(at) => {
            targets.insert(
                at,
                TargetDepth {
                    target: target.to_owned(),
                    ..TargetDepth::default()
                },
            );
            at
        }
    };
    if fresh {
        targets[at].fresh += n;
    } else {
        targets[at].waiting += n;
    }
}

/// What a store knows of its own state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Health {
    /// Whether the last write succeeded: `false` while nothing can be written (a full
    /// disk), until a write succeeds again.
    pub(crate) writable: bool,
    /// Stored deliveries found unreadable since the store was opened (each became a dead
    /// letter).
    pub(crate) unreadable: u64,
    /// Delivery ids the store had lost when it was opened, and the loss was accepted.
    pub(crate) lost: u64,
}

/// Where deliveries live between a submit and their end. See the module's docs for the
/// contract; `conformance_test.rs` is its executable form.
///
/// Writes are asynchronous and return once durable. The worker's reads (`due`,
/// `next_due`, `fresh_records`, ...) and the operator's listings (dead letters, state,
/// silences) are asynchronous too, since a networked store reads over the network; the
/// counts (`depth`, `state_entries`) and `health` answer from the store's local view at
/// once (for metrics).
pub(crate) trait Store: Send + Sync + 'static {
    /// A random id of this store, fixed for its life on disk: idempotency keys are
    /// `<store id>-<delivery id>`, unique across stores.
    fn store_id(&self) -> u64;

    /// Where the store is, for messages: a file, or `memory`.
    fn location(&self) -> &Path;

    /// Whether other processes (replicas) share this store's queues and state (NATS):
    /// a new delivery is then taken from its queue through [`Store::due`] (another replica
    /// may take it), never handed to a [`FreshSink`]; and what another replica changes
    /// (silences, targets with work) is read again from time to time.
    fn shared_queues(&self) -> bool {
        false
    }

    /// On a store shared by replicas: told when a silence changed (added or expired through
    /// any replica), so that the router reads the silences again at once.
    fn silence_changes(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// Gives back what this process took from shared queues and did not finish, so that
    /// another replica takes it at once: called when the router stops.
    fn release(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Registers the store's own metrics, if it has any.
    fn register(&self, _registry: &mut prometheus_client::registry::Registry) {}

    /// Stores each alert's new deliveries (fresh), running the step function on those
    /// chosen by rules that remember, with its state written in the same write; answers
    /// once all is durable, one [`Stored`] per submission. The [`FreshSink`] got the
    /// deliveries first.
    fn submit(&self, batch: Vec<Submission>)
    -> StoreFuture<'_, Result<Vec<Stored>, DispatchError>>;

    /// Stores plain deliveries ([`Store::submit`] without state) and returns their ids.
    #[cfg(test)]
    fn append(&self, records: Vec<Record>) -> StoreFuture<'_, Result<Vec<u64>, DispatchError>> {
        let batch = vec![Submission {
            plain: records,
            stateful: None,
        }];
        Box::pin(async move {
            let mut stored = self.submit(batch).await?;
            Ok(stored.pop().map(|s| s.ids).unwrap_or_default())
        })
    }

    /// What [`Store::submit`] would answer for `batch` now, without storing anything: the
    /// step runs on the store's state and keeps its writes to itself. A verdict that would
    /// deliver carries delivery id 0. For `POST /api/explain`.
    fn preview(
        &self,
        batch: Vec<Stateful>,
    ) -> StoreFuture<'_, Result<Vec<Vec<Verdict>>, DispatchError>>;

    /// Up to `limit` live state entries (not expired at `now`), for an operator: the rule,
    /// the clause, the target and what the entry holds; never the key's values.
    fn state_list(
        &self,
        now: u64,
        limit: usize,
    ) -> StoreFuture<'_, Result<Vec<crate::state::Listed>, DispatchError>>;

    /// How many state entries the store holds (`dedup`, `resolve once`, `at most`),
    /// expired ones not yet collected included.
    fn state_entries(&self) -> Result<u64, DispatchError>;

    /// For held firings now due (each [`Record::recheck`]), in order: the inhibit that keeps
    /// each out at `now` and the `@id` of a source firing for it, or `None` (it goes).
    /// A read of the rules' memory; the worker then records [`Finish::Inhibited`].
    fn inhibitors(
        &self,
        checks: Vec<crate::state::Recheck>,
        now: u64,
    ) -> StoreFuture<'_, Result<Inhibitors, DispatchError>>;

    /// Records what attempts came to, atomically as one write where the store can; one
    /// result per item, in order: a fallback's new delivery for [`Finish::FallBack`]. A
    /// store may let the write wait a few milliseconds for others (SQLite: up to 1 ms, so
    /// that every target's outcomes share a commit); the worker goes on sending meanwhile.
    fn finish(
        &self,
        items: Vec<Finish>,
    ) -> StoreFuture<'_, Vec<Result<Option<Record>, DispatchError>>>;

    /// Moves dead letter `id` back to pending, due at `now_ms` with its attempts reset
    /// ([`DeadLetter::into_retry`]); `Ok(None)` if there is no such dead letter, an error
    /// of kind `Refused` if it cannot be sent again.
    fn replay(
        &self,
        id: u64,
        now_ms: u64,
    ) -> StoreFuture<'_, Result<Option<Record>, DispatchError>>;

    /// Deletes dead letter `id`, or every dead letter; returns how many.
    fn purge(&self, id: Option<u64>) -> StoreFuture<'_, Result<usize, DispatchError>>;

    /// Up to `limit` pending deliveries for `target` due at `now_ms`, by due time then id,
    /// skipping those `skip` names (in flight). Fresh ones are not read back here: they
    /// reach the router through the [`FreshSink`] and [`Store::fresh_pending`].
    fn due<'a>(
        &'a self,
        target: &'a str,
        now_ms: u64,
        limit: usize,
        skip: &'a (dyn Fn(u64) -> bool + Sync),
    ) -> StoreFuture<'a, Result<Vec<Record>, DispatchError>>;

    /// When the next pending delivery for `target` that `skip` does not name is due.
    fn next_due<'a>(
        &'a self,
        target: &'a str,
        skip: &'a (dyn Fn(u64) -> bool + Sync),
    ) -> StoreFuture<'a, Result<Option<u64>, DispatchError>>;

    /// Fresh deliveries by id, in the order asked; an id no longer fresh is left out.
    fn fresh_records<'a>(
        &'a self,
        ids: &'a [u64],
    ) -> StoreFuture<'a, Result<Vec<Record>, DispatchError>>;

    /// Calls `each` with every fresh delivery's id and target, oldest first: what a start
    /// hands to the in-memory queues.
    fn fresh_pending<'a>(
        &'a self,
        each: &'a mut (dyn FnMut(u64, &str) + Send),
    ) -> StoreFuture<'a, Result<(), DispatchError>>;

    /// Every target with pending (attempted) deliveries, for resuming at start.
    fn pending_targets(&self) -> StoreFuture<'_, Result<Vec<String>, DispatchError>>;

    /// Every pending delivery (fresh, or waiting for a retry) to `target` whose alert has an
    /// `@id`, as `(delivery id, alert id)` in delivery-id order: what a worker reads once at
    /// start to send one alert's deliveries in the order they were accepted
    /// (`dispatch/order.rs`). Left out: an unreadable record (it becomes a dead letter when
    /// it is reached, and never holds anything back), and a held delivery not due by
    /// `now_ms` (never attempted, due later: it takes its place in the order when due, and
    /// may be cancelled before).
    fn pending_alerts<'a>(
        &'a self,
        target: &'a str,
        now_ms: u64,
    ) -> StoreFuture<'a, Result<Vec<(u64, String)>, DispatchError>>;

    /// How many deliveries are fresh or pending, and how many are dead.
    fn depth(&self) -> Result<Depth, DispatchError>;

    /// What waits, per target, and the `limit` deliveries due soonest after a retry or a
    /// hold, for an operator.
    fn outbox_view(&self, limit: usize) -> StoreFuture<'_, Result<OutboxView, DispatchError>>;

    /// [`Store::depth`] counted now, where `depth` answers from a view refreshed in the
    /// background (the conformance suite's).
    #[cfg(test)]
    fn depth_now(&self) -> StoreFuture<'_, Result<Depth, DispatchError>> {
        Box::pin(std::future::ready(self.depth()))
    }

    /// Dead letters, oldest first, at most `limit`. One that cannot be read is listed as
    /// unreadable, never skipped.
    fn dead_letters(&self, limit: usize)
    -> StoreFuture<'_, Result<Vec<DeadLetter>, DispatchError>>;

    /// One dead letter (the conformance suite's; the offline `Outbox` reads SQLite
    /// directly).
    #[cfg(test)]
    fn dead_letter(&self, id: u64) -> StoreFuture<'_, Result<Option<DeadLetter>, DispatchError>>;

    /// What the store knows of its own state.
    fn health(&self) -> Health;

    /// Flushes every group due by `now` (`state::flush`): the notifications `render` makes
    /// are stored, due now, in the same write as the groups' new state; answers them and
    /// when the next group is due.
    fn flush_groups(
        &self,
        now: u64,
        render: GroupRender,
    ) -> StoreFuture<'_, Result<Flushed, DispatchError>>;

    /// Every stored silence, in force or ended, by id.
    fn silences(&self) -> StoreFuture<'_, Result<Vec<crate::state::Silence>, DispatchError>>;

    /// Stores a new silence (its id is given here, from 1) and answers it as stored, once
    /// durable. Past [`crate::state::MAX_SILENCES`] the silences that ended longest ago are
    /// forgotten.
    fn add_silence(
        &self,
        silence: crate::state::Silence,
        now: u64,
    ) -> StoreFuture<'_, Result<crate::state::Silence, DispatchError>>;

    /// Ends silence `id` at `now` if it has not ended, and makes every delivery it holds
    /// due at `now`, in one write; `Ok(None)` if there is no such silence.
    fn expire_silence(
        &self,
        id: u64,
        now: u64,
    ) -> StoreFuture<'_, Result<Option<Expired>, DispatchError>>;
}

#[cfg(test)]
#[path = "conformance_test.rs"]
pub(crate) mod conformance;
