//! One attempt at a delivery and the policy that judges it: what counts as delivered,
//! what is retried and when (exponential backoff with full jitter, `Retry-After`
//! honoured), and where a delivery goes when it is given up (its target's fallback, else
//! a dead letter). The store only records what is decided here ([`Finish`]).
//!
//! Never show a target's URL or headers in an error: either may hold a secret.

use std::time::Duration;

use super::now_ms;
use super::store::{DeadLetter, Finish, Method, Record};

/// The retry schedule: attempt n waits a random time in `[0, min(cap, base * 2^n))`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// The first retry's upper bound (default 500 ms).
    pub base: Duration,
    /// The largest wait (default 5 min); also caps a `Retry-After`.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    pub(crate) fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX));
        let bound = exp.min(self.cap);
        let jitter = Duration::from_millis(fastrand::u64(0..=bound.as_millis() as u64));
        match retry_after {
            Some(ra) => ra.min(self.cap).max(jitter),
            None => jitter,
        }
    }
}

/// What happened to an attempt.
#[derive(Debug)]
pub(crate) enum AttemptOutcome {
    Delivered,
    Retry {
        attempts: u32,
        next_at_ms: u64,
        error: String,
    },
    /// Out of retries (or refused for good): to the fallback if any, else a dead letter.
    GiveUp {
        attempts: u32,
        error: String,
        now_ms: u64,
    },
    /// Not attempted: a held firing (with its `check`) that inhibit `inhibit` keeps out at
    /// `now`, when it is due, because alert `by` fires as its source.
    Inhibited {
        check: Box<crate::state::Recheck>,
        inhibit: String,
        by: String,
        now: u64,
    },
}

/// The policy: what the store records for an attempt's outcome. A delivery given up goes
/// to its target's fallback (as a new delivery, due now, its error noted), else becomes a
/// dead letter.
pub(crate) fn settle(mut r: Record, outcome: AttemptOutcome) -> Finish {
    match outcome {
        AttemptOutcome::Delivered => Finish::Delivered(r.id),
        AttemptOutcome::Inhibited { check, now, .. } => Finish::Inhibited {
            id: r.id,
            check,
            now,
        },
        AttemptOutcome::Retry {
            attempts,
            next_at_ms,
            error,
        } => {
            r.attempts = attempts;
            r.next_at_ms = next_at_ms;
            r.last_error = Some(error);
            Finish::Retry(r)
        }
        AttemptOutcome::GiveUp {
            attempts,
            error,
            now_ms,
        } => match r.spec.fallback.take() {
            Some(fallback) => {
                let from = r.spec.target;
                Finish::FallBack {
                    from: r.id,
                    to: Record {
                        id: 0,
                        spec: *fallback,
                        body: r.body,
                        shown_body: r.shown_body,
                        alert_id: r.alert_id,
                        attempts: 0,
                        next_at_ms: now_ms,
                        last_error: Some(format!("{from}: {error}")),
                        created_ms: r.created_ms,
                        fallback_from: Some(from),
                        // A fallback follows an attempt: inhibition was checked before it.
                        recheck: None,
                    },
                }
            }
            None => Finish::Dead(DeadLetter {
                id: r.id,
                target: r.spec.target.clone(),
                alert_id: r.alert_id,
                attempts,
                error,
                created_ms: r.created_ms,
                dead_ms: now_ms,
                body: r.body,
                shown_body: r.shown_body,
                spec: r.spec,
                unreadable: false,
            }),
        },
    }
}

/// A redirect's `Location`, as it may be shown: without user, password, query or fragment
/// (where a receiver may echo a secret back). A relative one is shown as written, never
/// joined to the target's URL, which may hold a secret.
fn shown_location(location: &str) -> String {
    match reqwest::Url::parse(location) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => location
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect(),
    }
}

/// The header that names a delivery, the same on every attempt of it.
const IDEMPOTENCY_KEY: reqwest::header::HeaderName =
    reqwest::header::HeaderName::from_static("idempotency-key");

/// The `Idempotency-Key` of delivery `id` of the outbox `store_id`: both as 16 lower-case
/// hexadecimal digits, joined by `-`. Written digit by digit: formatting them took about
/// 700 instructions a delivery.
fn idempotency_key(store_id: u64, id: u64) -> reqwest::header::HeaderValue {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut key = [b'-'; 33];
    for (half, n) in [(0, store_id), (17, id)] {
        for (i, b) in key[half..half + 16].iter_mut().enumerate() {
            *b = DIGITS[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    reqwest::header::HeaderValue::from_bytes(&key)
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("-"))
}

/// One attempt at a delivery, and what to do next.
pub(crate) async fn attempt(
    client: &reqwest::Client,
    r: &Record,
    url: Option<reqwest::Url>,
    store_id: u64,
    backoff: Backoff,
) -> AttemptOutcome {
    let method = match r.spec.method {
        Method::Put => reqwest::Method::PUT,
        Method::Post => reqwest::Method::POST,
    };
    let req = match url {
        Some(url) => client.request(method, url),
        None => client.request(method, &r.spec.url),
    };
    let mut req = req
        .timeout(Duration::from_millis(r.spec.timeout_ms))
        .header(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json"),
        )
        .header(IDEMPOTENCY_KEY, idempotency_key(store_id, r.id));
    for (k, v) in &r.spec.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let attempts = r.attempts + 1;
    let (retryable, error, retry_after) = match req.body(r.body.clone()).send().await {
        Ok(resp) if resp.status().is_success() => return AttemptOutcome::Delivered,
        Ok(resp) => {
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let retryable =
                status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
            let error = if status.is_redirection() {
                let to = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map_or_else(|| String::from("nowhere"), shown_location);
                format!(
                    "HTTP {status}: redirect to {to}; redirects are not followed: set the target's url to where it should go"
                )
            } else {
                format!("HTTP {status}")
            };
            (retryable, error, retry_after)
        }
        // Never show the URL: it may hold a secret.
        Err(e) if e.is_timeout() => (
            true,
            format!("timed out after {} ms", r.spec.timeout_ms),
            None,
        ),
        Err(e) if e.is_connect() => (true, String::from("connection failed"), None),
        Err(e) => (true, format!("request failed: {}", e.without_url()), None),
    };
    if retryable && attempts <= r.spec.retries {
        let wait = backoff.delay(attempts - 1, retry_after);
        AttemptOutcome::Retry {
            attempts,
            next_at_ms: now_ms() + wait.as_millis() as u64,
            error,
        }
    } else {
        AttemptOutcome::GiveUp {
            attempts,
            error,
            now_ms: now_ms(),
        }
    }
}

/// `Retry-After: 120` or `Retry-After: Fri, 31 Dec 1999 23:59:59 GMT`.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    let secs = (at.as_second() - now.as_second()).max(0);
    Some(Duration::from_secs(secs as u64))
}

#[cfg(test)]
#[path = "attempt_test.rs"]
mod tests;
