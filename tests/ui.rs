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
