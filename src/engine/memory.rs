//! What a rule remembers (`dedup`, `resolve once`, `at most`), compiled, and the step's
//! input made from a decision: per fired rule, its targets and its clauses with their keys
//! computed from the alert.
//!
//! Owns: keys (the canonical JSON of the `by` values: objects with sorted keys, each
//! path's values as a list, so `[*]` keys on every element) and each rule's clause
//! fingerprint. Never: reads or writes state (the step, `state/`, does), or a clock.

use crate::syntax::ast::millis;
use serde_json::Value;

use super::value::Path;
use super::{Decision, Delivery, RuleSet, Target};
use crate::alert::{Alert, State};
use crate::check::CheckedMemory;
use crate::state::{DedupIntent, RuleChoice, ThrottleIntent};

/// A rule's clauses, compiled.
#[derive(Debug)]
pub(crate) struct RuleMemory {
    /// A fingerprint of the clauses as written: a changed clause starts fresh.
    pub(crate) clauses: u64,
    /// The clauses as written, for listings (`dedup by labels.a for 4h`).
    pub(crate) text: Vec<String>,
    dedup: Option<(Vec<Path>, Option<u64>)>,
    pub(crate) resolve_once: bool,
    throttle: Option<Throttle>,
    /// `delay`, `hold during`, `mute during`.
    pub(crate) gate: Option<crate::check::CheckedGate>,
    /// `group by ... wait ... every ... repeat ...`.
    group: Option<Grouping>,
    /// The `by` fields as written, for explain: the dedup's, then the throttle's.
    by_text: (Vec<String>, Vec<String>),
}

/// A `group` clause, compiled.
#[derive(Debug)]
struct Grouping {
    by: Vec<Path>,
    by_text: Vec<String>,
    wait_ms: u64,
    every_ms: u64,
    repeat_ms: u64,
}

#[derive(Debug)]
struct Throttle {
    by: Vec<Path>,
    count: u64,
    per_ms: u64,
    else_post: Option<u32>,
}

/// Compiles a rule's clauses; `None` for a rule without any.
pub(crate) fn compile(
    m: &CheckedMemory,
    targets: &[crate::check::CheckedTarget],
    windows: &[crate::window::Window],
) -> Option<Box<RuleMemory>> {
    if !m.any() {
        return None;
    }
    let by_text = |paths: &[crate::syntax::ast::FieldPath]| {
        if paths.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
            format!(" by {}", list.join(", "))
        }
    };
    let mut text = Vec::new();
    if let Some(d) = &m.dedup {
        text.push(match d.window_ms {
            Some(ms) => format!("dedup{} for {}", by_text(&d.by), millis(ms)),
            None => format!("dedup{} until resolved", by_text(&d.by)),
        });
    }
    if m.resolve_once {
        text.push(String::from("resolve once"));
    }
    if let Some(g) = &m.gate {
        let window = |i: usize| windows.get(i).map_or("?", |w| w.name.as_str()).to_owned();
        text.push(match *g {
            crate::check::CheckedGate::Delay(ms) => format!("delay {} unless resolved", millis(ms)),
            crate::check::CheckedGate::Hold(i) => format!("hold during {}", window(i)),
            crate::check::CheckedGate::Mute(i) => format!("mute during {}", window(i)),
            crate::check::CheckedGate::Flapping { changes, ms } => {
                format!("mute flapping {changes} changes in {}", millis(ms))
            }
        });
    }
    if let Some(g) = &m.group {
        text.push(format!(
            "group{} wait {} every {} repeat {}",
            by_text(&g.by),
            millis(g.wait_ms),
            millis(g.every_ms),
            millis(g.repeat_ms)
        ));
    }
    if let Some(t) = &m.throttle {
        let mut s = format!(
            "at most {} per {}{}",
            t.count,
            millis(t.per_ms),
            by_text(&t.by)
        );
        if let Some(name) = t.else_post.and_then(|i| targets.get(i)) {
            s.push_str(&format!(" else post {}", name.name));
        }
        text.push(s);
    }
    Some(Box::new(RuleMemory {
        clauses: super::fnv64(text.join(", ").as_bytes()),
        dedup: m
            .dedup
            .as_ref()
            .map(|d| (d.by.iter().map(super::program::path).collect(), d.window_ms)),
        resolve_once: m.resolve_once,
        throttle: m.throttle.as_ref().map(|t| Throttle {
            by: t.by.iter().map(super::program::path).collect(),
            count: t.count,
            per_ms: t.per_ms,
            else_post: t.else_post.map(|i| i as u32),
        }),
        gate: m.gate,
        group: m.group.as_ref().map(|g| Grouping {
            by: g.by.iter().map(super::program::path).collect(),
            by_text: g.by.iter().map(|p| p.to_string()).collect(),
            wait_ms: g.wait_ms,
            every_ms: g.every_ms,
            repeat_ms: g.repeat_ms,
        }),
        by_text: (
            m.dedup
                .as_ref()
                .map(|d| d.by.iter().map(|p| p.to_string()).collect())
                .unwrap_or_default(),
            m.throttle
                .as_ref()
                .map(|t| t.by.iter().map(|p| p.to_string()).collect())
                .unwrap_or_default(),
        ),
        text,
    }))
}

