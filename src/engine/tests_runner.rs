//! Runs the `test` blocks of a rules folder.
//!
//! Owns: turning each block's alert into an alert (with `source NAME`, through that
//! sender's adapter, as the server would; without, as a generic alert), evaluating it
//! with the set under test, and
//! comparing every expectation, bodies rendered exactly as they would be sent. Never:
//! delivers anything, or stops at the first failure (every test runs, every failed
//! expectation is reported).

use std::fmt;

use serde::Serialize;

use super::RuleSet;
use crate::alert::{Alert, adapt_json};
use crate::check::CheckedExpect;

/// The outcome of every `test` block.
#[derive(Clone, Debug, Serialize)]
pub struct TestReport {
    /// One outcome per test, in file order.
    pub tests: Vec<TestOutcome>,
}

impl TestReport {
    /// How many tests failed.
    pub fn failed(&self) -> usize {
        self.tests.iter().filter(|t| !t.failures.is_empty()).count()
    }

    /// How many tests passed.
    pub fn passed(&self) -> usize {
        self.tests.len() - self.failed()
    }
}

/// One test's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct TestOutcome {
    /// The test's name.
    pub name: String,
    /// `file:line` of the test.
    pub location: String,
    /// Each expectation that did not hold; empty when the test passed.
    pub failures: Vec<String>,
    /// The rule trace, when the test failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// Where the alert goes at `now` on the test's clock, and the step's verdicts: the
/// decision's targets, or, when a rule that remembers has a say, what the step function
/// lets through given what the test's earlier alerts left in `state`.
fn posted_targets(
    d: &super::Decision<'_>,
    alert: &Alert,
    state: &mut crate::state::MemoryState,
    now: u64,
    next: &mut u64,
) -> (Vec<String>, Vec<crate::state::Verdict>) {
    if !d.remembers(alert) {
        return (d.target_names().map(str::to_owned).collect(), Vec::new());
    }
    let (choices, probes) = d.choices(alert);
    let facts = crate::state::AlertFacts {
        id: alert.id().map(str::to_owned),
        state: alert.state(),
    };
    let mut out = Vec::new();
    let verdicts = crate::state::step(
        state,
        &facts,
        choices,
        probes,
        now,
        &mut || {
            *next += 1;
            *next
        },
        &mut |target, _, _| out.push(target.to_owned()),
    );
    (out, verdicts)
}

/// Runs every `test` block of `set`, in file order; each test's steps share one state,
/// from empty, on the test's clock.
pub(crate) fn run(set: &RuleSet) -> TestReport {
    let mut tests = Vec::new();
    for t in &set.inner.tests {
        let mut failures = Vec::new();
        let mut trace = None;
        let mut state = crate::state::MemoryState::default();
        let mut next = 0;
        let timed = t.steps.len() > 1 || t.steps.iter().any(|s| s.at_ms > 0);
        for step in &t.steps {
            let at = if timed {
                format!("at {}: ", super::memory::millis(step.at_ms))
            } else {
                String::new()
            };
            let before = failures.len();
            let alert = match t.source {
                Some(source) => match adapt_json(Some(source), step.alert.clone()) {
                    Ok(mut alerts) if !alerts.is_empty() => Some(alerts.remove(0)),
                    Ok(_) => {
                        failures.push(format!("{at}the {source} payload holds no alert"));
                        None
                    }
                    Err(e) => {
                        failures.push(format!(
                            "{at}the alert is not a valid {source} payload: {e}"
                        ));
                        None
                    }
                },
                None => Some(Alert::new(step.alert.clone())),
            };
            let Some(alert) = alert else { continue };
            let d = set.evaluate(&alert);
            let (posted, verdicts) = posted_targets(&d, &alert, &mut state, step.at_ms, &mut next);
            let posted: Vec<&str> = posted.iter().map(String::as_str).collect();
            check_step(
                set,
                &d,
                &alert,
                &posted,
                &verdicts,
                &step.expects,
                &at,
                &mut failures,
            );
            if failures.len() > before && trace.is_none() {
                trace = Some(set.explain(&alert).to_string());
            }
        }
        tests.push(TestOutcome {
            name: t.name.clone(),
            location: t.location.clone(),
            failures,
            trace,
        });
    }
    TestReport { tests }
}

/// Checks one step's expectations; each that fails adds a line (prefixed with the step's
/// time in a timed test).
#[allow(clippy::too_many_arguments)]
fn check_step(
    set: &RuleSet,
    d: &super::Decision<'_>,
    alert: &Alert,
    posted: &[&str],
    verdicts: &[crate::state::Verdict],
    expects: &[CheckedExpect],
    at: &str,
    failures: &mut Vec<String>,
) {
    let name = |i: usize| set.inner.targets.get(i).map_or("?", |t| t.name.as_str());
    let shown = if posted.is_empty() {
        String::from("nothing")
    } else {
        posted.join(", ")
    };
    for e in expects {
        match e {
            CheckedExpect::Post(i) if !posted.contains(&name(*i)) => {
                failures.push(format!(
                    "{at}expected a post to `{}`, but the alert was posted to: {shown}",
                    name(*i)
                ));
            }
            CheckedExpect::NoPost(i) if posted.contains(&name(*i)) => {
                failures.push(format!(
                    "{at}expected no post to `{}`, but it was posted there",
                    name(*i)
                ));
            }
            CheckedExpect::Throttled(i)
                if !verdicts.iter().any(|v| {
                    v.target == name(*i)
                        && matches!(
                            v.kind,
                            crate::state::VerdictKind::Throttled { .. }
                                | crate::state::VerdictKind::Diverted { .. }
                        )
                }) =>
            {
                failures.push(format!(
                    "{at}expected `{}` to be throttled, but the alert was posted to: {shown}",
                    name(*i)
                ));
            }
            CheckedExpect::Drop if !d.dropped() => failures.push(format!(
                "{at}expected the alert to be dropped, but no `drop` fired"
            )),
            CheckedExpect::Unrouted if !d.unrouted() => failures.push(format!(
                "{at}expected the alert to be unrouted, but rules fired: {}",
                d.rule_ids().collect::<Vec<_>>().join(", ")
            )),
            CheckedExpect::Body(i, expected) => match set.inner.targets.get(*i) {
                Some(target) if posted.contains(&target.name.as_str()) => {
                    let body = target.render_body_display(alert);
                    if &body != expected {
                        failures.push(format!(
                            "{at}body for `{}` differs:\n    expected: {expected}\n    actual:   {body}",
                            target.name
                        ));
                    }
                }
                _ => failures.push(format!(
                    "{at}expected a body for `{}`, but the alert was posted to: {shown}",
                    name(*i)
                )),
            },
            _ => {}
        }
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.tests {
            if t.failures.is_empty() {
                writeln!(f, "test {} ... ok", t.name)?;
            } else {
                writeln!(f, "test {} ... FAILED ({})", t.name, t.location)?;
                for fail in &t.failures {
                    writeln!(f, "  - {fail}")?;
                }
                if let Some(trace) = &t.trace {
                    for line in trace.lines() {
                        writeln!(f, "    | {line}")?;
                    }
                }
            }
        }
        writeln!(f)?;
        let verdict = if self.failed() == 0 { "ok" } else { "FAILED" };
        writeln!(
            f,
            "test result: {verdict}. {} passed; {} failed",
            self.passed(),
            self.failed()
        )
    }
}
