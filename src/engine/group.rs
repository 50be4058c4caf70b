//! A group's notification as Alertmanager's webhook (version 4) sends it, so that every
//! receiver that takes Alertmanager webhooks takes ours; and an alert as a member of one.
//!
//! Owns: the body's shape (`version`, `groupKey`, `status`, `receiver`, `groupLabels`,
//! `commonLabels`, `commonAnnotations`, `externalURL`, `alerts[]`, `truncatedAlerts`).
//! Never: decides when a group is notified (the step's `state::flush` does).

use serde_json::{Map, Value, json};

use crate::alert::{Alert, State};
#[cfg(feature = "dispatch")]
use crate::state::GroupNote;

/// Alertmanager's "no end" moment, for a firing alert without `endsAt`.
const NO_END: &str = "0001-01-01T00:00:00Z";

/// `alert` as a member of a group notification: Alertmanager's alert object, from the
/// fields the sender gave (`labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL`)
/// with `@state` as `status` and `@id` as `fingerprint`; a field the sender did not give
/// is empty (labels, annotations), left for the group to fill in (`startsAt`: when the
/// member joined), or Alertmanager's zero moment (`endsAt` of a firing alert).
pub(crate) fn member_json(alert: &Alert) -> String {
    let body = alert.body();
    let object = |k: &str| match body.get(k) {
        Some(Value::Object(m)) => Value::Object(m.clone()),
        _ => Value::Object(Map::new()),
    };
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let resolved = alert.state() == State::Resolved;
    let member = json!({
        "status": if resolved { "resolved" } else { "firing" },
        "labels": object("labels"),
        "annotations": object("annotations"),
        // Absent when the sender gave none: the group fills in when the member joined, so
        // that a re-send is the same member data (and costs no write).
        "startsAt": text("startsAt"),
        "endsAt": text("endsAt").unwrap_or_else(|| if resolved { alert.received_at().to_string() } else { String::from(NO_END) }),
        "generatorURL": text("generatorURL").unwrap_or_default(),
        "fingerprint": alert.id().unwrap_or_default(),
    });
    member.to_string()
}

/// The group's labels as a JSON object: each `by` field's name (`labels.cluster` is
/// `cluster`, as Alertmanager names it) and the alert's value there (the first, when it
/// has several; `""` when it has none, as a missing label is in Alertmanager).
pub(crate) fn group_labels(
    paths: &[super::value::Path],
    texts: &[String],
    alert: &Alert,
) -> String {
    let mut labels = Map::new();
    for (p, text) in paths.iter().zip(texts) {
        let mut first = None;
        p.any(alert, &mut |v| {
            first = Some(v.to_json());
            true
        });
        let name = text.strip_prefix("labels.").unwrap_or(text);
        labels.insert(name.to_owned(), first.unwrap_or_else(|| json!("")));
    }
    Value::Object(labels).to_string()
}

/// The labels (or annotations: `field`) every alert of the notification shares, with
/// equal values.
#[cfg(feature = "dispatch")]
fn common(alerts: &[Value], field: &str) -> Value {
    let mut all = alerts
        .iter()
        .map(|a| a.get(field).and_then(Value::as_object));
    let Some(Some(first)) = all.next() else {
        return Value::Object(Map::new());
    };
    let mut shared = first.clone();
    for other in all {
        match other {
            Some(o) => shared.retain(|k, v| o.get(k) == Some(v)),
            None => shared.clear(),
        }
    }
    Value::Object(shared)
}

/// The notification's body: Alertmanager's webhook version 4.
#[cfg(feature = "dispatch")]
pub(crate) fn webhook_body(note: &GroupNote<'_>) -> Value {
    let alerts: Vec<Value> = note
        .firing
        .iter()
        .chain(&note.resolved)
        .map(|m| {
            let mut a: Value = serde_json::from_str(&m.data).unwrap_or(Value::Null);
            if a.get("startsAt").is_none_or(Value::is_null)
                && let Some(o) = a.as_object_mut()
            {
                let since = i64::try_from(m.since)
                    .ok()
                    .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                o.insert(String::from("startsAt"), json!(since.to_string()));
            }
            a
        })
        .collect();
    let group_labels: Value =
        serde_json::from_str(note.labels).unwrap_or_else(|_| Value::Object(Map::new()));
    let status = if note.firing.is_empty() {
        "resolved"
    } else {
        "firing"
    };
    json!({
        "version": "4",
        "groupKey": group_key(note.rule, note.target, &group_labels),
        "truncatedAlerts": note.truncated,
        "status": status,
        "receiver": note.target,
        "groupLabels": group_labels,
        "commonLabels": common(&alerts, "labels"),
        "commonAnnotations": common(&alerts, "annotations"),
        "externalURL": "",
        "alerts": alerts,
    })
}

/// `{}/{rule="cluster pages"}:{alertname="HighCPU", cluster="eu"}`: unique per rule, target
/// and group, in Alertmanager's notation.
#[cfg(feature = "dispatch")]
fn group_key(rule: &str, target: &str, labels: &Value) -> String {
    let shown: Vec<String> = labels
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s:?}"),
                    other => format!("{k}={other}"),
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{{}}/{{rule={rule:?},target={target:?}}}:{{{}}}",
        shown.join(", ")
    )
}
