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
//!
//! The rooms: the router and its builder (this file), one worker per target
//! (`worker.rs`), an attempt and the policy judging it (`attempt.rs`), the errors
//! (`error.rs`), in-memory queues of new deliveries (`lanes.rs`), metrics (`metrics.rs`),
//! and the outbox behind one interface (`store/`: SQLite, or memory). Decisions flow one
//! way: the engine decides, this module schedules and sends, the store records.

mod attempt;
mod error;
mod groups;
mod lanes;
mod limit;
mod metrics;
mod order;
mod silences;
mod store;
mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::alert::Alert;
use crate::engine::{DecisionSummary, Delivery, RuleSet, Target};
pub use attempt::Backoff;
pub use error::{DispatchError, DispatchErrorKind};
use lanes::Lanes;
pub use silences::{MAX_SILENCE_TEXT, NewSilence, SilenceError};
#[cfg(feature = "nats")]
pub use store::nats::{Auth as NatsAuth, Settings as NatsSettings};
pub use store::{DeadLetter, OutboxView, TargetDepth, Waiting};
use store::{Record, Spec, Store};

/// Builds a [`Router`].
pub struct RouterBuilder {
    rules: Option<RuleSet>,
    data_dir: PathBuf,
    in_flight: usize,
    adaptive: bool,
    backoff: Backoff,
    connect_timeout: Duration,
    hold: bool,
    queue_memory: usize,
    accept_loss: bool,
    in_memory: bool,
    #[cfg(feature = "nats")]
    nats: Option<NatsSettings>,
}

impl RouterBuilder {
    /// Keep deliveries and the rules' memory on NATS JetStream, shared by every replica
    /// built with the same settings, instead of the SQLite outbox (docs/nats.md).
    #[cfg(feature = "nats")]
    pub fn nats(mut self, settings: NatsSettings) -> Self {
        self.nats = Some(settings);
        self
    }

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

