//! Delivery that never loses an alert: a [`Router`] evaluates each alert, writes every
//! delivery to a durable outbox before it answers, and sends them with retries.
//!
//! - `submit` returns only after the deliveries are committed to disk (fsync); concurrent
//!   submits share one commit (group commit).
//! - Each target has its own worker and in-flight limit. A new delivery reaches the worker
//!   in memory once it is committed (`lanes.rs`, within a memory budget; by id beyond it);
//!   retries are read back from the outbox when due. The outbox, not memory, holds a dead
//!   or slow target's backlog.
//! - 2xx is success. Connection errors, timeouts, 408, 429 and 5xx are retried with
//!   exponential backoff and full jitter (`Retry-After` honoured); other 4xx are final.
//!   A delivery out of retries goes to the target's `fallback`, else becomes a dead letter.
//! - Every request carries `Idempotency-Key`, the same on every attempt of a delivery.

mod gather;
mod lanes;
mod ledger;
mod metrics;
mod store;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use crate::alert::Alert;
use crate::engine::{DecisionSummary, RuleSet, Target};
use lanes::Lanes;
pub use store::DeadLetter;
use store::{AttemptOutcome, Record, Spec, Store};

/// Why a router could not start or accept an alert.
#[derive(Debug)]
pub struct DispatchError {
    kind: DispatchErrorKind,
    what: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
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
        }
    }
}

impl DispatchError {
    fn store(
        kind: DispatchErrorKind,
        path: &Path,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> DispatchError {
        DispatchError {
            kind,
            what: format!("outbox `{}`", path.display()),
            source: Some(e.into()),
        }
    }

    /// An SQLite error on the outbox at `path`, of the kind its code says.
    fn sqlite(path: &Path, e: rusqlite::Error) -> DispatchError {
        DispatchError::store(DispatchErrorKind::of_sqlite(&e), path, e)
    }

    fn other(kind: DispatchErrorKind, what: impl Into<String>) -> DispatchError {
        DispatchError {
            kind,
            what: what.into(),
            source: None,
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> DispatchErrorKind {
        self.kind
    }
}

impl fmt::Display for DispatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(s) => write!(f, "{}: {s}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

impl std::error::Error for DispatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The retry schedule: attempt n waits a random time in `[0, min(cap, base * 2^n))`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// The first retry's upper bound (default 500 ms).
    pub base: Duration,
    /// The largest wait (default 5 min); also caps a `Retry-After`.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX));
        let bound = exp.min(self.cap);
        let jitter = Duration::from_millis(fastrand::u64(0..=bound.as_millis() as u64));
        match retry_after {
            Some(ra) => ra.min(self.cap).max(jitter),
            None => jitter,
        }
    }
}

/// Builds a [`Router`].
pub struct RouterBuilder {
    rules: Option<RuleSet>,
    data_dir: PathBuf,
    in_flight: usize,
    backoff: Backoff,
    connect_timeout: Duration,
    hold: bool,
    queue_memory: usize,
    accept_loss: bool,
}

impl RouterBuilder {
    /// Open the outbox even when its ledger shows that the database lost committed
    /// deliveries (a damaged write-ahead log): the loss is logged as an error and counted
    /// (`switchyard_outbox_lost_deliveries`). Without it (the default), opening fails and
    /// says what was lost.
    pub fn accept_outbox_loss(mut self, accept: bool) -> Self {
        self.accept_loss = accept;
        self
    }

    /// Hold every delivery in the outbox instead of sending it (default false): alerts are
    /// accepted, routed and stored durably, and go out when a router without `hold` opens
    /// the same outbox. For a downstream in maintenance, and for measuring ingest alone.
    pub fn hold_deliveries(mut self, hold: bool) -> Self {
        self.hold = hold;
        self
    }

    /// The rule set to route with.
    pub fn rules(mut self, rules: RuleSet) -> Self {
        self.rules = Some(rules);
        self
    }

    /// The folder of the outbox (`outbox.sqlite3`); created if missing. Default `./data`.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = dir.into();
        self
    }

    /// How many bytes of new deliveries are kept in memory for their targets' workers
    /// (default 64 MiB, all targets together). Every delivery is on disk before it is
    /// queued; beyond the budget a queued delivery keeps only its id (16 bytes), and its
    /// worker reads it back from the outbox when its turn comes.
    pub fn queue_memory(mut self, bytes: usize) -> Self {
        self.queue_memory = bytes;
        self
    }

    /// Requests in flight per target (default 32).
    pub fn in_flight_per_target(mut self, n: usize) -> Self {
        self.in_flight = n.max(1);
        self
    }

    /// The retry schedule.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Opens the outbox, builds the HTTP client, and resumes every pending delivery.
    pub async fn build(self) -> Result<Router, DispatchError> {
        let rules = self.rules.ok_or_else(|| {
            DispatchError::other(DispatchErrorKind::Config, "a router needs a rule set")
        })?;
        let dir = self.data_dir.clone();
        let lanes = Arc::new(Lanes::new(self.queue_memory));
        // Held deliveries are not queued: they stay in the outbox for a router without hold.
        let sink: Option<store::FreshSink> = if self.hold {
            None
        } else {
            let lanes = lanes.clone();
            Some(Box::new(move |records| lanes.push(records)))
        };
        let loss = if self.accept_loss {
            ledger::Loss::Accept
        } else {
            ledger::Loss::Refuse
        };
        let store = tokio::task::spawn_blocking(move || Store::open_with(&dir, sink, loss))
            .await
            .map_err(|e| {
                DispatchError::other(
                    DispatchErrorKind::Io,
                    format!("cannot open the outbox: {e}"),
                )
            })??;
        let client = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            // A target's URL is the rules author's; a receiver must not move it. Followed
            // redirects would carry secret headers to another host, and turn a POST into a
            // bodiless GET whose 200 looks delivered. A 3xx is a failure (see `attempt`).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DispatchError {
                kind: DispatchErrorKind::Config,
                what: String::from("cannot build the HTTP client"),
                source: Some(Box::new(e)),
            })?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let inner = Arc::new(RouterCore {
            rules: arc_swap::ArcSwap::from_pointee(rules),
            store,
            lanes,
            client,
            in_flight: self.in_flight,
            backoff: self.backoff,
            hold: self.hold,
            workers: Mutex::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
            shutdown: shutdown_rx,
            shutdown_tx,
            stats: Stats::default(),
            metrics: metrics::Metrics::default(),
        });
        let router = Router { inner };
        if !router.inner.hold {
            let lanes = &router.inner.lanes;
            router
                .inner
                .store
                .fresh_pending(&mut |id, target| lanes.push_id(id, target))?;
            // Before any submit, so these are exactly the targets with fresh deliveries.
            for target in lanes.targets() {
                router.inner.wake(&target);
            }
        }
        for target in router.inner.store.pending_targets()? {
            router.inner.wake_table(&target);
        }
        Ok(router)
    }
}

