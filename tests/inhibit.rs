//! `inhibit "name" when <target> while <source> is firing matching <fields>`: an alert is
//! kept out while another, more important one fires with the same values at the matching
//! fields (docs/state.md, "Inhibition").

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::data::DataDir;
use support::receiver::Receiver;
use switchyard::state::VerdictKind;
use switchyard::{Alert, Format, Router, RuleSet, State};

const INHIBIT: &str = r#"
inhibit "warnings under a critical" when labels.severity == "warning"
    while labels.severity == "critical" is firing matching labels.cluster
"#;

fn rules(chat: &str, pager: &str) -> RuleSet {
    RuleSet::from_files([(
        "i.rules",
        format!(
            r#"target chat {{ url = "{chat}" }}
target pager {{ url = "{pager}" }}
rule "pages" when labels.severity == "critical" -> post pager
rule "chat" when labels.severity == "warning" -> post chat, resolve once
{INHIBIT}"#
        ),
    )])
    .unwrap()
}

fn alert(id: &str, severity: &str, cluster: Option<&str>, state: State) -> Alert {
    let mut labels = json!({"alertname": id, "severity": severity});
    if let Some(c) = cluster {
        labels["cluster"] = json!(c);
    }
    Alert::new(json!({"labels": labels}))
        .with_id(id)
        .with_state(state)
}

#[test]
fn test_blocks_prove_an_inhibition_with_a_clock() {
    let text = format!(
        r#"target chat {{ url = "https://x.test/chat" }}
target pager {{ url = "https://x.test/pager" }}
rule "pages" when labels.severity == "critical" -> post pager
rule "chat" when labels.severity == "warning" -> post chat, resolve once
{INHIBIT}
test "a warning waits out a critical in its cluster" {{
    source prometheus
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical", "cluster": "eu" }} }}]
    expect post pager
    after 1m
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "eu" }} }}]
    expect inhibited chat
    expect no post chat
    after 1m
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "us" }} }}]
    expect post chat
    after 1m
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical", "cluster": "eu" }}, "endsAt": "${{now}}" }}]
    after 1m
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "eu" }} }}]
    expect post chat
}}

test "a missing matching field equals nothing" {{
    source prometheus
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical" }} }}]
    after 1m
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning" }} }}]
    expect post chat
}}

test "the resolution of an inhibited warning is owed nothing" {{
    source prometheus
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical", "cluster": "eu" }} }}]
    after 1m
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "eu" }} }}]
    after 1m
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "eu" }}, "endsAt": "${{now}}" }}]
    expect no post chat
}}

test "a wrong expectation fails" {{
    source prometheus
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "eu" }} }}]
    expect inhibited chat
}}
"#
    );
    let set = RuleSet::from_files([("t.rules", text)]).unwrap();
    assert!(
        set.warnings().is_empty(),
        "{}",
        set.warnings().render(Format::Text)
    );
    let report = set.run_tests();
    let failures = support::report::only_failure(&report, "a wrong expectation fails");
    assert!(
        failures[0].contains("expected the delivery to `chat` to be inhibited"),
        "{failures:?}"
    );
}

#[test]
fn explain_says_which_alert_inhibits_and_on_which_values() {
    let set = rules("https://x.test/c", "https://x.test/p");
    let crit = alert("NodeDown", "critical", Some("eu"), State::Firing);
    let warn = alert("DiskSlow", "warning", Some("eu"), State::Firing);
    let explained = set.explain_many(&[crit, warn]);
    let text = explained[1].to_string();
    assert!(
        text.contains(
            r#"inhibited by inhibit "warnings under a critical": alert NodeDown is firing with labels.cluster=eu"#
        ),
        "{text}"
    );
    assert_eq!(
        set.inhibits().collect::<Vec<_>>(),
        [("warnings under a critical", "i.rules:6")]
    );
}

#[test]
fn sides_that_can_match_one_alert_get_a_warning() {
    let set = RuleSet::from_files([(
        "w.rules",
        r#"target chat { url = "https://x.test/c" }
when exists(labels.severity) -> post chat
inhibit "too wide" when labels.team == "db" while labels.severity == "critical" is firing
inhibit "exclusive" when labels.severity in ["warning", "info"] while labels.severity == "critical" is firing
"#,
    )])
    .unwrap();
    let codes: Vec<&str> = set.warnings().iter().map(|d| d.code().as_str()).collect();
    assert_eq!(codes, ["W0402"], "{}", set.warnings().render(Format::Text));
}

#[tokio::test]
async fn a_router_keeps_the_warning_out_and_remembers_the_source_across_a_restart() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("inhibit-router");
    let set = || rules(&rx.url("/chat"), &rx.url("/pager"));
    let build = || async {
        Router::builder()
            .rules(set())
            .data_dir(&dir.0)
            .build()
            .await
            .unwrap()
    };
    {
        let r = build().await;
        r.submit(&alert("NodeDown", "critical", Some("eu"), State::Firing))
            .await
            .unwrap();
        rx.wait_for("/pager", 1, Duration::from_secs(10)).await;
        r.shutdown(Duration::from_secs(2)).await;
    }
    let r = build().await;
    let s = r
        .submit(&alert("DiskSlow", "warning", Some("eu"), State::Firing))
        .await
        .unwrap();
    assert!(
        matches!(&s.verdicts[..], [v] if matches!(&v.kind, VerdictKind::Inhibited { by, .. } if by == "NodeDown")),
        "{:?}",
        s.verdicts
    );
    assert!(s.deliveries.is_empty());
    r.submit(&alert("NodeDown", "critical", Some("eu"), State::Resolved))
        .await
        .unwrap();
    r.submit(&alert("DiskSlow", "warning", Some("eu"), State::Firing))
        .await
        .unwrap();
    rx.wait_for("/chat", 1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count("/chat"), 1, "once the source resolved");
    assert_eq!(rx.count("/pager"), 2, "the critical and its resolution");
    let metrics = r.metrics_text();
    assert!(
        metrics.contains(
            r#"switchyard_deliveries_suppressed_total{rule="chat",reason="inhibited"} 1"#
        ),
        "{metrics}"
    );
}

#[test]
fn a_grouped_target_is_left_out_at_each_flush_while_its_source_fires() {
    let set = RuleSet::from_files([(
        "g.rules",
        format!(
            r#"target chat {{ url = "https://x.test/chat" }}
target pager {{ url = "https://x.test/pager" }}
rule "pages" when labels.severity == "critical" -> post pager
rule "chat groups" when labels.severity == "warning" -> post chat, group by labels.cluster wait 30s every 1m
{INHIBIT}
test "a grouped warning waits out the critical" {{
    source prometheus
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical", "cluster": "eu" }} }}]
    after 1s
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "eu" }} }}]
    expect no post chat
    at 31s
    expect no post chat
    at 40s
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical", "cluster": "eu" }}, "endsAt": "${{now}}" }}]
    at 91s
    expect group chat ["DiskSlow"]
}}

test "a warning of another cluster is notified on time" {{
    source prometheus
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical", "cluster": "eu" }} }}]
    after 1s
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "us" }} }}]
    at 31s
    expect group chat ["DiskSlow"]
}}
"#
        ),
    )])
    .unwrap();
    let report = set.run_tests();
    assert_eq!(report.failed(), 0, "{report}");
}
