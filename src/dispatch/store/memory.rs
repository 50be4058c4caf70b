//! The outbox in memory: the [`Store`] contract without a disk, for tests, embedding
//! (`RouterBuilder::in_memory`) and, later, `test` blocks and explain.
//!
//! One mutex holds everything; every operation takes it once, so each is atomic and the
//! [`FreshSink`] sees new deliveries in id order. Nothing survives the process: a router on
//! this store is as durable as its process, and says so in its docs.
//!
//! It must never do less than the SQLite store in anything but durability: the same
//! conformance suite runs against both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{
    DeadLetter, Depth, Expired, Finish, FreshSink, Health, Record, Stateful, Store, StoreFuture,
    Stored, Submission,
};
use crate::dispatch::{DispatchError, DispatchErrorKind};
use crate::state::{Listed, Silence, Verdict};

/// The most entries the rules' memory holds in memory: as the SQLite store's.
const MAX_ENTRIES: usize = super::sqlite_state::MAX_ENTRIES;

/// Deliveries and dead letters in memory.
pub(crate) struct MemoryStore {
    state: Mutex<State>,
    sink: Option<FreshSink>,
    store_id: u64,
}

#[derive(Default)]
struct State {
    /// The next id to hand out; ids start at 1.
    next_id: u64,
    fresh: BTreeMap<u64, Record>,
    pending: BTreeMap<u64, Record>,
    /// (target, due time, id) of every pending delivery: a target's due ones in order.
    due: BTreeSet<(String, u64, u64)>,
    dead: BTreeMap<u64, DeadLetter>,
    /// What the rules remember (`dedup`, `resolve once`, `at most`).
    memory: crate::state::MemoryState,
    /// Silences, by id.
    silences: BTreeMap<u64, Silence>,
    /// Held deliveries that wait for a silence: delivery to silence.
    silenced: BTreeMap<u64, u64>,
}

impl State {
    fn id(&mut self) -> u64 {
        self.next_id = self.next_id.max(1);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn put_pending(&mut self, r: Record) {
        self.due.insert((r.spec.target.clone(), r.next_at_ms, r.id));
        self.pending.insert(r.id, r);
    }

    /// Removes a fresh or pending delivery; whether there was one.
    fn remove(&mut self, id: u64) -> bool {
        if self.fresh.remove(&id).is_some() {
            return true;
        }
        match self.pending.remove(&id) {
            Some(r) => {
                self.due.remove(&(r.spec.target, r.next_at_ms, id));
                true
            }
            None => false,
        }
    }
}

impl MemoryStore {
    /// An empty store; `sink` takes every append's new deliveries.
    pub(crate) fn new(sink: Option<FreshSink>) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(State::default()),
            sink,
            store_id: fastrand::u64(..),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish_one(state: &mut State, item: Finish) -> Option<Record> {
        let id = item.id();
        if !state.remove(id) {
            return None;
        }
        match item {
            Finish::Delivered(_) => None,
            Finish::Inhibited { id, check, now } => {
                check.forget(&mut state.memory, id, now);
                None
            }
            Finish::Retry(r) => {
                state.put_pending(r);
                None
            }
            Finish::FallBack { to: mut r, .. } => {
                r.id = state.id();
                state.put_pending(r.clone());
                Some(r)
            }
            Finish::Dead(d) => {
                state.dead.insert(id, d);
                None
            }
        }
    }

    fn replay_now(&self, id: u64, now_ms: u64) -> Result<Option<Record>, DispatchError> {
        let mut state = self.state();
        let Some(d) = state.dead.get(&id).cloned() else {
            return Ok(None);
        };
        let r = d.into_retry(now_ms).map_err(|message| {
            DispatchError::store(DispatchErrorKind::Refused, self.location(), message)
        })?;
        state.dead.remove(&id);
        state.put_pending(r.clone());
        Ok(Some(r))
    }
}

/// Every operation is done when called; its future is ready at once.
impl Store for MemoryStore {
    fn store_id(&self) -> u64 {
        self.store_id
    }

    fn location(&self) -> &Path {
        Path::new("memory")
    }

