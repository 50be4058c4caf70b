//! The indexed evaluation (`evaluate`: index, per-alert field cache, shared-test memo)
//! gives exactly the decision of the plain rule-by-rule scan (`evaluate_unindexed`) on
//! random rule sets and random alerts: same rules fired, same targets in the same order,
//! same `drop`. Also the index's reading of regexes as lists of strings.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::check::regex_literals;
use crate::{Alert, RuleSet};

const FIELDS: [&str; 7] = ["a", "b", "c", "a[*]", "d.e", "@name", "@state"];
const LITERALS: [&str; 12] = [
    "\"x\"", "\"y\"", "\"95\"", "95", "3", "3.0", "-0", "0", "true", "false", "null", "\"3\"",
];
const REGEXES: [&str; 7] = [
    "/^(?:x|y)$/",
    "/^9(5|6)$/",
    "/^x$/i",
    "/^x/",
    "/y/",
    "/^(?:generic|alibaba)$/",
    "/^$/",
];

fn test() -> impl Strategy<Value = String> {
    let field = prop::sample::select(FIELDS.to_vec());
    let lit = prop::sample::select(LITERALS.to_vec());
    let num = prop::sample::select(vec!["3", "95", "0", "-1"]);
    prop_oneof![
        (field.clone(), lit.clone()).prop_map(|(f, l)| format!("{f} == {l}")),
        (field.clone(), lit.clone()).prop_map(|(f, l)| format!("{f} != {l}")),
        (field.clone(), prop::collection::vec(lit.clone(), 0..4))
            .prop_map(|(f, l)| format!("{f} in [{}]", l.join(", "))),
        (field.clone(), prop::collection::vec(lit, 0..3))
            .prop_map(|(f, l)| format!("{f} not in [{}]", l.join(", "))),
        (field.clone(), prop::sample::select(REGEXES.to_vec()))
            .prop_map(|(f, r)| format!("{f} =~ {r}")),
        (field.clone(), prop::sample::select(REGEXES.to_vec()))
            .prop_map(|(f, r)| format!("{f} !~ {r}")),
        (field.clone(), num).prop_map(|(f, n)| format!("{f} > {n}")),
        field.prop_map(|f| format!("exists({f})")),
    ]
}

/// Mostly what real rules look like (one test, or an `and` of tests, which the index
/// serves), with arbitrary nesting for the rest.
fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => test(),
        3 => prop::collection::vec(test(), 2..4).prop_map(|c| c.join(" and ")),
        1 => prop::collection::vec(test(), 2..3).prop_map(|c| c.join(" or ")),
        2 => nested(),
    ]
}

fn nested() -> impl Strategy<Value = String> {
    test().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4)
                .prop_map(|c| format!("({})", c.join(" and "))),
            prop::collection::vec(inner.clone(), 2..4)
                .prop_map(|c| format!("({})", c.join(" or "))),
            inner.prop_map(|c| format!("not ({c})")),
        ]
    })
}

fn rule() -> impl Strategy<Value = String> {
    (
        condition(),
        0usize..4,
        prop::sample::select(vec!["", ", stop", ", drop", "", ""]),
    )
        .prop_map(|(c, t, end)| format!("when {c} -> post t{t}{end}"))
}

fn rule_set() -> impl Strategy<Value = String> {
    prop::collection::vec(rule(), 1..24).prop_map(|rules| {
        let mut text = String::new();
        for t in 0..4 {
            text.push_str(&format!("target t{t} {{ url = \"https://x.test/{t}\" }}\n"));
        }
        for r in rules {
            text.push_str(&r);
            text.push('\n');
        }
        text
    })
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "x", "y", "X", "95", "96", "3", "3.0", "0", "-0", "", "abc"
        ])
        .prop_map(|s| json!(s)),
        prop::sample::select(vec![
            json!(3),
            json!(3.0),
            json!(95),
            json!(0),
            json!(-0.0),
            json!(-1)
        ]),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
}

fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => scalar(),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
        1 => scalar().prop_map(|v| json!({ "e": v })),
    ]
}

