//! The 202 answer to an ingest request, written straight into one buffer sized for it:
//!
//! ```json
//! {"accepted":1,"alerts":[{"deliveries":[1],"dropped":false,"id":"a1","rules":["pages"],
//!  "source":"yandex","state":"firing","targets":["t"],"unrouted":false}]}
//! ```
//!
//! The keys are in alphabetical order, the order the answer has always had; `verdicts`
//! follows `unrouted` when rules that remember had a say. The fields are written one by
//! one rather than through serde's generic path. serde cost about 3,500 instructions of a
//! one-alert request's 50,000, where this writer costs under 1,000 (docs/benchmarks.md);
//! the verdicts of rules that remember went through serde too, about 2,000 more (its
//! `flatten`), until they were written the same way. Strings that need no escaping (ids,
//! rule and target names, almost always) are copied as they are. The others go through
//! serde_json itself, so the answer is byte for byte what serde_json writes (checked in
//! the tests, for every kind of verdict).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::recent::Recorded;
use crate::state::{Verdict, VerdictKind};

/// About how many bytes one alert takes in the answer: the buffer is sized once.
const BYTES_PER_ALERT: usize = 224;

/// The 202's body: what happened to each alert of the request, in order.
pub(crate) struct Accepted {
    pub(crate) alerts: Vec<Arc<Recorded>>,
}

impl Accepted {
    /// The answer's JSON.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + BYTES_PER_ALERT * self.alerts.len());
        out.extend_from_slice(b"{\"accepted\":");
        number(&mut out, self.alerts.len() as u64);
        out.extend_from_slice(b",\"alerts\":[");
        for (i, d) in self.alerts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            alert(&mut out, d);
        }
        out.extend_from_slice(b"]}");
        out
    }
}

impl IntoResponse for Accepted {
    /// The 202, built in place: its length is known here, so `content-length` is set
    /// without the generic response parts asking the body for it.
    fn into_response(self) -> Response {
        let json = self.to_json();
        let length = HeaderValue::from(json.len());
        let mut resp = Response::new(Body::from(json));
        *resp.status_mut() = StatusCode::ACCEPTED;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CONTENT_LENGTH, length);
        resp
    }
}

/// One alert's part: `{"deliveries":[..],"dropped":..,"id":..,...}`.
fn alert(out: &mut Vec<u8>, d: &Recorded) {
    out.extend_from_slice(b"{\"deliveries\":[");
    for (i, id) in d.deliveries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        number(out, *id);
    }
    out.extend_from_slice(b"],\"dropped\":");
    boolean(out, d.dropped);
    out.extend_from_slice(b",\"id\":");
    match &d.id {
        Some(id) => string(out, id),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"rules\":");
    strings(out, &d.rules);
    out.extend_from_slice(b",\"source\":");
    string(out, d.source);
    out.extend_from_slice(b",\"state\":");
    string(out, d.state);
    out.extend_from_slice(b",\"targets\":");
    strings(out, &d.targets);
    out.extend_from_slice(b",\"unrouted\":");
    boolean(out, d.unrouted);
    if !d.verdicts.is_empty() {
        out.extend_from_slice(b",\"verdicts\":[");
        for (i, v) in d.verdicts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            verdict(out, v);
        }
        out.push(b']');
    }
    out.push(b'}');
}

/// One verdict as serde_json writes [`Verdict`]: its kind flattened in, tagged `verdict`,
/// each kind's fields in their declared order, `key` last and only when there is one.
fn verdict(out: &mut Vec<u8>, v: &Verdict) {
    out.extend_from_slice(b"{\"rule\":");
    string(out, &v.rule);
    out.extend_from_slice(b",\"target\":");
    string(out, &v.target);
    out.extend_from_slice(b",\"verdict\":");
    match &v.kind {
        VerdictKind::Delivered { delivery } => {
            out.extend_from_slice(b"\"delivered\",\"delivery\":");
            number(out, *delivery);
        }
        VerdictKind::Duplicate { of, at, until } => {
            out.extend_from_slice(b"\"duplicate\",\"of\":");
            number(out, *of);
            out.extend_from_slice(b",\"at\":");
            number(out, *at);
            out.extend_from_slice(b",\"until\":");
            maybe(out, *until);
        }
        VerdictKind::Throttled { limit, per_ms } => {
            out.extend_from_slice(b"\"throttled\",\"limit\":");
            number(out, *limit);
            out.extend_from_slice(b",\"per_ms\":");
            number(out, *per_ms);
        }
        VerdictKind::Diverted { to, delivery } => {
            out.extend_from_slice(b"\"diverted\",\"to\":");
            string(out, to);
            out.extend_from_slice(b",\"delivery\":");
            number(out, *delivery);
        }
        VerdictKind::Unannounced => out.extend_from_slice(b"\"unannounced\""),
        VerdictKind::Held { delivery, until } => {
            out.extend_from_slice(b"\"held\",\"delivery\":");
            number(out, *delivery);
            out.extend_from_slice(b",\"until\":");
            number(out, *until);
        }
        VerdictKind::Muted { window, until } => {
            out.extend_from_slice(b"\"muted\",\"window\":");
            string(out, window);
            out.extend_from_slice(b",\"until\":");
            number(out, *until);
        }
        VerdictKind::Cancelled { of } => {
            out.extend_from_slice(b"\"cancelled\",\"of\":");
            number(out, *of);
        }
        VerdictKind::Inhibited { inhibit, by } => {
            out.extend_from_slice(b"\"inhibited\",\"inhibit\":");
            string(out, inhibit);
            out.extend_from_slice(b",\"by\":");
            string(out, by);
        }
        VerdictKind::Grouped {
            group,
            flush,
            members,
        } => {
            out.extend_from_slice(b"\"grouped\",\"group\":");
            string(out, group);
            out.extend_from_slice(b",\"flush\":");
            number(out, *flush);
            out.extend_from_slice(b",\"members\":");
            number(out, *members);
        }
        VerdictKind::Silenced {
            silence,
            until,
            delivery,
        } => {
            out.extend_from_slice(b"\"silenced\",\"silence\":");
            number(out, *silence);
            out.extend_from_slice(b",\"until\":");
            number(out, *until);
            out.extend_from_slice(b",\"delivery\":");
            maybe(out, *delivery);
        }
    }
    if let Some(key) = &v.key {
        out.extend_from_slice(b",\"key\":");
        string(out, key);
    }
    out.push(b'}');
}

fn maybe(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => number(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// `s` as a JSON string: copied as it is when nothing in it needs escaping (JSON escapes
/// only `"`, `\` and control characters; serde_json writes everything else as it is).
fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde(out, s);
    }
}

fn strings(out: &mut Vec<u8>, list: &[String]) {
    out.push(b'[');
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

/// `value` as serde_json writes it. Into a `Vec`, of the router's own types (no map with
/// keys that are not strings), this cannot fail; if it ever did, `null` keeps the answer
/// JSON: the alerts are stored all the same, and an error would make the sender send them
/// again.
fn serde<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mark = out.len();
    if let Err(e) = serde_json::to_writer(&mut *out, value) {
        tracing::error!(error = %e, "cannot write part of the answer to an accepted request");
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
#[path = "answer_test.rs"]
mod tests;
