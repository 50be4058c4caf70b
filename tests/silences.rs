//! Silences: an operator's "not now", written as a condition of the rule language. They
//! hold firings (never resolutions) until they end or are expired, then what still fires
//! goes out at once (docs/state.md, "Silences").

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::data::DataDir;
use support::receiver::Receiver;
use switchyard::state::{SilenceStatus, VerdictKind};
use switchyard::{Alert, Format, NewSilence, Router, RuleSet, SilenceError, SilenceMatcher, State};

const WAIT: Duration = Duration::from_secs(10);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn rules(rx: &Receiver) -> RuleSet {
    RuleSet::from_files([(
        "s.rules",
        format!(
            r#"target pager {{ url = "{}" }}
            when severity == "critical" -> post pager"#,
            rx.url("/pager")
        ),
    )])
    .unwrap()
}

async fn router(rules: RuleSet, dir: &DataDir) -> Router {
    Router::builder()
        .rules(rules)
        .data_dir(&dir.0)
        .build()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn firing(id: &str, team: &str) -> Alert {
    Alert::new(json!({"severity": "critical", "team": team, "id": id}))
        .with_id(id)
        .with_state(State::Firing)
}

fn resolved(id: &str, team: &str) -> Alert {
    firing(id, team).with_state(State::Resolved)
}

fn db_silence(lasts: Duration) -> NewSilence {
    NewSilence {
        condition: String::from(r#"team == "db""#),
        starts: None,
        ends: now_ms() + lasts.as_millis() as u64,
        created_by: String::from("alice"),
        comment: String::from("db upgrade"),
    }
}

/// The body's `id` of each delivery that arrived, in order.
fn ids(rx: &Receiver) -> Vec<String> {
    rx.received()
        .iter()
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_silence_condition_is_checked_with_diagnostics_that_point_into_it() {
    let e = SilenceMatcher::compile(r#"team = "db""#).unwrap_err();
    let text = e.render(Format::Text);
    assert!(text.contains("error[E0103]"), "{text}");
    assert!(text.contains("--> silence:1:6"), "{text}");
    assert!(text.contains(r#"1 | team = "db""#), "{text}");

    // A field path that is not one, a regex that does not compile: the rule checks.
    let e = SilenceMatcher::compile(r#"team =~ /(/"#).unwrap_err();
    assert!(e.render(Format::Text).contains("E0303"));

    // More than a condition: an action, a second rule, a declaration.
    for text in [
        "team == \"db\"\n-> drop\nwhen x == 1",
        "team == \"db\" -> post pager\ntarget pager { url = \"http://127.0.0.1:1/\" }\nwhen y == 2",
        "",
        "   ",
    ] {
        let e = SilenceMatcher::compile(text).unwrap_err();
        assert!(
            e.iter()
                .any(|d| d.code().as_str() == "E0407" || d.code().as_str().starts_with("E01")),
            "{text:?}: {}",
            e.render(Format::Text)
        );
    }
    let long = format!("team == \"{}\"", "x".repeat(20_000));
    let e = SilenceMatcher::compile(&long).unwrap_err();
    assert_eq!(e.iter().next().unwrap().code().as_str(), "E0407");

    // A comment at the end does not swallow anything.
    let m = SilenceMatcher::compile("team == \"db\" # the upgrade").unwrap();
    assert!(m.matches(&firing("a", "db")));
    assert!(!m.matches(&firing("a", "web")));
}

/// A silence's condition comes over HTTP and is parsed on a runtime worker's small stack:
/// brackets nested as deep as its length allows are refused by the depth limit, not the
/// stack (pest is built without its own stack probe: Cargo.toml says why).
#[test]
fn a_silence_condition_nested_thousands_deep_is_refused_not_a_stack_overflow() {
    let deep = 8_000;
    let answer = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            let nested = format!("{}team == \"db\"{}", "(".repeat(deep), ")".repeat(deep));
            let e = SilenceMatcher::compile(&nested).unwrap_err();
            e.render(Format::Text)
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(answer.contains("error[E0105]"), "{answer}");
    assert!(
        answer.contains("nested more than 64 levels deep"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_silenced_firing_is_held_and_goes_at_once_when_the_silence_is_expired() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("silence-expire");
    let r = router(rules(&rx), &dir).await;
    let s = r
        .add_silence(db_silence(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(s.id, 1);
    let metrics = r.metrics_text();
    assert!(
        metrics.contains("switchyard_silences_active 1"),
        "{metrics}"
    );
    assert_eq!(s.status(now_ms()), SilenceStatus::Active);

    let held = r.submit(&firing("db-1", "db")).await.unwrap();
    match &held.verdicts[..] {
        [v] => assert!(
            matches!(
                v.kind,
                VerdictKind::Silenced {
                    silence: 1,
                    delivery: Some(_),
                    ..
                }
            ),
            "{v:?}"
        ),
        other => panic!("{other:?}"),
    }
    // A re-send joins the held firing; another team is not silenced.
    let again = r.submit(&firing("db-1", "db")).await.unwrap();
    assert!(matches!(
        again.verdicts[0].kind,
        VerdictKind::Silenced { .. }
    ));
    r.submit(&firing("web-1", "web")).await.unwrap();
    rx.wait_for("/pager", 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ids(&rx), ["web-1"], "the silenced firing waits");

    let expired = r.expire_silence(1).await.unwrap().unwrap();
    assert_eq!(expired.status(now_ms()), SilenceStatus::Expired);
    assert!(expired.expired_at.is_some());
    rx.wait_for("/pager", 2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ids(&rx), ["web-1", "db-1"], "released once, at once");

    // Kept as history; a second expiry changes nothing; an unknown one is None.
    assert_eq!(r.silences().len(), 1);
    assert_eq!(r.expire_silence(1).await.unwrap().unwrap(), expired);
    assert!(r.expire_silence(7).await.unwrap().is_none());
    // After the silence, the next firing goes as usual.
    r.submit(&firing("db-2", "db")).await.unwrap();
    rx.wait_for("/pager", 3, WAIT).await;
    assert_eq!(ids(&rx), ["web-1", "db-1", "db-2"]);
}

#[tokio::test]
async fn a_resolution_during_the_silence_cancels_its_held_firing_and_one_sent_before_still_resolves()
 {
    let rx = Receiver::start().await;
    let dir = DataDir::new("silence-resolve");
    let r = router(rules(&rx), &dir).await;
    // Sent before the silence.
    r.submit(&firing("before", "db")).await.unwrap();
    rx.wait_for("/pager", 1, WAIT).await;
    r.add_silence(db_silence(Duration::from_secs(3600)))
        .await
        .unwrap();

    r.submit(&firing("during", "db")).await.unwrap();
    let cancelled = r.submit(&resolved("during", "db")).await.unwrap();
    assert!(
        matches!(cancelled.verdicts[..], [ref v] if matches!(v.kind, VerdictKind::Cancelled { .. })),
        "{:?}",
        cancelled.verdicts
    );
    // Silences never hold a resolution back.
    r.submit(&resolved("before", "db")).await.unwrap();
    rx.wait_for("/pager", 2, WAIT).await;
    r.expire_silence(1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ids(&rx),
        ["before", "before"],
        "the firing and the resolution of `before`; nothing of `during`"
    );
}

#[tokio::test]
async fn a_silence_ends_on_its_own_and_its_held_firing_goes_then() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("silence-ends");
    let r = router(rules(&rx), &dir).await;
    r.add_silence(db_silence(Duration::from_millis(1500)))
        .await
        .unwrap();
    r.submit(&firing("db-1", "db")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(ids(&rx).is_empty(), "held while the silence lasts");
    rx.wait_for("/pager", 1, WAIT).await;
    assert_eq!(ids(&rx), ["db-1"]);
}

#[tokio::test]
async fn silences_and_what_they_hold_survive_a_restart() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("silence-restart");
    {
        let r = router(rules(&rx), &dir).await;
        r.add_silence(db_silence(Duration::from_secs(3600)))
            .await
            .unwrap();
        r.submit(&firing("db-1", "db")).await.unwrap();
        r.shutdown(Duration::from_secs(2)).await;
    }
    let r = router(rules(&rx), &dir).await;
    let list = r.silences();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].condition, r#"team == "db""#);
    assert_eq!(list[0].created_by, "alice");
    // Still in force after the restart: a resolution cancels the held firing...
    let v = r.submit(&resolved("db-1", "db")).await.unwrap();
    assert!(
        matches!(v.verdicts[0].kind, VerdictKind::Cancelled { .. }),
        "{v:?}"
    );
    // ...and a new firing is held, then released by the expiry.
    r.submit(&firing("db-2", "db")).await.unwrap();
    r.expire_silence(1).await.unwrap();
    rx.wait_for("/pager", 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ids(&rx), ["db-2"]);
}

#[tokio::test]
async fn a_silence_that_is_not_one_is_refused_with_the_reason() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("silence-refused");
    let r = router(rules(&rx), &dir).await;
    let cases: Vec<(NewSilence, &str)> = vec![
        (
            NewSilence {
                ends: now_ms() - 1000,
                ..db_silence(Duration::ZERO)
            },
            "ends before it starts",
        ),
        (
            NewSilence {
                ends: now_ms() + 40 * 86_400_000,
                ..db_silence(Duration::ZERO)
            },
            "at most 35d",
        ),
        (
            NewSilence {
                created_by: String::from(" "),
                ..db_silence(Duration::from_secs(60))
            },
            "`created_by` is empty",
        ),
        (
            NewSilence {
                comment: "x".repeat(5000),
                ..db_silence(Duration::from_secs(60))
            },
            "`comment` is 5000 bytes",
        ),
    ];
    for (new, expected) in cases {
        match r.add_silence(new).await {
            Err(SilenceError::Invalid(why)) => assert!(why.contains(expected), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    match r
        .add_silence(NewSilence {
            condition: String::from("team == db"),
            ..db_silence(Duration::from_secs(60))
        })
        .await
    {
        Err(SilenceError::Condition(d)) => assert!(d.render(Format::Text).contains("E0101")),
        other => panic!("{other:?}"),
    }
    assert!(r.silences().is_empty(), "nothing refused is stored");
}

#[tokio::test]
async fn an_alert_without_an_id_is_dropped_by_a_silence() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("silence-no-id");
    let r = router(rules(&rx), &dir).await;
    r.add_silence(db_silence(Duration::from_secs(3600)))
        .await
        .unwrap();
    let s = r
        .submit(&Alert::new(
            json!({"severity": "critical", "team": "db", "id": "x"}),
        ))
        .await
        .unwrap();
    assert!(
        matches!(
            s.verdicts[0].kind,
            VerdictKind::Silenced { delivery: None, .. }
        ),
        "{s:?}"
    );
    assert!(
        s.verdicts[0]
            .to_string()
            .contains("dropped, the alert has no @id"),
        "{}",
        s.verdicts[0]
    );
    r.expire_silence(1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(ids(&rx).is_empty());
}

#[test]
fn test_blocks_silence_with_a_clock() {
    let set = RuleSet::from_files([(
        "t.rules",
        r#"target pager { url = "https://x.test/pager" }
rule "pages" when labels.severity == "critical" -> post pager

test "held until the silence ends" {
    source prometheus
    silence "labels.team == \"db\"" for 1h
    alert [{ "labels": { "alertname": "A", "severity": "critical", "team": "db" } }]
    expect silenced pager
    expect no post pager
    at 59m
    expect no post pager
    at 1h
    expect post pager
}

test "a resolution while silenced cancels both" {
    source prometheus
    silence "labels.team == \"db\"" for 1h
    alert [{ "labels": { "alertname": "A", "severity": "critical", "team": "db" } }]
    at 10m
    alert [{ "labels": { "alertname": "A", "severity": "critical", "team": "db" }, "endsAt": "${now}" }]
    expect no post pager
    at 1h
    expect no post pager
}

test "a silence added later" {
    source prometheus
    alert [{ "labels": { "alertname": "A", "severity": "critical", "team": "db" } }]
    expect post pager
    at 5m
    silence "labels.team == \"db\"" for 1h
    at 6m
    alert [{ "labels": { "alertname": "A", "severity": "critical", "team": "db" }, "endsAt": "${now}" }]
    expect post pager
}

test "a wrong expectation fails" {
    source prometheus
    silence "labels.team == \"db\"" for 1h
    alert [{ "labels": { "alertname": "A", "severity": "critical", "team": "db" } }]
    expect post pager
}
"#,
    )])
    .unwrap();
    let report = set.run_tests();
    let failures = support::report::only_failure(&report, "a wrong expectation fails");
    assert!(
        failures[0].contains("expected a post to `pager`"),
        "{failures:?}"
    );
}

#[test]
fn a_bad_silence_in_a_test_block_points_into_its_string() {
    let e = RuleSet::from_files([(
        "t.rules",
        "target pager { url = \"https://x.test/p\" }\nwhen a == 1 -> post pager\ntest \"t\" {\n    silence \"team = 1\" for 1h\n    alert { \"a\": 1 }\n    expect post pager\n}\n",
    )])
    .unwrap_err();
    let text = e.diagnostics().unwrap().render(Format::Text);
    assert!(text.contains("error[E0103]"), "{text}");
    assert!(text.contains("--> t.rules:4:19"), "{text}");
}

/// Found in review: expiring a silence that had not started yet left it `pending` (its end
/// was moved to its start, still in the future).
#[tokio::test]
async fn a_pending_silence_expired_early_is_expired_not_pending() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("silence-pending");
    let r = router(rules(&rx), &dir).await;
    let hour = 3_600_000;
    let s = r
        .add_silence(NewSilence {
            starts: Some(now_ms() + hour),
            ends: now_ms() + 2 * hour,
            ..db_silence(Duration::ZERO)
        })
        .await
        .unwrap();
    assert_eq!(s.status(now_ms()), SilenceStatus::Pending);
    let expired = r.expire_silence(s.id).await.unwrap().unwrap();
    assert_eq!(
        expired.status(now_ms()),
        SilenceStatus::Expired,
        "{expired:?}"
    );
    assert!(expired.starts <= expired.ends);
    // It never comes into force.
    let later = r.silences();
    assert_eq!(later[0].status(now_ms() + hour + 1), SilenceStatus::Expired);
}
