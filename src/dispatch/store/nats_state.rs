//! The rules' memory and the new deliveries on NATS: a replica decides with the step
//! function on what it read, and commits the state it changed and the deliveries it made as
//! one atomic compare-and-set batch (docs/nats.md, "The commit"). A lost race is decided
//! again, from fresh reads.
//!
//! Owns: reading the entries the step asks for (fetched, then the step runs again until it
//! had every one it read or wrote), the commit's messages, delivery ids unique across
//! replicas (claimed in blocks, by compare-and-set), and the deployment's identity (its
//! store id and the secret that keys state subjects, made once by whichever replica comes
//! first). Never: keeps what it read past one submit (another replica may have changed
//! it), or answers a submit before its commit is stored.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::nats::{
    CommitError, MAX_ROUNDS, Nats, READS_AT_ONCE, Write, delivery_subject, unavailable,
};
use super::nats_coalesce::Coalesce;
use super::sqlite_state::{ByHash, Hash, Secret};
use super::{Kept, Record, Stored, Submission};
use crate::dispatch::{DispatchError, DispatchErrorKind};
use crate::state::{Entry, Group, Key, SilenceSpan, State};

/// Delivery ids a replica claims at a time.
const ID_BLOCK: u64 = 1024;

/// The deployment's identity, made once (`meta.store`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Identity {
    /// Idempotency keys are `<store id>-<delivery id>`.
    store_id: u64,
    /// Keys the hash of state subjects: no alert data appears in a subject.
    secret: [u64; 2],
}

/// A state entry as stored: the entry, when it expires (ms), and what an operator's
/// listing shows of its key (never the key's values). An empty message is a forgotten
/// entry.
#[derive(Serialize, Deserialize)]
struct Value {
    e: Entry,
    x: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<Meta>,
}

/// What an operator's listing shows of a state entry's key: its kind, rule and target.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    k: String,
    r: String,
    t: String,
}

/// What a decision reads from: the state entries and the silences fetched so far.
type Reads<'r> = (&'r ByHash<Read>, &'r HashMap<u64, Option<SilenceSpan>>);

/// What a replica read of one subject: its last sequence (0: none) and the entry.
#[derive(Clone, Debug)]
struct Read {
    seq: u64,
    entry: Option<(Entry, u64)>,
}

/// The shared state and deliveries of one deployment, as one replica sees them.
pub(crate) struct Shared {
    nats: Arc<Nats>,
    /// Reads of one state subject asked for while one is on its way share the next.
    reads: Arc<Coalesce<Hash, Result<Read, String>>>,
    identity: Identity,
    /// The ids this replica claimed and has not used: `next..end`.
    ids: tokio::sync::Mutex<(u64, u64)>,
    /// Commits refused because another replica changed what this one read (each was
    /// decided again): the measure of contention, for the metrics to come.
    conflicts: std::sync::atomic::AtomicU64,
}

/// A state key's hash as a subject token: 32 hex digits.
fn hex(hash: &Hash) -> String {
    format!("{:032x}", u128::from_be_bytes(*hash))
}

/// A state key's hash from its subject token.
fn parse_hash(hex: &str) -> Option<Hash> {
    (hex.len() == 32)
        .then(|| u128::from_str_radix(hex, 16).ok())
        .flatten()
        .map(u128::to_be_bytes)
}

/// The subject of a state entry.
fn state_subject(hash: &Hash) -> String {
    format!("state.{}", hex(hash))
}

/// The subject of a group's timer: its next flush time, handed to one replica when due.
fn timer_subject(hash: &Hash) -> String {
    format!("timer.group.{}", hex(hash))
}

