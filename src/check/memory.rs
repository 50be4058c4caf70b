//! Clauses that give a rule memory: `dedup`, `resolve once`, `at most ... per ...`.
//!
//! Owns: what each clause may say (a window above zero, a count above zero, key fields
//! that are field paths, an `else` target that is declared), that a rule with memory has a
//! name (its state is keyed by the name; a `file:line` moves when a line is added above
//! it), and the warning for a `dedup` shorter than its sender's own resend period. Never:
//! decides what a clause does to an alert (that is the step function's, `state/`).

use super::names::Scope;
use super::types::check_path;
use super::{Cx, fields};
use crate::alert::Source;
use crate::diagnostic::{Diagnostic, Span, codes};
use crate::syntax::ast::{self, Action, DedupWindow, FieldPath};

/// `dedup`, checked.
#[derive(Debug, Clone)]
pub(crate) struct CheckedDedup {
    /// The key's fields; empty: `@id`.
    pub(crate) by: Vec<FieldPath>,
    /// `for <d>` in milliseconds; `None`: `until resolved`.
    pub(crate) window_ms: Option<u64>,
}

/// `at most <n> per <d>`, checked.
#[derive(Debug, Clone)]
pub(crate) struct CheckedThrottle {
    /// At most this many alerts...
    pub(crate) count: u64,
    /// ...in any window of this many milliseconds.
    pub(crate) per_ms: u64,
    /// The key's fields; empty: one window for the rule.
    pub(crate) by: Vec<FieldPath>,
    /// `else post <target>`: the target's index.
    pub(crate) else_post: Option<usize>,
}

/// When a rule's deliveries may go: `delay`, `hold during`, `mute during`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckedGate {
    /// `delay <d> unless resolved`, in milliseconds.
    Delay(u64),
    /// `hold during <window>`: the window's index.
    Hold(usize),
    /// `mute during <window>`: the window's index.
    Mute(usize),
    /// `mute flapping <changes> changes in <ms>`.
    Flapping { changes: u64, ms: u64 },
}

/// `group by <paths> wait <d> every <d> repeat <d>`, checked, in milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct CheckedGroup {
    /// The fields whose values make a group; empty: one group.
    pub(crate) by: Vec<FieldPath>,
    pub(crate) wait_ms: u64,
    pub(crate) every_ms: u64,
    /// The effective reminder period: `repeat` rounded up to a multiple of `every` (a
    /// reminder goes at a flush), as the warning W0403 says when it differs.
    pub(crate) repeat_ms: u64,
}

/// `repeat` when a `group` does not say: Alertmanager's `repeat_interval`.
pub(crate) const DEFAULT_REPEAT_MS: u64 = 4 * 3_600_000;

/// The shortest `every`: a group is notified at most once a second.
pub(crate) const MIN_EVERY_MS: u64 = 1_000;

/// The most changes `mute flapping` counts: each is a time kept per alert.
pub(crate) const MAX_FLAP_CHANGES: u64 = 100;

/// What a rule asks the state to remember.
#[derive(Debug, Clone, Default)]
pub(crate) struct CheckedMemory {
    pub(crate) dedup: Option<CheckedDedup>,
    pub(crate) resolve_once: bool,
    pub(crate) throttle: Option<CheckedThrottle>,
    pub(crate) gate: Option<CheckedGate>,
    pub(crate) group: Option<CheckedGroup>,
}

impl CheckedMemory {
    /// Whether the rule remembers anything.
    pub(crate) fn any(&self) -> bool {
        self.dedup.is_some()
            || self.resolve_once
            || self.throttle.is_some()
            || self.gate.is_some()
            || self.group.is_some()
    }
}

/// The longest `delay`: a firing held longer than a week is better served by a window.
pub(crate) const MAX_DELAY_MS: u64 = 7 * 24 * 3_600_000;

/// The largest throttle count: a window keeps (and rewrites with each alert) one time per
/// alert it let through.
pub(crate) const MAX_THROTTLE_COUNT: u64 = 1_000;

