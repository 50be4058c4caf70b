//! Sender payloads to [`Alert`]s: detection, splitting, normalization and metadata.
//!
//! Never: drops a field the sender sent (the payload stays as received; metadata is added
//! beside it), copies before a payload is known to be within [`AdaptLimits`], or guesses a
//! sender when the shape matches none (it is `generic`).

use std::fmt;

use serde_json::{Map, Value};

use super::{Alert, Source, State};

/// Why a payload could not be turned into alerts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdaptError {
    /// The sender sends a JSON object, and this body is something else: `[1, 2]` to `/alerts/alibaba`.
    NotAnObject {
        /// The sender.
        source: Source,
    },
    /// A grouped body without its `alerts` array: `{"version": "4"}` to `/alerts/alertmanager`.
    MissingAlerts {
        /// The sender.
        source: Source,
    },
    /// An element of a grouped body that is not an object: `{"alerts": [1]}`.
    BadElement {
        /// The sender.
        source: Source,
        /// The element's index.
        index: usize,
    },
    /// `POST /api/v2/alerts` takes an array of alerts: `{"labels": {}}`.
    NotAnArray,
    /// More alerts in one body than [`AdaptLimits::max_alerts`]; found before any is made.
    TooManyAlerts {
        /// The alerts in the body.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A grouped body whose group fields, copied into each of its alerts, would pass
    /// [`AdaptLimits::max_copied_bytes`]; found before any copy is made.
    GroupTooLarge {
        /// The group fields' size, as JSON.
        group_bytes: usize,
        /// The alerts each would be copied into.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

/// Bounds on what one body may turn into, checked before any alert is made: the cost of
/// adapting a body is then bounded by its size, whatever its shape.
#[derive(Clone, Copy, Debug)]
pub struct AdaptLimits {
    /// The most alerts one body may hold.
    pub max_alerts: usize,
    /// The most bytes (as JSON) of group fields copied into a grouped body's alerts, all
    /// together: an Alertmanager webhook's `commonAnnotations`, say, times its alerts.
    pub max_copied_bytes: usize,
}

impl AdaptLimits {
    /// No bounds (the command line's `route` and `explain`, which read local files).
    pub const NONE: AdaptLimits = AdaptLimits {
        max_alerts: usize::MAX,
        max_copied_bytes: usize::MAX,
    };
}

impl fmt::Display for AdaptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdaptError::NotAnObject { source } => {
                write!(f, "an alert from {source} must be a JSON object")
            }
            AdaptError::MissingAlerts { source } => {
                write!(
                    f,
                    "a webhook body from {source} must have an `alerts` array"
                )
            }
            AdaptError::BadElement { source, index } => {
                write!(
                    f,
                    "element {index} of the {source} `alerts` array is not an object"
                )
            }
            AdaptError::NotAnArray => {
                write!(f, "the Alertmanager API takes a JSON array of alerts")
            }
            AdaptError::TooManyAlerts { count, limit } => {
                write!(f, "{count} alerts in one request; the limit is {limit}")
            }
            AdaptError::GroupTooLarge {
                group_bytes,
                count,
                limit,
            } => write!(
                f,
                "the group's fields ({group_bytes} bytes) copied into each of its {count} alerts would be {} bytes; the limit is {limit}: send fewer alerts per request or smaller common fields",
                group_bytes.saturating_mul(*count)
            ),
        }
    }
}

impl std::error::Error for AdaptError {}

/// Guesses the sender from a JSON body's shape, as `POST /alerts` does.
///
/// | shape | source |
/// |---|---|
/// | array of objects with `labels` | `prometheus` |
/// | object with an `alerts` array and `version` `"4"` | `alertmanager` |
/// | object with an `alerts` array and `version` `"1"` | `grafana` |
/// | object with `alertId` and `alertStatus` or `status` | `yandex` |
/// | object with `alertState` and `metricName` or `alertName`; or `eventTime`, `product`, `resourceId` | `alibaba` |
/// | anything else | `generic` |
pub fn detect_source(body: &Value) -> Source {
    match body {
        Value::Array(items)
            if !items.is_empty()
                && items
                    .iter()
                    .all(|a| a.get("labels").is_some_and(Value::is_object)) =>
        {
            Source::Prometheus
        }
        Value::Object(m) => {
            let has = |k: &str| m.contains_key(k);
            if m.get("alerts").is_some_and(Value::is_array) {
                match m.get("version").and_then(Value::as_str) {
                    Some("4") => return Source::Alertmanager,
                    Some("1") => return Source::Grafana,
                    _ if has("orgId") || has("state") => return Source::Grafana,
                    _ if has("groupKey") => return Source::Alertmanager,
                    _ => {}
                }
            }
            if has("alertId") && (has("alertStatus") || has("status")) {
                Source::Yandex
            } else if has("alertState") && (has("metricName") || has("alertName"))
                || has("eventTime") && has("product") && has("resourceId")
            {
                Source::Alibaba
            } else {
                Source::Generic
            }
        }
        _ => Source::Generic,
    }
}

