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

/// The hash is computed once when the set is built (the server reads it for every request)
/// and is the hash of the files' names and contents, as a reload compares it.
#[test]
fn the_content_hash_is_the_files_hash() {
    let text = "target t { url = \"https://example.test/t\" }\nwhen m == 1 -> post t\n";
    let set = RuleSet::from_files([("a.rules", text)]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        set.content_hash(),
        super::content_hash([("a.rules", text.as_bytes())])
    );
    let other = RuleSet::from_files([("b.rules", text)]).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(set.content_hash(), other.content_hash());
}
