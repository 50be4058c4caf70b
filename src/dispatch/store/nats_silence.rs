//! Silences on NATS: each on `<prefix>.silence.<id>`, ids from 1 claimed by
//! compare-and-set on `<prefix>.meta.silences`; and which held deliveries wait for which
//! silence, as markers `<prefix>.held.<silence>.<target>.<delivery>` written in the commit
//! that holds them, so that expiring a silence early releases them (docs/nats.md,
//! "Silences"). The same semantics as the SQLite outbox's `sqlite_silence.rs`.

use futures_util::StreamExt;

use super::Expired;
use super::nats::{
    CommitError, MAX_ROUNDS, Nats, READS_AT_ONCE, Write, delivery_subject, unavailable,
};
use crate::dispatch::{DispatchError, DispatchErrorKind};
use crate::state::{Silence, SilenceSpan};

pub(crate) fn silence_subject(id: u64) -> String {
    format!("silence.{id}")
}

/// The marker that held delivery `delivery`, for `target`, waits for silence `silence`.
pub(crate) fn held_subject(silence: u64, target: &str, delivery: u64) -> String {
    format!("held.{silence}.{target}.{delivery}")
}

/// The marker's message: kept a minute past the silence's end, then forgotten by the
/// servers (the delivery is due by then anyway).
pub(crate) fn held_write(silence: u64, target: &str, delivery: u64, until: u64, now: u64) -> Write {
    Write {
        subject: held_subject(silence, target, delivery),
        payload: b"held".to_vec(),
        expect: None,
        ttl_secs: Some(until.saturating_sub(now) / 1000 + 60),
    }
}

/// Silence `id`'s span as stored (`None`: no such silence): what the step asks.
pub(crate) async fn span(nats: &Nats, id: u64) -> Result<Option<SilenceSpan>, DispatchError> {
    Ok(read(nats, id).await?.map(|(_, s)| s.span()))
}

/// Silence `id` and the sequence of its message.
async fn read(nats: &Nats, id: u64) -> Result<Option<(u64, Silence)>, DispatchError> {
    match nats.last(&silence_subject(id)).await.map_err(unavailable)? {
        Some((seq, bytes)) if !bytes.is_empty() => match serde_json::from_slice(&bytes) {
            Ok(s) => Ok(Some((seq, s))),
            Err(e) => {
                tracing::warn!(silence = id, error = %e, "a stored silence cannot be read; it is ignored");
                Ok(None)
            }
        },
        _ => Ok(None),
    }
}

/// Every silence, by id (in force, pending and ended).
pub(crate) async fn list(nats: &Nats) -> Result<Vec<Silence>, DispatchError> {
    let ids: Vec<u64> = nats
        .subjects("silence.*")
        .await?
        .iter()
        .filter_map(|s| s.strip_prefix("silence.")?.parse().ok())
        .collect();
    let read: Vec<Result<Option<(u64, Silence)>, DispatchError>> = futures_util::stream::iter(ids)
        .map(|id| read(nats, id))
        .buffer_unordered(READS_AT_ONCE)
        .collect()
        .await;
    let mut out = Vec::with_capacity(read.len());
    for r in read {
        if let Some((_, s)) = r? {
            out.push(s);
        }
    }
    out.sort_by_key(|s| s.id);
    Ok(out)
}

