//! AST to canonical rules text. `parse(print(ast))` gives back the same tree (spans aside).
//!
//! The checker uses the pieces (`field_path`, `literal`, `quote`) in its messages; whole
//! files are printed by the round-trip tests and fuzz targets, and items by the formatter
//! (`format.rs`, which keeps the comments the tree does not hold).
#![cfg_attr(not(any(test, feature = "unstable-internals")), allow(dead_code))]

use std::fmt::Write as _;

use super::ast::*;

/// Prints a whole file in canonical layout.
pub(crate) fn file(f: &File) -> String {
    let mut out = String::new();
    for (i, it) in f.items.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        item(&mut out, it);
    }
    out
}

/// Prints one item in canonical layout, ending with a newline.
pub(crate) fn item(out: &mut String, item: &Item) {
    match item {
        Item::Target(t) => target(out, t),
        Item::Window(w) => window(out, w),
        Item::Inhibit(i) => inhibit(out, i),
        Item::Rule(r) => rule(out, r),
        Item::Test(t) => test(out, t),
    }
}

/// `inhibit "name" when <target> while <source> is firing matching <paths>` on one line.
fn inhibit(out: &mut String, i: &InhibitDecl) {
    let name = quote(&i.name.value);
    let when = format!("when {}", condition(&i.target));
    let mut source = format!("while {} is firing", condition(&i.source));
    if !i.matching.is_empty() {
        let paths: Vec<String> = i.matching.iter().map(field_path).collect();
        let _ = write!(source, " matching {}", paths.join(", "));
    }
    let one = format!("inhibit {name} {when} {source}");
    if width(&one) <= WIDTH {
        let _ = writeln!(out, "{one}");
    } else {
        // Too long for one line: its parts a line each, under the name.
        let _ = writeln!(out, "inhibit {name}\n    {when}\n    {source}");
    }
}

/// `rule "name" when <condition> -> <actions>` on one line.
fn rule(out: &mut String, r: &Rule) {
    let name = r
        .name
        .as_ref()
        .map(|n| format!("rule {} ", quote(&n.value)))
        .unwrap_or_default();
    let cond = condition(&r.condition);
    let actions: Vec<String> = r
        .actions
        .iter()
        .map(|a| match a {
            Action::Post(t) => format!("post {}", t.name),
            Action::Drop(_) => String::from("drop"),
            Action::Stop(_) => String::from("stop"),
            Action::Dedup(d) => {
                let by = by_paths(&d.by);
                match d.window {
                    DedupWindow::For(w, _) => format!("dedup{by} for {}{}", w.amount, w.suffix()),
                    DedupWindow::UntilResolved => format!("dedup{by} until resolved"),
                }
            }
            Action::ResolveOnce(_) => String::from("resolve once"),
            Action::Delay(d, ..) => format!("delay {}{} unless resolved", d.amount, d.suffix()),
            Action::HoldDuring(w, _) => format!("hold during {}", w.name),
            Action::MuteDuring(w, _) => format!("mute during {}", w.name),
            Action::Group(g) => {
                let repeat = g
                    .repeat
                    .as_ref()
                    .map(|r| format!(" repeat {}{}", r.amount, r.suffix()))
                    .unwrap_or_default();
                format!(
                    "group{} wait {}{} every {}{}{repeat}",
                    by_paths(&g.by),
                    g.wait.amount,
                    g.wait.suffix(),
                    g.every.amount,
                    g.every.suffix()
                )
            }
            Action::MuteFlapping(f) => format!(
                "mute flapping {} changes in {}{}",
                f.changes.unwrap_or(u64::MAX),
                f.within.amount,
                f.within.suffix()
            ),
            Action::Throttle(t) => {
                let mut out = format!(
                    "at most {} per {}{}{}",
                    t.count.unwrap_or(u64::MAX),
                    t.per.amount,
                    t.per.suffix(),
                    by_paths(&t.by)
                );
                if let Some(e) = &t.else_post {
                    out.push_str(&format!(" else post {}", e.name));
                }
                out
            }
        })
        .collect();
    let actions = actions.join(", ");
    let when = format!("when {cond} -> {actions}");
    if width(&name) + width(&when) <= WIDTH {
        let _ = writeln!(out, "{name}{when}");
        return;
    }
    // Too long for one line: the name on a line of its own, then the condition one
    // top-level `and` (or `or`) a line, and the actions after them.
    if !name.is_empty() {
        let _ = writeln!(out, "{}", name.trim_end());
    }
    if width(&when) <= WIDTH {
        let _ = writeln!(out, "{when}");
        return;
    }
    let (joiner, parts) = match &r.condition {
        Condition::All(cs) if cs.len() > 1 => (" and ", cs),
        Condition::Any(cs) if cs.len() > 1 => (" or ", cs),
        _ => ("", &Vec::new()),
    };
    if parts.is_empty() {
        let _ = writeln!(out, "when {cond}\n    -> {actions}");
        return;
    }
    for (i, c) in parts.iter().enumerate() {
        let text = condition(c);
        // Under `and`, an `or` keeps its parentheses.
        let text = if joiner == " and " && matches!(c, Condition::Any(_)) {
            format!("({text})")
        } else {
            text
        };
        if i == 0 {
            let _ = writeln!(out, "when {text}");
        } else {
            let _ = writeln!(out, "   {joiner}{text}");
        }
    }
    let _ = writeln!(out, "    -> {actions}");
}