    /// Keep the outbox in memory instead of `<data_dir>/outbox.sqlite3` (default false).
    /// Every guarantee but one holds: nothing survives the process, so a crash or a stop
    /// loses what was not delivered yet. For tests, and for embedding where the caller
    /// keeps its own record of what it submitted.
    pub fn in_memory(mut self, in_memory: bool) -> Self {
        self.in_memory = in_memory;
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

    /// The most requests in flight per target (default 32).
    pub fn in_flight_per_target(mut self, n: usize) -> Self {
        self.in_flight = n.max(1);
        self
    }

    /// Whether each target's limit of requests in flight adapts to its answers, between
    /// one and [`in_flight_per_target`](Self::in_flight_per_target) (default true): the
    /// fewest at once that keep its deliveries from waiting (docs/delivery.md,
    /// "Isolation"). With false, every target may always have the most in flight.
    pub fn adaptive_in_flight(mut self, adaptive: bool) -> Self {
        self.adaptive = adaptive;
        self
    }

    /// The retry schedule.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The store the builder names: NATS, memory, or the SQLite outbox (the default).
    /// `sink` takes new deliveries for the in-memory queues; a store shared by replicas
    /// has none (another replica may take them).
    async fn open_store(
        &self,
        sink: Option<store::FreshSink>,
    ) -> Result<Box<dyn Store>, DispatchError> {
        #[cfg(feature = "nats")]
        if let Some(settings) = &self.nats {
            return Ok(Box::new(
                store::nats_store::NatsStore::open(settings).await?,
            ));
        }
        if self.in_memory {
            return Ok(Box::new(store::memory::MemoryStore::new(sink)));
        }
        let loss = if self.accept_loss {
            store::Loss::Accept
        } else {
            store::Loss::Refuse
        };
        let dir = self.data_dir.clone();
        let opened = tokio::task::spawn_blocking(move || {
            store::sqlite::SqliteStore::open_with(&dir, sink, loss)
        })
        .await
        .map_err(|e| DispatchError::caused(DispatchErrorKind::Io, "cannot open the outbox", e))?;
        Ok(Box::new(opened?))
    }

    /// Opens the outbox, builds the HTTP client, and resumes every pending delivery.
    pub async fn build(mut self) -> Result<Router, DispatchError> {
        let rules = self.rules.take().ok_or_else(|| {
            DispatchError::other(DispatchErrorKind::Config, "a router needs a rule set")
        })?;
        let lanes = Arc::new(Lanes::new(self.queue_memory));
        // Held deliveries are not queued: they stay in the outbox for a router without hold.
        let sink: Option<store::FreshSink> = if self.hold {
            None
        } else {
            let lanes = lanes.clone();
            Some(Box::new(move |records| lanes.push(records)))
        };
        let store = self.open_store(sink).await?;
        let client = http_client()
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            // A target's URL is the rules author's; a receiver must not move it. Followed
            // redirects would carry secret headers to another host, and turn a POST into a
            // bodiless GET whose 200 looks delivered. A 3xx is a failure (see `attempt`).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                DispatchError::caused(DispatchErrorKind::Config, "cannot build the HTTP client", e)
            })?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let book = silences::Book::load(store.silences().await?, now_ms());
        let inner = Arc::new(RouterCore {
            rules: arc_swap::ArcSwap::from_pointee(rules),
            silences: arc_swap::ArcSwap::from_pointee(book),
            store,
            groups_changed: Notify::new(),
            lanes,
            client,
            in_flight: self.in_flight,
            adaptive: self.adaptive,
            backoff: self.backoff,
            hold: self.hold,
            workers: Mutex::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
            shutdown: shutdown_rx,
            shutdown_tx,
            metrics: metrics::Metrics::default(),
        });
        let router = Router { inner };
        if !router.inner.hold {
            let lanes = &router.inner.lanes;
            router
                .inner
                .store
                .fresh_pending(&mut |id, target| lanes.push_id(id, target))
                .await?;
            // Before any submit, so these are exactly the targets with fresh deliveries.
            for target in lanes.targets() {
                router.inner.wake(&target);
            }
        }
        for target in router.inner.store.pending_targets().await? {
            router.inner.wake_table(&target);
        }
        if !router.inner.hold
            && let Ok(mut tasks) = router.inner.tasks.lock()
        {
            tasks.spawn(groups::clock(router.inner.clone()));
            if router.inner.store.shared_queues() {
                tasks.spawn(census(router.inner.clone()));
            }
        }
        Ok(router)
    }
}

/// Requests in flight per target, by default (`delivery.in_flight_per_target`).
pub(crate) const DEFAULT_IN_FLIGHT: usize = 32;

/// Bytes of new deliveries kept in memory for sending, by default
/// (`delivery.queue_memory_mb`).
pub(crate) const DEFAULT_QUEUE_MEMORY: usize = 64 << 20;

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
    /// The silences, replaced whole after each add or expiry is stored.
    silences: arc_swap::ArcSwap<silences::Book>,
    store: Box<dyn Store>,
    /// Told when a submit put an alert in a group: the groups' clock looks again.
    groups_changed: Notify,
    /// New deliveries, per target, handed over by the outbox writer.
    lanes: Arc<Lanes>,
    client: reqwest::Client,
    /// The most requests in flight per target.
    in_flight: usize,
    /// Whether each target's limit adapts under the most (`limit.rs`).
    adaptive: bool,
    backoff: Backoff,
    /// Deliveries are stored, not sent ([`RouterBuilder::hold_deliveries`]).
    hold: bool,
    workers: Mutex<HashMap<String, Arc<Signal>>>,
    tasks: Mutex<JoinSet<()>>,
    shutdown: watch::Receiver<bool>,
    shutdown_tx: watch::Sender<bool>,
    metrics: metrics::Metrics,
}

