//! Static analysis of a folder's rules, on the cases the compiler can decide: a rule that
//! can never fire because an earlier rule with `stop` or `drop` takes every alert it could
//! match (W0501), a conjunction that can never hold (W0502), a condition that always holds
//! (W0503), a rule that repeats another (W0504), a target posted to only by rules that can
//! never fire (W0505).
//!
//! Owns: reasoning about conditions as the evaluation contract defines them
//! (docs/language.md): a positive test on a missing field is false and a negation is its
//! exact opposite, so `a != "x"` holds when `a` is missing; a string holding a number
//! equals that number. Every warning is certain: where a case is not decided (a `[*]` path,
//! a regex, a boolean against a string), nothing is said. Never: an error (the folder
//! loads), more than [`MAX_PAIRS`] comparisons of rules (a folder larger than that is
//! analysed up to there), or reasoning about an `and` of more than [`MAX_ATOMS`] tests or
//! a condition of more than [`MAX_DISJUNCTS`] ways to hold: the work stays bounded on a
//! hostile folder.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use super::Cx;
use crate::diagnostic::{Diagnostic, SourceMap, Span, codes};
use crate::number::{Numeric, parse_number};
use crate::syntax::ast::{Action, CmpOp, Condition, FieldPath, File, Item, LiteralKind, Segment};

/// The most rule pairs compared for W0501.
pub(crate) const MAX_PAIRS: usize = 2_000_000;

/// The most comparisons of two tests the whole analysis makes; past it, what is not
/// decided yet is not warned about.
pub(crate) const MAX_WORK: usize = 50_000_000;

/// What is left of [`MAX_WORK`].
struct Budget(std::cell::Cell<usize>);

impl Budget {
    /// Takes `n` comparisons; false (and nothing taken) when fewer are left.
    fn spend(&self, n: usize) -> bool {
        let left = self.0.get();
        if n > left {
            return false;
        }
        self.0.set(left - n);
        true
    }
}

/// The most disjuncts a condition is expanded to; a larger one is not reasoned about.
pub(crate) const MAX_DISJUNCTS: usize = 64;

/// The most tests in one `and` reasoned about (pairs of them are compared); a longer `and`
/// is not reasoned about.
pub(crate) const MAX_ATOMS: usize = 256;

/// A test in its positive form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Test {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    Match,
    In,
    Contains,
    StartsWith,
    EndsWith,
}

fn positive(op: CmpOp) -> (Test, bool) {
    match op {
        CmpOp::Eq => (Test::Eq, false),
        CmpOp::Ne => (Test::Eq, true),
        CmpOp::Lt => (Test::Lt, false),
        CmpOp::Le => (Test::Le, false),
        CmpOp::Gt => (Test::Gt, false),
        CmpOp::Ge => (Test::Ge, false),
        CmpOp::Match => (Test::Match, false),
        CmpOp::NotMatch => (Test::Match, true),
        CmpOp::In => (Test::In, false),
        CmpOp::NotIn => (Test::In, true),
        CmpOp::Contains => (Test::Contains, false),
        CmpOp::StartsWith => (Test::StartsWith, false),
        CmpOp::EndsWith => (Test::EndsWith, false),
    }
}

/// What an atom tests.
#[derive(Clone, Debug)]
enum Base<'a> {
    Cmp {
        path: &'a FieldPath,
        test: Test,
        value: &'a LiteralKind,
    },
    Exists(&'a FieldPath),
    During(&'a str),
}

/// One test of a conjunction, maybe negated, with its place.
#[derive(Clone, Debug)]
struct Atom<'a> {
    base: Base<'a>,
    negated: bool,
    span: Span,
}

fn same_path(a: &FieldPath, b: &FieldPath) -> bool {
    a.meta == b.meta && a.segments == b.segments
}

/// `[*]` is "any element": two tests of it may hold on different elements.
fn decidable(p: &FieldPath) -> bool {
    !p.segments.iter().any(|s| matches!(s, Segment::Any))
}