impl RuleMemory {
    /// Whether a resolved alert concerns the rule even when it no longer matches it:
    /// `resolve once` may owe it its resolution; `delay` and `hold during` may hold its
    /// firing, which the resolution cancels; a group may hold it as a member.
    pub(crate) fn on_resolve(&self) -> bool {
        use crate::check::CheckedGate;
        self.resolve_once
            || self.group.is_some()
            || matches!(
                self.gate,
                Some(CheckedGate::Delay(_) | CheckedGate::Hold(_))
            )
    }
}

impl RuleSet {
    /// Fills in each verdict's `key` from `alert`: what both explains show.
    pub(crate) fn name_keys(&self, verdicts: &mut [crate::state::Verdict], alert: &Alert) {
        for v in verdicts {
            v.key = self.verdict_key(v, alert);
        }
    }

    /// The key of a duplicate or throttled verdict, as explain shows it:
    /// `labels.team=db, labels.cluster=eu` (a dedup without `by`: `@id=...`). `None` for
    /// other verdicts, or a throttle without `by` (one window for the whole rule).
    fn verdict_key(&self, v: &crate::state::Verdict, alert: &Alert) -> Option<String> {
        use crate::state::VerdictKind;
        if let VerdictKind::Inhibited { inhibit, .. } = &v.kind {
            let i = self.inner.inhibits.iter().find(|i| &i.name == inhibit)?;
            return i.shown_key(alert);
        }
        let rule = self.inner.rules.iter().find(|r| r.id() == v.rule)?;
        let m = rule.memory.as_deref()?;
        let (paths, texts) = match v.kind {
            VerdictKind::Duplicate { .. } => (&m.dedup.as_ref()?.0, &m.by_text.0),
            VerdictKind::Throttled { .. } | VerdictKind::Diverted { .. } => {
                (&m.throttle.as_ref()?.by, &m.by_text.1)
            }
            _ => return None,
        };
        if paths.is_empty() {
            return match v.kind {
                VerdictKind::Duplicate { .. } => Some(format!("@id={}", alert.id().unwrap_or("-"))),
                _ => None,
            };
        }
        Some(shown_values(paths, texts, alert))
    }
}

/// `labels.team=db, labels.cluster=[eu, us]`: the alert's values at `paths` (written as
/// `texts`), as explain shows a key.
pub(crate) fn shown_values(paths: &[Path], texts: &[String], alert: &Alert) -> String {
    let parts: Vec<String> = paths
        .iter()
        .zip(texts)
        .map(|(p, text)| {
            let mut values = Vec::new();
            p.any(alert, &mut |v| {
                values.push(match v.to_json() {
                    Value::String(s) => s,
                    other => other.to_string(),
                });
                false
            });
            let shown = match values.as_slice() {
                [] => String::from("(missing)"),
                [one] => one.clone(),
                many => format!("[{}]", many.join(", ")),
            };
            format!("{text}={shown}")
        })
        .collect();
    parts.join(", ")
}

