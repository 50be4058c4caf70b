//! The last N decisions, for the console's "Recent decisions" page: what each alert was,
//! which rules fired, where it went, and what the rules that remember said.
//!
//! Owns: a ring of fixed capacity (`console.recent`, 0 turns it off) whose memory is
//! bounded: an alert keeps its request's body (shared by the request's alerts, not copied:
//! ingest pays a reference count, not a copy of the alert) only when the body is at most
//! [`MAX_KEPT_BYTES`]; a larger one is listed without it (its trace cannot be shown again).
//! Never: keeps a credential (only the body and its content type are kept), or blocks ingest
//! on a reader (the lock is held for a push or a copy of the list's handles).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderValue;
use smallvec::SmallVec;

use crate::alert::{Alert, Source};
use crate::dispatch::Submitted;

/// A request's body as it came, to read one of its alerts again.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    pub(crate) bytes: Bytes,
    pub(crate) content_type: Option<HeaderValue>,
    /// The sender the request named (its path, or `?source=`), if it named one.
    pub(crate) named: Option<Source>,
}

/// Where an alert is in its request's body.
#[derive(Debug)]
pub(crate) struct Kept {
    pub(crate) body: Body,
    /// Its place among the request's alerts.
    pub(crate) index: usize,
    /// When it was received (a window's `during` is decided at that moment).
    pub(crate) received_at: jiff::Timestamp,
}

/// The largest request body kept for its alerts to be explained again.
pub(crate) const MAX_KEPT_BYTES: usize = 64 * 1024;

/// The most decisions the ring may be configured to keep.
pub(crate) const MAX_RECENT: usize = 10_000;

/// One decision as it was taken.
#[derive(Debug)]
pub(crate) struct Recorded {
    /// Its number since start (1, 2, ...), the console's link to it: set when the ring
    /// takes it, under the ring's lock, before any reader can see it (0: not in the ring).
    seq: AtomicU64,
    /// When it was stored, in ms since the epoch.
    pub(crate) at_ms: u64,
    pub(crate) source: &'static str,
    pub(crate) state: &'static str,
    pub(crate) id: Option<String>,
    pub(crate) name: Option<String>,
    /// Fired rules, by name or `file:line`.
    pub(crate) rules: Vec<String>,
    /// Targets chosen, in delivery order.
    pub(crate) targets: Vec<String>,
    pub(crate) dropped: bool,
    pub(crate) unrouted: bool,
    /// Deliveries stored for it.
    pub(crate) deliveries: Vec<u64>,
    /// What the rules that remember did with each target they chose.
    pub(crate) verdicts: Vec<crate::state::Verdict>,
    /// The content hash of the rule set that decided.
    pub(crate) rules_hash: u64,
    /// The request's body, to read the alert again; `None` when it was too large to keep.
    pub(crate) kept: Option<Kept>,
}

impl Recorded {
    /// A decision with nothing in it, outside the ring, for tests to fill in.
    #[cfg(test)]
    pub(crate) fn for_test() -> Recorded {
        Recorded {
            seq: AtomicU64::new(0),
            at_ms: 0,
            source: "generic",
            state: "firing",
            id: None,
            name: None,
            rules: Vec::new(),
            targets: Vec::new(),
            dropped: false,
            unrouted: false,
            deliveries: Vec::new(),
            verdicts: Vec::new(),
            rules_hash: 0,
            kept: None,
        }
    }

    /// Its number since start: the console's link to it.
    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
}

/// The ring.
pub(crate) struct Recent {
    capacity: usize,
    inner: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    next: u64,
    items: VecDeque<Arc<Recorded>>,
}

impl Recent {
    /// A ring of `capacity` decisions (at most [`MAX_RECENT`]; 0 keeps none).
    pub(crate) fn new(capacity: usize) -> Recent {
        Recent {
            capacity: capacity.min(MAX_RECENT),
            inner: Mutex::new(Ring::default()),
        }
    }

    /// How many decisions it keeps at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the decisions of one request: `alerts[i]` was decided as `submitted[i]`,
    /// under the rule set with hash `rules_hash`; `body` is the request's. Answers every
    /// decision, in order, for the ingest answer to be written from: the ring shares the
    /// newest `capacity` of them (none when it is off), so nothing is copied.
    pub(crate) fn record(
        &self,
        alerts: &[Alert],
        submitted: Vec<Submitted>,
        rules_hash: u64,
        body: &Body,
    ) -> Vec<Arc<Recorded>> {
        let keep = body.bytes.len() <= MAX_KEPT_BYTES;
        let at_ms = crate::dispatch::now_ms();
        // Only the newest `capacity` of a request can stay in the ring.
        let ringed = alerts.len().saturating_sub(self.capacity);
        let made: Vec<Arc<Recorded>> = alerts
            .iter()
            .zip(submitted)
            .enumerate()
            .map(|(index, (a, sub))| {
                Arc::new(Recorded {
                    seq: AtomicU64::new(0),
                    at_ms,
                    source: a.source().as_str(),
                    state: a.state().as_str(),
                    id: a.id().map(str::to_owned),
                    name: a.name().map(str::to_owned),
                    rules: sub.decision.rules,
                    targets: sub.decision.targets,
                    dropped: sub.decision.dropped,
                    unrouted: sub.decision.unrouted,
                    deliveries: sub.deliveries,
                    verdicts: sub.verdicts,
                    rules_hash,
                    kept: (keep && index >= ringed).then(|| Kept {
                        body: body.clone(),
                        index,
                        received_at: a.received_at(),
                    }),
                })
            })
            .collect();
        if self.capacity == 0 || made.is_empty() {
            return made;
        }
        // A request of a few alerts evicts as few: held inline, not allocated.
        let mut evicted: SmallVec<[Arc<Recorded>; 4]> = SmallVec::new();
        {
            let mut ring = self.lock();
            for r in &made[ringed..] {
                ring.next += 1;
                r.seq.store(ring.next, Ordering::Relaxed);
                if ring.items.len() == self.capacity {
                    evicted.extend(ring.items.pop_front());
                }
                ring.items.push_back(Arc::clone(r));
            }
        }
        // The oldest decisions are freed after the lock is let go: ingest requests and
        // console readers do not wait for it.
        drop(evicted);
        made
    }

    /// The decisions kept, newest first, at most `limit`.
    pub(crate) fn list(&self, limit: usize) -> Vec<Arc<Recorded>> {
        self.lock()
            .items
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// The alert of a decision, read again from its request's body, within `limits`.
    pub(crate) fn alert(kept: &Kept, limits: &crate::alert::AdaptLimits) -> Option<Alert> {
        let value = super::parse_payload(kept.body.content_type.as_ref(), &kept.body.bytes).ok()?;
        let mut alerts = crate::alert::adapt_json_within(kept.body.named, value, limits).ok()?;
        (kept.index < alerts.len()).then(|| {
            alerts
                .swap_remove(kept.index)
                .with_received_at(kept.received_at)
        })
    }

    /// Decision `seq`, if it is still kept.
    pub(crate) fn get(&self, seq: u64) -> Option<Arc<Recorded>> {
        let ring = self.lock();
        let first = ring.items.front()?.seq();
        let at = usize::try_from(seq.checked_sub(first)?).ok()?;
        ring.items.get(at).cloned()
    }
}

#[cfg(test)]
#[path = "recent_test.rs"]
mod tests;
