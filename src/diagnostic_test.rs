//! Unit tests of `diagnostic.rs`.

use super::*;

fn one(src: &str, d: Diagnostic) -> String {
    let mut map = SourceMap::default();
    map.add("rules/a.rules", src);
    Diagnostics::new(Arc::new(map), vec![d]).render(Format::Text)
}

#[test]
fn renders_secondary_label_below() {
    let src = "when curValue > \"90\" -> post alarm_url\n";
    let f = FileId(0);
    let d = Diagnostic::error(
        codes::ORDER_NEEDS_NUMBER,
        "`>` needs a number here, found the string `\"90\"`",
    )
    .with_primary(Span::new(f, 16, 20), "string literal")
    .with_secondary(Span::new(f, 14, 15), "ordering comparison")
    .with_help("drop the quotes to compare as a number: `curValue > 90`");
    let text = one(src, d);
    let expected = "error[E0301]: `>` needs a number here, found the string `\"90\"`
 --> rules/a.rules:1:17
  |
1 | when curValue > \"90\" -> post alarm_url
  |               - ^^^^ string literal
  |               |
  |               ordering comparison
  |
  = help: drop the quotes to compare as a number: `curValue > 90`

";
    assert_eq!(text, expected);
}

#[test]
fn columns_count_characters() {
    let mut map = SourceMap::default();
    let f = map.add("x", "é = 1\nab");
    let file = map.get(f).unwrap();
    assert_eq!(file.position(3), Position { line: 1, column: 3 });
    assert_eq!(file.position(8), Position { line: 2, column: 2 });
}

#[test]
fn long_lines_are_cut() {
    let mut src = "x".repeat(10_000);
    src.push_str(" == 1");
    let d = Diagnostic::error(codes::SYNTAX, "bad")
        .with_primary(Span::new(FileId(0), 10_001, 10_003), "here");
    let text = one(&src, d);
    assert!(text.lines().all(|l| l.len() < 200), "{text}");
    assert!(text.contains("...x"));
}