/// Requests in flight per target, by default (`delivery.in_flight_per_target`).
pub(crate) const DEFAULT_IN_FLIGHT: usize = 32;

/// Bytes of new deliveries kept in memory for sending, by default
/// (`delivery.queue_memory_mb`).
pub(crate) const DEFAULT_QUEUE_MEMORY: usize = 64 << 20;

/// Counters of what the router did, for metrics.
#[derive(Default, Debug)]
struct Stats {
    submitted: AtomicU64,
    unrouted: AtomicU64,
    dropped: AtomicU64,
    delivered: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    fell_back: AtomicU64,
}

/// A snapshot of the router's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Alerts submitted.
    pub submitted: u64,
    /// Alerts no rule matched.
    pub unrouted: u64,
    /// Alerts a rule's `drop` stopped (deliveries chosen before the `drop` still go out).
    pub dropped: u64,
    /// Deliveries a target accepted (2xx).
    pub delivered: u64,
    /// Attempts that failed and were scheduled again.
    pub retried: u64,
    /// Deliveries that became dead letters.
    pub dead: u64,
    /// Deliveries handed to a fallback target.
    pub fell_back: u64,
    /// Deliveries waiting in the outbox (in flight included).
    pub pending: u64,
    /// Dead letters kept.
    pub dead_letters: u64,
}

struct RouterCore {
    /// Swapped whole on reload: an alert is evaluated against exactly one complete set.
    rules: arc_swap::ArcSwap<RuleSet>,
    store: Store,
    /// New deliveries, per target, handed over by the outbox writer.
    lanes: Arc<Lanes>,
    client: reqwest::Client,
    in_flight: usize,
    backoff: Backoff,
    /// Deliveries are stored, not sent ([`RouterBuilder::hold_deliveries`]).
    hold: bool,
    workers: Mutex<HashMap<String, Arc<Signal>>>,
    tasks: Mutex<JoinSet<()>>,
    shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
    stats: Stats,
    metrics: metrics::Metrics,
}