/// Senders that repeat a firing alert on their own, and how often.
const RESEND: &[(Source, u64, &str)] = &[(
    Source::Prometheus,
    60_000,
    "Prometheus re-sends a firing alert every `--rules.alert.resend-delay` (1m by default)",
)];

/// Checks the clauses of rule `r`; `posted` marks the targets an `else post` uses.
pub(crate) fn check_memory(
    cx: &mut Cx<'_>,
    r: &ast::Rule,
    scope: &Scope,
    posted: &mut [bool],
) -> CheckedMemory {
    let mut out = CheckedMemory::default();
    let mut first: Option<Span> = None;
    let mut seen: Vec<(&str, Span)> = Vec::new();
    for a in &r.actions {
        let (name, span) = match a {
            Action::Dedup(d) => ("dedup", d.span),
            Action::ResolveOnce(span) => ("resolve once", *span),
            Action::Throttle(t) => ("at most", t.span),
            Action::Delay(_, _, span) => ("delay", *span),
            Action::HoldDuring(_, span) => ("hold during", *span),
            Action::MuteDuring(_, span) => ("mute during", *span),
            Action::MuteFlapping(f) => ("mute flapping", f.span),
            Action::Group(g) => ("group", g.span),
            _ => continue,
        };
        let gates = ["delay", "hold during", "mute during", "mute flapping"];
        if gates.contains(&name)
            && let Some((other, at)) = seen.iter().find(|(n, _)| gates.contains(n) && *n != name)
        {
            cx.report(
                Diagnostic::error(
                    codes::BAD_CLAUSE,
                    format!("`{name}` and `{other}` both say when the rule's deliveries go"),
                )
                .with_primary(span, "a second gate")
                .with_secondary(*at, "the first")
                .with_help("keep one: a rule is delayed, held or muted during a window, or muted when flapping; write two rules for two windows"),
            );
            continue;
        }
        first.get_or_insert(span);
        if let Some((_, at)) = seen.iter().find(|(n, _)| *n == name) {
            cx.report(
                Diagnostic::error(codes::BAD_CLAUSE, format!("`{name}` is given twice"))
                    .with_primary(span, "given again here")
                    .with_secondary(*at, "first given here")
                    .with_help("keep one of them"),
            );
            continue;
        }
        seen.push((name, span));
        match a {
            Action::Dedup(d) => out.dedup = dedup(cx, d, r),
            Action::ResolveOnce(_) => out.resolve_once = true,
            Action::Throttle(t) => out.throttle = throttle(cx, t, scope, posted),
            Action::Delay(d, dspan, _) => {
                let ms = d.as_millis().unwrap_or(u64::MAX);
                if ms == 0 || ms > MAX_DELAY_MS {
                    cx.report(
                        Diagnostic::error(codes::BAD_CLAUSE, "a `delay` takes from 1ms to 7d")
                            .with_primary(*dspan, if ms == 0 { "zero delays nothing" } else { "longer than a week" })
                            .with_help("for example: `delay 2m unless resolved`; for quiet hours, `hold during <window>`"),
                    );
                } else {
                    out.gate = Some(CheckedGate::Delay(ms));
                }
            }
            Action::HoldDuring(w, _) => {
                out.gate = scope.resolve_window(cx, w).map(CheckedGate::Hold);
            }
            Action::MuteDuring(w, _) => {
                out.gate = scope.resolve_window(cx, w).map(CheckedGate::Mute);
            }
            Action::MuteFlapping(f) => out.gate = flapping(cx, f),
            Action::Group(g) => out.group = group(cx, g),
            _ => {}
        }
    }
    let Some(first) = first else {
        return out;
    };
    // A group decides itself what is notified when: resolutions once, repeats, timing.
    if let Some((_, at)) = seen.iter().find(|(n, _)| *n == "group")
        && let Some((other, other_at)) = seen.iter().find(|(n, _)| *n != "group")
    {
        cx.report(
            Diagnostic::error(
                codes::BAD_CLAUSE,
                format!("`group` does not combine with `{other}`"),
            )
            .with_primary(*other_at, "remove this")
            .with_secondary(*at, "decides when the group's notifications go")
            .with_note("a group already sends each resolution once, only for alerts it notified firing, and repeats at most every `repeat`")
            .with_help("write a second rule for the other clause"),
        );
        out.group = None;
    }
    // `resolve once` sends an owed resolution at once, which would step around the damping.
    if let (Some((_, flap)), Some((_, once))) = (
        seen.iter().find(|(n, _)| *n == "mute flapping"),
        seen.iter().find(|(n, _)| *n == "resolve once"),
    ) {
        cx.report(
            Diagnostic::error(
                codes::BAD_CLAUSE,
                "`mute flapping` and `resolve once` pull against each other",
            )
            .with_primary(*once, "would send each resolution at once")
            .with_secondary(*flap, "holds every state until it is stable")
            .with_help("keep `mute flapping`: the state that goes once stable is the resolution, when the alert settles resolved"),
        );
        out.gate = None;
    }
    if r.name.is_none() {
        cx.report(
            Diagnostic::error(
                codes::STATEFUL_UNNAMED,
                "a rule that remembers needs a name",
            )
            .with_primary(first, "this clause keeps state")
            .with_secondary(r.span, "the rule has no name")
            .with_help("name it: `rule \"prometheus pages\" when ...`")
            .with_note("state is kept by the rule's name, so that it survives a reload and an edit elsewhere in the file; a `file:line` changes when a line is added above the rule"),
        );
    }
    if !r.actions.iter().any(|a| matches!(a, Action::Post(_))) {
        cx.report(
            Diagnostic::warning(
                codes::REDUNDANT_ACTION,
                "redundant action: a clause on a rule that posts nothing",
            )
            .with_primary(first, "remembers nothing")
            .with_note("`dedup`, `resolve once`, `at most`, `delay`, `hold during` and `mute during` act on the rule's `post`s"),
        );
    }
    out
}

