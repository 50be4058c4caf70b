//! Checked AST to predicates: paths pre-split, literals pre-parsed, regexes compiled once
//! and shared by every rule that uses the same pattern.

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;

use super::value::{Meta, Path, Scalar, Seg, Test};
use super::{CompiledRule, Target};
use crate::check::{Checked, CheckedRule, CheckedTarget};
use crate::diagnostic::Span;
use crate::number::Numeric;
use crate::syntax::ast::{CmpOp, Condition, FieldPath, LiteralKind, Segment};

/// A compiled condition.
#[derive(Clone, Debug)]
pub(crate) enum Pred {
    All(Box<[Pred]>),
    Any(Box<[Pred]>),
    Not(Box<Pred>, Span),
    /// `path <test>`; `negate` for `!=`, `!~`, `not in`, which are exactly `not` of the positive.
    Test {
        path: Path,
        test: Test,
        negate: bool,
        span: Span,
    },
}

pub(crate) struct Compiler<'c> {
    checked_regexes: &'c HashMap<Span, Regex>,
    shared: HashMap<(String, String), Arc<Regex>>,
}

impl<'c> Compiler<'c> {
    pub(crate) fn new(checked: &'c Checked) -> Compiler<'c> {
        Compiler {
            checked_regexes: &checked.regexes,
            shared: HashMap::new(),
        }
    }

    pub(crate) fn rule(&mut self, r: &CheckedRule) -> CompiledRule {
        CompiledRule {
            id: r.id.clone().into_boxed_str(),
            location: r.location.clone().into_boxed_str(),
            pred: self.condition(&r.condition),
            posts: r.posts.iter().map(|&i| i as u32).collect(),
            stop: r.stop,
            drop: r.drop,
        }
    }

    pub(crate) fn target(t: &CheckedTarget, all: &[CheckedTarget]) -> Target {
        Target {
            fallback: t
                .fallback
                .and_then(|(i, _)| all.get(i))
                .map(|f| f.name.clone()),
            name: t.name.clone(),
            location: t.location.clone(),
            url: t.url.clone(),
            method: t.method,
            headers: t.headers.clone(),
            body: t.body.clone().map(|b| super::render::compile_body(&b)),
            timeout: std::time::Duration::from_millis(t.timeout_ms),
            retries: t.retries,
        }
    }

    fn condition(&mut self, c: &Condition) -> Pred {
        match c {
            Condition::Any(cs) => Pred::Any(cs.iter().map(|c| self.condition(c)).collect()),
            Condition::All(cs) => Pred::All(cs.iter().map(|c| self.condition(c)).collect()),
            Condition::Not(inner, span) => Pred::Not(Box::new(self.condition(inner)), *span),
            Condition::Exists(p, span) => Pred::Test {
                path: path(p),
                test: Test::Exists,
                negate: false,
                span: *span,
            },
            Condition::Compare(cmp) => {
                let (op, negate) = match cmp.op.negated() {
                    Some(positive) => (positive, true),
                    None => (cmp.op, false),
                };
                let test = self.test(op, &cmp.value.kind, cmp.value.span);
                Pred::Test {
                    path: path(&cmp.path),
                    test,
                    negate,
                    span: cmp.span,
                }
            }
        }
    }

    fn test(&mut self, op: CmpOp, v: &LiteralKind, span: Span) -> Test {
        let number = |v: &LiteralKind| match v {
            LiteralKind::Number(n) => Numeric::from_json(n),
            _ => None,
        };
        let text = |v: &LiteralKind| match v {
            LiteralKind::String(s) => s.as_str().into(),
            _ => Box::from(""),
        };
        // The checker has rejected every mix below that cannot be meant, so the fallbacks
        // (`Eq(Null)`, an empty needle) are never reached with a checked rule set.
        match op {
            CmpOp::Eq | CmpOp::Ne => Test::Eq(scalar(v)),
            CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge => {
                let n = number(v).unwrap_or(Numeric {
                    float: f64::NAN,
                    int: None,
                });
                match op {
                    CmpOp::Lt => Test::Lt(n),
                    CmpOp::Le => Test::Le(n),
                    CmpOp::Gt => Test::Gt(n),
                    _ => Test::Ge(n),
                }
            }
            CmpOp::Match | CmpOp::NotMatch => {
                let (pattern, flags) = match v {
                    LiteralKind::Regex { pattern, flags } => (pattern.clone(), flags.clone()),
                    LiteralKind::String(s) => (s.clone(), String::new()),
                    _ => (String::new(), String::new()),
                };
                let key = (pattern, flags);
                match self.shared.get(&key) {
                    Some(re) => Test::Regex(re.clone()),
                    None => match self.checked_regexes.get(&span) {
                        Some(re) => {
                            let re = Arc::new(re.clone());
                            self.shared.insert(key, re.clone());
                            Test::Regex(re)
                        }
                        None => Test::In(Box::new([])),
                    },
                }
            }
            CmpOp::In | CmpOp::NotIn => match v {
                LiteralKind::List(items) => {
                    Test::In(items.iter().map(|l| scalar(&l.kind)).collect())
                }
                _ => Test::In(Box::new([])),
            },
            CmpOp::Contains => Test::Contains(text(v)),
            CmpOp::StartsWith => Test::StartsWith(text(v)),
            CmpOp::EndsWith => Test::EndsWith(text(v)),
        }
    }
}

fn scalar(v: &LiteralKind) -> Scalar {
    match v {
        LiteralKind::String(s) => Scalar::from_json(&serde_json::Value::String(s.clone())),
        LiteralKind::Number(n) => Scalar::from_json(&serde_json::Value::Number(n.clone())),
        LiteralKind::Bool(b) => Scalar::Bool(*b),
        _ => Scalar::Null,
    }
}

/// Compiles a field path.
pub(crate) fn path(p: &FieldPath) -> Path {
    if let Some(m) = &p.meta {
        return Path::Meta(match m.as_str() {
            "source" => Meta::Source,
            "state" => Meta::State,
            "name" => Meta::Name,
            _ => Meta::Id,
        });
    }
    if let [Segment::Key(k)] = p.segments.as_slice() {
        return Path::Key(k.as_str().into());
    }
    Path::Fields(
        p.segments
            .iter()
            .map(|s| match s {
                Segment::Key(k) => Seg::Key(k.as_str().into()),
                Segment::Index(i) => Seg::Index(*i as usize),
                Segment::Any => Seg::Any,
            })
            .collect(),
    )
}