/// What `submit` did with one alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The decision the rules made.
    pub decision: DecisionSummary,
    /// The ids of the deliveries now in the outbox, one per target.
    pub deliveries: Vec<u64>,
}

/// Routes alerts and delivers them durably. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<RouterCore>,
}

impl Router {
    /// A builder with the defaults: data in `./data`, 32 requests in flight per target,
    /// retries waiting up to 500 ms * 2^attempt (full jitter), at most 5 minutes.
    pub fn builder() -> RouterBuilder {
        RouterBuilder {
            rules: None,
            data_dir: PathBuf::from("data"),
            in_flight: DEFAULT_IN_FLIGHT,
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(5),
            hold: false,
            queue_memory: DEFAULT_QUEUE_MEMORY,
            accept_loss: false,
        }
    }

    /// The rule set in use.
    pub fn rules(&self) -> RuleSet {
        RuleSet::clone(&self.inner.rules.load())
    }

    /// Routes with a new rule set from now on. Deliveries already in the outbox keep the
    /// target definition they were queued with.
    pub fn set_rules(&self, rules: RuleSet) {
        self.inner.rules.store(Arc::new(rules));
    }

    /// Evaluates an alert and writes its deliveries to the outbox. Returns once they are
    /// on disk: from then on each is delivered, or kept as a dead letter.
    pub async fn submit(&self, alert: &Alert) -> Result<Submitted, DispatchError> {
        let mut batch = self.submit_many(std::slice::from_ref(alert)).await?;
        batch
            .pop()
            .ok_or_else(|| DispatchError::other(DispatchErrorKind::Io, "no result"))
    }

    /// [`Router::submit`] for several alerts, in one commit.
    pub async fn submit_many(&self, alerts: &[Alert]) -> Result<Vec<Submitted>, DispatchError> {
        let started = std::time::Instant::now();
        let rules = self.rules();
        let now = now_ms();
        let mut records = Vec::new();
        let mut per_alert = Vec::with_capacity(alerts.len());
        for alert in alerts {
            let d = rules.evaluate(alert);
            let summary = d.summary();
            let n = d.targets().count();
            for t in d.targets() {
                records.push(Record {
                    id: 0,
                    spec: spec(&rules, t, 0),
                    body: t.render_body_text(alert),
                    shown_body: t.render_body_shown(alert),
                    alert_id: alert.id().map(str::to_owned),
                    attempts: 0,
                    next_at_ms: now,
                    last_error: None,
                    created_ms: now,
                    fallback_from: None,
                });
            }
            per_alert.push((summary, n));
        }
        let targets: HashSet<String> = records.iter().map(|r| r.spec.target.clone()).collect();
        let ids = self.inner.store.append(records).await?;
        // Counted once the deliveries are on disk: an alert refused with 503 is not counted.
        for (alert, (summary, _)) in alerts.iter().zip(&per_alert) {
            self.inner.stats.submitted.fetch_add(1, Ordering::Relaxed);
            self.inner.metrics.submitted.inc();
            if summary.unrouted {
                self.inner.stats.unrouted.fetch_add(1, Ordering::Relaxed);
                self.inner.metrics.unrouted.inc();
                tracing::info!(alert_id = alert.id().unwrap_or("-"), source = %alert.source(), "unrouted: no rule matched");
            }
            if summary.dropped {
                self.inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.inner.metrics.dropped.inc();
                tracing::debug!(alert_id = alert.id().unwrap_or("-"), source = %alert.source(), rules = ?summary.rules, "dropped by a rule");
            }
        }
        self.inner
            .metrics
            .submit_seconds
            .observe(started.elapsed().as_secs_f64());
        for t in targets {
            self.inner.wake(&t);
        }
        let mut ids = ids.into_iter();
        Ok(per_alert
            .into_iter()
            .map(|(decision, n)| Submitted {
                decision,
                deliveries: ids.by_ref().take(n).collect(),
            })
            .collect())
    }

    /// The router's counters and the outbox's depth.
    pub fn stats(&self) -> RouterStats {
        let s = &self.inner.stats;
        let (pending, dead_letters) = self.inner.store.depth().unwrap_or((0, 0));
        RouterStats {
            submitted: s.submitted.load(Ordering::Relaxed),
            unrouted: s.unrouted.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            delivered: s.delivered.load(Ordering::Relaxed),
            retried: s.retried.load(Ordering::Relaxed),
            dead: s.dead.load(Ordering::Relaxed),
            fell_back: s.fell_back.load(Ordering::Relaxed),
            pending,
            dead_letters,
        }
    }

