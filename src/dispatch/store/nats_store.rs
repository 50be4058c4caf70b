//! The [`Store`] on NATS JetStream: what the router runs on when `state.backend` is `nats`
//! (docs/nats.md). The shared state and new deliveries (`nats_state.rs`), each target's
//! queue shared by the replicas (`nats_queue.rs`) and the silences (`nats_silence.rs`)
//! behind the one interface the SQLite outbox implements.
//!
//! Owns: the deliveries this replica has taken from a queue and not finished (its
//! *leases*: each message stays this replica's while its lease is renewed, and comes back
//! to another replica if this one dies), renewing them, and the counts the metrics read
//! (refreshed in the background: a count over the network never blocks a scrape). Never:
//! acknowledges a message whose outcome is not stored, or hands a fresh delivery to the
//! router's in-memory queues (another replica may take it: every delivery is taken from its
//! queue, [`Store::due`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;

use super::nats::{self, Nats, READS_AT_ONCE, Settings, unavailable};
use super::nats_queue::{self, Leased, Queue};
use super::nats_state::Shared;
use super::{
    DeadLetter, Depth, Expired, Finish, Flushed, GroupRender, Health, Inhibitors, Record, Stateful,
    Store, StoreFuture, Stored, Submission,
};
use crate::dispatch::DispatchError;
use crate::state::{Listed, Silence, Verdict};

/// How often the counts the metrics show are read again.
const COUNT_EVERY: Duration = Duration::from_secs(5);

/// Every how many counts the state entries are counted too: listing every entry's subject
/// (a hundred thousand, with `dedup` on busy alerts) is the costly part, and the figure
/// moves slowly.
const STATE_EVERY: u64 = 12;

/// How long a worker waits, at first, before it looks at its queue again when it found
/// nothing to do: for deliveries another replica stored (its own wake it at once). It
/// doubles, to 4 times this, while the queue stays empty; a delivery this replica gave back
/// (held, or a retry) is looked for when it is due.
const LOOK_AGAIN: Duration = Duration::from_millis(500);

/// The most deliveries an operator's view of the outbox reads (one request each).
const VIEW_READS: usize = 500;

/// What the last takes from a target's queue saw.
#[derive(Clone, Copy, Default)]
struct Look {
    /// The last take got all it asked for: more may wait, so the worker looks again as
    /// soon as it has room.
    more: bool,
    /// Takes in a row that found nothing.
    idle: u32,
    /// The earliest due time of a delivery given back by the last take.
    given_back_until: Option<u64>,
}

/// The NATS backend as the router sees it.
pub(crate) struct NatsStore {
    shared: Arc<Shared>,
    location: PathBuf,
    /// How long a taken delivery stays this replica's without a word (`Settings::lease`):
    /// renewed every third of it while the attempt runs, so only a replica that died (or
    /// lost NATS) lets it go.
    ack_wait: Duration,
    /// Each target's queue, opened on first use (the same durable consumer on every
    /// replica).
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    /// What this replica has taken and not finished, by delivery id.
    leases: Arc<Mutex<HashMap<u64, Leased>>>,
    /// What the last takes from each target's queue saw: when the worker looks again.
    looks: Mutex<HashMap<String, Look>>,
    timers: tokio::sync::OnceCell<async_nats::jetstream::consumer::PullConsumer>,
    /// Told when a message lands on a silence's subject.
    silences_changed: Arc<tokio::sync::Notify>,
    watcher: tokio::task::JoinHandle<()>,
    counts: Arc<Counts>,
    metrics: NatsMetrics,
    background: tokio::task::JoinHandle<()>,
}

/// What the background task last counted, and whether the last request went through.
#[derive(Default)]
struct Counts {
    pending: AtomicU64,
    dead: AtomicU64,
    state: AtomicU64,
    /// `true` from a request that failed for want of the servers (NATS unreachable, no
    /// majority) until a write, or the background's count, goes through.
    failing: AtomicBool,
}

/// The backend's own metrics, registered beside the router's.
#[derive(Clone)]
pub(crate) struct NatsMetrics {
    /// Time of each commit to the shared store (a submit, an outcome), seconds.
    round_trip: prometheus_client::metrics::histogram::Histogram,
    /// Deliveries taken by this replica that another had taken before (it died, or lost
    /// its lease).
    redeliveries: prometheus_client::metrics::counter::Counter,
    /// Deliveries taken and not yet acknowledged, over every replica.
    pending_acks: prometheus_client::metrics::gauge::Gauge,
    /// Commits refused because another replica changed what this one read.
    conflicts: prometheus_client::metrics::gauge::Gauge,
}

