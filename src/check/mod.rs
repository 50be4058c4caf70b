//! Checking: names, types, target settings and fields, across every file of a folder.
//!
//! The check pass sees all files at once (a target declared in one file is used in
//! another), collects every problem, and on success hands the engine plain, resolved data:
//! target indices instead of names, environment variables substituted, regexes compiled.
//!
//! Owns: the order of the checks (names first, since everything else refers to them),
//! which problems are errors (the folder does not load) and which are warnings (it loads
//! and says so), and the checked data the engine compiles. Never: evaluates an alert, or
//! shows a secret's value (a diagnostic keeps `${env.NAME}` as written). The rooms:
//! `names.rs` (the namespace), `types.rs` (conditions), `targets.rs` (settings and
//! secrets), `fields.rs` (each sender's fields), and test blocks here.

mod fields;
#[cfg(feature = "lsp")]
pub(crate) use fields::{constrained_source, fields_of};
mod inhibit;
mod memory;
mod names;
mod reach;
mod regex;
pub(crate) mod silence;
mod targets;
mod types;
mod windows;

pub use silence::MAX_SILENCE_CONDITION;
pub(crate) use silence::check_silence;
pub(crate) use windows::at_clock;
#[cfg(feature = "server")]
pub(crate) use windows::duration_ms;

use serde_json::Value;

use crate::alert::Source;
use crate::diagnostic::{Diagnostic, SourceMap, Span, codes};
use crate::syntax::ast::{self, CmpOp, FieldPath, Item, Literal};
pub(crate) use regex::Matcher;
#[cfg(test)]
pub(crate) use regex::regex_literals;

pub(crate) use inhibit::CheckedInhibit;
pub(crate) use memory::{CheckedGate, CheckedMemory};
pub(crate) use targets::{BodyTemplate, Method, SecretText, TextPart};

/// Where a rule set reads `${env.NAME}` from. The default reads the process environment.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A rule's condition once checked, borrowing the parsed file's paths and literals. A
/// regex match carries the regex the checker compiled, so a compiled rule can never have a
/// regex test without its regex.
#[derive(Debug)]
pub(crate) enum CheckedCondition<'a> {
    Any(Vec<CheckedCondition<'a>>),
    All(Vec<CheckedCondition<'a>>),
    Not(Box<CheckedCondition<'a>>, Span),
    Exists(&'a FieldPath, Span),
    /// `during NAME`: window `.0` of [`Checked::windows`].
    During(u32, Span),
    /// A comparison with a value: any operator but `=~` and `!~`.
    Compare {
        path: &'a FieldPath,
        op: ValueOp,
        /// `!=`, `not in`: exactly `not` of the positive operator.
        negate: bool,
        value: &'a Literal,
        span: Span,
    },
    /// `=~` (`negate`: `!~`), with its regex.
    Match {
        path: &'a FieldPath,
        negate: bool,
        regex: CheckedRegex<'a>,
        span: Span,
    },
}

/// A regex of a rule, ready to match, with the text it was made from.
#[derive(Debug)]
pub(crate) struct CheckedRegex<'a> {
    pub(crate) pattern: &'a str,
    pub(crate) flags: &'a str,
    pub(crate) matcher: Matcher,
}

/// A comparison operator other than `=~` and `!~`, in its positive form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ValueOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Contains,
    StartsWith,
    EndsWith,
}

impl ValueOp {
    /// The positive operator of `op` and whether it is negated; `None` for `=~` and `!~`.
    pub(crate) fn of(op: CmpOp) -> Option<(ValueOp, bool)> {
        Some(match op {
            CmpOp::Eq => (ValueOp::Eq, false),
            CmpOp::Ne => (ValueOp::Eq, true),
            CmpOp::Lt => (ValueOp::Lt, false),
            CmpOp::Le => (ValueOp::Le, false),
            CmpOp::Gt => (ValueOp::Gt, false),
            CmpOp::Ge => (ValueOp::Ge, false),
            CmpOp::In => (ValueOp::In, false),
            CmpOp::NotIn => (ValueOp::In, true),
            CmpOp::Contains => (ValueOp::Contains, false),
            CmpOp::StartsWith => (ValueOp::StartsWith, false),
            CmpOp::EndsWith => (ValueOp::EndsWith, false),
            CmpOp::Match | CmpOp::NotMatch => return None,
        })
    }
}

/// A rule, resolved.
#[derive(Debug)]
pub(crate) struct CheckedRule<'a> {
    /// The rule's name, or `file:line`.
    pub(crate) id: String,
    /// `file:line` of the rule.
    pub(crate) location: String,
    pub(crate) condition: CheckedCondition<'a>,
    /// Indices into `Checked::targets`, in action order.
    pub(crate) posts: Vec<usize>,
    /// `stop`: no later rule is evaluated once this one matches.
    pub(crate) stop: bool,
    /// `drop`: like `stop`, and the alert counts as dropped.
    pub(crate) drop: bool,
    /// `dedup`, `resolve once`, `at most`: what the rule remembers.
    pub(crate) memory: CheckedMemory,
}

