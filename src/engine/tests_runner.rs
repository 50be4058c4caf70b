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
use crate::alert::{AdaptLimits, Alert, adapt_at};
use crate::check::CheckedExpect;
use crate::state::VerdictKind;

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

    /// The rules of `set` that no test makes fire, in file order: what a change could
    /// break without a test noticing.
    pub fn uncovered(&self, set: &RuleSet) -> Vec<super::RuleInfo> {
        set.rules()
            .filter(|r| {
                let id = r.name.as_deref().unwrap_or(&r.location);
                !self.tests.iter().any(|t| t.rules.iter().any(|x| x == id))
            })
            .collect()
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
    /// The rules that fired in any step of the test, by name or `file:line`: what the test
    /// exercises ([`TestReport::uncovered`]).
    pub rules: Vec<String>,
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
        let mut held = Vec::new();
        let mut silences: Vec<super::memory::OfflineSilence> = Vec::new();
        let mut rules: Vec<String> = Vec::new();
        let timed = t.steps.len() > 1 || t.steps.iter().any(|s| s.label != "0s");
        for step in &t.steps {
            let at = if timed {
                format!("at {}: ", step.label)
            } else {
                String::new()
            };
            let before = failures.len();
            for s in &step.silences {
                // Checked at load, so it compiles.
                let Ok(matcher) = super::SilenceMatcher::compile(&s.condition) else {
                    continue;
                };
                let id = silences.len() as u64 + 1;
                let span = crate::state::SilenceSpan {
                    starts: step.at_ms,
                    ends: step.at_ms.saturating_add(s.for_ms),
                    expired_early: false,
                };
                state.set_silence(id, span);
                silences.push(super::memory::OfflineSilence { id, span, matcher });
            }
            // Held deliveries and groups due by this step's time go out first.
            let mut released = super::memory::release(&mut held, &mut state, step.at_ms);
            let mut groups = super::memory::flush_offline(&mut state, step.at_ms, &mut next);
            let Some(step_alert) = &step.alert else {
                released.extend(groups.iter().map(|g| g.target.clone()));
                check_released(set, &released, &step.expects, &at, &mut failures);
                check_groups(set, &groups, &step.expects, &at, &mut failures);
                continue;
            };
            let received = i64::try_from(step.at_ms)
                .ok()
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            // Checked at load: a `${now...}` that does not read is an error there.
            let body = crate::check::at_clock(step_alert, step.at_ms)
                .unwrap_or_else(|_| step_alert.clone());
            let alert = match t.source {
                Some(source) => match adapt_at(Some(source), body, received, &AdaptLimits::NONE) {
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
                None => Some(Alert::new(body).with_received_at(received)),
            };
            let Some(alert) = alert else { continue };
            let d = set.evaluate(&alert);
            for id in d.rule_ids() {
                if !rules.iter().any(|r| r == id) {
                    rules.push(id.to_owned());
                }
            }
            let (posted, verdicts) = super::memory::step_offline(
                &d, &alert, &silences, &mut state, &mut next, &mut held,
            );
            // A group due at this very moment (`wait 0s`) is notified in this step.
            groups.extend(super::memory::flush_offline(
                &mut state, step.at_ms, &mut next,
            ));
            released.extend(groups.iter().map(|g| g.target.clone()));
            check_groups(set, &groups, &step.expects, &at, &mut failures);
            let posted: Vec<&str> = released
                .iter()
                .chain(posted.iter())
                .map(String::as_str)
                .collect();
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
            rules,
        });
    }
    TestReport { tests }
}

/// Target `i`'s name, as a failure names it.
fn target_name(set: &RuleSet, i: usize) -> &str {
    set.inner.targets.get(i).map_or("?", |t| t.name.as_str())
}

/// `a, b`, or `nothing`: the targets a failure says something went to.
fn listed<S: AsRef<str>>(targets: &[S]) -> String {
    if targets.is_empty() {
        return String::from("nothing");
    }
    let names: Vec<&str> = targets.iter().map(AsRef::as_ref).collect();
    names.join(", ")
}

/// Checks a step without an alert: `expect post` / `expect no post` against the held
/// deliveries that went out by its time.
fn check_released(
    set: &RuleSet,
    released: &[String],
    expects: &[CheckedExpect],
    at: &str,
    failures: &mut Vec<String>,
) {
    let name = |i: usize| target_name(set, i);
    let shown = listed(released);
    for e in expects {
        match e {
            CheckedExpect::Post(i) if !released.iter().any(|t| t == name(*i)) => {
                failures.push(format!(
                    "{at}expected a held delivery to `{}` to have gone out, but what went out was: {shown}",
                    name(*i)
                ));
            }
            CheckedExpect::NoPost(i) if released.iter().any(|t| t == name(*i)) => {
                failures.push(format!(
                    "{at}expected nothing to go out to `{}`, but a held delivery did",
                    name(*i)
                ));
            }
            _ => {}
        }
    }
}

/// Checks `expect group <target> [names]` against the group notifications of a step.
fn check_groups(
    set: &RuleSet,
    groups: &[super::memory::GroupPost],
    expects: &[CheckedExpect],
    at: &str,
    failures: &mut Vec<String>,
) {
    for e in expects {
        let CheckedExpect::Group(i, names) = e else {
            continue;
        };
        let target = target_name(set, *i);
        let to_target: Vec<&super::memory::GroupPost> =
            groups.iter().filter(|g| g.target == target).collect();
        let sorted = |ns: &[String]| {
            let mut ns = ns.to_vec();
            ns.sort();
            ns
        };
        let ok = match names {
            None => !to_target.is_empty(),
            Some(want) => to_target.iter().any(|g| sorted(&g.names) == sorted(want)),
        };
        if !ok {
            let got: Vec<String> = to_target
                .iter()
                .map(|g| format!("[{}]", g.names.join(", ")))
                .collect();
            let want = names
                .as_ref()
                .map(|n| format!(" with [{}]", n.join(", ")))
                .unwrap_or_default();
            let got = if got.is_empty() {
                String::from("none")
            } else {
                got.join(", ")
            };
            failures.push(format!(
                "{at}expected a group notification to `{target}`{want}, but the notifications to it were: {got}"
            ));
        }
    }
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
    let name = |i: usize| target_name(set, i);
    let shown = listed(posted);
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
            CheckedExpect::Held(i) | CheckedExpect::Silenced(i) | CheckedExpect::Inhibited(i) => {
                let (word, is): (&str, fn(&VerdictKind) -> bool) = match e {
                    CheckedExpect::Held(_) => ("held", |k| matches!(k, VerdictKind::Held { .. })),
                    CheckedExpect::Silenced(_) => {
                        ("silenced", |k| matches!(k, VerdictKind::Silenced { .. }))
                    }
                    _ => ("inhibited", |k| matches!(k, VerdictKind::Inhibited { .. })),
                };
                if !verdicts.iter().any(|v| v.target == name(*i) && is(&v.kind)) {
                    failures.push(format!(
                        "{at}expected the delivery to `{}` to be {word}, but the alert was posted to: {shown}",
                        name(*i)
                    ));
                }
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