/// What `submit` did with one alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The decision the rules made.
    pub decision: DecisionSummary,
    /// The ids of the deliveries now in the outbox, one per target that gets one.
    pub deliveries: Vec<u64>,
    /// What rules that remember (`dedup`, `resolve once`, `at most`) did with each target
    /// they chose: delivered, or kept out and why. Empty when no such rule had a say.
    pub verdicts: Vec<crate::state::Verdict>,
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
            adaptive: true,
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(5),
            hold: false,
            queue_memory: DEFAULT_QUEUE_MEMORY,
            accept_loss: false,
            in_memory: false,
            #[cfg(feature = "nats")]
            nats: None,
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
        let book = self.inner.silences.load();
        let now = now_ms();
        let mut batch = Vec::with_capacity(alerts.len());
        let mut summaries = Vec::with_capacity(alerts.len());
        for alert in alerts {
            let d = rules.evaluate(alert);
            summaries.push(d.summary());
            if let Some(st) = stateful(&d, alert, &book, now) {
                batch.push(store::Submission {
                    plain: Vec::new(),
                    stateful: Some(Box::new(st)),
                });
            } else {
                batch.push(store::Submission {
                    plain: d
                        .deliveries(alert)
                        .map(|delivery| record(delivery, alert, now))
                        .collect(),
                    stateful: None,
                });
            }
        }
        let stored = self.inner.store.submit(batch).await?;
        // Counted once the deliveries are on disk: an alert refused with 503 is not counted.
        // The targets to wake, each once: sorted and deduplicated after, which for the
        // usual one or two targets costs less than a hash set built per request.
        let mut targets: Vec<String> = Vec::new();
        let mut later: Vec<String> = Vec::new();
        let m = &self.inner.metrics;
        let mut out = Vec::with_capacity(alerts.len());
        for ((alert, summary), stored) in alerts.iter().zip(summaries).zip(stored) {
            m.submitted.inc();
            if summary.unrouted {
                m.unrouted.inc();
                tracing::info!(alert_id = alert.id().unwrap_or("-"), source = %alert.source(), "unrouted: no rule matched");
            }
            if summary.dropped {
                m.dropped.inc();
                tracing::debug!(alert_id = alert.id().unwrap_or("-"), source = %alert.source(), rules = ?summary.rules, "dropped by a rule");
            }
            for v in &stored.verdicts {
                if matches!(v.kind, crate::state::VerdictKind::Grouped { .. }) {
                    self.inner.groups_changed.notify_one();
                }
                if let Some(reason) = v.suppressed() {
                    m.suppressed(&v.rule, reason);
                    tracing::debug!(alert_id = alert.id().unwrap_or("-"), rule = %v.rule, target = %v.target, reason, "delivery suppressed");
                }
            }
            targets.extend(stored.targets);
            later.extend(stored.later);
            out.push(Submitted {
                decision: summary,
                deliveries: stored.ids,
                verdicts: stored.verdicts,
            });
        }
        m.submit_seconds.observe(started.elapsed().as_secs_f64());
        for names in [&mut targets, &mut later] {
            names.sort_unstable();
            names.dedup();
        }
        // Every target the store stored a delivery for (a resolution that `resolve once`
        // owed a target no rule chose this time, an `else` target included).
        for t in targets {
            self.inner.wake(&t);
        }
        // Held deliveries (`delay`, `hold during`) wait in the table: their workers read
        // when the next one is due.
        for t in later {
            self.inner.wake_table(&t);
        }
        Ok(out)
    }

    /// What rules that remember would do with each alert now, against the state the outbox
    /// holds, without storing or delivering anything (`POST /api/explain`): one list of
    /// verdicts per alert, empty when no such rule has a say. A verdict that would deliver
    /// carries delivery id 0.
    pub async fn preview(
        &self,
        alerts: &[Alert],
    ) -> Result<Vec<Vec<crate::state::Verdict>>, DispatchError> {
        let rules = self.rules();
        let book = self.inner.silences.load();
        let now = now_ms();
        let mut batch = Vec::new();
        let mut which = Vec::with_capacity(alerts.len());
        for alert in alerts {
            let d = rules.evaluate(alert);
            let st = stateful(&d, alert, &book, now);
            which.push(st.is_some());
            batch.extend(st);
        }
        let mut previews = self.inner.store.preview(batch).await?.into_iter();
        Ok(which
            .into_iter()
            .map(|r| {
                if r {
                    previews.next().unwrap_or_default()
                } else {
                    Vec::new()
                }
            })
            .collect())
    }

    /// Adds a silence: checked (its condition with diagnostics, its times, who and why),
    /// stored durably, then in force for every alert submitted after this returns.
    pub async fn add_silence(
        &self,
        new: NewSilence,
    ) -> Result<crate::state::Silence, SilenceError> {
        let now = now_ms();
        let (silence, matcher) = silences::check(new, now)?;
        let stored = self
            .inner
            .store
            .add_silence(silence, now)
            .await
            .map_err(SilenceError::Store)?;
        self.inner
            .silences
            .rcu(|book| book.with(stored.clone(), Some(matcher.clone()), now));
        tracing::info!(silence = stored.id, condition = %stored.condition, created_by = %stored.created_by, "silence added");
        Ok(stored)
    }

    /// Every silence the router knows (in force, pending and ended), by id.
    pub fn silences(&self) -> Vec<crate::state::Silence> {
        self.inner.silences.load().list().cloned().collect()
    }

    /// Expires silence `id` now, if it has not ended: every firing it holds is released
    /// at once (they go out now), and it is kept as history. `Ok(None)`: no such silence.
    pub async fn expire_silence(
        &self,
        id: u64,
    ) -> Result<Option<crate::state::Silence>, DispatchError> {
        let now = now_ms();
        let Some(expired) = self.inner.store.expire_silence(id, now).await? else {
            return Ok(None);
        };
        let silence = expired.silence;
        self.inner
            .silences
            .rcu(|book| book.with(silence.clone(), None, now));
        for target in &expired.released {
            self.inner.wake_table(target);
        }
        tracing::info!(
            silence = id,
            released = expired.released.len(),
            "silence expired"
        );
        Ok(Some(silence))
    }

    /// Up to `limit` live entries of the rules' memory, for an operator (`GET /api/state`).
    pub async fn state_list(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::state::Listed>, DispatchError> {
        self.inner.store.state_list(now_ms(), limit).await
    }

    /// What waits in the outbox per target (with what this process is sending now), and
    /// the `limit` deliveries due soonest after a retry or a hold: the console's view.
    pub async fn outbox_view(&self, limit: usize) -> Result<OutboxView, DispatchError> {
        let mut view = self.inner.store.outbox_view(limit).await?;
        let m = &self.inner.metrics;
        for t in &mut view.targets {
            let label = metrics::TargetLabel {
                target: t.target.clone(),
            };
            t.in_flight = m.in_flight.get_or_create(&label).get().max(0) as u64;
            t.in_flight_limit = m.in_flight_limit.get_or_create(&label).get().max(0) as u64;
        }
        Ok(view)
    }

    /// Whether the store is shared by replicas (NATS JetStream).
    pub fn shared_store(&self) -> bool {
        self.inner.store.shared_queues()
    }

    /// The router's counters and the outbox's depth.
    pub fn stats(&self) -> RouterStats {
        let m = &self.inner.metrics;
        let depth = self.inner.store.depth().unwrap_or_default();
        RouterStats {
            submitted: m.submitted.get(),
            unrouted: m.unrouted.get(),
            dropped: m.dropped.get(),
            delivered: m.total(metrics::Counted::Delivered),
            retried: m.total(metrics::Counted::Retried),
            dead: m.total(metrics::Counted::Dead),
            fell_back: m.total(metrics::Counted::FellBack),
            pending: depth.pending,
            dead_letters: depth.dead,
        }
    }

    /// Registers the router's metrics (`switchyard_deliveries_total{target,outcome}`,
    /// attempt latency by target, outbox depth, dead letters, ...) into a registry that a
    /// server exports. Call [`Router::refresh_gauges`] before each scrape.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
        self.inner.store.register(registry);
    }

    /// Reads the outbox depth and dead-letter count into their gauges.
    pub fn refresh_gauges(&self) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let m = &self.inner.metrics;
        let health = self.inner.store.health();
        m.lost.set(gauge(health.lost));
        m.unreadable.set(gauge(health.unreadable));
        if let Ok(n) = self.inner.store.state_entries() {
            m.state_entries.set(gauge(n));
        }
        let now = now_ms();
        let active = self
            .inner
            .silences
            .load()
            .list()
            .filter(|s| s.status(now) == crate::state::SilenceStatus::Active)
            .count();
        m.silences_active.set(gauge(active as u64));
        if let Ok(depth) = self.inner.store.depth() {
            m.pending.set(gauge(depth.pending));
            m.dead_letters.set(gauge(depth.dead));
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
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, DispatchError> {
        self.inner.store.dead_letters(limit).await
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
        // On a shared store, what this replica took and did not finish goes back to the
        // others now, not when its lease runs out.
        self.inner.store.release().await;
    }

    /// Whether the outbox takes writes: `false` from a failed commit (a full disk) until
    /// one succeeds again. `/readyz` answers 503 meanwhile.
    pub fn outbox_writable(&self) -> bool {
        self.inner.store.health().writable
    }

    /// Where the outbox is: its file, or `memory`.
    pub fn outbox_path(&self) -> &Path {
        self.inner.store.location()
    }
}

