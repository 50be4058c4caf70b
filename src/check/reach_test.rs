//! Each analysis warning on the cases it must find, and silent on the ones it must not.

use crate::{Loader, RuleSet};

#[path = "../../benches/support/rules.rs"]
mod harness;

const TARGETS: &str = "target pager { url = \"https://example.test/p\" }\n\
                       target chat { url = \"https://example.test/c\" }\n";

/// The analysis codes (W05xx) a folder of one file gets, in order.
fn codes(rules: &str) -> Vec<String> {
    let set: RuleSet = Loader::new()
        .from_files([("a.rules", format!("{TARGETS}{rules}"))])
        .unwrap_or_else(|e| panic!("{e}"));
    set.warnings()
        .iter()
        .map(|d| d.code().as_str().to_owned())
        .filter(|c| c.starts_with("W05"))
        .collect()
}

#[test]
fn a_rule_behind_a_stop_that_takes_all_its_alerts_is_unreachable() {
    // Equal conditions; a subset; a catch-all by `or`; `==` within an earlier `in`; a
    // tighter bound; each disjunct of the later rule covered.
    for later in [
        "when sev == \"high\" -> post pager",
        "when sev == \"high\" and team == \"db\" -> post pager",
        "when sev == \"high\" and (team == \"db\" or team == \"web\") -> post pager",
    ] {
        let rules = format!(
            "when sev == \"high\" -> post pager, stop\n{later}\nwhen z == 0 -> post chat\n"
        );
        assert_eq!(codes(&rules), ["W0501"], "{rules}");
    }
    let rules =
        "when sev in [\"high\", \"critical\"] -> drop\nwhen sev == \"critical\" -> post chat\n";
    // Diagnostics come in file order: the target's declaration first.
    assert_eq!(codes(rules), ["W0505", "W0501"], "{rules}");
    let rules = "when curValue > 90 -> post pager, stop\nwhen curValue >= 95 -> post pager\nwhen z == 0 -> post chat\n";
    assert_eq!(codes(rules), ["W0501"]);
    let rules = "when sev == \"a\" or sev != \"a\" -> post pager, stop\nwhen x == 1 -> post chat\n";
    assert_eq!(codes(rules), ["W0505", "W0503", "W0501"]);
}

#[test]
fn rules_that_can_still_fire_are_not_warned() {
    for rules in [
        // No stop: every matching rule fires.
        "when sev == \"high\" -> post pager\nwhen sev == \"high\" and team == \"db\" -> post chat\n",
        // The earlier rule is narrower.
        "when sev == \"high\" and team == \"db\" -> post pager, stop\nwhen sev == \"high\" -> post chat\n",
        // The later rule comes first.
        "when sev == \"high\" -> post chat\nwhen sev == \"high\" -> post pager, stop\n",
        // Bounds that do not include: 95 > 90 but `>= 90` admits 90.
        "when curValue > 90 -> post pager, stop\nwhen curValue >= 90 -> post chat\n",
        // One disjunct of the later rule escapes.
        "when sev == \"high\" -> post pager, stop\nwhen sev == \"high\" or sev == \"low\" -> post chat\n",
        // A regex is not reasoned about.
        "when name =~ /cpu/ -> post pager, stop\nwhen name == \"cpu\" -> post chat\n",
    ] {
        assert_eq!(codes(rules), Vec::<String>::new(), "{rules}");
    }
}

#[test]
fn conjunctions_that_can_never_hold() {
    for c in [
        "a == \"x\" and a == \"y\"",
        "x > 5 and x < 3",
        "x >= 5 and x < 5",
        "x == 7 and x > 10",
        "a == \"x\" and a != \"x\"",
        "a == \"x\" and a in [\"y\", \"z\"]",
        "a in [\"x\"] and a in [\"y\"]",
        "not exists(a) and a == \"x\"",
        "@source == \"alibaba\" and @source == \"yandex\"",
        "a == 5 and a == \"five\"",
        "b == \"q\" or (a == 1 and a == 2)",
        // Said once, for the outermost `and`.
        "a == 1 and (b == 2 and a == 3)",
    ] {
        let rules = format!("when {c} -> post pager\nwhen z == 0 -> post chat\n");
        assert_eq!(codes(&rules), ["W0502"], "{c}");
    }
}

