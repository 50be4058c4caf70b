//! `group by <fields> wait <d> every <d> repeat <d>`: Alertmanager's grouping, durable,
//! with Alertmanager's webhook as the notification (docs/state.md, "Grouping").

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::data::DataDir;
use support::receiver::Receiver;
use switchyard::state::VerdictKind;
use switchyard::{Alert, Format, Router, RuleSet, State};

fn rules(text: &str) -> RuleSet {
    RuleSet::from_files([("g.rules", text)]).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.diagnostics()
                .map(|d| d.render(Format::Text))
                .unwrap_or_default()
        )
    })
}

async fn router(set: RuleSet, dir: &DataDir) -> Router {
    Router::builder()
        .rules(set)
        .data_dir(&dir.0)
        .build()
        .await
        .unwrap()
}

fn alert(name: &str, cluster: &str, state: State) -> Alert {
    Alert::new(json!({
        "labels": {"alertname": name, "cluster": cluster, "severity": "critical"},
        "annotations": {"summary": format!("{name} in {cluster}"), "runbook": "https://x.test/rb"},
        "startsAt": "2026-11-29T10:00:00Z",
    }))
    .with_id(format!("{name}-{cluster}"))
    .with_name(name)
    .with_state(state)
}

fn bodies(rx: &Receiver, path: &str) -> Vec<Value> {
    rx.received()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect()
}

