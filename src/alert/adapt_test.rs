//! Unit tests of `adapt.rs`.

use super::*;
use serde_json::json;

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn alibaba_form_is_normalized() {
    let body = form_to_json(fixture("alibaba/metric-alarm.form.txt").as_bytes());
    assert_eq!(detect_source(&body), Source::Alibaba);
    let a = adapt_json(None, body).unwrap().remove(0);
    assert_eq!(a.state(), State::Firing);
    assert!(
        a.body()["dimensions"].is_object(),
        "{:?}",
        a.body()["dimensions"]
    );
    assert!(
        a.body().get("preTriggerLevel").is_none(),
        "the text `null` is missing"
    );
    assert!(a.id().unwrap().contains("instanceId="));
}

#[test]
fn alibaba_legacy_dimensions_array_becomes_object() {
    let body: Value = serde_json::from_str(&fixture("alibaba/metric-alarm.legacy.json")).unwrap();
    let a = adapt_json(Some(Source::Alibaba), body).unwrap().remove(0);
    assert_eq!(a.state(), State::Firing);
    assert!(a.body()["dimensions"]["instanceId"].is_string());
}

/// Found by an attack: the legacy form with several objects was merged into one, so `i-1`
/// disappeared and `dimensions[*].instanceId == "i-1"` was false. Normalization never drops
/// data: several objects stay an array; one object (or the `{k=v}` text) is an object, so
/// `dimensions.instanceId` keeps working there.
#[test]
fn alibaba_dimensions_with_several_objects_keep_every_one() {
    let several = adapt_json(
        Some(Source::Alibaba),
        json!({"alertState": "ALARM", "ruleId": "r1",
               "dimensions": [{"instanceId": "i-1"}, {"instanceId": "i-2"}]}),
    )
    .unwrap()
    .remove(0);
    assert_eq!(
        several.body()["dimensions"],
        json!([{"instanceId": "i-1"}, {"instanceId": "i-2"}])
    );
    // Both instances are in the identity: two different sets are two different alerts.
    assert_eq!(several.id(), Some("r1[{instanceId=i-1},{instanceId=i-2}]"));
    // The same, sent as JSON text inside a form field.
    let text = adapt_json(
        Some(Source::Alibaba),
        json!({"alertState": "ALARM",
               "dimensions": "[{\"instanceId\":\"i-1\"},{\"instanceId\":\"i-2\"}]"}),
    )
    .unwrap()
    .remove(0);
    assert_eq!(text.body()["dimensions"], several.body()["dimensions"]);
    // One object, in any of the three forms: an object.
    for dims in [
        json!([{"instanceId": "i-1", "userId": "7"}]),
        json!("{instanceId=i-1, userId=7}"),
        json!("{\"instanceId\":\"i-1\",\"userId\":\"7\"}"),
    ] {
        let a = adapt_json(
            Some(Source::Alibaba),
            json!({"alertState": "ALARM", "ruleId": "r1", "dimensions": dims}),
        )
        .unwrap()
        .remove(0);
        assert_eq!(
            a.body()["dimensions"],
            json!({"instanceId": "i-1", "userId": "7"}),
            "{dims}"
        );
        assert_eq!(a.id(), Some("r1{instanceId=i-1,userId=7}"));
    }
}

#[test]
fn alibaba_ok_is_resolved() {
    let body = form_to_json(fixture("alibaba/metric-ok.form.txt").as_bytes());
    let ok = adapt_json(None, body).unwrap().remove(0);
    let alarm = adapt_json(
        None,
        form_to_json(fixture("alibaba/metric-alarm.form.txt").as_bytes()),
    )
    .unwrap()
    .remove(0);
    assert_eq!(ok.state(), State::Resolved);
    assert_eq!(
        ok.id(),
        alarm.id(),
        "the same rule and object is the same alert"
    );
}

#[test]
fn yandex_accepts_either_status_key() {
    for f in [
        "yandex/function-alarm.json",
        "yandex/function-escalation.status.json",
    ] {
        let body: Value = serde_json::from_str(&fixture(f)).unwrap();
        assert_eq!(detect_source(&body), Source::Yandex, "{f}");
        let a = adapt_json(None, body).unwrap().remove(0);
        assert_eq!(a.state(), State::Firing, "{f}");
    }
    let ok: Value = serde_json::from_str(&fixture("yandex/function-ok.json")).unwrap();
    assert_eq!(adapt_json(None, ok).unwrap()[0].state(), State::Resolved);
}

#[test]
fn alertmanager_splits_and_keeps_group_fields() {
    let body: Value = serde_json::from_str(&fixture("alertmanager/webhook-mixed.json")).unwrap();
    assert_eq!(detect_source(&body), Source::Alertmanager);
    let alerts = adapt_json(None, body).unwrap();
    assert_eq!(alerts.len(), 3);
    assert_eq!(
        alerts
            .iter()
            .filter(|a| a.state() == State::Resolved)
            .count(),
        1
    );
    for a in &alerts {
        assert!(a.body().get("receiver").is_some());
        assert!(a.body().get("alerts").is_none());
        let labels = a.body()["labels"].as_object().unwrap();
        assert_eq!(
            a.id().unwrap(),
            format!("{:016x}", fingerprint(labels)),
            "fixtures carry real fingerprints"
        );
    }
}

#[test]
fn prometheus_state_comes_from_ends_at() {
    let body: Value = serde_json::from_str(&fixture(
        "alertmanager/api-v2-alerts-resolved-and-minimal.json",
    ))
    .unwrap();
    assert_eq!(detect_source(&body), Source::Prometheus);
    let alerts = adapt_at(
        None,
        body,
        "2026-11-24T00:00:00Z".parse().unwrap(),
        &AdaptLimits::NONE,
    )
    .unwrap();
    let states: Vec<State> = alerts.iter().map(Alert::state).collect();
    assert!(
        states.contains(&State::Resolved) && states.contains(&State::Firing),
        "{states:?}"
    );
}

#[test]
fn grafana_is_detected_and_split() {
    let body: Value = serde_json::from_str(&fixture("grafana/webhook-firing.json")).unwrap();
    assert_eq!(detect_source(&body), Source::Grafana);
    let alerts = adapt_json(None, body).unwrap();
    assert_eq!(alerts.len(), 2);
    assert!(
        alerts
            .iter()
            .all(|a| a.state() == State::Firing && a.name().is_some())
    );
}

#[test]
fn wrong_shapes_are_errors_not_panics() {
    assert_eq!(
        adapt_json(Some(Source::Alibaba), json!([1])),
        Err(AdaptError::NotAnObject {
            source: Source::Alibaba
        })
    );
    // Found by a user: the message read "a alibaba alert".
    assert_eq!(
        AdaptError::NotAnObject {
            source: Source::Alibaba
        }
        .to_string(),
        "an alert from alibaba must be a JSON object"
    );
    assert_eq!(
        adapt_json(Some(Source::Alertmanager), json!({"version": "4"})),
        Err(AdaptError::MissingAlerts {
            source: Source::Alertmanager
        })
    );
    assert!(adapt_json(Some(Source::Prometheus), json!({})).is_err());
    assert!(adapt_json(Some(Source::Grafana), json!({"alerts": [1]})).is_err());
}
