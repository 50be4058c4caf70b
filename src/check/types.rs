//! Operator and literal rules: mixes that can never be meant are errors with a place.
//!
//! Owns: what an operator accepts (`>` a number, `=~` a regex or a string, `in` a list,
//! ...), field paths' length and `@` fields, the literal values `@source` and `@state` can
//! take, and compiling each regex once, under a size limit, into the checked condition
//! that uses it. Never: looks at a target or at another rule (`names.rs`, `mod.rs`), or
//! lets a condition through with a part it could not check: one problem fails the folder,
//! and every problem of a condition is reported in the same run.

use regex::{Regex, RegexBuilder};

use super::names::{Scope, suggest, unknown_source};
use super::{CheckedCondition, CheckedRegex, Cx, ValueOp};
use crate::alert::State;
use crate::diagnostic::{Diagnostic, Span, codes};
use crate::syntax::ast::{CmpOp, Comparison, Condition, FieldPath, LiteralKind};

/// The longest field path accepted, in segments.
pub(crate) const MAX_PATH_SEGMENTS: usize = 32;

/// The largest compiled regex accepted, in bytes of the regex crate's program.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The metadata fields, without `@`.
pub(crate) const META_FIELDS: [&str; 4] = ["source", "state", "name", "id"];

/// Checks a condition and gives it back checked: every regex compiled into the test that
/// uses it. `None` when a part of it could not be checked (a diagnostic says why, so the
/// folder does not load).
pub(crate) fn check_condition<'a>(
    cx: &mut Cx<'_>,
    c: &'a Condition,
    scope: &Scope,
) -> Option<CheckedCondition<'a>> {
    match c {
        Condition::Any(cs) => check_all(cx, cs, scope).map(CheckedCondition::Any),
        Condition::All(cs) => check_all(cx, cs, scope).map(CheckedCondition::All),
        Condition::Not(inner, span) => {
            check_condition(cx, inner, scope).map(|i| CheckedCondition::Not(Box::new(i), *span))
        }
        Condition::Exists(p, span) => {
            check_path(cx, p);
            Some(CheckedCondition::Exists(p, *span))
        }
        Condition::Compare(cmp) => {
            check_path(cx, &cmp.path);
            check_comparison(cx, cmp)
        }
        Condition::During(w, span) => scope
            .resolve_window(cx, w)
            .map(|i| CheckedCondition::During(i as u32, *span)),
    }
}

