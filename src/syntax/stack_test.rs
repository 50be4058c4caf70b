//! pest is built without its native stack probe (Cargo.toml says why): the pre-scan's
//! depth limit is what keeps a parse's recursion bounded. The deepest nesting it lets
//! through, of every kind of bracket the grammar recurses on, parses on a stack half the
//! size of the smallest a parse runs on (a runtime worker's or a blocking task's 2 MiB),
//! in the unoptimised test build, whose frames are the largest.

use super::{MAX_BRACKET_DEPTH, parse};
use crate::diagnostic::FileId;

const SMALL_STACK: usize = 1024 * 1024;

/// Parses `text` on a thread with [`SMALL_STACK`]; answers the diagnostics' codes.
fn codes_on_a_small_stack(text: String) -> Vec<String> {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(move || match parse(&text, FileId(0)) {
            Ok(_) => Vec::new(),
            Err(ds) => ds.iter().map(|d| d.code().as_str().to_owned()).collect(),
        })
        .expect("a thread")
        .join()
        .expect("the parse returns")
}

/// Shapes nested `depth` brackets deep in all (a target's own braces count as one).
fn shapes(depth: usize) -> Vec<(&'static str, String)> {
    let rule = |open: &str, close: &str| {
        let target = "target t { url = \"https://x.test\" }";
        format!(
            "{target}\nwhen {}a == 1{} -> post t\n",
            open.repeat(depth),
            close.repeat(depth)
        )
    };
    let body = |open: &str, close: &str, n: usize| {
        format!(
            "target t {{ url = \"https://x.test\", body = {}1{} }}\n",
            open.repeat(n),
            close.repeat(n)
        )
    };
    let inner = depth - 1;
    vec![
        ("parentheses", rule("(", ")")),
        ("nots", rule("not (", ")")),
        ("objects", body("{\"a\": ", "}", inner)),
        ("arrays", body("[", "]", inner)),
        ("objects and arrays", body("{\"a\": [", "]}", inner / 2)),
    ]
}

#[test]
fn the_deepest_nesting_the_prescan_lets_through_parses_on_a_small_stack() {
    for (shape, text) in shapes(MAX_BRACKET_DEPTH) {
        let codes = codes_on_a_small_stack(text);
        // Sixty-four `not (` are 128 levels of condition: the lowering's own limit says so.
        let allowed: &[&str] = if shape == "nots" { &["E0105"] } else { &[] };
        assert!(
            codes.iter().all(|c| allowed.contains(&c.as_str())),
            "{shape}: {codes:?}"
        );
    }
}

#[test]
fn one_level_deeper_is_refused_before_pest_runs() {
    for (shape, text) in shapes(MAX_BRACKET_DEPTH + 1) {
        assert_eq!(codes_on_a_small_stack(text), ["E0105"], "{shape}");
    }
}