/// A target, resolved.
#[derive(Debug)]
pub(crate) struct CheckedTarget {
    pub(crate) name: String,
    /// `file:line` of the declaration.
    pub(crate) location: String,
    /// An absolute http(s) URL, `${env.NAME}` resolved.
    pub(crate) url: SecretText,
    pub(crate) method: Method,
    /// Valid names and single-line values, `${env.NAME}` resolved.
    pub(crate) headers: Vec<(String, SecretText)>,
    /// The body template; `None` sends the alert as received.
    pub(crate) body: Option<BodyTemplate>,
    /// Per attempt, 1 ms to 1 h.
    pub(crate) timeout_ms: u64,
    /// Retries after the first attempt, at most `targets::MAX_RETRIES`.
    pub(crate) retries: u32,
    /// The target (index) that receives what this one cannot take, and where it is named.
    pub(crate) fallback: Option<(usize, Span)>,
}

/// A test block, resolved.
#[derive(Debug)]
pub(crate) struct CheckedTest {
    pub(crate) name: String,
    /// `file:line` of the block.
    pub(crate) location: String,
    /// `source NAME`: the sender whose adapter the alert goes through; `None` takes it as
    /// a generic alert.
    pub(crate) source: Option<Source>,
    /// The alerts in the order the test sends them, each at its time with what is
    /// expected of it: one step for a test without `at`/`after`.
    pub(crate) steps: Vec<CheckedStep>,
}

/// Where a test's clock starts unless its first statement sets it: Monday 2026-01-05
/// 00:00 UTC, in milliseconds since the Unix epoch. A fixed moment, so that a test gives the
/// same result on every day it runs.
pub(crate) const TEST_START_MS: u64 = 1_767_571_200_000;

/// One alert of a test, at its moment on the test's clock.
#[derive(Debug)]
pub(crate) struct CheckedStep {
    /// Milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    /// The step's time as a failure names it: `5m` (from the test's start) or
    /// `2026-12-24 09:00 Europe/Berlin`.
    pub(crate) label: String,
    /// The alert as a sender would post it: plain JSON. `None` for a step that only looks
    /// at what held deliveries went out by its time (`at 07:00  expect post chat`).
    pub(crate) alert: Option<Value>,
    pub(crate) expects: Vec<CheckedExpect>,
    /// Silences added at this step's moment (`silence "..." for 2h`), before its alert.
    pub(crate) silences: Vec<CheckedSilence>,
}

/// A test's `silence "<condition>" for <d>`: checked, in force from its step's moment.
#[derive(Debug)]
pub(crate) struct CheckedSilence {
    /// The condition (it compiles: it was checked).
    pub(crate) condition: String,
    /// How long it lasts (ms).
    pub(crate) for_ms: u64,
}

/// An expectation with the target resolved to an index.
#[derive(Debug)]
pub(crate) enum CheckedExpect {
    /// `expect post t`: the decision posts to target `t`.
    Post(usize),
    /// `expect no post t`.
    NoPost(usize),
    /// `expect drop`.
    Drop,
    /// `expect unrouted`: no rule matches.
    Unrouted,
    /// `expect body t = {...}`: what target `t` would be sent, exactly.
    Body(usize, Value),
    /// `expect throttled t`: an `at most` held the alert back from target `t`.
    Throttled(usize),
    /// `expect held t`: a `delay` or `hold during` keeps the delivery to `t` for later.
    Held(usize),
    /// `expect silenced t`: a silence holds (or drops) the delivery to `t`.
    Silenced(usize),
    /// `expect inhibited t`: an `inhibit` keeps the delivery to `t` out.
    Inhibited(usize),
    /// `expect group t [names]`: a group notification went to `t` (with exactly these
    /// alerts, by `@name`).
    Group(usize, Option<Vec<String>>),
}

