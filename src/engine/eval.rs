//! Evaluating conditions against one alert.
//!
//! Two ways, which must always agree (a property test and the `eval` fuzzer check it):
//!
//! - [`Pred::eval`], the plain reading of DSL.md: each test looks its field up and runs.
//!   `explain` and [`super::RuleSet::evaluate_unindexed`] use it.
//! - [`Ctx`], what [`super::RuleSet::evaluate`] uses: each field is resolved at most once
//!   per alert (not once per rule), and a test that several rules share (the same regex on
//!   the same field, say) runs at most once per alert.
//!
//! Never: allocates for a rule that does not match, or mutates the rule set (a `Ctx` is
//! per alert, on the caller's stack).

use smallvec::SmallVec;

use super::Compiled;
use super::program::{Atom, NO_MEMO, Pred};
use super::value::{Path, Val};
use crate::alert::Alert;

impl Pred {
    /// Whether the condition holds for the alert, evaluated plainly.
    ///
    /// A test inside `and` or `or`, the common shape, is run in the loop rather than by a
    /// call back into this function.
    #[inline]
    pub(crate) fn eval(&self, set: &Compiled, alert: &Alert) -> bool {
        match self {
            Pred::All(ps) => ps.iter().all(|p| p.eval_leaf(set, alert)),
            Pred::Any(ps) => ps.iter().any(|p| p.eval_leaf(set, alert)),
            _ => self.eval_leaf(set, alert),
        }
    }

    /// One operand of `and` or `or`: a test, a window or a `not` here; a nested `and` or
    /// `or` through a call.
    #[inline]
    fn eval_leaf(&self, set: &Compiled, alert: &Alert) -> bool {
        match self {
            Pred::Test { atom, negate, .. } => match set.atoms.get(*atom as usize) {
                Some(a) => atom_holds(set, a, alert) != *negate,
                None => false,
            },
            Pred::During { window, .. } => during(set, *window, alert),
            Pred::Not(p, _) => !p.eval_nested(set, alert),
            _ => self.eval_nested(set, alert),
        }
    }

    /// [`Pred::eval`] for a nested condition, as a call (the recursion stops inlining).
    #[inline(never)]
    fn eval_nested(&self, set: &Compiled, alert: &Alert) -> bool {
        self.eval(set, alert)
    }

    /// Whether the condition holds, with fields and shared tests remembered in `cx`.
    pub(crate) fn eval_in(&self, cx: &mut Ctx<'_>) -> bool {
        match self {
            Pred::All(ps) => ps.iter().all(|p| p.eval_in(cx)),
            Pred::Any(ps) => ps.iter().any(|p| p.eval_in(cx)),
            Pred::Not(p, _) => !p.eval_in(cx),
            Pred::Test { atom, negate, .. } => cx.atom(*atom) != *negate,
            Pred::During { window, .. } => during(cx.set, *window, cx.alert),
        }
    }
}

/// Whether the alert's time is inside window `window` of the set.
pub(crate) fn during(set: &Compiled, window: u32, alert: &Alert) -> bool {
    set.windows
        .get(window as usize)
        .is_some_and(|w| w.contains(alert.received_at()))
}

/// The positive test of an atom, plainly.
#[inline]
pub(crate) fn atom_holds(set: &Compiled, a: &Atom, alert: &Alert) -> bool {
    match set.paths.get(a.path as usize) {
        Some(path) => path.any(alert, &mut |v| a.test.holds(v)),
        None => false,
    }
}

/// A field as resolved for one alert.
#[derive(Clone, Copy)]
pub(crate) enum Slot<'a> {
    /// The path reaches nothing.
    Absent,
    /// The path reaches exactly this value.
    One(Val<'a>),
    /// The path has `[*]` and may reach several values: walked at each use.
    Many,
}

/// Per-alert evaluation state: resolved fields and remembered test outcomes. Starts empty
/// and grows on first use, so a small rule set pays next to nothing for it.
pub(crate) struct Ctx<'a> {
    pub(crate) set: &'a Compiled,
    pub(crate) alert: &'a Alert,
    /// Path i's value once looked up; grows to the highest path used.
    slots: SmallVec<[Option<Slot<'a>>; 4]>,
    /// Per memo slot: 0 unknown, 1 false, 2 true.
    memo: SmallVec<[u8; 16]>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(set: &'a Compiled, alert: &'a Alert) -> Ctx<'a> {
        Ctx {
            set,
            alert,
            slots: SmallVec::new(),
            memo: SmallVec::new(),
        }
    }

    fn resolve(&self, id: u32) -> Slot<'a> {
        match self.set.paths.get(id as usize) {
            Some(path) if path.is_single() => {
                let mut found = Slot::Absent;
                path.any(self.alert, &mut |v| {
                    found = Slot::One(v);
                    true
                });
                found
            }
            Some(_) => Slot::Many,
            None => Slot::Absent,
        }
    }

    /// The field at path `id`, looked up on first use.
    pub(crate) fn field(&mut self, id: u32) -> Slot<'a> {
        let i = id as usize;
        if let Some(Some(s)) = self.slots.get(i) {
            return *s;
        }
        let found = self.resolve(id);
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        if let Some(s) = self.slots.get_mut(i) {
            *s = Some(found);
        }
        found
    }

    /// Calls `f` on each value path `id` reaches, until it returns true.
    pub(crate) fn each_value(&mut self, id: u32, f: &mut impl FnMut(Val<'a>) -> bool) -> bool {
        match self.field(id) {
            Slot::One(v) => f(v),
            Slot::Many => self
                .set
                .paths
                .get(id as usize)
                .is_some_and(|p: &Path| p.any(self.alert, f)),
            Slot::Absent => false,
        }
    }

    /// The positive outcome of atom `id`, remembered when several rules use it.
    fn atom(&mut self, id: u32) -> bool {
        let set = self.set;
        let Some(a) = set.atoms.get(id as usize) else {
            return false;
        };
        if a.memo != NO_MEMO
            && let Some(&m) = self.memo.get(a.memo as usize)
            && m != 0
        {
            return m == 2;
        }
        let result = self.each_value(a.path, &mut |v| a.test.holds(v));
        if a.memo != NO_MEMO {
            let i = a.memo as usize;
            if self.memo.len() <= i {
                self.memo.resize(i + 1, 0);
            }
            if let Some(m) = self.memo.get_mut(i) {
                *m = 1 + u8::from(result);
            }
        }
        result
    }
}