/// The canonical JSON of the values at `paths`: `[[values of path 1], [values of path 2]]`.
fn key(paths: &[Path], alert: &Alert) -> Vec<u8> {
    let lists: Vec<Value> = paths
        .iter()
        .map(|p| {
            let mut values = Vec::new();
            p.any(alert, &mut |v| {
                values.push(v.to_json());
                false
            });
            Value::Array(values)
        })
        .collect();
    // A `Value` cannot fail to serialize; its maps keep their keys sorted.
    serde_json::to_vec(&Value::Array(lists)).unwrap_or_default()
}

/// What a reload does to the rules' memory ([`RuleSet::memory_changes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryChanges {
    /// Rules whose clauses are unchanged: their state carries on.
    pub kept: Vec<String>,
    /// Rules whose clauses are new or changed: they start with no state (the old state is
    /// forgotten as it expires).
    pub fresh: Vec<String>,
}

impl RuleSet {
    /// How the memory of `self`'s rules relates to `old`'s: which rules keep their state
    /// (same name, same clauses) and which start fresh.
    pub fn memory_changes(&self, old: &RuleSet) -> MemoryChanges {
        let mut out = MemoryChanges::default();
        for r in &self.inner.rules {
            let Some(m) = &r.memory else { continue };
            let before = old
                .inner
                .rules
                .iter()
                .find(|o| o.id() == r.id())
                .and_then(|o| o.memory.as_ref());
            if before.is_some_and(|b| b.clauses == m.clauses) {
                out.kept.push(r.id().to_owned());
            } else {
                out.fresh.push(r.id().to_owned());
            }
        }
        out
    }
}

/// The input of the step for one alert: see [`Decision::choices`].
pub type Choices<'r> = (Vec<RuleChoice<Delivery<'r>>>, Vec<RuleChoice<Delivery<'r>>>);

impl<'r> Decision<'r> {
    /// Whether a rule that remembers has a say in this alert: a fired rule with a clause,
    /// or, for a resolved alert with an `@id`, a `resolve once` rule that may owe it its
    /// resolution. When not, [`Decision::deliveries`] is what goes out.
    pub fn remembers(&self, alert: &Alert) -> bool {
        self.fired_rules().any(|r| r.memory.is_some())
            || (alert.state() == State::Resolved
                && alert.id().is_some()
                && !self.set.inner.on_resolve.is_empty())
    }