/// Everything the engine needs from a checked folder.
#[derive(Debug, Default)]
pub(crate) struct Checked<'a> {
    pub(crate) targets: Vec<CheckedTarget>,
    /// The windows, in declaration order: `CheckedCondition::During` indexes them.
    pub(crate) windows: Vec<crate::window::Window>,
    pub(crate) rules: Vec<CheckedRule<'a>>,
    /// The `inhibit` declarations, in load order.
    pub(crate) inhibits: Vec<CheckedInhibit<'a>>,
    pub(crate) tests: Vec<CheckedTest>,
    pub(crate) warnings: Vec<Diagnostic>,
}

/// What the files of a folder that did not load leave behind, for checking the others.
pub(crate) struct Unparsed<'a> {
    /// Target names those files seem to declare: a `post` of one is not reported again
    /// (the syntax error already fails the load).
    pub(crate) targets: &'a [String],
    /// Window names those files seem to declare.
    pub(crate) windows: &'a [String],
    /// Whether any file failed: then no target is reported unused (its posts may be in the
    /// file that failed).
    pub(crate) any_file_failed: bool,
}

/// The warnings of the analysis of what rules can reach (W0501: a rule that an earlier
/// `stop` or `drop` takes every alert from; W0502, W0503: a condition that never holds).
/// It only reads the files, so a large load runs it on a thread of its own, beside the
/// check and the compile (`load.rs`). Its warnings count only for a folder that loads.
pub(crate) fn analyse(files: &[ast::File], sources: &SourceMap) -> Vec<Diagnostic> {
    let mut cx = Cx::new(sources);
    reach::analyse(&mut cx, files);
    cx.warnings
}

