//! One worker per target: takes the target's new deliveries from its in-memory queue and
//! its due retries from the store, sends them (at most `in_flight` at a time), and
//! records every finished attempt's outcome in one store write before freeing its slot.
//! A worker pauses (`Stall`) while outcomes cannot be recorded (a full disk), so nothing
//! is sent twice in a hurry and nothing is lost.
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
use super::metrics::{Counted, TargetMetrics};
use super::order::{From, Order};
use super::store::{Finish, Record};
use super::{DispatchError, RouterCore, Signal, now_ms};

/// One target's worker: takes its new deliveries from its in-memory queue and its due
/// retries from the outbox, and sends them, at most `in_flight` at a time.
pub(super) async fn worker(inner: Arc<RouterCore>, target: String, signal: Arc<Signal>) {
    // Delivery ids are the store's own numbers: the unkeyed hash is enough.
    let mut in_flight: FxHashSet<u64> = FxHashSet::default();
    let mut series = inner.metrics.for_target(&target);
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
        let free = inner.in_flight.saturating_sub(in_flight.len());
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
        let may_read = |busy: usize| {
            let free = inner.in_flight.saturating_sub(busy);
            free > 0 && (busy == 0 || free >= inner.in_flight.div_ceil(4))
        };
        let now = now_ms();
        if table_at <= now && may_read(in_flight.len()) && !stalled {
            let free = inner.in_flight.saturating_sub(in_flight.len());
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
        series
            .in_flight
            .set(i64::try_from(in_flight.len()).unwrap_or(i64::MAX));
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
                let r = record(&inner, &mut series, done).await;
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
                // Free the finished send tasks: a JoinSet keeps each until it is joined.
                while sends.try_join_next().is_some() {}
            }
        }
    }
    // Shutting down: let requests in flight finish (the router bounds how long).
    drop(done_tx);
    while let Some(done) = done_rx.recv().await {
        record(&inner, &mut series, vec![done]).await;
    }
    series.in_flight.set(0);
    while sends.join_next().await.is_some() {}
}

/// Asks the store whether an inhibit keeps out each held firing that is due for the first
/// time (inhibition is decided when a delivery would be made); answers the deliveries to
/// send. One kept out is not attempted: its outcome ([`AttemptOutcome::Inhibited`]) goes
/// the way of every attempt's, recorded and counted by [`record`]. When the store cannot
/// answer, the held ones are given back (their ids) to be read again later.
async fn recheck(
    inner: &Arc<RouterCore>,
    due: Vec<Record>,
    now: u64,
    done: &mpsc::Sender<(Record, AttemptOutcome)>,
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
                    let _ = tx.send((r, outcome)).await;
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
    done: &mpsc::Sender<(Record, AttemptOutcome)>,
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
            attempts.inc();
            attempt_seconds.observe(started.elapsed().as_secs_f64());
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
async fn record(
    inner: &Arc<RouterCore>,
    series: &mut TargetMetrics,
    done: Vec<(Record, AttemptOutcome)>,
) -> Recorded {
    let mut items = Vec::with_capacity(done.len());
    let mut kinds = Vec::with_capacity(done.len());
    for (r, outcome) in done {
        log_outcome(&r, &outcome);
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
    let results = inner.store.finish(items).await;
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

/// What [`record`] could write: the ids whose outcome is on disk, and those whose outcome
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
