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

/// Inhibition is decided when a delivery would be made: a firing held by `delay` (or by a
/// silence) is checked again when it is due, against the sources firing then.
#[test]
fn a_held_warning_is_kept_out_when_a_critical_fires_before_it_is_due() {
    let set = RuleSet::from_files([(
        "h.rules",
        format!(
            r#"target chat {{ url = "https://x.test/chat" }}
target pager {{ url = "https://x.test/pager" }}
rule "pages" when labels.severity == "critical" -> post pager
rule "chat waits" when labels.severity == "warning" -> post chat, delay 5m unless resolved
{INHIBIT}
test "a critical during the delay keeps the warning out" {{
    source prometheus
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "eu" }} }}]
    expect held chat
    after 1m
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical", "cluster": "eu" }} }}]
    expect post pager
    after 5m
    expect no post chat
}}

test "a critical that resolved before the delay ends keeps nothing out" {{
    source prometheus
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "eu" }} }}]
    after 1m
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical", "cluster": "eu" }} }}]
    after 1m
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical", "cluster": "eu" }}, "endsAt": "${{now}}" }}]
    after 4m
    expect post chat
}}

test "a critical of another cluster keeps nothing out" {{
    source prometheus
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "eu" }} }}]
    after 1m
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical", "cluster": "us" }} }}]
    after 5m
    expect post chat
}}

test "a firing held by a silence is checked when the silence ends" {{
    source prometheus
    silence "labels.alertname == \"DiskSlow\"" for 10m
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "eu" }} }}]
    expect silenced chat
    after 6m
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical", "cluster": "eu" }} }}]
    after 5m
    expect no post chat
}}
"#
        ),
    )])
    .unwrap();
    let report = set.run_tests();
    assert_eq!(report.failed(), 0, "{report}");
}

/// A firing held by `delay` is checked against the inhibits when its delay ends, by the
/// router that sends it: a critical that fired meanwhile keeps it out, also when the
/// router restarted in between (the check is stored with the held delivery).
#[tokio::test]
async fn a_delayed_warning_is_kept_out_when_a_critical_fires_during_its_delay_across_a_restart() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("inhibit-held");
    let text = format!(
        r#"target chat {{ url = "{}" }}
target pager {{ url = "{}" }}
rule "pages" when labels.severity == "critical" -> post pager
rule "chat waits" when labels.severity == "warning" -> post chat, delay 3s unless resolved
{INHIBIT}"#,
        rx.url("/chat"),
        rx.url("/pager")
    );
    let build = || async {
        Router::builder()
            .rules(RuleSet::from_files([("h.rules", text.clone())]).unwrap())
            .data_dir(&dir.0)
            .build()
            .await
            .unwrap()
    };
    let started = std::time::Instant::now();
    {
        let r = build().await;
        for cluster in ["eu", "us"] {
            let s = r
                .submit(
                    &alert("DiskSlow", "warning", Some(cluster), State::Firing).with_id(cluster),
                )
                .await
                .unwrap();
            assert!(
                matches!(&s.verdicts[..], [v] if matches!(v.kind, VerdictKind::Held { .. })),
                "{:?}",
                s.verdicts
            );
        }
        r.submit(&alert("NodeDown", "critical", Some("eu"), State::Firing))
            .await
            .unwrap();
        rx.wait_for("/pager", 1, Duration::from_secs(10)).await;
        r.shutdown(Duration::from_secs(2)).await;
    }
    let restarted_in_time = started.elapsed() < Duration::from_secs(3);
    let r = build().await;
    let got = rx.wait_for("/chat", 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].body.contains(r#""us""#), "{}", got[0].body);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not before its delay ended"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rx.count("/chat"),
        1,
        "the warning in the critical's cluster is kept out"
    );
    if restarted_in_time {
        let metrics = r.metrics_text();
        for line in [
            r#"switchyard_deliveries_total{target="chat",outcome="inhibited"} 1"#,
            r#"switchyard_deliveries_suppressed_total{rule="chat waits",reason="inhibited"} 1"#,
        ] {
            assert!(metrics.contains(line), "{line}\n{metrics}");
        }
    }
    r.shutdown(Duration::from_secs(2)).await;
}

/// A held firing kept out when due leaves no note behind, as one kept out on arrival:
/// `resolve once` owes its resolution nothing, and `dedup` does not measure the next
/// re-send against a delivery that never went.
#[test]
fn a_held_firing_kept_out_when_due_is_owed_no_resolution_and_its_resend_goes_later() {
    let set = RuleSet::from_files([(
        "h.rules",
        format!(
            r#"target chat {{ url = "https://x.test/chat" }}
target pager {{ url = "https://x.test/pager" }}
rule "pages" when labels.severity == "critical" -> post pager
rule "chat waits" when labels.severity == "warning"
  -> post chat, delay 5m unless resolved, dedup until resolved, resolve once
{INHIBIT}
test "its re-send after the critical is held anew, then goes" {{
    source prometheus
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "eu" }} }}]
    expect held chat
    after 1m
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical", "cluster": "eu" }} }}]
    after 5m
    expect no post chat
    after 1m
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical", "cluster": "eu" }}, "endsAt": "${{now}}" }}]
    after 1m
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "eu" }} }}]
    expect held chat
    after 5m
    expect post chat
}}

test "its resolution is owed nothing" {{
    source prometheus
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "eu" }} }}]
    after 1m
    alert [{{ "labels": {{ "alertname": "NodeDown", "severity": "critical", "cluster": "eu" }} }}]
    after 5m
    expect no post chat
    after 1m
    alert [{{ "labels": {{ "alertname": "DiskSlow", "severity": "warning", "cluster": "eu" }}, "endsAt": "${{now}}" }}]
    expect no post chat
}}
"#
        ),
    )])
    .unwrap();
    let report = set.run_tests();
    assert_eq!(report.failed(), 0, "{report}");
}
