//! `window` declarations and `during`: decided at the moment the alert was received, on the
//! wall clock of the window's zone (docs/language.md, "Windows").

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use switchyard::{Alert, RuleSet, Source, adapt_json_at};

const RULES: &str = r#"
target chat  { url = "https://x.test/chat" }
target pager { url = "https://x.test/pager" }
target other { url = "https://x.test/other" }
window business = mon-fri 09:00-18:00 Europe/Berlin
window night    = daily 22:00-06:00 Europe/Berlin
window holidays = 2026-12-24 .. 2026-12-26 Europe/Berlin
rule "office" when severity == "warning" and during business and not during holidays -> post chat
rule "night" when severity == "critical" and during night -> post pager
rule "day" when severity == "critical" and not during night -> post chat
when team == "x" -> post other
"#;

fn rules() -> RuleSet {
    RuleSet::from_files([("w.rules", RULES)]).unwrap()
}

fn at(moment: &str, body: serde_json::Value) -> Alert {
    Alert::new(body).with_received_at(moment.parse().unwrap())
}

fn targets(set: &RuleSet, alert: &Alert) -> Vec<String> {
    let d = set.evaluate(alert);
    let plain = set.evaluate_unindexed(alert);
    assert_eq!(
        d.summary(),
        plain.summary(),
        "the index agrees with the plain reading"
    );
    d.target_names().map(str::to_owned).collect()
}

#[test]
fn during_is_decided_at_the_moment_the_alert_was_received_in_the_window_zone() {
    let set = rules();
    let warning = json!({"severity": "warning"});
    // Monday 2026-01-05: Berlin is UTC+1. 08:59 and 18:00 local are outside, 09:00 inside.
    for (moment, expected) in [
        ("2026-01-05T07:59:00Z", false),
        ("2026-01-05T08:00:00Z", true),
        ("2026-01-05T16:59:59Z", true),
        ("2026-01-05T17:00:00Z", false),
        // Summer time, UTC+2: the same local hours.
        ("2026-07-06T07:00:00Z", true),
        ("2026-07-06T16:00:00Z", false),
        // Saturday.
        ("2026-01-10T10:00:00Z", false),
        // A weekday inside the holidays.
        ("2026-12-24T10:00:00Z", false),
        ("2026-12-28T10:00:00Z", true),
    ] {
        let got = targets(&set, &at(moment, warning.clone()));
        assert_eq!(
            got.contains(&String::from("chat")),
            expected,
            "{moment}: {got:?}"
        );
    }
}

#[test]
fn a_window_crossing_midnight_holds_on_both_sides_of_it() {
    let set = rules();
    let critical = json!({"severity": "critical"});
    for (moment, expected) in [
        ("2026-01-05T20:59:00Z", "chat"),  // 21:59 Berlin
        ("2026-01-05T21:00:00Z", "pager"), // 22:00
        ("2026-01-05T23:30:00Z", "pager"), // 00:30 the next day
        ("2026-01-06T04:59:00Z", "pager"), // 05:59
        ("2026-01-06T05:00:00Z", "chat"),  // 06:00
    ] {
        assert_eq!(
            targets(&set, &at(moment, critical.clone())),
            [expected],
            "{moment}"
        );
    }
}

#[test]
fn an_adapter_receives_at_the_moment_it_is_given() {
    let moment: jiff::Timestamp = "2026-01-05T21:30:00Z".parse().unwrap();
    let alerts = adapt_json_at(
        Some(Source::Prometheus),
        json!([
            {"labels": {"alertname": "A", "severity": "critical"}, "endsAt": "2026-01-05T21:00:00Z"},
            {"labels": {"alertname": "B", "severity": "critical"}, "endsAt": "2026-01-05T22:00:00Z"}
        ]),
        moment,
    )
    .unwrap();
    assert!(alerts.iter().all(|a| a.received_at() == moment));
    let states: Vec<&str> = alerts.iter().map(|a| a.state().as_str()).collect();
    assert_eq!(
        states,
        ["resolved", "firing"],
        "endsAt is compared with that moment"
    );
}