/// Every part checked, even after one fails (each reports its own problems).
fn check_all<'a>(
    cx: &mut Cx<'_>,
    cs: &'a [Condition],
    scope: &Scope,
) -> Option<Vec<CheckedCondition<'a>>> {
    let mut out = Vec::with_capacity(cs.len());
    let mut ok = true;
    for c in cs {
        match check_condition(cx, c, scope) {
            Some(c) => out.push(c),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A field path: at most [`MAX_PATH_SEGMENTS`] steps, and a known `@` field (with the
/// nearest one suggested, or the hint that a payload field has no `@`).
pub(crate) fn check_path(cx: &mut Cx<'_>, p: &FieldPath) {
    if p.segments.len() > MAX_PATH_SEGMENTS {
        cx.report(
            Diagnostic::error(
                codes::PATH_TOO_LONG,
                format!("field path has more than {MAX_PATH_SEGMENTS} steps"),
            )
            .with_primary(p.span, "too long")
            .with_help("no sender nests fields this deep; check the path for a repeated part"),
        );
    }
    if let Some(m) = &p.meta
        && !META_FIELDS.contains(&m.as_str())
    {
        let d = Diagnostic::error(
            codes::UNKNOWN_META,
            format!("unknown metadata field `@{m}`"),
        )
        .with_primary(p.span, "not a metadata field")
        .with_note("the metadata fields are `@source`, `@state`, `@name` and `@id`");
        let d = match suggest(m, META_FIELDS) {
            Some(s) => {
                // The fix replaces `@name` only, not the steps after it.
                let at = crate::diagnostic::Span::new(
                    p.span.file,
                    p.span.start as usize,
                    p.span.start as usize + 1 + m.len(),
                );
                let fixed = cx.sources.snippet(at) == format!("@{m}");
                let d = d.with_help(format!("did you mean `@{s}`?"));
                if fixed {
                    d.with_fix(at, format!("@{s}"), format!("replace with `@{s}`"))
                } else {
                    d
                }
            }
            None => d.with_help(format!("for a field of the payload, drop the `@`: `{m}`")),
        };
        cx.report(d);
    }
}

/// One comparison, checked: a value comparison as it is, a match with its regex compiled
/// (a string on the right of `=~` is a regex too).
fn check_comparison<'a>(cx: &mut Cx<'_>, cmp: &'a Comparison) -> Option<CheckedCondition<'a>> {
    report_mismatches(cx, cmp)?;
    match ValueOp::of(cmp.op) {
        Some((op, negate)) => Some(CheckedCondition::Compare {
            path: &cmp.path,
            op,
            negate,
            value: &cmp.value,
            span: cmp.span,
        }),
        None => {
            // `=~` or `!~`: a regex, or a string used as one.
            let (pattern, flags) = match &cmp.value.kind {
                LiteralKind::Regex { pattern, flags } => (pattern.as_str(), flags.as_str()),
                LiteralKind::String(s) => (s.as_str(), ""),
                // Reported by `report_mismatches`.
                _ => return None,
            };
            let mut regexes = std::mem::take(&mut cx.regexes);
            let matcher = regexes.get_or_make(pattern, flags, || {
                compile_regex(cx, pattern, flags, cmp.value.span)
            });
            cx.regexes = regexes;
            Some(CheckedCondition::Match {
                path: &cmp.path,
                negate: cmp.op == CmpOp::NotMatch,
                regex: CheckedRegex {
                    pattern,
                    flags,
                    matcher: matcher?,
                },
                span: cmp.span,
            })
        }
    }
}

/// Reports operator and literal mixes that can never be meant; `None` for one that leaves
/// nothing to check further (a duration).
fn report_mismatches(cx: &mut Cx<'_>, cmp: &Comparison) -> Option<()> {
    let op = cmp.op;
    let v = &cmp.value;
    // Shown in messages only: printed when a message is made, not for every comparison.
    let path = &cmp.path;
    let op_str = op.as_str();
    let mismatch = |code, msg: String, label: &str| {
        Diagnostic::error(code, msg)
            .with_primary(
                v.span,
                format!(
                    "{} literal",
                    v.kind
                        .describe()
                        .trim_start_matches("a ")
                        .trim_start_matches("an ")
                ),
            )
            .with_secondary(cmp.op_span, label.to_owned())
    };
    if let LiteralKind::Duration(_) = v.kind {
        cx.report(
            mismatch(codes::DURATION_IN_CONDITION, format!("a duration cannot be compared with `{path}`"), "comparison")
                .with_help("durations are for target settings such as `timeout = 5s`; compare with a number of seconds")
                .with_note("no sender sends durations in a form a rule could compare"),
        );
        return None;
    }
    match op {
        CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge => match &v.kind {
            LiteralKind::Number(_) => {}
            LiteralKind::String(s) => {
                let mut d = mismatch(
                    codes::ORDER_NEEDS_NUMBER,
                    format!("`{op_str}` needs a number here, found the string `{}`", crate::syntax::print::quote(s)),
                    "ordering comparison",
                );
                if crate::number::parse_number(s).is_some() {
                    d = d.with_help(format!("drop the quotes to compare as a number: `{path} {op_str} {s}`"));
                } else {
                    d = d.with_help(format!("to compare text, use `==`, `in` or `=~`: `{path} == {}`", crate::syntax::print::quote(s)));
                }
                cx.report(d.with_note("a field that holds a numeric string (\"95\") already compares as a number"));
            }
            other => cx.report(
                mismatch(codes::ORDER_NEEDS_NUMBER, format!("`{op_str}` needs a number here, found {}", other.describe()), "ordering comparison")
                    .with_help(format!("compare with a number: `{path} {op_str} 90`")),
            ),
        },
        CmpOp::Match | CmpOp::NotMatch => match &v.kind {
            // Compiled by `check_comparison`, into the checked condition.
            LiteralKind::Regex { .. } | LiteralKind::String(_) => {}
            LiteralKind::Number(n) => cx.report(
                mismatch(codes::REGEX_NEEDS_PATTERN, format!("`{op_str}` needs a regex, found the number `{n}`"), "regex match")
                    .with_help(format!("to compare numbers use `==`: `{path} == {n}`; to match text write a regex: `{path} {op_str} /^{n}$/`")),
            ),
            other => cx.report(
                mismatch(codes::REGEX_NEEDS_PATTERN, format!("`{op_str}` needs a regex, found {}", other.describe()), "regex match")
                    .with_help(format!("write a regex: `{path} {op_str} /pattern/`")),
            ),
        },
        CmpOp::In | CmpOp::NotIn => match &v.kind {
            LiteralKind::List(items) => {
                if cmp.path.meta.as_deref() == Some("source") {
                    for i in items {
                        check_source_literal(cx, &i.kind, i.span);
                    }
                }
                if cmp.path.meta.as_deref() == Some("state") {
                    for i in items {
                        check_state_literal(cx, &i.kind, i.span);
                    }
                }
            }
            LiteralKind::String(s) => cx.report(
                mismatch(codes::IN_NEEDS_LIST, format!("`{op_str}` needs a list, found a string"), "membership")
                    .with_help(format!("write a list: `{path} {op_str} [{}]`", crate::syntax::print::quote(s)))
                    .with_help(format!("or test for a substring: `{path} contains {}`", crate::syntax::print::quote(s))),
            ),
            other => cx.report(
                mismatch(codes::IN_NEEDS_LIST, format!("`{op_str}` needs a list, found {}", other.describe()), "membership")
                    .with_help(format!("write a list: `{path} {op_str} [{}]`", crate::syntax::print::literal(other))),
            ),
        },
        CmpOp::Eq | CmpOp::Ne => match &v.kind {
            LiteralKind::List(_) => cx.report(
                mismatch(codes::EQ_NEEDS_SCALAR, format!("`{op_str}` compares with one value, found a list"), "equality")
                    .with_help(format!(
                        "to test membership use `{}`: `{path} {} {}`",
                        if op == CmpOp::Eq { "in" } else { "not in" },
                        if op == CmpOp::Eq { "in" } else { "not in" },
                        crate::syntax::print::literal(&v.kind)
                    )),
            ),
            LiteralKind::Regex { .. } => cx.report(
                mismatch(codes::EQ_NEEDS_SCALAR, format!("`{op_str}` compares with one value, found a regex"), "equality")
                    .with_help(format!(
                        "to match a regex use `{}`: `{path} {} {}`",
                        if op == CmpOp::Eq { "=~" } else { "!~" },
                        if op == CmpOp::Eq { "=~" } else { "!~" },
                        crate::syntax::print::literal(&v.kind)
                    )),
            ),
            kind => {
                if cmp.path.meta.as_deref() == Some("source") {
                    check_source_literal(cx, kind, v.span);
                }
                if cmp.path.meta.as_deref() == Some("state") {
                    check_state_literal(cx, kind, v.span);
                }
            }
        },
        CmpOp::Contains | CmpOp::StartsWith | CmpOp::EndsWith => {
            if !matches!(v.kind, LiteralKind::String(_)) {
                let shown = crate::syntax::print::literal(&v.kind);
                cx.report(
                    mismatch(codes::TEXT_NEEDS_STRING, format!("`{op_str}` needs a string, found {}", v.kind.describe()), "text test")
                        .with_help(format!("quote it: `{path} {op_str} \"{}\"`", shown.trim_matches('"'))),
                );
            }
        }
    }
    Some(())
}

/// `@source == "x"`: `x` must be a sender switchyard knows (an error: the rule could never
/// match).
fn check_source_literal(cx: &mut Cx<'_>, kind: &LiteralKind, span: Span) {
    if let LiteralKind::String(s) = kind
        && crate::alert::Source::from_name(s).is_none()
    {
        cx.report(unknown_source(s, span, true));
    }
}

/// `@state == "x"`: a warning when no sender's alert has state `x`, pointing to the
/// sender's own status field, which is what such a rule usually meant.
fn check_state_literal(cx: &mut Cx<'_>, kind: &LiteralKind, span: Span) {
    if let LiteralKind::String(s) = kind {
        let all: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
        if !all.contains(&s.as_str()) {
            let d = Diagnostic::warning(codes::UNKNOWN_STATE, format!("`@state` is never `{s}`"))
                .with_primary(span, "no sender's alert has this state")
                .with_note(format!(
                    "`@state` is one of {}",
                    all.iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            let d = match suggest(s, all.iter().copied()) {
                Some(x) => {
                    d.with_suggestion(span, &format!("\"{x}\""), format!("did you mean `{x}`?"))
                }
                None => d.with_help(
                    "to test the sender's own status field, name it: `status == \"ALARM\"`",
                ),
            };
            cx.report(d);
        }
    }
}

/// Compiles a regex with its flags (`i`, `m`, `s`, `x`) under [`REGEX_SIZE_LIMIT`]. The
/// regex crate's error diagram becomes one line of what is wrong, pointed at the literal.
/// Linear-time matching (no backtracking) is what makes a hostile alert harmless.
fn compile_regex(cx: &mut Cx<'_>, pattern: &str, flags: &str, span: Span) -> Option<Regex> {
    let built = RegexBuilder::new(pattern)
        .case_insensitive(flags.contains('i'))
        .multi_line(flags.contains('m'))
        .dot_matches_new_line(flags.contains('s'))
        .ignore_whitespace(flags.contains('x'))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(2 * REGEX_SIZE_LIMIT)
        .build();
    match built {
        Ok(re) => return Some(re),
        Err(regex::Error::CompiledTooBig(limit)) => cx.report(
            Diagnostic::error(
                codes::BAD_REGEX,
                format!("regex is too large (over {} KiB compiled)", limit / 1024),
            )
            .with_primary(span, "too large")
            .with_help("split it into several rules, or use `in [...]` for a list of exact values"),
        ),
        Err(e) => {
            // The regex crate's message is a small diagram ending in `error: <what>`.
            let text = e.to_string();
            let what = text
                .lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix("error: "))
                .unwrap_or("invalid syntax")
                .to_owned();
            cx.report(
                Diagnostic::error(codes::BAD_REGEX, format!("invalid regex: {what}"))
                    .with_primary(span, "does not compile")
                    .with_help("regexes use Rust syntax (https://docs.rs/regex); escape a literal `(`, `[`, `.` or `*` with `\\`"),
            );
        }
    }
    None
}