/// The step's input for `alert`, when the step has a say in it: a rule that remembers
/// chose a target or may owe it a resolution, a silence matches it, or, while silences
/// are in force, it is a resolution that may cancel a firing one holds, or an `inhibit`
/// names it as a source or a target. `None`: the decision's deliveries go as they are.
fn stateful(
    d: &crate::engine::Decision<'_>,
    alert: &Alert,
    book: &silences::Book,
    now: u64,
) -> Option<store::Stateful> {
    let (silences, silencing) = book.facts(alert, now);
    let mut facts = crate::state::AlertFacts {
        silences,
        silencing,
        inhibits: d.inhibit_facts(alert),
        ..crate::state::AlertFacts::new(None, alert.state())
    };
    if !facts.needs_step() && !d.remembers(alert) {
        return None;
    }
    facts.id = alert.id().map(str::to_owned);
    let to_record = |delivery: Delivery<'_>| record(delivery, alert, now);
    let (choices, probes) = d.choices(alert);
    Some(store::Stateful {
        facts,
        now,
        choices: choices.into_iter().map(|c| c.map(to_record)).collect(),
        probes: probes.into_iter().map(|c| c.map(to_record)).collect(),
    })
}

/// A new delivery for `alert`, due now.
fn record(delivery: Delivery<'_>, alert: &Alert, now: u64) -> Record {
    Record {
        id: 0,
        spec: spec(delivery.target, &delivery.fallbacks),
        body: delivery.body,
        shown_body: delivery.shown_body,
        alert_id: alert.id().map(str::to_owned),
        attempts: 0,
        next_at_ms: now,
        last_error: None,
        created_ms: now,
        fallback_from: None,
        recheck: None,
    }
}

