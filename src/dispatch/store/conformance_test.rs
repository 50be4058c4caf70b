//! The store contract as tests: every scenario runs against every implementation
//! (`sqlite::`, `memory::` below). A new backend adds a [`Backend`] and one line in
//! `suite!`; it is done when every scenario passes.
//!
//! Scenarios speak only through [`Store`]: what the router sees. Durability across a
//! reopen is asked only of backends that promise it ([`Backend::reopen`]).
//!
//! The NATS backend (`nats::` below, on a one-node JetStream server the test starts) runs
//! the scenarios whose made-up clock it can follow: its servers hold a delivery due later
//! for its real delay, so a scenario that asks for a delivery at a made-up time later than
//! the one it was given back at would wait that long for real. Those (retries, holds,
//! silences, groups on the made-up clock) and the ones about the in-memory hand-over it
//! does not have (the sink, `fresh_pending`) are proved for NATS in real time by
//! `nats_store_test.rs`. On a shared store (`Store::shared_queues`) a delivery is finished
//! by the replica that took it, so [`stored`] takes what it stores, as a worker would.

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

/// A NATS deployment on a one-node JetStream server of its own, stopped (by PID) at the
/// end of the scenario; `None` when the server cannot be installed here (the scenario
/// skips, saying why).
#[cfg(feature = "nats")]
struct Nats {
    cluster: super::nats::tests::cluster::Cluster,
}

#[cfg(feature = "nats")]
impl Nats {
    fn new(scenario: &str) -> Option<Nats> {
        use super::nats::tests::cluster::{Cluster, StartError};
        match Cluster::start(
            &format!("conf-{scenario}"),
            1,
            std::time::Duration::from_secs(30),
        ) {
            Ok(cluster) => Some(Nats { cluster }),
            Err(StartError::Unavailable(why)) => {
                eprintln!("skipped: nats-server cannot be installed here: {why}");
                None
            }
            Err(StartError::Failed(why)) => panic!("{why}"),
        }
    }

    async fn store(&self) -> Box<dyn Store> {
        let settings = super::nats::Settings {
            replicas: 1,
            ..super::nats::tests::settings_for(&self.cluster)
        };
        Box::new(super::nats_store::NatsStore::open(&settings).await.unwrap())
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

/// The scenarios a shared store runs (see the module's docs for why not every one).
macro_rules! shared_suite {
    ($($scenario:ident),* $(,)?) => {
        #[cfg(feature = "nats")]
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    if let Some(b) = super::Nats::new(stringify!($scenario)) {
                        super::$scenario(&b).await;
                    }
                }
            )*
        }
    };
}

shared_suite!(
    purge_deletes_one_or_every_dead_letter,
    an_unreadable_dead_letter_is_refused_a_replay_and_kept,
    one_write_finishes_many_deliveries_each_with_its_result,
    the_step_runs_in_the_write_and_its_state_holds_across_writes,
    state_survives_reopening,
    a_held_firing_keeps_its_inhibit_check_and_a_source_firing_then_keeps_it_out,
);

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
    a_held_firing_keeps_its_inhibit_check_and_a_source_firing_then_keeps_it_out,
);

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

