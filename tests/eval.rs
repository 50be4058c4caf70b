//! Evaluation, table-driven: (condition, alert) -> fires or not; and whole rule sets ->
//! decisions. DSL.md's "Evaluation" and "Conditions" sections are the contract.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use switchyard::{Alert, DecisionSummary, RuleSet, Source, adapt_json};

const TARGETS: &str = r#"
target a { url = "https://x.test/a" }
target b { url = "https://x.test/b" }
target c { url = "https://x.test/c" }
"#;

fn set(rules: &str) -> RuleSet {
    RuleSet::from_files([("00-targets.rules", TARGETS), ("10-rules.rules", rules)]).unwrap_or_else(
        |e| {
            panic!(
                "{}\n{}",
                rules,
                e.diagnostics()
                    .map(|d| d.render(switchyard::Format::Text))
                    .unwrap_or_default()
            )
        },
    )
}

fn fires(condition: &str, alert: &Value) -> bool {
    let set = set(&format!("when {condition} -> post a"));
    !set.evaluate(&Alert::new(alert.clone())).unrouted()
}

fn decide(rules: &str, alert: Value) -> DecisionSummary {
    set(rules).evaluate(&Alert::new(alert)).summary()
}

/// Alibaba's sample alert: every value a string.
fn alibaba() -> Value {
    json!({
        "userId": "12345", "alertName": "putNewAlarm_group", "timestamp": "1508136760",
        "alertState": "ALARM", "dimensions": [{"userId": "12345", "instanceId": "i-12345"}],
        "expression": "$Average>90", "curValue": "95", "metricName": "CPUUtilization",
        "metricProject": "acs_ecs_dashboard", "count": 3, "ratio": 0.5, "enabled": true, "nothing": null,
        "tags": ["prod", "web"], "labels": {"severity": "critical", "app.kubernetes.io/name": "api", "in": "kw"},
        "big": 12345678901234567890u64
    })
}

