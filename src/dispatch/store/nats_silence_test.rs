use std::time::Duration;

use super::super::conformance::remembered;
use super::super::nats::tests::{cluster_for, replica_for};
use super::super::nats_queue::Queue;
use super::*;
use crate::alert::State as AlertState;
use crate::state::VerdictKind;

fn silence(ends: u64, now: u64) -> Silence {
    Silence {
        id: 0,
        condition: String::from("labels.team == \"db\""),
        starts: now,
        ends,
        created_by: String::from("alice"),
        comment: String::from("upgrade"),
        created_at: now,
        expired_at: None,
    }
}

/// Silences shared by the replicas: ids from 1, never the same twice when two replicas
/// add at once; a silenced firing is held on NATS with a note of its silence; expiring the
/// silence early makes the held delivery due at once, for whichever replica takes it; the
/// list shows the expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_are_shared_and_an_early_expiry_releases_what_they_hold() {
    let Some(c) = cluster_for("silences") else {
        return;
    };
    let a = replica_for(&c).await;
    let b = replica_for(&c).await;
    let now = crate::dispatch::now_ms();
    let hour = now + 3_600_000;
    let (x, y) = tokio::join!(
        add(a.nats(), silence(hour, now), now),
        add(b.nats(), silence(hour, now), now)
    );
    let mut ids = vec![x.unwrap().id, y.unwrap().id];
    ids.sort_unstable();
    assert_eq!(ids, [1, 2], "ids from 1, each once");
    let listed = list(b.nats()).await.unwrap();
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(span(a.nats(), 1).await.unwrap(), Some(listed[0].span()));
    assert_eq!(span(a.nats(), 9).await.unwrap(), None);

    // A firing that silence 1 matches, through replica A: held until the silence ends.
    let mut held = remembered("disk", AlertState::Firing, now);
    if let Some(st) = &mut held.stateful {
        st.facts.silences = vec![1];
        st.facts.silencing = true;
    }
    let stored = a.submit(vec![held]).await.unwrap();
    let delivery = stored[0].ids[0];
    assert!(
        matches!(stored[0].verdicts[0].kind, VerdictKind::Silenced { silence: 1, until, .. } if until == hour),
        "{:?}",
        stored[0].verdicts
    );
    let queue = Queue::open(b.nats(), "t", Duration::from_secs(30))
        .await
        .unwrap();
    let take = || {
        queue.take(
            b.nats(),
            5,
            crate::dispatch::now_ms(),
            Duration::from_millis(300),
        )
    };
    assert!(
        take().await.unwrap().is_empty(),
        "held until the silence ends"
    );

    // Expired early through replica B: released, due now, taken at once.
    let later = crate::dispatch::now_ms();
    let expired = expire(b.nats(), 1, later).await.unwrap().unwrap();
    assert_eq!(expired.released, ["t"]);
    assert_eq!(expired.silence.expired_at, Some(later));
    let started = std::time::Instant::now();
    let mut taken = Vec::new();
    while taken.is_empty() && started.elapsed() < Duration::from_secs(5) {
        taken = take().await.unwrap();
    }
    assert_eq!(
        taken.iter().map(|l| l.record.id).collect::<Vec<_>>(),
        [delivery]
    );
    // Again: nothing more to release; an unknown silence is None.
    let again = expire(a.nats(), 1, later + 1).await.unwrap().unwrap();
    assert!(again.released.is_empty());
    assert!(expire(a.nats(), 9, later).await.unwrap().is_none());
    let listed = list(a.nats()).await.unwrap();
    assert_eq!(
        listed[0].status(later + 1),
        crate::state::SilenceStatus::Expired
    );
    // The step sees the expiry: a new firing under silence 1 goes at once.
    let mut fresh = remembered("other", AlertState::Firing, later + 2);
    if let Some(st) = &mut fresh.stateful {
        st.facts.silences = vec![1];
        st.facts.silencing = true;
    }
    let stored = b.submit(vec![fresh]).await.unwrap();
    assert!(matches!(
        stored[0].verdicts[0].kind,
        VerdictKind::Delivered { .. }
    ));
    drop(c);
}
