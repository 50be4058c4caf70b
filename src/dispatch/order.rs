//! One alert's deliveries to one target go out in the order they were accepted.
//!
//! Owns: per target (one [`Order`] per worker), which pending deliveries of each alert
//! (`@id`) the worker knows of, and whether a delivery may be sent now: only when no
//! delivery of the same alert accepted before it (a smaller id: ids grow with each commit)
//! is still pending. A later one waits, without a request slot and without its body in
//! memory, while the earlier one is in flight or waiting for a retry, and goes once that
//! one is delivered, a dead letter, or handed to a fallback. Never: reorders deliveries of
//! different alerts (they go in parallel, as fast as the target takes them), holds back a
//! delivery whose alert has no `@id`, or decides anything about an attempt.
//!
//! Why: ten alternating firing and resolved copies of one alert once arrived as
//! 1,10,2,3,4,5,6,7,9,8, and a receiver showed "firing" for an alert that had resolved.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rustc_hash::FxHashMap;

/// Where a held delivery waits, so that it is taken again when its turn comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum From {
    /// The queue of new deliveries: put its id back at the front of the queue.
    Fresh,
    /// The table of deliveries due for a retry: stop skipping it when reading what is due.
    Table,
}

/// The order of one target's deliveries, per alert.
#[derive(Default)]
pub(super) struct Order {
    /// Per alert id, the pending deliveries the worker knows of, by id. Keyed by what
    /// senders wrote, so hashed with std's keyed hash (no collisions chosen by a sender).
    pending: HashMap<Arc<str>, BTreeSet<u64>>,
    /// The alert of each delivery in `pending`. Delivery ids are the store's own numbers,
    /// so these two maps use the cheaper unkeyed hash.
    alert_of: FxHashMap<u64, Arc<str>>,
    /// Deliveries taken but not sent, waiting for an earlier one of their alert.
    held: FxHashMap<u64, From>,
}

impl Order {
    /// Learns of pending deliveries (a store's [`super::store::Store::pending_alerts`] at
    /// start), so that one accepted before a restart still goes before those after it.
    pub(super) fn know(&mut self, pending: impl IntoIterator<Item = (u64, String)>) {
        for (id, alert) in pending {
            let _first = self.add(id, alert.as_str());
        }
    }

    /// Learns of delivery `id` of `alert` (once); answers the first pending delivery of
    /// its alert. The alert's id is copied once and shared by both maps, and looked up
    /// once.
    fn add(&mut self, id: u64, alert: &str) -> Option<u64> {
        if self.alert_of.contains_key(&id) {
            return self.pending.get(alert).and_then(|ids| ids.first().copied());
        }
        let key: Arc<str> = alert.into();
        let ids = self.pending.entry(Arc::clone(&key)).or_default();
        ids.insert(id);
        let first = ids.first().copied();
        self.alert_of.insert(id, key);
        first
    }

    /// Whether delivery `id` of `alert` may be sent now. When not, it is held (taken from
    /// `from`) until [`Order::settled`] gives it back.
    pub(super) fn admit(&mut self, id: u64, alert: Option<&str>, from: From) -> bool {
        let Some(alert) = alert else {
            return true;
        };
        if self.add(id, alert) == Some(id) {
            self.held.remove(&id);
            true
        } else {
            self.held.insert(id, from);
            false
        }
    }

    /// Whether `id` is held: reading the table of due deliveries skips it.
    pub(super) fn is_held(&self, id: u64) -> bool {
        self.held.contains_key(&id)
    }

    /// How many deliveries are held back.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }

    /// Delivery `id` is no longer pending for this target (delivered, dead, fallen back):
    /// the next delivery of its alert, if one is held, is given back with where to take
    /// it from.
    pub(super) fn settled(&mut self, id: u64) -> Option<(u64, From)> {
        let alert = self.alert_of.remove(&id)?;
        let ids = self.pending.get_mut(&alert)?;
        ids.remove(&id);
        let next = ids.first().copied();
        if ids.is_empty() {
            self.pending.remove(&alert);
        }
        let next = next?;
        let from = self.held.remove(&next)?;
        Some((next, from))
    }
}

#[cfg(test)]
#[path = "order_test.rs"]
mod tests;
