//! The rule index: which rules can possibly match an alert, found by hash lookups instead
//! of trying every rule.
//!
//! Each rule gets at most one **guard**: a test that must hold for the rule to match and
//! that holds only for a known, finite set of values of one field:
//!
//! - `field == literal` and `field in [literals]`;
//! - `field =~ /^(?:a|b|c)$/`, a regex anchored at both ends whose language is a short list
//!   of strings (Alertmanager's `label=~"a|b"` matchers translate to these);
//! - an `or` whose every branch has a guard on the same field (the union of their values);
//! - one of the parts of an `and` (the most selective one: the one whose values the fewest
//!   other rules share).
//!
//! The index maps each (field, value) to the rules it guards. For an alert, the candidates
//! are the rules whose guard value it has, plus every rule without a guard, in rule order.
//! Each candidate is then evaluated in full, so the index only has to be a superset: it
//! may return a rule that does not match (a number whose `f64` reading collides with
//! another), never miss one that does. All-match order, `stop` and `drop` are those of the
//! plain scan, because the rules skipped are exactly rules that could not have matched.

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::eval::Ctx;
use super::program::{Atom, Pred};
use super::value::{Scalar, Test, Val};
use crate::number::{Numeric, parse_number};

/// A run of rule numbers in [`Index::ids`], ascending.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    start: u32,
    len: u32,
}

/// The index of one field.
#[derive(Debug, Default)]
struct FieldIndex {
    path: u32,
    /// String values, exactly.
    strs: FxHashMap<Box<str>, Bucket>,
    /// Number literals, by the bits of their `f64` reading: number values and strings that
    /// hold numbers look here (`curValue == 95` holds for `"95"`).
    nums: FxHashMap<u64, Bucket>,
    /// String literals that hold numbers (`== "95"`), for number values only.
    str_nums: FxHashMap<u64, Bucket>,
    bools: [Bucket; 2],
    null: Bucket,
}

/// The index of a rule set. Built once at load, immutable.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Rules without a guard: candidates for every alert. Ascending.
    always: Box<[u32]>,
    fields: Box<[FieldIndex]>,
    ids: Box<[u32]>,
}

/// A value a guard admits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Str(Box<str>),
    Num(u64),
    StrNum(u64),
    Bool(bool),
    Null,
}

/// `path` must hold one of `keys` for the rule to match.
#[derive(Debug)]
struct Guard {
    path: u32,
    keys: Vec<Key>,
}

fn bits(n: &Numeric) -> u64 {
    // -0.0 == 0.0: one key for both.
    if n.float == 0.0 { 0 } else { n.float.to_bits() }
}

fn scalar_keys(s: &Scalar, out: &mut Vec<Key>) {
    match s {
        Scalar::Str(text, num) => {
            out.push(Key::Str(text.clone()));
            if let Some(n) = num {
                out.push(Key::StrNum(bits(n)));
            }
        }
        Scalar::Num(n) => out.push(Key::Num(bits(n))),
        Scalar::Bool(b) => out.push(Key::Bool(*b)),
        Scalar::Null => out.push(Key::Null),
    }
}

/// The values for which atom `a`'s positive test can hold, when they are a known list.
fn atom_keys(a: &Atom, regex_literals: &FxHashMap<u32, Vec<String>>, id: u32) -> Option<Vec<Key>> {
    let mut keys = Vec::new();
    match &a.test {
        Test::Eq(s) => scalar_keys(s, &mut keys),
        Test::In(list) => list.iter().for_each(|s| scalar_keys(s, &mut keys)),
        Test::Regex(_) => {
            // A regex sees a number as its JSON text: that text is one of the literals, so
            // the number equals the literal's numeric reading.
            for lit in regex_literals.get(&id)? {
                if let Some(n) = parse_number(lit) {
                    keys.push(Key::StrNum(bits(&n)));
                }
                keys.push(Key::Str(lit.as_str().into()));
            }
        }
        _ => return None,
    }
    Some(keys)
}

/// Every guard a condition offers; any one of them is a valid guard for it.
fn guards(
    p: &Pred,
    atoms: &[Atom],
    regex_literals: &FxHashMap<u32, Vec<String>>,
    out: &mut Vec<Guard>,
) {
    match p {
        Pred::Test {
            atom,
            negate: false,
            ..
        } => {
            if let Some(a) = atoms.get(*atom as usize)
                && let Some(keys) = atom_keys(a, regex_literals, *atom)
            {
                out.push(Guard { path: a.path, keys });
            }
        }
        Pred::All(ps) => ps
            .iter()
            .for_each(|p| guards(p, atoms, regex_literals, out)),
        Pred::Any(ps) => {
            // Every branch must be guarded on one common field; the guard is the union.
            let mut per_branch = Vec::with_capacity(ps.len());
            for p in ps.iter() {
                let mut g = Vec::new();
                guards(p, atoms, regex_literals, &mut g);
                if g.is_empty() {
                    return;
                }
                per_branch.push(g);
            }
            let Some(first) = per_branch.first() else {
                return;
            };
            for candidate in first.iter().map(|g| g.path) {
                let mut keys = Vec::new();
                let all = per_branch.iter().all(|branch| {
                    match branch.iter().find(|g| g.path == candidate) {
                        Some(g) => {
                            keys.extend(g.keys.iter().cloned());
                            true
                        }
                        None => false,
                    }
                });
                if all {
                    out.push(Guard {
                        path: candidate,
                        keys,
                    });
                    return;
                }
            }
        }
        Pred::Test { negate: true, .. } | Pred::Not(..) | Pred::During { .. } => {}
    }
}