#[test]
fn every_operator() {
    let al = alibaba();
    let cases: &[(&str, bool)] = &[
        // == and !=
        (r#"alertState == "ALARM""#, true),
        (r#"alertState == "OK""#, false),
        (r#"alertState != "OK""#, true),
        (r#"alertState != "ALARM""#, false),
        ("enabled == true", true),
        ("enabled == false", false),
        ("nothing == null", true),
        ("nothing != null", false),
        ("count == 3", true),
        ("count == 3.0", true),
        ("ratio == 0.5", true),
        ("big == 12345678901234567890", true),
        ("big == 12345678901234567891", false),
        // numeric strings compare as numbers against numbers
        ("curValue == 95", true),
        ("curValue == 95.0", true),
        (r#"curValue == "95""#, true),
        (r#"curValue == "95.0""#, false),
        (r#"count == "3""#, true),
        // ordering
        ("curValue > 90", true),
        ("curValue >= 95", true),
        ("curValue > 95", false),
        ("curValue < 100", true),
        ("curValue <= 94.99", false),
        ("count < 4", true),
        ("ratio > 0.25", true),
        ("alertState > 1", false),
        ("alertState < 1", false),
        ("enabled > 0", false),
        // regex
        ("metricName =~ /^CPU/", true),
        ("metricName =~ /^cpu/", false),
        ("metricName =~ /^cpu/i", true),
        (r#"metricName =~ "Util""#, true),
        ("metricName !~ /^disk_/", true),
        ("metricName !~ /CPU/", false),
        ("count =~ /^3$/", true),
        ("enabled =~ /true/", false),
        ("expression =~ /\\$Average>9\\d/", true),
        // in
        (r#"alertState in ["ALARM", "ALERT"]"#, true),
        (r#"alertState in ["OK"]"#, false),
        (r#"alertState not in ["OK", "INSUFFICIENT_DATA"]"#, true),
        (r#"alertState not in ["ALARM"]"#, false),
        ("curValue in [94, 95]", true),
        ("count in [1, 2, 3]", true),
        ("alertState in []", false),
        ("alertState not in []", true),
        // contains, starts_with, ends_with
        (r#"alertName contains "Alarm""#, true),
        (r#"alertName contains "alarm""#, false),
        (r#"tags contains "web""#, true),
        (r#"tags contains "db""#, false),
        (r#"alertName starts_with "putNew""#, true),
        (r#"alertName ends_with "_group""#, true),
        (r#"alertName ends_with "put""#, false),
        (r#"count contains "3""#, false),
        // exists
        ("exists(alertState)", true),
        ("exists(nothing)", true),
        ("exists(missing)", false),
        ("exists(labels.severity)", true),
        ("exists(labels.team)", false),
        ("exists(dimensions[0].instanceId)", true),
        ("exists(dimensions[1].instanceId)", false),
        // paths
        (r#"labels.severity == "critical""#, true),
        (r#"labels."app.kubernetes.io/name" == "api""#, true),
        (r#"labels.in == "kw""#, true),
        (r#"dimensions[0].instanceId == "i-12345""#, true),
        (r#"dimensions[*].instanceId == "i-12345""#, true),
        (r#"dimensions[*].instanceId == "i-99""#, false),
        (r#"tags[1] == "web""#, true),
        (r#"tags[*] == "prod""#, true),
        (r#"labels[*] == "api""#, true),
        (r#"alertState.deeper == "x""#, false),
        (r#"tags.first == "x""#, false),
    ];
    let mut failed = Vec::new();
    for (cond, expected) in cases {
        if fires(cond, &al) != *expected {
            failed.push(format!("{cond}: expected {expected}"));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn missing_fields_are_false_and_negations_true() {
    let al = json!({"present": "x"});
    for positive in [
        r#"missing == "x""#,
        "missing == null",
        "missing > 1",
        "missing < 1",
        "missing =~ /x/",
        r#"missing in ["x"]"#,
        r#"missing contains "x""#,
        r#"missing starts_with "x""#,
        "exists(missing)",
        r#"present.deeper == "x""#,
        r#"list[*] == "x""#,
    ] {
        assert!(!fires(positive, &al), "{positive} holds on a missing field");
    }
    for negative in [
        r#"missing != "x""#,
        "missing != null",
        "missing !~ /x/",
        r#"missing not in ["x"]"#,
        "not exists(missing)",
    ] {
        assert!(
            fires(negative, &al),
            "{negative} is not the opposite of its positive"
        );
    }
}

#[test]
fn negations_are_exact_opposites() {
    let alerts = [
        alibaba(),
        json!({}),
        json!({"a": null}),
        json!({"a": "x"}),
        json!({"a": "95"}),
        json!({"a": 95}),
        json!({"a": ["x", "y"]}),
        json!({"a": {"b": "x"}}),
        json!({"a": [{"b": "x"}, {"b": "y"}]}),
        json!({"a": [{"b": "z"}]}),
    ];
    let pairs = [
        (r#"a == "x""#, r#"a != "x""#),
        ("a == 95", "a != 95"),
        ("a == null", "a != null"),
        ("a =~ /x/", "a !~ /x/"),
        (r#"a in ["x", 95]"#, r#"a not in ["x", 95]"#),
        (r#"a[*].b == "x""#, r#"a[*].b != "x""#),
        (r#"a[*] in ["y"]"#, r#"a[*] not in ["y"]"#),
    ];
    for al in &alerts {
        for (pos, neg) in pairs {
            let p = fires(pos, al);
            assert_eq!(fires(neg, al), !p, "{neg} on {al}");
            assert_eq!(
                fires(&format!("not ({pos})"), al),
                !p,
                "not ({pos}) on {al}"
            );
        }
    }
}

#[test]
fn precedence_not_and_or() {
    let al = json!({"a": 1, "b": 2, "c": 3});
    let cases: &[(&str, bool)] = &[
        // `and` binds tighter than `or`
        ("a == 1 or b == 0 and c == 0", true),
        ("(a == 1 or b == 0) and c == 0", false),
        ("a == 0 and b == 2 or c == 3", true),
        ("a == 0 and (b == 2 or c == 3)", false),
        // `not` binds tighter than `and`, looser than a comparison
        ("not a == 0 and b == 2", true),
        ("not a == 1 and b == 2", false),
        ("not (a == 1 and b == 0)", true),
        ("not not a == 1", true),
        ("not a == 1 or b == 2", true),
        ("a == 1 and b == 2 and c == 3", true),
        ("a == 0 or b == 0 or c == 3", true),
    ];
    for (cond, expected) in cases {
        assert_eq!(fires(cond, &al), *expected, "{cond}");
    }
}

#[test]
fn all_match_in_order_with_dedup() {
    let rules = r#"
        when x == 1 -> post a
        when y == 2 -> post b, post a
        when z == 3 -> post c
    "#;
    let d = decide(rules, json!({"x": 1, "y": 2, "z": 3}));
    assert_eq!(d.targets, ["a", "b", "c"]);
    assert_eq!(
        d.rules,
        ["10-rules.rules:2", "10-rules.rules:3", "10-rules.rules:4"]
    );
    assert!(!d.dropped && !d.unrouted);

    let d = decide(rules, json!({"y": 2}));
    assert_eq!(d.targets, ["b", "a"], "delivery order follows the actions");
}

#[test]
fn stop_and_drop() {
    let rules = r#"
        rule "first" when x == 1 -> post a, stop
        rule "dropper" when x == 2 -> post b, drop
        rule "after" when exists(x) -> post c
    "#;
    let d = decide(rules, json!({"x": 1}));
    assert_eq!(
        (d.targets.clone(), d.rules.clone(), d.dropped),
        (vec!["a".to_owned()], vec!["first".to_owned()], false)
    );

    let d = decide(rules, json!({"x": 2}));
    assert_eq!(
        d.targets,
        ["b"],
        "a drop rule's own posts are delivered; nothing after it"
    );
    assert_eq!(d.rules, ["dropper"]);
    assert!(d.dropped && !d.unrouted);

    let d = decide(rules, json!({"x": 3}));
    assert_eq!(d.targets, ["c"]);

    let d = decide(rules, json!({}));
    assert!(d.unrouted && d.targets.is_empty() && d.rules.is_empty());

    // `stop` takes effect after the rule's other actions, wherever it is written.
    let d = decide(
        "when x == 1 -> stop, post a\nwhen x == 1 -> post b",
        json!({"x": 1}),
    );
    assert_eq!(d.targets, ["a"]);
}

#[test]
fn a_rule_that_matches_with_no_posts_is_routed() {
    let d = decide("when x == 1 -> stop", json!({"x": 1}));
    assert!(!d.unrouted && d.targets.is_empty());
    let d = decide("when x == 1 -> drop", json!({"x": 1}));
    assert!(d.dropped && !d.unrouted);
}

#[test]
fn files_load_in_name_order() {
    let dir = tempdir();
    std::fs::write(dir.join("20-late.rules"), "when x == 1 -> post late").unwrap();
    std::fs::write(
        dir.join("00-targets.rules"),
        "target early { url = \"https://x.test/e\" }\ntarget late { url = \"https://x.test/l\" }",
    )
    .unwrap();
    std::fs::write(dir.join("10-early.rules"), "when x == 1 -> post early").unwrap();
    std::fs::write(dir.join("notes.txt"), "when this is not a rules file").unwrap();
    std::fs::write(dir.join(".#10-early.rules"), "editor lock file, ignored").unwrap();
    let set = RuleSet::load_dir(&dir).unwrap();
    let d = set.evaluate(&Alert::new(json!({"x": 1}))).summary();
    assert_eq!(d.targets, ["early", "late"]);
    assert_eq!(d.rules, ["10-early.rules:1", "20-late.rules:1"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn metadata_fields() {
    let set = set(r#"
        when @source == "yandex" and @state == "firing" -> post a
        when @state == "resolved" -> post b
        when @name starts_with "web" and exists(@id) -> post c
    "#);
    let body =
        json!({"alertId": "id1", "alertName": "web-cpu", "folderId": "f", "status": "ALARM"});
    let alert = adapt_json(Some(Source::Yandex), body).unwrap().remove(0);
    assert_eq!(set.evaluate(&alert).summary().targets, ["a", "c"]);
    let ok = adapt_json(
        Some(Source::Yandex),
        json!({"alertId": "id1", "status": "OK"}),
    )
    .unwrap()
    .remove(0);
    assert_eq!(set.evaluate(&ok).summary().targets, ["b"]);
    let generic = Alert::new(json!({"status": "ALARM"}));
    assert!(
        set.evaluate(&generic).unrouted(),
        "a generic alert has no name or id and state `unknown`"
    );
}

#[test]
fn body_templates_render_fields_and_keep_secrets_out_of_display() {
    let set = switchyard::Loader::new()
        .env(|n| (n == "TOKEN").then(|| String::from("s3cret")))
        .from_files([(
            "t.rules",
            r#"target t {
                url = "https://x.test/hook"
                headers = { "Authorization": "Bearer ${env.TOKEN}" }
                body = { "id": alertId, "text": "${alertName} at ${curValue}%", "missing": nope,
                         "nested": [labels.sev, 1, true, null], "token": "${env.TOKEN}", "lit": "$${not}" }
            }
            target raw { url = "https://x.test/raw" }
            when exists(alertId) -> post t, post raw"#,
        )])
        .unwrap();
    let alert = Alert::new(
        json!({"alertId": "a1", "alertName": "cpu", "curValue": 95, "labels": {"sev": "high"}}),
    );
    let t = set.target("t").unwrap();
    assert_eq!(
        t.render_body(&alert),
        json!({"id": "a1", "text": "cpu at 95%", "missing": null, "nested": ["high", 1, true, null], "token": "s3cret", "lit": "${not}"})
    );
    assert_eq!(t.render_body_display(&alert)["token"], "${env.TOKEN}");
    assert_eq!(
        t.headers().collect::<Vec<_>>(),
        [("Authorization", String::from("Bearer s3cret"))]
    );
    assert_eq!(
        t.headers_display().collect::<Vec<_>>(),
        [("Authorization", String::from("Bearer ${env.TOKEN}"))]
    );
    assert_eq!(
        (t.method(), t.timeout().as_secs(), t.retries()),
        ("POST", 5, 3)
    );
    assert_eq!(
        set.target("raw").unwrap().render_body(&alert),
        *alert.body(),
        "no body: the alert as received"
    );
    let explained = serde_json::to_string(&set.explain(&alert)).unwrap();
    assert!(!explained.contains("s3cret"));
}

/// Decisions flow one way: the engine hands a dispatcher each delivery whole (target,
/// fallback chain, rendered body), so dispatch never looks a target up or renders a body.
#[test]
fn deliveries_carry_the_target_the_fallback_chain_and_the_rendered_body() {
    let set = set(
        r#"target pager { url = "http://127.0.0.1:9/p" fallback = chat body = { "v": curValue } }
                     target chat { url = "http://127.0.0.1:9/c" fallback = mail }
                     target mail { url = "http://127.0.0.1:9/m" method = "PUT" }
                     when alertState == "ALARM" -> post pager, post mail"#,
    );
    let alert = Alert::new(alibaba());
    let d = set.evaluate(&alert);
    let deliveries: Vec<_> = d.deliveries(&alert).collect();
    assert_eq!(deliveries.len(), 2);
    let names =
        |ts: &[&switchyard::Target]| ts.iter().map(|t| t.name().to_owned()).collect::<Vec<_>>();
    assert_eq!(deliveries[0].target.name(), "pager");
    assert_eq!(names(&deliveries[0].fallbacks), ["chat", "mail"]);
    assert_eq!(deliveries[0].body, r#"{"v":"95"}"#);
    assert_eq!(
        deliveries[0].shown_body, None,
        "no secret: nothing else to show"
    );
    assert_eq!(
        (deliveries[1].target.name(), deliveries[1].target.method()),
        ("mail", "PUT")
    );
    assert!(deliveries[1].fallbacks.is_empty());
    assert_eq!(
        serde_json::from_str::<Value>(&deliveries[1].body).unwrap(),
        *alert.body(),
        "no body: the alert as received"
    );
}

#[test]
fn explain_shows_each_predicate_and_the_values_seen() {
    let set = set(r#"when alertState == "ALARM" and curValue > 90 -> post a
                     when missing == 1 -> post b"#);
    let e = set.explain(&Alert::new(alibaba()));
    assert_eq!(e.decision.targets, ["a"]);
    assert_eq!(e.rules.len(), 2);
    assert!(e.rules[0].matched && !e.rules[1].matched);
    let c = &e.rules[0].condition;
    assert_eq!(c.kind, "all");
    assert_eq!(c.children[1].text, "curValue > 90");
    assert_eq!(c.children[1].seen, Some(vec![json!("95")]));
    assert_eq!(
        e.rules[1].condition.seen,
        Some(vec![]),
        "a missing field is shown as no value"
    );
    let text = e.to_string();
    assert!(text.contains("curValue > 90  (saw \"95\")"), "{text}");
    assert!(text.contains("field missing"), "{text}");
}

#[test]
fn evaluation_is_deterministic_and_shared_across_threads() {
    let set = set(r#"when metricName =~ /CPU/ -> post a
                     when curValue > 90 -> post b"#);
    let alert = Alert::new(alibaba());
    let first = set.evaluate(&alert).summary();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (set, alert) = (set.clone(), alert.clone());
            std::thread::spawn(move || {
                (0..100)
                    .map(|_| set.evaluate(&alert).summary())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap().iter().all(|d| *d == first));
    }
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-eval-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Regression: found by the parse fuzzer. A literal and an alert value with the same text
/// must be the same number, which needs correctly rounded float parsing on both sides.
#[test]
fn fuzz_the_same_long_decimal_is_equal_in_a_rule_and_an_alert() {
    let alert: Value = serde_json::from_str(r#"{"x": 484444444454444444444846.440}"#).unwrap();
    assert!(fires("x == 484444444454444444444846.440", &alert));
    assert!(fires(
        "x >= 484444444454444444444846.440 and x <= 484444444454444444444846.440",
        &alert
    ));
}

/// Found by a user: explain printed `a and (b or c)` as `a and b or c`, which by the
/// language's precedence is another condition. The trace's text now parses back to a
/// condition that decides every alert as the original does.
#[test]
fn explain_keeps_the_parentheses_that_precedence_needs() {
    let cases = [
        (
            r#"@source == "yandex" and (status == "ALARM" or alertStatus == "ALARM")"#,
            r#"@source == "yandex" and (status == "ALARM" or alertStatus == "ALARM")"#,
        ),
        ("a == 1 or b == 2 and c == 3", "a == 1 or b == 2 and c == 3"),
        (
            "(a == 1 or b == 2) and (c == 3 or d == 4)",
            "(a == 1 or b == 2) and (c == 3 or d == 4)",
        ),
        (
            "not (a == 1 or b == 2) and c == 3",
            "not (a == 1 or b == 2) and c == 3",
        ),
    ];
    let alerts: Vec<Value> = (0..32)
        .map(|bits: u32| {
            let mut m = serde_json::Map::new();
            for (i, k) in ["a", "b", "c", "d", "status"].iter().enumerate() {
                if bits & (1 << i) != 0 {
                    m.insert((*k).to_owned(), json!(i + 1));
                }
            }
            if bits & 16 != 0 {
                m.insert("status".to_owned(), json!("ALARM"));
            }
            Value::Object(m)
        })
        .collect();
    for (condition, expected) in cases {
        let original = set(&format!("when {condition} -> post a"));
        let text = original.explain(&Alert::new(json!({}))).rules[0]
            .condition
            .text
            .clone();
        assert_eq!(text, expected, "{condition}");
        let again = set(&format!("when {text} -> post a"));
        for alert in &alerts {
            let a = Alert::new(alert.clone()).with_source(Source::Yandex);
            assert_eq!(
                original.evaluate(&a).unrouted(),
                again.evaluate(&a).unrouted(),
                "{condition} / {text} on {alert}"
            );
        }
    }
}

/// Found by an attack: the compiler looked regexes up by their literal's place in the
/// checker's table, and a miss silently became a test that never matches. The checked
/// condition now carries its compiled regex, so the miss cannot be written. Regexes at the
/// same place in two files, a pattern shared by several rules, a string used as a regex,
/// and `!~` all match as written.
#[test]
fn every_regex_test_matches_as_written() {
    let set = RuleSet::from_files([
        ("00-targets.rules", TARGETS),
        ("10-a.rules", r#"when name =~ /^db-[0-9]+$/ -> post a"#),
        ("20-b.rules", r#"when name =~ /^web-[0-9]+$/ -> post b"#),
        (
            "30-c.rules",
            r#"when team =~ "^(ops|sre)$" and name !~ /^web-/i and host =~ /^db-[0-9]+$/ -> post c"#,
        ),
    ])
    .unwrap();
    let decide = |v: Value| set.evaluate(&Alert::new(v)).summary().targets;
    assert_eq!(decide(json!({"name": "db-12"})), ["a"]);
    assert_eq!(decide(json!({"name": "web-3"})), ["b"]);
    assert_eq!(decide(json!({"name": "WEB-3"})), Vec::<String>::new());
    assert_eq!(
        decide(json!({"name": "cache", "team": "sre", "host": "db-4"})),
        ["c"]
    );
    assert_eq!(
        decide(json!({"name": "Web-1", "team": "sre", "host": "db-4"})),
        Vec::<String>::new(),
        "!~ with the i flag"
    );
}

/// Tests with a clock: the steps of a test share the rules' memory, each at its time; a
/// failure names the step's time.
#[test]
fn test_blocks_with_a_clock_run_the_steps_through_the_rules_memory() {
    let set = set(r#"target chat { url = "http://127.0.0.1:9/c" }
                     target digest { url = "http://127.0.0.1:9/d" }
                     rule "team chat" when exists(team) -> post chat, at most 2 per 1m by team else post digest
                     test "the third alert of a minute goes to the digest" {
                         alert { "team": "db", "n": 1 }
                         expect post chat
                         after 10s
                         alert { "team": "db", "n": 2 }
                         expect post chat
                         after 10s
                         alert { "team": "db", "n": 3 }
                         expect throttled chat
                         expect post digest
                         at 2m
                         alert { "team": "db", "n": 4 }
                         expect post chat
                     }
                     test "a wrong expectation names its step" {
                         alert { "team": "web" }
                         after 1m
                         alert { "team": "web" }
                         expect throttled chat
                     }"#);
    let report = set.run_tests();
    assert_eq!(report.tests[0].failures, Vec::<String>::new());
    assert_eq!(
        report.tests[1].failures,
        ["at 1m: expected `chat` to be throttled, but the alert was posted to: chat"]
    );
}
