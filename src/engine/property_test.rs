//! Properties of evaluation on random alerts: negated operators are exact opposites of
//! the positive ones (`a != x` is `not (a == x)`), and evaluation is deterministic.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::{Alert, RuleSet};

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-200i64..200).prop_map(|n| json!(n)),
        (-200.0f64..200.0).prop_map(|f| json!(f)),
        prop::sample::select(vec!["x", "ALARM", "95", "95.0", "-3", "1e2", "", "abc"])
            .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(vec!["a", "b"]), inner), 0..3).prop_map(
                |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            ),
        ]
    })
}

fn alert() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(vec!["a", "b"]), value()), 0..3)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

const PATHS: [&str; 5] = ["a", "a.b", "a[0]", "a[*]", "a[*].b"];
const SCALARS: [&str; 7] = ["\"x\"", "\"95\"", "95", "-3", "true", "null", "100"];

fn pairs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in PATHS {
        for s in SCALARS {
            out.push((format!("{p} == {s}"), format!("{p} != {s}")));
            out.push((
                format!("{p} in [{s}, \"ALARM\"]"),
                format!("{p} not in [{s}, \"ALARM\"]"),
            ));
        }
        out.push((format!("{p} =~ /^9/"), format!("{p} !~ /^9/")));
    }
    out
}

/// One rule set per pair: rule 1 is the positive, rule 2 the negation, rule 3 `not (positive)`.
/// Built once: a `RuleSet` is `Sync`.
fn sets() -> &'static [(String, RuleSet)] {
    static SETS: std::sync::OnceLock<Vec<(String, RuleSet)>> = std::sync::OnceLock::new();
    SETS.get_or_init(build_sets)
}

fn build_sets() -> Vec<(String, RuleSet)> {
    pairs()
        .into_iter()
        .map(|(pos, neg)| {
            let text = format!(
                "target p {{ url = \"https://x.test/p\" }}\ntarget n {{ url = \"https://x.test/n\" }}\ntarget q {{ url = \"https://x.test/q\" }}\n\
                 when {pos} -> post p\nwhen {neg} -> post n\nwhen not ({pos}) -> post q\n"
            );
            let set = RuleSet::from_files([("p.rules", text.as_str())]).unwrap_or_else(|e| panic!("{text}: {e}"));
            (pos, set)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn negations_are_exact_opposites(body in alert()) {
        let alert = Alert::new(body.clone());
        for (pos, set) in sets() {
            let d = set.evaluate(&alert).summary();
            let p = d.targets.iter().any(|t| t == "p");
            let n = d.targets.iter().any(|t| t == "n");
            let q = d.targets.iter().any(|t| t == "q");
            prop_assert_eq!(n, !p, "{} on {}", pos, body);
            prop_assert_eq!(q, !p, "not ({}) on {}", pos, body);
            prop_assert_eq!(set.evaluate(&alert).summary(), d, "deterministic");
        }
    }
}