/// What a state subject holds now, from the stream's leader.
async fn read_entry(nats: &Nats, hash: &Hash) -> Result<Read, String> {
    match nats.last(&state_subject(hash)).await? {
        None => Ok(Read {
            seq: 0,
            entry: None,
        }),
        Some((seq, bytes)) if bytes.is_empty() => Ok(Read { seq, entry: None }),
        Some((seq, bytes)) => {
            // An entry that cannot be read is forgotten (the SQLite store does the
            // same): at most one duplicate gets through; no alert is lost.
            let entry = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .map(|v| (v.e, v.x));
            Ok(Read { seq, entry })
        }
    }
}

impl Shared {
    /// Reads the deployment's identity, or makes it (the first replica to start does).
    pub(crate) async fn open(nats: Nats) -> Result<Shared, DispatchError> {
        let identity = loop {
            if let Some((_, bytes)) = nats.last("meta.store").await.map_err(unavailable)? {
                break serde_json::from_slice::<Identity>(&bytes).map_err(|e| {
                    DispatchError::other(
                        DispatchErrorKind::Corrupt,
                        format!(
                            "the deployment's identity (subject meta.store) cannot be read: {e}"
                        ),
                    )
                })?;
            }
            let made = Identity {
                store_id: fastrand::u64(..),
                secret: [fastrand::u64(..), fastrand::u64(..)],
            };
            let write = Write {
                subject: String::from("meta.store"),
                payload: serde_json::to_vec(&made).unwrap_or_default(),
                expect: Some(0),
                ttl_secs: None,
            };
            match nats.commit(vec![write]).await {
                Ok(_) => break made,
                // Another replica made it first: read theirs.
                Err(CommitError::Conflict(_)) => continue,
                Err(e) => return Err(e.into_error()),
            }
        };
        Ok(Shared {
            nats: Arc::new(nats),
            reads: Arc::default(),
            identity,
            ids: tokio::sync::Mutex::new((0, 0)),
            conflicts: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The connection.
    pub(crate) fn nats(&self) -> &Nats {
        &self.nats
    }

    /// The deployment's store id, the same on every replica.
    pub(crate) fn store_id(&self) -> u64 {
        self.identity.store_id
    }

    /// Commits refused by a concurrent change since this replica started.
    pub(crate) fn conflicts(&self) -> u64 {
        self.conflicts.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn secret(&self) -> Secret {
        Secret(self.identity.secret[0], self.identity.secret[1])
    }

    /// `n` delivery ids no other replica will use, from this replica's block (claiming a
    /// new block, by compare-and-set on `meta.ids`, when it runs out).
    pub(crate) async fn take_ids(&self, n: usize) -> Result<Vec<u64>, DispatchError> {
        let mut block = self.ids.lock().await;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if block.0 >= block.1 {
                *block = self.claim_block(n as u64 - out.len() as u64).await?;
            }
            out.push(block.0);
            block.0 += 1;
        }
        Ok(out)
    }

    async fn claim_block(&self, at_least: u64) -> Result<(u64, u64), DispatchError> {
        let size = ID_BLOCK.max(at_least);
        for _ in 0..MAX_ROUNDS {
            let (seq, next) = match self.nats.last("meta.ids").await.map_err(unavailable)? {
                Some((seq, bytes)) => (seq, serde_json::from_slice::<u64>(&bytes).unwrap_or(1)),
                None => (0, 1),
            };
            let end = next.saturating_add(size);
            let write = Write {
                subject: String::from("meta.ids"),
                payload: end.to_string().into_bytes(),
                expect: Some(seq),
                ttl_secs: None,
            };
            match self.nats.commit(vec![write]).await {
                Ok(_) => return Ok((next, end)),
                Err(CommitError::Conflict(_)) => continue,
                Err(e) => return Err(e.into_error()),
            }
        }
        Err(DispatchError::other(
            DispatchErrorKind::Busy,
            "could not claim delivery ids: other replicas kept claiming at the same moment",
        ))
    }

    /// What a state subject holds now, from the stream's leader, read for this caller
    /// alone.
    #[cfg(test)]
    async fn read(&self, hash: &Hash) -> Result<Read, DispatchError> {
        read_entry(&self.nats, hash).await.map_err(unavailable)
    }

    /// [`Shared::read`], shared with the submits that ask for the same subject at the same
    /// moment ([`super::nats_coalesce`]): the answer comes from a read sent after this call.
    async fn read_shared(&self, hash: Hash) -> Result<Read, DispatchError> {
        let nats = self.nats.clone();
        let read = move || {
            let nats = nats.clone();
            async move { read_entry(&nats, &hash).await }
        };
        let lost = Err(String::from(
            "the read was abandoned: the replica is stopping",
        ));
        self.reads.get(hash, read, lost).await.map_err(unavailable)
    }

    /// Stores each submission's deliveries, running the step on those chosen by rules that
    /// remember, against the shared state; answers once the commit is stored. Losing a
    /// race to another replica decides again, from fresh reads.
    ///
    /// The whole submit takes at most the request timeout: past it (no quorum, a server
    /// that does not answer) it is refused as `Unavailable`, so that the sender hears a
    /// 503 within its patience, and whether a commit in flight was stored is left to the
    /// next read (a sender's retry is decided again, and finds it if it was).
    pub(crate) async fn submit(
        &self,
        batch: Vec<Submission>,
    ) -> Result<Vec<Stored>, DispatchError> {
        let budget = self.nats.timeout();
        tokio::time::timeout(budget, self.submit_within(batch))
            .await
            .unwrap_or_else(|_| {
                Err(unavailable(format!(
                    "the shared store did not answer within {budget:?} (is a majority of the NATS servers up?)"
                )))
            })
    }

    /// A batch whose commit would pass the server's limit on one atomic batch
    /// ([`super::nats::MAX_BATCH`] messages) is split in halves, each committed on its own
    /// (each alert stays whole: its state and deliveries commit together); one alert that
    /// alone passes the limit is refused, saying so.
    fn submit_within(
        &self,
        batch: Vec<Submission>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<Stored>, DispatchError>> + Send + '_>,
    > {
        Box::pin(async move {
            match self.submit_whole(batch.clone()).await {
                Err(e) if e.kind() == DispatchErrorKind::Refused && batch.len() > 1 => {
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    let mut stored = self.submit_within(first).await?;
                    stored.extend(self.submit_within(second).await?);
                    Ok(stored)
                }
                other => other,
            }
        })
    }

    async fn submit_whole(&self, batch: Vec<Submission>) -> Result<Vec<Stored>, DispatchError> {
        let want = batch
            .iter()
            .map(|s| {
                s.plain.len()
                    + s.stateful.as_ref().map_or(0, |st| {
                        st.choices
                            .iter()
                            .chain(&st.probes)
                            .map(|c| c.targets.len() + 1)
                            .sum()
                    })
            })
            .sum::<usize>();
        self.settle(want, |read, ids| self.decide(batch.clone(), read, ids))
            .await
    }

    /// Decides with `decide` on what was read and commits what it decided: each entry or
    /// silence it asked for and was not read is fetched (side by side) and it decides
    /// again; a lost race clears what was read and starts again, at most [`MAX_ROUNDS`]
    /// times. `want` delivery ids are claimed before the first decision (more if it used
    /// more); the ids of a refused commit were never stored and are used again.
    async fn settle(
        &self,
        want: usize,
        mut decide: impl FnMut(Reads<'_>, &[u64]) -> Decided,
    ) -> Result<Vec<Stored>, DispatchError> {
        let mut reads: ByHash<Read> = ByHash::default();
        let mut silences: HashMap<u64, Option<SilenceSpan>> = HashMap::new();
        let mut ids: Vec<u64> = Vec::new();
        let mut lost = String::new();
        for round in 0..MAX_ROUNDS {
            if ids.len() < want {
                ids.extend(self.take_ids(want - ids.len()).await?);
            }
            let decided = decide((&reads, &silences), &ids);
            if !decided.missing.is_empty() || !decided.missing_silences.is_empty() {
                self.fetch(
                    (&mut reads, &mut silences),
                    decided.missing,
                    decided.missing_silences,
                )
                .await?;
                continue;
            }
            if decided.used > ids.len() {
                ids.extend(self.take_ids(decided.used - ids.len()).await?);
                continue;
            }
            let writes = decided.writes(&reads);
            if writes.len() > super::nats::MAX_BATCH {
                return Err(DispatchError::other(
                    DispatchErrorKind::Refused,
                    format!(
                        "one commit would hold {} messages; a NATS atomic batch holds at most {}",
                        writes.len(),
                        super::nats::MAX_BATCH
                    ),
                ));
            }
            match self.nats.commit(writes).await {
                Ok(_) => return Ok(decided.stored),
                Err(CommitError::Conflict(why)) => {
                    // Another replica changed what this one read: read it all again.
                    self.conflicts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    reads.clear();
                    silences.clear();
                    lost = why;
                    // A pause that grows, at random, before reading again: replicas that
                    // keep meeting spread apart, and a leader catching up after a restart
                    // (found by a test under load: 16 refusals in a row) gets its time.
                    let bound = 5u64 << round.min(6);
                    tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(0..=bound)))
                        .await;
                }
                Err(e) => return Err(e.into_error()),
            }
        }
        Err(DispatchError::other(
            DispatchErrorKind::Busy,
            format!(
                "the shared state kept changing under this change ({MAX_ROUNDS} tries, the last refused with \"{lost}\"); try again"
            ),
        ))
    }

    /// Fetches the state entries and silences a decision asked for and did not have: the
    /// entries side by side (one round trip's wait for all of them).
    async fn fetch(
        &self,
        (reads, silences): (&mut ByHash<Read>, &mut HashMap<u64, Option<SilenceSpan>>),
        missing: Vec<Hash>,
        missing_silences: Vec<u64>,
    ) -> Result<(), DispatchError> {
        for id in missing_silences {
            silences.insert(id, super::nats_silence::span(&self.nats, id).await?);
        }
        let fetched: Vec<Result<(Hash, Read), DispatchError>> = futures_util::stream::iter(missing)
            .map(|hash| async move { Ok((hash, self.read_shared(hash).await?)) })
            .buffer_unordered(READS_AT_ONCE)
            .collect()
            .await;
        for f in fetched {
            let (hash, read) = f?;
            reads.insert(hash, read);
        }
        Ok(())
    }

    /// What `look` answers on the shared state as it is now, with nothing written: it runs
    /// on what was read, and again after fetching what it asked for, until it had every
    /// entry it read. For a preview and for the inhibit check of a held firing.
    pub(crate) async fn look<T>(
        &self,
        mut look: impl FnMut(&mut dyn State) -> T,
    ) -> Result<T, DispatchError> {
        let mut reads: ByHash<Read> = ByHash::default();
        let mut silences: HashMap<u64, Option<SilenceSpan>> = HashMap::new();
        for _ in 0..MAX_ROUNDS {
            let mut view = View::new(self.secret(), &reads, &silences);
            let answer = look(&mut view);
            let (missing, missing_silences) = (view.missing, view.missing_silences);
            if missing.is_empty() && missing_silences.is_empty() {
                return Ok(answer);
            }
            self.fetch((&mut reads, &mut silences), missing, missing_silences)
                .await?;
        }
        Err(DispatchError::other(
            DispatchErrorKind::Busy,
            format!(
                "a read of the shared state asked for more entries {MAX_ROUNDS} times in a row"
            ),
        ))
    }

    /// Changes the shared state with `change` (no deliveries), decided and committed like
    /// a submit ([`Shared::settle`]).
    pub(crate) async fn apply(
        &self,
        mut change: impl FnMut(&mut dyn State),
    ) -> Result<(), DispatchError> {
        let secret = self.secret();
        self.settle(0, |(reads, silences), _| {
            let mut view = View::new(secret, reads, silences);
            change(&mut view);
            Decided::from_view(view, Vec::new(), Vec::new(), 0)
        })
        .await
        .map(drop)
    }

    /// Up to `limit` live state entries (not expired at `now`), for an operator; an entry
    /// that cannot be read, or stored before entries carried what a listing shows, is left
    /// out.
    pub(crate) async fn list(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<Vec<crate::state::Listed>, DispatchError> {
        let subjects = self.nats.subjects("state.>").await?;
        let mut reads = futures_util::stream::iter(subjects)
            .map(|subject| async move { self.nats.last(&subject).await.map_err(unavailable) })
            .buffered(READS_AT_ONCE);
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(read) = reads.next().await else {
                break;
            };
            let Some((_, bytes)) = read? else { continue };
            let Ok(Value { e, x, m: Some(m) }) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            if x > now {
                out.push(crate::state::Listed {
                    rule: m.r,
                    kind: m.k,
                    target: m.t,
                    expires: x,
                    entry: e,
                });
            }
        }
        Ok(out)
    }

    /// The groups' timers: one durable consumer on `<prefix>.timer.>` that every replica
    /// takes from, so each due group is flushed by one replica.
    pub(crate) async fn timers(
        &self,
        ack_wait: std::time::Duration,
    ) -> Result<async_nats::jetstream::consumer::PullConsumer, DispatchError> {
        let config = async_nats::jetstream::consumer::pull::Config {
            durable_name: Some(String::from("timers")),
            filter_subject: self.nats.subject("timer.>"),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ack_wait,
            // A message given back with a delay (a held delivery, a retry, a group's next
            // flush) counts as unacknowledged until it comes back: the server's default
            // limit (1,000) would stop the queue behind that many (found by a test).
            max_ack_pending: -1,
            ..Default::default()
        };
        self.nats.consumer("timers", config).await
    }

    /// Takes up to `n` group timers (waiting at most `wait` for the first) and flushes each
    /// group that is due at `now`, as a submit decides and commits: the group's entry
    /// compare-and-set, its notification and its next timer in one commit, then the timer
    /// is acknowledged. A timer not yet due goes back with its remaining delay; one whose
    /// group another replica flushed (or that is gone) is acknowledged as it is.
    pub(crate) async fn flush_due(
        &self,
        timers: &async_nats::jetstream::consumer::PullConsumer,
        now: u64,
        n: usize,
        wait: std::time::Duration,
        render: &mut super::GroupRender,
    ) -> Result<super::Flushed, DispatchError> {
        let mut flushed = super::Flushed::default();
        for message in super::nats::fetch(timers, n, wait).await? {
            let due = std::str::from_utf8(&message.payload)
                .ok()
                .and_then(|t| t.parse::<u64>().ok());
            let hash = message.subject.rsplit('.').next().and_then(parse_hash);
            let (Some(due), Some(hash)) = (due, hash) else {
                // A removed timer, or one that cannot be read: nothing to flush.
                message.ack().await.map_err(unavailable)?;
                continue;
            };
            if due > now {
                super::nats::nak_until(&message, due, now).await?;
                continue;
            }
            let stored = self.flush_one(hash, now, render).await?;
            flushed.sent += stored.iter().map(|s| s.ids.len()).sum::<usize>();
            for s in &stored {
                for t in &s.targets {
                    if !flushed.targets.contains(t) {
                        flushed.targets.push(t.clone());
                    }
                }
            }
            message.double_ack().await.map_err(unavailable)?;
        }
        Ok(flushed)
    }

    /// Flushes group `hash` if it is due at `now`, decided and committed like a submit
    /// ([`Shared::settle`]).
    async fn flush_one(
        &self,
        hash: Hash,
        now: u64,
        render: &mut super::GroupRender,
    ) -> Result<Vec<Stored>, DispatchError> {
        self.settle(1, |read, ids| {
            self.decide_flush(hash, read, ids, now, render)
        })
        .await
    }

    /// One flush decision on what was read.
    fn decide_flush(
        &self,
        hash: Hash,
        (reads, silences): Reads<'_>,
        ids: &[u64],
        now: u64,
        render: &mut super::GroupRender,
    ) -> Decided {
        let mut view = View::new(self.secret(), reads, silences);
        view.due = vec![hash];
        view.now = Some(now);
        let mut next = 0usize;
        let mut take = || {
            let id = ids.get(next).copied().unwrap_or(0);
            next += 1;
            id
        };
        let mut kept = Kept::default();
        super::run_flush(&mut view, now, &mut take, &mut kept, render);
        let mut stored = Stored::default();
        for r in &kept.now {
            stored.push(r);
        }
        Decided::from_view(view, vec![kept], vec![stored], next)
    }

    /// One decision on what was read: the step over every submission, in order, on one
    /// view of the state.
    fn decide(&self, batch: Vec<Submission>, (reads, silences): Reads<'_>, ids: &[u64]) -> Decided {
        let mut view = View::new(self.secret(), reads, silences);
        let mut next = 0usize;
        let mut stored_all = Vec::with_capacity(batch.len());
        let mut kept_all = Vec::with_capacity(batch.len());
        for sub in batch {
            let mut take = || {
                let id = ids.get(next).copied().unwrap_or(0);
                next += 1;
                id
            };
            let mut kept = Kept {
                now: sub.plain,
                ..Kept::default()
            };
            for r in &mut kept.now {
                r.id = take();
            }
            let mut stored = Stored::default();
            if let Some(st) = sub.stateful {
                view.now = Some(view.now.map_or(st.now, |n| n.max(st.now)));
                stored.verdicts = super::run_step(&mut view, *st, &mut take, &mut kept);
            }
            for r in &kept.later {
                stored.push_later(r);
            }
            for r in &kept.now {
                stored.push(r);
            }
            stored_all.push(stored);
            kept_all.push(kept);
        }
        Decided::from_view(view, kept_all, stored_all, next)
    }
}

/// What one decision came to.
struct Decided {
    /// State subjects the step read or wrote that were not fetched: fetch, decide again.
    missing: Vec<Hash>,
    /// Silences the step asked about that were not fetched.
    missing_silences: Vec<u64>,
    /// Groups whose next flush changed: their timers, rewritten (`None`: the group is gone).
    timers: Vec<(Hash, Option<u64>)>,
    /// The state the step changed, in order of first change: the entry and its expiry, or
    /// `None` (forgotten).
    writes: Vec<(Hash, Option<(Entry, u64)>)>,
    /// What a listing shows of each written entry's key.
    meta: ByHash<Meta>,
    /// The step's clock, if a step ran: entries' time to live is measured on it.
    now: Option<u64>,
    kept: Vec<Kept>,
    stored: Vec<Stored>,
    /// How many delivery ids the step took.
    used: usize,
}

impl Decided {
    /// What a decision on `view` came to: what it asked for, what it wrote, the deliveries
    /// it kept and stored, and how many ids it used.
    fn from_view(view: View<'_>, kept: Vec<Kept>, stored: Vec<Stored>, used: usize) -> Decided {
        Decided {
            timers: view.timers(),
            missing: view.missing,
            missing_silences: view.missing_silences,
            meta: view.meta,
            writes: view.writes,
            now: view.now,
            kept,
            stored,
            used,
        }
    }

    /// The commit's messages: each changed entry (compare-and-set on what was read, kept
    /// by the server until it expires), then each delivery (on a subject nobody used).
    fn writes(&self, reads: &ByHash<Read>) -> Vec<Write> {
        let mut out = Vec::new();
        let now_ms = crate::dispatch::now_ms();
        // An entry expires on the step's clock (the submit's time, in service).
        let step_now = self.now.unwrap_or(now_ms);
        for (hash, value) in &self.writes {
            let expect = Some(reads.get(hash).map_or(0, |r| r.seq));
            let (payload, ttl_secs) = match value {
                Some((e, x)) => (
                    serde_json::to_vec(&Value {
                        e: e.clone(),
                        x: *x,
                        m: self.meta.get(hash).cloned(),
                    })
                    .unwrap_or_default(),
                    // The server forgets it a little after it expires.
                    Some(x.saturating_sub(step_now) / 1000 + 2),
                ),
                None => (Vec::new(), Some(60)),
            };
            out.push(Write {
                subject: state_subject(hash),
                payload,
                expect,
                ttl_secs,
            });
        }
        for (hash, next) in &self.timers {
            out.push(match next {
                Some(at) => Write {
                    subject: timer_subject(hash),
                    payload: at.to_string().into_bytes(),
                    expect: None,
                    ttl_secs: None,
                },
                None => Write {
                    subject: timer_subject(hash),
                    payload: Vec::new(),
                    expect: None,
                    ttl_secs: Some(60),
                },
            });
        }
        for kept in &self.kept {
            for r in kept.now.iter().chain(&kept.later) {
                out.push(delivery_write(r));
            }
            for &(delivery, silence) in &kept.silenced {
                if let Some(r) = kept.later.iter().find(|r| r.id == delivery) {
                    let (target, until) = (&r.spec.target, r.next_at_ms);
                    out.push(super::nats_silence::held_write(
                        silence, target, delivery, until, now_ms,
                    ));
                }
            }
            for (target, id) in &kept.cancelled {
                // Replaced by an empty message: the delivery is gone; the marker goes in a
                // minute.
                out.push(Write {
                    subject: delivery_subject(target, *id),
                    payload: Vec::new(),
                    expect: None,
                    ttl_secs: Some(60),
                });
            }
        }
        out
    }
}

/// A new delivery's message: on its own subject, which nothing used before.
fn delivery_write(r: &Record) -> Write {
    Write {
        subject: delivery_subject(&r.spec.target, r.id),
        payload: serde_json::to_vec(r).unwrap_or_default(),
        expect: Some(0),
        ttl_secs: None,
    }
}

/// The step's state during one decision: what was read, what the step wrote, and what it
/// asked for that was not read.
struct View<'r> {
    secret: Secret,
    reads: &'r ByHash<Read>,
    /// The silences read: each one's span, or `None` (no such silence).
    silences: &'r HashMap<u64, Option<SilenceSpan>>,
    /// The groups a flush was handed: what `due_groups` answers from.
    due: Vec<Hash>,
    missing_silences: Vec<u64>,
    writes: Vec<(Hash, Option<(Entry, u64)>)>,
    /// Index into `writes` by hash.
    written: ByHash<usize>,
    missing: Vec<Hash>,
    /// What a listing shows of each key written.
    meta: ByHash<Meta>,
    /// The step's clock (its latest `now`): what the entries' expiries are measured on.
    now: Option<u64>,
}

impl<'r> View<'r> {
    /// A decision's view of what was read, with nothing written yet.
    fn new(
        secret: Secret,
        reads: &'r ByHash<Read>,
        silences: &'r HashMap<u64, Option<SilenceSpan>>,
    ) -> View<'r> {
        View {
            secret,
            reads,
            silences,
            due: Vec::new(),
            missing_silences: Vec::new(),
            writes: Vec::new(),
            written: ByHash::default(),
            missing: Vec::new(),
            meta: ByHash::default(),
            now: None,
        }
    }
}

/// A group's next flush, if `entry` is a group.
fn next_flush(entry: Option<&(Entry, u64)>) -> Option<u64> {
    match entry {
        Some((Entry::Group(g), _)) => Some(g.next_flush),
        _ => None,
    }
}

impl View<'_> {
    /// The groups whose next flush this decision changed (a new group, a flush, a group
    /// gone): their timers are written with the commit.
    fn timers(&self) -> Vec<(Hash, Option<u64>)> {
        self.writes
            .iter()
            .filter_map(|(hash, value)| {
                let before = next_flush(self.reads.get(hash).and_then(|r| r.entry.as_ref()));
                let after = next_flush(value.as_ref());
                (before != after).then_some((*hash, after))
            })
            .collect()
    }

