//! Unit tests of the retry schedule and the policy.

use std::time::Duration;

use super::{AttemptOutcome, Backoff, parse_retry_after, settle};
use crate::dispatch::store::{Finish, Record};

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

/// The policy moved out of the store's commit (a review found it in the SQLite writer):
/// a retry keeps the delivery with its attempt noted, a give-up goes to the fallback as a
/// new delivery that says where it came from, else to the dead letters.
#[test]
fn the_policy_retries_falls_back_or_gives_up() {
    let mut r = Record::for_test("t", String::from("{}"));
    r.id = 7;
    let retry = settle(
        r.clone(),
        AttemptOutcome::Retry {
            attempts: 2,
            next_at_ms: 500,
            error: String::from("HTTP 503"),
        },
    );
    let Finish::Retry(again) = retry else {
        panic!("{retry:?}")
    };
    assert_eq!(
        (
            again.id,
            again.attempts,
            again.next_at_ms,
            again.last_error.as_deref()
        ),
        (7, 2, 500, Some("HTTP 503"))
    );

    let give_up = || AttemptOutcome::GiveUp {
        attempts: 4,
        error: String::from("HTTP 500"),
        now_ms: 900,
    };
    let mut with_fallback = r.clone();
    let mut backup = with_fallback.spec.clone();
    backup.target = String::from("backup");
    with_fallback.spec.fallback = Some(Box::new(backup));
    match settle(with_fallback, give_up()) {
        Finish::FallBack { from, to } => {
            assert_eq!(from, 7);
            assert_eq!(to.spec.target, "backup");
            assert_eq!((to.attempts, to.next_at_ms), (0, 900));
            assert_eq!(to.last_error.as_deref(), Some("t: HTTP 500"));
            assert_eq!(to.fallback_from.as_deref(), Some("t"));
        }
        other => panic!("{other:?}"),
    }
    match settle(r, give_up()) {
        Finish::Dead(d) => {
            assert_eq!((d.id, d.attempts, d.dead_ms), (7, 4, 900));
            assert_eq!((d.target.as_str(), d.error.as_str()), ("t", "HTTP 500"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_http_client_has_tls_without_a_provider_from_the_program() {
    // reqwest is built without a crypto provider (ring is installed by `http_client`): a
    // client built before any provider was installed would panic instead.
    let client = crate::dispatch::http_client().build();
    assert!(client.is_ok(), "{:?}", client.err());
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    // A second builder finds the provider installed and still builds.
    assert!(crate::dispatch::http_client().build().is_ok());
}

/// The client keeps reqwest's proxies whenever one may be set: any of the six variables
/// with a value; an empty one is no proxy (as reqwest reads it). On macOS and Windows the
/// system's settings may name one, so there it always keeps them.
#[test]
fn the_http_client_looks_for_proxies_only_when_the_environment_may_name_one() {
    use std::ffi::OsString;
    let with = |set: &'static str, value: &'static str| {
        move |name: &str| (name == set).then(|| OsString::from(value))
    };
    let system_settings = cfg!(any(target_os = "macos", windows));
    assert_eq!(crate::dispatch::proxy_may_be_set(|_| None), system_settings);
    for name in crate::dispatch::PROXY_VARIABLES {
        assert!(
            crate::dispatch::proxy_may_be_set(with(name, "http://127.0.0.1:3128")),
            "{name}"
        );
        assert_eq!(
            crate::dispatch::proxy_may_be_set(with(name, "")),
            system_settings,
            "{name}"
        );
    }
    // NO_PROXY alone names no proxy.
    assert_eq!(
        crate::dispatch::proxy_may_be_set(with("NO_PROXY", "localhost")),
        system_settings
    );
}

/// The idempotency key written digit by digit is the one `format!` wrote before it (and
/// receivers have stored): both numbers as 16 lower-case hexadecimal digits, joined by `-`.
#[test]
fn the_idempotency_key_is_both_ids_in_sixteen_hexadecimal_digits() {
    for (store_id, id) in [
        (0u64, 0u64),
        (1, 2),
        (0xdead_beef_0123_4567, 0x89ab_cdef_fedc_ba98),
        (u64::MAX, u64::MAX),
        (0x0f, 0xf0),
    ] {
        let key = super::idempotency_key(store_id, id);
        assert_eq!(
            key.to_str().unwrap(),
            format!("{store_id:016x}-{id:016x}"),
            "{store_id} {id}"
        );
    }
}
