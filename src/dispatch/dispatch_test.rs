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

fn record(n: u64) -> super::store::Record {
    super::store::Record {
        id: 0,
        spec: super::store::Spec {
            target: String::from("t"),
            url: String::from("http://127.0.0.1:9/x"),
            method: String::from("POST"),
            headers: Vec::new(),
            timeout_ms: 1000,
            retries: 0,
            fallback: None,
        },
        body: format!("{{\"n\":{n}}}"),
        alert_id: None,
        attempts: 0,
        next_at_ms: 0,
        last_error: None,
        created_ms: 0,
        fallback_from: None,
    }
}

/// Ids come from reserved blocks: they keep growing within a store and across reopening
/// it, even once every earlier delivery is gone (idempotency keys depend on it).
#[tokio::test]
async fn delivery_ids_stay_unique_across_reopening() {
    let dir = std::env::temp_dir().join(format!("switchyard-ids-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut seen = Vec::new();
    for round in 0..3u64 {
        let store = super::store::Store::open(&dir).unwrap();
        for k in 0..3u64 {
            let ids = store
                .append((0..5).map(|i| record(round * 100 + k * 10 + i)).collect())
                .await
                .unwrap();
            seen.extend(ids);
        }
        drop(store);
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        seen.len(),
        "no id is handed out twice: {seen:?}"
    );
    assert_eq!(sorted, seen, "ids grow: {seen:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