/// Turns one JSON body into alerts. Grouped bodies (Alertmanager and Grafana webhooks,
/// Prometheus batches) give one alert per element; every other sender gives one alert.
/// With `source` `None`, the sender is detected from the shape ([`detect_source`]).
pub fn adapt_json(source: Option<Source>, body: Value) -> Result<Vec<Alert>, AdaptError> {
    adapt_at(source, body, jiff::Timestamp::now(), &AdaptLimits::NONE)
}

/// [`adapt_json`] as if received at `at`: each alert's [`Alert::received_at`], and the moment
/// a Prometheus alert's `endsAt` is compared with (a replay of recorded alerts, or
/// `switchyard explain --at`).
pub fn adapt_json_at(
    source: Option<Source>,
    body: Value,
    at: jiff::Timestamp,
) -> Result<Vec<Alert>, AdaptError> {
    adapt_at(source, body, at, &AdaptLimits::NONE)
}

/// [`adapt_json`] within `limits`, checked before any alert is made (what a server does
/// with bodies from the network).
pub fn adapt_json_within(
    source: Option<Source>,
    body: Value,
    limits: &AdaptLimits,
) -> Result<Vec<Alert>, AdaptError> {
    adapt_at(source, body, jiff::Timestamp::now(), limits)
}

pub(crate) fn adapt_at(
    source: Option<Source>,
    body: Value,
    now: jiff::Timestamp,
    limits: &AdaptLimits,
) -> Result<Vec<Alert>, AdaptError> {
    let source = source.unwrap_or_else(|| detect_source(&body));
    let one = |a: Alert| {
        if limits.max_alerts == 0 {
            Err(AdaptError::TooManyAlerts { count: 1, limit: 0 })
        } else {
            Ok(vec![a])
        }
    };
    let mut alerts = match source {
        Source::Alibaba => alibaba(body).and_then(one),
        Source::Yandex => yandex(body).and_then(one),
        Source::Alertmanager | Source::Grafana => grouped(source, body, limits),
        Source::Prometheus => prometheus(body, now, limits),
        Source::Generic => one(Alert::unreceived(body)),
    }?;
    // Every alert of one body is received at one moment, set here.
    for a in &mut alerts {
        a.received_at = now;
    }
    Ok(alerts)
}

