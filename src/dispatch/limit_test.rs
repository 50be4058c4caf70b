//! Unit tests of the adaptive in-flight limit, on given instants.

use std::time::Duration;

use tokio::time::Instant;

use super::{Answer, LOWER_EVERY, Limit, WAIT};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Ticks every millisecond from `from` for `n` milliseconds with deliveries waiting;
/// returns the instant of the last tick.
fn wait_for(limit: &mut Limit, from: Instant, n: u64) -> Instant {
    for i in 0..=n {
        limit.tick(from + ms(i), true);
    }
    from + ms(n)
}

#[test]
fn an_adaptive_limit_starts_at_one_and_a_fixed_one_at_the_most() {
    let t = Instant::now();
    assert_eq!(Limit::new(32, true, t).get(), 1);
    assert_eq!(Limit::new(32, false, t).get(), 32);
    // The most is at least one.
    assert_eq!(Limit::new(0, false, t).get(), 1);
}

#[test]
fn waiting_deliveries_raise_the_limit_by_one_per_wait_up_to_the_most() {
    let t = Instant::now();
    let mut limit = Limit::new(4, true, t);
    // Just short of a wait: no raise.
    limit.tick(t, true);
    limit.tick(t + WAIT - ms(1), true);
    assert_eq!(limit.get(), 1);
    assert_eq!(limit.next_look(), Some(t + WAIT));
    limit.tick(t + WAIT, true);
    assert_eq!(limit.get(), 2);
    // The next raise needs a full wait again.
    limit.tick(t + WAIT + ms(1), true);
    assert_eq!(limit.get(), 2);
    limit.tick(t + WAIT * 2, true);
    assert_eq!(limit.get(), 3);
    wait_for(&mut limit, t + WAIT * 2, 100);
    assert_eq!(limit.get(), 4, "never past the most");
    assert_eq!(
        limit.next_look(),
        None,
        "at the most there is nothing to look for"
    );
}

#[test]
fn a_wait_that_ends_counts_for_nothing() {
    let t = Instant::now();
    let mut limit = Limit::new(32, true, t);
    for i in 0..20 {
        // Every slot busy for 4 ms, then free: bursts drained within the wait.
        let start = t + ms(i * 10);
        limit.tick(start, true);
        limit.tick(start + ms(4), true);
        limit.tick(start + ms(5), false);
        assert_eq!(limit.next_look(), None);
    }
    assert_eq!(limit.get(), 1);
}

#[test]
fn answers_slowing_down_hold_the_limit() {
    let t = Instant::now();
    let mut limit = Limit::new(32, true, t);
    limit.answered(t, Answer::Took(ms(10)));
    let at = wait_for(&mut limit, t, 20);
    assert_eq!(
        limit.get(),
        5,
        "answers as fast as the least: raised every wait"
    );
    // Answers now take ten times as long: the target queues what it is sent.
    for _ in 0..30 {
        limit.answered(at, Answer::Took(ms(100)));
    }
    let at = wait_for(&mut limit, at, 50);
    assert_eq!(limit.get(), 5, "held while answers are slow");
    // Twice the least (within the millisecond's slack) is keeping pace.
    for _ in 0..30 {
        limit.answered(at, Answer::Took(ms(20)));
    }
    wait_for(&mut limit, at, 5);
    assert_eq!(limit.get(), 6);
}

#[test]
fn the_least_answer_time_follows_a_target_slower_for_good() {
    let t = Instant::now();
    let mut limit = Limit::new(32, true, t);
    limit.answered(t, Answer::Took(ms(1)));
    // From now on it answers in 50 ms: after two windows the 1 ms is forgotten.
    let mut at = t;
    for s in 1..=61 {
        at = t + Duration::from_secs(s);
        limit.answered(at, Answer::Took(ms(50)));
    }
    let before = limit.get();
    wait_for(&mut limit, at, 5);
    assert_eq!(limit.get(), before + 1);
}

#[test]
fn an_unneeded_limit_is_lowered_by_one_per_period_down_to_one() {
    let t = Instant::now();
    let mut limit = Limit::new(32, true, t);
    let at = wait_for(&mut limit, t, 50);
    assert_eq!(limit.get(), 11);
    limit.tick(at + LOWER_EVERY - ms(1), false);
    assert_eq!(limit.get(), 11);
    limit.tick(at + LOWER_EVERY, false);
    assert_eq!(limit.get(), 10);
    for i in 2..20 {
        limit.tick(at + LOWER_EVERY * i, false);
    }
    assert_eq!(limit.get(), 1);
}

#[test]
fn a_long_quiet_lowers_the_limit_by_every_period_in_one_look() {
    let t = Instant::now();
    let mut limit = Limit::new(32, true, t);
    let at = wait_for(&mut limit, t, 50);
    assert_eq!(limit.get(), 11);
    // The burst is sent; the worker sleeps 4.5 s (nothing to send), and then deliveries
    // come again: four periods, four lower.
    limit.tick(at, false);
    limit.tick(at + ms(4500), true);
    assert_eq!(limit.get(), 7);
    // An hour: down to one.
    limit.tick(at + Duration::from_secs(3600), false);
    assert_eq!(limit.get(), 1);
}

#[test]
fn a_target_struggling_cuts_the_limit_once_per_answer_time() {
    let t = Instant::now();
    let mut limit = Limit::new(32, true, t);
    limit.answered(t, Answer::Took(ms(20)));
    let at = wait_for(&mut limit, t, 155);
    assert_eq!(limit.get(), 32);
    // Thirty-two failures at once: one cut.
    for _ in 0..32 {
        limit.answered(at, Answer::Struggling);
    }
    assert_eq!(limit.get(), 28);
    // The next within an answer time (20 ms) does not cut; one after it does.
    limit.answered(at + ms(19), Answer::Struggling);
    assert_eq!(limit.get(), 28);
    limit.answered(at + ms(20), Answer::Struggling);
    assert_eq!(limit.get(), 25);
    // Down to one, never below.
    for i in 1..100 {
        limit.answered(at + ms(20 + 20 * i), Answer::Struggling);
    }
    assert_eq!(limit.get(), 1);
    // A delivery given up for good says nothing about the target's load.
    limit.answered(at + ms(5000), Answer::Other);
    assert_eq!(limit.get(), 1);
}

#[test]
fn a_fixed_limit_never_moves() {
    let t = Instant::now();
    let mut limit = Limit::new(8, false, t);
    limit.answered(t, Answer::Struggling);
    let at = wait_for(&mut limit, t, 100);
    limit.tick(at + LOWER_EVERY * 5, false);
    assert_eq!(limit.get(), 8);
    assert_eq!(limit.next_look(), None);
}