fn dedup(cx: &mut Cx<'_>, d: &ast::Dedup, r: &ast::Rule) -> Option<CheckedDedup> {
    for p in &d.by {
        check_path(cx, p);
    }
    let window_ms = match d.window {
        DedupWindow::UntilResolved => None,
        DedupWindow::For(w, span) => {
            let ms = w.as_millis()?;
            if ms == 0 {
                cx.report(
                    Diagnostic::error(
                        codes::BAD_CLAUSE,
                        "a `dedup` window of zero keeps nothing out",
                    )
                    .with_primary(span, "zero")
                    .with_help("write a window, such as `dedup for 4h`, or `dedup until resolved`"),
                );
                return None;
            }
            if let Some(source) = fields::rule_source(r)
                && let Some((_, resend, why)) = RESEND.iter().find(|(s, ..)| *s == source)
                && ms < *resend
            {
                cx.report(
                    Diagnostic::warning(
                        codes::DEDUP_SHORTER_THAN_RESEND,
                        format!("this `dedup` window is shorter than how often {source} re-sends an alert"),
                    )
                    .with_primary(span, "every re-send arrives after this window ends")
                    .with_note(*why)
                    .with_help("use a window longer than the resend period (`for 4h`), or `until resolved`"),
                );
            }
            Some(ms)
        }
    };
    Some(CheckedDedup {
        by: d.by.clone(),
        window_ms,
    })
}

