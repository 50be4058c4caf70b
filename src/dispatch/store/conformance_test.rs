//! The store contract as tests: every scenario runs against every implementation
//! (`sqlite::`, `memory::` and, with feature `nats`, `nats::` below, on a one-node
//! JetStream server the scenario starts and stops). A new backend adds a [`Backend`] and
//! one line in `suite!`; it is done when every scenario passes.
//!
//! Scenarios speak only through [`Store`]: what the router sees, in the order the router
//! does it (a delivery is taken by [`Store::due`] before its outcome is finished).
//! Durability across a reopen is asked only of backends that promise it
//! ([`Backend::reopen`]).
//!
//! Time is a [`Clock`] of short real offsets: a shared store's servers hold a delivery
//! given back for its real delay, so on one the scenario waits until a time has come
//! before it acts at it (a local store takes the times as given, and waits for nothing).
//! Where the contract is written differently for a store shared by replicas
//! ([`Store::shared_queues`]: a new delivery is taken from its queue, never handed to a
//! sink; the order is the servers' within a take; `next_due` is when to look again) the
//! scenario asserts each form, and says so.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::memory::MemoryStore;
use super::sqlite::SqliteStore;
use super::{DeadLetter, Depth, Finish, FreshSink, Record, Stateful, Store, Submission};
use crate::alert::State as AlertState;
use crate::dispatch::DispatchErrorKind;
use crate::state::{AlertFacts, DedupIntent, RuleChoice, VerdictKind};

type Opened<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

/// One implementation, as the suite opens it.
trait Backend {
    /// A new, empty store; `sink` takes every append's deliveries.
    fn open(&self, sink: Option<FreshSink>) -> Opened<'_, Box<dyn Store>>;
    /// The same store opened again after the last one was dropped, for durable backends.
    fn reopen(&self) -> Opened<'_, Option<Box<dyn Store>>>;
}

struct Memory;

impl Backend for Memory {
    fn open(&self, sink: Option<FreshSink>) -> Opened<'_, Box<dyn Store>> {
        Box::pin(async move { Box::new(MemoryStore::new(sink)) as Box<dyn Store> })
    }
    fn reopen(&self) -> Opened<'_, Option<Box<dyn Store>>> {
        Box::pin(async { None })
    }
}

/// An SQLite store in its own temporary folder, removed at the end of the scenario.
struct Sqlite {
    dir: std::path::PathBuf,
}

impl Sqlite {
    fn new(scenario: &str) -> Sqlite {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchyard-conformance-{}-{}-{scenario}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Sqlite { dir }
    }
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Backend for Sqlite {
    fn open(&self, sink: Option<FreshSink>) -> Opened<'_, Box<dyn Store>> {
        Box::pin(async move {
            Box::new(SqliteStore::open_with(&self.dir, sink, super::Loss::Refuse).unwrap())
                as Box<dyn Store>
        })
    }
    fn reopen(&self) -> Opened<'_, Option<Box<dyn Store>>> {
        Box::pin(async move {
            Some(
                Box::new(SqliteStore::open_with(&self.dir, None, super::Loss::Refuse).unwrap())
                    as Box<dyn Store>,
            )
        })
    }
}

/// A NATS deployment of its own (a stream under its own prefix) on the suite's 3-node
/// JetStream cluster.
#[cfg(feature = "nats")]
pub(crate) struct Nats {
    settings: super::nats::Settings,
}

#[cfg(feature = "nats")]
impl Nats {
    pub(crate) fn on(cluster: &super::nats::tests::cluster::Cluster, scenario: &str) -> Nats {
        // A stream name is at most 64 characters: the scenario's initials.
        let initials: String = scenario
            .split('_')
            .filter_map(|w| w.chars().next())
            .collect();
        Nats {
            settings: super::nats::Settings {
                prefix: format!("CONF-{initials}"),
                // The whole library suite runs beside these 18 scenarios on two cores: a
                // stream created while it does took over 10 s once (the run's only failure
                // in five); what is measured here is the contract, not the latency.
                timeout: std::time::Duration::from_secs(30),
                ..super::nats::tests::settings_for(cluster)
            },
        }
    }

    pub(crate) async fn store(&self) -> Box<dyn Store> {
        Box::new(
            super::nats_store::NatsStore::open(&self.settings)
                .await
                .unwrap_or_else(|e| panic!("opening {}: {e}", self.settings.prefix)),
        )
    }
}

#[cfg(feature = "nats")]
impl Backend for Nats {
    fn open(&self, _sink: Option<FreshSink>) -> Opened<'_, Box<dyn Store>> {
        // A shared store hands nothing to a sink: every delivery is taken from its queue.
        Box::pin(self.store())
    }
    fn reopen(&self) -> Opened<'_, Option<Box<dyn Store>>> {
        Box::pin(async move { Some(self.store().await) })
    }
}

macro_rules! suite {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(&super::Sqlite::new(stringify!($scenario))).await;
                }
            )*
        }
        mod memory {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(&super::Memory).await;
                }
            )*
        }
        /// Every scenario in turn on one 3-node cluster (replicated streams, as deployed),
        /// each on a deployment of its own; the cluster is stopped by PID at the end, or
        /// when a scenario fails.
        #[cfg(feature = "nats")]
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn on_a_three_node_nats_cluster() {
            let Some(cluster) = super::nats::tests::cluster_for("conformance") else {
                return;
            };
            $(
                eprintln!("scenario {}", stringify!($scenario));
                $scenario(&Nats::on(&cluster, stringify!($scenario))).await;
            )*
        }
    };
}

suite!(
    appends_get_growing_ids_and_reach_the_sink_before_the_answer,
    fresh_deliveries_come_back_by_id_in_the_order_asked,
    a_retry_moves_a_delivery_to_pending_due_at_its_time,
    delivered_removes_a_delivery_fresh_or_pending,
    a_fallback_replaces_the_delivery_under_a_new_id,
    a_dead_letter_keeps_what_was_sent_and_replays_due_now,
    purge_deletes_one_or_every_dead_letter,
    finishing_a_delivery_that_is_gone_writes_nothing,
    due_keeps_the_limit_the_skip_the_order_and_the_target,
    an_unreadable_dead_letter_is_refused_a_replay_and_kept,
    one_write_finishes_many_deliveries_each_with_its_result,
    what_was_stored_survives_reopening,
    the_step_runs_in_the_write_and_its_state_holds_across_writes,
    state_survives_reopening,
    pending_alerts_are_every_pending_delivery_of_a_target_with_an_alert_id,
    a_silence_holds_deliveries_and_its_early_expiry_releases_them_due_now,
    groups_are_flushed_when_due_in_one_write_and_survive_reopening,
    a_group_joined_by_many_alerts_of_one_submit_notifies_every_member_once,
    a_held_firing_keeps_its_inhibit_check_and_a_source_firing_then_keeps_it_out,
    the_outbox_view_counts_per_target_and_lists_what_waits_soonest_first,
);