/// The size of a value as compact JSON, without writing it anywhere.
fn json_size(v: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a `Value` to a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Decodes an `application/x-www-form-urlencoded` body into an object of strings, as
/// Alibaba CloudMonitor sends its threshold callbacks. A repeated key keeps its last value.
pub fn form_to_json(body: &[u8]) -> Value {
    let mut map = Map::new();
    for (k, v) in form_urlencoded::parse(body) {
        map.insert(k.into_owned(), Value::String(v.into_owned()));
    }
    Value::Object(map)
}

// ---- Alibaba ---------------------------------------------------------------------------

fn alibaba(body: Value) -> Result<Alert, AdaptError> {
    let Value::Object(mut m) = body else {
        return Err(AdaptError::NotAnObject {
            source: Source::Alibaba,
        });
    };
    // Alibaba sends absent values as the text `null` (veaiops treats `""` alike).
    m.retain(|_, v| !matches!(v.as_str(), Some("null")));
    for key in ["dimensions", "customLabels"] {
        if let Some(v) = m.get_mut(key)
            && let Some(normal) = key_values(v)
        {
            *v = normal;
        }
    }
    let get = |k: &str| m.get(k).and_then(Value::as_str);
    let state = match get("alertState").map(str::to_ascii_uppercase).as_deref() {
        Some("ALERT" | "ALARM") => State::Firing,
        Some("OK") => State::Resolved,
        Some("INSUFFICIENT_DATA") => State::Nodata,
        _ => State::Unknown,
    };
    let name = get("alertName").or_else(|| get("name")).map(str::to_owned);
    let id = match (get("ruleId"), m.get("dimensions")) {
        (Some(rule), dims) => Some(format!("{rule}{}", canonical_labels(dims))),
        (None, _) => get("id").map(str::to_owned),
    };
    let mut alert = Alert::unreceived(Value::Object(m))
        .with_source(Source::Alibaba)
        .with_state(state);
    alert.name = name;
    alert.id = id;
    Ok(alert)
}

/// Alibaba `dimensions`: `{userId=12, instanceId=i-1}` (current docs), a JSON array of
/// objects (legacy docs, `[{"instanceId":"i-1"}]`), or either as JSON text. One object, in
/// any form, becomes an object (`dimensions.instanceId`); several stay an array of objects,
/// every one kept (`dimensions[*].instanceId`). `None`: leave the value as it is.
fn key_values(v: &Value) -> Option<Value> {
    match v {
        Value::Object(_) => None,
        Value::Array(items) => match items.as_slice() {
            [one @ Value::Object(_)] => Some(one.clone()),
            _ => None,
        },
        Value::String(s) => {
            let t = s.trim();
            if t.starts_with('[') || t.starts_with("{\"") {
                let parsed: Value = serde_json::from_str(t).ok()?;
                return Some(key_values(&parsed).unwrap_or(parsed));
            }
            // The current docs' sample ends `...}` or even `...})`; be lenient about both.
            let inner = t
                .trim_start_matches('{')
                .trim_end_matches(')')
                .trim_end_matches('}');
            let mut out = Map::new();
            for pair in inner.split(',') {
                if let Some((k, val)) = pair.split_once('=') {
                    let k = k.trim();
                    if !k.is_empty() {
                        out.insert(k.to_owned(), Value::String(val.trim().to_owned()));
                    }
                }
            }
            Some(Value::Object(out))
        }
        _ => None,
    }
}

/// `{k=v,k=v}` with keys sorted (for several objects, each so, in order, in `[...]`), or
/// empty: a stable text for an identity.
fn canonical_labels(v: Option<&Value>) -> String {
    match v {
        Some(Value::Object(m)) => {
            let mut pairs: Vec<(&String, String)> = m
                .iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect();
            pairs.sort();
            let inner: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{{{}}}", inner.join(","))
        }
        Some(Value::Array(items)) => {
            let each: Vec<String> = items.iter().map(|i| canonical_labels(Some(i))).collect();
            format!("[{}]", each.join(","))
        }
        _ => String::new(),
    }
}

// ---- Yandex ----------------------------------------------------------------------------

fn yandex(body: Value) -> Result<Alert, AdaptError> {
    let Value::Object(m) = body else {
        return Err(AdaptError::NotAnObject {
            source: Source::Yandex,
        });
    };
    let get = |k: &str| m.get(k).and_then(Value::as_str);
    // Doc revisions disagree on the key; prefer `alertStatus` when both are present.
    let status = get("alertStatus")
        .or_else(|| get("status"))
        .map(str::to_ascii_uppercase);
    let state = match status.as_deref() {
        Some("ALARM") => State::Firing,
        Some("OK") => State::Resolved,
        Some("WARN" | "WARNING") => State::Warning,
        Some("NO_DATA" | "NODATA") => State::Nodata,
        Some("ERROR") => State::Error,
        _ => State::Unknown,
    };
    let name = get("alertName").map(str::to_owned);
    let id = get("alertId").map(|id| match m.get("labels") {
        Some(l @ Value::Object(o)) if !o.is_empty() => format!("{id}{}", canonical_labels(Some(l))),
        _ => id.to_owned(),
    });
    let mut alert = Alert::unreceived(Value::Object(m))
        .with_source(Source::Yandex)
        .with_state(state);
    alert.name = name;
    alert.id = id;
    Ok(alert)
}

// ---- Alertmanager and Grafana webhooks -------------------------------------------------

/// One alert per element of `alerts`; the group's fields (`receiver`, `groupKey`,
/// `commonLabels`, ...) stay visible at the top level, under the element's own fields.
fn grouped(source: Source, body: Value, limits: &AdaptLimits) -> Result<Vec<Alert>, AdaptError> {
    let Value::Object(mut group) = body else {
        return Err(AdaptError::NotAnObject { source });
    };
    let Some(Value::Array(elements)) = group.remove("alerts") else {
        return Err(AdaptError::MissingAlerts { source });
    };
    let count = elements.len();
    if count > limits.max_alerts {
        return Err(AdaptError::TooManyAlerts {
            count,
            limit: limits.max_alerts,
        });
    }
    // Every alert gets a copy of the group's fields: bound the copies before making them.
    if limits.max_copied_bytes != usize::MAX && count > 1 {
        let group_bytes = json_size(&group);
        if group_bytes.saturating_mul(count) > limits.max_copied_bytes {
            return Err(AdaptError::GroupTooLarge {
                group_bytes,
                count,
                limit: limits.max_copied_bytes,
            });
        }
    }
    let mut out = Vec::with_capacity(elements.len());
    for (index, el) in elements.into_iter().enumerate() {
        let Value::Object(el) = el else {
            return Err(AdaptError::BadElement { source, index });
        };
        let mut merged = group.clone();
        merged.extend(el);
        out.push(labelled(source, merged, |m| {
            match m.get("status").and_then(Value::as_str) {
                Some("firing") => State::Firing,
                Some("resolved") => State::Resolved,
                _ => State::Unknown,
            }
        }));
    }
    Ok(out)
}

fn prometheus(
    body: Value,
    now: jiff::Timestamp,
    limits: &AdaptLimits,
) -> Result<Vec<Alert>, AdaptError> {
    let Value::Array(elements) = body else {
        return Err(AdaptError::NotAnArray);
    };
    if elements.len() > limits.max_alerts {
        return Err(AdaptError::TooManyAlerts {
            count: elements.len(),
            limit: limits.max_alerts,
        });
    }
    let mut out = Vec::with_capacity(elements.len());
    for (index, el) in elements.into_iter().enumerate() {
        let Value::Object(el) = el else {
            return Err(AdaptError::BadElement {
                source: Source::Prometheus,
                index,
            });
        };
        out.push(labelled(Source::Prometheus, el, |m| {
            // No status field: firing while `endsAt` is absent or in the future.
            let ends = m
                .get("endsAt")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<jiff::Timestamp>().ok());
            match ends {
                Some(t) if t <= now => State::Resolved,
                _ => State::Firing,
            }
        }));
    }
    Ok(out)
}