fn group(cx: &mut Cx<'_>, g: &ast::GroupClause) -> Option<CheckedGroup> {
    for p in &g.by {
        check_path(cx, p);
    }
    let [wait_span, every_span, repeat_span] = g.spans;
    let wait_ms = g.wait.as_millis()?;
    let every_ms = g.every.as_millis()?;
    let repeat = match &g.repeat {
        Some(r) => r.as_millis()?,
        None => DEFAULT_REPEAT_MS,
    };
    let mut bad = |span, message: &str, help: &str| {
        cx.report(
            Diagnostic::error(codes::BAD_CLAUSE, message.to_owned())
                .with_primary(span, "here")
                .with_help(help.to_owned()),
        );
    };
    if wait_ms > MAX_DELAY_MS {
        bad(
            wait_span,
            "a group's `wait` takes from 0s to 7d",
            "Alertmanager's default is `wait 30s`",
        );
        return None;
    }
    if !(MIN_EVERY_MS..=MAX_DELAY_MS).contains(&every_ms) {
        bad(
            every_span,
            "a group's `every` takes from 1s to 7d",
            "Alertmanager's default is `every 5m`",
        );
        return None;
    }
    if repeat < every_ms || repeat > MAX_DELAY_MS {
        bad(
            repeat_span,
            "a group's `repeat` takes from its `every` to 7d",
            "a reminder goes at a notification time: `every 5m repeat 4h`",
        );
        return None;
    }
    // A reminder goes at a flush: the first at or after `repeat`.
    let repeat_ms = repeat.div_ceil(every_ms) * every_ms;
    if repeat_ms != repeat {
        cx.report(
            Diagnostic::warning(
                codes::GROUP_REPEAT_ROUNDED,
                format!(
                    "reminders go every {}, not {}: a group is notified only every {}",
                    ast::millis(repeat_ms),
                    ast::millis(repeat),
                    ast::millis(every_ms)
                ),
            )
            .with_primary(
                repeat_span,
                format!(
                    "the first notification time at or after it is {}",
                    ast::millis(repeat_ms)
                ),
            )
            .with_help(format!(
                "write `repeat {}` to say what happens, or a multiple of `every`",
                ast::millis(repeat_ms)
            )),
        );
    }
    Some(CheckedGroup {
        by: g.by.clone(),
        wait_ms,
        every_ms,
        repeat_ms,
    })
}

fn flapping(cx: &mut Cx<'_>, f: &ast::Flapping) -> Option<CheckedGate> {
    let changes = f.changes.unwrap_or(u64::MAX);
    if !(2..=MAX_FLAP_CHANGES).contains(&changes) {
        cx.report(
            Diagnostic::error(
                codes::BAD_CLAUSE,
                format!("`mute flapping` counts from 2 to {MAX_FLAP_CHANGES} changes"),
            )
            .with_primary(f.changes_span, "out of range")
            .with_help("for example: `mute flapping 4 changes in 30m`"),
        );
        return None;
    }
    let ms = f.within.as_millis().unwrap_or(u64::MAX);
    if ms == 0 || ms > MAX_DELAY_MS {
        cx.report(
            Diagnostic::error(codes::BAD_CLAUSE, "`mute flapping` counts within 1ms to 7d")
                .with_primary(
                    f.within_span,
                    if ms == 0 {
                        "zero"
                    } else {
                        "longer than a week"
                    },
                )
                .with_help("for example: `mute flapping 4 changes in 30m`"),
        );
        return None;
    }
    Some(CheckedGate::Flapping { changes, ms })
}

fn throttle(
    cx: &mut Cx<'_>,
    t: &ast::Throttle,
    scope: &Scope,
    posted: &mut [bool],
) -> Option<CheckedThrottle> {
    for p in &t.by {
        check_path(cx, p);
    }
    let else_post = match &t.else_post {
        Some(name) => {
            let i = scope.resolve_target(cx, name)?;
            if let Some(p) = posted.get_mut(i) {
                *p = true;
            }
            Some(i)
        }
        None => None,
    };
    let count = t.count?;
    if count == 0 || count > MAX_THROTTLE_COUNT {
        cx.report(
            Diagnostic::error(
                codes::BAD_CLAUSE,
                format!("`at most` takes a count from 1 to {MAX_THROTTLE_COUNT}"),
            )
            .with_primary(t.count_span, "out of range")
            .with_help("for example: `at most 5 per 1m`; to deliver nothing, use `drop`"),
        );
        return None;
    }
    let per_ms = t.per.as_millis()?;
    if per_ms == 0 {
        cx.report(
            Diagnostic::error(
                codes::BAD_CLAUSE,
                "an `at most` window of zero limits nothing",
            )
            .with_primary(t.per_span, "zero")
            .with_help("for example: `at most 5 per 1m`"),
        );
        return None;
    }
    Some(CheckedThrottle {
        count,
        per_ms,
        by: t.by.clone(),
        else_post,
    })
}