#[derive(Default)]
struct FieldBuilder {
    strs: FxHashMap<Box<str>, Vec<u32>>,
    nums: FxHashMap<u64, Vec<u32>>,
    str_nums: FxHashMap<u64, Vec<u32>>,
    bools: [Vec<u32>; 2],
    null: Vec<u32>,
}

fn push_rule(list: &mut Vec<u32>, rule: u32) {
    if list.last() != Some(&rule) {
        list.push(rule);
    }
}

impl Index {
    /// Builds the index of `preds` (rule i's condition is `preds[i]`).
    pub(crate) fn build<'p>(
        preds: impl Iterator<Item = &'p Pred>,
        atoms: &[Atom],
        regex_literals: &FxHashMap<u32, Vec<String>>,
    ) -> Index {
        let per_rule: Vec<Vec<Guard>> = preds
            .map(|p| {
                let mut g = Vec::new();
                guards(p, atoms, regex_literals, &mut g);
                g
            })
            .collect();
        // How many guards (of any rule) admit each (field, value): a guard's cost is the
        // number of rules sharing its buckets.
        let mut shared: FxHashMap<(u32, &Key), u32> = FxHashMap::default();
        for g in per_rule.iter().flatten() {
            for k in &g.keys {
                *shared.entry((g.path, k)).or_default() += 1;
            }
        }
        let mut always = Vec::new();
        let mut fields: FxHashMap<u32, FieldBuilder> = FxHashMap::default();
        for (rule, alternatives) in per_rule.iter().enumerate() {
            let rule = rule as u32;
            let best = alternatives.iter().min_by_key(|g| {
                g.keys
                    .iter()
                    .map(|k| u64::from(shared.get(&(g.path, k)).copied().unwrap_or(0)))
                    .sum::<u64>()
            });
            let Some(best) = best else {
                always.push(rule);
                continue;
            };
            let f = fields.entry(best.path).or_default();
            for k in &best.keys {
                match k {
                    Key::Str(s) => push_rule(f.strs.entry(s.clone()).or_default(), rule),
                    Key::Num(n) => push_rule(f.nums.entry(*n).or_default(), rule),
                    Key::StrNum(n) => push_rule(f.str_nums.entry(*n).or_default(), rule),
                    Key::Bool(b) => push_rule(&mut f.bools[usize::from(*b)], rule),
                    Key::Null => push_rule(&mut f.null, rule),
                }
            }
        }
        drop(shared);
        let mut ids = Vec::new();
        let mut flat = |list: Vec<u32>| {
            let b = Bucket {
                start: ids.len() as u32,
                len: list.len() as u32,
            };
            ids.extend(list);
            b
        };
        let mut paths: Vec<u32> = fields.keys().copied().collect();
        paths.sort_unstable();
        let mut built = Vec::with_capacity(paths.len());
        for path in paths {
            let Some(f) = fields.remove(&path) else {
                continue;
            };
            let mut strs = FxHashMap::default();
            strs.reserve(f.strs.len());
            for (k, v) in f.strs {
                strs.insert(k, flat(v));
            }
            let nums = f.nums.into_iter().map(|(k, v)| (k, flat(v))).collect();
            let str_nums = f.str_nums.into_iter().map(|(k, v)| (k, flat(v))).collect();
            let [no, yes] = f.bools;
            let bools = [flat(no), flat(yes)];
            let null = flat(f.null);
            built.push(FieldIndex {
                path,
                strs,
                nums,
                str_nums,
                bools,
                null,
            });
        }
        Index {
            always: always.into_boxed_slice(),
            fields: built.into_boxed_slice(),
            ids: ids.into_boxed_slice(),
        }
    }

    /// How many rules have a guard (are served by the index).
    pub(crate) fn indexed_rules(&self, total: usize) -> usize {
        total - self.always.len()
    }

    /// The lists of candidate rules for the alert in `cx`, each ascending; their merge is
    /// the candidates in rule order (a rule may appear in several lists).
    pub(crate) fn candidates<'s>(&'s self, cx: &mut Ctx<'_>, out: &mut SmallVec<[&'s [u32]; 4]>) {
        if !self.always.is_empty() {
            out.push(&self.always);
        }
        for f in self.fields.iter() {
            cx.each_value(f.path, &mut |v| {
                f.lookup(v, &self.ids, out);
                false
            });
        }
    }
}

impl FieldIndex {
    fn lookup<'s>(&'s self, v: Val<'_>, ids: &'s [u32], out: &mut SmallVec<[&'s [u32]; 4]>) {
        let mut add = |b: Option<&Bucket>| {
            if let Some(b) = b
                && b.len > 0
                && let Some(list) = ids.get(b.start as usize..(b.start + b.len) as usize)
            {
                out.push(list);
            }
        };
        match v {
            Val::Str(s) => {
                add(self.strs.get(s));
                if !self.nums.is_empty()
                    && let Some(n) = parse_number(s)
                {
                    add(self.nums.get(&bits(&n)));
                }
            }
            Val::Num(n) => {
                if let Some(n) = Numeric::from_json(n) {
                    let k = bits(&n);
                    add(self.nums.get(&k));
                    add(self.str_nums.get(&k));
                }
            }
            Val::Bool(b) => add(self.bools.get(usize::from(b))),
            Val::Null => add(Some(&self.null)),
            Val::Array(_) | Val::Object(_) => {}
        }
    }
}
