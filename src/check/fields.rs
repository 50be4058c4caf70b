//! Fields each sender sends: a rule that says `@source == "alibaba"` and uses a field no
//! Alibaba alert has gets a warning with a suggestion. The lists follow `docs/sources.md`.
//!
//! Owns: the list of top-level fields per sender and what each holds (one place: the
//! editor's completion and hover read [`fields_of`]). Never: an error (a sender may add a field before
//! this list knows it, so an unknown field is a warning), or a judgement on a rule not
//! tied to one sender (`generic`, or no `@source ==`).

use super::Cx;
use super::names::suggest;
use crate::alert::Source;
use crate::diagnostic::{Diagnostic, Span, codes};
use crate::syntax::ast::{Action, CmpOp, Condition, FieldPath, LiteralKind, Rule};

/// A field a sender sends, and what it holds: what hover in the editor shows.
type Field = (&'static str, &'static str);

/// Alibaba CloudMonitor callbacks: threshold, event and multi-dimension forms.
const ALIBABA: &[Field] = &[
    // Threshold callbacks (documented, sample and observed fields).
    (
        "alertName",
        "the alert rule's name, such as `CPU above 90%`; becomes `@name`",
    ),
    (
        "alertState",
        "`ALERT` or `ALARM` (firing), `OK` (resolved), `INSUFFICIENT_DATA` (no data); becomes `@state`",
    ),
    (
        "curValue",
        "the metric's value when the rule was evaluated, as a string holding a number (`\"95.5\"`)",
    ),
    (
        "dimensions",
        "the monitored resource, such as `{instanceId=i-1, userId=2}`: a string Alibaba sends, made an object for rules",
    ),
    (
        "expression",
        "the threshold as Alibaba renders it: `$Average>=90`",
    ),
    ("instanceName", "the monitored instance's display name"),
    ("metricName", "the metric, such as `CPUUtilization`"),
    (
        "metricProject",
        "the metric's project, such as `acs_ecs_dashboard`",
    ),
    (
        "namespace",
        "the metric's namespace, such as `acs_ecs_dashboard`",
    ),
    (
        "preTriggerLevel",
        "the level before this change: `CRITICAL`, `WARN`, `INFO`",
    ),
    ("ruleId", "the alert rule's ID; part of `@id`"),
    (
        "timestamp",
        "when the callback was sent, in milliseconds since the epoch (a string)",
    ),
    ("triggerLevel", "the level now: `CRITICAL`, `WARN`, `INFO`"),
    ("userId", "the Alibaba Cloud account ID"),
    ("signature", "Alibaba's signature of the callback"),
    (
        "lastTime",
        "how long the alert has lasted, as Alibaba words it",
    ),
    (
        "rawMetricName",
        "the metric's name before Alibaba renamed it for display",
    ),
    ("groupId", "the application group's ID"),
    ("productGroupName", "the product group's name"),
    ("regionId", "the region, such as `cn-hangzhou`"),
    ("regionName", "the region's display name"),
    ("customLabels", "the labels set on the alert rule"),
    ("transId", "the callback's transaction ID"),
    ("unit", "the metric's unit, such as `%`"),
    // System events.
    ("eventTime", "a system event: when it happened"),
    ("id", "a system event: its ID; becomes `@id`"),
    ("level", "a system event: `CRITICAL`, `WARN`, `INFO`"),
    (
        "name",
        "a system event: its name, such as `Instance:StateChange`; becomes `@name`",
    ),
    ("product", "a system event: the product, such as `ECS`"),
    (
        "resourceId",
        "a system event: the resource it concerns, as an ARN",
    ),
    ("ver", "a system event: the format's version"),
    ("content", "a system event: its details, an object"),
    ("traceId", "a system event: its trace ID"),
    (
        "status",
        "a system event: the resource's status, such as `Stopped`",
    ),
    ("eventType", "a system event: its type"),
];

/// Yandex Monitoring, as a Cloud Function forwards it.
const YANDEX: &[Field] = &[
    ("alertId", "the alert's ID; becomes `@id`"),
    ("alertName", "the alert's name; becomes `@name`"),
    ("folderId", "the cloud folder the alert belongs to"),
    ("cloudId", "the cloud the alert belongs to"),
    (
        "status",
        "older revisions: `ALARM`, `OK`, `WARN`, `NO_DATA`, `ERROR`; becomes `@state`",
    ),
    (
        "alertStatus",
        "`ALARM`, `OK`, `WARN`, `NO_DATA`, `ERROR`; becomes `@state`",
    ),
    (
        "annotations",
        "the alert's annotations, an object of strings",
    ),
    (
        "labels",
        "a multialert's sub-alert labels, an object of strings; part of `@id`",
    ),
];