impl Atom<'_> {
    fn path(&self) -> Option<&FieldPath> {
        match &self.base {
            Base::Cmp { path, .. } | Base::Exists(path) => Some(path),
            Base::During(_) => None,
        }
    }

    fn same_base(&self, other: &Atom<'_>) -> bool {
        match (&self.base, &other.base) {
            (
                Base::Cmp {
                    path: p,
                    test: t,
                    value: v,
                },
                Base::Cmp {
                    path: q,
                    test: u,
                    value: w,
                },
            ) => t == u && v == w && same_path(p, q),
            (Base::Exists(p), Base::Exists(q)) => same_path(p, q),
            (Base::During(a), Base::During(b)) => a == b,
            _ => false,
        }
    }

    fn same(&self, other: &Atom<'_>) -> bool {
        self.negated == other.negated && self.same_base(other)
    }

    fn negation(&self) -> Self {
        Atom {
            negated: !self.negated,
            ..self.clone()
        }
    }

    /// The numbers a positive ordering or numeric equality admits.
    fn interval(&self) -> Option<Interval> {
        let Base::Cmp { test, value, .. } = &self.base else {
            return None;
        };
        if self.negated {
            return None;
        }
        let n = numeric(value)?;
        let (lo, hi) = match test {
            Test::Eq => (Some((n, true)), Some((n, true))),
            Test::Gt => (Some((n, false)), None),
            Test::Ge => (Some((n, true)), None),
            Test::Lt => (None, Some((n, false))),
            Test::Le => (None, Some((n, true))),
            _ => return None,
        };
        Some(Interval { lo, hi })
    }
}

fn numeric(k: &LiteralKind) -> Option<Numeric> {
    match k {
        LiteralKind::Number(n) => Numeric::from_json(n),
        LiteralKind::String(s) => parse_number(s),
        _ => None,
    }
}

/// Whether one value of a field can equal both literals (`==` on each).
fn can_both(v: &LiteralKind, w: &LiteralKind) -> bool {
    use LiteralKind as L;
    let numbers_equal = || match (numeric(v), numeric(w)) {
        (Some(a), Some(b)) => a.cmp(&b) == Some(Ordering::Equal),
        _ => false,
    };
    match (v, w) {
        (L::String(a), L::String(b)) => a == b || numbers_equal(),
        (L::Number(_), L::Number(_) | L::String(_)) | (L::String(_), L::Number(_)) => {
            numbers_equal()
        }
        (L::Bool(a), L::Bool(b)) => a == b,
        (L::Null, L::Null) => true,
        // Not decided (a boolean against a string, ...): assume they can.
        _ => true,
    }
}

/// Numbers between two bounds, each `(value, inclusive)`.
#[derive(Clone, Copy)]
struct Interval {
    lo: Option<(Numeric, bool)>,
    hi: Option<(Numeric, bool)>,
}

impl Interval {
    fn is_empty(&self) -> bool {
        match (self.lo, self.hi) {
            (Some((l, li)), Some((h, hi))) => match l.cmp(&h) {
                Some(Ordering::Greater) => true,
                Some(Ordering::Equal) => !(li && hi),
                _ => false,
            },
            _ => false,
        }
    }

    fn meet(self, other: Interval) -> Interval {
        let lo = match (self.lo, other.lo) {
            (Some(a), Some(b)) => Some(match a.0.cmp(&b.0) {
                Some(Ordering::Greater) => a,
                Some(Ordering::Less) => b,
                _ => (a.0, a.1 && b.1),
            }),
            (a, b) => a.or(b),
        };
        let hi = match (self.hi, other.hi) {
            (Some(a), Some(b)) => Some(match a.0.cmp(&b.0) {
                Some(Ordering::Less) => a,
                Some(Ordering::Greater) => b,
                _ => (a.0, a.1 && b.1),
            }),
            (a, b) => a.or(b),
        };
        Interval { lo, hi }
    }

    /// Whether every number of `inner` is in `self`.
    fn contains(&self, inner: &Interval) -> bool {
        let lo_ok = match (self.lo, inner.lo) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((a, ai)), Some((b, bi))) => match b.cmp(&a) {
                Some(Ordering::Greater) => true,
                Some(Ordering::Equal) => ai || !bi,
                _ => false,
            },
        };
        let hi_ok = match (self.hi, inner.hi) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((a, ai)), Some((b, bi))) => match b.cmp(&a) {
                Some(Ordering::Less) => true,
                Some(Ordering::Equal) => ai || !bi,
                _ => false,
            },
        };
        lo_ok && hi_ok
    }
}