/// Found by the ingest fuzzer: once alerts carried when they were received, two readings of
/// the same body with `adapt_json` (which reads the clock) were no longer equal. At one
/// moment they are; the moment is all that differs.
#[test]
fn adapting_one_body_at_one_moment_gives_equal_alerts() {
    let body = json!({"alertId": "a", "status": "ALARM"});
    let at: jiff::Timestamp = "2026-01-05T10:00:00Z".parse().unwrap();
    let a = adapt_json_at(Some(Source::Yandex), body.clone(), at).unwrap();
    let b = adapt_json_at(Some(Source::Yandex), body.clone(), at).unwrap();
    assert_eq!(a, b);
    let later = adapt_json_at(
        Some(Source::Yandex),
        body,
        at + jiff::SignedDuration::from_secs(1),
    )
    .unwrap();
    assert_ne!(a, later);
    assert_eq!(
        later[0].clone().with_received_at(at),
        a[0],
        "only the moment differs"
    );
}

#[test]
fn explain_shows_the_moment_on_the_window_clock() {
    let set = rules();
    let e = set.explain(&at("2026-01-05T07:30:00Z", json!({"severity": "warning"})));
    let text = e.to_string();
    assert!(
        text.contains("false  during business  (saw \"Mon 2026-01-05 08:30 Europe/Berlin\")"),
        "{text}"
    );
}

#[test]
fn explain_many_says_why_a_repeat_is_kept_out_and_until_when() {
    let set = RuleSet::from_files([(
        "d.rules",
        r#"target pager { url = "https://x.test/pager" }
           rule "pages" when exists(id) -> post pager, dedup by id for 1h"#,
    )])
    .unwrap();
    let first = at("2026-01-05T10:00:00Z", json!({"id": "x"}));
    let again = at("2026-01-05T10:20:00Z", json!({"id": "x"}));
    let later = at("2026-01-05T11:00:00Z", json!({"id": "x"}));
    let e = set.explain_many(&[first, again, later]);
    assert_eq!(e[0].decision.targets, ["pager"]);
    assert!(e[1].decision.targets.is_empty());
    assert_eq!(
        e[1].verdicts[0].to_string(),
        "rule \"pages\" -> pager: duplicate of delivery 1 at 2026-01-05T10:00:00Z for id=x, window until 2026-01-05T11:00:00Z"
    );
    assert!(
        e[1].to_string()
            .contains("memory: rule \"pages\" -> pager: duplicate of delivery 1")
    );
    assert_eq!(e[2].decision.targets, ["pager"], "the window has ended");
    // One alert alone, and `explain` without memory, say nothing of memory.
    assert!(
        set.explain(&at("2026-01-05T10:00:00Z", json!({"id": "x"})))
            .verdicts
            .is_empty()
    );
}

#[test]
fn explain_many_names_the_throttle_and_its_key() {
    let set = RuleSet::from_files([(
        "t.rules",
        r#"target chat { url = "https://x.test/chat" }
           target digest { url = "https://x.test/digest" }
           rule "team chat" when exists(labels.team) -> post chat, at most 2 per 1m by labels.team else post digest"#,
    )])
    .unwrap();
    let alerts: Vec<Alert> = (0..3)
        .map(|i| {
            at(
                "2026-01-05T10:00:00Z",
                json!({"labels": {"team": "db", "n": i}}),
            )
        })
        .collect();
    let e = set.explain_many(&alerts);
    assert_eq!(e[2].decision.targets, ["digest"]);
    let shown: Vec<String> = e[2].verdicts.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "rule \"team chat\" -> chat: over the limit for labels.team=db, sent to digest instead (delivery 3)"
        ],
        "{shown:?}"
    );
    let v = serde_json::to_value(&e[2].verdicts).unwrap();
    assert_eq!(v[0]["verdict"], "diverted");
    assert_eq!(v[0]["key"], "labels.team=db");
}

