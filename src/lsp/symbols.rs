//! What each name in a parsed file is: the declarations and uses of targets and windows,
//! field paths with the sender their rule is tied to, operators, settings.
//!
//! Owns: the one walk over a file's tree that hover, definition, references, completion
//! and document symbols read. Never: guesses in a file that does not parse (those get the
//! lexical fallbacks of the features that need them).

use crate::alert::Source;
use crate::check::constrained_source;
use crate::diagnostic::Span;
use crate::syntax::ast::{
    Action, CmpOp, Condition, Expect, FieldPath, File, Item, SettingValue, Template, TestStatement,
};

/// What a place in a file names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `target NAME { ... }`
    TargetDecl(String),
    /// `post NAME`, `else post NAME`, `fallback = NAME`, `expect post NAME`, ...
    TargetUse(String),
    /// `window NAME = ...`
    WindowDecl(String),
    /// `during NAME`, `hold during NAME`, `mute during NAME`
    WindowUse(String),
    /// A field path of a condition or clause, and the sender its rule is tied to.
    Field(FieldPath, Option<Source>),
    /// A comparison operator.
    Operator(CmpOp),
    /// A target's setting name.
    Setting(String),
    /// A test's `source NAME`.
    Source(String),
}

impl Kind {
    /// A target's or window's name: `("target" | "window", name, is_declaration)`.
    pub(crate) fn named(&self) -> Option<(&'static str, &str, bool)> {
        match self {
            Kind::TargetDecl(n) => Some(("target", n, true)),
            Kind::TargetUse(n) => Some(("target", n, false)),
            Kind::WindowDecl(n) => Some(("window", n, true)),
            Kind::WindowUse(n) => Some(("window", n, false)),
            _ => None,
        }
    }
}

/// A name and where it is written.
#[derive(Clone, Debug)]
pub(crate) struct Occurrence {
    pub(crate) span: Span,
    pub(crate) kind: Kind,
}

/// Every occurrence in a file, in source order.
pub(crate) fn occurrences(file: &File) -> Vec<Occurrence> {
    let mut out = Vec::new();
    let mut push = |span: Span, kind: Kind| out.push(Occurrence { span, kind });
    for item in &file.items {
        match item {
            Item::Target(t) => {
                push(t.name.span, Kind::TargetDecl(t.name.name.clone()));
                for s in &t.settings {
                    push(s.name.span, Kind::Setting(s.name.name.clone()));
                    if s.name.name == "fallback"
                        && let SettingValue::Template(Template::Path(p)) = &s.value
                    {
                        push(p.span, Kind::TargetUse(p.to_string()));
                    }
                }
            }
            Item::Window(w) => push(w.name.span, Kind::WindowDecl(w.name.name.clone())),
            Item::Inhibit(i) => {
                condition(&i.target, constrained_source(&i.target), &mut push);
                condition(&i.source, constrained_source(&i.source), &mut push);
                let source = constrained_source(&i.source);
                for p in &i.matching {
                    push(p.span, Kind::Field(p.clone(), source));
                }
            }
            Item::Rule(r) => {
                let source = constrained_source(&r.condition);
                condition(&r.condition, source, &mut push);
                for a in &r.actions {
                    action(a, source, &mut push);
                }
            }
            Item::Test(t) => {
                for s in &t.statements {
                    match s {
                        TestStatement::Source(name) => {
                            push(name.span, Kind::Source(name.name.clone()));
                        }
                        TestStatement::Expect(e, _) => match e {
                            Expect::Post(n)
                            | Expect::Throttled(n)
                            | Expect::Held(n)
                            | Expect::Silenced(n)
                            | Expect::Inhibited(n)
                            | Expect::Group(n, _)
                            | Expect::NoPost(n)
                            | Expect::Body(n, _) => push(n.span, Kind::TargetUse(n.name.clone())),
                            Expect::Drop | Expect::Unrouted => {}
                        },
                        _ => {}
                    }
                }
            }
        }
    }
    out.sort_by_key(|o| (o.span.start, o.span.end));
    out
}

fn condition(c: &Condition, source: Option<Source>, push: &mut impl FnMut(Span, Kind)) {
    match c {
        Condition::Any(cs) | Condition::All(cs) => {
            cs.iter().for_each(|c| condition(c, source, push));
        }
        Condition::Not(inner, _) => condition(inner, source, push),
        Condition::Compare(cmp) => {
            push(cmp.path.span, Kind::Field(cmp.path.clone(), source));
            push(cmp.op_span, Kind::Operator(cmp.op));
        }
        Condition::Exists(p, _) => push(p.span, Kind::Field(p.clone(), source)),
        Condition::During(w, _) => push(w.span, Kind::WindowUse(w.name.clone())),
    }
}

fn action(a: &Action, source: Option<Source>, push: &mut impl FnMut(Span, Kind)) {
    let fields = |ps: &[FieldPath], push: &mut dyn FnMut(Span, Kind)| {
        for p in ps {
            push(p.span, Kind::Field(p.clone(), source));
        }
    };
    match a {
        Action::Post(t) => push(t.span, Kind::TargetUse(t.name.clone())),
        Action::Dedup(d) => fields(&d.by, push),
        Action::Throttle(t) => {
            fields(&t.by, push);
            if let Some(e) = &t.else_post {
                push(e.span, Kind::TargetUse(e.name.clone()));
            }
        }
        Action::Group(g) => fields(&g.by, push),
        Action::HoldDuring(w, _) | Action::MuteDuring(w, _) => {
            push(w.span, Kind::WindowUse(w.name.clone()));
        }
        Action::Drop(_)
        | Action::Stop(_)
        | Action::ResolveOnce(_)
        | Action::Delay(..)
        | Action::MuteFlapping(_) => {}
    }
}

/// The occurrence at a byte offset (its span holds the offset, or ends at it).
pub(crate) fn at(occurrences: &[Occurrence], offset: usize) -> Option<&Occurrence> {
    let offset = u32::try_from(offset).unwrap_or(u32::MAX);
    occurrences
        .iter()
        .filter(|o| o.span.start <= offset && offset <= o.span.end)
        .min_by_key(|o| o.span.end - o.span.start)
}
