//! Each target's deliveries on NATS, shared by the replicas: one durable pull consumer per
//! target that every replica takes from, so work is spread and a replica that dies
//! mid-delivery loses nothing (docs/nats.md, "The deliveries").
//!
//! Owns: taking due deliveries (a held one, not yet due, is given back with the delay it
//! still has), and storing what an attempt came to ([`Finish`]) as one commit on the
//! delivery's own subject, compare-and-set on the message that was taken, before the
//! message is acknowledged. Never: decides retries or fallbacks (`dispatch/attempt.rs`
//! does), or acknowledges a message whose outcome is not stored (it comes back after the
//! consumer's `ack_wait`, with the same delivery id, hence the same `Idempotency-Key`).

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;

use super::nats::{CommitError, Nats, READS_AT_ONCE, Write, delivery_subject, unavailable};
use super::{DeadLetter, Finish, Record};
use crate::dispatch::DispatchError;

/// Every dead letter's target and id (`dead.<target>.<id>`), by id.
async fn dead_ids(nats: &Nats, filter: &str) -> Result<Vec<(String, u64)>, DispatchError> {
    let mut out: Vec<(String, u64)> = nats
        .subjects(filter)
        .await?
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, '.').skip(1);
            Some((parts.next()?.to_owned(), parts.next()?.parse().ok()?))
        })
        .collect();
    out.sort_by_key(|(_, id)| *id);
    Ok(out)
}

/// Dead letter `id` of `target` and the sequence of its message; `None` when it is gone.
/// One that cannot be read is answered as unreadable, holding its bytes, never skipped.
async fn read_dead(
    nats: &Nats,
    target: &str,
    id: u64,
) -> Result<Option<(u64, DeadLetter)>, DispatchError> {
    match nats
        .last(&dead_subject(target, id))
        .await
        .map_err(unavailable)?
    {
        Some((seq, bytes)) if !bytes.is_empty() => {
            let dead = serde_json::from_slice(&bytes).unwrap_or_else(|e: serde_json::Error| {
                DeadLetter::unreadable(id, target.to_owned(), &bytes, &e.to_string(), 0)
            });
            Ok(Some((seq, dead)))
        }
        _ => Ok(None),
    }
}

/// The dead letters under `filter` (a replayed one's empty marker is not one), oldest
/// first (by id), at most `limit`, each with the sequence of its message: read side by
/// side, and no further than `limit` needs.
async fn live_dead(
    nats: &Nats,
    filter: &str,
    limit: usize,
) -> Result<Vec<(u64, DeadLetter)>, DispatchError> {
    let ids = dead_ids(nats, filter).await?;
    let mut reads = futures_util::stream::iter(ids)
        .map(|(target, id)| async move { read_dead(nats, &target, id).await })
        .buffered(READS_AT_ONCE);
    let mut out = Vec::new();
    while out.len() < limit {
        match reads.next().await {
            Some(read) => out.extend(read?),
            None => break,
        }
    }
    Ok(out)
}

/// Dead letters, oldest first (by id), at most `limit`.
pub(crate) async fn dead_letters(
    nats: &Nats,
    limit: usize,
) -> Result<Vec<DeadLetter>, DispatchError> {
    let live = live_dead(nats, "dead.>", limit).await?;
    Ok(live.into_iter().map(|(_, d)| d).collect())
}

/// Dead letter `id`, if there is one.
#[cfg(test)]
pub(crate) async fn dead_letter(nats: &Nats, id: u64) -> Result<Option<DeadLetter>, DispatchError> {
    let live = live_dead(nats, &format!("dead.*.{id}"), 1).await?;
    Ok(live.into_iter().next().map(|(_, d)| d))
}

/// Puts dead letter `id` back on its target's queue, due at `now_ms` with its attempts
/// reset, in the commit that removes the dead letter; `Ok(None)` if there is none; an
/// error of kind `Refused` for one whose delivery could not be read.
pub(crate) async fn replay(
    nats: &Nats,
    id: u64,
    now_ms: u64,
) -> Result<Option<Record>, DispatchError> {
    let live = live_dead(nats, &format!("dead.*.{id}"), 1).await?;
    if let Some((seq, dead)) = live.into_iter().next() {
        let target = dead.target.clone();
        let record = dead.into_retry(now_ms).map_err(|why| {
            DispatchError::other(crate::dispatch::DispatchErrorKind::Refused, why)
        })?;
        let subject = delivery_subject(&record.spec.target, record.id);
        let before = nats
            .last(&subject)
            .await
            .map_err(unavailable)?
            .map_or(0, |(s, _)| s);
        let writes = vec![
            Write {
                subject: dead_subject(&target, id),
                payload: Vec::new(),
                expect: Some(seq),
                ttl_secs: Some(MARKER_TTL_SECS),
            },
            Write {
                subject,
                payload: serde_json::to_vec(&record).unwrap_or_default(),
                expect: Some(before),
                ttl_secs: None,
            },
        ];
        return match nats.commit(writes).await {
            Ok(_) => Ok(Some(record)),
            // Another operator replayed or purged it meanwhile.
            Err(CommitError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into_error()),
        };
    }
    Ok(None)
}

