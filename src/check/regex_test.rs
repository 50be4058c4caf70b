use proptest::prelude::*;

use super::*;

/// Patterns whose language is a list, with their flags.
const LISTS: &[(&str, &str)] = &[
    ("^(?:Rule_1|RuleAlt_1)$", ""),
    ("^cpu_(user|sys)$", ""),
    ("^ok$", "i"),
    ("^(?:ALERT|CRITICAL)$", ""),
    ("^$", ""),
    ("^(a|b)(c|d)$", ""),
    ("^k$", "i"),
    ("^12(3|4)$", ""),
];

fn made(pattern: &str, flags: &str) -> (Matcher, Regex) {
    let build = || {
        regex::RegexBuilder::new(pattern)
            .case_insensitive(flags.contains('i'))
            .build()
            .ok()
    };
    let mut cache = Cache::default();
    let m = cache.get_or_make(pattern, flags, build);
    match (m, build()) {
        (Some(m), Some(re)) => (m, re),
        _ => panic!("{pattern} does not build"),
    }
}

#[test]
#[allow(clippy::regex_creation_in_loops)] // counting the compilations is the point
fn a_list_pattern_is_not_compiled_and_others_are_compiled_once() {
    for (p, f) in LISTS {
        assert!(made(p, f).0.strings().is_some(), "{p}");
    }
    let mut cache = Cache::default();
    let mut builds = 0;
    for _ in 0..3 {
        let m = cache.get_or_make("^(?:cpu_.*|memory_.*)$", "", || {
            builds += 1;
            Regex::new("^(?:cpu_.*|memory_.*)$").ok()
        });
        assert!(matches!(m, Some(Matcher::Regex(_))));
    }
    assert_eq!(builds, 1, "a repeated pattern is compiled once");
    // An invalid pattern is reported by each use (`make` says why), never cached.
    assert!(cache.get_or_make("(", "", || None).is_none());
    assert!(cache.get_or_make("(", "", || None).is_none());
}

proptest! {
    /// Whatever the text, a list answers as the regex it stands for: the words, their
    /// prefixes and extensions, other cases, numbers' text, anything.
    #[test]
    fn a_list_answers_as_its_regex(
        which in 0..LISTS.len(),
        text in prop_oneof![
            "[a-zA-Z_0-9]{0,12}",
            Just(String::from("Rule_1")),
            Just(String::from("RuleAlt_1\n")),
            Just(String::from("OK")),
            Just(String::from("K")),
            Just(String::from("\u{212A}")),
            Just(String::from("cpu_sys")),
            Just(String::from("123")),
            Just(String::new()),
        ],
    ) {
        let (p, f) = LISTS[which];
        let (m, re) = made(p, f);
        prop_assert_eq!(m.is_match(&text), re.is_match(&text), "{} /{} on {:?}", p, f, text);
    }
}