/// Checks parsed files, given in load order, as one rule set. With `analyse_here`, the
/// result's warnings include [`analyse`]'s; without, the caller runs it.
pub(crate) fn check<'a>(
    files: &'a [ast::File],
    unparsed: Unparsed<'_>,
    sources: &SourceMap,
    env: EnvLookup<'_>,
    analyse_here: bool,
) -> Result<Checked<'a>, Vec<Diagnostic>> {
    let mut cx = Cx::new(sources);
    let mut scope = names::Scope::collect(&mut cx, files);
    // Said only when the folder is otherwise sound (below).
    let analysed = if analyse_here {
        analyse(files, sources)
    } else {
        Vec::new()
    };
    scope.unparsed = unparsed.targets.to_vec();
    scope.unparsed_windows = unparsed.windows.to_vec();
    let mut out = Checked::default();
    out.rules.reserve(files.iter().map(|f| f.items.len()).sum());

    for f in files {
        for item in &f.items {
            if let Item::Target(t) = item
                && let Some(t) = targets::check_target(&mut cx, t, &scope, env)
            {
                out.targets.push(t);
            }
        }
    }
    // Each window checked once, at its first declaration (a second is an error already).
    let mut windows: Vec<Option<crate::window::Window>> = vec![None; scope.windows.len()];
    for f in files {
        for item in &f.items {
            if let Item::Window(w) = item
                && let Some(i) = scope.windows.iter().position(|(_, s)| *s == w.name.span)
                && let Some(slot) = windows.get_mut(i)
            {
                *slot = windows::check_window(&mut cx, w);
            }
        }
    }
    // `during` refers to windows by their place: one left out would shift the others.
    // Every window that is not checked has an error of its own; say so if one has none.
    if cx.errors.is_empty()
        && let Some(i) = windows.iter().position(Option::is_none)
        && let Some((name, span)) = scope.windows.get(i)
    {
        cx.report(
            Diagnostic::error(
                codes::BAD_WINDOW,
                format!("window `{name}` could not be read"),
            )
            .with_primary(*span, "this window")
            .with_help("rewrite it in the form `window name = mon-fri 09:00-18:00 Europe/Berlin`"),
        );
    }
    out.windows = windows.into_iter().flatten().collect();
    check_fallback_cycles(&mut cx, &out.targets, &scope);
    let mut posted = vec![false; scope.targets.len()];
    for t in &out.targets {
        if let Some((i, _)) = t.fallback
            && let Some(p) = posted.get_mut(i)
        {
            *p = true;
        }
    }
    // The checked conditions borrow the files' (nothing is copied), so that a large load
    // analyses the same files beside the check (`load.rs`).
    for f in files {
        for item in &f.items {
            match item {
                Item::Rule(r) => {
                    fields::check_rule_fields(&mut cx, r);
                    let memory = memory::check_memory(&mut cx, r, &scope, &mut posted);
                    let condition = types::check_condition(&mut cx, &r.condition, &scope);
                    let mut posts = Vec::new();
                    let (mut stop, mut drop) = (false, false);
                    for a in &r.actions {
                        let redundant = match a {
                            ast::Action::Post(t) => match scope.resolve_target(&mut cx, t) {
                                Some(i) => {
                                    posted[i] = true;
                                    let again = posts.contains(&i);
                                    if !again {
                                        posts.push(i);
                                    }
                                    again.then(|| {
                                        (
                                            t.span,
                                            format!("`post {}` is given twice", t.name),
                                            "a target gets an alert at most once",
                                        )
                                    })
                                }
                                None => None,
                            },
                            ast::Action::Stop(span) => {
                                let again = stop;
                                stop = true;
                                again.then(|| {
                                    (
                                        *span,
                                        String::from("`stop` is given twice"),
                                        "one `stop` ends evaluation",
                                    )
                                })
                            }
                            ast::Action::Drop(span) => {
                                let again = drop;
                                drop = true;
                                again.then(|| {
                                    (
                                        *span,
                                        String::from("`drop` is given twice"),
                                        "one `drop` ends evaluation",
                                    )
                                })
                            }
                            // Checked together by `memory::check_memory`.
                            ast::Action::Dedup(_)
                            | ast::Action::ResolveOnce(_)
                            | ast::Action::Throttle(_)
                            | ast::Action::Delay(..)
                            | ast::Action::HoldDuring(..)
                            | ast::Action::MuteDuring(..)
                            | ast::Action::MuteFlapping(..)
                            | ast::Action::Group(..) => None,
                        };
                        if let Some((span, what, why)) = redundant {
                            cx.report(
                                Diagnostic::warning(
                                    codes::REDUNDANT_ACTION,
                                    format!("redundant action: {what}"),
                                )
                                .with_primary(span, "remove this")
                                .with_note(why),
                            );
                        }
                    }
                    if stop
                        && drop
                        && let Some(ast::Action::Stop(span)) =
                            r.actions.iter().find(|a| matches!(a, ast::Action::Stop(_)))
                    {
                        cx.report(
                            Diagnostic::warning(
                                codes::REDUNDANT_ACTION,
                                "redundant action: `stop` with `drop`",
                            )
                            .with_primary(*span, "remove this")
                            .with_note("`drop` already stops evaluation"),
                        );
                    }
                    let location = sources.file_line(r.span);
                    let id = r
                        .name
                        .as_ref()
                        .map_or_else(|| location.clone(), |n| n.value.clone());
                    // Without a condition, a diagnostic already fails the load.
                    if let Some(condition) = condition {
                        out.rules.push(CheckedRule {
                            id,
                            location,
                            condition,
                            posts,
                            stop,
                            drop,
                            memory,
                        });
                    }
                }
                Item::Test(t) => {
                    if let Some(t) = check_test(&mut cx, t, &scope) {
                        out.tests.push(t);
                    }
                }
                Item::Inhibit(i) => {
                    if let Some(i) = inhibit::check_inhibit(&mut cx, i, &scope) {
                        out.inhibits.push(i);
                    }
                }
                Item::Target(_) | Item::Window(_) => {}
            }
        }
    }
    // An unused target is worth a warning only when nothing else is wrong: a failed `post`,
    // or a file that did not parse, would otherwise make its intended target look unused.
    let complete = cx.errors.is_empty() && !unparsed.any_file_failed;
    for (i, used) in posted.iter().enumerate() {
        if !used
            && complete
            && let Some((name, span)) = scope.targets.get(i)
        {
            cx.warnings.push(
                Diagnostic::warning(
                    codes::UNUSED_TARGET,
                    format!("target `{name}` is never posted to"),
                )
                .with_primary(*span, "declared here")
                .with_help(format!(
                    "post to it from a rule (`when ... -> post {name}`), or remove it"
                )),
            );
        }
    }

    if complete {
        cx.warnings.extend(analysed);
    }
    if cx.errors.is_empty() {
        out.warnings = cx.warnings;
        Ok(out)
    } else {
        let mut all = cx.errors;
        all.extend(cx.warnings);
        Err(all)
    }
}

