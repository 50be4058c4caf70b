//! Checked AST to the program ([`super::program`]): paths pre-split, literals pre-parsed,
//! regexes compiled once and shared by every rule that uses the same pattern.
//!
//! Owns: interning (each distinct path and each distinct test, an "atom", exists once
//! however many rules use it, so the index and the per-alert memo work on ids), and the
//! lowering of checked conditions to predicates. Never: rejects anything (whatever the
//! checker let through compiles), or reads an alert.

use rustc_hash::FxHashMap;

use super::program::{Atom, NO_MEMO, Pred, path};
use super::value::{Path, Scalar, Test};
use super::{CompiledRule, Target};
use crate::check::{CheckedCondition, CheckedRegex, CheckedRule, CheckedTarget, ValueOp};
use crate::number::Numeric;
use crate::syntax::ast::{FieldPath, LiteralKind, Segment};

/// What the compiler produced besides the rules.
pub(crate) struct Tables {
    /// Every distinct field path, by id.
    pub(crate) paths: Box<[Path]>,
    /// Every distinct test, by id; one used by several rules has a memo slot.
    pub(crate) atoms: Box<[Atom]>,
    /// For regex atoms whose language is a short list of strings: that list.
    pub(crate) regex_literals: FxHashMap<u32, Vec<String>>,
}

/// What an atom tests, for finding one already made: `exists`, a comparison with a value,
/// or a regex match (its literal is then the pattern and flags).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum AtomOp {
    Exists,
    Value(ValueOp),
    Match,
}

/// Compiles a folder's checked rules one by one, interning as it goes.
pub(crate) struct Compiler {
    paths: Vec<Path>,
    /// The ids of one-key paths (most paths), found without building a [`Path`].
    key_ids: FxHashMap<Box<str>, u32>,
    /// The ids of every other path.
    path_ids: FxHashMap<Path, u32>,
    atoms: Vec<Atom>,
    /// The id of each distinct test. The literal moves here from the rule it came from.
    atom_ids: FxHashMap<(u32, AtomOp, LiteralKind), u32>,
    /// How many rules use each atom: those used more than once get a memo slot.
    uses: Vec<u32>,
    /// See [`Tables::regex_literals`].
    regex_literals: FxHashMap<u32, Vec<String>>,
}

impl Compiler {
    /// A compiler for checked rules.
    pub(crate) fn new() -> Compiler {
        Compiler {
            paths: Vec::new(),
            key_ids: FxHashMap::default(),
            path_ids: FxHashMap::default(),
            atoms: Vec::new(),
            atom_ids: FxHashMap::default(),
            uses: Vec::new(),
            regex_literals: FxHashMap::default(),
        }
    }

    /// Compiles a rule.
    pub(crate) fn rule(
        &mut self,
        r: CheckedRule<'_>,
        targets: &[CheckedTarget],
        windows: &[crate::window::Window],
    ) -> CompiledRule {
        CompiledRule {
            memory: super::memory::compile(&r.memory, targets, windows),
            name: (r.id != r.location).then(|| r.id.into_boxed_str()),
            location: r.location.into_boxed_str(),
            pred: self.condition(r.condition),
            posts: r.posts.iter().map(|&i| i as u32).collect(),
            stop: r.stop,
            drop: r.drop,
        }
    }

    /// The path and atom tables; atoms used more than once get a memo slot.
    pub(crate) fn finish(self) -> Tables {
        let mut atoms = self.atoms;
        let mut memo_slots = 0u32;
        for (atom, &uses) in atoms.iter_mut().zip(&self.uses) {
            if uses > 1 {
                atom.memo = memo_slots;
                memo_slots += 1;
            }
        }
        Tables {
            paths: self.paths.into_boxed_slice(),
            atoms: atoms.into_boxed_slice(),
            regex_literals: self.regex_literals,
        }
    }

    /// A checked target as the engine keeps it: its fallback by name, its body template
    /// compiled.
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