#[test]
fn windows_are_listed_in_their_canonical_form() {
    let set = rules();
    let listed: Vec<(String, String)> = set.windows().map(|(n, d)| (n.to_owned(), d)).collect();
    assert_eq!(
        listed,
        [
            (
                "business".to_owned(),
                "mon-fri 09:00-18:00 Europe/Berlin".to_owned()
            ),
            (
                "night".to_owned(),
                "daily 22:00-06:00 Europe/Berlin".to_owned()
            ),
            (
                "holidays".to_owned(),
                "2026-12-24 00:00 .. 2026-12-27 00:00 Europe/Berlin".to_owned()
            ),
        ]
    );
}

#[test]
fn a_window_in_a_file_that_did_not_parse_is_not_reported_unknown_elsewhere() {
    let e = RuleSet::from_files([
        (
            "a.rules",
            "window night = daily 22:00-06:00 UTC\nwhen ( -> drop\n",
        ),
        (
            "b.rules",
            "target t { url = \"https://x.test\" }\nwhen during night -> post t\n",
        ),
    ])
    .unwrap_err();
    let text = e.diagnostics().unwrap().render(switchyard::Format::Text);
    assert!(text.contains("E0101"), "{text}");
    assert!(!text.contains("E0403"), "{text}");
}

/// A step without an alert sees what held deliveries did by its time: a hold during the
/// night goes out at the night's end, not a minute before.
#[test]
fn a_test_step_without_an_alert_sees_a_held_delivery_go_out_when_due() {
    let rules = |first: &str, second: &str| {
        format!(
            r#"target chat {{ url = "https://x.test/chat" }}
               window night = daily 22:00-07:00 Europe/Berlin
               rule "quiet nights" when severity == "warning" -> post chat, hold during night
               test "the morning" {{
                   at 2026-01-05 23:00 Europe/Berlin
                   alert {{ "severity": "warning" }}
                   expect held chat
                   at 2026-01-06 06:59 Europe/Berlin
                   expect {first} chat
                   at 2026-01-06 07:00 Europe/Berlin
                   expect {second} chat
               }}"#
        )
    };
    let report = RuleSet::from_files([("n.rules", rules("no post", "post"))])
        .unwrap()
        .run_tests();
    assert_eq!(report.failed(), 0, "{report}");
    let report = RuleSet::from_files([("n.rules", rules("post", "no post"))])
        .unwrap()
        .run_tests();
    let text = report.to_string();
    assert!(
        text.contains("at 2026-01-06 06:59 Europe/Berlin: expected a held delivery to `chat` to have gone out, but what went out was: nothing"),
        "{text}"
    );
    assert!(
        text.contains("at 2026-01-06 07:00 Europe/Berlin: expected nothing to go out to `chat`, but a held delivery did"),
        "{text}"
    );
}

/// Every alert that asks `during` tries each part of the window: the parts are bounded.
#[test]
fn a_window_of_more_than_100_parts_is_refused_with_its_count() {
    let parts = vec!["mon 09:00-10:00"; 101].join(" or ");
    let text = format!(
        "window many = {parts} UTC\ntarget t {{ url = \"https://x.test\" }}\nwhen during many -> post t\n"
    );
    let e = RuleSet::from_files([("m.rules", text.as_str())]).unwrap_err();
    let shown = e.diagnostics().unwrap().render(switchyard::Format::Text);
    assert!(
        shown.contains("window `many` has 101 parts; the limit is 100"),
        "{shown}"
    );
    let fine = vec!["mon 09:00-10:00"; 100].join(" or ");
    let text = format!(
        "window many = {fine} UTC\ntarget t {{ url = \"https://x.test\" }}\nwhen during many -> post t\n"
    );
    assert!(RuleSet::from_files([("m.rules", text.as_str())]).is_ok());
}