/// A fallback chain that comes back to where it started would pass a delivery around forever.
fn check_fallback_cycles(cx: &mut Cx<'_>, targets: &[CheckedTarget], scope: &names::Scope) {
    let index_of = |name: &str| targets.iter().position(|t| t.name == name);
    for (start, t) in targets.iter().enumerate() {
        let mut seen = vec![start];
        let mut cur = t;
        while let Some((next, span)) = cur.fallback {
            let Some(next_name) = scope.targets.get(next).map(|(n, _)| n.as_str()) else {
                break;
            };
            let Some(ni) = index_of(next_name) else { break };
            // Report a cycle once, from its first-declared target.
            if ni == start && seen.iter().all(|&i| i >= start) {
                cx.report(
                    Diagnostic::error(
                        codes::BAD_SETTING,
                        format!("fallbacks of target `{}` go round in a circle", t.name),
                    )
                    .with_primary(span, "leads back to the start")
                    .with_help(
                        "end the chain at a target without `fallback`, such as a dead-letter hook",
                    ),
                );
                break;
            }
            if ni == start || seen.contains(&ni) {
                break;
            }
            seen.push(ni);
            cur = &targets[ni];
        }
    }
}

/// The checker's context: where diagnostics go.
pub(crate) struct Cx<'a> {
    /// The folder's files, for `file:line` in messages.
    pub(crate) sources: &'a SourceMap,
    pub(crate) errors: Vec<Diagnostic>,
    pub(crate) warnings: Vec<Diagnostic>,
    /// The regexes made so far: each distinct pattern once.
    pub(crate) regexes: regex::Cache,
}

impl<'a> Cx<'a> {
    /// A context for checking a folder of `sources`.
    pub(crate) fn new(sources: &'a SourceMap) -> Cx<'a> {
        Cx {
            sources,
            errors: Vec::new(),
            warnings: Vec::new(),
            regexes: regex::Cache::default(),
        }
    }
}

impl Cx<'_> {
    /// Keeps a diagnostic with the others of its severity.
    pub(crate) fn report(&mut self, d: Diagnostic) {
        match d.severity() {
            crate::diagnostic::Severity::Error => self.errors.push(d),
            crate::diagnostic::Severity::Warning => self.warnings.push(d),
        }
    }

    /// `file:line:col` of a span, for "declared at" helps.
    pub(crate) fn place(&self, span: Span) -> String {
        match self.sources.get(span.file) {
            Some(f) => {
                let p = f.position(span.start);
                format!("{}:{}:{}", f.name(), p.line, p.column)
            }
            None => String::from("<unknown>"),
        }
    }
}