    /// A checked condition as a predicate over atom ids.
    pub(crate) fn condition(&mut self, c: CheckedCondition<'_>) -> Pred {
        match c {
            CheckedCondition::Any(cs) => {
                Pred::Any(cs.into_iter().map(|c| self.condition(c)).collect())
            }
            CheckedCondition::All(cs) => {
                Pred::All(cs.into_iter().map(|c| self.condition(c)).collect())
            }
            CheckedCondition::Not(inner, span) => Pred::Not(Box::new(self.condition(*inner)), span),
            CheckedCondition::Exists(p, span) => {
                let path = self.path_id(p);
                let atom = self.atom(path, AtomOp::Exists, LiteralKind::Null, |_| Test::Exists);
                Pred::Test {
                    atom,
                    negate: false,
                    span,
                }
            }
            CheckedCondition::Compare {
                path,
                op,
                negate,
                value,
                span,
            } => {
                let path = self.path_id(path);
                // The key of an atom is its own: the value is copied from the file's syntax tree.
                let value = value.kind.clone();
                let atom = self.atom(path, AtomOp::Value(op), value, |v| value_test(op, v));
                Pred::Test { atom, negate, span }
            }
            CheckedCondition::Match {
                path,
                negate,
                regex,
                span,
            } => {
                let path = self.path_id(path);
                let CheckedRegex {
                    pattern,
                    flags,
                    matcher,
                } = regex;
                let literal = LiteralKind::Regex {
                    pattern: pattern.to_owned(),
                    flags: flags.to_owned(),
                };
                let atom = self.atom(path, AtomOp::Match, literal, |_| Test::Regex(matcher));
                Pred::Test { atom, negate, span }
            }
            CheckedCondition::During(window, span) => Pred::During { window, span },
        }
    }

    /// The id of path `p`, interned: a one-key path (most of them) is looked up by its key
    /// without building a [`Path`].
    fn path_id(&mut self, p: &FieldPath) -> u32 {
        let id = self.paths.len() as u32;
        if let (None, [Segment::Key(k)]) = (&p.meta, p.segments.as_slice()) {
            if let Some(&known) = self.key_ids.get(k.as_str()) {
                return known;
            }
            self.key_ids.insert(k.as_str().into(), id);
        } else {
            let path = path(p);
            if let Some(&known) = self.path_ids.get(&path) {
                return known;
            }
            self.path_ids.insert(path, id);
        }
        self.paths.push(path(p));
        id
    }

    /// The atom testing `path` with `op` and `v`: the one made before for the same test,
    /// or a new one, whose test `test` makes from the literal.
    fn atom(
        &mut self,
        path: u32,
        op: AtomOp,
        v: LiteralKind,
        test: impl FnOnce(&LiteralKind) -> Test,
    ) -> u32 {
        let key = (path, op, v);
        if let Some(&id) = self.atom_ids.get(&key) {
            if let Some(n) = self.uses.get_mut(id as usize) {
                *n += 1;
            }
            return id;
        }
        let v = &key.2;
        let test = test(v);
        let id = self.atoms.len() as u32;
        if let Test::Regex(m) = &test
            && let Some(words) = m.strings()
        {
            self.regex_literals
                .insert(id, words.iter().map(|w| String::from(&**w)).collect());
        }
        self.atoms.push(Atom {
            path,
            test,
            memo: NO_MEMO,
        });
        self.uses.push(1);
        self.atom_ids.insert(key, id);
        id
    }
}

/// The test of a comparison with a value.
fn value_test(op: ValueOp, v: &LiteralKind) -> Test {
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
        ValueOp::Eq => Test::Eq(scalar(v)),
        ValueOp::Lt | ValueOp::Le | ValueOp::Gt | ValueOp::Ge => {
            let n = number(v).unwrap_or(Numeric::float(f64::NAN));
            match op {
                ValueOp::Lt => Test::Lt(n),
                ValueOp::Le => Test::Le(n),
                ValueOp::Gt => Test::Gt(n),
                _ => Test::Ge(n),
            }
        }
        ValueOp::In => match v {
            LiteralKind::List(items) => Test::In(items.iter().map(|l| scalar(&l.kind)).collect()),
            _ => Test::In(Box::new([])),
        },
        ValueOp::Contains => Test::Contains(text(v)),
        ValueOp::StartsWith => Test::StartsWith(text(v)),
        ValueOp::EndsWith => Test::EndsWith(text(v)),
    }
}

/// A literal as the value an alert's field is compared with (numbers pre-parsed).
fn scalar(v: &LiteralKind) -> Scalar {
    match v {
        LiteralKind::String(s) => Scalar::from_json(&serde_json::Value::String(s.clone())),
        LiteralKind::Number(n) => Scalar::from_json(&serde_json::Value::Number(n.clone())),
        LiteralKind::Bool(b) => Scalar::Bool(*b),
        _ => Scalar::Null,
    }
}