#[test]
fn conjunctions_that_can_hold_are_not_warned() {
    for c in [
        // A string holding a number equals it: both hold for the number 5.
        "a == 5 and a == \"5\"",
        "a == \"5\" and a == \"5.0\"",
        // Any element: different elements can hold each.
        "dims[*].id == \"x\" and dims[*].id == \"y\"",
        "x > 5 and x <= 5.5",
        "a == \"x\" and b == \"y\"",
        "a != \"x\" and a != \"y\"",
        "a == true and a == \"true\"",
    ] {
        let rules = format!("when {c} -> post pager\nwhen z == 0 -> post chat\n");
        assert_eq!(codes(&rules), Vec::<String>::new(), "{c}");
    }
}

#[test]
fn repeated_rules_and_targets_only_unreachable_rules_post_to() {
    let rules = "when sev == \"high\" -> post pager\nwhen sev == \"high\" -> post pager\nwhen z == 0 -> post chat\n";
    assert_eq!(codes(rules), ["W0504"]);
    // The same condition, other actions: not a repeat.
    let rules = "when sev == \"high\" -> post pager\nwhen sev == \"high\" -> post chat\n";
    assert_eq!(codes(rules), Vec::<String>::new());
    // A target that a fallback also reaches is not unreachable.
    let rules = "target backup { url = \"https://example.test/b\" fallback = chat }\n\
                 when sev == \"high\" -> drop\nwhen sev == \"high\" and t == 1 -> post chat\n\
                 when z == 0 -> post pager, post backup\n";
    assert_eq!(codes(rules), ["W0501"]);
}

#[test]
fn the_examples_have_no_analysis_warning() {
    let set = RuleSet::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/rules")).unwrap();
    let found: Vec<String> = set
        .warnings()
        .iter()
        .filter(|d| d.code().as_str().starts_with("W05"))
        .map(|d| d.message().to_owned())
        .collect();
    assert_eq!(found, Vec::<String>::new());
}

#[test]
fn a_large_first_match_folder_is_analysed_quickly_enough_to_reload() {
    // 10,000 rules, every one with `stop`: the earlier rules are found by their `==`.
    let mut rules = String::new();
    for i in 0..10_000 {
        rules.push_str(&format!(
            "when metricName == \"m_{i}\" -> post pager, stop\n"
        ));
    }
    rules.push_str("when metricName == \"m_77\" and x == 1 -> post chat\n");
    assert_eq!(codes(&rules), ["W0505", "W0501"]);
}

/// Found by `hostile_rules_files` (tests/cli.rs): a rule of 100,000 `and`s made the first
/// analysis compare every pair of its tests and copy its conjunction at every step.
#[test]
fn a_rule_of_a_hundred_thousand_ands_is_not_reasoned_about_past_the_bound() {
    let ands = vec!["a == 1"; 100_000].join(" and ");
    let started = std::time::Instant::now();
    assert_eq!(
        codes(&format!(
            "when {ands} -> post pager\nwhen z == 0 -> post chat\n"
        )),
        Vec::<String>::new()
    );
    // Within the bound, the same `and` is reasoned about: a contradiction is found.
    let within = vec!["a == 1"; super::MAX_ATOMS - 1].join(" and ");
    assert_eq!(
        codes(&format!(
            "when {within} and a == 2 -> post pager\nwhen z == 0 -> post chat\n"
        )),
        ["W0502"]
    );
    eprintln!("analysed in {:?}", started.elapsed());
}

