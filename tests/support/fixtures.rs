//! The sender fixtures in `tests/fixtures/` (see its README for where each comes from).

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The path of a fixture, from `tests/fixtures/`.
pub(crate) fn path(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

/// A fixture's bytes.
pub(crate) fn read(p: &str) -> Vec<u8> {
    std::fs::read(path(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// A JSON fixture as if it were sent now: every `startsAt` and `endsAt` (at any depth) moves
/// by the time since `sent_at`, the moment the file was sent. Prometheus sends no status, so
/// an alert's state follows `endsAt` against the receiver's clock: without the move, a
/// fixture written on one day reads as resolved on every later day. Alertmanager's "no end"
/// (`0001-01-01T00:00:00Z`) stays as it is.
pub(crate) fn sent_now(p: &str, sent_at: &str) -> Vec<u8> {
    let sent: jiff::Timestamp = sent_at.parse().unwrap();
    let shift = jiff::Timestamp::now().duration_since(sent);
    let mut v: Value = serde_json::from_slice(&read(p)).unwrap();
    shift_times(&mut v, shift);
    serde_json::to_vec(&v).unwrap()
}

fn shift_times(v: &mut Value, by: jiff::SignedDuration) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                match v {
                    Value::String(s) if k == "startsAt" || k == "endsAt" => {
                        if let Ok(t) = s.parse::<jiff::Timestamp>()
                            && t.as_second() > 0
                        {
                            *s = (t + by).to_string();
                        }
                    }
                    _ => shift_times(v, by),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| shift_times(v, by)),
        _ => {}
    }
}