    /// Registers the router's metrics (`switchyard_deliveries_total{target,outcome}`,
    /// attempt latency by target, outbox depth, dead letters, ...) into a registry that a
    /// server exports. Call [`Router::refresh_gauges`] before each scrape.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
    }

    /// Reads the outbox depth and dead-letter count into their gauges.
    pub fn refresh_gauges(&self) {
        self.inner
            .metrics
            .lost
            .set(i64::try_from(self.inner.store.lost_count()).unwrap_or(i64::MAX));
        self.inner
            .metrics
            .unreadable
            .set(i64::try_from(self.inner.store.unreadable_count()).unwrap_or(i64::MAX));
        if let Ok((pending, dead)) = self.inner.store.depth() {
            self.inner
                .metrics
                .pending
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
            self.inner
                .metrics
                .dead_letters
                .set(i64::try_from(dead).unwrap_or(i64::MAX));
        }
    }

    /// The router's metrics in the Prometheus text format (OpenMetrics).
    pub fn metrics_text(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        self.register_metrics(&mut registry);
        self.refresh_gauges();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            tracing::error!("cannot encode the metrics");
        }
        out
    }

    /// Dead letters, oldest first.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, DispatchError> {
        self.inner.store.dead_letters(limit)
    }

    /// Sends a dead letter again, with its attempts reset. False if there is no such id.
    pub async fn retry_dead_letter(&self, id: u64) -> Result<bool, DispatchError> {
        let r = self.inner.store.replay(id, now_ms()).await?;
        if let Some(r) = &r {
            self.inner.wake_table(&r.spec.target);
        }
        Ok(r.is_some())
    }

    /// Deletes one dead letter, or all with `None`; returns how many.
    pub async fn purge_dead_letters(&self, id: Option<u64>) -> Result<usize, DispatchError> {
        self.inner.store.purge(id).await
    }

    /// Stops sending: requests in flight get `grace` to finish; everything not delivered
    /// stays in the outbox for the next start.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.inner.shutdown_tx.send(true);
        let mut tasks = match self.inner.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "shutdown grace period over; undelivered deliveries stay in the outbox"
            );
            tasks.abort_all();
            // Wait until the aborted workers are dropped: each holds the router's insides,
            // and the outbox closes (and its lock is free for the next router) only when the
            // last of them is gone. Aborted tasks end at their next await point.
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Whether the outbox takes writes: `false` from a failed commit (a full disk) until
    /// one succeeds again. `/readyz` answers 503 meanwhile.
    pub fn outbox_writable(&self) -> bool {
        self.inner.store.writable()
    }

    /// Where the outbox file is.
    pub fn outbox_path(&self) -> &Path {
        self.inner.store.path()
    }
}

