//! Explain: the decision with its reasons.
//!
//! Owns: the trace of every rule evaluated for one alert, in order, up to the `stop` or
//! `drop` that ended evaluation: each predicate's result and the values the alert had at
//! its path. The decision itself comes from `evaluate`, so explain can never disagree
//! with routing. Never: delivers, or shows a secret (targets are named, not resolved).

use std::fmt::{self, Write as _};

use serde::Serialize;
use serde_json::Value;

use super::program::Pred;
use super::{DecisionSummary, RuleSet};
use crate::alert::Alert;
use crate::syntax::print::{Joiner, join};

/// Why an alert was routed as it was.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// The decision, as [`RuleSet::evaluate`] makes it.
    pub decision: DecisionSummary,
    /// `@source`, `@state`, `@name`, `@id` of the alert.
    pub metadata: Value,
    /// Every rule tried, in order; rules after a `stop` or `drop` are not tried.
    pub rules: Vec<RuleTrace>,
    /// What the rules that remember (`dedup`, `resolve once`, `at most`) did with each
    /// delivery, when they had a say: see [`RuleSet::explain_many`]. Empty from
    /// [`RuleSet::explain`], which has no memory to ask.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::state::Verdict>,
}

/// One rule tried.
#[derive(Clone, Debug, Serialize)]
pub struct RuleTrace {
    /// The rule's name or `file:line`.
    pub rule: String,
    /// `file:line` of the rule.
    pub location: String,
    /// Whether the condition held.
    pub matched: bool,
    /// The condition, predicate by predicate.
    pub condition: PredicateTrace,
    /// The rule's actions: `post alarm_url`, `stop`, `drop`.
    pub actions: Vec<String>,
}

/// One predicate and its outcome.
#[derive(Clone, Debug, Serialize)]
pub struct PredicateTrace {
    /// `all` (and), `any` (or), `not`, or `test` (a comparison or `exists`).
    pub kind: &'static str,
    /// The predicate as written in the rules file.
    pub text: String,
    /// Whether it held.
    pub result: bool,
    /// For a comparison or `exists`: the values its field path reached (empty: missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen: Option<Vec<Value>>,
    /// For `and`, `or`, `not`: the parts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<PredicateTrace>,
}

/// The decision and every rule's trace, for [`RuleSet::explain`].
pub(crate) fn explain(set: &RuleSet, alert: &Alert) -> Explanation {
    let decision = set.evaluate(alert).summary();
    let mut rules = Vec::new();
    for r in &set.inner.rules {
        let condition = trace(set, &r.pred, alert);
        let matched = condition.result;
        let actions = r.actions(&set.inner.targets);
        rules.push(RuleTrace {
            rule: r.id().to_string(),
            location: r.location.to_string(),
            matched,
            condition,
            actions,
        });
        if matched && (r.drop || r.stop) {
            break;
        }
    }
    let metadata = serde_json::json!({
        "source": alert.source().as_str(),
        "state": alert.state().as_str(),
        "name": alert.name(),
        "id": alert.id(),
    });
    Explanation {
        decision,
        metadata,
        rules,
        verdicts: Vec::new(),
    }
}

/// [`explain`] for each alert in order, with the verdicts of the rules' memory: every
/// alert goes through the step function, at the moment it was received, with what the
/// alerts before it left in a memory that starts empty (as a test's steps do).
pub(crate) fn explain_many(set: &RuleSet, alerts: &[Alert]) -> Vec<Explanation> {
    let mut state = crate::state::MemoryState::default();
    let mut next = 0;
    let mut held = Vec::new();
    alerts
        .iter()
        .map(|alert| {
            let mut e = explain(set, alert);
            let d = set.evaluate(alert);
            if d.remembers(alert) || !d.inhibit_facts(alert).is_empty() {
                let (posted, verdicts) =
                    super::memory::step_offline(&d, alert, &[], &mut state, &mut next, &mut held);
                e.decision.targets = posted;
                e.verdicts = verdicts;
                set.name_keys(&mut e.verdicts, alert);
            }
            e
        })
        .collect()
}

