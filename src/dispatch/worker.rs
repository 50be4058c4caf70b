//! One worker per target: takes the target's new deliveries from its in-memory queue and
//! its due retries from the store, sends them (at most `in_flight` at a time), and
//! records finished attempts' outcomes together in one store write ([`Recording`]). A
//! finished attempt frees its slot at once; its delivery stays out of the worker's reads
//! until its outcome is recorded, so it is never sent twice. A worker pauses (`Stall`)
//! while outcomes cannot be recorded (a full disk), so nothing is sent twice in a hurry
//! and nothing is lost.
//!
//! Counters move only after an outcome is recorded: whoever reads them never sees a
//! delivery counted as delivered while the store still holds it as pending.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustc_hash::FxHashSet;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::attempt::{AttemptOutcome, attempt, settle};
use super::limit::{Answer, Limit};
use super::metrics::{Counted, TargetMetrics};
use super::order::{From, Order};
use super::store::{Finish, Record};
use super::{DispatchError, RouterCore, Signal, now_ms};

/// One target's worker: takes its new deliveries from its in-memory queue and its due
/// retries from the outbox, and sends them, at most `in_flight` at a time.
pub(super) async fn worker(inner: Arc<RouterCore>, target: String, signal: Arc<Signal>) {
    // Every delivery this worker has taken and whose outcome is not recorded yet: sent,
    // finished and waiting in `recording`, or paused. Delivery ids are the store's own
    // numbers: the unkeyed hash is enough.
    let mut in_flight: FxHashSet<u64> = FxHashSet::default();
    let mut recording = Recording::default();
    let mut series = inner.metrics.for_target(&target);
    let (done_tx, mut done_rx) = mpsc::channel::<Finished>(inner.in_flight.max(1));
    let mut limit = Limit::new(inner.in_flight, inner.adaptive, tokio::time::Instant::now());
    series.in_flight_limit.set(limit_gauge(&limit));
    let mut shutdown = inner.shutdown.clone();
    let mut sends = JoinSet::new();
    let mut url = LastUrl::default();
    // When the outbox's table of attempted deliveries may next have one due for this
    // target: read it at start, then when its next row is due, when this worker schedules
    // a retry, or when told of a fallback or replay (`Signal::table`). After a failed
    // read (of the table or of queued ids) it is also the wake-up to try again.
    let mut table_at: u64 = 0;
    let mut stall = Stall::default();
    // One alert's deliveries go in the order they were accepted, those accepted before a
    // restart included.
    let mut order = Order::default();
    match inner.store.pending_alerts(&target, now_ms()).await {
        Ok(pending) => order.know(pending),
        Err(e) => tracing::error!(
            target = %target,
            error = %e,
            "cannot read the outbox's pending deliveries: one alert's deliveries accepted before this start may go out of order"
        ),
    }
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
        let free = limit.get().saturating_sub(recording.busy(&in_flight));
        if free > 0 && !stalled {
            match take_fresh(&inner, &target, free).await {
                Ok(fresh) => {
                    batch = fresh
                        .into_iter()
                        .filter(|r| order.admit(r.id, r.alert_id.as_deref(), From::Fresh))
                        .collect();
                }
                Err(e) => {
                    tracing::error!(target = %target, error = %e, "cannot read the outbox");
                    table_at = table_at.min(now_ms() + 1000);
                }
            }
            in_flight.extend(batch.iter().map(|r| r.id));
        }
        // Read the table when a quarter of the slots are free (or all are): one query
        // fills several slots instead of one query per finished attempt.
        // The limit of this turn (it moves only at the end of a turn).
        let cap = limit.get();
        let may_read = |busy: usize| {
            let free = cap.saturating_sub(busy);
            free > 0 && (busy == 0 || free >= cap.div_ceil(4))
        };
        let now = now_ms();
        if table_at <= now && may_read(recording.busy(&in_flight)) && !stalled {
            let free = cap.saturating_sub(recording.busy(&in_flight));
            let skip = |id: u64| in_flight.contains(&id) || order.is_held(id);
            let due = inner.store.due(&target, now, free, &skip).await;
            match due {
                Ok(due) => {
                    let due: Vec<Record> = due
                        .into_iter()
                        .filter(|r| order.admit(r.id, r.alert_id.as_deref(), From::Table))
                        .collect();
                    in_flight.extend(due.iter().map(|r| r.id));
                    match recheck(&inner, due, now, &done_tx, &mut sends).await {
                        Ok(due) => batch.extend(due),
                        Err((ids, e)) => {
                            tracing::error!(target = %target, error = %e, "cannot check held deliveries against the inhibits; they wait");
                            for id in &ids {
                                in_flight.remove(id);
                            }
                        }
                    }
                    let skip = |id: u64| in_flight.contains(&id) || order.is_held(id);
                    table_at = match inner.store.next_due(&target, &skip).await {
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
            send(&inner, &series, r, parsed, &done_tx, &mut sends);
        }
        let busy_now = recording.busy(&in_flight);
        series
            .in_flight
            .set(i64::try_from(busy_now).unwrap_or(i64::MAX));
        if let Some(done) = recording.take() {
            recording.start(&inner, done);
        }
        // Deliveries wait with every slot busy: new ones queued, or the table due.
        let waiting =
            busy_now >= cap && !stalled && (table_at <= now_ms() || inner.lanes.has(&target));
        let instant = tokio::time::Instant::now();
        limit.tick(instant, waiting);
        if limit.get() != cap {
            series.in_flight_limit.set(limit_gauge(&limit));
            if limit.get() > cap {
                // Raised: the new slot takes a waiting delivery now.
                continue;
            }
        }
        let mut sleep = if let Some(until) = stall.until {
            until.saturating_duration_since(instant)
        } else if table_at == u64::MAX || !may_read(busy_now) {
            Duration::from_secs(3600)
        } else {
            Duration::from_millis(table_at.saturating_sub(now_ms()))
        };
        if let Some(at) = limit.next_look() {
            sleep = sleep.min(at.saturating_duration_since(instant));
        }
        tokio::select! {
            _ = signal.notify.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => {}
            Some(first) = done_rx.recv(), if recording.has_room() => {
                // Take every finished attempt: their slots are free, and their outcomes
                // wait to be recorded together.
                let now = tokio::time::Instant::now();
                let (r, outcome, took) = first;
                limit.answered(now, answer(&outcome, took));
                recording.push((r, outcome));
                while recording.has_room() && let Ok((r, outcome, took)) = done_rx.try_recv() {
                    limit.answered(now, answer(&outcome, took));
                    recording.push((r, outcome));
                }
                // Free the finished send tasks: a JoinSet keeps each until it is joined.
                while sends.try_join_next().is_some() {}
            }
            (results, kinds, retry_at) = recording.done(), if recording.is_running() => {
                table_at = table_at.min(retry_at);
                let r = tally(&inner, &mut series, results, kinds);
                for id in &r.recorded {
                    in_flight.remove(id);
                }
                // The next delivery of each settled one's alert, if it waits, takes its turn.
                for id in &r.settled {
                    match order.settled(*id) {
                        Some((next, From::Fresh)) => inner.lanes.put_back(&target, &[next]),
                        Some((_, From::Table)) => table_at = 0,
                        None => {}
                    }
                }
                match r.error {
                    // Not recorded: they stay in flight, and the worker pauses.
                    Some(e) => stall.failed(&target, r.unrecorded, &e),
                    None => stall.recorded(),
                }
            }
        }
    }
    // Shutting down: the outcomes waiting are recorded, then those of the requests in
    // flight as they finish (the router bounds how long), the same way.
    drop(done_tx);
    loop {
        if let Some(done) = recording.take() {
            recording.start(&inner, done);
        }
        if recording.is_running() {
            let (results, kinds, _) = recording.done().await;
            tally(&inner, &mut series, results, kinds);
        } else if let Some((r, outcome, _)) = done_rx.recv().await {
            recording.push((r, outcome));
        } else {
            break;
        }
    }
    series.in_flight.set(0);
    while sends.join_next().await.is_some() {}
}

/// Asks the store whether an inhibit keeps out each held firing that is due for the first
/// time (inhibition is decided when a delivery would be made); answers the deliveries to
/// send. One kept out is not attempted: its outcome ([`AttemptOutcome::Inhibited`]) goes
/// the way of every attempt's, recorded and counted with the rest ([`Recording`]). When
/// the store cannot answer, the held ones are given back (their ids) to be read again
/// later.
async fn recheck(
    inner: &Arc<RouterCore>,
    due: Vec<Record>,
    now: u64,
    done: &mpsc::Sender<Finished>,
    sends: &mut JoinSet<()>,
) -> Result<Vec<Record>, (Vec<u64>, DispatchError)> {
    let (held, mut out): (Vec<Record>, Vec<Record>) = due
        .into_iter()
        .partition(|r| r.attempts == 0 && r.recheck.is_some());
    if held.is_empty() {
        return Ok(out);
    }
    let checks: Vec<crate::state::Recheck> = held
        .iter()
        .filter_map(|r| r.recheck.as_deref().cloned())
        .collect();
    let verdicts = match inner.store.inhibitors(checks, now).await {
        Ok(v) => v,
        Err(e) => return Err((held.iter().map(|r| r.id).collect(), e)),
    };
    for (mut r, verdict) in held.into_iter().zip(verdicts) {
        // Checked: an attempt that fails is retried without checking again.
        let check = r.recheck.take();
        match (verdict, check) {
            (None, _) | (_, None) => out.push(r),
            (Some((inhibit, by)), Some(check)) => {
                let tx = done.clone();
                let outcome = AttemptOutcome::Inhibited {
                    check,
                    inhibit,
                    by,
                    now,
                };
                sends.spawn(async move {
                    let _ = tx.send((r, outcome, Duration::ZERO)).await;
                });
            }
        }
    }
    Ok(out)
}

/// Up to `n` new deliveries from `target`'s queue; those queued by id alone are read from
/// the outbox. On a failed read they go back to the queue.
async fn take_fresh(
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
        match inner.store.fresh_records(&by_id).await {
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
    series: &TargetMetrics,
    r: Record,
    url: Option<reqwest::Url>,
    done: &mpsc::Sender<Finished>,
    sends: &mut JoinSet<()>,
) {
    let (client, backoff, tx) = (inner.client.clone(), inner.backoff, done.clone());
    let store_id = inner.store.store_id();
    let (attempts, attempt_seconds) = (series.attempts.clone(), series.attempt_seconds.clone());
    let span = tracing::info_span!(
        "delivery",
        delivery = r.id,
        alert_id = r.alert_id.as_deref().unwrap_or("-"),
        target = %r.spec.target,
        attempt = r.attempts + 1
    );
    sends.spawn(tracing::Instrument::instrument(
        async move {
            let started = std::time::Instant::now();
            let outcome = attempt(&client, &r, url, store_id, backoff).await;
            let took = started.elapsed();
            attempts.inc();
            attempt_seconds.observe(took.as_secs_f64());
            let _ = tx.send((r, outcome, took)).await;
        },
        span,
    ));
}

/// A finished attempt, with how long its request took (zero when none was sent).
type Finished = (Record, AttemptOutcome, Duration);

/// What a finished attempt tells its target's in-flight limit.
fn answer(outcome: &AttemptOutcome, took: Duration) -> Answer {
    match outcome {
        AttemptOutcome::Delivered => Answer::Took(took),
        AttemptOutcome::Retry { .. } => Answer::Struggling,
        AttemptOutcome::GiveUp { .. } | AttemptOutcome::Inhibited { .. } => Answer::Other,
    }
}

/// The limit as a gauge's value.
fn limit_gauge(limit: &Limit) -> i64 {
    i64::try_from(limit.get()).unwrap_or(i64::MAX)
}

/// The most finished attempts waiting to be recorded: beyond it, finished attempts stay
/// in the channel and keep their slots, so a slow disk slows the sending instead of
/// filling memory.
const MAX_WAITING: usize = 1024;

/// A worker's finished attempts waiting for their outcomes to be recorded, and the one
/// record in progress. One record at a time: the next one takes every outcome that
/// finished meanwhile, so a busy target's outcomes share commits (the store may also let
/// a record wait briefly for others: [`crate::dispatch::store::Store::finish`]).
#[derive(Default)]
struct Recording {
    waiting: Vec<(Record, AttemptOutcome)>,
    running: Option<Running>,
}

/// A record in progress.
struct Running {
    future: RecordFuture,
    /// How many outcomes it holds.
    outcomes: usize,
    /// The earliest retry it schedules (`u64::MAX` for none): the table is read for it
    /// once the record is done, not before (a delivery is not read back while its
    /// outcome is unrecorded).
    retry_at: u64,
}

type RecordFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (Vec<Result<Option<Record>, DispatchError>>, Vec<Kind>)>
            + Send,
    >,
>;

impl Recording {
    /// Outcomes not recorded yet: waiting or in the running record.
    fn len(&self) -> usize {
        self.waiting.len() + self.running.as_ref().map_or(0, |r| r.outcomes)
    }

    /// The requests in flight among the worker's unrecorded deliveries (`in_flight`):
    /// finished attempts waiting to be recorded hold no slot.
    fn busy(&self, in_flight: &FxHashSet<u64>) -> usize {
        in_flight.len().saturating_sub(self.len())
    }

    /// Whether another finished attempt may wait here.
    fn has_room(&self) -> bool {
        self.waiting.len() < MAX_WAITING
    }

    /// One finished attempt.
    fn push(&mut self, done: (Record, AttemptOutcome)) {
        log_outcome(&done.0, &done.1);
        self.waiting.push(done);
    }

    /// Every waiting outcome, oldest first, if no record is running and any waits.
    fn take(&mut self) -> Option<Vec<(Record, AttemptOutcome)>> {
        if self.running.is_some() || self.waiting.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.waiting))
    }

    /// Starts the record of `done` ([`Recording::take`]'s).
    fn start(&mut self, inner: &Arc<RouterCore>, done: Vec<(Record, AttemptOutcome)>) {
        let outcomes = done.len();
        let retry_at = done
            .iter()
            .filter_map(|(_, outcome)| match outcome {
                AttemptOutcome::Retry { next_at_ms, .. } => Some(*next_at_ms),
                _ => None,
            })
            .min()
            .unwrap_or(u64::MAX);
        let (items, kinds) = prepare(done);
        let inner = Arc::clone(inner);
        self.running = Some(Running {
            future: Box::pin(async move {
                let results = inner.store.finish(items).await;
                (results, kinds)
            }),
            outcomes,
            retry_at,
        });
    }

    fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The running record's results, and the earliest retry it scheduled. Only while
    /// [`Recording::is_running`]; the record is done once this answers. Cancel-safe: the
    /// record goes on if this future is dropped.
    async fn done(&mut self) -> (Vec<Result<Option<Record>, DispatchError>>, Vec<Kind>, u64) {
        let Some(running) = &mut self.running else {
            return std::future::pending().await;
        };
        let (results, kinds) = (&mut running.future).await;
        let retry_at = running.retry_at;
        self.running = None;
        (results, kinds, retry_at)
    }
}

/// What a finished attempt's outcome counts as, once recorded: its id, target, counter,
/// whether it settles the delivery, and the rule of an inhibit that kept it out.
type Kind = (u64, String, Counted, bool, Option<String>);

/// The store's items for finished attempts, and what each counts as once recorded.
fn prepare(done: Vec<(Record, AttemptOutcome)>) -> (Vec<Finish>, Vec<Kind>) {
    let mut items = Vec::with_capacity(done.len());
    let mut kinds = Vec::with_capacity(done.len());
    for (r, outcome) in done {
        let target = r.spec.target.clone();
        let suppressed = match &outcome {
            AttemptOutcome::Inhibited { check, .. } => Some(check.rule.clone()),
            _ => None,
        };
        let finish = settle(r, outcome);
        kinds.push((
            finish.id(),
            target,
            counted(&finish),
            finish.settles(),
            suppressed,
        ));
        items.push(finish);
    }
    (items, kinds)
}

/// Counts the outcomes a record wrote; answers which it wrote and which it could not.
///
/// The counters move only after the commit, so that whoever reads them (`stats()`,
/// `/metrics`, a test) never sees a delivery counted as delivered while the outbox still
/// holds it as pending.
fn tally(
    inner: &Arc<RouterCore>,
    series: &mut TargetMetrics,
    results: Vec<Result<Option<Record>, DispatchError>>,
    kinds: Vec<Kind>,
) -> Recorded {
    let mut out = Recorded::default();
    for (result, (id, target, kind, settles, suppressed)) in results.into_iter().zip(kinds) {
        match result {
            Ok(created) => {
                out.recorded.push(id);
                if settles {
                    out.settled.push(id);
                }
                series.count(&inner.metrics, target, kind);
                if let Some(rule) = suppressed {
                    inner.metrics.suppressed(&rule, "inhibited");
                }
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

/// What a record could write: the ids whose outcome is on disk, and those whose outcome
/// could not be written (they are still pending in the outbox, as before the attempt).
#[derive(Default)]
struct Recorded {
    recorded: Vec<u64>,
    /// Of `recorded`, those no longer pending for the target (not retried).
    settled: Vec<u64>,
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

/// What a recorded outcome counts as.
fn counted(finish: &Finish) -> Counted {
    match finish {
        Finish::Delivered(_) => Counted::Delivered,
        Finish::Retry(_) => Counted::Retried,
        Finish::FallBack { .. } => Counted::FellBack,
        Finish::Dead(_) => Counted::Dead,
        Finish::Inhibited { .. } => Counted::Inhibited,
    }
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
        AttemptOutcome::Inhibited { inhibit, by, .. } => {
            tracing::info!(delivery = r.id, alert_id = r.alert_id.as_deref().unwrap_or("-"), target = %r.spec.target, inhibit = %inhibit, by = %by, "held delivery inhibited when due: not sent");
        }
        AttemptOutcome::GiveUp {
            attempts, error, ..
        } => {
            tracing::warn!(delivery = r.id, alert_id = r.alert_id.as_deref().unwrap_or("-"), target = %r.spec.target, attempts = attempts, error = %error, fallback = r.spec.fallback.as_ref().map(|f| f.target.as_str()), "delivery given up");
        }
    }
}

#[cfg(test)]
#[path = "worker_test.rs"]
mod tests;