    fn submit(
        &self,
        batch: Vec<Submission>,
    ) -> StoreFuture<'_, Result<Vec<Stored>, DispatchError>> {
        let mut guard = self.state();
        let state = &mut *guard;
        let mut fresh = Vec::new();
        let mut out = Vec::with_capacity(batch.len());
        for sub in batch {
            let mut stored = Stored::default();
            let mut kept = super::Kept {
                now: sub.plain,
                ..super::Kept::default()
            };
            for r in &mut kept.now {
                r.id = state.id();
            }
            if let Some(st) = sub.stateful {
                let now = st.now;
                let State {
                    next_id, memory, ..
                } = state;
                let mut ids = || {
                    *next_id = (*next_id).max(1);
                    let id = *next_id;
                    *next_id += 1;
                    id
                };
                stored.verdicts = super::run_step(memory, *st, &mut ids, &mut kept);
                memory.collect(now);
                if memory.bound(MAX_ENTRIES) > 0 {
                    tracing::warn!(
                        limit = MAX_ENTRIES,
                        "the rules' memory is full; the entries closest to expiring are forgotten first (a duplicate may go through)"
                    );
                }
            }
            for (_, id) in kept.cancelled {
                state.fresh.remove(&id);
                if let Some(r) = state.pending.remove(&id) {
                    state.due.remove(&(r.spec.target.clone(), r.next_at_ms, id));
                }
            }
            for r in kept.later {
                stored.push_later(&r);
                state
                    .due
                    .insert((r.spec.target.clone(), r.next_at_ms, r.id));
                state.pending.insert(r.id, r);
            }
            for (delivery, silence) in kept.silenced {
                state.silenced.insert(delivery, silence);
            }
            for r in kept.now {
                stored.push(&r);
                state.fresh.insert(r.id, r.clone());
                fresh.push(r);
            }
            out.push(stored);
        }
        // Under the lock: concurrent submits reach the sink in id order.
        if let Some(sink) = &self.sink
            && !fresh.is_empty()
        {
            sink(fresh);
        }
        Box::pin(std::future::ready(Ok(out)))
    }