/// The fields Alertmanager and Prometheus alerts share, with what each holds.
const LABELS: Field = (
    "labels",
    "the alert's labels: `labels.alertname`, `labels.severity`, ...",
);
const ANNOTATIONS: Field = (
    "annotations",
    "the alert's annotations: `annotations.summary`, ...",
);
const STARTS_AT: Field = ("startsAt", "when the alert started firing (RFC 3339)");
const GENERATOR_URL: Field = ("generatorURL", "a link to the expression in Prometheus");

/// One alert of an Alertmanager webhook (after splitting), with the group's fields.
const ALERTMANAGER: &[Field] = &[
    (
        "status",
        "this alert's `firing` or `resolved`; becomes `@state`",
    ),
    LABELS,
    ANNOTATIONS,
    STARTS_AT,
    (
        "endsAt",
        "when it resolved, or `0001-01-01T00:00:00Z` while firing",
    ),
    GENERATOR_URL,
    (
        "fingerprint",
        "Alertmanager's hash of the labels; becomes `@id`",
    ),
    // Group fields, kept on every alert of the group.
    (
        "version",
        "the webhook's format version: `\"4\"` (group field)",
    ),
    ("groupKey", "the Alertmanager group's key (group field)"),
    (
        "truncatedAlerts",
        "how many alerts Alertmanager left out of the webhook (group field)",
    ),
    (
        "receiver",
        "the Alertmanager receiver that sent the webhook (group field)",
    ),
    (
        "groupLabels",
        "the labels the group is formed by (group field)",
    ),
    (
        "commonLabels",
        "the labels every alert of the group shares (group field)",
    ),
    (
        "commonAnnotations",
        "the annotations every alert of the group shares (group field)",
    ),
    (
        "externalURL",
        "a link to the Alertmanager that sent it (group field)",
    ),
    (
        "notification_reason",
        "why Alertmanager notified, in newer versions (group field)",
    ),
    (
        "routeLabels",
        "the route's labels, in newer versions (group field)",
    ),
];

/// One alert of Prometheus's `/api/v2/alerts` array.
const PROMETHEUS: &[Field] = &[
    LABELS,
    ANNOTATIONS,
    STARTS_AT,
    (
        "endsAt",
        "when it ends: a resolved alert's end is in the past",
    ),
    GENERATOR_URL,
];

/// What Grafana adds to the Alertmanager shape.
const GRAFANA_EXTRA: &[Field] = &[
    ("orgId", "the Grafana organization's ID"),
    ("state", "the group's state: `alerting` or `ok`"),
    ("title", "the notification's title"),
    ("message", "the notification's rendered message"),
    ("appVersion", "the Grafana version that sent it"),
    (
        "values",
        "the values of the query's expressions, by reference ID (`values.B`)",
    ),
    (
        "valueString",
        "the values as one string: `[ var='B' labels={...} value=95 ]`",
    ),
    ("silenceURL", "a link that creates a silence for this alert"),
    ("dashboardURL", "a link to the alert's dashboard"),
    ("panelURL", "a link to the alert's panel"),
    ("imageURL", "a link to a screenshot of the panel"),
    ("ruleUID", "the alert rule's UID"),
    (
        "enrichments",
        "data added by Grafana's enrichment, in newer versions",
    ),
];

/// Every field a source's alerts may have, with what it holds; `None` for `generic`.
pub(crate) fn fields_of(source: Source) -> Option<Vec<Field>> {
    Some(match source {
        Source::Alibaba => ALIBABA.to_vec(),
        Source::Yandex => YANDEX.to_vec(),
        Source::Alertmanager => ALERTMANAGER.to_vec(),
        Source::Prometheus => PROMETHEUS.to_vec(),
        Source::Grafana => ALERTMANAGER.iter().chain(GRAFANA_EXTRA).copied().collect(),
        Source::Generic => return None,
    })
}

/// The top-level fields a source's alerts may have; `None` for `generic`.
pub(crate) fn known_fields(source: Source) -> Option<Vec<&'static str>> {
    fields_of(source).map(|fs| fs.into_iter().map(|(name, _)| name).collect())
}

/// The source a rule is constrained to: `@source == "x"` as the condition or one operand
/// of its top-level `and`.
pub(crate) fn constrained_source(c: &Condition) -> Option<Source> {
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
