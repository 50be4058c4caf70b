//! Arbitrary rule folders (several files, arbitrary text). Invariants: no panic; a failed
//! load reports at least one error, each inside its file; rendering as text and JSON never
//! fails; a successful load evaluates an empty alert and runs its tests without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::{Alert, Format, Loader};

fuzz_target!(|files: Vec<(String, String)>| {
    if files.len() > 8 {
        return;
    }
    let loader =
        Loader::new().env(|name| (name.len() % 2 == 0).then(|| format!("value-of-{name}")));
    let named: Vec<(String, String)> = files
        .into_iter()
        .enumerate()
        .map(|(i, (_, t))| (format!("{i:02}.rules"), t))
        .collect();
    match loader.from_files(named.clone()) {
        Ok(set) => {
            let _ = set.evaluate(&Alert::new(serde_json::json!({})));
            let _ = set.run_tests();
            let _ = set.warnings().render(Format::Text);
        }
        Err(e) => {
            let d = e.diagnostics().expect("rules errors carry diagnostics");
            assert!(d.error_count() > 0, "a failed load reports an error");
            for diag in d.iter() {
                if let Some((file, pos)) = d.location(diag) {
                    let text = &named
                        .iter()
                        .find(|(n, _)| n == file)
                        .expect("a known file")
                        .1;
                    assert!(
                        pos.line <= text.split('\n').count(),
                        "line {} outside {file}",
                        pos.line
                    );
                }
            }
            let _ = d.render(Format::Text);
            let json = d.to_json();
            assert!(json.as_array().is_some_and(|a| a.len() == d.len()));
            for v in json.as_array().into_iter().flatten() {
                assert!(!v.to_string().contains("value-of-"), "a secret leaked: {v}");
            }
        }
    }
});