async fn due(s: &dyn Store, target: &str, now_ms: u64) -> Vec<u64> {
    let none = |_: u64| false;
    let due = s.due(target, now_ms, 100, &none).await.unwrap();
    due.iter().map(|r| r.id).collect()
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
    let records: Vec<Record> = (0..n).map(|i| record(target, i)).collect();
    let ids = s.append(records.clone()).await.unwrap();
    if s.shared_queues() {
        // Taken, as a worker takes them: finished by the one that holds them.
        let started = std::time::Instant::now();
        let mut taken: Vec<u64> = Vec::new();
        while taken.len() < ids.len() && started.elapsed() < std::time::Duration::from_secs(5) {
            let held = taken.clone();
            let skip = move |id: u64| held.contains(&id);
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
    let first = s.append((0..4).map(|n| record("t", n)).collect()).await;
    let first = first.unwrap();
    assert_eq!(
        sunk.lock()
            .unwrap()
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        first,
        "handed to the sink before the answer, in order"
    );
    assert_eq!(sunk.lock().unwrap()[2].1, "{\"n\":2}");
    assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
    let second = s.append(vec![record("u", 9)]).await.unwrap();
    assert!(second[0] > first[3], "{second:?} after {first:?}");
    assert!(s.append(Vec::new()).await.unwrap().is_empty());
    assert_eq!(
        sunk.lock().unwrap().len(),
        5,
        "an empty append sinks nothing"
    );
    assert_eq!(depth(&*s).await, (5, 0));
    let listed = fresh_pending(&*s).await;
    assert_eq!(
        listed,
        first
            .iter()
            .map(|&id| (id, String::from("t")))
            .chain([(second[0], String::from("u"))])
            .collect::<Vec<_>>()
    );
    assert!(
        due(&*s, "t", u64::MAX).await.is_empty(),
        "fresh ones are not due"
    );
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

async fn a_retry_moves_a_delivery_to_pending_due_at_its_time(b: &dyn Backend) {
    let s = b.open(None).await;
    let rs = stored(&*s, "t", 2).await;
    assert_eq!(
        finish_one(&*s, retried(rs[0].clone(), 1, 5_000)).await,
        None
    );
    assert_eq!(depth(&*s).await, (2, 0), "still pending");
    assert!(s.fresh_records(&[rs[0].id]).await.unwrap().is_empty());
    assert_eq!(fresh_pending(&*s).await, [(rs[1].id, String::from("t"))]);
    assert!(due(&*s, "t", 4_999).await.is_empty());
    let none = |_: u64| false;
    let back = s.due("t", 5_000, 10, &none).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].id, back[0].attempts, back[0].last_error.as_deref()),
        (rs[0].id, 1, Some("HTTP 503"))
    );
    assert_eq!(back[0].body, rs[0].body);
    assert_eq!(s.next_due("t", &none).await.unwrap(), Some(5_000));
    assert_eq!(s.pending_targets().await.unwrap(), ["t"]);
    // Retried again: the new time replaces the old one.
    assert_eq!(
        finish_one(&*s, retried(back[0].clone(), 2, 8_000)).await,
        None
    );
    assert!(due(&*s, "t", 7_999).await.is_empty());
    assert_eq!(due(&*s, "t", 8_000).await, [rs[0].id]);
}

async fn delivered_removes_a_delivery_fresh_or_pending(b: &dyn Backend) {
    let s = b.open(None).await;
    let rs = stored(&*s, "t", 3).await;
    finish_one(&*s, retried(rs[1].clone(), 1, 0)).await;
    let results = s
        .finish(vec![
            Finish::Delivered(rs[0].id),
            Finish::Delivered(rs[1].id),
        ])
        .await;
    assert!(results.iter().all(|r| matches!(r, Ok(None))));
    assert_eq!(depth(&*s).await, (1, 0));
    let none = |_: u64| false;
    assert_eq!(s.next_due("t", &none).await.unwrap(), None);
    assert!(s.pending_targets().await.unwrap().is_empty());
    assert_eq!(fresh_pending(&*s).await, [(rs[2].id, String::from("t"))]);
    // Delivered twice: nothing more happens.
    assert_eq!(finish_one(&*s, Finish::Delivered(rs[0].id)).await, None);
    assert_eq!(depth(&*s).await, (1, 0));
}

async fn a_fallback_replaces_the_delivery_under_a_new_id(b: &dyn Backend) {
    let s = b.open(None).await;
    let rs = stored(&*s, "t", 2).await;
    let mut to = record("backup", 7);
    to.next_at_ms = 3_000;
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
    assert!(due(&*s, "t", u64::MAX).await.is_empty());
    assert_eq!(due(&*s, "backup", 3_000).await, [created.id]);
    // A second fallback from the same delivery finds it gone.
    assert_eq!(
        finish_one(&*s, Finish::FallBack { from: rs[0].id, to }).await,
        None
    );
    assert_eq!(depth(&*s).await, (2, 0));
}

