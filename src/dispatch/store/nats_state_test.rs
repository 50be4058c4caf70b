use super::super::conformance::remembered;
use super::super::nats::tests::{cluster_for, settings_for};
use super::super::nats::{Settings, connect};
use super::*;
use crate::alert::State as AlertState;
use crate::state::VerdictKind;
use std::time::Duration;

use super::super::nats::tests::replica_for as replica;

fn kinds(stored: &[Stored]) -> Vec<&'static str> {
    stored
        .iter()
        .flat_map(|s| &s.verdicts)
        .map(super::super::conformance::kind)
        .collect()
}

/// The design's promise, on a real 3-node cluster: the same alert sent to two replicas at
/// the same moment pages once; the state is shared (a third replica, started later, sees
/// it); a resolution goes once; delivery ids never collide across replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_receiving_the_same_alert_at_once_page_once() {
    let Some(c) = cluster_for("state") else {
        return;
    };
    let (a, b) = (replica(&c).await, replica(&c).await);
    assert_eq!(a.store_id(), b.store_id(), "one deployment, one identity");
    let now = crate::dispatch::now_ms();
    let mut ids = Vec::new();
    for round in 0..20 {
        let alert = format!("alert-{round}");
        let (x, y) = tokio::join!(
            a.submit(vec![remembered(&alert, AlertState::Firing, now)]),
            b.submit(vec![remembered(&alert, AlertState::Firing, now)]),
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let mut got = kinds(&x);
        got.extend(kinds(&y));
        got.sort_unstable();
        assert_eq!(got, ["delivered", "duplicate"], "round {round}");
        ids.extend(x.iter().chain(&y).flat_map(|s| s.ids.iter().copied()));
    }
    // How often the two met inside one decision (each such loser decided again).
    eprintln!(
        "races lost and decided again: {} of 20 rounds",
        a.conflicts() + b.conflicts()
    );
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        (n, ids.len()),
        (20, 20),
        "one delivery per alert, each id once"
    );
    let mut stream = a.nats.stream.clone();
    let info = stream.info().await.unwrap();
    assert!(
        info.state.messages >= 20 + 20,
        "20 deliveries and 20 dedup entries at least"
    );

    // A replica started later sees the shared state.
    let late = replica(&c).await;
    let again = late
        .submit(vec![remembered("alert-3", AlertState::Firing, now + 1)])
        .await
        .unwrap();
    assert_eq!(kinds(&again), ["duplicate"]);
    // The resolution goes once, whichever replica gets it; a second copy is owed nothing.
    let (x, y) = tokio::join!(
        a.submit(vec![remembered("alert-3", AlertState::Resolved, now + 2)]),
        late.submit(vec![remembered("alert-3", AlertState::Resolved, now + 2)]),
    );
    let mut got = kinds(&x.unwrap());
    got.extend(kinds(&y.unwrap()));
    got.sort_unstable();
    assert!(
        got == ["delivered", "duplicate"] || got == ["delivered", "unannounced"],
        "{got:?}"
    );
    drop(c);
}

