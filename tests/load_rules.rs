//! The load benchmark's rules (`benches/load/gen_rules.py`) route exactly as the harness's
//! Alertmanager routing tree does (`gen_config.py`): route k takes the alerts for Rule_k
//! and nothing else, first match wins, and what no route takes goes to the root receiver.
//! The comparison in docs/benchmarks.md rests on this.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use switchyard::{Alert, RuleSet, Source};

const ROUTES: usize = 40;

fn rules() -> RuleSet {
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/load/gen_rules.py"
        ))
        .args([
            "--routes",
            &ROUTES.to_string(),
            "--sink",
            "http://127.0.0.1:19094",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    RuleSet::from_files([("bench.rules", String::from_utf8(out.stdout).unwrap())]).unwrap()
}

fn alert(labels: serde_json::Value) -> Alert {
    Alert::new(json!({ "labels": labels, "annotations": {"summary": "x"} }))
        .with_source(Source::Prometheus)
}

fn routed(set: &RuleSet, labels: serde_json::Value) -> Vec<String> {
    set.evaluate(&alert(labels)).summary().targets
}

#[test]
fn each_route_takes_its_alerts_and_only_those() {
    let set = rules();
    assert_eq!(set.rule_count(), ROUTES + 1);
    assert_eq!(
        set.indexed_rule_count(),
        ROUTES + 1,
        "every rule is indexed"
    );
    // The harness's alerts: alertState ALERT, metricName cpu_usage.
    for k in 0..ROUTES + 10 {
        let labels = json!({"alertname": format!("Rule_{k}"), "metricName": "cpu_usage",
            "alertState": "ALERT", "severity": "critical", "instance": "host-1.example", "id": format!("x-{k}")});
        let expected = if k < ROUTES {
            format!("hook_{}", k % 10)
        } else {
            String::from("hook_default")
        };
        assert_eq!(routed(&set, labels), [expected], "Rule_{k}");
    }
}

#[test]
fn matchers_keep_alertmanager_semantics() {
    let set = rules();
    let r = |labels| routed(&set, labels);
    // Route 0: alertState=~"ALERT|CRITICAL", metricName=~"cpu_.*|memory_.*" (anchored).
    assert_eq!(
        r(json!({"alertname": "Rule_0", "alertState": "CRITICAL", "metricName": "memory_x"})),
        ["hook_0"]
    );
    assert_eq!(
        r(json!({"alertname": "Rule_0", "alertState": "ALERTS", "metricName": "cpu_x"})),
        ["hook_default"]
    );
    assert_eq!(
        r(json!({"alertname": "Rule_0", "alertState": "ALERT", "metricName": "xcpu_x"})),
        ["hook_default"]
    );
    // Route 1: alertState="ALERT" only.
    assert_eq!(
        r(json!({"alertname": "Rule_1", "alertState": "WARN"})),
        ["hook_default"]
    );
    // Route 2: alertState!="OK" holds for a missing label; alertname=~"Rule_2|RuleAlt_2".
    assert_eq!(
        r(json!({"alertname": "RuleAlt_2", "metricName": "cpu_y"})),
        ["hook_2"]
    );
    assert_eq!(
        r(json!({"alertname": "Rule_2", "alertState": "OK", "metricName": "cpu_y"})),
        ["hook_default"]
    );
    // Route 3: metricName!~"test_.*" holds for a missing label.
    assert_eq!(
        r(json!({"alertname": "Rule_3", "alertState": "WARN"})),
        ["hook_3"]
    );
    assert_eq!(
        r(json!({"alertname": "Rule_3", "alertState": "WARN", "metricName": "test_1"})),
        ["hook_default"]
    );
    // No alertname at all: the root receiver.
    assert_eq!(r(json!({"alertState": "ALERT"})), ["hook_default"]);
}
