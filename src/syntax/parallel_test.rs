//! Property: parsing files cut into pieces on several threads gives, file by file, exactly
//! what parsing each file on its own gives: the same tree, spans and diagnostics.

use std::ops::Range;

use proptest::prelude::*;

use super::parallel::{parse_files, pieces};
use super::parse;
use super::roundtrip_test::item;
use crate::diagnostic::FileId;

/// Items that put a piece boundary where it must not be trusted, or that fail.
fn awkward() -> impl Strategy<Value = String> {
    // Brackets nested one level deeper than the pre-scan lets through.
    let deep = super::MAX_BRACKET_DEPTH + 1;
    let too_deep = format!(
        "when {}a == 1{} -> post t",
        "(".repeat(deep),
        ")".repeat(deep)
    );
    let mut all: Vec<String> = vec![
        // A template line that starts with the field `when`: a boundary inside an item.
        "target t {\n  body = {\n\"a\":\nwhen\n}\n}",
        // A rule's name on one line, its `when` on the next.
        "rule \"named\"\nwhen a == 1 -> post t",
        // A rule whose actions go on after a line break.
        "when a == 1\n-> post t,\nstop",
        // A target named `when`.
        "when a == 1 -> post\nwhen",
        // Lowering diagnostics, not syntax errors.
        "when a == \"${\" -> post t",
        "when a == 1e999 -> post t",
        // Syntax errors.
        "when a == -> post t",
        "when\n",
        "test \"t\" {\nwhen }",
        // Pre-scan errors: each piece is pre-scanned on its own.
        "when a == \"open -> post t",
        "when a =~ /open -> post t",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    all.push(too_deep);
    prop::sample::select(all)
}

fn file() -> impl Strategy<Value = String> {
    let one = prop_oneof![6 => item(), 1 => awkward()];
    (
        prop::collection::vec(one, 0..10),
        prop::sample::select(vec!["\n", "\n\n", "\n# c\n", "  \n"]),
    )
        .prop_map(|(items, sep)| items.join(sep))
}

fn sequential(files: &[(FileId, &str)]) -> String {
    let all: Vec<_> = files.iter().map(|(id, text)| parse(text, *id)).collect();
    format!("{all:?}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn pieces_on_threads_parse_as_whole_files(
        texts in prop::collection::vec(file(), 1..4),
        threads in 1usize..5,
        piece_bytes in 1usize..200,
    ) {
        let files: Vec<(FileId, &str)> =
            texts.iter().enumerate().map(|(i, t)| (FileId(i as u32), t.as_str())).collect();
        let parallel = format!("{:?}", parse_files(&files, Some(threads), piece_bytes));
        prop_assert_eq!(parallel, sequential(&files));
    }
}

#[test]
fn pieces_cover_the_text_and_start_at_items() {
    let text = "target t { url = \"https://x.test\" }\nwhen a == 1 -> post t\n\
                # when in a comment\nwhenever == 1\nrule \"r\" when b == 2 -> post t\n\
                test \"t\" { expect post t }\nwhen-x == 1\nwhen c == 3 -> post t";
    let ps = pieces(text, 1);
    let starts: Vec<&str> = ps
        .iter()
        .map(|r| &text[r.start..])
        .map(|s| &s[..4])
        .collect();
    assert_eq!(starts, ["targ", "when", "rule", "test", "when"]);
    assert_eq!(ps.first().map(|r| r.start), Some(0));
    assert_eq!(ps.last().map(|r| r.end), Some(text.len()));
    assert!(ps.windows(2).all(|w| w[0].end == w[1].start));
    assert_eq!(
        pieces(text, text.len()),
        vec![Range {
            start: 0,
            end: text.len()
        }]
    );
}

/// A large file really is cut and parsed on several threads, with the sequential result.
#[test]
fn a_large_file_parses_in_pieces_as_a_whole() {
    let mut text = String::from("target t { url = \"https://x.test\" }\n");
    for i in 0..3000 {
        text.push_str(&format!(
            "when metricName == \"m_{i}\" and curValue > {} -> post t\n",
            i % 100
        ));
    }
    let files = [(FileId(0), text.as_str())];
    assert!(pieces(&text, super::PIECE_BYTES).len() > 2);
    let parallel = format!("{:?}", parse_files(&files, Some(4), super::PIECE_BYTES));
    assert_eq!(parallel, sequential(&files));
}

/// The deepest nesting the pre-scan accepts parses on a helper thread as on this one.
#[test]
fn deep_nesting_parses_in_pieces() {
    let depth = super::MAX_BRACKET_DEPTH;
    let deep = format!(
        "when {}a == 1{} -> post t\n",
        "not (".repeat(depth),
        ")".repeat(depth)
    );
    let mut text = String::from("target t { url = \"https://x.test\" }\n");
    while text.len() < 4 * super::PIECE_BYTES {
        text.push_str(&deep);
    }
    let files = [(FileId(0), text.as_str())];
    let parallel = format!("{:?}", parse_files(&files, Some(4), super::PIECE_BYTES));
    assert_eq!(parallel, sequential(&files));
}
