//! Reading a `TestReport` in a test: which test blocks failed, and how.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use switchyard::TestReport;

/// Asserts that exactly the test block `name` failed, and answers its failures.
pub(crate) fn only_failure(report: &TestReport, name: &str) -> Vec<String> {
    let failed: Vec<&str> = report
        .tests
        .iter()
        .filter(|t| !t.failures.is_empty())
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(failed, [name], "{report}");
    report
        .tests
        .iter()
        .find(|t| t.name == name)
        .map(|t| t.failures.clone())
        .unwrap_or_default()
}