/// The values of a list literal.
fn list(k: &LiteralKind) -> Option<Vec<&LiteralKind>> {
    match k {
        LiteralKind::List(items) => Some(items.iter().map(|l| &l.kind).collect()),
        _ => None,
    }
}

/// Whether `b` holding means `a` holds, for every alert.
fn implies(b: &Atom<'_>, a: &Atom<'_>) -> bool {
    if b.same(a) {
        return true;
    }
    let (Some(pb), Some(pa)) = (b.path(), a.path()) else {
        return false;
    };
    if !same_path(pb, pa) || !decidable(pb) {
        return false;
    }
    match (&b.base, b.negated, &a.base, a.negated) {
        (
            Base::Cmp {
                test: Test::Eq,
                value: v,
                ..
            },
            false,
            Base::Cmp {
                test: Test::In,
                value: l,
                ..
            },
            false,
        ) => list(l).is_some_and(|l| l.contains(v)),
        (
            Base::Cmp {
                test: Test::Eq,
                value: v,
                ..
            },
            false,
            Base::Cmp {
                test: Test::Eq,
                value: w,
                ..
            },
            true,
        ) => !can_both(v, w),
        (
            Base::Cmp {
                test: Test::In,
                value: l,
                ..
            },
            false,
            Base::Cmp {
                test: Test::Eq,
                value: w,
                ..
            },
            true,
        ) => list(l).is_some_and(|l| l.iter().all(|e| !can_both(e, w))),
        (
            Base::Cmp {
                test: Test::Eq,
                value: v,
                ..
            },
            false,
            Base::Cmp {
                test: Test::In,
                value: l,
                ..
            },
            true,
        ) => list(l).is_some_and(|l| l.iter().all(|e| !can_both(v, e))),
        (
            Base::Cmp {
                test: Test::In,
                value: l1,
                ..
            },
            false,
            Base::Cmp {
                test: Test::In,
                value: l2,
                ..
            },
            true,
        ) => match (list(l1), list(l2)) {
            (Some(l1), Some(l2)) => l1.iter().all(|v| l2.iter().all(|w| !can_both(v, w))),
            _ => false,
        },
        // A positive test is false on a missing field: the field is there.
        (Base::Cmp { .. }, false, Base::Exists(_), false) => true,
        // A missing field makes every negation hold.
        (Base::Exists(_), true, Base::Cmp { .. }, true) => true,
        (Base::Cmp { .. }, false, Base::Cmp { .. }, false) => match (b.interval(), a.interval()) {
            (Some(ib), Some(ia)) if !matches!(&a.base, Base::Cmp { test: Test::Eq, .. }) => {
                ia.contains(&ib)
            }
            _ => false,
        },
        _ => false,
    }
}

/// Two atoms of a conjunction that cannot both hold, if there are (none found when the
/// budget cannot pay for the comparisons).
fn contradiction<'c, 'a>(
    atoms: &'c [Atom<'a>],
    budget: &Budget,
) -> Option<(&'c Atom<'a>, &'c Atom<'a>)> {
    if !budget.spend(atoms.len() * atoms.len()) {
        return None;
    }
    for (i, a) in atoms.iter().enumerate() {
        for b in &atoms[i + 1..] {
            let comparable = match (a.path(), b.path()) {
                (Some(p), Some(q)) => same_path(p, q) && decidable(p),
                (None, None) => true,
                _ => false,
            };
            if !comparable {
                continue;
            }
            if (a.same_base(b) && a.negated != b.negated)
                || implies(a, &b.negation())
                || implies(b, &a.negation())
            {
                return Some((a, b));
            }
        }
        // Numbers: the bounds on one field, met.
        if let (Some(p), Some(ia)) = (a.path(), a.interval())
            && decidable(p)
        {
            let mut met = ia;
            for b in &atoms[i + 1..] {
                if let (Some(q), Some(ib)) = (b.path(), b.interval())
                    && same_path(p, q)
                {
                    met = met.meet(ib);
                    if met.is_empty() {
                        return Some((a, b));
                    }
                }
            }
        }
    }
    None
}