/// Deletes dead letter `id`, or every dead letter; answers how many.
pub(crate) async fn purge(nats: &Nats, id: Option<u64>) -> Result<usize, DispatchError> {
    let filter = match id {
        Some(id) => format!("dead.*.{id}"),
        None => String::from("dead.>"),
    };
    let count = live_dead(nats, &filter, usize::MAX).await?.len();
    nats.stream
        .purge()
        .filter(nats.subject(&filter))
        .await
        .map_err(unavailable)?;
    Ok(count)
}

/// The subject of a dead letter.
pub(crate) fn dead_subject(target: &str, id: u64) -> String {
    format!("dead.{target}.{id}")
}

/// How long a removed delivery's empty marker stays (a replica that took the delivery
/// before it was removed finds it, and acknowledges it).
const MARKER_TTL_SECS: u64 = 60;

/// One target's queue, as a replica takes from it.
pub(crate) struct Queue {
    target: String,
    consumer: consumer::PullConsumer,
}

/// What one take from a queue came to.
pub(crate) struct Taken {
    /// The deliveries taken, due now.
    pub(crate) leased: Vec<Leased>,
    /// How many messages the servers handed out (given back, markers and unreadable ones
    /// included): as many as asked means more may wait.
    pub(crate) messages: usize,
    /// The earliest time a delivery given back (not yet due) is due.
    pub(crate) given_back_until: Option<u64>,
}

/// A delivery taken from its queue: its record, and the message that holds it (acked
/// once its outcome is stored).
pub(crate) struct Leased {
    pub(crate) record: Record,
    /// How many times the message has been handed out (1 the first time; more after a
    /// replica took it and died).
    pub(crate) handed: i64,
    message: jetstream::Message,
    seq: u64,
}

impl Leased {
    /// The message that holds the delivery: what a lease renewal acknowledges as "in
    /// progress".
    pub(crate) fn message(&self) -> &jetstream::Message {
        &self.message
    }
}