/// The scenarios' time: `t0 + offset` ms, with `t0` the real time the scenario began.
struct Clock {
    t0: u64,
    /// Whether to wait for a time before acting at it (a shared store keeps real time).
    real: bool,
}

impl Clock {
    fn of(s: &dyn Store) -> Clock {
        Clock {
            t0: crate::dispatch::now_ms(),
            real: s.shared_queues(),
        }
    }

    fn at(&self, offset: u64) -> u64 {
        self.t0 + offset
    }

    /// `at(offset)`, once it has come.
    async fn come(&self, offset: u64) -> u64 {
        let at = self.at(offset);
        let now = crate::dispatch::now_ms();
        if self.real && at > now {
            tokio::time::sleep(std::time::Duration::from_millis(at - now)).await;
        }
        at
    }
}

fn record(target: &str, n: u64) -> Record {
    let mut r = Record::for_test(target, format!("{{\"n\":{n}}}"));
    r.alert_id = Some(format!("alert-{n}"));
    r.created_ms = 1_000 + n;
    r
}

/// How many deliveries are pending and dead, counted now (a shared store's `depth` is a
/// view refreshed in the background).
async fn depth(s: &dyn Store) -> (u64, u64) {
    let Depth { pending, dead } = s.depth_now().await.unwrap();
    (pending, dead)
}

async fn fresh_pending(s: &dyn Store) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    s.fresh_pending(&mut |id, t| out.push((id, t.to_owned())))
        .await
        .unwrap();
    out
}