/// A test (or a `not` of one) as an atom; `None` for `and`, `or` and a `not` of those.
fn atom_of(c: &Condition, negate: bool) -> Option<Atom<'_>> {
    let (base, span, negated) = match c {
        Condition::Compare(cmp) => {
            let (test, negated) = positive(cmp.op);
            let base = Base::Cmp {
                path: &cmp.path,
                test,
                value: &cmp.value.kind,
            };
            (base, cmp.span, negated)
        }
        Condition::Exists(p, span) => (Base::Exists(p), *span, false),
        Condition::During(w, span) => (Base::During(&w.name), *span, false),
        Condition::Not(inner, _) => return atom_of(inner, !negate),
        Condition::Any(_) | Condition::All(_) => return None,
    };
    Some(Atom {
        base,
        negated: negated != negate,
        span,
    })
}

/// A condition as an `or` of `and`s of atoms (`negate`: of its negation, by the contract's
/// exact negations); `None` when it has more than [`MAX_DISJUNCTS`].
fn dnf<'a>(c: &'a Condition, negate: bool) -> Option<Vec<Vec<Atom<'a>>>> {
    if let Some(a) = atom_of(c, negate) {
        return Some(vec![vec![a]]);
    }
    match c {
        Condition::Compare(_) | Condition::Exists(..) | Condition::During(..) => None,
        Condition::Not(inner, _) => dnf(inner, !negate),
        Condition::Any(cs) | Condition::All(cs) => {
            let is_or = matches!(c, Condition::Any(_)) != negate;
            let parts: Option<Vec<_>> = cs.iter().map(|c| dnf(c, negate)).collect();
            let parts = parts?;
            if is_or {
                let all: Vec<Vec<Atom<'a>>> = parts.into_iter().flatten().collect();
                (all.len() <= MAX_DISJUNCTS).then_some(all)
            } else {
                let mut acc: Vec<Vec<Atom<'a>>> = vec![Vec::new()];
                for part in parts {
                    if let [one] = part.as_slice() {
                        // One disjunct: each conjunction grows in place.
                        for a in &mut acc {
                            a.extend(one.iter().cloned());
                        }
                    } else {
                        let mut next = Vec::new();
                        for a in &acc {
                            for p in &part {
                                let mut both = a.clone();
                                both.extend(p.iter().cloned());
                                next.push(both);
                            }
                        }
                        if next.len() > MAX_DISJUNCTS {
                            return None;
                        }
                        acc = next;
                    }
                    if acc.iter().any(|a| a.len() > MAX_ATOMS) {
                        return None;
                    }
                }
                Some(acc)
            }
        }
    }
}

/// Whether every alert a condition (as `dj`) matches is matched by another (as `di`).
fn covered(dj: &[Vec<Atom<'_>>], di: &[Vec<Atom<'_>>], budget: &Budget) -> bool {
    let cost: usize = dj
        .iter()
        .map(|cj| di.iter().map(|ci| ci.len() * cj.len()).sum::<usize>())
        .sum();
    if !budget.spend(cost) {
        return false;
    }
    dj.iter().all(|cj| {
        contradiction(cj, budget).is_some()
            || di
                .iter()
                .any(|ci| ci.iter().all(|a| cj.iter().any(|b| implies(b, a))))
    })
}

/// An atom and its negation side by side in one `or`: the condition holds for every alert.
fn always(c: &Condition, budget: &Budget) -> Option<Span> {
    let Condition::Any(cs) = c else { return None };
    if !budget.spend(cs.len() * cs.len()) {
        return None;
    }
    let atoms: Vec<Atom<'_>> = cs
        .iter()
        .filter_map(|c| match dnf(c, false) {
            Some(d) if d.len() == 1 && d[0].len() == 1 => d.into_iter().flatten().next(),
            _ => None,
        })
        .collect();
    for (i, a) in atoms.iter().enumerate() {
        if atoms[i + 1..]
            .iter()
            .any(|b| a.same_base(b) && a.negated != b.negated)
        {
            return Some(c.span());
        }
    }
    None
}

/// The tests of an `and` of tests (nested `and`s included); `None` when it holds an `or`
/// or more than [`MAX_ATOMS`] tests.
fn flat_and(c: &Condition) -> Option<Vec<Atom<'_>>> {
    fn walk<'a>(c: &'a Condition, out: &mut Vec<Atom<'a>>) -> Option<()> {
        match c {
            Condition::All(cs) => cs.iter().try_for_each(|c| walk(c, out)),
            Condition::Any(_) => None,
            c => {
                out.push(atom_of(c, false)?);
                (out.len() <= MAX_ATOMS).then_some(())
            }
        }
    }
    let mut out = Vec::new();
    walk(c, &mut out)?;
    Some(out)
}