impl NatsMetrics {
    fn new() -> NatsMetrics {
        NatsMetrics {
            round_trip: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 14),
            ),
            redeliveries: Default::default(),
            pending_acks: Default::default(),
            conflicts: Default::default(),
        }
    }
}

impl NatsStore {
    /// Connects (with the version gate and the stream check of [`nats::connect`]) and
    /// reads or makes the deployment's identity.
    pub(crate) async fn open(settings: &Settings) -> Result<NatsStore, DispatchError> {
        let ack_wait = settings.lease;
        let nats = nats::connect(settings).await.map_err(|e| {
            DispatchError::other(crate::dispatch::DispatchErrorKind::Config, e.to_string())
        })?;
        tracing::info!(version = %nats.version, stream = %settings.prefix, "connected to NATS JetStream");
        let location = PathBuf::from(format!(
            "nats {} (stream {})",
            settings.urls.join(","),
            settings.prefix
        ));
        let shared = Arc::new(open_shared(nats, &settings.prefix).await?);
        let counts = Arc::new(Counts::default());
        let leases: Arc<Mutex<HashMap<u64, Leased>>> = Arc::default();
        let metrics = NatsMetrics::new();
        let background = tokio::spawn(background(
            ack_wait,
            shared.clone(),
            leases.clone(),
            counts.clone(),
            metrics.clone(),
        ));
        let silences_changed = Arc::new(tokio::sync::Notify::new());
        let watcher = tokio::spawn(watch_silences(
            shared.nats().clone(),
            silences_changed.clone(),
        ));
        Ok(NatsStore {
            silences_changed,
            watcher,
            shared,
            location,
            ack_wait,
            queues: Mutex::default(),
            leases,
            looks: Mutex::default(),
            timers: tokio::sync::OnceCell::new(),
            counts,
            metrics,
            background,
        })
    }

    fn nats(&self) -> &Nats {
        self.shared.nats()
    }

    /// `target`'s queue, opened on first use. Every submit asks for its targets' queues:
    /// the lock covers the lookup only, never a request (two first uses at once both open
    /// the consumer, which is idempotent, and one is kept).
    async fn queue(&self, target: &str) -> Result<Arc<Queue>, DispatchError> {
        let known = self
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .cloned();
        if let Some(q) = known {
            return Ok(q);
        }
        let q = Arc::new(Queue::open(self.nats(), target, self.ack_wait).await?);
        Ok(self
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(target.to_owned())
            .or_insert(q)
            .clone())
    }

    /// Notes a request to NATS that failed for want of the servers: `/readyz` answers 503
    /// until a write goes through again (or the background's reads do, which need the
    /// stream's leader too). A read that went through proves nothing: a lone node answers
    /// some reads without a majority.
    fn noted<T>(&self, r: Result<T, DispatchError>) -> Result<T, DispatchError> {
        self.note(std::slice::from_ref(&r), false);
        r
    }

    /// Notes the result of a write: stored means the servers have a majority.
    fn wrote<T>(&self, r: Result<T, DispatchError>) -> Result<T, DispatchError> {
        self.note(std::slice::from_ref(&r), true);
        r
    }

    /// Failing when one of `results` failed for want of the servers; else, for writes,
    /// not failing when one of them was stored.
    fn note<T>(&self, results: &[Result<T, DispatchError>], writes: bool) {
        let unavailable = |r: &Result<T, DispatchError>| matches!(r, Err(e) if e.kind() == crate::dispatch::DispatchErrorKind::Unavailable);
        if results.iter().any(unavailable) {
            self.counts.failing.store(true, Ordering::Release);
        } else if writes && results.iter().any(Result::is_ok) {
            self.counts.failing.store(false, Ordering::Release);
        }
    }

