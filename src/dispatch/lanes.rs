//! The in-memory queues of fresh deliveries, one per target.
//!
//! The outbox writer pushes every committed new delivery here (`store::FreshSink`), in id
//! order, before the submitter is answered; the target's worker takes them from here
//! instead of reading the outbox back. This queue is the only way a fresh delivery is
//! found while the process runs (the outbox's `fresh` table has no index to scan), so a
//! delivery is never both read back and handed over: nothing can send it twice.
//!
//! Memory is bounded: records are kept whole while the queues hold less than the budget
//! ([`RouterBuilder::queue_memory`](super::RouterBuilder::queue_memory)), and by id alone
//! beyond it (16 bytes each); the worker reads an id-only entry's record from the outbox.
//! At start the queues are filled with the ids of the fresh deliveries left in the outbox.

use std::collections::VecDeque;
use std::sync::Mutex;

use rustc_hash::FxHashMap;

use super::store::Record;

/// One queued delivery: its record while within the memory budget, else only its id.
pub(crate) struct Entry {
    pub(crate) id: u64,
    pub(crate) record: Option<Box<Record>>,
}

#[derive(Default)]
struct Queues {
    by_target: FxHashMap<String, VecDeque<Entry>>,
    /// What the queued records weigh ([`weight`]).
    bytes: usize,
}

impl Queues {
    /// `target`'s queue, created empty on first use, so the name is copied only then.
    /// Always `Some`: returning the queue found by a first lookup, else inserting, is a
    /// borrow the checker refuses, hence a second lookup.
    fn lane(&mut self, target: &str) -> Option<&mut VecDeque<Entry>> {
        if !self.by_target.contains_key(target) {
            self.by_target.insert(target.to_owned(), VecDeque::new());
        }
        self.by_target.get_mut(target)
    }
}

/// Every target's queue of fresh deliveries.
pub(crate) struct Lanes {
    queues: Mutex<Queues>,
    budget: usize,
}

/// About what a record takes in memory.
fn weight(r: &Record) -> usize {
    std::mem::size_of::<Record>()
        + r.body.len()
        + r.spec.url.len()
        + r.spec.target.len()
        + r.spec.method.as_str().len()
        + r.alert_id.as_ref().map_or(0, String::len)
        + r.spec
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum::<usize>()
}

impl Lanes {
    /// Queues that keep at most `budget` bytes of records whole.
    pub(crate) fn new(budget: usize) -> Lanes {
        Lanes {
            queues: Mutex::new(Queues::default()),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues committed deliveries (in id order) at the back of their targets' queues.
    pub(crate) fn push(&self, records: Vec<Record>) {
        let mut q = self.lock();
        let q = &mut *q;
        for r in records {
            let w = weight(&r);
            let keep = q.bytes + w <= self.budget;
            if keep {
                q.bytes += w;
            }
            if let Some(lane) = q.lane(&r.spec.target) {
                let id = r.id;
                lane.push_back(Entry {
                    id,
                    record: keep.then(|| Box::new(r)),
                });
            }
        }
    }

    /// Queues a delivery by id alone (at start, from the outbox), behind those queued.
    pub(crate) fn push_id(&self, id: u64, target: &str) {
        if let Some(lane) = self.lock().lane(target) {
            lane.push_back(Entry { id, record: None });
        }
    }

    /// The targets that have had a queue.
    pub(crate) fn targets(&self) -> Vec<String> {
        self.lock().by_target.keys().cloned().collect()
    }

    /// Takes up to `n` deliveries from the front of `target`'s queue.
    pub(crate) fn take(&self, target: &str, n: usize) -> Vec<Entry> {
        let mut q = self.lock();
        let q = &mut *q;
        let Some(lane) = q.by_target.get_mut(target) else {
            return Vec::new();
        };
        let k = n.min(lane.len());
        let out: Vec<Entry> = lane.drain(..k).collect();
        for e in &out {
            if let Some(r) = &e.record {
                q.bytes = q.bytes.saturating_sub(weight(r));
            }
        }
        out
    }

    /// Whether `target`'s queue holds any delivery.
    pub(crate) fn has(&self, target: &str) -> bool {
        self.lock()
            .by_target
            .get(target)
            .is_some_and(|lane| !lane.is_empty())
    }

    /// Puts ids back at the front of `target`'s queue, in their order (a failed read).
    pub(crate) fn put_back(&self, target: &str, ids: &[u64]) {
        if let Some(lane) = self.lock().lane(target) {
            for &id in ids.iter().rev() {
                lane.push_front(Entry { id, record: None });
            }
        }
    }

    /// How many deliveries `target`'s queue holds, and how many bytes of records all hold.
    #[cfg(test)]
    pub(crate) fn depth(&self, target: &str) -> (usize, usize) {
        let q = self.lock();
        (q.by_target.get(target).map_or(0, VecDeque::len), q.bytes)
    }
}

#[cfg(test)]
#[path = "lanes_test.rs"]
mod tests;