    /// The step function's input (`state::step`): for each fired rule, in order, the
    /// targets it is the first to choose, as deliveries, with its clauses keyed for this
    /// alert; then the probes: for a resolved alert with an `@id`, each `resolve once` rule's
    /// targets that no fired rule chose (the alert may no longer match the rule that
    /// announced it).
    pub fn choices(&self, alert: &'r Alert) -> Choices<'r> {
        let mut chosen: Vec<u32> = Vec::new();
        let mut choices = Vec::new();
        for r in self.fired_rules() {
            let targets: Vec<(String, Delivery<'r>)> = r
                .posts
                .iter()
                .filter(|t| {
                    let first = !chosen.contains(t);
                    if first {
                        chosen.push(**t);
                    }
                    first
                })
                .filter_map(|&t| self.set.inner.targets.get(t as usize))
                .map(|t| (t.name().to_owned(), self.set.delivery(t, alert)))
                .collect();
            if targets.is_empty() {
                continue;
            }
            choices.push(choice(
                self.set,
                r.id(),
                r.memory.as_deref(),
                targets,
                alert,
            ));
        }
        let mut probes = Vec::new();
        if alert.state() == State::Resolved && alert.id().is_some() {
            for &i in self.set.inner.on_resolve.iter() {
                let Some(r) = self.set.inner.rules.get(i as usize) else {
                    continue;
                };
                let targets: Vec<(String, Delivery<'r>)> = r
                    .posts
                    .iter()
                    .filter(|t| !chosen.contains(t))
                    .filter_map(|&t| self.set.inner.targets.get(t as usize))
                    .map(|t| (t.name().to_owned(), self.set.delivery(t, alert)))
                    .collect();
                if !targets.is_empty() {
                    probes.push(choice(
                        self.set,
                        r.id(),
                        r.memory.as_deref(),
                        targets,
                        alert,
                    ));
                }
            }
        }
        (choices, probes)
    }
}

fn choice<'r>(
    set: &'r RuleSet,
    rule: &str,
    memory: Option<&RuleMemory>,
    targets: Vec<(String, Delivery<'r>)>,
    alert: &'r Alert,
) -> RuleChoice<Delivery<'r>> {
    let Some(m) = memory else {
        return RuleChoice {
            rule: rule.to_owned(),
            clauses: 0,
            targets,
            dedup: None,
            resolve_once: false,
            throttle: None,
            gate: None,
            group: None,
        };
    };
    RuleChoice {
        rule: rule.to_owned(),
        clauses: m.clauses,
        targets,
        dedup: m.dedup.as_ref().map(|(by, window_ms)| DedupIntent {
            key: if by.is_empty() {
                alert.id().map(|id| id.as_bytes().to_vec())
            } else {
                Some(key(by, alert))
            },
            window_ms: *window_ms,
        }),
        resolve_once: m.resolve_once,
        throttle: m.throttle.as_ref().map(|t| ThrottleIntent {
            key: key(&t.by, alert),
            count: t.count,
            per_ms: t.per_ms,
            else_post: t
                .else_post
                .and_then(|i| set.inner.targets.get(i as usize))
                .map(|t: &Target| (t.name().to_owned(), set.delivery(t, alert))),
        }),
        gate: m.gate.map(|g| gate(set, g, alert)),
        group: m.group.as_ref().map(|g| crate::state::GroupIntent {
            key: String::from_utf8(key(&g.by, alert)).unwrap_or_default(),
            labels: super::group::group_labels(&g.by, &g.by_text, alert),
            member: super::group::member_json(alert),
            name: alert.name().unwrap_or_default().to_owned(),
            wait_ms: g.wait_ms,
            every_ms: g.every_ms,
            repeat_ms: g.repeat_ms,
        }),
    }
}

/// A rule's gate for an alert received now: a window's end when the alert is inside it.
fn gate(set: &RuleSet, g: crate::check::CheckedGate, alert: &Alert) -> crate::state::Gate {
    use crate::check::CheckedGate;
    use crate::state::Gate;
    let at = alert.received_at();
    let window = |i: usize| {
        let w = set.inner.windows.get(i);
        let name = w.map_or_else(String::new, |w| w.name.clone());
        // Outside the window its end is `at` itself.
        let until = w
            .map(|w| w.end_after(at))
            .filter(|end| *end > at)
            .map(|end| u64::try_from(end.as_millisecond()).unwrap_or(0));
        (name, until)
    };
    match g {
        CheckedGate::Delay(ms) => Gate::Delay { ms },
        CheckedGate::Hold(i) => {
            let (window, until) = window(i);
            Gate::Hold { window, until }
        }
        CheckedGate::Mute(i) => {
            let (window, until) = window(i);
            Gate::Mute { window, until }
        }
        CheckedGate::Flapping { changes, ms } => Gate::Flapping { changes, ms },
    }
}

/// Where the alert goes when it is received, and its verdicts, with the rules' memory in
/// `state` (a test's, or an offline explain's, from empty): the decision's targets, or,
/// when a rule that remembers has a say, what the step function lets through given what
/// earlier alerts left in `state`. `next` numbers the deliveries.
pub(crate) fn step_offline(
    d: &Decision<'_>,
    alert: &Alert,
    silences: &[OfflineSilence],
    state: &mut crate::state::MemoryState,
    next: &mut u64,
    held: &mut Vec<HeldOffline>,
) -> (Vec<String>, Vec<crate::state::Verdict>) {
    let now = u64::try_from(alert.received_at().as_millisecond()).unwrap_or(0);
    let mut facts = crate::state::AlertFacts::new(None, alert.state());
    for s in silences.iter().filter(|s| s.span.in_force(now).is_some()) {
        facts.silencing = true;
        if s.matcher.matches(alert) {
            facts.silences.push(s.id);
        }
    }
    facts.inhibits = d.inhibit_facts(alert);
    if !facts.needs_step() && !d.remembers(alert) {
        return (d.target_names().map(str::to_owned).collect(), Vec::new());
    }
    facts.id = alert.id().map(str::to_owned);
    let (choices, probes) = d.choices(alert);
    let mut sink = Offline {
        next,
        posted: Vec::new(),
        held,
    };
    let verdicts = crate::state::step(state, &facts, choices, probes, now, &mut sink);
    let out = sink.posted;
    (out, verdicts)
}

/// A silence offline (a test's `silence` statement): its id, span and condition.
pub(crate) struct OfflineSilence {
    pub(crate) id: u64,
    pub(crate) span: crate::state::SilenceSpan,
    pub(crate) matcher: super::SilenceMatcher,
}

/// A delivery held offline (`delay`, `hold during`, `mute flapping`): where it goes and
/// when, so that a test's later step sees it go out.
#[derive(Clone, Debug)]
pub(crate) struct HeldOffline {
    pub(crate) target: String,
    pub(crate) id: u64,
    pub(crate) at: u64,
    /// What it checks when due: an inhibit whose source fires then keeps it out.
    pub(crate) recheck: Option<crate::state::Recheck>,
}

/// Takes the held deliveries due by `now`, and answers the targets of those that go: one
/// that an inhibit keeps out at its due time goes nowhere (as in the router's worker).
pub(crate) fn release(
    held: &mut Vec<HeldOffline>,
    state: &mut crate::state::MemoryState,
    now: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    held.retain(|h| {
        let due = h.at <= now;
        if !due {
            return true;
        }
        match &h.recheck {
            Some(c) if c.inhibitor(state, h.at).is_some() => c.forget(state, h.id, h.at),
            _ => out.push(h.target.clone()),
        }
        false
    });
    out
}

/// The step's sink offline: numbered deliveries, the targets of those due now, and those
/// held for later.
struct Offline<'a> {
    next: &'a mut u64,
    posted: Vec<String>,
    held: &'a mut Vec<HeldOffline>,
}

impl<P> crate::state::Sink<P> for Offline<'_> {
    fn id(&mut self) -> u64 {
        *self.next += 1;
        *self.next
    }