/// A target's request definition, with its fallback chain resolved now (cycles cut).
fn spec(rules: &RuleSet, t: &Target, depth: usize) -> Spec {
    let fallback = t
        .fallback
        .as_deref()
        .filter(|_| depth < 8)
        .and_then(|name| rules.target(name))
        .map(|fb| Box::new(spec(rules, fb, depth + 1)));
    Spec {
        target: t.name().to_owned(),
        url: t.url(),
        method: t.method().to_owned(),
        headers: t.headers().map(|(k, v)| (k.to_owned(), v)).collect(),
        timeout_ms: t.timeout().as_millis() as u64,
        retries: t.retries(),
        fallback,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How a worker is woken.
#[derive(Default)]
struct Signal {
    notify: Notify,
    /// Set when the outbox's table of attempted deliveries got one for this target (a
    /// fallback, a replay): the worker reads the table again.
    table: AtomicBool,
}

impl RouterCore {
    /// Wakes the target's worker for new deliveries in its queue, starting it if needed.
    fn wake(self: &Arc<Self>, target: &str) {
        self.signal(target, false);
    }

    /// Wakes the target's worker for a delivery in the outbox's table of attempted ones.
    fn wake_table(self: &Arc<Self>, target: &str) {
        self.signal(target, true);
    }

    fn signal(self: &Arc<Self>, target: &str, table: bool) {
        if self.hold {
            return;
        }
        let signal = {
            let mut workers = match self.workers.lock() {
                Ok(w) => w,
                Err(p) => p.into_inner(),
            };
            if let Some(n) = workers.get(target) {
                n.clone()
            } else {
                let n = Arc::new(Signal::default());
                workers.insert(target.to_owned(), n.clone());
                let inner = self.clone();
                let (t, n2) = (target.to_owned(), n.clone());
                if let Ok(mut tasks) = self.tasks.lock() {
                    tasks.spawn(async move { worker(inner, t, n2).await });
                }
                n
            }
        };
        if table {
            signal.table.store(true, Ordering::Release);
        }
        signal.notify.notify_one();
    }
}

/// One target's worker: takes its new deliveries from its in-memory queue and its due
/// retries from the outbox, and sends them, at most `in_flight` at a time.
async fn worker(inner: Arc<RouterCore>, target: String, signal: Arc<Signal>) {
    let mut in_flight: HashSet<u64> = HashSet::new();
    let (done_tx, mut done_rx) = mpsc::channel::<(Record, AttemptOutcome)>(inner.in_flight.max(1));
    let mut shutdown = inner.shutdown.clone();
    let mut sends = JoinSet::new();
    let mut url = LastUrl::default();
    // When the outbox's table of attempted deliveries may next have one due for this
    // target: read it at start, then when its next row is due, when this worker schedules
    // a retry, or when told of a fallback or replay (`Signal::table`). After a failed
    // read (of the table or of queued ids) it is also the wake-up to try again.
    let mut table_at: u64 = 0;
    let mut stall = Stall::default();
    loop {
        if *shutdown.borrow() {
            break;
        }
        if signal.table.swap(false, Ordering::AcqRel) {
            table_at = 0;
        }
        // After a pause, the deliveries whose outcome was lost are taken again: fresh
        // ones through the queue, the others from the table (the queue skips those).
        if let Some(ids) = stall.release() {
            for id in &ids {
                in_flight.remove(id);
            }
            inner.lanes.put_back(&target, &ids);
            table_at = 0;
        }
        let stalled = stall.active();
        let mut batch = Vec::new();
        let free = inner.in_flight.saturating_sub(in_flight.len());
        if free > 0 && !stalled {
            match take_fresh(&inner, &target, free) {
                Ok(fresh) => batch = fresh,
                Err(e) => {
                    tracing::error!(target = %target, error = %e, "cannot read the outbox");
                    table_at = table_at.min(now_ms() + 1000);
                }
            }
            in_flight.extend(batch.iter().map(|r| r.id));
        }
        // Read the table when a quarter of the slots are free (or all are): one query
        // fills several slots instead of one query per finished attempt.
        let may_read = |busy: usize| {
            let free = inner.in_flight.saturating_sub(busy);
            free > 0 && (busy == 0 || free >= inner.in_flight.div_ceil(4))
        };
        let now = now_ms();
        if table_at <= now && may_read(in_flight.len()) && !stalled {
            let free = inner.in_flight.saturating_sub(in_flight.len());
            let skip = |id: u64| in_flight.contains(&id);
            match inner.store.due(&target, now, free, &skip) {
                Ok(due) => {
                    in_flight.extend(due.iter().map(|r| r.id));
                    batch.extend(due);
                    let skip = |id: u64| in_flight.contains(&id);
                    table_at = match inner.store.next_due(&target, &skip) {
                        Ok(next) => next.unwrap_or(u64::MAX),
                        Err(_) => now + 1000,
                    };
                }
                Err(e) => {
                    tracing::error!(target = %target, error = %e, "cannot read the outbox");
                    table_at = now + 1000;
                }
            }
        }
        for r in batch {
            let parsed = url.parse(&r.spec.url);
            send(&inner, r, parsed, &done_tx, &mut sends);
        }
        let sleep = if let Some(until) = stall.until {
            until.saturating_duration_since(tokio::time::Instant::now())
        } else if table_at == u64::MAX || !may_read(in_flight.len()) {
            Duration::from_secs(3600)
        } else {
            Duration::from_millis(table_at.saturating_sub(now_ms()))
        };
        tokio::select! {
            _ = signal.notify.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => {}
            Some(first) = done_rx.recv() => {
                // Take every finished attempt, record them in one commit, and only then
                // free their slots (so none of them is read back and resent).
                let mut done = vec![first];
                while let Ok(more) = done_rx.try_recv() {
                    done.push(more);
                }
                for (_, outcome) in &done {
                    if let AttemptOutcome::Retry { next_at_ms, .. } = outcome {
                        table_at = table_at.min(*next_at_ms);
                    }
                }
                let r = record(&inner, done).await;
                for id in &r.recorded {
                    in_flight.remove(id);
                }
                match r.error {
                    // Not recorded: they stay in flight, and the worker pauses.
                    Some(e) => stall.failed(&target, r.unrecorded, &e),
                    None => stall.recorded(),
                }
                // Free the finished send tasks: a JoinSet keeps each until it is joined.
                while sends.try_join_next().is_some() {}
            }
        }
    }
    // Shutting down: let requests in flight finish (the router bounds how long).
    drop(done_tx);
    while let Some(done) = done_rx.recv().await {
        record(&inner, vec![done]).await;
    }
    while sends.join_next().await.is_some() {}
}

/// Up to `n` new deliveries from `target`'s queue; those queued by id alone are read from
/// the outbox. On a failed read they go back to the queue.
fn take_fresh(
    inner: &Arc<RouterCore>,
    target: &str,
    n: usize,
) -> Result<Vec<Record>, DispatchError> {
    let entries = inner.lanes.take(target, n);
    let taken: Vec<u64> = entries.iter().map(|e| e.id).collect();
    let mut out = Vec::with_capacity(entries.len());
    let mut by_id = Vec::new();
    for e in entries {
        match e.record {
            Some(r) => out.push(*r),
            None => by_id.push(e.id),
        }
    }
    if !by_id.is_empty() {
        match inner.store.fresh_records(&by_id) {
            Ok(read) => out.extend(read),
            Err(e) => {
                // Every one of them is in the outbox: queue them again, by id.
                inner.lanes.put_back(target, &taken);
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// The last URL a worker parsed: a target's deliveries nearly always share one, and
/// parsing it for every request was 4.6% of the CPU end to end.
#[derive(Default)]
struct LastUrl(Option<(String, reqwest::Url)>);

impl LastUrl {
    /// `None` if `url` does not parse: the request then fails with reqwest's own error.
    fn parse(&mut self, url: &str) -> Option<reqwest::Url> {
        if let Some((text, parsed)) = &self.0
            && text == url
        {
            return Some(parsed.clone());
        }
        let parsed = reqwest::Url::parse(url).ok()?;
        self.0 = Some((url.to_owned(), parsed.clone()));
        Some(parsed)
    }
}

/// Starts one attempt; its outcome comes back on `done`.
fn send(
    inner: &Arc<RouterCore>,
    r: Record,
    url: Option<reqwest::Url>,
    done: &mpsc::Sender<(Record, AttemptOutcome)>,
    sends: &mut JoinSet<()>,
) {
    let (client, backoff, tx) = (inner.client.clone(), inner.backoff, done.clone());
    let store_id = inner.store.store_id();
    let m = inner.metrics.clone();
    let span = tracing::info_span!(
        "delivery",
        delivery = r.id,
        alert_id = r.alert_id.as_deref().unwrap_or("-"),
        target = %r.spec.target,
        attempt = r.attempts + 1
    );
    sends.spawn(tracing::Instrument::instrument(
        async move {
            let label = metrics::TargetLabel {
                target: r.spec.target.clone(),
            };
            let started = std::time::Instant::now();
            let outcome = attempt(&client, &r, url, store_id, backoff).await;
            m.attempts.get_or_create(&label).inc();
            m.attempt_seconds
                .get_or_create(&label)
                .observe(started.elapsed().as_secs_f64());
            let _ = tx.send((r, outcome)).await;
        },
        span,
    ));
}

/// Logs and durably records finished attempts, all in one outbox commit, then counts those
/// whose outcome is on disk; returns their ids once the commit is done.
///
/// The counters move only after the commit, so that whoever reads them (`stats()`,
/// `/metrics`, a test) never sees a delivery counted as delivered while the outbox still
/// holds it as pending.
async fn record(inner: &Arc<RouterCore>, done: Vec<(Record, AttemptOutcome)>) -> Recorded {
    let mut items = Vec::with_capacity(done.len());
    let mut kinds = Vec::with_capacity(done.len());
    for (r, outcome) in done {
        log_outcome(&r, &outcome);
        kinds.push((r.spec.target.clone(), Counted::of(&r, &outcome)));
        items.push((r.id, outcome));
    }
    let results = inner.store.finish_many(items).await;
    let mut out = Recorded::default();
    for ((id, result), (target, kind)) in results.into_iter().zip(kinds) {
        match result {
            Ok(created) => {
                out.recorded.push(id);
                count(inner, target, kind);
                if let Some(created) = created {
                    inner.wake_table(&created.spec.target);
                }
            }
            Err(e) => {
                out.unrecorded.push(id);
                out.error = Some(e.to_string());
            }
        }
    }
    out
}

/// What [`record`] could write: the ids whose outcome is on disk, and those whose outcome
/// could not be written (they are still pending in the outbox, as before the attempt).
#[derive(Default)]
struct Recorded {
    recorded: Vec<u64>,
    unrecorded: Vec<u64>,
    error: Option<String>,
}

/// How long a worker waits, at first, after an outcome it could not record; it doubles
/// up to [`STALL_CAP`] while recording keeps failing.
const STALL_FIRST: Duration = Duration::from_millis(250);

/// The longest a worker waits before trying again to record outcomes.
const STALL_CAP: Duration = Duration::from_secs(30);

/// A worker's pause while the outbox cannot record outcomes (a full disk): the deliveries
/// whose outcome was lost stay in flight (not read back and sent again at once), and the
/// worker takes no new work until the pause ends; then they go back to the queue.
#[derive(Default)]
struct Stall {
    ids: Vec<u64>,
    until: Option<tokio::time::Instant>,
    wait: Duration,
}

impl Stall {
    /// Notes outcomes that could not be recorded, and how long to pause for.
    fn failed(&mut self, target: &str, ids: Vec<u64>, error: &str) {
        self.wait = if self.wait.is_zero() {
            STALL_FIRST
        } else {
            (self.wait * 2).min(STALL_CAP)
        };
        self.until = Some(tokio::time::Instant::now() + self.wait);
        tracing::warn!(target = %target, deliveries = ids.len(), error = %error, pause_ms = self.wait.as_millis() as u64, "cannot record delivery outcomes (is the disk full?); this target pauses, and its deliveries stay pending");
        self.ids.extend(ids);
    }

    /// Outcomes were recorded: once no pause is running, the next one starts short again.
    fn recorded(&mut self) {
        if !self.active() {
            self.wait = Duration::ZERO;
        }
    }

    /// Whether the worker is paused now.
    fn active(&self) -> bool {
        self.until.is_some_and(|u| tokio::time::Instant::now() < u)
    }

    /// The paused deliveries, once the pause is over: to be taken again.
    fn release(&mut self) -> Option<Vec<u64>> {
        if self.until.is_none() || self.active() {
            return None;
        }
        self.until = None;
        Some(std::mem::take(&mut self.ids))
    }
}

/// What a finished attempt counts as.
#[derive(Clone, Copy)]
enum Counted {
    Delivered,
    Retried,
    FellBack,
    Dead,
}

impl Counted {
    fn of(r: &Record, outcome: &AttemptOutcome) -> Self {
        match outcome {
            AttemptOutcome::Delivered => Self::Delivered,
            AttemptOutcome::Retry { .. } => Self::Retried,
            AttemptOutcome::GiveUp { .. } if r.spec.fallback.is_some() => Self::FellBack,
            AttemptOutcome::GiveUp { .. } => Self::Dead,
        }
    }
}

/// Counts one finished attempt whose outcome is committed.
fn count(inner: &Arc<RouterCore>, target: String, kind: Counted) {
    let stats = &inner.stats;
    let (counter, label) = match kind {
        Counted::Delivered => (&stats.delivered, "delivered"),
        Counted::Retried => (&stats.retried, "retried"),
        Counted::FellBack => (&stats.fell_back, "fallback"),
        Counted::Dead => (&stats.dead, "dead"),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    inner
        .metrics
        .deliveries
        .get_or_create(&metrics::OutcomeLabel {
            target,
            outcome: label,
        })
        .inc();
}

/// Logs one finished attempt.
fn log_outcome(r: &Record, outcome: &AttemptOutcome) {
    match outcome {
        AttemptOutcome::Delivered => {
            tracing::debug!(delivery = r.id, alert_id = r.alert_id.as_deref().unwrap_or("-"), target = %r.spec.target, attempt = r.attempts + 1, "delivered");
        }
        AttemptOutcome::Retry {
            attempts,
            error,
            next_at_ms,
        } => {
            tracing::info!(delivery = r.id, alert_id = r.alert_id.as_deref().unwrap_or("-"), target = %r.spec.target, attempt = attempts, error = %error, retry_in_ms = next_at_ms.saturating_sub(now_ms()), "attempt failed; will retry");
        }
        AttemptOutcome::GiveUp {
            attempts, error, ..
        } => {
            tracing::warn!(delivery = r.id, alert_id = r.alert_id.as_deref().unwrap_or("-"), target = %r.spec.target, attempts = attempts, error = %error, fallback = r.spec.fallback.as_ref().map(|f| f.target.as_str()), "delivery given up");
        }
    }
}

/// A redirect's `Location`, as it may be shown: without user, password, query or fragment
/// (where a receiver may echo a secret back). A relative one is shown as written, never
/// joined to the target's URL, which may hold a secret.
fn shown_location(location: &str) -> String {
    match reqwest::Url::parse(location) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => location
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect(),
    }
}

/// One attempt at a delivery, and what to do next.
async fn attempt(
    client: &reqwest::Client,
    r: &Record,
    url: Option<reqwest::Url>,
    store_id: u64,
    backoff: Backoff,
) -> AttemptOutcome {
    let method = if r.spec.method == "PUT" {
        reqwest::Method::PUT
    } else {
        reqwest::Method::POST
    };
    let req = match url {
        Some(url) => client.request(method, url),
        None => client.request(method, &r.spec.url),
    };
    let mut req = req
        .timeout(Duration::from_millis(r.spec.timeout_ms))
        .header("content-type", "application/json")
        .header("idempotency-key", format!("{store_id:016x}-{:016x}", r.id));
    for (k, v) in &r.spec.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let attempts = r.attempts + 1;
    let (retryable, error, retry_after) = match req.body(r.body.clone()).send().await {
        Ok(resp) if resp.status().is_success() => return AttemptOutcome::Delivered,
        Ok(resp) => {
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let retryable =
                status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
            let error = if status.is_redirection() {
                let to = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map_or_else(|| String::from("nowhere"), shown_location);
                format!(
                    "HTTP {status}: redirect to {to}; redirects are not followed: set the target's url to where it should go"
                )
            } else {
                format!("HTTP {status}")
            };
            (retryable, error, retry_after)
        }
        // Never show the URL: it may hold a secret.
        Err(e) if e.is_timeout() => (
            true,
            format!("timed out after {} ms", r.spec.timeout_ms),
            None,
        ),
        Err(e) if e.is_connect() => (true, String::from("connection failed"), None),
        Err(e) => (true, format!("request failed: {}", e.without_url()), None),
    };
    if retryable && attempts <= r.spec.retries {
        let wait = backoff.delay(attempts - 1, retry_after);
        AttemptOutcome::Retry {
            attempts,
            next_at_ms: now_ms() + wait.as_millis() as u64,
            error,
        }
    } else {
        AttemptOutcome::GiveUp {
            attempts,
            error,
            now_ms: now_ms(),
        }
    }
}

/// `Retry-After: 120` or `Retry-After: Fri, 31 Dec 1999 23:59:59 GMT`.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    let secs = (at.as_second() - now.as_second()).max(0);
    Some(Duration::from_secs(secs as u64))
}

/// Offline access to an outbox, for the `dead-letters` command while the server is stopped.
pub struct Outbox {
    store: Store,
}

impl Outbox {
    /// Opens the outbox under a data directory.
    pub fn open(data_dir: &Path) -> Result<Outbox, DispatchError> {
        Ok(Outbox {
            store: Store::open(data_dir)?,
        })
    }

    /// Dead letters, oldest first.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, DispatchError> {
        self.store.dead_letters(limit)
    }

    /// One dead letter.
    pub fn dead_letter(&self, id: u64) -> Result<Option<DeadLetter>, DispatchError> {
        self.store.dead_letter(id)
    }

    /// Queues a dead letter again, due now; the next router start sends it.
    pub async fn retry(&self, id: u64) -> Result<bool, DispatchError> {
        Ok(self.store.replay(id, now_ms()).await?.is_some())
    }

    /// Deletes one dead letter, or all with `None`.
    pub async fn purge(&self, id: Option<u64>) -> Result<usize, DispatchError> {
        self.store.purge(id).await
    }

    /// Pending deliveries and dead letters.
    pub fn depth(&self) -> Result<(u64, u64), DispatchError> {
        self.store.depth()
    }
}

#[cfg(test)]
#[path = "dispatch_test.rs"]
mod tests;
