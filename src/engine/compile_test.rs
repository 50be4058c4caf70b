//! What a compiled rule set keeps.

use crate::RuleSet;

/// Found with a heap profile (2026-11-30): the compiled rules were collected in place into
/// the checked rules' buffer, which is larger per rule, and kept it: 400 bytes of spare
/// capacity per rule, more than the rules themselves.
#[test]
fn the_compiled_rules_keep_no_spare_capacity_of_the_checked_ones() {
    let mut text = String::from("target t { url = \"https://example.test/t\" }\n");
    for i in 0..1_000 {
        text.push_str(&format!(
            "when m == \"m_{i}\" and s == \"ALARM\" -> post t\n"
        ));
    }
    let set = RuleSet::from_files([("a.rules", text)]).unwrap_or_else(|e| panic!("{e}"));
    let rules = &set.inner.rules;
    assert_eq!(rules.len(), 1_000);
    assert_eq!(rules.capacity(), rules.len());
}
