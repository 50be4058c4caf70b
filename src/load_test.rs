//! A folder large enough to load on several threads gives exactly the diagnostics of a load
//! on one: the parse cut into pieces, and the analysis of what rules can reach run on a
//! thread of its own beside the check and the compile.

use crate::diagnostic::{Diagnostics, Format};
use crate::{Loader, RuleSet};

const TARGETS: &str = "target pager { url = \"https://example.test/pager\" }\n\
                       target chat { url = \"https://example.test/chat\" }\n\
                       target late { url = \"https://example.test/late\" }\n";

/// Rules for every warning of the analysis, and one of the check, among `filler` plain
/// rules before and after them: the folder is over the 64 KiB that a load on several
/// threads needs.
fn folder(filler: usize, extra: &str) -> [(String, String); 2] {
    let plain = |from: usize| -> String {
        (from..from + filler)
            .map(|i| {
                format!(
                    "when metricName == \"metric_{i}\" and curValue > {} -> post chat\n",
                    i % 100
                )
            })
            .collect()
    };
    let warned = "when sev == \"page\" -> post pager, stop\n\
                  when sev == \"page\" and team == \"db\" -> post late\n\
                  when a == \"x\" and a == \"y\" -> post chat\n\
                  when b == \"x\" or b != \"x\" -> post chat\n\
                  when c == \"same\" -> post chat\n\
                  when c == \"same\" -> post chat\n\
                  when d == \"twice\" -> post chat, post chat\n";
    [
        (String::from("a.rules"), format!("{TARGETS}{}", plain(0))),
        (
            String::from("b.rules"),
            format!("{warned}{}{extra}", plain(filler)),
        ),
    ]
}

fn load(threads: usize, files: &[(String, String)]) -> Result<RuleSet, crate::Error> {
    Loader::new()
        .threads(threads)
        .from_files(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
}

fn codes(ds: &Diagnostics) -> Vec<String> {
    ds.iter().map(|d| d.code().to_string()).collect()
}

#[test]
fn a_large_folder_warns_on_two_threads_exactly_as_on_one() {
    let files = folder(1_500, "");
    assert!(files.iter().map(|(_, t)| t.len()).sum::<usize>() > 2 * crate::syntax::PIECE_BYTES);
    let one = load(1, &files).expect("loads on one thread");
    let two = load(2, &files).expect("loads on two threads");
    let found = codes(one.warnings());
    for code in ["W0501", "W0502", "W0503", "W0504", "W0505"] {
        assert!(
            found.iter().any(|c| c == code),
            "{code} missing from {found:?}"
        );
    }
    assert_eq!(codes(two.warnings()), found);
    assert_eq!(
        two.warnings().render(Format::Text),
        one.warnings().render(Format::Text)
    );
    assert_eq!(two.rule_count(), one.rule_count());
    assert_eq!(two.content_hash(), one.content_hash());
    let named = files.iter().map(|(n, t)| (n.as_str(), t.as_bytes()));
    assert_eq!(two.content_hash(), crate::content_hash(named));
}

#[test]
fn a_large_folder_that_fails_reports_on_two_threads_exactly_as_on_one() {
    // An unknown target fails the load: the analysis's warnings are not said then.
    let files = folder(1_500, "when e == \"1\" -> post nowhere\n");
    let one = load(1, &files).expect_err("fails on one thread");
    let two = load(2, &files).expect_err("fails on two threads");
    let shown = |e: &crate::Error| e.diagnostics().map(|d| d.render(Format::Text));
    let text = shown(&one).expect("diagnostics");
    assert!(text.contains("nowhere"), "{text}");
    assert!(!text.contains("W0501"), "{text}");
    assert_eq!(shown(&two), shown(&one));
}
