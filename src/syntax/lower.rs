//! Pest pairs to the typed AST. pest stops here: nothing after this module sees a `Pair`.
//!
//! Owns: the shape of the tree (`ast.rs`) as built from the grammar's rules, the spans
//! (offset by where an item's text starts in its file), and the decoding of tokens
//! (strings with JSON escapes, `${...}` interpolations, numbers, durations, regex
//! literals). Never: looks at names, types or fields (that is `check/`), or recovers from
//! a syntax error (the grammar has rejected the text before this runs; `errors.rs` words
//! pest's errors).
//!
//! The `unreachable!`s name a shape the grammar cannot produce; the fuzz targets hold the
//! grammar and this file to each other.
//!
//! Lowering never fails on a shape the grammar allows; problems that only show once a
//! token is decoded (a lone surrogate in a string, a number out of range, a malformed
//! `${...}`) become diagnostics, and lowering goes on so that every one is reported.

use pest::Parser as _;
use pest::iterators::Pair;

use super::ast::*;
use super::parser::{Rule as R, RulesParser};
use crate::diagnostic::{Diagnostic, FileId, Span, codes};

/// The deepest nesting of groups and `not`s in one condition.
pub(crate) const MAX_CONDITION_DEPTH: usize = 64;

/// Lowers one file's pairs, collecting the diagnostics decoding finds.
pub(crate) struct Lowerer {
    file: FileId,
    /// Where the text pest saw starts in the file (an item parsed on its own).
    pub(crate) offset: usize,
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// Where each item lowered so far is written.
    pub(crate) item_spans: Vec<Span>,
    /// How deep the condition being lowered is nested (groups and `not`s).
    depth: usize,
}

type P<'i> = Pair<'i, R>;

/// How long item `p` is written, without the whitespace and comments its span may hold
/// at its end (an optional last part leaves them there): up to its last token, which is
/// its deepest last pair's end, or a closing literal after it (`}`).
fn item_len(p: &P<'_>) -> usize {
    let start = p.as_span().start();
    let text = p.as_str();
    let mut last = p.clone();
    let mut end = text.len();
    while let Some(child) = last.clone().into_inner().last() {
        end = child.as_span().end() - start;
        last = child;
    }
    // After the last pair: whitespace, comments, and closing literals.
    let bytes = text.as_bytes();
    let (mut at, mut len) = (end, end);
    while at < bytes.len() {
        match bytes[at] {
            b'#' => {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
            }
            b if b.is_ascii_whitespace() => at += 1,
            _ => {
                at += 1;
                len = at;
            }
        }
    }
    len
}

impl Lowerer {
    /// A lowerer for `file`, at offset 0.
    pub(crate) fn new(file: FileId) -> Lowerer {
        Lowerer {
            file,
            offset: 0,
            diagnostics: Vec::new(),
            item_spans: Vec::new(),
            depth: 0,
        }
    }

    /// `p`'s span in the file.
    fn span(&self, p: &P<'_>) -> Span {
        let s = p.as_span();
        Span::new(self.file, self.offset + s.start(), self.offset + s.end())
    }

    /// `p`'s span without the whitespace and comments an optional last part leaves at its
    /// end (`window x = mon-fri` with no zone ends at `fri`, not on the next line).
    fn trimmed_span(&self, p: &P<'_>) -> Span {
        let s = p.as_span();
        let mut end = s.end();
        if let Some(last) = p.clone().into_inner().last() {
            end = last.as_span().end();
        }
        Span::new(self.file, self.offset + s.start(), self.offset + end)
    }