fn alert() -> impl Strategy<Value = Value> {
    prop::collection::vec(prop::option::weighted(0.8, field_value()), 4).prop_map(|vs| {
        Value::Object(
            ["a", "b", "c", "d"]
                .into_iter()
                .zip(vs)
                .filter_map(|(k, v)| Some((k.to_owned(), v?)))
                .collect(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn indexed_and_plain_evaluation_agree(
        text in rule_set(),
        bodies in prop::collection::vec(alert(), 1..8),
    ) {
        let set = RuleSet::from_files([("p.rules", text.as_str())]);
        prop_assert!(set.is_ok(), "{:?}", set.err());
        let Ok(set) = set else { return Ok(()) };
        for body in bodies {
            for source in ["generic", "alibaba"] {
                let mut body = body.clone();
                if source == "alibaba" {
                    body["alertState"] = json!("ALARM");
                }
                let alert = if source == "generic" {
                    Alert::new(body.clone())
                } else {
                    Alert::new(body.clone()).with_source(crate::alert::Source::Alibaba)
                };
                let indexed = set.evaluate(&alert).summary();
                let plain = set.evaluate_unindexed(&alert).summary();
                prop_assert_eq!(&indexed, &plain, "rules:\n{}\nalert: {}", text, body);
                prop_assert_eq!(set.explain(&alert).decision, plain);
            }
        }
    }
}

#[test]
fn the_benchmark_shapes_are_indexed() {
    let mut text = String::from("target t { url = \"https://x.test/\" }\n");
    for i in 0..100 {
        text.push_str(&format!(
            "when metricName == \"metric_{i}\" and alertState == \"ALARM\" and curValue > {} -> post t\n",
            i % 100
        ));
        // Alertmanager's four matcher shapes (benches/load/hook.sh).
        text.push_str(&format!(
            "when alertState =~ /^(?:ALERT|CRITICAL)$/ and alertname == \"Rule_{i}\" and metricName =~ /^(?:cpu_.*|memory_.*)$/ -> post t, stop\n\
             when alertState == \"ALERT\" and alertname == \"Rule_{i}\" -> post t, stop\n\
             when alertState != \"OK\" and alertname =~ /^(?:Rule_{i}|RuleAlt_{i})$/ and metricName =~ /^(?:cpu_.*)$/ -> post t, stop\n\
             when alertState =~ /^(?:ALERT|WARN)$/ and alertname == \"Rule_{i}\" and metricName !~ /^(?:test_.*)$/ -> post t, stop\n"
        ));
    }
    let set = RuleSet::from_files([("b.rules", text.as_str())]).unwrap();
    assert_eq!(set.indexed_rule_count(), set.rule_count());
    let alert = Alert::new(
        json!({"alertname": "Rule_7", "alertState": "ALERT", "metricName": "cpu_usage"}),
    );
    let d = set.evaluate(&alert).summary();
    assert_eq!(d, set.evaluate_unindexed(&alert).summary());
    assert_eq!(d.rules, ["b.rules:38"]);
}

#[test]
fn numbers_and_numeric_strings_meet_in_the_index() {
    let set = RuleSet::from_files([(
        "n.rules",
        "target t { url = \"https://x.test/\" }\nwhen a == 95 -> post t\nwhen b == \"3\" -> post t\nwhen c in [1, \"2\"] or c == 3.5 -> post t\n",
    )])
    .unwrap();
    assert_eq!(set.indexed_rule_count(), 3);
    for (body, fired) in [
        (json!({"a": "95"}), 1),
        (json!({"a": "95.0"}), 1),
        (json!({"a": 95.0}), 1),
        (json!({"a": "095"}), 1),
        (json!({"a": "95x"}), 0),
        (json!({"b": 3}), 1),
        (json!({"b": "3"}), 1),
        (json!({"b": "3.0"}), 0),
        (json!({"c": "1"}), 1),
        (json!({"c": 2}), 1),
        (json!({"c": "3.5"}), 1),
        (json!({"c": [7, 3.5]}), 0),
    ] {
        let alert = Alert::new(body.clone());
        let plain = set.evaluate_unindexed(&alert).summary();
        assert_eq!(plain.rules.len(), fired, "{body}");
        assert_eq!(set.evaluate(&alert).summary(), plain, "{body}");
    }
}

// The index's reading of regexes as lists of strings.

#[test]
fn anchored_alternations_are_lists() {
    let mut l = regex_literals("^(?:Rule_1|RuleAlt_1)$", "").unwrap_or_default();
    l.sort();
    assert_eq!(l, ["RuleAlt_1", "Rule_1"]);
    let mut l = regex_literals("^cpu_(user|sys)$", "").unwrap_or_default();
    l.sort();
    assert_eq!(l, ["cpu_sys", "cpu_user"]);
    // Case-insensitive `k` also matches the Kelvin sign: 2 x 3 spellings.
    let l = regex_literals("^ok$", "i").unwrap_or_default();
    assert_eq!(l.len(), 6);
    assert!(l.iter().any(|w| w == "OK") && l.iter().any(|w| w == "ok"));
    assert_eq!(regex_literals("^$", ""), Some(vec![String::new()]));
}

#[test]
fn other_regexes_are_not() {
    for (p, f) in [
        ("cpu", ""),
        ("^cpu", ""),
        ("cpu$", ""),
        ("^cpu_.*$", ""),
        ("^a$|^b$", ""),
        ("^a$", "m"),
        ("^[a-z]$", ""),
        ("^(a|b|c|d|e|f|g|h)(a|b|c|d|e|f|g|h)(a|b|c|d|e|f|g|h)$", ""),
    ] {
        assert_eq!(regex_literals(p, f), None, "{p} /{f}");
    }
}