/// What `due` hands out for `target` at `now`, skipping `busy` (in the worker's hands),
/// asserted to be `want` (by id). On a shared store a delivery given back comes back when
/// its servers' delay ends, a moment after its time, and the order is theirs: the look is
/// repeated (for up to 5 s) until it hands out `want` as a set, or for 100 ms to see that
/// nothing comes when nothing is wanted.
async fn due_is(s: &dyn Store, target: &str, now: u64, busy: &[u64], want: &[u64]) -> Vec<Record> {
    let skip = |id: u64| busy.contains(&id);
    let shared = s.shared_queues();
    let patience = std::time::Duration::from_millis(if want.is_empty() { 100 } else { 5_000 });
    let sorted = |ids: &[u64]| {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids
    };
    let started = std::time::Instant::now();
    loop {
        let got = s.due(target, now, 100, &skip).await.unwrap();
        let ids: Vec<u64> = got.iter().map(|r| r.id).collect();
        let settled = !shared
            || (want.is_empty() && !ids.is_empty())
            || (!want.is_empty() && sorted(&ids) == sorted(want))
            || started.elapsed() >= patience;
        if settled {
            if shared {
                assert_eq!(sorted(&ids), sorted(want), "due for {target} at {now}");
            } else {
                assert_eq!(ids, want, "due for {target} at {now}");
            }
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `r` as the router retries it: attempt `attempts` failed, due again at `at`.
fn retried(mut r: Record, attempts: u32, at: u64) -> Finish {
    r.attempts = attempts;
    r.next_at_ms = at;
    r.last_error = Some(String::from("HTTP 503"));
    Finish::Retry(r)
}

fn dead(r: Record, error: &str) -> Finish {
    Finish::Dead(DeadLetter {
        id: r.id,
        target: r.spec.target.clone(),
        alert_id: r.alert_id,
        attempts: 4,
        error: error.to_owned(),
        created_ms: r.created_ms,
        dead_ms: 9_000,
        body: r.body,
        shown_body: r.shown_body,
        spec: r.spec,
        unreadable: false,
    })
}

/// Appends `n` deliveries to `target` and returns them with their ids.
async fn stored(s: &dyn Store, target: &str, n: u64) -> Vec<Record> {
    stored_records(s, target, (0..n).map(|i| record(target, i)).collect()).await
}

/// Appends `records` (all to `target`) and returns them with their ids. On a shared store
/// they are taken, as a worker takes them: finished by the one that holds them.
async fn stored_records(s: &dyn Store, target: &str, records: Vec<Record>) -> Vec<Record> {
    let ids = s.append(records.clone()).await.unwrap();
    if s.shared_queues() {
        let started = std::time::Instant::now();
        let mut taken: Vec<u64> = Vec::new();
        while taken.len() < ids.len() && started.elapsed() < std::time::Duration::from_secs(5) {
            // What it took before (of these, and of earlier appends) is not asked again.
            let (held, wanted) = (taken.clone(), ids.clone());
            let skip = move |id: u64| held.contains(&id) || !wanted.contains(&id);
            let more = s.due(target, u64::MAX, ids.len(), &skip).await.unwrap();
            taken.extend(more.iter().map(|r| r.id).filter(|id| ids.contains(id)));
        }
        assert_eq!(taken.len(), ids.len(), "every stored delivery taken");
    }
    records
        .into_iter()
        .zip(ids)
        .map(|(mut r, id)| {
            r.id = id;
            r
        })
        .collect()
}

async fn the_outbox_view_counts_per_target_and_lists_what_waits_soonest_first(b: &dyn Backend) {
    let s = b.open(None).await;
    let c = Clock::of(&*s);
    let rs = stored(&*s, "t", 3).await;
    stored(&*s, "u", 1).await;
    finish_one(&*s, retried(rs[2].clone(), 1, c.at(60_000))).await;
    finish_one(&*s, retried(rs[1].clone(), 2, c.at(30_000))).await;
    let view = s.outbox_view(10).await.unwrap();
    let totals: Vec<(&str, u64)> = view
        .targets
        .iter()
        .map(|t| (t.target.as_str(), t.fresh + t.waiting))
        .collect();
    assert_eq!(
        totals,
        [("t", 3), ("u", 1)],
        "by name, every delivery counted once"
    );
    if !s.shared_queues() {
        // A shared store's counts are its queues': taken by a replica, or not yet.
        assert_eq!((view.targets[0].fresh, view.targets[0].waiting), (1, 2));
    }
    let waiting: Vec<(u64, u32, u64)> = view
        .waiting
        .iter()
        .map(|w| (w.id, w.attempts, w.next_at_ms))
        .collect();
    assert_eq!(
        waiting,
        [(rs[1].id, 2, c.at(30_000)), (rs[2].id, 1, c.at(60_000))],
        "soonest first"
    );
    assert_eq!(view.waiting[0].last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(view.waiting[0].alert_id.as_deref(), Some("alert-1"));
    assert_eq!(
        s.outbox_view(1).await.unwrap().waiting.len(),
        1,
        "at most the limit"
    );
}

async fn finish_one(s: &dyn Store, item: Finish) -> Option<Record> {
    let mut results = s.finish(vec![item]).await;
    assert_eq!(results.len(), 1);
    results.pop().unwrap().unwrap()
}

async fn appends_get_growing_ids_and_reach_the_sink_before_the_answer(b: &dyn Backend) {
    let sunk: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let seen = sunk.clone();
    let s = b
        .open(Some(Box::new(move |rs: Vec<Record>| {
            seen.lock()
                .unwrap()
                .extend(rs.iter().map(|r| (r.id, r.body.clone())));
        })))
        .await;
    let c = Clock::of(&*s);
    let first = s.append((0..4).map(|n| record("t", n)).collect()).await;
    let first = first.unwrap();
    assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
    let second = s.append(vec![record("u", 9)]).await.unwrap();
    assert!(second[0] > first[3], "{second:?} after {first:?}");
    assert!(s.append(Vec::new()).await.unwrap().is_empty());
    assert_eq!(depth(&*s).await, (5, 0));
    if s.shared_queues() {
        // Nothing is handed over in memory: each is taken from its queue, in order.
        assert!(
            sunk.lock().unwrap().is_empty(),
            "a shared store has no sink"
        );
        assert!(fresh_pending(&*s).await.is_empty());
        let taken = due_is(&*s, "t", c.at(0), &[], &first).await;
        assert_eq!(taken.iter().map(|r| r.id).collect::<Vec<_>>(), first);
        assert_eq!(taken[2].body, "{\"n\":2}");
        due_is(&*s, "u", c.at(0), &[], &second).await;
    } else {
        assert_eq!(
            sunk.lock()
                .unwrap()
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>(),
            first.iter().chain(&second).copied().collect::<Vec<_>>(),
            "handed to the sink before the answer, in order; an empty append sinks nothing"
        );
        assert_eq!(sunk.lock().unwrap()[2].1, "{\"n\":2}");
        let listed = fresh_pending(&*s).await;
        assert_eq!(
            listed,
            first
                .iter()
                .map(|&id| (id, String::from("t")))
                .chain([(second[0], String::from("u"))])
                .collect::<Vec<_>>()
        );
        due_is(&*s, "t", u64::MAX, &[], &[]).await; // fresh ones are not due
    }
    assert!(s.health().writable);
}

async fn fresh_deliveries_come_back_by_id_in_the_order_asked(b: &dyn Backend) {
    let s = b.open(None).await;
    let rs = stored(&*s, "t", 3).await;
    let read = s
        .fresh_records(&[rs[2].id, rs[0].id, 999_999])
        .await
        .unwrap();
    assert_eq!(
        read,
        [rs[2].clone(), rs[0].clone()],
        "whole, and an unknown id left out"
    );
}

/// Asserts the fresh deliveries (stored, never attempted) of `target` are `ids`: every
/// one `fresh_pending` lists, on a local store; on a shared one, those the replica that
/// took them holds and reads back by id.
async fn fresh_are(s: &dyn Store, target: &str, ids: &[u64]) {
    if s.shared_queues() {
        let held = s.fresh_records(ids).await.unwrap();
        assert_eq!(held.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
        assert!(
            held.iter()
                .all(|r| r.spec.target == target && r.attempts == 0)
        );
    } else {
        let want: Vec<(u64, String)> = ids.iter().map(|&id| (id, target.to_owned())).collect();
        assert_eq!(fresh_pending(s).await, want);
    }
}

async fn a_retry_moves_a_delivery_to_pending_due_at_its_time(b: &dyn Backend) {
    let s = b.open(None).await;
    let c = Clock::of(&*s);
    let rs = stored(&*s, "t", 2).await;
    let busy = [rs[1].id];
    assert_eq!(
        finish_one(&*s, retried(rs[0].clone(), 1, c.at(300))).await,
        None
    );
    assert_eq!(depth(&*s).await, (2, 0), "still pending");
    assert!(s.fresh_records(&[rs[0].id]).await.unwrap().is_empty());
    fresh_are(&*s, "t", &[rs[1].id]).await;
    due_is(&*s, "t", c.come(299).await, &busy, &[]).await;
    let back = due_is(&*s, "t", c.come(300).await, &busy, &[rs[0].id]).await;
    assert_eq!(
        (back[0].id, back[0].attempts, back[0].last_error.as_deref()),
        (rs[0].id, 1, Some("HTTP 503"))
    );
    assert_eq!(back[0].body, rs[0].body);
    let none = |_: u64| false;
    if !s.shared_queues() {
        // A shared store's servers know when a delivery is due; it answers when to look.
        assert_eq!(s.next_due("t", &none).await.unwrap(), Some(c.at(300)));
    }
    assert_eq!(s.pending_targets().await.unwrap(), ["t"]);
    // Retried again: the new time replaces the old one.
    assert_eq!(
        finish_one(&*s, retried(back[0].clone(), 2, c.at(600))).await,
        None
    );
    due_is(&*s, "t", c.come(599).await, &busy, &[]).await;
    due_is(&*s, "t", c.come(600).await, &busy, &[rs[0].id]).await;
}

async fn delivered_removes_a_delivery_fresh_or_pending(b: &dyn Backend) {
    let s = b.open(None).await;
    let c = Clock::of(&*s);
    let rs = stored(&*s, "t", 3).await;
    finish_one(&*s, retried(rs[1].clone(), 1, c.at(0))).await;
    due_is(&*s, "t", c.at(0), &[rs[0].id, rs[2].id], &[rs[1].id]).await;
    let results = s
        .finish(vec![
            Finish::Delivered(rs[0].id),
            Finish::Delivered(rs[1].id),
        ])
        .await;
    assert!(results.iter().all(|r| matches!(r, Ok(None))));
    assert_eq!(depth(&*s).await, (1, 0));
    due_is(&*s, "t", c.at(0), &[rs[2].id], &[]).await;
    if !s.shared_queues() {
        // On a shared store every target with a queue is listed, and `next_due` is when
        // to look again.
        let none = |_: u64| false;
        assert_eq!(s.next_due("t", &none).await.unwrap(), None);
        assert!(s.pending_targets().await.unwrap().is_empty());
    }
    fresh_are(&*s, "t", &[rs[2].id]).await;
    // Delivered twice: nothing more happens.
    assert_eq!(finish_one(&*s, Finish::Delivered(rs[0].id)).await, None);
    assert_eq!(depth(&*s).await, (1, 0));
}

async fn a_fallback_replaces_the_delivery_under_a_new_id(b: &dyn Backend) {
    let s = b.open(None).await;
    let c = Clock::of(&*s);
    let rs = stored(&*s, "t", 2).await;
    let mut to = record("backup", 7);
    to.next_at_ms = c.at(100);
    to.fallback_from = Some(String::from("t"));
    let created = finish_one(
        &*s,
        Finish::FallBack {
            from: rs[0].id,
            to: to.clone(),
        },
    )
    .await
    .expect("the new delivery");
    assert!(
        created.id > rs[1].id,
        "a new id: {} after {}",
        created.id,
        rs[1].id
    );
    assert_eq!(
        Record {
            id: 0,
            ..created.clone()
        },
        to
    );
    assert_eq!(depth(&*s).await, (2, 0));
    assert!(s.fresh_records(&[rs[0].id]).await.unwrap().is_empty());
    due_is(&*s, "t", c.at(100), &[rs[1].id], &[]).await;
    due_is(&*s, "backup", c.come(99).await, &[], &[]).await;
    due_is(&*s, "backup", c.come(100).await, &[], &[created.id]).await;
    // A second fallback from the same delivery finds it gone.
    assert_eq!(
        finish_one(&*s, Finish::FallBack { from: rs[0].id, to }).await,
        None
    );
    assert_eq!(depth(&*s).await, (2, 0));
}

async fn a_dead_letter_keeps_what_was_sent_and_replays_due_now(b: &dyn Backend) {
    let s = b.open(None).await;
    let c = Clock::of(&*s);
    let mut rs = stored(&*s, "t", 2).await;
    rs[0].shown_body = None;
    assert_eq!(finish_one(&*s, dead(rs[0].clone(), "HTTP 500")).await, None);
    assert_eq!(depth(&*s).await, (1, 1));
    let listed = s.dead_letters(10).await.unwrap();
    assert_eq!(listed.len(), 1);
    let d = &listed[0];
    assert_eq!(
        (
            d.id,
            d.target.as_str(),
            d.attempts,
            d.error.as_str(),
            d.dead_ms
        ),
        (rs[0].id, "t", 4, "HTTP 500", 9_000)
    );
    assert_eq!(
        (d.body(), d.alert_id.as_deref()),
        ("{\"n\":0}", Some("alert-0"))
    );
    assert_eq!(s.dead_letter(rs[0].id).await.unwrap().as_ref(), Some(d));
    assert_eq!(s.dead_letter(999_999).await.unwrap(), None);

    let now = c.at(0);
    let replayed = s.replay(rs[0].id, now).await.unwrap().expect("replayed");
    assert_eq!(
        (replayed.id, replayed.attempts, replayed.next_at_ms),
        (rs[0].id, 0, now)
    );
    assert_eq!(replayed.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(replayed.body, rs[0].body);
    assert_eq!(depth(&*s).await, (2, 0));
    due_is(&*s, "t", now, &[rs[1].id], &[rs[0].id]).await;
    assert_eq!(
        s.replay(rs[0].id, now).await.unwrap(),
        None,
        "no longer dead"
    );
    assert_eq!(s.replay(999_999, now).await.unwrap(), None);
}

async fn purge_deletes_one_or_every_dead_letter(b: &dyn Backend) {
    let s = b.open(None).await;
    let rs = stored(&*s, "t", 3).await;
    s.finish(rs.iter().map(|r| dead(r.clone(), "gone")).collect())
        .await;
    assert_eq!(depth(&*s).await, (0, 3));
    assert_eq!(s.purge(Some(rs[1].id)).await.unwrap(), 1);
    assert_eq!(s.purge(Some(rs[1].id)).await.unwrap(), 0);
    assert_eq!(
        s.dead_letters(10)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        [rs[0].id, rs[2].id]
    );
    assert_eq!(s.purge(None).await.unwrap(), 2);
    assert_eq!(depth(&*s).await, (0, 0));
    assert_eq!(s.purge(None).await.unwrap(), 0);
}

async fn finishing_a_delivery_that_is_gone_writes_nothing(b: &dyn Backend) {
    let s = b.open(None).await;
    let c = Clock::of(&*s);
    let rs = stored(&*s, "t", 1).await;
    let mut ghost = record("t", 5);
    ghost.id = 999_999;
    let results = s
        .finish(vec![
            retried(ghost.clone(), 1, 0),
            Finish::FallBack {
                from: ghost.id,
                to: record("backup", 1),
            },
            dead(ghost.clone(), "HTTP 500"),
            Finish::Delivered(ghost.id),
        ])
        .await;
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|r| matches!(r, Ok(None))), "{results:?}");
    assert_eq!(depth(&*s).await, (1, 0));
    due_is(&*s, "t", c.at(0), &[rs[0].id], &[]).await;
    due_is(&*s, "backup", c.at(0), &[], &[]).await;
    fresh_are(&*s, "t", &[rs[0].id]).await;
}

async fn due_keeps_the_limit_the_skip_the_order_and_the_target(b: &dyn Backend) {
    let s = b.open(None).await;
    let c = Clock::of(&*s);
    let shared = s.shared_queues();
    let rs = stored(&*s, "a", 5).await;
    let times = [300, 100, 200, 100, 400];
    s.finish(
        rs.iter()
            .zip(times)
            .map(|(r, at)| retried(r.clone(), 1, c.at(at)))
            .collect(),
    )
    .await;
    let other = stored(&*s, "b", 1).await;
    finish_one(&*s, retried(other[0].clone(), 1, c.at(0))).await;

    // By due time, then id (a shared store: the servers' order within a take).
    let now = c.come(250).await;
    due_is(&*s, "a", now, &[], &[rs[1].id, rs[3].id, rs[2].id]).await;
    let none = |_: u64| false;
    let two: Vec<u64> = s
        .due("a", now, 2, &none)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    if shared {
        assert_eq!(two.len(), 2, "{two:?}");
        assert!(
            two.iter()
                .all(|id| [rs[1].id, rs[2].id, rs[3].id].contains(id)),
            "{two:?}"
        );
    } else {
        assert_eq!(two, [rs[1].id, rs[3].id]);
    }
    let skip = |id: u64| two.contains(&id);
    let rest = s.due("a", now, 2, &skip).await.unwrap();
    let third = [rs[1].id, rs[2].id, rs[3].id]
        .into_iter()
        .find(|id| !two.contains(id));
    assert_eq!(
        rest.iter().map(|r| r.id).collect::<Vec<_>>(),
        Vec::from_iter(third)
    );
    if !shared {
        assert_eq!(s.next_due("a", &skip).await.unwrap(), Some(c.at(200)));
        assert_eq!(s.next_due("a", &none).await.unwrap(), Some(c.at(100)));
    }
    let mut targets = s.pending_targets().await.unwrap();
    targets.sort();
    assert_eq!(targets, ["a", "b"]);
    due_is(&*s, "b", now, &[], &[other[0].id]).await;
    due_is(&*s, "c", now, &[], &[]).await;
    // The later ones when their times come.
    let rest = [rs[1].id, rs[2].id, rs[3].id];
    due_is(&*s, "a", c.come(400).await, &rest, &[rs[0].id, rs[4].id]).await;
}

async fn an_unreadable_dead_letter_is_refused_a_replay_and_kept(b: &dyn Backend) {
    let s = b.open(None).await;
    let rs = stored(&*s, "t", 1).await;
    let d = DeadLetter::unreadable(rs[0].id, String::from("t"), b"{not json", "bad", 9_000);
    finish_one(&*s, Finish::Dead(d)).await;
    let refused = s.replay(rs[0].id, 0).await.expect_err("refused");
    assert_eq!(refused.kind(), DispatchErrorKind::Refused, "{refused}");
    let kept = s.dead_letter(rs[0].id).await.unwrap().expect("kept");
    assert!(kept.is_unreadable());
    assert_eq!(depth(&*s).await, (0, 1));
}

async fn one_write_finishes_many_deliveries_each_with_its_result(b: &dyn Backend) {
    let s = b.open(None).await;
    let rs = stored(&*s, "t", 4).await;
    let results = s
        .finish(vec![
            Finish::Delivered(rs[0].id),
            retried(rs[1].clone(), 1, 50),
            Finish::FallBack {
                from: rs[2].id,
                to: record("backup", 2),
            },
            dead(rs[3].clone(), "HTTP 400"),
        ])
        .await;
    assert_eq!(results.len(), 4);
    assert!(matches!(results[0], Ok(None)));
    assert!(matches!(results[1], Ok(None)));
    let created = results[2].as_ref().unwrap().as_ref().expect("new delivery");
    assert_eq!(created.spec.target, "backup");
    assert!(matches!(results[3], Ok(None)));
    assert_eq!(depth(&*s).await, (2, 1));
}

async fn what_was_stored_survives_reopening(b: &dyn Backend) {
    let s = b.open(None).await;
    let c = Clock::of(&*s);
    let id = s.store_id();
    let rs = stored(&*s, "t", 3).await;
    finish_one(&*s, retried(rs[1].clone(), 1, c.at(40))).await;
    finish_one(&*s, dead(rs[2].clone(), "HTTP 500")).await;
    // As a router stops: what it took and did not finish goes back (a shared store's).
    s.release().await;
    drop(s);
    let Some(s) = b.reopen().await else {
        return; // not a durable backend
    };
    assert_eq!(s.store_id(), id, "idempotency keys stay the same");
    let now = c.come(40).await;
    if s.shared_queues() {
        // The fresh one given back is taken again, with the retry.
        due_is(&*s, "t", now, &[], &[rs[0].id, rs[1].id]).await;
    } else {
        due_is(&*s, "t", now, &[], &[rs[1].id]).await;
    }
    fresh_are(&*s, "t", &[rs[0].id]).await;
    assert_eq!(s.fresh_records(&[rs[0].id]).await.unwrap(), [rs[0].clone()]);
    assert_eq!(
        s.dead_letter(rs[2].id).await.unwrap().map(|d| d.error),
        Some(String::from("HTTP 500"))
    );
    assert_eq!(depth(&*s).await, (2, 1));
    let more = s.append(vec![record("t", 9)]).await.unwrap();
    assert!(more[0] > rs[2].id, "ids go on growing: {more:?}");
}

/// A submission of alert `id` in `state` at `now` through a rule with `dedup until
/// resolved` and `resolve once`, to target `t`.
pub(crate) fn remembered(id: &str, state: AlertState, now: u64) -> Submission {
    let mut r = record("t", now);
    r.alert_id = Some(id.to_owned());
    Submission {
        plain: Vec::new(),
        stateful: Some(Box::new(Stateful {
            facts: AlertFacts::new(Some(id.to_owned()), state),
            now,
            choices: vec![RuleChoice {
                rule: String::from("pages"),
                clauses: 7,
                targets: vec![(String::from("t"), r)],
                dedup: Some(DedupIntent {
                    key: Some(id.as_bytes().to_vec()),
                    window_ms: None,
                }),
                resolve_once: true,
                throttle: None,
                gate: None,
                group: None,
            }],
            probes: Vec::new(),
        })),
    }
}

/// A verdict as the scenarios compare it: `delivered`, `duplicate`, `unannounced` or
/// `other`.
pub(crate) fn kind(v: &crate::state::Verdict) -> &'static str {
    match v.kind {
        VerdictKind::Delivered { .. } => "delivered",
        VerdictKind::Duplicate { .. } => "duplicate",
        VerdictKind::Unannounced => "unannounced",
        _ => "other",
    }
}

async fn verdicts(s: &dyn Store, batch: Vec<Submission>) -> Vec<Vec<&'static str>> {
    s.submit(batch)
        .await
        .unwrap()
        .into_iter()
        .map(|st| st.verdicts.iter().map(kind).collect())
        .collect()
}

async fn the_step_runs_in_the_write_and_its_state_holds_across_writes(b: &dyn Backend) {
    let sunk: Arc<Mutex<Vec<u64>>> = Arc::default();
    let seen = sunk.clone();
    let s = b
        .open(Some(Box::new(move |rs: Vec<Record>| {
            seen.lock().unwrap().extend(rs.iter().map(|r| r.id));
        })))
        .await;
    // Two copies in one write: the second is a duplicate of the first.
    let both = verdicts(
        &*s,
        vec![
            remembered("a", AlertState::Firing, 10),
            remembered("a", AlertState::Firing, 11),
        ],
    )
    .await;
    assert_eq!(both, [vec!["delivered"], vec!["duplicate"]]);
    if !s.shared_queues() {
        assert_eq!(
            sunk.lock().unwrap().len(),
            1,
            "only what the step kept is stored"
        );
    }
    assert_eq!(depth(&*s).await, (1, 0));
    // A later write sees the state.
    let later = verdicts(&*s, vec![remembered("a", AlertState::Firing, 20)]).await;
    assert_eq!(later, [vec!["duplicate"]]);
    let resolved = verdicts(
        &*s,
        vec![
            remembered("a", AlertState::Resolved, 30),
            remembered("a", AlertState::Resolved, 31),
            remembered("b", AlertState::Resolved, 32),
        ],
    )
    .await;
    assert_eq!(
        resolved,
        [vec!["delivered"], vec!["unannounced"], vec!["unannounced"]]
    );
    assert_eq!(depth(&*s).await, (2, 0));
    if s.shared_queues() {
        // Its count is a view refreshed in the background: the listing reads now.
        assert!(!s.state_list(0, 10).await.unwrap().is_empty());
    } else {
        assert!(s.state_entries().unwrap() >= 1);
    }
    // Plain deliveries beside stateful ones keep their ids and order.
    let mixed = s
        .submit(vec![
            Submission {
                plain: vec![record("t", 1)],
                stateful: None,
            },
            remembered("c", AlertState::Firing, 40),
        ])
        .await
        .unwrap();
    assert_eq!(mixed.len(), 2);
    assert!(mixed[0].verdicts.is_empty());
    assert_eq!(mixed[0].ids.len(), 1);
    assert_eq!(mixed[1].ids.len(), 1);
    assert!(mixed[1].ids[0] > mixed[0].ids[0]);
}

async fn state_survives_reopening(b: &dyn Backend) {
    let s = b.open(None).await;
    assert_eq!(
        verdicts(&*s, vec![remembered("a", AlertState::Firing, 10)]).await,
        [vec!["delivered"]]
    );
    drop(s);
    let Some(s) = b.reopen().await else {
        return; // not a durable backend
    };
    assert_eq!(
        verdicts(&*s, vec![remembered("a", AlertState::Firing, 20)]).await,
        [vec!["duplicate"]],
        "a restart forgets nothing the rules remember"
    );
    assert_eq!(
        verdicts(&*s, vec![remembered("a", AlertState::Resolved, 30)]).await,
        [vec!["delivered"]]
    );
}

async fn pending_alerts_are_every_pending_delivery_of_a_target_with_an_alert_id(b: &dyn Backend) {
    let s = b.open(None).await;
    let c = Clock::of(&*s);
    let rs = stored(&*s, "t", 4).await;
    stored(&*s, "other", 1).await;
    let mut no_id = record("t", 9);
    no_id.alert_id = None;
    let no_id = stored_records(&*s, "t", vec![no_id]).await;
    // One waits for a retry, one was delivered, one is dead: pending are the first two.
    finish_one(&*s, retried(rs[0].clone(), 1, c.at(100))).await;
    finish_one(&*s, Finish::Delivered(rs[2].id)).await;
    finish_one(&*s, dead(rs[3].clone(), "HTTP 400")).await;
    // A held delivery (never attempted, due later) is left out until it is due.
    let mut held = record("t", 7);
    held.next_at_ms = c.at(300);
    let id = s
        .submit(vec![Submission {
            plain: Vec::new(),
            stateful: Some(Box::new(Stateful {
                facts: AlertFacts::new(Some(String::from("alert-7")), AlertState::Firing),
                now: c.at(0),
                choices: vec![RuleChoice {
                    rule: String::from("slow"),
                    clauses: 1,
                    targets: vec![(String::from("t"), held)],
                    dedup: None,
                    resolve_once: false,
                    throttle: None,
                    gate: Some(crate::state::Gate::Delay { ms: 300 }),
                    group: None,
                }],
                probes: Vec::new(),
            })),
        }])
        .await
        .unwrap()[0]
        .ids[0];
    if s.shared_queues() {
        // One alert's deliveries are ordered within the replica that takes them: what
        // other replicas hold is not listed (docs/nats.md, "Order and timing").
        assert!(s.pending_alerts("t", c.at(300)).await.unwrap().is_empty());
    } else {
        let pending = s.pending_alerts("t", c.at(0)).await.unwrap();
        assert_eq!(
            pending,
            [
                (rs[0].id, String::from("alert-0")),
                (rs[1].id, String::from("alert-1"))
            ]
        );
        assert!(
            s.pending_alerts("nobody", c.at(0))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            s.pending_alerts("t", c.at(299))
                .await
                .unwrap()
                .iter()
                .all(|(i, _)| *i != id),
            "not before it is due"
        );
        assert!(
            s.pending_alerts("t", c.at(300))
                .await
                .unwrap()
                .contains(&(id, String::from("alert-7"))),
            "once due"
        );
    }
    let busy = [rs[1].id, no_id[0].id];
    due_is(&*s, "t", c.come(299).await, &busy, &[rs[0].id]).await;
    due_is(&*s, "t", c.come(300).await, &busy, &[rs[0].id, id]).await;
}

fn silence(ends: u64) -> crate::state::Silence {
    crate::state::Silence {
        id: 0,
        condition: String::from("team == \"db\""),
        starts: 1_000,
        ends,
        created_by: String::from("alice"),
        comment: String::from("upgrade"),
        created_at: 1_000,
        expired_at: None,
    }
}

/// Alert `id` firing at `now` through a rule without clauses to `t`, while silence
/// `silence` matches it.
fn silenced(id: &str, silence: u64, now: u64) -> Submission {
    silenced_to("t", id, silence, now)
}

/// [`silenced`], to `target`.
fn silenced_to(target: &str, id: &str, silence: u64, now: u64) -> Submission {
    let mut r = record(target, now);
    r.alert_id = Some(id.to_owned());
    Submission {
        plain: Vec::new(),
        stateful: Some(Box::new(Stateful {
            facts: AlertFacts {
                silences: vec![silence],
                silencing: true,
                ..AlertFacts::new(Some(id.to_owned()), AlertState::Firing)
            },
            now,
            choices: vec![RuleChoice {
                rule: String::from("pages"),
                clauses: 0,
                targets: vec![(target.to_owned(), r)],
                dedup: None,
                resolve_once: false,
                throttle: None,
                gate: None,
                group: None,
            }],
            probes: Vec::new(),
        })),
    }
}

async fn a_silence_holds_deliveries_and_its_early_expiry_releases_them_due_now(b: &dyn Backend) {
    let s = b.open(None).await;
    let c = Clock::of(&*s);
    let mut ids = Vec::new();
    for ends in [2_000, 5_000, 250] {
        ids.push(
            s.add_silence(silence(c.at(ends)), c.at(0))
                .await
                .unwrap()
                .id,
        );
    }
    assert_eq!(ids, [1, 2, 3], "ids from 1, growing");
    let stored = s
        .submit(vec![
            silenced("a", 1, c.at(0)),
            silenced("b", 2, c.at(0)),
            silenced("d", 3, c.at(0)),
        ])
        .await
        .unwrap();
    let (a, b_id, d) = (stored[0].ids[0], stored[1].ids[0], stored[2].ids[0]);
    assert!(matches!(
        stored[0].verdicts[0].kind,
        VerdictKind::Silenced {
            silence: 1,
            until,
            ..
        } if until == c.at(2_000)
    ));
    assert_eq!(stored[0].later, ["t"], "held: the worker reads the table");
    due_is(&*s, "t", c.come(100).await, &[], &[]).await; // held while the silences last

    // Expiring silence 2 early releases what it holds, due now; silence 1's stays.
    let now = c.come(150).await;
    let expired = s.expire_silence(2, now).await.unwrap().unwrap();
    assert_eq!(expired.released, ["t"]);
    assert_eq!(expired.silence.ends, now);
    assert_eq!(expired.silence.expired_at, Some(now));
    due_is(&*s, "t", now, &[], &[b_id]).await;
    // Again: nothing more to release; an unknown silence is None.
    let again = s.expire_silence(2, c.at(160)).await.unwrap().unwrap();
    assert!(again.released.is_empty());
    assert_eq!(again.silence.ends, now);
    assert!(s.expire_silence(9, c.at(160)).await.unwrap().is_none());

    // The step sees the expiry: a new firing under silence 2 goes at once.
    let fresh = s
        .submit(vec![silenced_to("u", "c", 2, c.at(160))])
        .await
        .unwrap();
    assert!(matches!(
        fresh[0].verdicts[0].kind,
        VerdictKind::Delivered { .. }
    ));
    // A silence that ends by itself: what it holds is due when it ends.
    due_is(&*s, "t", c.come(249).await, &[b_id], &[]).await;
    due_is(&*s, "t", c.come(250).await, &[b_id], &[d]).await;

    let listed = s.silences().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[1], expired.silence);
    s.release().await;
    drop(s);
    if let Some(s) = b.reopen().await {
        assert_eq!(
            s.silences().await.unwrap(),
            listed,
            "silences survive reopening"
        );
        // What silence 1 holds is still held, and still released by its expiry.
        let now = c.come(300).await;
        let released = s.expire_silence(1, now).await.unwrap().unwrap();
        assert_eq!(released.released, ["t"]);
        due_is(&*s, "t", now, &[], &[b_id, d, a]).await;
    }
}

/// What inhibit `i` says of an alert in cluster `eu`: a target, or a source.
fn inhibit_fact(target: bool) -> crate::state::InhibitFact {
    crate::state::InhibitFact {
        inhibit: String::from("i"),
        key: Some(br#"[["eu"]]"#.to_vec()),
        target,
        source: !target,
    }
}

async fn a_held_firing_keeps_its_inhibit_check_and_a_source_firing_then_keeps_it_out(
    b: &dyn Backend,
) {
    let s = b.open(None).await;
    s.add_silence(silence(100_000), 1_000).await.unwrap();
    let warning = |id: &str| {
        let mut w = silenced(id, 1, 2_000);
        if let Some(st) = &mut w.stateful {
            st.facts.inhibits.push(inhibit_fact(true));
            st.choices[0].resolve_once = true;
        }
        w
    };
    let announced =
        |list: Vec<crate::state::Listed>| list.iter().filter(|l| l.kind == "announced").count();
    let stored = s.submit(vec![warning("w1"), warning("w2")]).await.unwrap();
    let (w1, w2) = (stored[0].ids[0], stored[1].ids[0]);
    let checks = |due: &[Record]| -> Vec<crate::state::Recheck> {
        due.iter()
            .map(|r| {
                *r.recheck
                    .clone()
                    .expect("a held target of an inhibit keeps its check")
            })
            .collect()
    };
    let due = s.due("t", 100_000, 10, &|_| false).await.unwrap();
    assert_eq!(due.iter().map(|r| r.id).collect::<Vec<_>>(), [w1, w2]);
    let held = checks(&due);
    assert_eq!(
        (held[0].rule.as_str(), held[0].alert.as_str()),
        ("pages", "w1")
    );
    assert_eq!(
        s.inhibitors(held.clone(), 3_000).await.unwrap(),
        [None, None]
    );

    // A source fires in the same cluster: the held firings are kept out when due.
    let mut source = remembered("crit", AlertState::Firing, 3_000);
    if let Some(st) = &mut source.stateful {
        st.facts.inhibits.push(inhibit_fact(false));
    }
    s.submit(vec![source]).await.unwrap();
    let by = Some((String::from("i"), String::from("crit")));
    assert_eq!(
        s.inhibitors(held.clone(), 100_000).await.unwrap(),
        [by.clone(), by.clone()]
    );
    let forget = Box::new(held[0].clone());
    let finish = Finish::Inhibited {
        id: w1,
        check: forget,
        now: 100_000,
    };
    // `resolve once` noted both held firings and the source's.
    assert_eq!(announced(s.state_list(3_000, 100).await.unwrap()), 3);
    assert_eq!(finish_one(&*s, finish).await, None);
    assert_eq!(
        announced(s.state_list(3_000, 100).await.unwrap()),
        2,
        "the one kept out is owed no resolution"
    );
    let due = s.due("t", 100_000, 10, &|_| false).await.unwrap();
    assert_eq!(
        due.iter()
            .map(|r| r.id)
            // A shared store hands out the source's fresh delivery here too.
            .filter(|id| [w1, w2].contains(id))
            .collect::<Vec<_>>(),
        [w2],
        "w1 forgotten, unsent"
    );
    assert!(
        s.dead_letters(10).await.unwrap().is_empty(),
        "not a dead letter"
    );
    assert_eq!(s.inhibitors(Vec::new(), 100_000).await.unwrap(), []);
    // As a router stops: what it took and did not finish goes back (a shared store's).
    s.release().await;
    drop(s);
    if let Some(s) = b.reopen().await {
        // A shared store's servers hand out what was given back within moments.
        let started = std::time::Instant::now();
        let mut due: Vec<Record> = Vec::new();
        while due.is_empty() && started.elapsed() < std::time::Duration::from_secs(5) {
            due = s.due("t", 100_000, 10, &|_| false).await.unwrap();
            due.retain(|r| r.id == w2);
        }
        assert_eq!(checks(&due), held[1..], "the check survives reopening");
        assert_eq!(s.inhibitors(checks(&due), 100_000).await.unwrap(), [by]);
    }
}

/// Alert `id` firing at `now` through a rule with `group wait 200ms every 500ms`, to
/// target `t`.
pub(crate) fn grouped(id: &str, now: u64) -> Submission {
    let mut r = record("t", now);
    r.alert_id = Some(id.to_owned());
    Submission {
        plain: Vec::new(),
        stateful: Some(Box::new(Stateful {
            facts: AlertFacts::new(Some(id.to_owned()), AlertState::Firing),
            now,
            choices: vec![RuleChoice {
                rule: String::from("groups"),
                clauses: 3,
                targets: vec![(String::from("t"), r)],
                dedup: None,
                resolve_once: false,
                throttle: None,
                gate: None,
                group: Some(crate::state::GroupIntent {
                    key: String::from("[[\"eu\"]]"),
                    labels: String::from("{\"cluster\":\"eu\"}"),
                    member: format!("{{\"fingerprint\":\"{id}\"}}"),
                    name: id.to_owned(),
                    wait_ms: 200,
                    every_ms: 500,
                    repeat_ms: 3_600_000,
                }),
            }],
            probes: Vec::new(),
        })),
    }
}

/// Renders a group's note as a record to its target whose body lists its members.
pub(crate) fn note_render() -> super::GroupRender {
    Box::new(|note| {
        let names: Vec<&str> = note.firing.iter().map(|m| m.name.as_str()).collect();
        Some(Record::for_test(note.target, names.join(",")))
    })
}

/// Flushes the groups due at `now` until one notification is sent: on a shared store a
/// group's timer comes back when its servers' delay ends, a moment after its time (for up
/// to 5 s).
async fn flushed(s: &dyn Store, now: u64) -> super::Flushed {
    let started = std::time::Instant::now();
    loop {
        let flushed = s.flush_groups(now, note_render()).await.unwrap();
        if flushed.sent > 0
            || !s.shared_queues()
            || started.elapsed() >= std::time::Duration::from_secs(5)
        {
            return flushed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The fresh deliveries (the notes a flush stored), `n` of them, by id: from
/// `fresh_pending` on a local store, taken from their queue on a shared one.
async fn notes(s: &dyn Store, now: u64, n: usize) -> Vec<Record> {
    let mut out = if s.shared_queues() {
        let started = std::time::Instant::now();
        loop {
            let due = s.due("t", now, 100, &|_| false).await.unwrap();
            if due.len() >= n || started.elapsed() >= std::time::Duration::from_secs(5) {
                break due;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    } else {
        let ids: Vec<u64> = fresh_pending(s).await.iter().map(|(id, _)| *id).collect();
        s.fresh_records(&ids).await.unwrap()
    };
    out.sort_by_key(|r| r.id);
    assert_eq!(out.len(), n, "{out:?}");
    out
}

/// Many alerts of one submit join one group (a store may hand each join the entry the
/// previous one put), then more in a second submit: the group's notification names every
/// member once, in the order they joined.
async fn a_group_joined_by_many_alerts_of_one_submit_notifies_every_member_once(b: &dyn Backend) {
    let s = b.open(None).await;
    let c = Clock::of(&*s);
    let names: Vec<String> = (0..60).map(|i| format!("m{i:02}")).collect();
    let first = s
        .submit(names[..50].iter().map(|n| grouped(n, c.at(0))).collect())
        .await
        .unwrap();
    assert!(matches!(
        first[49].verdicts[0].kind,
        VerdictKind::Grouped { members: 50, .. }
    ));
    let second = s
        .submit(names[50..].iter().map(|n| grouped(n, c.at(10))).collect())
        .await
        .unwrap();
    assert!(matches!(
        second[9].verdicts[0].kind,
        VerdictKind::Grouped { members: 60, .. }
    ));
    let flushed = flushed(&*s, c.come(200).await).await;
    assert_eq!(flushed.sent, 1);
    let note = notes(&*s, c.at(200), 1).await;
    assert_eq!(note[0].body, names.join(","));
    s.release().await;
}

async fn groups_are_flushed_when_due_in_one_write_and_survive_reopening(b: &dyn Backend) {
    let sunk: Arc<Mutex<Vec<u64>>> = Arc::default();
    let into = sunk.clone();
    let s = b
        .open(Some(Box::new(move |rs: Vec<Record>| {
            into.lock().unwrap().extend(rs.iter().map(|r| r.id))
        })))
        .await;
    let c = Clock::of(&*s);
    // On a shared store `next` is when to look again: its servers know when a group is due.
    let local = !s.shared_queues();
    let stored = s
        .submit(vec![grouped("a", c.at(0)), grouped("b", c.at(50))])
        .await
        .unwrap();
    assert!(
        stored.iter().all(|st| st.ids.is_empty()),
        "nothing is stored to send yet"
    );
    assert!(matches!(
        stored[1].verdicts[0].kind,
        VerdictKind::Grouped {
            flush,
            members: 2,
            ..
        } if flush == c.at(200)
    ));
    // Not due yet: nothing, and the next flush is the group's.
    let early = s
        .flush_groups(c.come(199).await, note_render())
        .await
        .unwrap();
    assert_eq!(early.sent, 0);
    if local {
        assert_eq!(early.next, Some(c.at(200)));
    }
    let first = flushed(&*s, c.come(200).await).await;
    assert_eq!(first.sent, 1);
    assert_eq!(first.targets, ["t"]);
    if local {
        assert_eq!(
            first.next,
            Some(c.at(700)),
            "every 500ms from the first flush"
        );
    }
    let note = notes(&*s, c.at(200), 1).await;
    assert_eq!(note[0].body, "a,b");
    if local {
        assert_eq!(
            *sunk.lock().unwrap(),
            [note[0].id],
            "the sink got it before the answer"
        );
    }
    // Unchanged at the next flush: nothing sent, still scheduled.
    let again = s
        .flush_groups(c.come(700).await, note_render())
        .await
        .unwrap();
    assert_eq!(again.sent, 0);
    if local {
        assert_eq!(again.next, Some(c.at(1_200)));
    }
    s.release().await;
    drop(s);
    if let Some(s) = b.reopen().await {
        // A new member after a restart: notified at the group's next flush, with all.
        s.submit(vec![grouped("c", c.at(750))]).await.unwrap();
        let flushed = flushed(&*s, c.come(1_200).await).await;
        assert_eq!(flushed.sent, 1, "the group survived reopening");
        let notes = notes(&*s, c.at(1_200), 2).await;
        assert_eq!(notes[1].body, "a,b,c");
    }
}