#[test]
fn a_rule_of_a_hundred_thousand_ors_is_analysed_within_the_budget() {
    let ors = vec!["a == 1"; 100_000].join(" or ");
    assert_eq!(
        codes(&format!(
            "when {ors} -> post pager, stop\nwhen a == 1 -> post chat\nwhen z == 0 -> post chat\n"
        )),
        Vec::<String>::new()
    );
}

/// What the analysis costs on the engine bench's 10,000-rule set, alone; run with
/// `cargo test --release --lib reach -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: prints figures"]
fn analysis_cost_on_ten_thousand_rules() {
    let mut text = String::from(TARGETS);
    for i in 0..10_000 {
        text.push_str(&format!(
            "when metricName == \"metric_{i}\" and alertState == \"ALARM\" and curValue > {} -> post pager\n",
            i % 100
        ));
    }
    let mut sources = crate::SourceMap::default();
    let id = sources.add("a.rules", text.clone());
    let file = crate::syntax::parse(&text, id).unwrap();
    let files = [file];
    let runs = 20;
    let started = std::time::Instant::now();
    for _ in 0..runs {
        let mut cx = super::super::Cx::new(&sources);
        super::analyse(&mut cx, &files);
    }
    let analysis = started.elapsed() / runs;
    let started = std::time::Instant::now();
    for _ in 0..runs {
        let _ = Loader::new().from_files([("a.rules", text.as_str())]);
    }
    let load = started.elapsed() / runs;
    eprintln!(
        "10,000 rules: analysis {analysis:?}, whole load {load:?} ({:.0}%)",
        100.0 * analysis.as_secs_f64() / load.as_secs_f64()
    );
}

#[test]
fn an_earlier_rule_is_found_by_its_rarest_test_whichever_it_is() {
    // The key of the earlier rule is its rarest test: `team == "db"` (once) rather than
    // `sev == "high"` (in every rule), or the regex, or the `contains`; the later rule
    // holds that test too, so it is still found.
    let many: String = (0..20)
        .map(|i| format!("when sev == \"high\" and team == \"t{i}\" -> post chat, stop\n"))
        .collect();
    for (earlier, later) in [
        (
            "when sev == \"high\" and team == \"db\" -> post pager, stop",
            "when team == \"db\" and sev == \"high\" and host == \"a\" -> post pager",
        ),
        (
            "when sev == \"high\" and name =~ /^(?:Rule_1|RuleAlt_1)$/ -> post pager, stop",
            "when name =~ /^(?:Rule_1|RuleAlt_1)$/ and sev == \"high\" and x == 1 -> post pager",
        ),
        (
            "when sev == \"high\" and summary contains \"disk\" -> post pager, stop",
            "when sev == \"high\" and summary contains \"disk\" and x == 1 -> post pager",
        ),
    ] {
        let rules = format!("{many}{earlier}\n{later}\n");
        assert_eq!(codes(&rules), ["W0501"], "{rules}");
    }
}

#[test]
fn alertmanager_style_routes_are_compared_with_few_earlier_rules() {
    // The load harness's routes (benches/support/rules.rs, shared with the benches): every
    // route ends evaluation, shares `alertState == "ALERT"` or a `metricName` regex with a
    // quarter of the others, and has one test of its own. Filed under a test they all share, each route was
    // compared with every earlier one of its quarter, and the quarter whose own test is a
    // regex with every earlier one of that quarter: 624,750 pairs for 2,000 routes, and
    // most of a 10,000-route load (where MAX_PAIRS stopped it).
    let set: RuleSet = Loader::new()
        .from_files([("routes.rules", harness::harness_routes(2_000))])
        .unwrap_or_else(|e| panic!("{e}"));
    let analysis: Vec<&str> = set
        .warnings()
        .iter()
        .map(|d| d.code().as_str())
        .filter(|c| c.starts_with("W05"))
        .collect();
    assert_eq!(analysis, Vec::<&str>::new());
    let pairs = super::PAIRS_COMPARED.with(|p| p.get());
    assert!(pairs < 2_000, "{pairs} pairs compared");
}