    fn note_missing(&mut self, hash: Hash) {
        if !self.reads.contains_key(&hash) && !self.missing.contains(&hash) {
            self.missing.push(hash);
        }
    }

    fn write(&mut self, hash: Hash, value: Option<(Entry, u64)>) {
        // A write needs the sequence it replaces: fetched like a read.
        self.note_missing(hash);
        match self.written.get(&hash) {
            Some(&i) => self.writes[i].1 = value,
            None => {
                self.written.insert(hash, self.writes.len());
                self.writes.push((hash, value));
            }
        }
    }
}

impl View<'_> {
    /// The entry under `hash` as this decision sees it (its own writes first); one not
    /// read yet is noted to be fetched.
    fn entry(&mut self, hash: Hash) -> Option<&(Entry, u64)> {
        if let Some(&i) = self.written.get(&hash) {
            return self.writes.get(i).and_then(|w| w.1.as_ref());
        }
        if !self.reads.contains_key(&hash) {
            self.note_missing(hash);
            return None;
        }
        self.reads.get(&hash).and_then(|read| read.entry.as_ref())
    }
}

impl State for View<'_> {
    fn peek(&mut self, key: &Key<'_>, now: u64) -> Option<&Entry> {
        let hash = self.secret.hash(key);
        self.entry(hash)
            .and_then(|(entry, expires)| (*expires > now).then_some(entry))
    }

    fn put(&mut self, key: &Key<'_>, entry: Entry, expires: u64) {
        let hash = self.secret.hash(key);
        self.meta.entry(hash).or_insert_with(|| Meta {
            k: key.kind.to_owned(),
            r: key.rule.to_owned(),
            t: key.target.to_owned(),
        });
        self.write(hash, Some((entry, expires)));
    }

    /// An entry this decision wrote is handed over, deleted until it is put back (a group
    /// that many alerts of one request join); one read from the stream is copied.
    fn take(&mut self, key: &Key<'_>, now: u64) -> Option<Entry> {
        let hash = self.secret.hash(key);
        let Some(&i) = self.written.get(&hash) else {
            return self.get(key, now);
        };
        let slot = &mut self.writes.get_mut(i)?.1;
        match slot.take() {
            Some((entry, expires)) if expires > now => Some(entry),
            kept => {
                *slot = kept;
                None
            }
        }
    }

    fn delete(&mut self, key: &Key<'_>) {
        let hash = self.secret.hash(key);
        self.write(hash, None);
    }

    fn silence(&mut self, id: u64) -> Option<SilenceSpan> {
        match self.silences.get(&id) {
            Some(span) => *span,
            None => {
                if !self.missing_silences.contains(&id) {
                    self.missing_silences.push(id);
                }
                None
            }
        }
    }

    fn due_groups(&mut self, now: u64, limit: usize) -> Vec<Group> {
        // Only the groups this flush was handed (their timers came due), as read; one not
        // read yet is fetched first.
        let mut due: Vec<(Entry, u64)> = Vec::new();
        for hash in self.due.clone() {
            due.extend(self.entry(hash).cloned());
        }
        crate::state::due_among(due.iter().map(|(e, x)| (e, *x)), now, limit)
    }
}

#[cfg(test)]
#[path = "nats_state_test.rs"]
mod tests;