/// The interleaving a race may or may not hit, forced: replica B decides on what it read,
/// replica A commits the same alert first, and B's commit is refused whole (its delivery
/// is not stored); B's submit, deciding again, finds A's note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_a_stale_read_is_refused_whole_and_decided_again() {
    let Some(c) = cluster_for("stale") else {
        return;
    };
    let (a, b) = (replica(&c).await, replica(&c).await);
    let now = crate::dispatch::now_ms();
    let alert = || vec![remembered("disk", AlertState::Firing, now)];
    // B reads what the step needs and decides: a delivery.
    let ids = b.take_ids(4).await.unwrap();
    let mut reads = super::super::sqlite_state::ByHash::default();
    loop {
        let decided = b.decide(alert(), (&reads, &HashMap::new()), &ids);
        if decided.missing.is_empty() {
            break;
        }
        for h in decided.missing {
            reads.insert(h, b.read(&h).await.unwrap());
        }
    }
    let decided = b.decide(alert(), (&reads, &HashMap::new()), &ids);
    assert_eq!(kinds(&decided.stored), ["delivered"]);
    let delivery = decided.stored[0].ids[0];
    // A commits the same alert first.
    assert_eq!(kinds(&a.submit(alert()).await.unwrap()), ["delivered"]);
    // B's commit is refused, and nothing of it is stored.
    let refused = b.nats.commit(decided.writes(&reads)).await;
    assert!(
        matches!(refused, Err(CommitError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(
        b.nats.last(&delivery_subject("t", delivery)).await.unwrap(),
        None,
        "the refused commit's delivery was not stored"
    );
    // Deciding again from fresh reads: a duplicate.
    assert_eq!(kinds(&b.submit(alert()).await.unwrap()), ["duplicate"]);
    drop(c);
}

/// Without a quorum (two of three nodes down), a submit is refused within its time budget
/// as `Unavailable` (a 503 to the sender), never answered as stored; when the nodes come
/// back, the sender's retry of the same alert pages once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_a_submit_is_refused_in_time_and_its_retry_pages_once() {
    let Some(mut c) = cluster_for("quorum-state") else {
        return;
    };
    let settings = Settings {
        timeout: Duration::from_secs(2),
        lease: Duration::from_secs(30),
        ..settings_for(&c)
    };
    let r = Shared::open(connect(&settings).await.unwrap())
        .await
        .unwrap();
    let now = crate::dispatch::now_ms();
    let alert = |id: &str| vec![remembered(id, AlertState::Firing, now)];
    assert_eq!(
        kinds(&r.submit(alert("before")).await.unwrap()),
        ["delivered"]
    );

    c.kill(1);
    c.kill(2);
    let started = std::time::Instant::now();
    let refused = r.submit(alert("during")).await;
    let took = started.elapsed();
    assert!(
        matches!(&refused, Err(e) if e.kind() == DispatchErrorKind::Unavailable),
        "{refused:?}"
    );
    assert!(took < Duration::from_millis(2500), "refused in {took:?}");

    c.restart(1).unwrap();
    c.restart(2).unwrap();
    c.wait(Duration::from_secs(60), |c| {
        c.healthy() && c.leader().is_some()
    })
    .unwrap_or_else(|()| panic!("the cluster did not recover"));
    // The sender retries until the stream has its leader again (bounded).
    let started = std::time::Instant::now();
    let stored = loop {
        match r.submit(alert("during")).await {
            Ok(s) => break s,
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                // Both are a 503 to the sender: try again.
                assert!(
                    matches!(
                        e.kind(),
                        DispatchErrorKind::Unavailable | DispatchErrorKind::Busy
                    ),
                    "{e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("not back within 30 s: {e}"),
        }
    };
    // Refused means not answered as stored: here it was not stored (a delivery now), or a
    // commit in flight was applied once the quorum came back (a duplicate now). Either way
    // the alert pages once.
    let first = kinds(&stored);
    assert!(
        first == ["delivered"] || first == ["duplicate"],
        "{first:?}"
    );
    assert_eq!(
        kinds(&r.submit(alert("during")).await.unwrap()),
        ["duplicate"]
    );
    assert_eq!(
        kinds(&r.submit(alert("before")).await.unwrap()),
        ["duplicate"],
        "state kept"
    );
    drop(c);
}

/// A benchmark, not a test (`cargo test --all-features --lib nats_submit_rate -- --ignored
/// --nocapture`): alerts per second through one replica's submit on the 3-node cluster,
/// one alert per submit and 50 per submit, plain and with `dedup` + `resolve once`, and
/// through the SQLite outbox's submit in the same run (the ratio is the figure: these
/// machines are shared). Prints figures; asserts nothing about speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand, prints figures"]
async fn nats_submit_rate() {
    let Some(c) = cluster_for("bench") else {
        return;
    };
    let r = replica(&c).await;
    let plain = |i: usize| Submission {
        plain: vec![Record::for_test("t", format!("{{\"n\":{i}}}"))],
        stateful: None,
    };
    let now = crate::dispatch::now_ms();
    let dir = std::env::temp_dir().join(format!("switchyard-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sqlite =
        super::super::sqlite::SqliteStore::open_with(&dir, None, super::super::Loss::Refuse)
            .unwrap();
    for (name, per) in [
        ("plain", 1usize),
        ("plain", 50),
        ("dedup", 1),
        ("dedup", 50),
    ] {
        let n = 1000usize;
        let batches = |tag: &str| -> Vec<Vec<Submission>> {
            (0..n)
                .step_by(per)
                .map(|i| {
                    (i..i + per)
                        .map(|k| {
                            if name == "plain" {
                                plain(k)
                            } else {
                                let id = format!("{tag}-{name}-{per}-{k}");
                                remembered(&id, AlertState::Firing, now)
                            }
                        })
                        .collect()
                })
                .collect()
        };
        let started = std::time::Instant::now();
        for batch in batches("nats") {
            r.submit(batch).await.unwrap();
        }
        let nats = started.elapsed().as_secs_f64();
        let started = std::time::Instant::now();
        for batch in batches("sqlite") {
            super::super::Store::submit(&sqlite, batch).await.unwrap();
        }
        let local = started.elapsed().as_secs_f64();
        println!(
            "{name:>5}, {per:>2} per submit: NATS {:>6.0} alerts/s ({:.2} ms per submit), SQLite {:>6.0} alerts/s: NATS at {:.2}x",
            n as f64 / nats,
            nats * 1000.0 / (n / per) as f64,
            n as f64 / local,
            local / nats
        );
    }
    drop(sqlite);
    let _ = std::fs::remove_dir_all(&dir);
    drop(c);
}

/// Replica `r` flushing due groups for 3 s; answers how many notifications it made.
async fn flush_for(r: &Shared, timers: async_nats::jetstream::consumer::PullConsumer) -> usize {
    let mut render = super::super::conformance::note_render();
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let now = crate::dispatch::now_ms();
        let f = r
            .flush_due(&timers, now, 10, Duration::from_millis(200), &mut render)
            .await
            .unwrap();
        sent += f.sent;
    }
    sent
}

/// Groups on NATS: alerts joining one group through two replicas make one group; when its
/// `wait` ends, whichever replica takes its timer flushes it, once, with every member, in
/// the commit that moves its timer on; the other replica, flushing at the same time,
/// sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_joined_through_two_replicas_is_notified_once_when_due() {
    let Some(c) = cluster_for("groups") else {
        return;
    };
    let (a, b) = (replica(&c).await, replica(&c).await);
    let now = crate::dispatch::now_ms();
    let (x, y) = tokio::join!(
        a.submit(vec![super::super::conformance::grouped("NodeDown", now)]),
        b.submit(vec![super::super::conformance::grouped("DiskFull", now)]),
    );
    for s in x.unwrap().iter().chain(&y.unwrap()) {
        assert!(
            matches!(s.verdicts[..], [ref v] if matches!(v.kind, VerdictKind::Grouped { .. })),
            "{:?}",
            s.verdicts
        );
        assert!(s.ids.is_empty(), "nothing sent on joining");
    }
    let wait = Duration::from_secs(30);
    let (ta, tb) = (a.timers(wait).await.unwrap(), b.timers(wait).await.unwrap());
    // Both replicas flush for 3 s (the group's wait is 1 s; its `every` 5 s).
    let (sa, sb) = tokio::join!(flush_for(&a, ta), flush_for(&b, tb));
    assert_eq!(sa + sb, 1, "one notification: {sa} + {sb}");
    // It is on the target's queue, with both members.
    let q = super::super::nats_queue::Queue::open(a.nats(), "t", wait)
        .await
        .unwrap();
    let mut got = Vec::new();
    let started = std::time::Instant::now();
    while got.is_empty() && started.elapsed() < Duration::from_secs(5) {
        got = q
            .take(
                a.nats(),
                10,
                crate::dispatch::now_ms(),
                Duration::from_millis(300),
            )
            .await
            .unwrap();
    }
    assert_eq!(got.len(), 1);
    let mut members: Vec<&str> = got[0].record.body.split(',').collect();
    members.sort_unstable();
    assert_eq!(members, ["DiskFull", "NodeDown"]);
    drop(c);
}

/// A request of many alerts whose commit would pass the server's limit on one atomic batch
/// (1,000 messages) is stored in parts, each alert whole, instead of being refused: 600
/// alerts with `dedup` and `resolve once` make 1,800 messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_past_the_atomic_limit_is_stored_in_parts_each_alert_whole() {
    let Some(c) = cluster_for("big") else {
        return;
    };
    let r = replica(&c).await;
    let now = crate::dispatch::now_ms();
    let batch = |tag: &str| -> Vec<Submission> {
        (0..600)
            .map(|i| remembered(&format!("{tag}-{i}"), AlertState::Firing, now))
            .collect()
    };
    let stored = r.submit(batch("big")).await.unwrap();
    assert_eq!(stored.len(), 600);
    assert!(kinds(&stored).iter().all(|k| *k == "delivered"));
    let again = r.submit(batch("big")).await.unwrap();
    assert!(
        kinds(&again).iter().all(|k| *k == "duplicate"),
        "all stored"
    );
    drop(c);
}

#[test]
fn a_state_key_survives_its_subject_token() {
    let hash: Hash = [0, 1, 2, 0xab, 0xff, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0x10];
    assert_eq!(hex(&hash), "000102abff0908070605040302010010");
    assert_eq!(parse_hash(&hex(&hash)), Some(hash));
    assert_eq!(
        timer_subject(&hash),
        "timer.group.000102abff0908070605040302010010"
    );
    assert_eq!(parse_hash("abc"), None);
    assert_eq!(parse_hash("zz0102abff0908070605040302010010"), None);
}