    /// Times one commit for the round-trip histogram.
    async fn timed<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let out = f.await;
        self.metrics
            .round_trip
            .observe(started.elapsed().as_secs_f64());
        out
    }

    async fn finish_one(&self, item: Finish) -> Result<Option<Record>, DispatchError> {
        let id = item.id();
        let Some(leased) = self.leases_lock().remove(&id) else {
            // Not taken by this replica (finished already, or its lease lapsed and it went
            // back to the queue): nothing to write.
            return Ok(None);
        };
        let finished = self.finish_leased(&leased, item).await;
        if finished.is_err() {
            // Not stored: still this replica's, renewed, and handed to the worker again
            // when it takes again after its pause.
            self.leases_lock().insert(id, leased);
        }
        finished
    }

    /// Stores what the attempt at `leased` came to, then acknowledges its message.
    async fn finish_leased(
        &self,
        leased: &Leased,
        item: Finish,
    ) -> Result<Option<Record>, DispatchError> {
        let id = leased.record.id;
        let target = leased.record.spec.target.clone();
        let fallback_id = match &item {
            Finish::FallBack { to, .. } => {
                // The fallback's queue exists before its delivery does.
                self.queue(&to.spec.target).await?;
                self.shared.take_ids(1).await?.first().copied().unwrap_or(0)
            }
            Finish::Inhibited { check, now, .. } => {
                let (check, now) = (check.clone(), *now);
                self.shared
                    .apply(|state| check.forget(state, id, now))
                    .await?;
                0
            }
            _ => 0,
        };
        let queue = self.queue(&target).await?;
        queue.finish(self.nats(), leased, item, fallback_id).await
    }

    /// Notes what a take of `asked` from `target`'s queue saw.
    fn note_look(&self, target: &str, taken: &nats_queue::Taken, asked: usize) {
        let mut looks = self.looks.lock().unwrap_or_else(|p| p.into_inner());
        let look = looks.entry(target.to_owned()).or_default();
        look.more = taken.messages >= asked;
        look.idle = if taken.messages == 0 {
            look.idle.saturating_add(1)
        } else {
            0
        };
        look.given_back_until = taken.given_back_until;
    }

    fn leases_lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Leased>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The metrics this backend adds to the router's.
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let m = &self.metrics;
        registry.register(
            "switchyard_nats_round_trip_seconds",
            "Time of each commit to NATS JetStream (a submit, an outcome)",
            m.round_trip.clone(),
        );
        registry.register(
            "switchyard_nats_redeliveries",
            "Deliveries this replica took that another replica had taken before (it died or lost its lease)",
            m.redeliveries.clone(),
        );
        registry.register(
            "switchyard_nats_pending_acks",
            "Deliveries taken by a replica and not yet finished, over every replica",
            m.pending_acks.clone(),
        );
        registry.register(
            "switchyard_nats_conflicts",
            "Commits this replica made again because another replica changed what it read",
            m.conflicts.clone(),
        );
        registry.register_collector(Box::new(Traffic(self.nats().client.statistics())));
    }
}

/// The messages this replica's connection sent to and received from NATS, read from the
/// client's own counts at each scrape. Each answer to a request is one message received,
/// so with deliveries held (nothing pulled) the received count is the round trips.
struct Traffic(Arc<async_nats::Statistics>);

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Traffic")
    }
}