/// A target's request definition, with its fallback chain (as the engine resolved it)
/// fixed now: a reload does not change a delivery already queued.
fn spec(t: &Target, fallbacks: &[&Target]) -> Spec {
    let fallback = fallbacks
        .split_first()
        .map(|(first, rest)| Box::new(spec(first, rest)));
    Spec {
        target: t.name().to_owned(),
        url: t.url(),
        method: t.method,
        headers: t.headers().map(|(k, v)| (k.to_owned(), v)).collect(),
        timeout_ms: t.timeout().as_millis() as u64,
        retries: t.retries(),
        fallback,
    }
}

/// A builder for an HTTP client, with TLS ready: reqwest is built without a crypto provider
/// (rustls on ring is the process's, installed here unless the embedding program installed
/// one first), so every client comes from here. The router's, and the CLI's.
///
/// Requests go through the proxy the environment names (`HTTPS_PROXY`, `HTTP_PROXY`,
/// `ALL_PROXY` or their lower-case forms, with `NO_PROXY`), read when the client is built.
/// When none is set, the client is built without proxies: reqwest otherwise asks its
/// (empty) proxy list about every request, twice, about 1,400 instructions a delivery.
pub fn http_client() -> reqwest::ClientBuilder {
    // `Err`: a provider is installed already, which is what is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder();
    if proxy_may_be_set(|name| std::env::var_os(name)) {
        builder
    } else {
        builder.no_proxy()
    }
}

