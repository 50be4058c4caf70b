//! Unit tests of the retry schedule.

use std::time::Duration;

use super::{Backoff, parse_retry_after};

#[test]
fn backoff_is_full_jitter_under_an_exponential_cap() {
    let b = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(2),
    };
    for attempt in 0..40 {
        let bound = Duration::from_millis(100)
            .saturating_mul(1 << attempt.min(30))
            .min(Duration::from_secs(2));
        for _ in 0..50 {
            assert!(b.delay(attempt, None) <= bound, "attempt {attempt}");
        }
    }
    // Jitter: not always the bound.
    let waits: std::collections::HashSet<Duration> = (0..50).map(|_| b.delay(3, None)).collect();
    assert!(waits.len() > 5);
}

#[test]
fn retry_after_is_honoured_and_capped() {
    let b = Backoff {
        base: Duration::from_millis(10),
        cap: Duration::from_secs(60),
    };
    assert!(b.delay(0, Some(Duration::from_secs(5))) >= Duration::from_secs(5));
    assert_eq!(
        b.delay(0, Some(Duration::from_secs(3600))),
        Duration::from_secs(60)
    );
}

#[test]
fn retry_after_forms() {
    assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
    assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT"),
        Some(Duration::ZERO),
        "a date in the past: now"
    );
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(90);
    let text = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&future)
        .unwrap();
    let d = parse_retry_after(&text).unwrap();
    assert!(
        d >= Duration::from_secs(85) && d <= Duration::from_secs(91),
        "{text}: {d:?}"
    );
    assert_eq!(parse_retry_after("soon"), None);
}
