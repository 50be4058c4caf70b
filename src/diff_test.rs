use serde_json::json;

use super::RulesDiff;
use crate::{Alert, RuleSet};

const TARGETS: &str = "target pager { url = \"https://example.test/pager\" }\n\
                       target chat { url = \"https://example.test/chat\" }\n";

fn set(rules: &str) -> RuleSet {
    RuleSet::from_files([("a.rules", format!("{TARGETS}{rules}"))]).unwrap()
}

fn alert(sev: &str, id: &str) -> Alert {
    Alert::new(json!({"sev": sev, "id": id}))
}

#[test]
fn changes_are_grouped_by_outcome_and_rule_most_alerts_first() {
    let old = set("when sev == \"high\" -> post pager\nwhen sev == \"low\" -> post chat\n");
    // A line added above: the unnamed rules' `file:line` ids move, which is no change.
    let new = set(
        "# moved\nrule \"high to chat\" when sev == \"high\" -> post chat\nwhen sev == \"low\" -> drop\n",
    );
    let alerts: Vec<Alert> = (0..18)
        .map(|i| alert(if i % 3 == 0 { "low" } else { "high" }, &format!("a{i}")))
        .chain([alert("none", "x")])
        .collect();
    let d = RulesDiff::of(&old, &new, &alerts);
    assert_eq!((d.alerts, d.changed, d.changes.len()), (19, 18, 2));
    let high = &d.changes[0];
    assert_eq!(
        (high.before.as_str(), high.after.as_str()),
        ("pager", "chat")
    );
    assert_eq!(high.count, 12);
    assert_eq!(high.alerts.len(), super::MAX_LISTED);
    assert_eq!(high.rules_after, ["high to chat"]);
    assert_eq!(high.rules_before, ["a.rules:3"]);
    assert_eq!(high.alerts[0].line, 2);
    let low = &d.changes[1];
    assert_eq!(
        (low.before.as_str(), low.after.as_str()),
        ("chat", "dropped")
    );
    assert_eq!(low.count, 6);
    let text = d.to_string();
    assert!(
        text.starts_with(
            "12 alerts: pager -> chat, now by `high to chat`; no longer by `a.rules:3`\n    line 2 (generic)\n"
        ),
        "{text}"
    );
    assert!(text.contains("    and 2 more\n"), "{text}");
    assert!(
        text.ends_with("18 of 19 alerts change (2 ways)\n"),
        "{text}"
    );
}

#[test]
fn the_same_targets_sent_differently_are_a_change_and_secrets_stay_hidden() {
    let old = set("when sev == \"high\" -> post pager\n");
    let new = RuleSet::from_files([(
        "a.rules",
        "target pager { url = \"https://example.test/${env.PAGER_TOKEN:-t}\" body = { \"s\": sev } }\n\
         target chat { url = \"https://example.test/chat\" }\n\
         when sev == \"high\" -> post pager\nwhen sev == \"never\" -> post chat\n",
    )])
    .unwrap();
    let d = RulesDiff::of(&old, &new, &[alert("high", "1")]);
    assert_eq!(d.changed, 1);
    assert_eq!(d.changes[0].sent_differently, ["pager"]);
    assert_eq!(d.changes[0].before, d.changes[0].after);
}

#[test]
fn no_change_says_so() {
    let old = set("when sev == \"high\" -> post pager\n");
    let d = RulesDiff::of(&old, &old, &[alert("high", "1"), alert("low", "2")]);
    assert!(d.is_empty());
    assert_eq!(
        d.to_string(),
        "no change: all 2 alerts are decided as before\n"
    );
}