impl Queue {
    /// The queue of `target`: its durable consumer, made by the first replica that asks
    /// (the same name and settings on every replica). `ack_wait` is how long a taken
    /// delivery may go without its outcome before another replica gets it: more than the
    /// target's request timeout.
    pub(crate) async fn open(
        nats: &Nats,
        target: &str,
        ack_wait: Duration,
    ) -> Result<Queue, DispatchError> {
        let name = format!("deliver-{target}");
        let config = consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: nats.subject(&format!("deliver.{target}.>")),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait,
            // A message given back with a delay (a held delivery, a retry, a group's next
            // flush) counts as unacknowledged until it comes back: the server's default
            // limit (1,000) would stop the queue behind that many (found by a test).
            max_ack_pending: -1,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        };
        let consumer = nats.consumer(&name, config).await?;
        Ok(Queue {
            target: target.to_owned(),
            consumer,
        })
    }

    /// Up to `n` deliveries due at `now`, waiting at most `wait` for the first. A held one
    /// not yet due goes back with its remaining delay; an empty marker (a delivery removed)
    /// is acknowledged; one that cannot be read becomes a dead letter with its bytes.
    #[cfg(test)]
    pub(crate) async fn take(
        &self,
        nats: &Nats,
        n: usize,
        now: u64,
        wait: Duration,
    ) -> Result<Vec<Leased>, DispatchError> {
        Ok(self.take_counted(nats, n, now, wait).await?.leased)
    }

    /// [`Queue::take`], with what else the take saw (see [`Taken`]).
    pub(crate) async fn take_counted(
        &self,
        nats: &Nats,
        n: usize,
        now: u64,
        wait: Duration,
    ) -> Result<Taken, DispatchError> {
        let mut out = Vec::new();
        let fetched = super::nats::fetch(&self.consumer, n, wait).await?;
        let mut taken = Taken {
            leased: Vec::new(),
            messages: fetched.len(),
            given_back_until: None,
        };
        for message in fetched {
            let (seq, handed) = match message.info() {
                Ok(info) => (info.stream_sequence, info.delivered),
                Err(e) => return Err(unavailable(e)),
            };
            if message.payload.is_empty() {
                message.ack().await.map_err(unavailable)?;
                continue;
            }
            let record = match serde_json::from_slice::<Record>(&message.payload) {
                Ok(r) => r,
                Err(e) => {
                    self.quarantine(nats, &message, seq, &e.to_string(), now)
                        .await?;
                    continue;
                }
            };
            if record.next_at_ms > now {
                super::nats::nak_until(&message, record.next_at_ms, now).await?;
                let until = taken.given_back_until.get_or_insert(record.next_at_ms);
                *until = (*until).min(record.next_at_ms);
                continue;
            }
            out.push(Leased {
                record,
                handed,
                message,
                seq,
            });
        }
        taken.leased = out;
        Ok(taken)
    }

    /// A delivery that cannot be read: kept as a dead letter holding its raw bytes, and
    /// removed from the queue, in one commit.
    async fn quarantine(
        &self,
        nats: &Nats,
        message: &jetstream::Message,
        seq: u64,
        error: &str,
        now: u64,
    ) -> Result<(), DispatchError> {
        let id = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(seq);
        let dead = DeadLetter::unreadable(id, self.target.clone(), &message.payload, error, now);
        let writes = vec![
            marker(&self.target, id, seq),
            Write {
                subject: dead_subject(&self.target, id),
                payload: serde_json::to_vec(&dead).unwrap_or_default(),
                expect: None,
                ttl_secs: None,
            },
        ];
        settle(nats.commit(writes).await, message).await
    }

    /// Stores what the attempt at `leased` came to, then acknowledges its message; answers
    /// a fallback's new delivery. `fallback_id` is the id a [`Finish::FallBack`] stores its
    /// new delivery under (unique across replicas: the caller claims it). A delivery that
    /// was changed meanwhile (cancelled) is acknowledged as it is: the outcome concerns a
    /// delivery that no longer waits.
    pub(crate) async fn finish(
        &self,
        nats: &Nats,
        leased: &Leased,
        finish: Finish,
        fallback_id: u64,
    ) -> Result<Option<Record>, DispatchError> {
        let (target, id, seq) = (&leased.record.spec.target, leased.record.id, leased.seq);
        let mut created = None;
        let writes = match finish {
            Finish::Delivered(_) | Finish::Inhibited { .. } => vec![marker(target, id, seq)],
            Finish::Retry(r) => vec![Write {
                subject: delivery_subject(target, id),
                payload: serde_json::to_vec(&r).unwrap_or_default(),
                expect: Some(seq),
                ttl_secs: None,
            }],
            Finish::FallBack { to: mut r, .. } => {
                r.id = fallback_id;
                let write = Write {
                    subject: delivery_subject(&r.spec.target, r.id),
                    payload: serde_json::to_vec(&r).unwrap_or_default(),
                    expect: Some(0),
                    ttl_secs: None,
                };
                created = Some(r);
                vec![marker(target, id, seq), write]
            }
            Finish::Dead(d) => vec![
                marker(target, id, seq),
                Write {
                    subject: dead_subject(target, id),
                    payload: serde_json::to_vec(&d).unwrap_or_default(),
                    expect: None,
                    ttl_secs: None,
                },
            ],
        };
        let stored = nats.commit(writes).await;
        let changed = matches!(stored, Err(CommitError::Conflict(_)));
        settle(stored, &leased.message).await?;
        Ok(if changed { None } else { created })
    }
}

/// The delivery's subject emptied, compare-and-set on the message taken: an empty marker
/// that the servers forget in a minute.
fn marker(target: &str, id: u64, seq: u64) -> Write {
    Write {
        subject: delivery_subject(target, id),
        payload: Vec::new(),
        expect: Some(seq),
        ttl_secs: Some(MARKER_TTL_SECS),
    }
}

/// Acknowledges `message` once its outcome is stored (or found moot: the delivery changed
/// meanwhile); a commit that failed leaves it unacknowledged, to come back.
async fn settle(
    stored: Result<u64, CommitError>,
    message: &jetstream::Message,
) -> Result<(), DispatchError> {
    match stored {
        Ok(_) | Err(CommitError::Conflict(_)) => message.double_ack().await.map_err(unavailable),
        Err(e) => Err(e.into_error()),
    }
}

#[cfg(test)]
#[path = "nats_queue_test.rs"]
mod tests;