    fn preview(
        &self,
        batch: Vec<Stateful>,
    ) -> StoreFuture<'_, Result<Vec<Vec<Verdict>>, DispatchError>> {
        // A copy of the state: the preview's writes go nowhere.
        let mut state = self.state().memory.clone();
        let out = batch
            .into_iter()
            .map(|st| super::preview_one(&mut state, st))
            .collect();
        Box::pin(std::future::ready(Ok(out)))
    }

    fn inhibitors(
        &self,
        checks: Vec<crate::state::Recheck>,
        now: u64,
    ) -> StoreFuture<'_, Result<super::Inhibitors, DispatchError>> {
        let mut state = self.state();
        let out = checks
            .iter()
            .map(|c| c.inhibitor(&mut state.memory, now))
            .collect();
        Box::pin(std::future::ready(Ok(out)))
    }

    fn state_list(
        &self,
        now: u64,
        limit: usize,
    ) -> StoreFuture<'_, Result<Vec<Listed>, DispatchError>> {
        let mut listed = self.state().memory.list(usize::MAX);
        listed.retain(|l| l.expires > now);
        listed.truncate(limit);
        Box::pin(std::future::ready(Ok(listed)))
    }

    fn state_entries(&self) -> Result<u64, DispatchError> {
        Ok(self.state().memory.len() as u64)
    }

    fn finish(
        &self,
        items: Vec<Finish>,
    ) -> StoreFuture<'_, Vec<Result<Option<Record>, DispatchError>>> {
        let mut state = self.state();
        let out = items
            .into_iter()
            .map(|item| Ok(MemoryStore::finish_one(&mut state, item)))
            .collect();
        Box::pin(std::future::ready(out))
    }

    fn replay(
        &self,
        id: u64,
        now_ms: u64,
    ) -> StoreFuture<'_, Result<Option<Record>, DispatchError>> {
        Box::pin(std::future::ready(self.replay_now(id, now_ms)))
    }

    fn purge(&self, id: Option<u64>) -> StoreFuture<'_, Result<usize, DispatchError>> {
        let mut state = self.state();
        let n = match id {
            Some(id) => usize::from(state.dead.remove(&id).is_some()),
            None => std::mem::take(&mut state.dead).len(),
        };
        Box::pin(std::future::ready(Ok(n)))
    }

    fn due<'a>(
        &'a self,
        target: &'a str,
        now_ms: u64,
        limit: usize,
        skip: &'a (dyn Fn(u64) -> bool + Sync),
    ) -> StoreFuture<'a, Result<Vec<Record>, DispatchError>> {
        let state = self.state();
        let range = (target.to_owned(), 0, 0)..=(target.to_owned(), now_ms, u64::MAX);
        let out = state
            .due
            .range(range)
            .filter(|(_, _, id)| !skip(*id))
            .take(limit)
            .filter_map(|(_, _, id)| state.pending.get(id).cloned())
            .collect();
        Box::pin(std::future::ready(Ok(out)))
    }

    fn next_due<'a>(
        &'a self,
        target: &'a str,
        skip: &'a (dyn Fn(u64) -> bool + Sync),
    ) -> StoreFuture<'a, Result<Option<u64>, DispatchError>> {
        let state = self.state();
        let range = (target.to_owned(), 0, 0)..=(target.to_owned(), u64::MAX, u64::MAX);
        let next = state
            .due
            .range(range)
            .find(|(_, _, id)| !skip(*id))
            .map(|(_, at, _)| *at);
        Box::pin(std::future::ready(Ok(next)))
    }

    fn fresh_records<'a>(
        &'a self,
        ids: &'a [u64],
    ) -> StoreFuture<'a, Result<Vec<Record>, DispatchError>> {
        let state = self.state();
        let out = ids
            .iter()
            .filter_map(|id| state.fresh.get(id).cloned())
            .collect();
        Box::pin(std::future::ready(Ok(out)))
    }

    fn fresh_pending<'a>(
        &'a self,
        each: &'a mut (dyn FnMut(u64, &str) + Send),
    ) -> StoreFuture<'a, Result<(), DispatchError>> {
        let state = self.state();
        for (id, r) in &state.fresh {
            each(*id, &r.spec.target);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn pending_targets(&self) -> StoreFuture<'_, Result<Vec<String>, DispatchError>> {
        let state = self.state();
        let mut targets: Vec<String> = state.due.iter().map(|(t, _, _)| t.clone()).collect();
        targets.dedup();
        Box::pin(std::future::ready(Ok(targets)))
    }

    fn pending_alerts<'a>(
        &'a self,
        target: &'a str,
        now_ms: u64,
    ) -> StoreFuture<'a, Result<Vec<(u64, String)>, DispatchError>> {
        let state = self.state();
        let mut out: Vec<(u64, String)> = state
            .fresh
            .iter()
            .chain(
                state
                    .pending
                    .iter()
                    .filter(|(_, r)| !(r.attempts == 0 && r.next_at_ms > now_ms)),
            )
            .filter(|(_, r)| r.spec.target == target)
            .filter_map(|(id, r)| Some((*id, r.alert_id.clone()?)))
            .collect();
        out.sort_unstable_by_key(|(id, _)| *id);
        Box::pin(std::future::ready(Ok(out)))
    }

    fn depth(&self) -> Result<Depth, DispatchError> {
        let state = self.state();
        Ok(Depth {
            pending: (state.fresh.len() + state.pending.len()) as u64,
            dead: state.dead.len() as u64,
        })
    }

    fn outbox_view(
        &self,
        limit: usize,
    ) -> StoreFuture<'_, Result<super::OutboxView, DispatchError>> {
        let state = self.state();
        let mut view = super::OutboxView::default();
        for r in state.fresh.values() {
            super::count_into(&mut view.targets, &r.spec.target, true, 1);
        }
        for r in state.pending.values() {
            super::count_into(&mut view.targets, &r.spec.target, false, 1);
        }
        let mut soonest: Vec<&Record> = state.pending.values().collect();
        soonest.sort_by_key(|r| (r.next_at_ms, r.id));
        view.waiting = soonest
            .into_iter()
            .take(limit)
            .map(super::Waiting::of)
            .collect();
        Box::pin(std::future::ready(Ok(view)))
    }

    fn dead_letters(
        &self,
        limit: usize,
    ) -> StoreFuture<'_, Result<Vec<DeadLetter>, DispatchError>> {
        let list = self.state().dead.values().take(limit).cloned().collect();
        Box::pin(std::future::ready(Ok(list)))
    }

    #[cfg(test)]
    fn dead_letter(&self, id: u64) -> StoreFuture<'_, Result<Option<DeadLetter>, DispatchError>> {
        let one = self.state().dead.get(&id).cloned();
        Box::pin(std::future::ready(Ok(one)))
    }

    fn health(&self) -> Health {
        Health {
            writable: true,
            unreadable: 0,
            lost: 0,
        }
    }

    fn flush_groups(
        &self,
        now: u64,
        mut render: super::GroupRender,
    ) -> StoreFuture<'_, Result<super::Flushed, DispatchError>> {
        let mut guard = self.state();
        let state = &mut *guard;
        let mut kept = super::Kept::default();
        let State {
            next_id, memory, ..
        } = state;
        let mut ids = || {
            *next_id = (*next_id).max(1);
            let id = *next_id;
            *next_id += 1;
            id
        };
        let sent = super::run_flush(memory, now, &mut ids, &mut kept, &mut render);
        let mut flushed = super::Flushed {
            sent,
            targets: Vec::new(),
            next: memory.next_group_flush(),
        };
        let mut fresh = Vec::new();
        for r in kept.now {
            if !flushed.targets.contains(&r.spec.target) {
                flushed.targets.push(r.spec.target.clone());
            }
            state.fresh.insert(r.id, r.clone());
            fresh.push(r);
        }
        if let Some(sink) = &self.sink
            && !fresh.is_empty()
        {
            sink(fresh);
        }
        Box::pin(std::future::ready(Ok(flushed)))
    }

    fn silences(&self) -> StoreFuture<'_, Result<Vec<Silence>, DispatchError>> {
        let list = self.state().silences.values().cloned().collect();
        Box::pin(std::future::ready(Ok(list)))
    }

    fn add_silence(
        &self,
        mut silence: Silence,
        now: u64,
    ) -> StoreFuture<'_, Result<Silence, DispatchError>> {
        let mut guard = self.state();
        let state = &mut *guard;
        silence.id = state.silences.keys().next_back().map_or(1, |last| last + 1);
        state.memory.set_silence(silence.id, silence.span());
        state.silences.insert(silence.id, silence.clone());
        for id in crate::state::silences_to_forget(state.silences.values(), now) {
            state.silences.remove(&id);
            state.memory.forget_silence(id);
            state.silenced.retain(|_, s| *s != id);
        }
        Box::pin(std::future::ready(Ok(silence)))
    }

    fn expire_silence(
        &self,
        id: u64,
        now: u64,
    ) -> StoreFuture<'_, Result<Option<Expired>, DispatchError>> {
        let mut guard = self.state();
        let state = &mut *guard;
        let Some(silence) = state.silences.get_mut(&id) else {
            return Box::pin(std::future::ready(Ok(None)));
        };
        if silence.ends <= now {
            let silence = silence.clone();
            return Box::pin(std::future::ready(Ok(Some(Expired {
                silence,
                released: Vec::new(),
            }))));
        }
        silence.expire(now);
        let silence = silence.clone();
        state.memory.set_silence(id, silence.span());
        let held: Vec<u64> = state
            .silenced
            .iter()
            .filter(|(_, s)| **s == id)
            .map(|(d, _)| *d)
            .collect();
        let mut released = Vec::new();
        for delivery in held {
            state.silenced.remove(&delivery);
            let Some(r) = state.pending.get_mut(&delivery) else {
                continue;
            };
            if r.next_at_ms <= now {
                continue;
            }
            let target = r.spec.target.clone();
            state.due.remove(&(target.clone(), r.next_at_ms, delivery));
            r.next_at_ms = now;
            state.due.insert((target.clone(), now, delivery));
            if !released.contains(&target) {
                released.push(target);
            }
        }
        Box::pin(std::future::ready(Ok(Some(Expired { silence, released }))))
    }
}
