//! A test report as JUnit XML, the format CI systems (GitLab, Jenkins, GitHub's test
//! reporters) read: one `<testsuite>` of the folder's `test` blocks, one `<testcase>` each,
//! a `<failure>` with every failed expectation and the rule trace.
//!
//! Owns: the XML and its escaping (text and attributes; characters XML 1.0 cannot hold
//! become U+FFFD). Never: reads anything but the report.

use std::fmt::Write as _;

use super::tests_runner::TestReport;

impl TestReport {
    /// The report as JUnit XML; `suite` names the test suite (the rules folder).
    ///
    /// ```
    /// let rules = switchyard::RuleSet::from_files([("a.rules", r#"
    ///     target t { url = "https://example.test" }
    ///     when x == 1 -> post t
    ///     test "ones go to t" { alert { "x": 1 } expect post t }
    /// "#)])?;
    /// let xml = rules.run_tests().to_junit("rules");
    /// assert!(xml.contains(r#"<testsuite name="rules" tests="1" failures="0""#));
    /// assert!(xml.contains(r#"<testcase name="ones go to t" classname="a.rules""#));
    /// # Ok::<(), switchyard::Error>(())
    /// ```
    pub fn to_junit(&self, suite: &str) -> String {
        let (tests, failures) = (self.tests.len(), self.failed());
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"switchyard\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"0\">"
        );
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"0\">",
            escape(suite)
        );
        for t in &self.tests {
            let (file, line) = t
                .location
                .rsplit_once(':')
                .unwrap_or((t.location.as_str(), "0"));
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\" time=\"0\"",
                escape(&t.name),
                escape(file),
                escape(file),
                escape(line)
            );
            if t.failures.is_empty() {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            let mut body = t.failures.join("\n");
            if let Some(trace) = &t.trace {
                body.push_str("\n\n");
                body.push_str(trace);
            }
            let _ = writeln!(
                out,
                "      <failure message=\"{}\" type=\"expectation\">{}</failure>",
                escape(t.failures.first().map_or("", String::as_str)),
                escape(&body)
            );
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n</testsuites>\n");
        out
    }
}

/// Text for an XML attribute or element: the five entities escaped, line breaks kept as
/// character references (so an attribute keeps them), and what XML 1.0 cannot hold replaced.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || matches!(c, '\u{fffe}' | '\u{ffff}') => {
                out.push('\u{fffd}');
            }
            c => out.push(c),
        }
    }
    out
}