/// The variables reqwest reads its proxies from on Linux (hyper-util's `Matcher::from_env`).
const PROXY_VARIABLES: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether reqwest may find a proxy: one of [`PROXY_VARIABLES`] set and not empty, or a
/// system whose proxy settings live outside the environment (macOS, Windows).
fn proxy_may_be_set(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    cfg!(any(target_os = "macos", windows))
        || PROXY_VARIABLES
            .iter()
            .any(|name| var(name).is_some_and(|v| !v.is_empty()))
}

pub(crate) fn now_ms() -> u64 {
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

/// How often a replica on a shared store reads what other replicas changed: the targets
/// with work waiting (a replica that died leaves its deliveries to the others) and the
/// silences.
const CENSUS_EVERY: Duration = Duration::from_secs(5);

/// Runs until the router stops, on a store shared by replicas: wakes the worker of every
/// target with a queue every [`CENSUS_EVERY`], and takes the silences as stored (added or
/// expired on another replica) when the store says one changed (or, for a store that
/// cannot say, every round).
async fn census(core: Arc<RouterCore>) {
    let mut shutdown = core.shutdown.clone();
    let mut every = tokio::time::interval(CENSUS_EVERY);
    let changed = core.store.silence_changes();
    loop {
        let silences_only = tokio::select! {
            _ = every.tick() => false,
            () = async {
                match &changed {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            } => true,
            _ = shutdown.changed() => return,
        };
        if !silences_only {
            match core.store.pending_targets().await {
                Ok(targets) => {
                    for t in targets {
                        core.wake_table(&t);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot list the shared queues"),
            }
            // A store that says when silences change (and again after any gap in saying
            // so) is not read every round: with thousands of silences that is most of it.
            if changed.is_some() {
                continue;
            }
        }
        match core.store.silences().await {
            Ok(stored) => {
                let now = now_ms();
                let known = core.silences.load();
                if known.list().ne(stored.iter()) {
                    core.silences
                        .store(Arc::new(silences::Book::load(stored, now)));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the shared silences"),
        }
    }
}

impl RouterCore {
    /// Wakes the target's worker for new deliveries in its queue, starting it if needed.
    /// On a store shared by replicas they are taken from the store's queue.
    fn wake(self: &Arc<Self>, target: &str) {
        let shared = self.store.shared_queues();
        self.signal(target, shared);
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
                    tasks.spawn(async move { worker::worker(inner, t, n2).await });
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

/// Offline access to an outbox, for the `dead-letters` command while the server is stopped.
pub struct Outbox {
    store: store::sqlite::SqliteStore,
}

impl Outbox {
    /// Opens the outbox under a data directory.
    pub fn open(data_dir: &Path) -> Result<Outbox, DispatchError> {
        Ok(Outbox {
            store: store::sqlite::SqliteStore::open(data_dir)?,
        })
    }

    /// Dead letters, oldest first.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, DispatchError> {
        self.store.dead_letters_now(limit)
    }

    /// One dead letter.
    pub fn dead_letter(&self, id: u64) -> Result<Option<DeadLetter>, DispatchError> {
        self.store.dead_letter_now(id)
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
        let depth = self.store.depth()?;
        Ok((depth.pending, depth.dead))
    }
}