/// Stores a new silence under the next id (from 1, unique across replicas) and answers it
/// as stored. Past [`crate::state::MAX_SILENCES`], the silences that ended longest ago are
/// forgotten in the same commit.
pub(crate) async fn add(nats: &Nats, mut s: Silence, now: u64) -> Result<Silence, DispatchError> {
    for _ in 0..MAX_ROUNDS {
        let (seq, last) = match nats.last("meta.silences").await.map_err(unavailable)? {
            Some((seq, bytes)) => (seq, serde_json::from_slice::<u64>(&bytes).unwrap_or(0)),
            None => (0, 0),
        };
        s.id = last + 1;
        let mut writes = vec![
            Write {
                subject: String::from("meta.silences"),
                payload: s.id.to_string().into_bytes(),
                expect: Some(seq),
                ttl_secs: None,
            },
            Write {
                subject: silence_subject(s.id),
                payload: serde_json::to_vec(&s).unwrap_or_default(),
                expect: Some(0),
                ttl_secs: None,
            },
        ];
        // Read them all only when some must go.
        let count = nats.subjects("silence.*").await?.len();
        if count + 1 > crate::state::MAX_SILENCES {
            let all = list(nats).await?;
            for id in crate::state::silences_to_forget(all.iter().chain([&s]), now) {
                writes.push(Write {
                    subject: silence_subject(id),
                    payload: Vec::new(),
                    expect: None,
                    ttl_secs: Some(60),
                });
            }
        }
        match nats.commit(writes).await {
            Ok(_) => return Ok(s),
            Err(CommitError::Conflict(_)) => continue,
            Err(e) => return Err(e.into_error()),
        }
    }
    Err(DispatchError::other(
        DispatchErrorKind::Busy,
        "other replicas kept adding silences at the same moment; try again",
    ))
}

/// Ends silence `id` at `now` if it has not ended, and makes every delivery it holds due
/// at `now`, in one commit; `Ok(None)`: no such silence. An ended silence is answered as
/// it is, releasing nothing.
pub(crate) async fn expire(
    nats: &Nats,
    id: u64,
    now: u64,
) -> Result<Option<Expired>, DispatchError> {
    for _ in 0..MAX_ROUNDS {
        let Some((seq, mut silence)) = read(nats, id).await? else {
            return Ok(None);
        };
        if silence.ends <= now {
            return Ok(Some(Expired {
                silence,
                released: Vec::new(),
            }));
        }
        silence.expire(now);
        let mut writes = vec![Write {
            subject: silence_subject(id),
            payload: serde_json::to_vec(&silence).unwrap_or_default(),
            expect: Some(seq),
            ttl_secs: None,
        }];
        let mut released = Vec::new();
        for marker in nats.subjects(&format!("held.{id}.>")).await? {
            // held.<silence>.<target>.<delivery>
            let mut parts = marker.splitn(4, '.').skip(2);
            let (Some(target), Some(delivery)) = (
                parts.next(),
                parts.next().and_then(|d| d.parse::<u64>().ok()),
            ) else {
                continue;
            };
            writes.push(Write {
                subject: marker.clone(),
                payload: Vec::new(),
                expect: None,
                ttl_secs: Some(60),
            });
            let subject = delivery_subject(target, delivery);
            let Some((dseq, bytes)) = nats.last(&subject).await.map_err(unavailable)? else {
                continue;
            };
            let Ok(mut record) = serde_json::from_slice::<super::Record>(&bytes) else {
                continue;
            };
            if record.next_at_ms <= now {
                continue;
            }
            // Written again, due now: a new message, which its queue hands out at once
            // (the one it replaces was waiting out its delay).
            record.next_at_ms = now;
            writes.push(Write {
                subject,
                payload: serde_json::to_vec(&record).unwrap_or_default(),
                expect: Some(dseq),
                ttl_secs: None,
            });
            if !released.contains(&record.spec.target) {
                released.push(record.spec.target);
            }
        }
        match nats.commit(writes).await {
            Ok(_) => return Ok(Some(Expired { silence, released })),
            // The silence or a held delivery changed meanwhile (sent, cancelled): again.
            Err(CommitError::Conflict(_)) => continue,
            Err(e) => return Err(e.into_error()),
        }
    }
    Err(DispatchError::other(
        DispatchErrorKind::Busy,
        "the silence's held deliveries kept changing; try again",
    ))
}

#[cfg(test)]
#[path = "nats_silence_test.rs"]
mod tests;