/// The widest a printed line is meant to be (a longer one is broken where the layout can:
/// a named rule before `when`, an object or array one member a line).
const WIDTH: usize = 100;

/// How wide `s` shows, in characters.
fn width(s: &str) -> usize {
    s.chars().count()
}

/// Prints a condition; parentheses only where precedence needs them.
pub(crate) fn condition(c: &Condition) -> String {
    match c {
        Condition::Any(cs) => join(
            Joiner::Or,
            cs.iter()
                .map(|c| (matches!(c, Condition::Any(_)), condition(c))),
        ),
        Condition::All(cs) => join(
            Joiner::And,
            cs.iter()
                .map(|c| (matches!(c, Condition::Any(_)), condition(c))),
        ),
        Condition::Not(inner, _) => match **inner {
            Condition::Any(_) | Condition::All(_) => format!("not ({})", condition(inner)),
            _ => format!("not {}", condition(inner)),
        },
        Condition::Compare(cmp) => {
            format!(
                "{} {} {}",
                field_path(&cmp.path),
                cmp.op.as_str(),
                literal(&cmp.value.kind)
            )
        }
        Condition::Exists(p, _) => format!("exists({})", field_path(p)),
        Condition::During(w, _) => format!("during {}", w.name),
    }
}

/// `window NAME = part or part ZONE` on one line, days, times and dates as written.
fn window(out: &mut String, w: &WindowDecl) {
    let parts: Vec<String> = w
        .parts
        .iter()
        .map(|p| match p {
            WindowPart::Weekly {
                daily, days, hours, ..
            } => {
                let mut s = if *daily {
                    String::from("daily")
                } else {
                    let ranges: Vec<String> = days
                        .iter()
                        .map(|(a, b)| match b {
                            Some(b) => format!("{}-{}", a.name, b.name),
                            None => a.name.clone(),
                        })
                        .collect();
                    ranges.join(",")
                };
                if let Some((a, b)) = hours {
                    if !s.is_empty() {
                        s.push(' ');
                    }
                    let _ = write!(s, "{}-{}", a.name, b.name);
                }
                s
            }
            WindowPart::Dated { from, to, .. } => {
                let end = |(d, c): &(Ident, Option<Ident>)| match c {
                    Some(c) => format!("{} {}", d.name, c.name),
                    None => d.name.clone(),
                };
                format!("{} .. {}", end(from), end(to))
            }
        })
        .collect();
    let zone = w
        .zone
        .as_ref()
        .map(|z| format!(" {}", z.name))
        .unwrap_or_default();
    let _ = writeln!(out, "window {} = {}{zone}", w.name.name, parts.join(" or "));
}

/// `and` or `or`.
#[derive(Clone, Copy)]
pub(crate) enum Joiner {
    And,
    Or,
}

/// Joins printed parts with `and` or `or`, parenthesizing the parts that need it: an `or`
/// inside an `and` (`or` binds loosest). Each part comes with whether it is an `or`. The
/// one place the language's precedence is applied to printing, for the rules printer and
/// for explain's trace of a compiled condition.
pub(crate) fn join(joiner: Joiner, parts: impl Iterator<Item = (bool, String)>) -> String {
    let mut out = String::new();
    for (i, (is_or, text)) in parts.enumerate() {
        if i > 0 {
            out.push_str(match joiner {
                Joiner::And => " and ",
                Joiner::Or => " or ",
            });
        }
        if is_or && matches!(joiner, Joiner::And) {
            out.push('(');
            out.push_str(&text);
            out.push(')');
        } else {
            out.push_str(&text);
        }
    }
    out
}

