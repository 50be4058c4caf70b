//! Fields each sender sends: a rule that says `@source == "alibaba"` and uses a field no
//! Alibaba alert has gets a warning with a suggestion. The lists follow `docs/sources.md`.
//!
//! Owns: the list of top-level fields per sender (one place: the editor's completion and
//! hover will read [`known_fields`] too). Never: an error (a sender may add a field before
//! this list knows it, so an unknown field is a warning), or a judgement on a rule not
//! tied to one sender (`generic`, or no `@source ==`).

use super::Cx;
use super::names::suggest;
use crate::alert::Source;
use crate::diagnostic::{Diagnostic, Span, codes};
use crate::syntax::ast::{Action, CmpOp, Condition, FieldPath, LiteralKind, Rule};

/// Alibaba CloudMonitor callbacks: threshold, event and multi-dimension forms.
const ALIBABA: &[&str] = &[
    // Threshold callbacks (documented, sample and observed fields).
    "alertName",
    "alertState",
    "curValue",
    "dimensions",
    "expression",
    "instanceName",
    "metricName",
    "metricProject",
    "namespace",
    "preTriggerLevel",
    "ruleId",
    "timestamp",
    "triggerLevel",
    "userId",
    "signature",
    "lastTime",
    "rawMetricName",
    "groupId",
    "productGroupName",
    "regionId",
    "regionName",
    "customLabels",
    "transId",
    "unit",
    // System events.
    "eventTime",
    "id",
    "level",
    "name",
    "product",
    "resourceId",
    "ver",
    "content",
    "traceId",
    "status",
    "eventType",
    "groupId",
    "instanceName",
];

/// Yandex Monitoring, as a Cloud Function forwards it.
const YANDEX: &[&str] = &[
    "alertId",
    "alertName",
    "folderId",
    "cloudId",
    "status",
    "alertStatus",
    "annotations",
    "labels",
];

/// One alert of an Alertmanager webhook (after splitting), with the group's fields.
const ALERTMANAGER: &[&str] = &[
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
    // Group fields, kept on every alert of the group.
    "version",
    "groupKey",
    "truncatedAlerts",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "notification_reason",
    "routeLabels",
];

/// One alert of Prometheus's `/api/v2/alerts` array.
const PROMETHEUS: &[&str] = &[
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
];

/// What Grafana adds to the Alertmanager shape.
const GRAFANA_EXTRA: &[&str] = &[
    "orgId",
    "state",
    "title",
    "message",
    "appVersion",
    "values",
    "valueString",
    "silenceURL",
    "dashboardURL",
    "panelURL",
    "imageURL",
    "ruleUID",
    "enrichments",
];

/// The top-level fields a source's alerts may have; `None` for `generic`.
pub(crate) fn known_fields(source: Source) -> Option<Vec<&'static str>> {
    Some(match source {
        Source::Alibaba => ALIBABA.to_vec(),
        Source::Yandex => YANDEX.to_vec(),
        Source::Alertmanager => ALERTMANAGER.to_vec(),
        Source::Prometheus => PROMETHEUS.to_vec(),
        Source::Grafana => ALERTMANAGER.iter().chain(GRAFANA_EXTRA).copied().collect(),
        Source::Generic => return None,
    })
}

/// The source a rule is constrained to: `@source == "x"` as the condition or one operand
/// of its top-level `and`.
fn constrained_source(c: &Condition) -> Option<Source> {
    let is_source = |c: &Condition| match c {
        Condition::Compare(cmp)
            if cmp.op == CmpOp::Eq && cmp.path.meta.as_deref() == Some("source") =>
        {
            match &cmp.value.kind {
                LiteralKind::String(s) => Source::from_name(s),
                _ => None,
            }
        }
        _ => None,
    };
    match c {
        Condition::All(cs) => cs.iter().find_map(is_source),
        c => is_source(c),
    }
}

/// Every field path a condition reads, in order.
fn paths<'a>(c: &'a Condition, out: &mut Vec<&'a FieldPath>) {
    match c {
        Condition::Any(cs) | Condition::All(cs) => cs.iter().for_each(|c| paths(c, out)),
        Condition::Not(inner, _) => paths(inner, out),
        Condition::Exists(p, _) => out.push(p),
        Condition::Compare(cmp) => out.push(&cmp.path),
        Condition::During(..) => {}
    }
}

/// Warns about each field a rule reads that no alert of its sender has, with the nearest
/// known field, or the first few fields when none is near.
pub(crate) fn check_rule_fields(cx: &mut Cx<'_>, r: &Rule) {
    let Some(source) = constrained_source(&r.condition) else {
        return;
    };
    let mut ps = Vec::new();
    paths(&r.condition, &mut ps);
    for a in &r.actions {
        match a {
            Action::Dedup(d) => ps.extend(&d.by),
            Action::Throttle(t) => ps.extend(&t.by),
            _ => {}
        }
    }
    check_fields(cx, source, ps);
}

/// The sender a rule is constrained to (`@source == "x"`), if any: what its clauses may
/// assume about resend periods, say.
pub(crate) fn rule_source(r: &Rule) -> Option<Source> {
    constrained_source(&r.condition)
}

/// Warns about each of `ps` that no alert of `source` has.
fn check_fields(cx: &mut Cx<'_>, source: Source, ps: Vec<&FieldPath>) {
    let Some(known) = known_fields(source) else {
        return;
    };
    for p in ps {
        let Some(first) = p.first_key() else { continue };
        if known.contains(&first) {
            continue;
        }
        let d = Diagnostic::warning(codes::UNKNOWN_FIELD, format!("no {source} alert has a field `{first}`"))
            .with_primary(p.span, format!("not a field of {source} alerts"))
            .with_note(format!("this rule only matches alerts with `@source == \"{source}\"`; docs/sources.md lists their fields"));
        let d = match suggest(first, known.iter().copied()) {
            Some(s) => {
                // The fix replaces the first step only, when it is written bare.
                let at = Span::new(
                    p.span.file,
                    p.span.start as usize,
                    p.span.start as usize + first.len(),
                );
                let d = d.with_help(format!("did you mean `{s}`?"));
                if cx.sources.snippet(at) == first {
                    d.with_fix(at, s, format!("replace with `{s}`"))
                } else {
                    d
                }
            }
            None => d.with_help(format!(
                "{source} alerts have {}",
                known
                    .iter()
                    .take(8)
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
                    + ", ..."
            )),
        };
        cx.report(d);
    }
}