    fn deliver(&mut self, target: &str, _: P, id: u64, at: Option<u64>) {
        match at {
            None => self.posted.push(target.to_owned()),
            Some(at) => self.held.push(HeldOffline {
                target: target.to_owned(),
                id,
                at,
                recheck: None,
            }),
        }
    }

    fn cancel(&mut self, _: &str, id: u64) {
        self.held.retain(|h| h.id != id);
    }

    fn recheck(&mut self, delivery: u64, check: crate::state::Recheck) {
        if let Some(h) = self.held.iter_mut().find(|h| h.id == delivery) {
            h.recheck = Some(check);
        }
    }
}

/// A group notification made offline (a test's): its target and the `@name`s of the
/// alerts it carries.
#[derive(Clone, Debug)]
pub(crate) struct GroupPost {
    pub(crate) target: String,
    pub(crate) names: Vec<String>,
}

/// The most flushes one offline catch-up runs: a bound on a long test with a short
/// `every`.
const MAX_OFFLINE_FLUSHES: usize = 100_000;

/// Flushes, in time order, every group due by `until`, each at its own flush time (as the
/// router's clock does); answers the notifications made.
pub(crate) fn flush_offline(
    state: &mut crate::state::MemoryState,
    until: u64,
    next: &mut u64,
) -> Vec<GroupPost> {
    let mut posts = Vec::new();
    for _ in 0..MAX_OFFLINE_FLUSHES {
        let Some(at) = state.next_group_flush().filter(|at| *at <= until) else {
            break;
        };
        let mut sink = GroupSink {
            next: &mut *next,
            posts: &mut posts,
        };
        let mut render = |note: &crate::state::GroupNote<'_>| {
            Some(GroupPost {
                target: note.target.to_owned(),
                names: note
                    .firing
                    .iter()
                    .chain(&note.resolved)
                    .map(|m| m.name.clone())
                    .collect(),
            })
        };
        crate::state::flush(state, at, &mut sink, &mut render);
    }
    posts
}

/// The flush's sink offline: numbered notifications, kept in order.
struct GroupSink<'a> {
    next: &'a mut u64,
    posts: &'a mut Vec<GroupPost>,
}

impl crate::state::Sink<GroupPost> for GroupSink<'_> {
    fn id(&mut self) -> u64 {
        *self.next += 1;
        *self.next
    }

    fn deliver(&mut self, _: &str, post: GroupPost, _: u64, _: Option<u64>) {
        self.posts.push(post);
    }

    fn cancel(&mut self, _: &str, _: u64) {}
}