/// A `test` block: at most one `source` and one `alert`, the alert plain JSON (a field
/// path in test data is an error), every expectation's target declared.
fn check_test(cx: &mut Cx<'_>, t: &ast::TestBlock, scope: &names::Scope) -> Option<CheckedTest> {
    let mut source = None;
    let mut steps: Vec<CheckedStep> = Vec::new();
    // The step being read: its time, its alert (once read), its expectations.
    let mut start = TEST_START_MS;
    let mut at_ms = start;
    let mut label = String::from("0s");
    let mut alert: Option<Value> = None;
    let mut wrote_alert = false;
    let mut expects = Vec::new();
    let mut silences: Vec<CheckedSilence> = Vec::new();
    let mut timed = false;
    let mut ok = true;
    for s in &t.statements {
        match s {
            ast::TestStatement::Source(name) => match Source::from_name(&name.name) {
                Some(src) => source = Some(src),
                None => {
                    ok = false;
                    cx.report(names::unknown_source(&name.name, name.span, false));
                }
            },
            ast::TestStatement::At(..)
            | ast::TestStatement::After(..)
            | ast::TestStatement::AtMoment { .. } => {
                let (next, next_label, span) = match s {
                    ast::TestStatement::AtMoment {
                        date,
                        clock,
                        zone,
                        span,
                    } => {
                        let Some(m) = windows::moment(cx, date, clock, zone.as_ref())
                            .and_then(|m| u64::try_from(m.as_millisecond()).ok())
                        else {
                            ok = false;
                            continue;
                        };
                        // The first moment of a test, before any step, is its start.
                        if !timed && !wrote_alert && steps.is_empty() {
                            start = m;
                            at_ms = m;
                        }
                        let zone = zone.as_ref().map_or("", |z| z.name.as_str());
                        (m, format!("{} {} {zone}", date.name, clock.name), *span)
                    }
                    ast::TestStatement::At(d, span) | ast::TestStatement::After(d, span) => {
                        let Some(ms) = d.as_millis() else {
                            ok = false;
                            continue;
                        };
                        let next = match s {
                            ast::TestStatement::After(..) => at_ms.saturating_add(ms),
                            _ => start.saturating_add(ms),
                        };
                        (next, ast::millis(next.saturating_sub(start)), *span)
                    }
                    _ => continue,
                };
                let span = &span;
                if wrote_alert {
                    if let Some(a) = alert.take() {
                        steps.push(CheckedStep {
                            at_ms,
                            label: std::mem::take(&mut label),
                            alert: Some(a),
                            expects: std::mem::take(&mut expects),
                            silences: std::mem::take(&mut silences),
                        });
                    }
                } else if alertless(&expects, &silences)
                    && ((timed && !steps.is_empty()) || !silences.is_empty())
                {
                    // A step that only adds silences, or looks at what held deliveries
                    // went out by now.
                    steps.push(CheckedStep {
                        at_ms,
                        label: std::mem::take(&mut label),
                        alert: None,
                        expects: std::mem::take(&mut expects),
                        silences: std::mem::take(&mut silences),
                    });
                } else if timed || !expects.is_empty() {
                    ok = false;
                    cx.report(
                        Diagnostic::error(codes::BAD_TEST, "a step of the test has no `alert`")
                            .with_primary(*span, "the next step starts here")
                            .with_help("give each step its alert: `at 1m  alert { ... }  expect post pager`; a later step without one may only `expect post` or `expect no post` (what held deliveries did by then)"),
                    );
                }
                if next < at_ms {
                    ok = false;
                    cx.report(
                        Diagnostic::error(codes::BAD_TEST, "the test's clock goes backwards")
                            .with_primary(*span, "earlier than the step before")
                            .with_help("steps run in order: write them in time order, or use `after <duration>`"),
                    );
                }
                at_ms = next;
                label = next_label;
                wrote_alert = false;
                timed = true;
            }
            ast::TestStatement::Alert(a) => {
                if wrote_alert {
                    ok = false;
                    cx.report(
                        Diagnostic::error(codes::BAD_TEST, "a test has more than one `alert`")
                            .with_primary(template_span(a).unwrap_or(t.span), "second alert")
                            .with_help("write one test block per alert, or start a step for it: `after 1m  alert { ... }`"),
                    );
                }
                wrote_alert = true;
                match data_value(cx, a) {
                    Some(v) => {
                        if let Err(e) = windows::at_clock(&v, at_ms) {
                            ok = false;
                            cx.report(
                                Diagnostic::error(codes::BAD_TEST, e)
                                    .with_primary(template_span(a).unwrap_or(t.span), "in this alert")
                                    .with_help("`${now}` is the step's moment on the test's clock, as a sender writes a timestamp"),
                            );
                        }
                        alert = Some(v);
                    }
                    None => ok = false,
                }
            }
            ast::TestStatement::Silence {
                condition,
                duration,
                span,
            } => {
                let place = silence::place_of_string(
                    condition.span.file,
                    condition.span.start as usize,
                    cx.sources.snippet(condition.span),
                );
                if let Err(ds) = check_silence(&condition.value, &place, |_, _| ()) {
                    ok = false;
                    for d in ds {
                        cx.report(d);
                    }
                    continue;
                }
                match duration.as_millis() {
                    Some(ms) if ms > 0 && ms <= crate::state::MAX_SILENCE_MS => {
                        silences.push(CheckedSilence {
                            condition: condition.value.clone(),
                            for_ms: ms,
                        });
                    }
                    Some(_) => {
                        ok = false;
                        cx.report(
                            Diagnostic::error(
                                codes::BAD_SILENCE,
                                "a silence lasts from 1ms to 35d",
                            )
                            .with_primary(*span, "in this silence")
                            .with_help("give it a duration such as `for 2h`"),
                        );
                    }
                    None => ok = false,
                }
            }
            ast::TestStatement::Expect(e, _) => {
                let resolved = match e {
                    ast::Expect::Post(n) => scope.resolve_target(cx, n).map(CheckedExpect::Post),
                    ast::Expect::NoPost(n) => {
                        scope.resolve_target(cx, n).map(CheckedExpect::NoPost)
                    }
                    ast::Expect::Throttled(n) => {
                        scope.resolve_target(cx, n).map(CheckedExpect::Throttled)
                    }
                    ast::Expect::Held(n) => scope.resolve_target(cx, n).map(CheckedExpect::Held),
                    ast::Expect::Silenced(n) => {
                        scope.resolve_target(cx, n).map(CheckedExpect::Silenced)
                    }
                    ast::Expect::Inhibited(n) => {
                        scope.resolve_target(cx, n).map(CheckedExpect::Inhibited)
                    }
                    ast::Expect::Group(n, names) => scope.resolve_target(cx, n).map(|i| {
                        let names = names
                            .as_ref()
                            .map(|ns| ns.iter().map(|n| n.value.clone()).collect());
                        CheckedExpect::Group(i, names)
                    }),
                    ast::Expect::Drop => Some(CheckedExpect::Drop),
                    ast::Expect::Unrouted => Some(CheckedExpect::Unrouted),
                    ast::Expect::Body(n, b) => {
                        let target = scope.resolve_target(cx, n);
                        let body = data_value(cx, b);
                        target.zip(body).map(|(i, b)| CheckedExpect::Body(i, b))
                    }
                };
                match resolved {
                    Some(e) => expects.push(e),
                    None => ok = false,
                }
            }
        }
    }
    match alert {
        Some(a) => steps.push(CheckedStep {
            at_ms,
            label,
            alert: Some(a),
            expects,
            silences,
        }),
        None if wrote_alert => return None,
        None if timed && !steps.is_empty() && alertless(&expects, &silences) => {
            steps.push(CheckedStep {
                at_ms,
                label,
                alert: None,
                expects,
                silences,
            });
        }
        None if steps.is_empty() => {
            cx.report(
                Diagnostic::error(
                    codes::BAD_TEST,
                    format!("test `{}` has no `alert`", t.name.value),
                )
                .with_primary(t.name.span, "no alert to route")
                .with_help(
                    "add the alert as the sender sends it: `alert { \"status\": \"ALARM\" }`",
                ),
            );
            return None;
        }
        None => {
            ok = false;
            cx.report(
                Diagnostic::error(codes::BAD_TEST, "the last step of the test has no `alert`")
                    .with_primary(t.span, "in this test")
                    .with_help("give the step its alert, or remove the step; a step without an alert may only `expect post` or `expect no post` (what held deliveries did by then)"),
            );
        }
    }
    ok.then(|| CheckedTest {
        name: t.name.value.clone(),
        location: cx.sources.file_line(t.span),
        source,
        steps,
    })
}