impl prometheus_client::collector::Collector for Traffic {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        let counts = [
            (
                "switchyard_nats_messages_sent",
                "Messages this replica sent to NATS: publishes, requests, acknowledgements, pulls",
                &self.0.out_messages,
            ),
            (
                "switchyard_nats_messages_received",
                "Messages this replica received from NATS: answers to its requests, deliveries pulled",
                &self.0.in_messages,
            ),
        ];
        for (name, help, count) in counts {
            let counter = ConstCounter::new(count.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

impl Drop for NatsStore {
    fn drop(&mut self) {
        self.background.abort();
        self.watcher.abort();
    }
}

/// Tells `changed` of every new message on the silences' subjects, from an ordered
/// consumer (the servers push each one as it is stored), until the store is dropped; a
/// consumer lost (a server restarted) is made again after a pause.
async fn watch_silences(nats: Nats, changed: Arc<tokio::sync::Notify>) {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    loop {
        let config = OrderedConfig {
            filter_subject: nats.subject("silence.>"),
            deliver_policy: DeliverPolicy::New,
            ..Default::default()
        };
        match nats.stream.create_consumer(config).await {
            Ok(consumer) => match consumer.messages().await {
                Ok(mut messages) => {
                    // Watching from now: what came before is read once more.
                    changed.notify_one();
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(_) => changed.notify_one(),
                            Err(e) => {
                                tracing::debug!(error = %e, "the silences' watch was interrupted");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot watch the silences"),
            },
            Err(e) => tracing::debug!(error = %e, "cannot watch the silences"),
        }
        // Whatever changed while nothing watched: the router reads the silences again.
        changed.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How long a start waits for the deployment's identity while the servers settle (a
/// stream just made elects its leader; replicas starting together race to make it).
const START_WITHIN: Duration = Duration::from_secs(30);

/// Reads or makes the deployment's identity, asking again while the servers do not answer
/// (for at most [`START_WITHIN`]); then fails saying what it could not do.
async fn open_shared(nats: Nats, stream: &str) -> Result<Shared, DispatchError> {
    let deadline = tokio::time::Instant::now() + START_WITHIN;
    loop {
        match Shared::open(nats.clone()).await {
            Ok(shared) => return Ok(shared),
            Err(e)
                if e.kind() == crate::dispatch::DispatchErrorKind::Unavailable
                    && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(error = %e, "NATS does not answer yet; asking again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(DispatchError::other(
                    e.kind(),
                    format!(
                        "cannot read the deployment's identity from NATS (stream {stream}, subject meta.store): {e}; is a majority of the servers up?"
                    ),
                ));
            }
        }
    }
}

/// Renews this replica's leases every third of `ack_wait`, and reads the counts every
/// [`COUNT_EVERY`], until the store is dropped.
async fn background(
    ack_wait: Duration,
    shared: Arc<Shared>,
    leases: Arc<Mutex<HashMap<u64, Leased>>>,
    counts: Arc<Counts>,
    metrics: NatsMetrics,
) {
    let mut renew = tokio::time::interval(ack_wait / 3);
    let mut count = tokio::time::interval(COUNT_EVERY);
    let mut round: u64 = 0;
    loop {
        tokio::select! {
            _ = renew.tick() => {
                let held: Vec<async_nats::jetstream::Message> = leases
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .map(|l| l.message().clone())
                    .collect();
                for m in held {
                    if let Err(e) = m.ack_with(async_nats::jetstream::AckKind::Progress).await {
                        tracing::warn!(error = %e, "cannot renew a taken delivery's lease; another replica may take it");
                    }
                }
            }
            _ = count.tick() => {
                let with_state = round.is_multiple_of(STATE_EVERY);
                round += 1;
                match read_counts(&shared, with_state).await {
                    Ok((pending, acks, dead, state)) => {
                        counts.pending.store(pending, Ordering::Relaxed);
                        counts.dead.store(dead, Ordering::Relaxed);
                        if let Some(state) = state {
                            counts.state.store(state, Ordering::Relaxed);
                        }
                        counts.failing.store(false, Ordering::Release);
                        metrics.pending_acks.set(i64::try_from(acks).unwrap_or(i64::MAX));
                    }
                    Err(e) => {
                        counts.failing.store(true, Ordering::Release);
                        tracing::warn!(error = %e, "cannot read the NATS backend's counts");
                    }
                }
                metrics.conflicts.set(i64::try_from(shared.conflicts()).unwrap_or(i64::MAX));
            }
        }
    }
}

/// Deliveries waiting (every queue's messages not yet handed out, and handed out but not
/// acknowledged), those handed out, dead letters, and (`with_state`) state entries.
async fn read_counts(
    shared: &Shared,
    with_state: bool,
) -> Result<(u64, u64, u64, Option<u64>), DispatchError> {
    let nats = shared.nats();
    let (mut pending, mut acks) = (0u64, 0u64);
    for (_, waiting, taken) in queue_counts(nats).await? {
        pending += waiting + taken;
        acks += taken;
    }
    let dead = nats.subjects("dead.>").await?.len() as u64;
    let state = if with_state {
        Some(nats.subjects("state.>").await?.len() as u64)
    } else {
        None
    };
    Ok((pending, acks, dead, state))
}

/// Per queue: its target, its messages not yet handed out, and those handed out and not
/// acknowledged (taken by a replica, or given back until due). Getting a consumer reads
/// its info: one request per queue.
async fn queue_counts(nats: &Nats) -> Result<Vec<(String, u64, u64)>, DispatchError> {
    let mut out = Vec::new();
    for target in queue_targets(nats).await? {
        let consumer: async_nats::jetstream::consumer::PullConsumer = nats
            .stream
            .get_consumer(&format!("deliver-{target}"))
            .await
            .map_err(unavailable)?;
        let info = consumer.cached_info();
        out.push((target, info.num_pending, info.num_ack_pending as u64));
    }
    Ok(out)
}

/// Every target that has a queue (a durable consumer `deliver-<target>`).
async fn queue_targets(nats: &Nats) -> Result<Vec<String>, DispatchError> {
    let mut names = nats.stream.consumer_names();
    let mut out = Vec::new();
    while let Some(name) = names.next().await {
        let name = name.map_err(unavailable)?;
        if let Some(target) = name.strip_prefix("deliver-") {
            out.push(target.to_owned());
        }
    }
    Ok(out)
}

/// The targets of a batch's deliveries, as far as they are known before the step runs:
/// plain ones and every rule's choices (a resolution owed to a target comes from a probe).
fn batch_targets(batch: &[Submission]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut note = |r: &Record| {
        let mut spec = Some(&r.spec);
        while let Some(s) = spec {
            if !out.contains(&s.target) {
                out.push(s.target.clone());
            }
            spec = s.fallback.as_deref();
        }
    };
    for sub in batch {
        sub.plain.iter().for_each(&mut note);
        if let Some(st) = &sub.stateful {
            for c in st.choices.iter().chain(&st.probes) {
                c.targets.iter().for_each(|(_, r)| note(r));
            }
        }
    }
    out
}

impl Store for NatsStore {
    fn store_id(&self) -> u64 {
        self.shared.store_id()
    }

    fn location(&self) -> &Path {
        &self.location
    }

    fn shared_queues(&self) -> bool {
        true
    }

    fn submit(
        &self,
        batch: Vec<Submission>,
    ) -> StoreFuture<'_, Result<Vec<Stored>, DispatchError>> {
        Box::pin(async move {
            // Each target's queue exists before its first delivery does: a replica that
            // dies right after the commit leaves work another replica finds.
            for target in batch_targets(&batch) {
                self.noted(self.queue(&target).await)?;
            }
            let stored = self.timed(self.shared.submit(batch)).await;
            self.wrote(stored)
        })
    }

    fn preview(
        &self,
        batch: Vec<Stateful>,
    ) -> StoreFuture<'_, Result<Vec<Vec<Verdict>>, DispatchError>> {
        Box::pin(async move {
            self.shared
                .look(|state| {
                    batch
                        .iter()
                        .map(|st| super::preview_one(state, st.clone()))
                        .collect()
                })
                .await
        })
    }

    fn state_list(
        &self,
        now: u64,
        limit: usize,
    ) -> StoreFuture<'_, Result<Vec<Listed>, DispatchError>> {
        Box::pin(self.shared.list(now, limit))
    }

    fn state_entries(&self) -> Result<u64, DispatchError> {
        Ok(self.counts.state.load(Ordering::Relaxed))
    }

    fn inhibitors(
        &self,
        checks: Vec<crate::state::Recheck>,
        now: u64,
    ) -> StoreFuture<'_, Result<Inhibitors, DispatchError>> {
        Box::pin(async move {
            self.shared
                .look(|state| checks.iter().map(|c| c.inhibitor(state, now)).collect())
                .await
        })
    }

    fn finish(
        &self,
        items: Vec<Finish>,
    ) -> StoreFuture<'_, Vec<Result<Option<Record>, DispatchError>>> {
        Box::pin(async move {
            let out: Vec<Result<Option<Record>, DispatchError>> = self
                .timed(
                    futures_util::stream::iter(items)
                        .map(|item| self.finish_one(item))
                        .buffered(READS_AT_ONCE)
                        .collect(),
                )
                .await;
            self.note(&out, true);
            out
        })
    }

