//! The example folder `rules/` loads cleanly and its `test` blocks pass.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

use switchyard::RuleSet;

#[test]
fn example_rules_load_without_warnings_and_their_tests_pass() {
    let set =
        RuleSet::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/rules")).unwrap_or_else(|e| {
            panic!(
                "{}",
                e.diagnostics()
                    .map(|d| d.render(switchyard::Format::Text))
                    .unwrap_or_else(|| e.to_string())
            )
        });
    assert_eq!(
        set.warnings().len(),
        0,
        "{}",
        set.warnings().render(switchyard::Format::Text)
    );
    assert!(set.test_count() >= 10, "the examples carry their tests");
    let report = set.run_tests();
    assert_eq!(report.failed(), 0, "{report}");
}