/// Prints a literal in canonical form.
pub(crate) fn literal(l: &LiteralKind) -> String {
    match l {
        LiteralKind::String(s) => quote(s),
        LiteralKind::Number(n) => n.to_string(),
        LiteralKind::Bool(b) => b.to_string(),
        LiteralKind::Null => String::from("null"),
        LiteralKind::Regex { pattern, flags } => format!("/{}/{}", escape_regex(pattern), flags),
        LiteralKind::Duration(d) => format!("{}{}", d.amount, d.suffix()),
        LiteralKind::List(items) => {
            format!(
                "[{}]",
                items
                    .iter()
                    .map(|l| literal(&l.kind))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// Escapes every unescaped `/` of a pattern, so it can sit between slashes.
fn escape_regex(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut escaped = false;
    for c in p.chars() {
        if c == '/' && !escaped {
            out.push('\\');
        }
        escaped = c == '\\' && !escaped;
        out.push(c);
    }
    out
}

/// A string literal with JSON escapes.
pub(crate) fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Whether a path key prints bare (`a.b`) or must be quoted (`a."b c"`): bare only if it
/// would lex back as the same key (and, first in a path, not as a keyword).
fn is_plain_key(k: &str, first: bool) -> bool {
    let mut chars = k.chars();
    let start_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let keyword = first
        && matches!(
            k,
            "and" | "or" | "not" | "in" | "true" | "false" | "null" | "exists"
        );
    let body_ok = k
        .split('-')
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    start_ok && body_ok && !keyword
}

/// A path prints in canonical form, the printer's; it lives here, beside the printer, so
/// that the syntax tree imports nothing from the printer.
impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&field_path(self))
    }
}

/// A field path in canonical form.
pub(crate) fn field_path(p: &FieldPath) -> String {
    let mut out = String::new();
    if let Some(m) = &p.meta {
        out.push('@');
        out.push_str(m);
    }
    for (i, s) in p.segments.iter().enumerate() {
        match s {
            Segment::Key(k) if i == 0 && p.meta.is_none() => {
                // The grammar has no quoted first key; the lowering never builds one.
                out.push_str(k);
            }
            Segment::Key(k) if is_plain_key(k, false) => {
                out.push('.');
                out.push_str(k);
            }
            Segment::Key(k) => {
                out.push('.');
                out.push_str(&quote(k));
            }
            Segment::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
            Segment::Any => out.push_str("[*]"),
        }
    }
    out
}

/// ` by a, b` (with its leading space), or nothing for no paths.
fn by_paths(paths: &[FieldPath]) -> String {
    if paths.is_empty() {
        return String::new();
    }
    let list: Vec<String> = paths.iter().map(field_path).collect();
    format!(" by {}", list.join(", "))
}

/// `target name { ... }`, one setting a line.
fn target(out: &mut String, t: &TargetDecl) {
    let _ = writeln!(out, "target {} {{", t.name.name);
    // The `=` of a target's settings line up.
    let names = t
        .settings
        .iter()
        .map(|s| width(&s.name.name))
        .max()
        .unwrap_or(0);
    for s in &t.settings {
        let value = match &s.value {
            SettingValue::Duration(d) => format!("{}{}", d.amount, d.suffix()),
            SettingValue::Template(t) => template_at(t, true, 4, 4 + names + 3),
        };
        let _ = writeln!(out, "    {:<names$} = {}", s.name.name, value);
    }
    out.push_str("}\n");
}

/// [`template`] at `indent`, starting `column` characters into its line: on one line when
/// it fits in [`WIDTH`], else an object or array one member a line, each at `indent` + 4.
fn template_at(t: &Template, interp: bool, indent: usize, column: usize) -> String {
    let one = template(t, interp);
    if column + width(&one) <= WIDTH {
        return one;
    }
    let inner = " ".repeat(indent + 4);
    let lines: Vec<String> = match t {
        Template::Object(members, _) if !members.is_empty() => members
            .iter()
            .map(|(k, v)| {
                let key = format!("{}: ", quote(&k.value));
                let value = template_at(v, interp, indent + 4, indent + 4 + width(&key));
                format!("{inner}{key}{value}")
            })
            .collect(),
        Template::Array(items, _) if !items.is_empty() => items
            .iter()
            .map(|v| format!("{inner}{}", template_at(v, interp, indent + 4, indent + 4)))
            .collect(),
        _ => return one,
    };
    let (open, close) = if matches!(t, Template::Object(..)) {
        ("{", "}")
    } else {
        ("[", "]")
    };
    format!(
        "{open}\n{}\n{}{close}",
        lines.join(",\n"),
        " ".repeat(indent)
    )
}

/// A template in canonical form, on one line. `interp` is false for test data, whose
/// strings are never interpolated.
pub(crate) fn template(t: &Template, interp: bool) -> String {
    match t {
        Template::Null => String::from("null"),
        Template::Bool(b) => b.to_string(),
        Template::Number(n) => n.to_string(),
        Template::String(s) if interp => interpolated(s),
        Template::String(s) => quote(&s.as_plain().unwrap_or_default()),
        Template::Path(p) => field_path(p),
        Template::Array(items, _) => format!(
            "[{}]",
            items
                .iter()
                .map(|t| template(t, interp))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Template::Object(members, _) => {
            if members.is_empty() {
                return String::from("{}");
            }
            let inner: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}: {}", quote(&k.value), template(v, interp)))
                .collect();
            format!("{{ {} }}", inner.join(", "))
        }
    }
}

/// A string with its `${...}` parts as written (`$${` for a literal `${`).
fn interpolated(s: &Interpolated) -> String {
    let mut body = String::new();
    for (i, p) in s.parts.iter().enumerate() {
        match p {
            Part::Text(t) => {
                let q = quote(t);
                let mut inner = q.get(1..q.len() - 1).unwrap_or("").replace("${", "$${");
                // A `$` right before `${` would read as `$${`: write it as an escape.
                let next_interpolates =
                    matches!(s.parts.get(i + 1), Some(Part::Env { .. } | Part::Path(_)));
                if next_interpolates && inner.ends_with('$') {
                    inner.pop();
                    inner.push_str("\\u0024");
                }
                body.push_str(&inner);
            }
            Part::Env { name, default, .. } => {
                let _ = match default {
                    Some(d) => write!(body, "${{env.{name}:-{d}}}"),
                    None => write!(body, "${{env.{name}}}"),
                };
            }
            Part::Path(p) => {
                let _ = write!(body, "${{{}}}", field_path(p));
            }
        }
    }
    format!("\"{body}\"")
}

/// `test "name" { ... }`, one statement a line.
fn test(out: &mut String, t: &TestBlock) {
    let _ = writeln!(out, "test {} {{", quote(&t.name.value));
    for s in &t.statements {
        let line = match s {
            TestStatement::Source(n) => format!("source {}", n.name),
            TestStatement::Alert(a) => format!("alert {}", template_at(a, false, 4, 10)),
            TestStatement::Expect(e, _) => match e {
                Expect::Post(t) => format!("expect post {}", t.name),
                Expect::NoPost(t) => format!("expect no post {}", t.name),
                Expect::Drop => String::from("expect drop"),
                Expect::Unrouted => String::from("expect unrouted"),
                Expect::Body(t, b) => {
                    let column = 4 + width("expect body  ") + width(&t.name);
                    format!(
                        "expect body {} {}",
                        t.name,
                        template_at(b, false, 4, column)
                    )
                }
                Expect::Throttled(t) => format!("expect throttled {}", t.name),
                Expect::Held(t) => format!("expect held {}", t.name),
                Expect::Silenced(t) => format!("expect silenced {}", t.name),
                Expect::Inhibited(t) => format!("expect inhibited {}", t.name),
                Expect::Group(t, None) => format!("expect group {}", t.name),
                Expect::Group(t, Some(names)) => {
                    let names: Vec<String> = names.iter().map(|n| quote(&n.value)).collect();
                    format!("expect group {} [{}]", t.name, names.join(", "))
                }
            },
            TestStatement::At(d, _) => format!("at {}{}", d.amount, d.suffix()),
            TestStatement::After(d, _) => format!("after {}{}", d.amount, d.suffix()),
            TestStatement::Silence {
                condition,
                duration,
                ..
            } => format!(
                "silence {} for {}{}",
                quote(&condition.value),
                duration.amount,
                duration.suffix()
            ),
            TestStatement::AtMoment {
                date, clock, zone, ..
            } => {
                let zone = zone
                    .as_ref()
                    .map(|z| format!(" {}", z.name))
                    .unwrap_or_default();
                format!("at {} {}{zone}", date.name, clock.name)
            }
        };
        let _ = writeln!(out, "    {line}");
    }
    out.push_str("}\n");
}