/// One predicate's result, its text (printed with the language's precedence) and, for a
/// test, the values seen; evaluated without the index or memo, so every part has a result.
fn trace(set: &RuleSet, p: &Pred, alert: &Alert) -> PredicateTrace {
    match p {
        Pred::All(ps) | Pred::Any(ps) => {
            let children: Vec<PredicateTrace> = ps.iter().map(|p| trace(set, p, alert)).collect();
            let result = if matches!(p, Pred::All(_)) {
                children.iter().all(|c| c.result)
            } else {
                children.iter().any(|c| c.result)
            };
            let joiner = if matches!(p, Pred::All(_)) {
                Joiner::And
            } else {
                Joiner::Or
            };
            let text = join(
                joiner,
                children.iter().map(|c| (c.kind == "any", c.text.clone())),
            );
            let kind = if matches!(p, Pred::All(_)) {
                "all"
            } else {
                "any"
            };
            PredicateTrace {
                kind,
                text,
                result,
                seen: None,
                children,
            }
        }
        Pred::Not(inner, span) => {
            let child = trace(set, inner, alert);
            PredicateTrace {
                kind: "not",
                text: set.inner.sources.snippet(*span).to_owned(),
                result: !child.result,
                seen: None,
                children: vec![child],
            }
        }
        Pred::During { window, span } => {
            let at = alert.received_at();
            let seen = set
                .inner
                .windows
                .get(*window as usize)
                .map(|w| vec![Value::String(w.local(at))]);
            PredicateTrace {
                kind: "test",
                text: set.inner.sources.snippet(*span).to_owned(),
                result: p.eval(&set.inner, alert),
                seen,
                children: Vec::new(),
            }
        }
        Pred::Test { atom, span, .. } => {
            let mut seen = Vec::new();
            let path = set
                .inner
                .atoms
                .get(*atom as usize)
                .and_then(|a| set.inner.paths.get(a.path as usize));
            if let Some(path) = path {
                path.any(alert, &mut |v| {
                    if seen.len() < 16 {
                        seen.push(v.to_json());
                    }
                    false
                });
            }
            PredicateTrace {
                kind: "test",
                text: set.inner.sources.snippet(*span).to_owned(),
                result: p.eval(&set.inner, alert),
                seen: Some(seen),
                children: Vec::new(),
            }
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "alert: @source={} @state={} @name={} @id={}",
            self.metadata["source"].as_str().unwrap_or("?"),
            self.metadata["state"].as_str().unwrap_or("?"),
            self.metadata["name"].as_str().unwrap_or("-"),
            self.metadata["id"].as_str().unwrap_or("-"),
        )?;
        for r in &self.rules {
            let verdict = if r.matched { "matched" } else { "no match" };
            let actions = if r.matched && !r.actions.is_empty() {
                format!(" -> {}", r.actions.join(", "))
            } else {
                String::new()
            };
            writeln!(f, "rule {} ({}): {verdict}{actions}", r.rule, r.location)?;
            let mut out = String::new();
            write_pred(&mut out, &r.condition, 1);
            f.write_str(&out)?;
        }
        let d = &self.decision;
        let outcome = if d.unrouted {
            String::from("unrouted: no rule matched")
        } else if d.targets.is_empty() {
            String::from("no delivery")
        } else {
            format!("post {}", d.targets.join(", "))
        };
        for v in &self.verdicts {
            writeln!(f, "memory: {v}")?;
        }
        let dropped = if d.dropped { " (dropped)" } else { "" };
        writeln!(f, "decision: {outcome}{dropped}")
    }
}

/// One predicate of the terminal form: `true   cpu > 90  (saw 95)`, children indented.
fn write_pred(out: &mut String, p: &PredicateTrace, depth: usize) {
    let pad = "  ".repeat(depth);
    let mark = if p.result { "true " } else { "false" };
    match &p.seen {
        Some(seen) => {
            let saw = if seen.is_empty() {
                String::from("field missing")
            } else {
                format!(
                    "saw {}",
                    seen.iter().map(short).collect::<Vec<_>>().join(", ")
                )
            };
            let _ = writeln!(out, "{pad}{mark}  {}  ({saw})", p.text);
        }
        None => {
            let word = match p.kind {
                "not" => "not",
                "any" => "any of",
                _ => "all of",
            };
            let _ = writeln!(out, "{pad}{mark}  {word}");
            for c in &p.children {
                write_pred(out, c, depth + 1);
            }
        }
    }
}

/// A value seen, cut at 60 characters for the terminal.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}
