//! `inhibit "name" when <target> while <source> is firing matching <paths>`, checked: both
//! conditions as a rule's, the `matching` paths, and a warning when one alert could be
//! both the target and the source (W0402).
//!
//! Owns: deciding, for the cases it can, that two conditions cannot both hold for one
//! alert. Never: evaluates anything.

use std::collections::HashMap;

use super::names::Scope;
use super::{CheckedCondition, Cx, types};
use crate::diagnostic::{Diagnostic, codes};
use crate::syntax::ast::{CmpOp, Condition, FieldPath, InhibitDecl, LiteralKind};

/// An `inhibit`, checked.
#[derive(Debug)]
pub(crate) struct CheckedInhibit<'a> {
    /// Its name.
    pub(crate) name: String,
    /// `file:line`.
    pub(crate) location: String,
    /// What it keeps out.
    pub(crate) target: CheckedCondition<'a>,
    /// What must be firing.
    pub(crate) source: CheckedCondition<'a>,
    /// The fields whose values must be equal (and present) on both.
    pub(crate) matching: &'a [FieldPath],
}

/// Checks an `inhibit` declaration; `None` when a part of it has an error (reported).
pub(crate) fn check_inhibit<'a>(
    cx: &mut Cx<'_>,
    i: &'a InhibitDecl,
    scope: &Scope,
) -> Option<CheckedInhibit<'a>> {
    for p in &i.matching {
        types::check_path(cx, p);
    }
    if !exclusive(&i.target, &i.source) {
        cx.report(
            Diagnostic::warning(
                codes::INHIBIT_OVERLAP,
                format!(
                    "one alert could match both sides of inhibit `{}`",
                    i.name.value
                ),
            )
            .with_primary(i.target.span(), "what it keeps out")
            .with_secondary(i.source.span(), "what must be firing")
            .with_help("make the sides exclusive on a field, as Alertmanager's docs advise: `labels.severity == \"warning\"` while `labels.severity == \"critical\"`")
            .with_note("an alert never inhibits itself, but two alerts that both match both sides inhibit each other: neither is delivered"),
        );
    }
    let location = cx.sources.file_line(i.span);
    let target = types::check_condition(cx, &i.target, scope);
    let source = types::check_condition(cx, &i.source, scope);
    Some(CheckedInhibit {
        name: i.name.value.clone(),
        location,
        target: target?,
        source: source?,
        matching: &i.matching,
    })
}

/// Whether no alert can match both conditions, as far as equalities tell: some field is
/// required by both to be one of two disjoint sets of values (`==`, `in`, at the top of
/// each condition or of one of its `and`s). `false` when that cannot be shown.
fn exclusive(a: &Condition, b: &Condition) -> bool {
    let (a, b) = (required(a), required(b));
    a.iter().any(|(path, values)| {
        b.get(path)
            .is_some_and(|other| values.iter().all(|v| !other.contains(v)))
    })
}

/// The values each field must have for `c` to hold: from `field == literal` and `field in
/// [list]` at its top, or in its top-level `and`.
fn required(c: &Condition) -> HashMap<String, Vec<&LiteralKind>> {
    let mut out: HashMap<String, Vec<&LiteralKind>> = HashMap::new();
    let parts: Vec<&Condition> = match c {
        Condition::All(cs) => cs.iter().collect(),
        other => vec![other],
    };
    for part in parts {
        let Condition::Compare(cmp) = part else {
            continue;
        };
        let values: Vec<&LiteralKind> = match (&cmp.op, &cmp.value.kind) {
            (CmpOp::Eq, LiteralKind::List(_)) => continue,
            (CmpOp::Eq, v) => vec![v],
            (CmpOp::In, LiteralKind::List(items)) => items.iter().map(|l| &l.kind).collect(),
            _ => continue,
        };
        let key = cmp.path.to_string();
        match out.get_mut(&key) {
            // Two requirements on one field: both hold, so only the values in both.
            Some(existing) => existing.retain(|v| values.contains(v)),
            None => {
                out.insert(key, values);
            }
        }
    }
    out
}