/// Every outermost `and` of a condition (an `and` inside another is part of it), nested
/// under `or` and `not` included.
fn conjunctions<'a>(c: &'a Condition, out: &mut Vec<&'a Condition>) {
    fn walk<'a>(c: &'a Condition, inside_and: bool, out: &mut Vec<&'a Condition>) {
        match c {
            Condition::All(cs) => {
                if !inside_and {
                    out.push(c);
                }
                cs.iter().for_each(|c| walk(c, true, out));
            }
            Condition::Any(cs) => cs.iter().for_each(|c| walk(c, false, out)),
            Condition::Not(inner, _) => walk(inner, false, out),
            _ => {}
        }
    }
    walk(c, false, out);
}

/// Every `or` of a condition, nested ones included.
fn disjunctions<'a>(c: &'a Condition, out: &mut Vec<&'a Condition>) {
    match c {
        Condition::Any(cs) => {
            out.push(c);
            cs.iter().for_each(|c| disjunctions(c, out));
        }
        Condition::All(cs) => cs.iter().for_each(|c| disjunctions(c, out)),
        Condition::Not(inner, _) => disjunctions(inner, out),
        _ => {}
    }
}

/// A rule as the analysis sees it.
struct Seen<'a> {
    span: Span,
    name: Option<&'a str>,
    condition: &'a Condition,
    actions: &'a [Action],
    dnf: Option<Vec<Vec<Atom<'a>>>>,
    ends: Option<&'static str>,
    posts: Vec<(&'a str, Span)>,
    /// A hash of the condition as written, spans aside: rules with equal hashes are
    /// compared whole for W0504.
    shape: u64,
}

impl Seen<'_> {
    /// How messages name the rule: its name, or `file:line`.
    fn id(&self, sources: &SourceMap) -> String {
        self.name
            .map_or_else(|| sources.file_line(self.span), str::to_owned)
    }

    /// Whether two rules have the same condition and actions, spans aside.
    fn same_as(&self, other: &Seen<'_>) -> bool {
        let shape = |r: &Seen<'_>| serde_json::to_string(&(r.condition, r.actions)).ok();
        shape(self) == shape(other)
    }
}

/// Hashes a condition's structure and values, not its places.
fn hash_condition(c: &Condition, h: &mut impl Hasher) {
    match c {
        Condition::Any(cs) | Condition::All(cs) => {
            h.write_u8(if matches!(c, Condition::Any(_)) { 0 } else { 1 });
            h.write_usize(cs.len());
            cs.iter().for_each(|c| hash_condition(c, h));
        }
        Condition::Not(inner, _) => {
            h.write_u8(2);
            hash_condition(inner, h);
        }
        Condition::Compare(cmp) => {
            h.write_u8(3);
            cmp.path.meta.hash(h);
            cmp.path.segments.hash(h);
            cmp.op.hash(h);
            cmp.value.kind.hash(h);
        }
        Condition::Exists(p, _) => {
            h.write_u8(4);
            p.meta.hash(h);
            p.segments.hash(h);
        }
        Condition::During(w, _) => {
            h.write_u8(5);
            w.name.hash(h);
        }
    }
}

