use std::collections::HashSet;
use std::time::Duration;

use super::super::nats::Nats;
use super::super::nats::tests::cluster_for;
use super::super::nats_state::Shared;
use super::super::{Spec, Submission};
use super::*;

use super::super::nats::tests::replica_for as replica;

/// Stores `n` plain deliveries to `target` through replica `r`; answers their ids.
async fn put(r: &Shared, target: &str, n: usize, next_at_ms: u64) -> Vec<u64> {
    let plain = (0..n)
        .map(|i| {
            let mut rec = Record::for_test(target, format!("{{\"n\":{i}}}"));
            rec.next_at_ms = next_at_ms;
            rec
        })
        .collect();
    let stored = r
        .submit(vec![Submission {
            plain,
            stateful: None,
        }])
        .await
        .unwrap();
    stored[0].ids.clone()
}

/// Takes from `q` until `want` deliveries came or `within` passed.
async fn take_all(q: &Queue, nats: &Nats, want: usize, within: Duration) -> Vec<Leased> {
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    while got.len() < want && started.elapsed() < within {
        let now = crate::dispatch::now_ms();
        got.extend(
            q.take(nats, want - got.len(), now, Duration::from_millis(200))
                .await
                .unwrap(),
        );
    }
    got
}

/// Two replicas taking from one target's queue at once share its deliveries: each is
/// taken once, and once delivered it is gone from the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_queue_and_each_delivery_is_taken_once() {
    let Some(c) = cluster_for("queue") else {
        return;
    };
    let (a, b) = (replica(&c).await, replica(&c).await);
    let ack_wait = Duration::from_secs(30);
    let (qa, qb) = (
        Queue::open(a.nats(), "t", ack_wait).await.unwrap(),
        Queue::open(b.nats(), "t", ack_wait).await.unwrap(),
    );
    let mut ids = put(&a, "t", 20, 0).await;
    ids.extend(put(&b, "t", 20, 0).await);
    let within = Duration::from_secs(20);
    let (ta, tb) = tokio::join!(
        take_all(&qa, a.nats(), 20, within),
        take_all(&qb, b.nats(), 20, within)
    );
    let taken: Vec<u64> = ta.iter().chain(&tb).map(|l| l.record.id).collect();
    let unique: HashSet<u64> = taken.iter().copied().collect();
    assert_eq!(taken.len(), 40, "every delivery taken");
    assert_eq!(unique, ids.iter().copied().collect(), "each once");
    assert!(!ta.is_empty() && !tb.is_empty(), "both replicas took work");
    for l in ta {
        let id = l.record.id;
        assert_eq!(
            qa.finish(a.nats(), &l, Finish::Delivered(id), 0)
                .await
                .unwrap(),
            None
        );
    }
    for l in tb {
        let id = l.record.id;
        qb.finish(b.nats(), &l, Finish::Delivered(id), 0)
            .await
            .unwrap();
    }
    for id in &ids {
        let last = a.nats().last(&delivery_subject("t", *id)).await.unwrap();
        assert!(
            matches!(last, Some((_, p)) if p.is_empty()),
            "delivery {id} removed"
        );
    }
    // Nothing more to take: the markers are acknowledged, not handed out as work.
    let now = crate::dispatch::now_ms();
    assert!(
        qa.take(a.nats(), 10, now, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    drop(c);
}

/// A retry waits for its time; a held delivery waits for its; a replica that took a
/// delivery and died (no outcome stored) leaves it to another after `ack_wait`, with the
/// same id (so the same `Idempotency-Key`); a dead letter and a fallback are stored with
/// the delivery's removal, in one commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_holds_a_dead_replica_dead_letters_and_fallbacks() {
    let Some(c) = cluster_for("queue2") else {
        return;
    };
    let (a, b) = (replica(&c).await, replica(&c).await);
    let ack_wait = Duration::from_secs(2);
    let (qa, qb) = (
        Queue::open(a.nats(), "u", ack_wait).await.unwrap(),
        Queue::open(b.nats(), "u", ack_wait).await.unwrap(),
    );
    let now = crate::dispatch::now_ms();

    // A held delivery, due in 1.5 s: not handed out before.
    let held = put(&a, "u", 1, now + 1500).await[0];
    assert!(
        take_all(&qa, a.nats(), 1, Duration::from_millis(600))
            .await
            .is_empty()
    );
    let got = take_all(&qb, b.nats(), 1, Duration::from_secs(5)).await;
    assert_eq!(got.iter().map(|l| l.record.id).collect::<Vec<_>>(), [held]);
    assert!(
        crate::dispatch::now_ms() >= now + 1500,
        "not before it was due"
    );

    // Its attempt failed: retried in 1 s, attempts counted.
    let leased = got.into_iter().next().unwrap();
    let mut retry = leased.record.clone();
    retry.attempts = 1;
    retry.next_at_ms = crate::dispatch::now_ms() + 1000;
    retry.last_error = Some(String::from("HTTP 503"));
    qb.finish(b.nats(), &leased, Finish::Retry(retry), 0)
        .await
        .unwrap();
    let again = take_all(&qa, a.nats(), 1, Duration::from_secs(5)).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].record.id, again[0].record.attempts), (held, 1));

    // Replica A takes it and dies: no outcome, no ack. B gets it after ack_wait.
    drop(again);
    let started = std::time::Instant::now();
    let back = take_all(&qb, b.nats(), 1, Duration::from_secs(8)).await;
    assert_eq!(back.len(), 1, "handed to another replica");
    assert_eq!(
        back[0].record.id, held,
        "the same delivery: the same Idempotency-Key"
    );
    assert!(back[0].handed >= 2, "handed {} times", back[0].handed);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    // Given up: a fallback to `v`, under a new id, in the same commit as the removal.
    let leased = back.into_iter().next().unwrap();
    let mut to = leased.record.clone();
    to.spec = Spec {
        target: String::from("v"),
        ..to.spec.clone()
    };
    to.attempts = 0;
    let fallback_id = b.take_ids(1).await.unwrap()[0];
    let created = qb
        .finish(
            b.nats(),
            &leased,
            Finish::FallBack { from: held, to },
            fallback_id,
        )
        .await
        .unwrap()
        .expect("the fallback's delivery");
    assert_eq!(
        (created.id, created.spec.target.as_str()),
        (fallback_id, "v")
    );
    let qv = Queue::open(a.nats(), "v", ack_wait).await.unwrap();
    let fell = take_all(&qv, a.nats(), 1, Duration::from_secs(5)).await;
    assert_eq!(
        fell.iter().map(|l| l.record.id).collect::<Vec<_>>(),
        [fallback_id]
    );

    // Given up there too: a dead letter, kept whole.
    let leased = fell.into_iter().next().unwrap();
    let dead = DeadLetter {
        id: fallback_id,
        target: String::from("v"),
        alert_id: None,
        attempts: 3,
        error: String::from("HTTP 500"),
        created_ms: now,
        dead_ms: now,
        body: leased.record.body.clone(),
        shown_body: None,
        spec: leased.record.spec.clone(),
        unreadable: false,
    };
    qv.finish(a.nats(), &leased, Finish::Dead(dead.clone()), 0)
        .await
        .unwrap();
    let (_, bytes) = a
        .nats()
        .last(&dead_subject("v", fallback_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(serde_json::from_slice::<DeadLetter>(&bytes).unwrap(), dead);
    assert!(
        take_all(&qv, a.nats(), 1, Duration::from_millis(500))
            .await
            .is_empty()
    );

    // Bytes that are not a delivery: a dead letter holding them, never a loop.
    a.nats()
        .commit(vec![Write {
            subject: delivery_subject("u", 999_999),
            payload: b"not json".to_vec(),
            expect: Some(0),
            ttl_secs: None,
        }])
        .await
        .unwrap();
    assert!(
        take_all(&qa, a.nats(), 1, Duration::from_millis(800))
            .await
            .is_empty()
    );
    let (_, bytes) = a
        .nats()
        .last(&dead_subject("u", 999_999))
        .await
        .unwrap()
        .unwrap();
    let kept: DeadLetter = serde_json::from_slice(&bytes).unwrap();
    assert!(kept.is_unreadable() && kept.body == "not json", "{kept:?}");

    // The dead letters, by id, from any replica: the fallback's, and the unreadable bytes.
    let ids = |list: &[DeadLetter]| list.iter().map(|d| d.id).collect::<Vec<_>>();
    let listed = dead_letters(b.nats(), 10).await.unwrap();
    assert_eq!(ids(&listed), [fallback_id, 999_999]);
    assert_eq!(
        dead_letter(b.nats(), fallback_id).await.unwrap(),
        Some(dead.clone())
    );
    assert!(dead_letter(b.nats(), 12_345_678).await.unwrap().is_none());
    // The unreadable one cannot be replayed, and is kept.
    let refused = replay(a.nats(), 999_999, now).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == crate::dispatch::DispatchErrorKind::Refused),
        "{refused:?}"
    );
    // Replayed: back on its queue, due now, attempts reset; no longer a dead letter; once.
    let back = replay(b.nats(), fallback_id, crate::dispatch::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((back.id, back.attempts), (fallback_id, 0));
    let again = take_all(&qv, a.nats(), 1, Duration::from_secs(5)).await;
    assert_eq!(
        again.iter().map(|l| l.record.id).collect::<Vec<_>>(),
        [fallback_id]
    );
    assert_eq!(ids(&dead_letters(a.nats(), 10).await.unwrap()), [999_999]);
    assert!(
        replay(a.nats(), fallback_id, now).await.unwrap().is_none(),
        "once"
    );
    // Purged: one that is not there is none; every dead letter, counted.
    assert_eq!(purge(a.nats(), Some(12_345_678)).await.unwrap(), 0);
    assert_eq!(purge(a.nats(), None).await.unwrap(), 1);
    assert!(dead_letters(a.nats(), 10).await.unwrap().is_empty());
    drop(c);
}