    fn replay(
        &self,
        id: u64,
        now_ms: u64,
    ) -> StoreFuture<'_, Result<Option<Record>, DispatchError>> {
        // A dead letter's target has a queue already: the delivery was taken from it.
        Box::pin(nats_queue::replay(self.nats(), id, now_ms))
    }

    fn purge(&self, id: Option<u64>) -> StoreFuture<'_, Result<usize, DispatchError>> {
        Box::pin(nats_queue::purge(self.nats(), id))
    }

    fn due<'a>(
        &'a self,
        target: &'a str,
        now_ms: u64,
        limit: usize,
        skip: &'a (dyn Fn(u64) -> bool + Sync),
    ) -> StoreFuture<'a, Result<Vec<Record>, DispatchError>> {
        Box::pin(async move {
            // First what this replica took and the worker set aside (one alert's later
            // delivery, waiting for the earlier): it is this replica's until finished.
            let mut out: Vec<Record> = {
                let leases = self.leases_lock();
                let mut mine: Vec<&Leased> = leases
                    .values()
                    .filter(|l| l.record.spec.target == target && !skip(l.record.id))
                    .collect();
                mine.sort_by_key(|l| l.record.id);
                mine.into_iter()
                    .take(limit)
                    .map(|l| l.record.clone())
                    .collect()
            };
            if out.len() < limit {
                let queue = self.noted(self.queue(target).await)?;
                let asked = limit - out.len();
                let taken = self.noted(
                    queue
                        .take_counted(self.nats(), asked, now_ms, Duration::ZERO)
                        .await,
                )?;
                self.note_look(target, &taken, asked);
                let taken = taken.leased;
                let mut leases = self.leases_lock();
                for leased in taken {
                    if leased.handed > 1 {
                        self.metrics.redeliveries.inc();
                    }
                    out.push(leased.record.clone());
                    leases.insert(leased.record.id, leased);
                }
            }
            Ok(out)
        })
    }

    fn next_due<'a>(
        &'a self,
        target: &'a str,
        skip: &'a (dyn Fn(u64) -> bool + Sync),
    ) -> StoreFuture<'a, Result<Option<u64>, DispatchError>> {
        let now = crate::dispatch::now_ms();
        let set_aside = self
            .leases_lock()
            .values()
            .any(|l| l.record.spec.target == target && !skip(l.record.id));
        // The queue's servers know when a held delivery is due, this replica knows only
        // those it gave back: it looks again then, or after its pause.
        let look = self
            .looks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(target)
            .copied()
            .unwrap_or_default();
        let at = if set_aside || look.more {
            now
        } else {
            let pause = LOOK_AGAIN.as_millis() as u64 * (1 << look.idle.saturating_sub(1).min(2));
            // A little past the time: the servers hand it out again when its delay ends.
            look.given_back_until
                .map_or(now + pause, |t| (t + 5).min(now + pause))
        };
        Box::pin(std::future::ready(Ok(Some(at))))
    }

    fn fresh_records<'a>(
        &'a self,
        ids: &'a [u64],
    ) -> StoreFuture<'a, Result<Vec<Record>, DispatchError>> {
        // Only deliveries this replica took come back to the worker by id (after a pause).
        let leases = self.leases_lock();
        let out = ids
            .iter()
            .filter_map(|id| leases.get(id).map(|l| l.record.clone()))
            .collect();
        Box::pin(std::future::ready(Ok(out)))
    }

    fn fresh_pending<'a>(
        &'a self,
        _each: &'a mut (dyn FnMut(u64, &str) + Send),
    ) -> StoreFuture<'a, Result<(), DispatchError>> {
        // Fresh deliveries wait in their queues, which every worker takes from.
        Box::pin(std::future::ready(Ok(())))
    }

    fn pending_targets(&self) -> StoreFuture<'_, Result<Vec<String>, DispatchError>> {
        Box::pin(queue_targets(self.nats()))
    }

    fn pending_alerts<'a>(
        &'a self,
        _target: &'a str,
        _now_ms: u64,
    ) -> StoreFuture<'a, Result<Vec<(u64, String)>, DispatchError>> {
        // One alert's deliveries are ordered within the replica that takes them; what
        // other replicas hold is not listed (docs/nats.md, "Order").
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    fn outbox_view(
        &self,
        limit: usize,
    ) -> StoreFuture<'_, Result<super::OutboxView, DispatchError>> {
        Box::pin(async move {
            let nats = self.nats();
            let mut view = super::OutboxView::default();
            // Per queue, from its consumer: not yet taken by any replica ("fresh"), and
            // taken (in flight on some replica, or given back until it is due).
            for (target, waiting, taken) in queue_counts(nats).await? {
                super::count_into(&mut view.targets, &target, true, waiting);
                super::count_into(&mut view.targets, &target, false, taken);
            }
            view.targets.retain(|t| t.fresh + t.waiting > 0);
            // The deliveries due later, from a bounded read of the queues' messages.
            let now = crate::dispatch::now_ms();
            let mut later: Vec<Record> = Vec::new();
            for subject in nats.subjects("deliver.>").await?.iter().take(VIEW_READS) {
                if let Some((_, bytes)) = nats.last(subject).await.map_err(unavailable)?
                    && let Ok(r) = serde_json::from_slice::<Record>(&bytes)
                    && (r.attempts > 0 || r.next_at_ms > now)
                {
                    later.push(r);
                }
            }
            later.sort_by_key(|r| (r.next_at_ms, r.id));
            view.waiting = later.iter().take(limit).map(super::Waiting::of).collect();
            Ok(view)
        })
    }

    fn depth(&self) -> Result<Depth, DispatchError> {
        Ok(Depth {
            pending: self.counts.pending.load(Ordering::Relaxed),
            dead: self.counts.dead.load(Ordering::Relaxed),
        })
    }

    #[cfg(test)]
    fn depth_now(&self) -> StoreFuture<'_, Result<Depth, DispatchError>> {
        Box::pin(async move {
            // Deliveries whose subject holds one (not an emptied marker), and dead letters.
            let mut pending = 0;
            for subject in self.nats().subjects("deliver.>").await? {
                if let Some((_, bytes)) = self.nats().last(&subject).await.map_err(unavailable)?
                    && !bytes.is_empty()
                {
                    pending += 1;
                }
            }
            let dead = nats_queue::dead_letters(self.nats(), usize::MAX)
                .await?
                .len() as u64;
            Ok(Depth { pending, dead })
        })
    }

    fn dead_letters(
        &self,
        limit: usize,
    ) -> StoreFuture<'_, Result<Vec<DeadLetter>, DispatchError>> {
        Box::pin(nats_queue::dead_letters(self.nats(), limit))
    }

    #[cfg(test)]
    fn dead_letter(&self, id: u64) -> StoreFuture<'_, Result<Option<DeadLetter>, DispatchError>> {
        Box::pin(nats_queue::dead_letter(self.nats(), id))
    }

    fn health(&self) -> Health {
        Health {
            writable: !self.counts.failing.load(Ordering::Acquire),
            unreadable: 0,
            lost: 0,
        }
    }

    fn flush_groups(
        &self,
        now: u64,
        mut render: GroupRender,
    ) -> StoreFuture<'_, Result<Flushed, DispatchError>> {
        Box::pin(async move {
            let timers = self
                .timers
                .get_or_try_init(|| self.shared.timers(self.ack_wait))
                .await?;
            let mut flushed = self
                .shared
                .flush_due(timers, now, 64, Duration::ZERO, &mut render)
                .await?;
            for target in &flushed.targets {
                self.queue(target).await?;
            }
            // The servers hand a timer out when it is due; this replica asks again soon.
            flushed.next = Some(now + LOOK_AGAIN.as_millis() as u64);
            Ok(flushed)
        })
    }

    fn silences(&self) -> StoreFuture<'_, Result<Vec<Silence>, DispatchError>> {
        Box::pin(super::nats_silence::list(self.nats()))
    }

    fn add_silence(
        &self,
        silence: Silence,
        now: u64,
    ) -> StoreFuture<'_, Result<Silence, DispatchError>> {
        Box::pin(super::nats_silence::add(self.nats(), silence, now))
    }

    fn expire_silence(
        &self,
        id: u64,
        now: u64,
    ) -> StoreFuture<'_, Result<Option<Expired>, DispatchError>> {
        Box::pin(super::nats_silence::expire(self.nats(), id, now))
    }

    fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        NatsStore::register(self, registry);
    }

    fn silence_changes(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.silences_changed.clone())
    }

    fn release(&self) -> StoreFuture<'_, ()> {
        let held: Vec<Leased> = self.leases_lock().drain().map(|(_, l)| l).collect();
        Box::pin(async move {
            for l in held {
                // Not finished: handed out again at once (the same id, the same key).
                if let Err(e) = l
                    .message()
                    .ack_with(async_nats::jetstream::AckKind::Nak(None))
                    .await
                {
                    tracing::warn!(delivery = l.record.id, error = %e, "cannot give back a taken delivery; another replica takes it when its lease runs out");
                }
            }
            // Sent before the process goes: one not sent waits out its lease.
            if let Err(e) = self.nats().client.flush().await {
                tracing::warn!(error = %e, "cannot flush the deliveries given back; they go to another replica when their leases run out");
            }
        })
    }
}

#[cfg(test)]
#[path = "nats_store_test.rs"]
mod tests;