fn text(sources: &SourceMap, span: Span) -> String {
    sources
        .snippet(span)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
thread_local! {
    /// Rule pairs the last analysis on this thread compared for W0501.
    pub(crate) static PAIRS_COMPARED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The key of a test that no other test implies (see `implies`): a positive `==`, `=~`,
/// `contains`, `startswith` or `endswith`. A hash: a collision only adds a candidate,
/// which is checked in full.
fn key_of(a: &Atom<'_>) -> Option<u64> {
    match &a.base {
        Base::Cmp {
            path,
            test:
                test @ (Test::Eq | Test::Match | Test::Contains | Test::StartsWith | Test::EndsWith),
            value,
        } if !a.negated => {
            let mut h = rustc_hash::FxHasher::default();
            path.meta.hash(&mut h);
            path.segments.hash(&mut h);
            test.hash(&mut h);
            value.hash(&mut h);
            Some(h.finish())
        }
        _ => None,
    }
}

/// Analyses the rules of every file, in load order, and reports what it finds.
pub(crate) fn analyse(cx: &mut Cx<'_>, files: &[File]) {
    let budget = Budget(std::cell::Cell::new(MAX_WORK));
    let mut rules: Vec<Seen<'_>> = Vec::new();
    let mut fallbacks: Vec<&str> = Vec::new();
    let mut declared: Vec<(&str, Span)> = Vec::new();
    for f in files {
        for item in &f.items {
            match item {
                Item::Rule(r) => {
                    let ends = r.actions.iter().find_map(|a| match a {
                        Action::Drop(_) => Some("drop"),
                        Action::Stop(_) => Some("stop"),
                        _ => None,
                    });
                    let posts = r
                        .actions
                        .iter()
                        .filter_map(|a| match a {
                            Action::Post(t) => Some((t.name.as_str(), t.span)),
                            Action::Throttle(t) => {
                                t.else_post.as_ref().map(|e| (e.name.as_str(), e.span))
                            }
                            _ => None,
                        })
                        .collect();
                    let mut h = rustc_hash::FxHasher::default();
                    hash_condition(&r.condition, &mut h);
                    rules.push(Seen {
                        span: r.span,
                        name: r.name.as_ref().map(|n| n.value.as_str()),
                        condition: &r.condition,
                        actions: &r.actions,
                        // Needed for the rules after it only when it ends evaluation; the
                        // others' are made when an earlier such rule is found.
                        dnf: ends.and_then(|_| dnf(&r.condition, false)),
                        ends,
                        posts,
                        shape: h.finish(),
                    });
                }
                Item::Target(t) => {
                    declared.push((t.name.name.as_str(), t.name.span));
                    for s in &t.settings {
                        if s.name.name == "fallback"
                            && let crate::syntax::ast::SettingValue::Template(
                                crate::syntax::ast::Template::Path(p),
                            ) = &s.value
                            && let Some(name) = p.first_key()
                        {
                            fallbacks.push(name);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    // W0502 and W0503, condition by condition.
    for r in &rules {
        let mut ands = Vec::new();
        conjunctions(r.condition, &mut ands);
        for c in ands {
            let Some(only) = flat_and(c) else { continue };
            if let Some((a, b)) = contradiction(&only, &budget) {
                cx.warnings.push(
                    Diagnostic::warning(
                        codes::NEVER_HOLDS,
                        format!(
                            "`{}` and `{}` can never both hold",
                            text(cx.sources, a.span),
                            text(cx.sources, b.span)
                        ),
                    )
                    .with_primary(b.span, "cannot hold with this")
                    .with_secondary(a.span, "this")
                    .with_help("did you mean `or`? Or remove one of them")
                    .with_note(if std::ptr::eq(c, r.condition) {
                        format!("so rule `{}` can never fire", r.id(cx.sources))
                    } else {
                        format!("so this part of rule `{}` never holds", r.id(cx.sources))
                    }),
                );
            }
        }
        let mut ors = Vec::new();
        disjunctions(r.condition, &mut ors);
        for c in ors {
            if let Some(span) = always(c, &budget) {
                cx.warnings.push(
                    Diagnostic::warning(codes::ALWAYS_HOLDS, "this condition always holds")
                        .with_primary(span, "true for every alert")
                        .with_note("a test and its negation: one of them holds for every alert (a negation holds when the field is missing)")
                        .with_help("remove the condition, or write the test you meant"),
                );
            }
        }
    }

    // W0504: the same condition and actions as an earlier rule.
    let mut by_shape: HashMap<u64, usize> = HashMap::with_capacity(rules.len());
    let mut repeats = vec![false; rules.len()];
    for (j, r) in rules.iter().enumerate() {
        // Equal hashes are compared whole; two different rules of one hash (rare) are
        // not compared with a third.
        let first = *by_shape.entry(r.shape).or_insert(j);
        if first != j && rules[first].same_as(r) {
            let i = first;
            repeats[j] = true;
            cx.warnings.push(
                Diagnostic::warning(
                    codes::SAME_RULE,
                    format!(
                        "rule `{}` repeats rule `{}`",
                        r.id(cx.sources),
                        rules[i].id(cx.sources)
                    ),
                )
                .with_primary(r.span, "the same condition and actions")
                .with_secondary(rules[i].span, "as this rule")
                .with_help("remove one of them"),
            );
        }
    }

    // W0501: an earlier rule that ends evaluation takes every alert this one matches.
    // An earlier rule of one conjunction is filed under one of its tests that only the
    // same test implies (a positive `==`, `=~`, `contains`, `startswith`, `endswith`):
    // a later rule it takes must hold that test too, so the later rule finds it by its
    // own tests. Of several such tests, the rarest among those rules is the key, so
    // `alertState == "ALERT"` in 2,500 routes does not put them all on every later
    // route's list. The other earlier rules are tried for every rule.
    let mut by_key: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut general: Vec<usize> = Vec::new();
    let mut seen_keys: HashMap<u64, u32> = HashMap::new();
    for r in &rules {
        if r.ends.is_some()
            && let Some([only]) = r.dnf.as_deref()
        {
            for k in only.iter().filter_map(key_of) {
                *seen_keys.entry(k).or_default() += 1;
            }
        }
    }
    let mut unreachable = vec![false; rules.len()];
    let mut pairs = 0usize;
    for (j, r) in rules.iter().enumerate() {
        // Without an earlier rule that ends evaluation, there is nothing to look for.
        let made;
        let dj = if r.ends.is_some() {
            r.dnf.as_deref()
        } else if !general.is_empty() || !by_key.is_empty() {
            made = dnf(r.condition, false);
            made.as_deref()
        } else {
            None
        };
        if let Some(dj) = dj
            && !repeats[j]
        {
            let mut candidates: Vec<usize> = general.clone();
            for c in dj {
                for a in c {
                    if let Some(list) = key_of(a).and_then(|k| by_key.get(&k)) {
                        candidates.extend(list);
                    }
                }
            }
            candidates.sort_unstable();
            candidates.dedup();
            // A condition that can never hold is W0502's, not an earlier rule's doing.
            if !candidates.is_empty() && dj.iter().all(|c| contradiction(c, &budget).is_some()) {
                candidates.clear();
            }
            for i in candidates {
                pairs += 1;
                if pairs > MAX_PAIRS {
                    break;
                }
                let earlier = &rules[i];
                if let (Some(di), Some(ends)) = (&earlier.dnf, earlier.ends)
                    && (covered(dj, di, &budget) || always(earlier.condition, &budget).is_some())
                {
                    unreachable[j] = true;
                    cx.warnings.push(
                        Diagnostic::warning(
                            codes::UNREACHABLE_RULE,
                            format!("rule `{}` can never fire", r.id(cx.sources)),
                        )
                        .with_primary(r.span, "every alert it matches is taken earlier")
                        .with_secondary(
                            earlier.span,
                            format!("this rule matches them all and ends evaluation (`{ends}`)"),
                        )
                        .with_help(format!(
                            "move it above rule `{}`, narrow that rule's condition, or remove it",
                            earlier.id(cx.sources)
                        ))
                        .with_note("rules are tried in order; a rule that fires with `stop` or `drop` ends evaluation"),
                    );
                    break;
                }
            }
        }
        // This rule, if it ends evaluation, is an earlier rule for the ones after it.
        if r.ends.is_some()
            && let Some(d) = &r.dnf
        {
            let key = match d.as_slice() {
                [only] => only
                    .iter()
                    .filter_map(key_of)
                    .min_by_key(|k| seen_keys.get(k).copied().unwrap_or(0)),
                _ => None,
            };
            if let Some(k) = key {
                by_key.entry(k).or_default().push(j);
            } else {
                general.push(j);
            }
        }
    }

    #[cfg(test)]
    PAIRS_COMPARED.with(|p| p.set(pairs));

    // W0505: a target every post to which is in a rule that can never fire.
    if !unreachable.contains(&true) {
        return;
    }
    for (name, span) in declared {
        let posts: Vec<usize> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.posts.iter().any(|(t, _)| *t == name))
            .map(|(i, _)| i)
            .collect();
        if !posts.is_empty() && posts.iter().all(|&i| unreachable[i]) && !fallbacks.contains(&name)
        {
            cx.warnings.push(
                Diagnostic::warning(
                    codes::TARGET_UNREACHABLE,
                    format!("target `{name}` is posted to only by rules that can never fire"),
                )
                .with_primary(span, "no alert can reach it")
                .with_help("see the warnings on the rules that post to it"),
            );
        }
    }
}

#[cfg(test)]
#[path = "reach_test.rs"]
mod tests;
