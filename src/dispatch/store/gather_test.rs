use std::sync::{Arc, mpsc};

use super::{Gather, LINGER, MAX_WEIGHT};

/// Waits (yielding to the runtime, at most 100 rounds) for the next hand-over.
async fn next<T>(rx: &mpsc::Receiver<Vec<T>>) -> Vec<T> {
    for _ in 0..100 {
        if let Ok(items) = rx.try_recv() {
            return items;
        }
        tokio::task::yield_now().await;
    }
    panic!("nothing was handed over in 100 scheduler rounds");
}

#[tokio::test]
async fn the_pushes_of_one_round_are_handed_over_together_in_order() {
    let (tx, rx) = mpsc::channel();
    let gather = Arc::new(Gather::new(tx));
    for i in 0..20 {
        let g = Arc::clone(&gather);
        tokio::spawn(async move { g.push(i, 1).map_err(|_| "closed") });
    }
    assert_eq!(next(&rx).await, (0..20).collect::<Vec<_>>());
    // A later push starts a new round.
    assert!(gather.push(20, 1).is_ok());
    assert_eq!(next(&rx).await, vec![20]);
    assert!(rx.try_recv().is_err());
}

#[test]
fn outside_a_runtime_each_push_is_handed_over_at_once() {
    let (tx, rx) = mpsc::channel();
    let gather = Gather::new(tx);
    assert!(gather.push(1, 1).is_ok());
    assert!(gather.push(2, 1).is_ok());
    assert_eq!(rx.try_recv().ok(), Some(vec![1]));
    assert_eq!(rx.try_recv().ok(), Some(vec![2]));
}

#[tokio::test]
async fn a_full_round_is_handed_over_without_waiting() {
    let (tx, rx) = mpsc::channel();
    let gather = Gather::new(tx);
    for i in 0..MAX_WEIGHT {
        assert!(gather.push(i, 1).is_ok());
    }
    // No yield yet: the round's task has not run.
    assert_eq!(rx.try_recv().map(|v| v.len()).ok(), Some(MAX_WEIGHT));
    // Heavy items go sooner: two of half the weight, with nothing in between.
    assert!(gather.push(1000, MAX_WEIGHT / 2).is_ok());
    assert!(rx.try_recv().is_err());
    assert!(gather.push(1001, MAX_WEIGHT / 2).is_ok());
    assert_eq!(rx.try_recv().ok(), Some(vec![1000, 1001]));
}

#[tokio::test]
async fn close_hands_over_what_waits_and_refuses_later_pushes() {
    let (tx, rx) = mpsc::channel();
    let gather = Gather::new(tx);
    assert!(gather.push("a", 1).is_ok());
    assert!(gather.push("b", 1).is_ok());
    gather.close();
    assert_eq!(rx.try_recv().ok(), Some(vec!["a", "b"]));
    assert_eq!(gather.push("c", 1), Err("c"));
    // The sender is gone: the receiver sees the end, though the round's task still lives.
    assert!(matches!(
        rx.try_recv(),
        Err(mpsc::TryRecvError::Disconnected)
    ));
}

/// Pushes 7 with `push` inside a runtime that is dropped before its waiter ends: the item
/// is handed over then, and not before.
fn dropped_runtime_hands_over(push: fn(&Gather<i32>) -> Result<(), i32>, waiting: &str) {
    let (tx, rx) = mpsc::channel();
    let gather = Gather::new(tx);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async { assert!(push(&gather).is_ok()) });
    assert!(rx.try_recv().is_err(), "{waiting}");
    drop(runtime);
    assert_eq!(rx.try_recv().ok(), Some(vec![7]));
}

#[test]
fn a_runtime_dropped_before_its_round_ends_still_hands_over() {
    dropped_runtime_hands_over(|g| g.push(7, 1), "the round has not ended yet");
}

// The tests of lazy pushes run on a paused clock: the runtime moves it forward only when
// every task waits, so the linger is exact and no test waits for real time.

#[tokio::test(start_paused = true)]
async fn a_lazy_push_waits_for_its_linger_and_shares_it_with_later_lazy_ones() {
    async fn rounds() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }
    let (tx, rx) = mpsc::channel();
    let gather = Gather::new(tx);
    let start = tokio::time::Instant::now();
    assert!(gather.push_lazy(1, 1).is_ok());
    rounds().await;
    assert!(
        rx.try_recv().is_err(),
        "a round is not enough for a lazy push"
    );
    tokio::time::advance(LINGER / 2).await;
    rounds().await;
    assert!(rx.try_recv().is_err(), "half the linger is not enough");
    assert!(gather.push_lazy(2, 1).is_ok());
    tokio::time::advance(LINGER / 2).await;
    rounds().await;
    // The first one's timer takes both: one hand-over, at its linger.
    assert_eq!(rx.try_recv().ok(), Some(vec![1, 2]));
    assert_eq!(start.elapsed(), LINGER);
    assert!(rx.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn an_ordinary_push_takes_the_lazy_ones_along_at_the_end_of_its_round() {
    let (tx, rx) = mpsc::channel();
    let gather = Gather::new(tx);
    let start = tokio::time::Instant::now();
    assert!(gather.push_lazy("outcome", 1).is_ok());
    assert!(gather.push("submit", 1).is_ok());
    assert_eq!(next(&rx).await, vec!["outcome", "submit"]);
    assert_eq!(start.elapsed(), std::time::Duration::ZERO, "no linger");
    // The lazy one's timer, still running, hands over nothing when it ends.
    tokio::time::sleep(LINGER * 2).await;
    assert!(rx.try_recv().is_err());
    // A lazy push during a round rides with the round.
    assert!(gather.push("submit 2", 1).is_ok());
    assert!(gather.push_lazy("outcome 2", 1).is_ok());
    assert_eq!(next(&rx).await, vec!["submit 2", "outcome 2"]);
}

#[test]
fn a_runtime_dropped_before_a_linger_ends_still_hands_over() {
    dropped_runtime_hands_over(|g| g.push_lazy(7, 1), "the linger has not ended yet");
}