fn names(body: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap().to_owned(),
                a["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_group_is_notified_once_after_its_wait_as_an_alertmanager_webhook() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("groups-webhook");
    let set = rules(&format!(
        r#"target pager {{ url = "{}" }}
        target chat {{ url = "{}" body = {{ "cluster": groupLabels.cluster, "status": status, "first": alerts[0].labels.alertname }} }}
        rule "cluster pages" when labels.severity == "critical"
            -> post pager, post chat, group by labels.cluster wait 1s every 2s"#,
        rx.url("/pager"),
        rx.url("/chat")
    ));
    let r = router(set, &dir).await;
    let started = Instant::now();
    let s = r
        .submit(&alert("NodeDown", "eu", State::Firing))
        .await
        .unwrap();
    assert!(
        matches!(&s.verdicts[0].kind, VerdictKind::Grouped { members: 1, .. }),
        "{:?}",
        s.verdicts
    );
    assert!(
        s.verdicts[0]
            .to_string()
            .contains(r#"grouped into {"cluster":"eu"} (1 alert(s))"#),
        "{}",
        s.verdicts[0]
    );
    r.submit(&alert("DiskFull", "eu", State::Firing))
        .await
        .unwrap();
    r.submit(&alert("NodeDown", "us", State::Firing))
        .await
        .unwrap();
    let got = rx.wait_for("/pager", 2, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the wait: {:?}",
        started.elapsed()
    );
    assert_eq!(got.len(), 2, "one notification per group");
    let pager = bodies(&rx, "/pager");
    let eu = pager
        .iter()
        .find(|b| b["groupLabels"]["cluster"] == "eu")
        .unwrap();
    assert_eq!(eu["version"], "4");
    assert_eq!(eu["status"], "firing");
    assert_eq!(eu["receiver"], "pager");
    assert_eq!(eu["truncatedAlerts"], 0);
    assert_eq!(eu["externalURL"], "");
    assert!(
        eu["groupKey"].as_str().unwrap().contains(r#"cluster="eu""#),
        "{eu}"
    );
    assert_eq!(
        eu["commonLabels"],
        json!({"cluster": "eu", "severity": "critical"})
    );
    assert_eq!(
        eu["commonAnnotations"],
        json!({"runbook": "https://x.test/rb"})
    );
    assert_eq!(
        names(eu),
        [
            (String::from("DiskFull"), String::from("firing")),
            (String::from("NodeDown"), String::from("firing"))
        ]
    );
    let member = &eu["alerts"][0];
    for field in [
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    ] {
        assert!(member.get(field).is_some(), "{field} in {member}");
    }
    assert_eq!(member["startsAt"], "2026-11-29T10:00:00Z");
    assert_eq!(member["endsAt"], "0001-01-01T00:00:00Z");
    // A body template reads the group.
    rx.wait_for("/chat", 2, Duration::from_secs(10)).await;
    let chat = bodies(&rx, "/chat");
    assert!(
        chat.iter()
            .any(|b| b["cluster"] == "eu" && b["status"] == "firing"),
        "{chat:?}"
    );

    // A resolution: the next flush says it, with the members still firing; then the group
    // holds only what fires.
    r.submit(&alert("DiskFull", "eu", State::Resolved))
        .await
        .unwrap();
    rx.wait_for("/pager", 3, Duration::from_secs(10)).await;
    let pager = bodies(&rx, "/pager");
    assert_eq!(pager.len(), 3, "{pager:?}");
    assert_eq!(
        names(&pager[2]),
        [
            (String::from("DiskFull"), String::from("resolved")),
            (String::from("NodeDown"), String::from("firing"))
        ]
    );
    // Nothing changed since: no notification at the next flush (the repeat is 4h).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(bodies(&rx, "/pager").len(), 3);
    // Everything resolves: one last notification, status resolved; then the group ends.
    r.submit(&alert("NodeDown", "eu", State::Resolved))
        .await
        .unwrap();
    r.submit(&alert("NodeDown", "us", State::Resolved))
        .await
        .unwrap();
    rx.wait_for("/pager", 5, Duration::from_secs(10)).await;
    let pager = bodies(&rx, "/pager");
    assert_eq!(pager.len(), 5, "{pager:?}");
    assert!(
        pager[3..].iter().all(|b| b["status"] == "resolved"),
        "{pager:?}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        bodies(&rx, "/pager").len(),
        5,
        "an ended group says nothing more"
    );
    assert!(
        r.state_list(100)
            .await
            .unwrap()
            .iter()
            .all(|e| e.kind != "group"),
        "no group is left"
    );
}

#[tokio::test]
async fn a_resolution_of_an_alert_never_notified_is_not_sent() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("groups-unannounced");
    let set = rules(&format!(
        r#"target pager {{ url = "{}" }}
        rule "cluster pages" when labels.severity == "critical"
            -> post pager, group by labels.cluster wait 1s every 1s"#,
        rx.url("/pager")
    ));
    let r = router(set, &dir).await;
    r.submit(&alert("Blip", "eu", State::Firing)).await.unwrap();
    r.submit(&alert("Blip", "eu", State::Resolved))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        bodies(&rx, "/pager").is_empty(),
        "fired and resolved within the wait: nothing"
    );
}

#[test]
fn group_timers_are_checked_and_a_rounded_repeat_is_named() {
    let set = rules(
        r#"target pager { url = "https://x.test/p" }
        rule "g" when a == 1 -> post pager, group by labels.cluster wait 30s every 7m repeat 4h"#,
    );
    let text = set.warnings().render(Format::Text);
    assert!(
        text.contains("warning[W0403]: reminders go every 245m, not 4h"),
        "{text}"
    );
    for (clause, message) in [
        (
            "group wait 30s every 0s",
            "a group's `every` takes from 1s to 7d",
        ),
        (
            "group wait 30s every 5m repeat 1m",
            "a group's `repeat` takes from its `every` to 7d",
        ),
        (
            "group wait 8d every 5m",
            "a group's `wait` takes from 0s to 7d",
        ),
        (
            "group wait 1s every 5m, dedup for 1h",
            "`group` does not combine with `dedup`",
        ),
        (
            "group wait 1s every 5m, resolve once",
            "`group` does not combine with `resolve once`",
        ),
    ] {
        let e = RuleSet::from_files([(
            "g.rules",
            format!("target pager {{ url = \"https://x.test/p\" }}\nrule \"g\" when a == 1 -> post pager, {clause}"),
        )])
        .unwrap_err();
        let text = e.diagnostics().unwrap().render(Format::Text);
        assert!(text.contains(message), "{clause}: {text}");
        assert!(text.contains("E0402"), "{clause}: {text}");
    }
}
