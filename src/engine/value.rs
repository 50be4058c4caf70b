//! Field-path lookup and the comparison semantics of DSL.md §5.
//!
//! - A missing field makes every positive test false; negated operators (`!=`, `!~`,
//!   `not in`) are compiled as `not` of the positive one, so they are exactly opposite.
//! - A string that holds a decimal number compares as a number against a number.
//! - `[*]` is "any element": a test holds if it holds for one value the path reaches.
//!
//! Never: coerces beyond DSL.md (no truthiness, no string to boolean), or panics on any
//! JSON an alert can hold.

use serde_json::{Map, Value};

use crate::alert::Alert;
use crate::number::{Numeric, parse_number};

/// A metadata field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Meta {
    Source,
    State,
    Name,
    Id,
}

/// A step of a compiled path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    Key(Box<str>),
    Index(usize),
    Any,
}

/// A compiled field path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Path {
    Meta(Meta),
    /// A top-level field, the most common path: looked up without walking.
    Key(Box<str>),
    Fields(Box<[Seg]>),
}

/// A value the engine looked at, borrowed from the alert.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Val<'a> {
    Str(&'a str),
    Num(&'a serde_json::Number),
    Bool(bool),
    Null,
    Array(&'a [Value]),
    Object(&'a Map<String, Value>),
}

impl<'a> Val<'a> {
    #[inline]
    fn of(v: &'a Value) -> Val<'a> {
        match v {
            Value::String(s) => Val::Str(s),
            Value::Number(n) => Val::Num(n),
            Value::Bool(b) => Val::Bool(*b),
            Value::Null => Val::Null,
            Value::Array(a) => Val::Array(a),
            Value::Object(o) => Val::Object(o),
        }
    }

    /// The value as JSON, for explain output.
    pub(crate) fn to_json(self) -> Value {
        match self {
            Val::Str(s) => Value::String(s.to_owned()),
            Val::Num(n) => Value::Number(n.clone()),
            Val::Bool(b) => Value::Bool(b),
            Val::Null => Value::Null,
            Val::Array(a) => Value::Array(a.to_vec()),
            Val::Object(o) => Value::Object(o.clone()),
        }
    }

    fn numeric(self) -> Option<Numeric> {
        match self {
            Val::Num(n) => Numeric::from_json(n),
            Val::Str(s) => parse_number(s),
            _ => None,
        }
    }
}

impl Path {
    /// True when the path reaches at most one value (it has no `[*]`).
    pub(crate) fn is_single(&self) -> bool {
        match self {
            Path::Meta(_) | Path::Key(_) => true,
            Path::Fields(segs) => !segs.iter().any(|s| matches!(s, Seg::Any)),
        }
    }

    /// Calls `f` on each value the path reaches until `f` returns true; returns whether it did.
    /// A missing field reaches nothing, so `f` is not called and the result is false.
    #[inline]
    pub(crate) fn any<'a>(&self, alert: &'a Alert, f: &mut impl FnMut(Val<'a>) -> bool) -> bool {
        match self {
            Path::Meta(m) => {
                let v = match m {
                    Meta::Source => Some(alert.source().as_str()),
                    Meta::State => Some(alert.state().as_str()),
                    Meta::Name => alert.name(),
                    Meta::Id => alert.id(),
                };
                v.is_some_and(|s| f(Val::Str(s)))
            }
            Path::Key(k) => match alert.body() {
                Value::Object(m) => m.get(&**k).is_some_and(|v| f(Val::of(v))),
                _ => false,
            },
            Path::Fields(segs) => walk(alert.body(), segs, f),
        }
    }
}

fn walk<'a>(v: &'a Value, segs: &[Seg], f: &mut impl FnMut(Val<'a>) -> bool) -> bool {
    let Some((first, rest)) = segs.split_first() else {
        return f(Val::of(v));
    };
    match first {
        Seg::Key(k) => match v {
            Value::Object(m) => m.get(&**k).is_some_and(|v| walk(v, rest, f)),
            _ => false,
        },
        Seg::Index(i) => match v {
            Value::Array(a) => a.get(*i).is_some_and(|v| walk(v, rest, f)),
            _ => false,
        },
        Seg::Any => match v {
            Value::Array(a) => a.iter().any(|v| walk(v, rest, f)),
            Value::Object(m) => m.values().any(|v| walk(v, rest, f)),
            _ => false,
        },
    }
}

/// A literal on the right of `==`, `in`, ...
#[derive(Clone, Debug)]
pub(crate) enum Scalar {
    /// A string, with its numeric reading when it holds a number.
    Str(Box<str>, Option<Numeric>),
    Num(Numeric),
    Bool(bool),
    Null,
}

impl Scalar {
    pub(crate) fn from_json(v: &Value) -> Scalar {
        match v {
            Value::String(s) => Scalar::Str(s.as_str().into(), parse_number(s)),
            Value::Number(n) => match Numeric::from_json(n) {
                Some(x) => Scalar::Num(x),
                None => Scalar::Null,
            },
            Value::Bool(b) => Scalar::Bool(*b),
            _ => Scalar::Null,
        }
    }

    /// `value == self`.
    #[inline]
    pub(crate) fn matches(&self, v: Val<'_>) -> bool {
        match (self, v) {
            (Scalar::Str(s, _), Val::Str(x)) => **s == *x,
            (Scalar::Str(_, Some(n)), Val::Num(x)) => {
                Numeric::from_json(x).is_some_and(|x| x.cmp(n).is_some_and(|o| o.is_eq()))
            }
            (Scalar::Num(n), v @ (Val::Num(_) | Val::Str(_))) => v
                .numeric()
                .is_some_and(|x| x.cmp(n).is_some_and(|o| o.is_eq())),
            (Scalar::Bool(b), Val::Bool(x)) => *b == x,
            (Scalar::Null, Val::Null) => true,
            _ => false,
        }
    }
}

/// What a comparison tests, with the positive operator; negations wrap it in `not`.
#[derive(Clone, Debug)]
pub(crate) enum Test {
    Eq(Scalar),
    Lt(Numeric),
    Le(Numeric),
    Gt(Numeric),
    Ge(Numeric),
    Regex(crate::check::Matcher),
    In(Box<[Scalar]>),
    Contains(Box<str>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Exists,
}

impl Test {
    /// Whether one value passes the test. A string equal to a string, the most common
    /// test, is decided here, inlined at the caller; the rest in [`Test::holds_any`].
    #[inline(always)]
    pub(crate) fn holds(&self, v: Val<'_>) -> bool {
        match (self, v) {
            (Test::Eq(Scalar::Str(s, _)), Val::Str(x)) => **s == *x,
            _ => self.holds_any(v),
        }
    }

    /// [`Test::holds`] for every test and value.
    fn holds_any(&self, v: Val<'_>) -> bool {
        use std::cmp::Ordering::*;
        let order = |n: &Numeric, ok: &dyn Fn(std::cmp::Ordering) -> bool| {
            v.numeric().and_then(|x| x.cmp(n)).is_some_and(ok)
        };
        match self {
            Test::Eq(s) => s.matches(v),
            Test::Lt(n) => order(n, &|o| o == Less),
            Test::Le(n) => order(n, &|o| o != Greater),
            Test::Gt(n) => order(n, &|o| o == Greater),
            Test::Ge(n) => order(n, &|o| o != Less),
            Test::Regex(re) => match v {
                Val::Str(s) => re.is_match(s),
                Val::Num(n) => re.is_match(&n.to_string()),
                _ => false,
            },
            Test::In(list) => list.iter().any(|s| s.matches(v)),
            Test::Contains(needle) => match v {
                Val::Str(s) => s.contains(&**needle),
                Val::Array(items) => items.iter().any(|i| i.as_str() == Some(needle)),
                _ => false,
            },
            Test::StartsWith(p) => matches!(v, Val::Str(s) if s.starts_with(&**p)),
            Test::EndsWith(p) => matches!(v, Val::Str(s) if s.ends_with(&**p)),
            Test::Exists => true,
        }
    }
}

/// Reads a body template's field: the first value the path reaches, or `null`.
pub(crate) fn first_value(path: &Path, alert: &Alert) -> Value {
    let mut out = Value::Null;
    path.any(alert, &mut |v| {
        out = v.to_json();
        true
    });
    out
}
