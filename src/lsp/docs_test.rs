#[test]
fn operators_actions_settings_and_fields_are_documented() {
    for w in [
        "==",
        "!=",
        ">=",
        "=~",
        "in",
        "not in",
        "contains",
        "starts_with",
        "exists",
        "during",
        "post",
        "drop",
        "stop",
        "dedup",
        "resolve once",
        "at most",
        "delay",
        "hold during",
        "mute during",
        "url",
        "headers",
        "body",
        "retries",
        "fallback",
        "@source",
        "@state",
        "source",
        "alert",
    ] {
        assert!(super::word(w).is_some(), "no docs row for `{w}`");
    }
    let eq = super::word("==").unwrap();
    assert!(eq.starts_with("**`==` `!=`**"), "{eq}");
    assert!(
        eq.contains("*holds when*: the field equals the value"),
        "{eq}"
    );
    // An escaped pipe stays in its cell.
    assert!(super::word("=~").unwrap().contains(r#""cpu|mem""#));
    assert_eq!(super::word("nonsense"), None);
}

#[test]
fn every_code_has_its_section() {
    let s = super::code("E0201").unwrap();
    assert!(s.starts_with("### E0201 unknown target"), "{s}");
    assert!(!s.contains("## E0202"), "{s}");
    let last = super::code("W0403").unwrap();
    assert!(last.starts_with("### W0403"), "{last}");
    assert_eq!(super::code("E9999"), None);
}