async fn a_dead_letter_keeps_what_was_sent_and_replays_due_now(b: &dyn Backend) {
    let s = b.open(None).await;
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

    let replayed = s.replay(rs[0].id, 7_000).await.unwrap().expect("replayed");
    assert_eq!(
        (replayed.id, replayed.attempts, replayed.next_at_ms),
        (rs[0].id, 0, 7_000)
    );
    assert_eq!(replayed.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(replayed.body, rs[0].body);
    assert_eq!(depth(&*s).await, (2, 0));
    assert_eq!(due(&*s, "t", 7_000).await, [rs[0].id]);
    assert_eq!(
        s.replay(rs[0].id, 7_000).await.unwrap(),
        None,
        "no longer dead"
    );
    assert_eq!(s.replay(999_999, 7_000).await.unwrap(), None);
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
    assert!(due(&*s, "t", u64::MAX).await.is_empty());
    assert!(due(&*s, "backup", u64::MAX).await.is_empty());
    assert_eq!(fresh_pending(&*s).await, [(rs[0].id, String::from("t"))]);
}

async fn due_keeps_the_limit_the_skip_the_order_and_the_target(b: &dyn Backend) {
    let s = b.open(None).await;
    let rs = stored(&*s, "a", 5).await;
    let times = [30, 10, 20, 10, 40];
    s.finish(
        rs.iter()
            .zip(times)
            .map(|(r, at)| retried(r.clone(), 1, at))
            .collect(),
    )
    .await;
    let other = stored(&*s, "b", 1).await;
    finish_one(&*s, retried(other[0].clone(), 1, 0)).await;

    // By due time, then id.
    assert_eq!(due(&*s, "a", 25).await, [rs[1].id, rs[3].id, rs[2].id]);
    let none = |_: u64| false;
    let two = s.due("a", 25, 2, &none).await.unwrap();
    assert_eq!(
        two.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rs[1].id, rs[3].id]
    );
    let in_flight = [rs[1].id, rs[3].id];
    let skip = |id: u64| in_flight.contains(&id);
    let rest = s.due("a", 25, 2, &skip).await.unwrap();
    assert_eq!(rest.iter().map(|r| r.id).collect::<Vec<_>>(), [rs[2].id]);
    assert_eq!(s.next_due("a", &skip).await.unwrap(), Some(20));
    assert_eq!(s.next_due("a", &none).await.unwrap(), Some(10));
    assert_eq!(due(&*s, "b", 0).await, [other[0].id]);
    assert!(due(&*s, "c", u64::MAX).await.is_empty());
    let mut targets = s.pending_targets().await.unwrap();
    targets.sort();
    assert_eq!(targets, ["a", "b"]);
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
    let id = s.store_id();
    let rs = stored(&*s, "t", 3).await;
    finish_one(&*s, retried(rs[1].clone(), 1, 40)).await;
    finish_one(&*s, dead(rs[2].clone(), "HTTP 500")).await;
    drop(s);
    let Some(s) = b.reopen().await else {
        return; // not a durable backend
    };
    assert_eq!(s.store_id(), id, "idempotency keys stay the same");
    assert_eq!(fresh_pending(&*s).await, [(rs[0].id, String::from("t"))]);
    assert_eq!(s.fresh_records(&[rs[0].id]).await.unwrap(), [rs[0].clone()]);
    assert_eq!(due(&*s, "t", 40).await, [rs[1].id]);
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
    let rs = stored(&*s, "t", 4).await;
    stored(&*s, "other", 1).await;
    let mut no_id = record("t", 9);
    no_id.alert_id = None;
    s.append(vec![no_id]).await.unwrap();
    // One waits for a retry, one was delivered, one is dead: pending are the first two.
    finish_one(&*s, retried(rs[0].clone(), 1, 5_000)).await;
    finish_one(&*s, Finish::Delivered(rs[2].id)).await;
    finish_one(&*s, dead(rs[3].clone(), "HTTP 400")).await;
    let pending = s.pending_alerts("t", 1_000).await.unwrap();
    assert_eq!(
        pending,
        [
            (rs[0].id, String::from("alert-0")),
            (rs[1].id, String::from("alert-1"))
        ]
    );
    assert!(s.pending_alerts("nobody", 1_000).await.unwrap().is_empty());
    // A held delivery (never attempted, due later) is left out until it is due.
    let mut held = record("t", 7);
    held.next_at_ms = 50_000;
    let id = s
        .submit(vec![Submission {
            plain: Vec::new(),
            stateful: Some(Box::new(Stateful {
                facts: AlertFacts::new(Some(String::from("alert-7")), AlertState::Firing),
                now: 1_000,
                choices: vec![RuleChoice {
                    rule: String::from("slow"),
                    clauses: 1,
                    targets: vec![(String::from("t"), held)],
                    dedup: None,
                    resolve_once: false,
                    throttle: None,
                    gate: Some(crate::state::Gate::Delay { ms: 49_000 }),
                    group: None,
                }],
                probes: Vec::new(),
            })),
        }])
        .await
        .unwrap()[0]
        .ids[0];
    assert!(
        s.pending_alerts("t", 49_999)
            .await
            .unwrap()
            .iter()
            .all(|(i, _)| *i != id),
        "not before it is due"
    );
    assert!(
        s.pending_alerts("t", 50_000)
            .await
            .unwrap()
            .contains(&(id, String::from("alert-7"))),
        "once due"
    );
    assert_eq!(due(&*s, "t", 49_999).await, [rs[0].id]);
    assert_eq!(
        due(&*s, "t", 50_000).await,
        [rs[0].id, id],
        "due at its time, as a retry is"
    );
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

/// Alert `id` firing at `now` through a rule without clauses, while silence `silence`
/// matches it.
fn silenced(id: &str, silence: u64, now: u64) -> Submission {
    let mut r = record("t", now);
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
                targets: vec![(String::from("t"), r)],
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
    let first = s.add_silence(silence(100_000), 1_000).await.unwrap();
    let second = s.add_silence(silence(200_000), 1_000).await.unwrap();
    assert_eq!((first.id, second.id), (1, 2), "ids from 1, growing");
    let stored = s
        .submit(vec![silenced("a", 1, 2_000), silenced("b", 2, 2_000)])
        .await
        .unwrap();
    let (a, b_id) = (stored[0].ids[0], stored[1].ids[0]);
    assert!(matches!(
        stored[0].verdicts[0].kind,
        VerdictKind::Silenced {
            silence: 1,
            until: 100_000,
            ..
        }
    ));
    assert_eq!(stored[0].later, ["t"], "held: the worker reads the table");
    assert!(
        due(&*s, "t", 50_000).await.is_empty(),
        "held until the silence ends"
    );
    assert_eq!(due(&*s, "t", 100_000).await, [a], "due when it ends");

    // Expiring silence 2 early releases what it holds, due now; silence 1's stays.
    let expired = s.expire_silence(2, 5_000).await.unwrap().unwrap();
    assert_eq!(expired.released, ["t"]);
    assert_eq!(expired.silence.ends, 5_000);
    assert_eq!(expired.silence.expired_at, Some(5_000));
    assert_eq!(due(&*s, "t", 5_000).await, [b_id]);
    // Again: nothing more to release; an unknown silence is None.
    let again = s.expire_silence(2, 6_000).await.unwrap().unwrap();
    assert!(again.released.is_empty());
    assert_eq!(again.silence.ends, 5_000);
    assert!(s.expire_silence(9, 6_000).await.unwrap().is_none());

    // The step sees the expiry: a new firing under silence 2 goes at once.
    let now = s.submit(vec![silenced("c", 2, 7_000)]).await.unwrap();
    assert!(matches!(
        now[0].verdicts[0].kind,
        VerdictKind::Delivered { .. }
    ));

    let listed = s.silences().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1], expired.silence);
    drop(s);
    if let Some(s) = b.reopen().await {
        assert_eq!(
            s.silences().await.unwrap(),
            listed,
            "silences survive reopening"
        );
        // What silence 1 holds is still held, and still released by its expiry.
        let released = s.expire_silence(1, 8_000).await.unwrap().unwrap();
        assert_eq!(released.released, ["t"]);
        assert!(due(&*s, "t", 8_000).await.contains(&a));
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

/// Alert `id` firing at `now` through a rule with `group wait 1s every 5s`, to target `t`.
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
                    wait_ms: 1_000,
                    every_ms: 5_000,
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

async fn groups_are_flushed_when_due_in_one_write_and_survive_reopening(b: &dyn Backend) {
    let sunk: Arc<Mutex<Vec<u64>>> = Arc::default();
    let into = sunk.clone();
    let s = b
        .open(Some(Box::new(move |rs: Vec<Record>| {
            into.lock().unwrap().extend(rs.iter().map(|r| r.id))
        })))
        .await;
    let stored = s
        .submit(vec![grouped("a", 10_000), grouped("b", 10_500)])
        .await
        .unwrap();
    assert!(
        stored.iter().all(|st| st.ids.is_empty()),
        "nothing is stored to send yet"
    );
    assert!(matches!(
        stored[1].verdicts[0].kind,
        VerdictKind::Grouped {
            flush: 11_000,
            members: 2,
            ..
        }
    ));
    // Not due yet: nothing, and the next flush is the group's.
    let early = s.flush_groups(10_999, note_render()).await.unwrap();
    assert_eq!((early.sent, early.next), (0, Some(11_000)));
    let flushed = s.flush_groups(11_000, note_render()).await.unwrap();
    assert_eq!(flushed.sent, 1);
    assert_eq!(flushed.targets, ["t"]);
    assert_eq!(flushed.next, Some(16_000), "every 5s from the first flush");
    let fresh = fresh_pending(&*s).await;
    assert_eq!(fresh.len(), 1);
    let body = s.fresh_records(&[fresh[0].0]).await.unwrap()[0]
        .body
        .clone();
    assert_eq!(body, "a,b");
    assert_eq!(
        *sunk.lock().unwrap(),
        [fresh[0].0],
        "the sink got it before the answer"
    );
    // Unchanged at the next flush: nothing sent, still scheduled.
    let again = s.flush_groups(16_000, note_render()).await.unwrap();
    assert_eq!((again.sent, again.next), (0, Some(21_000)));
    drop(s);
    if let Some(s) = b.reopen().await {
        // A new member after a restart: notified at the group's next flush, with all.
        s.submit(vec![grouped("c", 17_000)]).await.unwrap();
        let flushed = s.flush_groups(21_000, note_render()).await.unwrap();
        assert_eq!(flushed.sent, 1, "the group survived reopening");
        let fresh = fresh_pending(&*s).await;
        let last = fresh.last().unwrap().0;
        assert_eq!(s.fresh_records(&[last]).await.unwrap()[0].body, "a,b,c");
    }
}
