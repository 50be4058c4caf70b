//! Diagnostics as files: every `tests/ui/**/*.rules` (or folder `tests/ui/multi/*/`) is
//! loaded, its diagnostics rendered as text, and the text snapshotted. `err_*` cases must
//! fail to load; `warn_*` cases must load with warnings.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use switchyard::{Format, Loader};

/// The environment the cases see: `SET_TOKEN` is set, nothing else is.
fn loader() -> Loader<'static> {
    Loader::new().env(|name| (name == "SET_TOKEN").then(|| String::from("s3cret-value")))
}

fn render(path: &Path, result: Result<switchyard::RuleSet, switchyard::Error>) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let text = match result {
        Ok(set) => {
            assert!(
                name.starts_with("warn_") || name.starts_with("ok_"),
                "{name} loaded, but err_ cases must fail"
            );
            if name.starts_with("warn_") {
                assert!(
                    set.warnings().warning_count() > 0,
                    "{name} loaded without warnings"
                );
            }
            set.warnings().render(Format::Text)
        }
        Err(e) => {
            assert!(name.starts_with("err_"), "{name} failed to load: {e}");
            let d = e.diagnostics().unwrap_or_else(|| panic!("{name}: {e}"));
            let code = name.split('_').nth(1).unwrap_or_default();
            assert!(
                d.iter().any(|d| d.code().as_str() == code),
                "{name} does not report {code}:\n{}",
                d.render(Format::Text)
            );
            d.render(Format::Text)
        }
    };
    assert!(
        !text.contains("s3cret-value"),
        "a secret leaked into a diagnostic:\n{text}"
    );
    assert!(
        !text.contains("Rule::") && !text.contains("kw_"),
        "a grammar rule name leaked:\n{text}"
    );
    assert!(
        text.lines().all(|l| l == l.trim_end()),
        "trailing spaces:\n{text}"
    );
    text
}

#[test]
fn single_files() {
    insta::glob!("ui/*/*.rules", |path| {
        let bytes = std::fs::read(path).unwrap();
        let name = format!("ui/{}", path.file_name().unwrap().to_str().unwrap());
        let text = render(path, loader().from_bytes([(name, bytes)]));
        insta::assert_snapshot!(text);
    });
}

#[test]
fn folders() {
    insta::glob!("ui/multi/*", |path| {
        if !path.is_dir() {
            return;
        }
        let mut files: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let dir = path.file_name().unwrap().to_str().unwrap().to_owned();
        let named = files.into_iter().map(|p| {
            let file = p.file_name().unwrap().to_str().unwrap().to_owned();
            (format!("{dir}/{file}"), std::fs::read(&p).unwrap())
        });
        let text = render(path, loader().from_bytes(named));
        insta::assert_snapshot!(text);
    });
}

#[test]
fn every_code_has_a_case() {
    let mut names = Vec::new();
    for entry in walk(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/ui")
            .as_path(),
    ) {
        names.push(entry);
    }
    let codes_doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/diagnostics.md"))
            .unwrap();
    let documented: Vec<&str> = codes_doc
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        documented.len() >= 30,
        "docs/diagnostics.md lists {} codes",
        documented.len()
    );
    for code in documented {
        assert!(
            names.iter().any(|n| n.contains(&format!("_{code}_"))),
            "no tests/ui case for {code}"
        );
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.file_name().unwrap().to_string_lossy().into_owned());
        if p.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

/// A byte offset of a 1-based line and column (columns in characters), as the JSON form
/// gives them.
fn offset(text: &str, line: u64, column: u64) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line as usize - 1)
        .map(str::len)
        .sum();
    let rest = &text[start..];
    rest.char_indices()
        .nth(column as usize - 1)
        .map_or(text.len(), |(i, _)| start + i)
}

/// The diagnostics of one file as JSON, loaded as the cases are.
fn json_diagnostics(name: &str, text: &str) -> Vec<serde_json::Value> {
    match loader().from_files([(name, text)]) {
        Ok(set) => set.warnings().to_json(),
        Err(e) => e.diagnostics().unwrap().to_json(),
    }
    .as_array()
    .cloned()
    .unwrap_or_default()
}

/// Every fix a diagnostic offers (what an editor's quick fix applies) makes that
/// diagnostic go away, and makes no new error: checked on every single-file case.
#[test]
fn every_fix_removes_what_it_fixes() {
    let mut fixed_codes = std::collections::BTreeSet::new();
    insta::glob!("ui/*/*.rules", |path| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let name = "case.rules";
        let before = json_diagnostics(name, &text);
        for d in &before {
            for fix in d["fixes"].as_array().unwrap() {
                let n = |k: &str| fix[k].as_u64().unwrap();
                let (from, to) = (
                    offset(&text, n("line"), n("column")),
                    offset(&text, n("end_line"), n("end_column")),
                );
                let mut changed = text.clone();
                changed.replace_range(from..to, fix["replacement"].as_str().unwrap());
                let after = json_diagnostics(name, &changed);
                let at = |d: &serde_json::Value| (d["code"].clone(), d["line"].clone());
                assert!(
                    !after.iter().any(|a| at(a) == at(d)),
                    "{}: the fix {fix} left {}:\n{changed}",
                    path.display(),
                    d["message"]
                );
                let errors = |ds: &[serde_json::Value]| {
                    ds.iter().filter(|d| d["severity"] == "error").count()
                };
                assert!(
                    errors(&after) < errors(&before) || d["severity"] == "warning",
                    "{}: the fix {fix} did not lower the errors:\n{changed}",
                    path.display()
                );
                fixed_codes.insert(d["code"].as_str().unwrap().to_owned());
            }
        }
    });
    // The fixes the editor relies on, each seen on a case.
    for code in [
        "E0103", "E0104", "E0201", "E0205", "E0206", "E0207", "W0201", "W0202",
    ] {
        assert!(
            fixed_codes.contains(code),
            "no case exercises a fix for {code}; fixed: {fixed_codes:?}"
        );
    }
}