    fn error(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    /// A whole file: its items in order.
    pub(crate) fn file(&mut self, pair: P<'_>) -> File {
        let mut items = Vec::new();
        for p in pair.into_inner() {
            self.item(p, &mut items);
        }
        File {
            items,
            spans: std::mem::take(&mut self.item_spans),
        }
    }

    /// One item (or `EOI`, which adds nothing).
    pub(crate) fn item(&mut self, p: P<'_>, items: &mut Vec<Item>) {
        if p.as_rule() != R::EOI {
            let s = p.as_span();
            let end = s.start() + item_len(&p);
            self.item_spans.push(Span::new(
                self.file,
                self.offset + s.start(),
                self.offset + end,
            ));
        }
        match p.as_rule() {
            R::target_decl => items.push(Item::Target(self.target(p))),
            R::window_decl => items.push(Item::Window(self.window(p))),
            R::inhibit_decl => items.push(Item::Inhibit(self.inhibit(p))),
            R::rule => items.push(Item::Rule(self.rule(p))),
            R::test_block => items.push(Item::Test(self.test(p))),
            R::EOI => {}
            r => unreachable!("grammar: item is target, rule or test, got {r:?}"),
        }
    }

    /// `inhibit "name" when <target> while <source> is firing [matching <paths>]`.
    fn inhibit(&mut self, pair: P<'_>) -> InhibitDecl {
        let span = self.span(&pair);
        let span = Span::new(
            span.file,
            span.start as usize,
            span.start as usize + "inhibit".len(),
        );
        let mut name = None;
        let mut conditions = Vec::with_capacity(2);
        let mut matching = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                R::string => name = Some(self.plain_string(p)),
                R::condition => conditions.push(self.condition(p)),
                R::inhibit_matching => {
                    matching = p
                        .into_inner()
                        .filter(|p| p.as_rule() == R::field_path)
                        .map(|p| self.field_path(p))
                        .collect();
                }
                _ => {}
            }
        }
        let mut conditions = conditions.into_iter();
        let (Some(name), Some(target), Some(source)) = (name, conditions.next(), conditions.next())
        else {
            unreachable!("grammar: inhibit has a name and two conditions")
        };
        InhibitDecl {
            name,
            target,
            source,
            matching,
            span,
        }
    }

    // ---- rules -------------------------------------------------------------------------

    /// `[rule "name"] when <condition> -> <actions>`. The rule's span starts at `rule` or
    /// `when`, so a diagnostic about the rule points at its first word.
    fn rule(&mut self, pair: P<'_>) -> Rule {
        let mut name = None;
        let mut condition = None;
        let mut actions = Vec::new();
        let mut start: Option<Span> = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                R::rule_name => {
                    start.get_or_insert(self.span(&p));
                    if let Some(s) = p.into_inner().find(|p| p.as_rule() == R::string) {
                        name = Some(self.plain_string(s));
                    }
                }
                R::kw_when => {
                    start.get_or_insert(self.span(&p));
                }
                R::condition => condition = Some(self.condition(p)),
                R::arrow => {}
                R::actions => {
                    for a in p.into_inner() {
                        let span = self.span(&a);
                        actions.push(match a.as_rule() {
                            R::post_action => Action::Post(self.target_name_in(a)),
                            R::drop_action => Action::Drop(span),
                            R::stop_action => Action::Stop(span),
                            R::dedup_clause => Action::Dedup(self.dedup(a)),
                            R::resolve_once => Action::ResolveOnce(span),
                            R::throttle_clause => Action::Throttle(self.throttle(a)),
                            R::delay_clause => {
                                let d = a
                                    .into_inner()
                                    .find(|p| p.as_rule() == R::duration)
                                    .map(|p| (self.duration(&p), self.span(&p)));
                                match d {
                                    Some((d, dspan)) => Action::Delay(d, dspan, span),
                                    None => unreachable!("grammar: delay has a duration"),
                                }
                            }
                            R::mute_clause
                                if a.clone()
                                    .into_inner()
                                    .any(|p| p.as_rule() == R::kw_flapping) =>
                            {
                                let mut f = Flapping {
                                    changes: None,
                                    changes_span: span,
                                    within: Duration {
                                        amount: 0,
                                        unit: DurationUnit::Seconds,
                                    },
                                    within_span: span,
                                    span,
                                };
                                for p in a.into_inner() {
                                    match p.as_rule() {
                                        R::count => {
                                            f.changes_span = self.span(&p);
                                            f.changes = p.as_str().parse::<u64>().ok();
                                        }
                                        R::duration => {
                                            f.within_span = self.span(&p);
                                            f.within = self.duration(&p);
                                        }
                                        _ => {}
                                    }
                                }
                                Action::MuteFlapping(f)
                            }
                            R::group_clause => {
                                let mut by = Vec::new();
                                let mut durations = Vec::new();
                                for p in a.into_inner() {
                                    match p.as_rule() {
                                        R::by_paths => by = self.by_paths(p),
                                        R::duration => {
                                            durations.push((self.duration(&p), self.span(&p)))
                                        }
                                        _ => {}
                                    }
                                }
                                let mut d = durations.into_iter();
                                let (Some((wait, ws)), Some((every, es))) = (d.next(), d.next())
                                else {
                                    unreachable!("grammar: group has wait and every")
                                };
                                let (repeat, rs) = match d.next() {
                                    Some((r, rs)) => (Some(r), rs),
                                    None => (None, span),
                                };
                                Action::Group(GroupClause {
                                    by,
                                    wait,
                                    every,
                                    repeat,
                                    spans: [ws, es, rs],
                                    span,
                                })
                            }
                            R::hold_clause | R::mute_clause => {
                                let hold = a.as_rule() == R::hold_clause;
                                let name = a
                                    .into_inner()
                                    .find(|p| p.as_rule() == R::window_name)
                                    .map(|p| self.ident(&p));
                                match (name, hold) {
                                    (Some(n), true) => Action::HoldDuring(n, span),
                                    (Some(n), false) => Action::MuteDuring(n, span),
                                    (None, _) => unreachable!("grammar: a window name"),
                                }
                            }
                            r => unreachable!("grammar: action, got {r:?}"),
                        });
                    }
                }
                r => unreachable!("grammar: rule part, got {r:?}"),
            }
        }
        Rule {
            name,
            condition: condition.unwrap_or(Condition::All(Vec::new())),
            actions,
            span: start.unwrap_or_default(),
        }
    }

    /// `dedup [by <paths>] (for <d> | until resolved)`.
    fn dedup(&mut self, pair: P<'_>) -> Dedup {
        let span = self.span(&pair);
        let mut by = Vec::new();
        let mut window = DedupWindow::UntilResolved;
        for p in pair.into_inner() {
            match p.as_rule() {
                R::kw_dedup => {}
                R::by_paths => by = self.by_paths(p),
                R::dedup_for => {
                    if let Some(d) = p.into_inner().find(|p| p.as_rule() == R::duration) {
                        window = DedupWindow::For(self.duration(&d), self.span(&d));
                    }
                }
                R::dedup_until => window = DedupWindow::UntilResolved,
                r => unreachable!("grammar: dedup part, got {r:?}"),
            }
        }
        Dedup { by, window, span }
    }

    /// `by a, b`: the paths in order.
    fn by_paths(&mut self, pair: P<'_>) -> Vec<FieldPath> {
        pair.into_inner()
            .filter(|p| p.as_rule() == R::field_path)
            .map(|p| self.field_path(p))
            .collect()
    }

    /// `at most <n> per <d> [by <paths>] [else post <target>]`. A count that does not fit
    /// 64 bits is a diagnostic (and `None`).
    fn throttle(&mut self, pair: P<'_>) -> Throttle {
        let span = self.span(&pair);
        let mut count = None;
        let mut count_span = span;
        let mut per = Duration {
            amount: 0,
            unit: DurationUnit::Seconds,
        };
        let mut per_span = span;
        let mut by = Vec::new();
        let mut else_post = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                R::kw_at | R::kw_most | R::kw_per => {}
                R::count => {
                    count_span = self.span(&p);
                    count = p.as_str().parse::<u64>().ok();
                    if count.is_none() {
                        self.error(
                            Diagnostic::error(
                                codes::BAD_NUMBER,
                                format!("count `{}` is out of range", p.as_str()),
                            )
                            .with_primary(count_span, "too large")
                            .with_help("write a smaller count, such as `at most 5 per 1m`"),
                        );
                    }
                }
                R::duration => {
                    per_span = self.span(&p);
                    per = self.duration(&p);
                }
                R::by_paths => by = self.by_paths(p),
                R::throttle_else => else_post = Some(self.target_name_in(p)),
                r => unreachable!("grammar: throttle part, got {r:?}"),
            }
        }
        Throttle {
            count,
            count_span,
            per,
            per_span,
            by,
            else_post,
            span,
        }
    }

    /// The target named in `post <target>`.
    fn target_name_in(&mut self, pair: P<'_>) -> Ident {
        let span = self.span(&pair);
        match pair.into_inner().find(|p| p.as_rule() == R::target_name) {
            Some(t) => self.ident(&t),
            None => Ident {
                name: String::new(),
                span,
            },
        }
    }

    fn ident(&self, p: &P<'_>) -> Ident {
        Ident {
            name: p.as_str().to_owned(),
            span: self.span(p),
        }
    }

    /// `a or b or c`: one `Any` with every alternative (a nested `or` is flattened into
    /// it), or the single part itself.
    fn condition(&mut self, pair: P<'_>) -> Condition {
        let mut parts: Vec<Condition> = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                R::conjunction => match self.conjunction(p) {
                    Condition::Any(inner) => parts.extend(inner),
                    c => parts.push(c),
                },
                R::kw_or => {}
                r => unreachable!("grammar: condition part, got {r:?}"),
            }
        }
        if parts.len() == 1 {
            parts.remove(0)
        } else {
            Condition::Any(parts)
        }
    }

    /// `a and b and c`: one `All` (flattened likewise), or the single part itself.
    fn conjunction(&mut self, pair: P<'_>) -> Condition {
        let mut parts: Vec<Condition> = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                R::operand => match self.operand(p) {
                    Condition::All(inner) => parts.extend(inner),
                    c => parts.push(c),
                },
                R::kw_and => {}
                r => unreachable!("grammar: conjunction part, got {r:?}"),
            }
        }
        if parts.len() == 1 {
            parts.remove(0)
        } else {
            Condition::All(parts)
        }
    }

    /// `not* (group | exists(path) | comparison)`. Counts nesting against
    /// [`MAX_CONDITION_DEPTH`]: past it, one diagnostic, and the tree is kept shallow so that
    /// nothing after this recurses deeply on hostile input.
    fn operand(&mut self, pair: P<'_>) -> Condition {
        let saved = self.depth;
        let mut nots: Vec<Span> = Vec::new();
        let mut inner = None;
        let mut group_span = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                R::kw_not => {
                    self.depth += 1;
                    if self.depth == MAX_CONDITION_DEPTH + 1 {
                        self.too_deep(self.span(&p));
                    }
                    nots.push(self.span(&p));
                }
                R::group => {
                    self.depth += 1;
                    let span = self.span(&p);
                    if self.depth == MAX_CONDITION_DEPTH + 1 {
                        self.too_deep(span);
                    }
                    inner = p.into_inner().next().map(|c| self.condition(c));
                    // A `not` before a group covers its closing parenthesis too.
                    group_span = Some(span);
                }
                R::exists => {
                    let span = self.span(&p);
                    let path = p
                        .into_inner()
                        .find(|p| p.as_rule() == R::field_path)
                        .map(|p| self.field_path(p));
                    inner = path.map(|path| Condition::Exists(path, span));
                }
                R::comparison => inner = Some(self.comparison(p)),
                R::during => {
                    let span = self.span(&p);
                    if let Some(n) = p.into_inner().find(|p| p.as_rule() == R::window_name) {
                        inner = Some(Condition::During(self.ident(&n), span));
                    }
                }
                r => unreachable!("grammar: operand part, got {r:?}"),
            }
        }
        self.depth = saved;
        let mut c = inner.unwrap_or(Condition::All(Vec::new()));
        if self.depth + nots.len() > MAX_CONDITION_DEPTH {
            // Reported once above; keep the tree shallow so nothing downstream recurses deeply.
            return c;
        }
        let operand_span = group_span.unwrap_or_else(|| c.span());
        for span in nots.into_iter().rev() {
            let span = span.to(operand_span);
            c = Condition::Not(Box::new(c), span);
        }
        c
    }

    /// The diagnostic for a condition nested past [`MAX_CONDITION_DEPTH`].
    fn too_deep(&mut self, span: Span) {
        self.error(
            Diagnostic::error(codes::TOO_DEEP, format!("condition nested more than {MAX_CONDITION_DEPTH} levels deep"))
                .with_primary(span, "too deep")
                .with_help("split the condition into several rules, or remove redundant parentheses and `not`s"),
        );
    }

    /// `path op literal`.
    fn comparison(&mut self, pair: P<'_>) -> Condition {
        let span = self.span(&pair);
        let mut it = pair.into_inner();
        let (Some(path), Some(op), Some(value)) = (it.next(), it.next(), it.next()) else {
            unreachable!("grammar: comparison is path, op, value")
        };
        let path = self.field_path(path);
        let op_span = self.span(&op);
        let Some(cmp) = CmpOp::from_token(op.as_str()) else {
            unreachable!("grammar: cmp_op token {:?}", op.as_str())
        };
        let value = self.literal(value);
        Condition::Compare(Comparison {
            path,
            op: cmp,
            op_span,
            value,
            span,
        })
    }

    /// A literal on the right of a comparison. A regex keeps its pattern (with `\/`
    /// unescaped) and flags as written; `check/` compiles it.
    fn literal(&mut self, p: P<'_>) -> Literal {
        let span = self.span(&p);
        let kind = match p.as_rule() {
            R::string => LiteralKind::String(self.plain_string(p).value),
            R::number => match self.number(&p) {
                Some(n) => LiteralKind::Number(n),
                None => LiteralKind::Null,
            },
            R::boolean => LiteralKind::Bool(p.as_str() == "true"),
            R::null => LiteralKind::Null,
            R::duration => LiteralKind::Duration(self.duration(&p)),
            R::regex => {
                let text = p.as_str();
                let close = text.rfind('/').unwrap_or(0);
                let body = text.get(1..close).unwrap_or("");
                let flags = text.get(close + 1..).unwrap_or("").to_owned();
                LiteralKind::Regex {
                    pattern: body.replace("\\/", "/"),
                    flags,
                }
            }
            R::list => LiteralKind::List(p.into_inner().map(|p| self.literal(p)).collect()),
            r => unreachable!("grammar: literal, got {r:?}"),
        };
        Literal { kind, span }
    }

    /// A number as JSON reads it; out of range, a diagnostic and `None`.
    fn number(&mut self, p: &P<'_>) -> Option<serde_json::Number> {
        match serde_json::from_str::<serde_json::Number>(p.as_str()) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(
                    Diagnostic::error(
                        codes::BAD_NUMBER,
                        format!("number `{}` is out of range", p.as_str()),
                    )
                    .with_primary(self.span(p), "too large to represent")
                    .with_help("numbers must fit a 64-bit float"),
                );
                None
            }
        }
    }

    /// `5s`, `250ms`, `1h`...; one that overflows milliseconds is a diagnostic.
    fn duration(&mut self, p: &P<'_>) -> Duration {
        let text = p.as_str();
        let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = match text.get(digits.len()..).unwrap_or("") {
            "ms" => DurationUnit::Millis,
            "s" => DurationUnit::Seconds,
            "m" => DurationUnit::Minutes,
            "h" => DurationUnit::Hours,
            "d" => DurationUnit::Days,
            u => unreachable!("grammar: duration unit {u:?}"),
        };
        let d = Duration {
            amount: digits.parse().unwrap_or(u64::MAX),
            unit,
        };
        if digits.parse::<u64>().is_err() || d.as_millis().is_none() {
            self.error(
                Diagnostic::error(
                    codes::BAD_NUMBER,
                    format!("duration `{text}` is out of range"),
                )
                .with_primary(self.span(p), "too large")
                .with_help("write a shorter duration, such as `5s` or `1h`"),
            );
        }
        d
    }

    // ---- field paths -------------------------------------------------------------------

    /// `@meta`, `a.b[0]."quoted key".*`: the segments in order; an index past `u32` is a
    /// diagnostic.
    pub(crate) fn field_path(&mut self, pair: P<'_>) -> FieldPath {
        let span = self.span(&pair);
        let mut meta = None;
        let mut segments = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                R::meta_field => meta = Some(p.as_str().trim_start_matches('@').to_owned()),
                R::key | R::key_any => segments.push(Segment::Key(p.as_str().to_owned())),
                R::string => segments.push(Segment::Key(self.plain_string(p).value)),
                R::index => match p.as_str().parse::<u32>() {
                    Ok(i) => segments.push(Segment::Index(i)),
                    Err(_) => {
                        self.error(
                            Diagnostic::error(
                                codes::BAD_NUMBER,
                                format!("index `{}` is out of range", p.as_str()),
                            )
                            .with_primary(self.span(&p), "too large")
                            .with_help("an index must be below 4294967296"),
                        );
                        segments.push(Segment::Index(u32::MAX));
                    }
                },
                R::wildcard => segments.push(Segment::Any),
                r => unreachable!("grammar: path segment, got {r:?}"),
            }
        }
        FieldPath {
            meta,
            segments,
            span,
        }
    }

    // ---- strings -----------------------------------------------------------------------

    /// A string literal decoded with JSON escapes; no interpolation.
    fn plain_string(&mut self, p: P<'_>) -> Str {
        let span = self.span(&p);
        let raw = p.as_str();
        // Without a backslash the text between the quotes is the value (the grammar admits no
        // quote or control character there): most strings skip the JSON decoder.
        let plain = raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .filter(|inner| !inner.contains('\\'));
        let decoded = match plain {
            Some(inner) => Ok(inner.to_owned()),
            None => serde_json::from_str::<String>(raw),
        };
        let value = match decoded {
            Ok(v) => v,
            Err(_) => {
                self.error(
                    Diagnostic::error(codes::BAD_STRING, "string has an invalid escape")
                        .with_primary(span, "not valid JSON string text")
                        .with_help("`\\u` escapes must form valid characters; write surrogate pairs in full (`\\ud83d\\ude00`)"),
                );
                String::new()
            }
        };
        Str { value, span }
    }

    /// A string literal split on `${...}`. `$${` writes a literal `${`.
    fn interpolated(&mut self, p: P<'_>) -> Interpolated {
        let span = self.span(&p);
        let raw = p.as_str();
        let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or("");
        let base = span.start as usize + 1;
        let mut parts: Vec<Part> = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        let mut lit_start = 0;
        let flush = |lw: &mut Lowerer, text: &mut String, from: usize, to: usize| {
            let seg = inner.get(from..to).unwrap_or("");
            match serde_json::from_str::<String>(&format!("\"{seg}\"")) {
                Ok(s) => text.push_str(&s),
                Err(_) => lw.error(
                    Diagnostic::error(codes::BAD_STRING, "string has an invalid escape")
                        .with_primary(Span::new(lw.file, base + from, base + to), "not valid JSON string text")
                        .with_help("`\\u` escapes must form valid characters; write surrogate pairs in full"),
                ),
            }
        };
        let bytes = inner.as_bytes();
        while i < bytes.len() {
            if bytes[i] == b'\\' {
                i += 2;
                continue;
            }
            if bytes[i..].starts_with(b"$${") {
                flush(self, &mut text, lit_start, i);
                text.push_str("${");
                i += 3;
                lit_start = i;
                continue;
            }
            if bytes[i..].starts_with(b"${") {
                flush(self, &mut text, lit_start, i);
                let open = i;
                let Some(close_rel) = inner.get(i..).and_then(|r| r.find('}')) else {
                    self.error(
                        Diagnostic::error(codes::BAD_INTERPOLATION, "`${` is not closed")
                            .with_primary(
                                Span::new(self.file, base + open, base + inner.len()),
                                "no `}` after this",
                            )
                            .with_help("close it: `${env.NAME}`; write `$${` for a literal `${`"),
                    );
                    lit_start = inner.len();
                    break;
                };
                let close = i + close_rel;
                let body = inner.get(i + 2..close).unwrap_or("");
                let part_span = Span::new(self.file, base + open, base + close + 1);
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                if let Some(part) = self.interpolation(body, base + i + 2, part_span) {
                    parts.push(part);
                }
                i = close + 1;
                lit_start = i;
                continue;
            }
            i += 1;
        }
        flush(self, &mut text, lit_start, inner.len().max(lit_start));
        if !text.is_empty() || parts.is_empty() {
            parts.push(Part::Text(text));
        }
        Interpolated { parts, span }
    }

    /// The inside of one `${...}` at byte `at` of the string: `env.NAME` (with an optional
    /// `:-default`) or a field path. A malformed one is a diagnostic and `None`.
    fn interpolation(&mut self, body: &str, at: usize, span: Span) -> Option<Part> {
        if let Some(rest) = body.strip_prefix("env.") {
            let (name, default) = match rest.split_once(":-") {
                Some((n, d)) => (n, Some(d.to_owned())),
                None => (rest, None),
            };
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.error(
                    Diagnostic::error(
                        codes::BAD_INTERPOLATION,
                        format!("`{name}` is not a valid environment variable name"),
                    )
                    .with_primary(span, "invalid name")
                    .with_help("use letters, digits and `_`: `${env.WEBHOOK_TOKEN}`"),
                );
                return None;
            }
            return Some(Part::Env {
                name: name.to_owned(),
                default,
                span,
            });
        }
        match RulesParser::parse(R::interpolated_path, body) {
            Ok(mut pairs) => {
                let path = pairs
                    .next()
                    .and_then(|p| p.into_inner().find(|p| p.as_rule() == R::field_path))?;
                let offset = std::mem::replace(&mut self.offset, 0);
                let mut fp = self.field_path(path);
                self.offset = offset;
                // Re-base spans: the path was parsed on its own.
                fp.span = Span::new(self.file, at, at + body.len());
                Some(Part::Path(fp))
            }
            Err(_) => {
                self.error(
                    Diagnostic::error(codes::BAD_INTERPOLATION, format!("`${{{body}}}` is not a field path or `env.NAME`"))
                        .with_primary(span, "cannot interpolate this")
                        .with_help("write a field path (`${labels.severity}`) or an environment variable (`${env.TOKEN}`); `$${` writes a literal `${`"),
                );
                None
            }
        }
    }

    // ---- templates ---------------------------------------------------------------------

    /// JSON-shaped values; `interpolate` is false inside test blocks, where strings are data.
    fn template(&mut self, p: P<'_>, interpolate: bool) -> Template {
        let span = self.span(&p);
        match p.as_rule() {
            R::null => Template::Null,
            R::boolean => Template::Bool(p.as_str() == "true"),
            R::number => self.number(&p).map_or(Template::Null, Template::Number),
            R::string if interpolate => Template::String(self.interpolated(p)),
            R::string => {
                let s = self.plain_string(p);
                Template::String(Interpolated {
                    parts: vec![Part::Text(s.value)],
                    span: s.span,
                })
            }
            R::field_path => Template::Path(self.field_path(p)),
            R::array => Template::Array(
                p.into_inner()
                    .map(|p| self.template(p, interpolate))
                    .collect(),
                span,
            ),
            R::object => {
                let mut members = Vec::new();
                for m in p.into_inner() {
                    let mut it = m.into_inner();
                    let (Some(k), Some(v)) = (it.next(), it.next()) else {
                        unreachable!("grammar: member is key and value")
                    };
                    let key = self.plain_string(k);
                    members.push((key, self.template(v, interpolate)));
                }
                Template::Object(members, span)
            }
            r => unreachable!("grammar: template, got {r:?}"),
        }
    }

    // ---- targets -----------------------------------------------------------------------

    /// `target name { setting = value ... }`: the settings as written, unchecked.
    fn target(&mut self, pair: P<'_>) -> TargetDecl {
        let span = self.span(&pair);
        let mut name = None;
        let mut settings = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                R::kw_target => {}
                R::target_name => name = Some(self.ident(&p)),
                R::setting => {
                    let mut it = p.into_inner();
                    let (Some(n), Some(v)) = (it.next(), it.next()) else {
                        unreachable!("grammar: setting is name and value")
                    };
                    let value_span = self.span(&v);
                    let value = match v.as_rule() {
                        R::duration => SettingValue::Duration(self.duration(&v)),
                        _ => SettingValue::Template(self.template(v, true)),
                    };
                    settings.push(Setting {
                        name: self.ident(&n),
                        value,
                        value_span,
                    });
                }
                r => unreachable!("grammar: target part, got {r:?}"),
            }
        }
        TargetDecl {
            name: name.unwrap_or(Ident {
                name: String::new(),
                span,
            }),
            settings,
        }
    }

    // ---- windows -----------------------------------------------------------------------

    /// `window NAME = part (or part)* ZONE`.
    fn window(&mut self, pair: P<'_>) -> WindowDecl {
        let span = self.trimmed_span(&pair);
        let mut name = None;
        let mut parts = Vec::new();
        let mut zone = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                R::kw_window => {}
                R::window_name => name = Some(self.ident(&p)),
                R::kw_or => {}
                R::weekly_part => {
                    let part_span = self.trimmed_span(&p);
                    let mut days = Vec::new();
                    let mut hours = None;
                    let mut daily = false;
                    for q in p.into_inner() {
                        match q.as_rule() {
                            R::kw_daily => daily = true,
                            R::days => {
                                for range in q.into_inner() {
                                    let mut ends = range.into_inner().map(|d| self.ident(&d));
                                    if let Some(first) = ends.next() {
                                        days.push((first, ends.next()));
                                    }
                                }
                            }
                            R::clock_range => {
                                let mut ends = q.into_inner().map(|c| self.ident(&c));
                                if let (Some(a), Some(b)) = (ends.next(), ends.next()) {
                                    hours = Some((a, b));
                                }
                            }
                            r => unreachable!("grammar: weekly part, got {r:?}"),
                        }
                    }
                    parts.push(WindowPart::Weekly {
                        daily,
                        days,
                        hours,
                        span: part_span,
                    });
                }
                R::dated_part => {
                    let part_span = self.span(&p);
                    // date [clock] .. date [clock]: a clock belongs to the date before it.
                    let mut ends: Vec<(Ident, Option<Ident>)> = Vec::new();
                    for q in p.into_inner() {
                        let id = self.ident(&q);
                        match (q.as_rule(), ends.last_mut()) {
                            (R::clock, Some(last)) => last.1 = Some(id),
                            _ => ends.push((id, None)),
                        }
                    }
                    let mut ends = ends.into_iter();
                    let (from, to) = (ends.next(), ends.next());
                    if let (Some(from), Some(to)) = (from, to) {
                        parts.push(WindowPart::Dated {
                            from,
                            to,
                            span: part_span,
                        });
                    }
                }
                R::zone => zone = Some(self.ident(&p)),
                r => unreachable!("grammar: window part, got {r:?}"),
            }
        }
        WindowDecl {
            name: name.unwrap_or(Ident {
                name: String::new(),
                span,
            }),
            parts,
            zone,
            span,
        }
    }

    // ---- tests -------------------------------------------------------------------------

    /// `test "name" { alert = {...} expect ... }`: the alert is data (no interpolation).
    fn test(&mut self, pair: P<'_>) -> TestBlock {
        let mut span = self.span(&pair);
        let mut name = None;
        let mut statements = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                R::kw_test => span = self.span(&p),
                R::string => name = Some(self.plain_string(p)),
                R::test_source => {
                    if let Some(n) = p.into_inner().find(|p| p.as_rule() == R::source_name) {
                        statements.push(TestStatement::Source(self.ident(&n)));
                    }
                }
                R::test_time if p.clone().into_inner().any(|p| p.as_rule() == R::date) => {
                    let span = self.span(&p);
                    let mut parts = p
                        .into_inner()
                        .filter(|p| p.as_rule() != R::kw_at)
                        .map(|p| self.ident(&p));
                    if let (Some(date), Some(clock), zone) =
                        (parts.next(), parts.next(), parts.next())
                    {
                        statements.push(TestStatement::AtMoment {
                            date,
                            clock,
                            zone,
                            span,
                        });
                    }
                }
                R::test_time => {
                    let span = self.span(&p);
                    let after = p.clone().into_inner().any(|p| p.as_rule() == R::kw_after);
                    if let Some(d) = p.into_inner().find(|p| p.as_rule() == R::duration) {
                        let d = self.duration(&d);
                        statements.push(if after {
                            TestStatement::After(d, span)
                        } else {
                            TestStatement::At(d, span)
                        });
                    }
                }
                R::test_silence => {
                    let span = self.span(&p);
                    let mut inner = p.into_inner();
                    let condition = inner.find(|p| p.as_rule() == R::string);
                    let duration = inner.find(|p| p.as_rule() == R::duration);
                    if let (Some(c), Some(d)) = (condition, duration) {
                        let condition = self.plain_string(c);
                        let duration = self.duration(&d);
                        statements.push(TestStatement::Silence {
                            condition,
                            duration,
                            span,
                        });
                    }
                }
                R::test_alert => {
                    if let Some(v) = p.into_inner().find(|p| p.as_rule() != R::kw_alert) {
                        statements.push(TestStatement::Alert(self.template(v, false)));
                    }
                }
                R::expect => {
                    let espan = self.span(&p);
                    let Some(e) = p.into_inner().find(|p| p.as_rule() != R::kw_expect) else {
                        unreachable!("grammar: expect has a kind")
                    };
                    let kind = e.as_rule();
                    let mut inner = e.into_inner().filter(|p| {
                        !matches!(
                            p.as_rule(),
                            R::kw_post
                                | R::kw_no
                                | R::kw_drop
                                | R::kw_unrouted
                                | R::kw_body
                                | R::kw_throttled
                                | R::kw_held
                                | R::kw_silenced
                                | R::kw_inhibited
                                | R::kw_group
                        )
                    });
                    let expect = match kind {
                        R::expect_post => inner.next().map(|t| Expect::Post(self.ident(&t))),
                        R::expect_no_post => inner.next().map(|t| Expect::NoPost(self.ident(&t))),
                        R::expect_drop => Some(Expect::Drop),
                        R::expect_throttled => {
                            inner.next().map(|t| Expect::Throttled(self.ident(&t)))
                        }
                        R::expect_held => inner.next().map(|t| Expect::Held(self.ident(&t))),
                        R::expect_silenced => {
                            inner.next().map(|t| Expect::Silenced(self.ident(&t)))
                        }
                        R::expect_inhibited => {
                            inner.next().map(|t| Expect::Inhibited(self.ident(&t)))
                        }
                        R::expect_group => inner.next().map(|t| {
                            let names = inner.next().map(|list| {
                                list.into_inner()
                                    .filter(|p| p.as_rule() == R::string)
                                    .map(|p| self.plain_string(p))
                                    .collect()
                            });
                            Expect::Group(self.ident(&t), names)
                        }),
                        R::expect_unrouted => Some(Expect::Unrouted),
                        R::expect_body => match (inner.next(), inner.next()) {
                            (Some(t), Some(v)) => {
                                let target = self.ident(&t);
                                Some(Expect::Body(target, self.template(v, false)))
                            }
                            _ => None,
                        },
                        r => unreachable!("grammar: expectation, got {r:?}"),
                    };
                    if let Some(expect) = expect {
                        statements.push(TestStatement::Expect(expect, espan));
                    }
                }
                r => unreachable!("grammar: test part, got {r:?}"),
            }
        }
        let name = name.unwrap_or(Str {
            value: String::new(),
            span,
        });
        TestBlock {
            name,
            statements,
            span,
        }
    }
}