/// Whether a step without an alert may stand: it adds silences, or expects only what went
/// out by its time (and something).
fn alertless(expects: &[CheckedExpect], silences: &[CheckedSilence]) -> bool {
    (!expects.is_empty() || !silences.is_empty())
        && expects.iter().all(|e| {
            matches!(
                e,
                CheckedExpect::Post(_) | CheckedExpect::NoPost(_) | CheckedExpect::Group(..)
            )
        })
}

/// Where a template value is written, when it has a span of its own.
fn template_span(t: &ast::Template) -> Option<Span> {
    match t {
        ast::Template::String(s) => Some(s.span),
        ast::Template::Path(p) => Some(p.span),
        ast::Template::Array(_, s) | ast::Template::Object(_, s) => Some(*s),
        _ => None,
    }
}

/// Test data is plain JSON: a field path in it is an error.
fn data_value(cx: &mut Cx<'_>, t: &ast::Template) -> Option<Value> {
    Some(match t {
        ast::Template::Null => Value::Null,
        ast::Template::Bool(b) => Value::Bool(*b),
        ast::Template::Number(n) => Value::Number(n.clone()),
        ast::Template::String(s) => Value::String(s.as_plain().unwrap_or_default()),
        ast::Template::Path(p) => {
            cx.report(
                Diagnostic::error(
                    codes::BAD_TEST,
                    format!("`{}` is a field path; test data is plain JSON", p),
                )
                .with_primary(p.span, "not a JSON value")
                .with_help(format!("quote it: `\"{}\"`", p)),
            );
            return None;
        }
        ast::Template::Array(items, _) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                out.push(data_value(cx, i)?);
            }
            Value::Array(out)
        }
        ast::Template::Object(members, _) => {
            let mut out = serde_json::Map::new();
            for (k, v) in members {
                let v = data_value(cx, v)?;
                out.insert(k.value.clone(), v);
            }
            Value::Object(out)
        }
    })
}