/// A benchmark, not a test (`cargo test --release --all-features --lib nats_queue_rate --
/// --ignored --nocapture`): deliveries per second taken from one target's queue and
/// finished as delivered (no HTTP), by one replica and by two at once. Prints figures;
/// asserts nothing about speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand, prints figures"]
async fn nats_queue_rate() {
    let Some(c) = cluster_for("queue-bench") else {
        return;
    };
    let (a, b) = (replica(&c).await, replica(&c).await);
    let wait = Duration::from_secs(30);
    let n = 2000usize;
    for replicas in [1usize, 2] {
        let target = format!("bench{replicas}");
        for _ in 0..n / 200 {
            put(&a, &target, 200, 0).await;
        }
        let (qa, qb) = (
            Queue::open(a.nats(), &target, wait).await.unwrap(),
            Queue::open(b.nats(), &target, wait).await.unwrap(),
        );
        let started = std::time::Instant::now();
        let (x, y) = tokio::join!(drain_queue(&qa, a.nats(), n / replicas), async {
            if replicas == 2 {
                drain_queue(&qb, b.nats(), n / 2).await
            } else {
                0
            }
        });
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{replicas} replica(s): {} deliveries taken and finished in {secs:.2} s: {:.0}/s",
            x + y,
            (x + y) as f64 / secs
        );
    }
    drop(c);
}

/// Takes and finishes (delivered) up to `want` deliveries from `q`, 50 at a time, until
/// the queue has none for 2 s; answers how many.
async fn drain_queue(q: &Queue, nats: &Nats, want: usize) -> usize {
    let mut done = 0;
    let mut idle = std::time::Instant::now();
    while done < want && idle.elapsed() < Duration::from_secs(2) {
        let now = crate::dispatch::now_ms();
        let got = q
            .take(nats, 50, now, Duration::from_millis(100))
            .await
            .unwrap();
        if !got.is_empty() {
            idle = std::time::Instant::now();
        }
        for l in got {
            let id = l.record.id;
            q.finish(nats, &l, Finish::Delivered(id), 0).await.unwrap();
            done += 1;
        }
    }
    done
}