fn labelled(
    source: Source,
    m: Map<String, Value>,
    state: impl Fn(&Map<String, Value>) -> State,
) -> Alert {
    let state = state(&m);
    let labels = m.get("labels").and_then(Value::as_object);
    let name = labels
        .and_then(|l| l.get("alertname"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let id = match m.get("fingerprint").and_then(Value::as_str) {
        Some(f) if !f.is_empty() => Some(f.to_owned()),
        _ => match (source, m.get("ruleUID").and_then(Value::as_str)) {
            (Source::Grafana, Some(uid)) => {
                Some(format!("{uid}{}", canonical_labels(m.get("labels"))))
            }
            _ => labels.map(|l| format!("{:016x}", fingerprint(l))),
        },
    };
    let mut alert = Alert::unreceived(Value::Object(m))
        .with_source(source)
        .with_state(state);
    alert.name = name;
    alert.id = id;
    alert
}

/// Alertmanager's fingerprint of a label set: FNV-1a 64 over the sorted names and values,
/// each followed by the byte 0xff (prometheus/common `model/signature.go`).
pub(crate) fn fingerprint(labels: &Map<String, Value>) -> u64 {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut names: Vec<&String> = labels.keys().collect();
    names.sort();
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for n in names {
        add(n.as_bytes());
        add(&[0xff]);
        add(labels
            .get(n)
            .and_then(Value::as_str)
            .unwrap_or("")
            .as_bytes());
        add(&[0xff]);
    }
    h
}

#[cfg(test)]
#[path = "adapt_test.rs"]
mod tests;
