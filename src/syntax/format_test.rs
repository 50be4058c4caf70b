use super::*;

fn fmt(text: &str) -> String {
    format(text, FileId(0)).unwrap()
}

/// The tree as JSON (spans left out): what "the same meaning" compares.
fn tree(text: &str) -> serde_json::Value {
    serde_json::to_value(super::super::parse(text, FileId(0)).unwrap()).unwrap()
}

const MESSY: &str = "# Where pages go.\n\n\n\ntarget   pager{url=\"http://x/\"   retries=2}\nrule \"cpu\"   when cpu>90 and   host   ==\"a\"->post pager   # the main one\n# a note on the next rule\nwhen  mem > 95 -> post pager\n\n\n\n# trailing words\n\n\n";

#[test]
fn a_messy_file_gets_the_canonical_layout_with_every_comment_kept() {
    let out = fmt(MESSY);
    assert_eq!(
        out,
        "# Where pages go.\n\ntarget pager {\n    url     = \"http://x/\"\n    retries = 2\n}\n\nrule \"cpu\" when cpu > 90 and host == \"a\" -> post pager  # the main one\n# a note on the next rule\nwhen mem > 95 -> post pager\n\n# trailing words\n"
    );
    assert_eq!(tree(&out), tree(MESSY), "the same meaning");
    assert_eq!(fmt(&out), out, "idempotent");
}

#[test]
fn long_lines_are_broken_where_the_layout_can() {
    let text = concat!(
        "rule \"cpu critical\" when @source == \"alibaba\" and state in [\"ALERT\", \"ALARM\"] and ",
        "metric in [\"cpu_total\", \"CPUUtilization\"] and (value >= 90 or level == \"critical\") -> post pager\n",
        "test \"t\" { alert { \"alertName\": \"ECS CPU\", \"alertState\": \"ALERT\", \"metricName\": \"cpu_total\", ",
        "\"curValue\": \"93.75\" } expect post pager }\n",
    );
    let out = fmt(text);
    assert_eq!(
        out,
        concat!(
            "rule \"cpu critical\"\n",
            "when @source == \"alibaba\"\n",
            "    and state in [\"ALERT\", \"ALARM\"]\n",
            "    and metric in [\"cpu_total\", \"CPUUtilization\"]\n",
            "    and (value >= 90 or level == \"critical\")\n",
            "    -> post pager\n",
            "\n",
            "test \"t\" {\n",
            "    alert {\n",
            "        \"alertName\": \"ECS CPU\",\n",
            "        \"alertState\": \"ALERT\",\n",
            "        \"metricName\": \"cpu_total\",\n",
            "        \"curValue\": \"93.75\"\n",
            "    }\n",
            "    expect post pager\n",
            "}\n",
        )
    );
    assert_eq!(tree(&out), tree(text));
    assert_eq!(fmt(&out), out);
    assert!(out.lines().all(|l| l.chars().count() <= 100), "{out}");
}

#[test]
fn a_long_inhibit_puts_its_parts_a_line_each() {
    let text = "inhibit \"warnings under a critical\" when labels.severity == \"warning\" while labels.severity == \"critical\" is firing matching labels.instance\n";
    let out = fmt(text);
    assert_eq!(
        out,
        "inhibit \"warnings under a critical\"\n    when labels.severity == \"warning\"\n    while labels.severity == \"critical\" is firing matching labels.instance\n"
    );
    assert_eq!(tree(&out), tree(text));
    assert_eq!(fmt(&out), out);
}

#[test]
fn an_item_with_a_comment_inside_is_kept_as_written() {
    let text = "target t {\n    url = \"http://x/\"   # where\n    retries = 1   \n}\nwhen a == 1 -> post t\n";
    let out = fmt(text);
    assert_eq!(
        out,
        "target t {\n    url = \"http://x/\"   # where\n    retries = 1\n}\n\nwhen a == 1 -> post t\n"
    );
    assert_eq!(fmt(&out), out);
}

#[test]
fn empty_comment_only_and_crlf_files() {
    assert_eq!(fmt(""), "");
    assert_eq!(fmt("\n\n"), "");
    assert_eq!(fmt("# only\n\n\n# words\n"), "# only\n\n# words\n");
    let crlf = "# c\r\nwhen a == 1 -> stop\r\n";
    assert_eq!(fmt(crlf), "# c\nwhen a == 1 -> stop\n");
}

#[test]
fn a_file_that_does_not_parse_is_refused_with_its_diagnostics() {
    let errors = format("when a = 1 -> stop\n", FileId(0)).unwrap_err();
    assert!(!errors.is_empty());
}

#[test]
fn the_example_rules_and_every_ui_case_keep_their_meaning_and_settle_in_one_pass() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for dir in ["rules", "tests/ui"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.extension().is_none_or(|e| e != "rules") {
                    continue;
                }
                // A file that is not UTF-8 (a checker's error case) is not a rules file.
                let Ok(text) = String::from_utf8(std::fs::read(&p).unwrap()) else {
                    continue;
                };
                // Files that do not parse (the checker's error cases) are not formatted.
                let Ok(once) = format(&text, FileId(0)) else {
                    continue;
                };
                assert_eq!(tree(&once), tree(&text), "{}", p.display());
                assert_eq!(fmt(&once), once, "{} is idempotent", p.display());
                let comments = |t: &str| {
                    t.lines()
                        .filter_map(|l| l.find('#').map(|i| l[i..].trim_end().to_owned()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    comments(&once),
                    comments(&text),
                    "{} keeps its comments",
                    p.display()
                );
                seen += 1;
            }
        }
    }
    assert!(seen > 20, "{seen} files formatted");
}
