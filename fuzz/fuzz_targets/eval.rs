//! A structured rule set and alert. Invariants: evaluation is deterministic; `a != x` is
//! exactly `not (a == x)` and `a not in L` exactly `not (a in L)`; `not (C)` fires exactly
//! when `C` does not; explain agrees with evaluate; the indexed evaluation agrees with the
//! plain rule-by-rule scan.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use switchyard::{Alert, RuleSet};

#[derive(Arbitrary, Debug)]
enum Path {
    A,
    AB,
    A0,
    AAny,
    AAnyB,
    Source,
}

impl Path {
    fn text(&self) -> &'static str {
        match self {
            Path::A => "a",
            Path::AB => "a.b",
            Path::A0 => "a[0]",
            Path::AAny => "a[*]",
            Path::AAnyB => "a[*].b",
            Path::Source => "@source",
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Lit {
    Str(u8),
    Int(i16),
    Float(i16),
    Bool(bool),
    Null,
}

impl Lit {
    fn text(&self) -> String {
        match self {
            Lit::Str(n) => format!(
                "\"{}\"",
                ["x", "95", "ALARM", "", "-3", "1e2", "generic"][*n as usize % 7]
            ),
            Lit::Int(n) => n.to_string(),
            Lit::Float(n) => format!("{}.5", n),
            Lit::Bool(b) => b.to_string(),
            Lit::Null => String::from("null"),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Cond {
    Eq(Path, Lit),
    Ne(Path, Lit),
    Lt(Path, i16),
    Ge(Path, i16),
    Regex(Path, u8),
    In(Path, Vec<Lit>),
    NotIn(Path, Vec<Lit>),
    Contains(Path, u8),
    Exists(Path),
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

const WORDS: [&str; 4] = ["x", "9", "AL", ""];

/// The items of an `in` list, at most four.
fn list_text(l: &[Lit]) -> String {
    l.iter()
        .take(4)
        .map(Lit::text)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Cond {
    fn text(&self, depth: usize) -> String {
        if depth > 8 {
            return String::from("exists(a)");
        }
        match self {
            Cond::Eq(p, l) => format!("{} == {}", p.text(), l.text()),
            Cond::Ne(p, l) => format!("{} != {}", p.text(), l.text()),
            Cond::Lt(p, n) => format!("{} < {n}", p.text()),
            Cond::Ge(p, n) => format!("{} >= {n}", p.text()),
            Cond::Regex(p, w) => format!("{} =~ /^{}/", p.text(), WORDS[*w as usize % 4]),
            Cond::In(p, l) => format!("{} in [{}]", p.text(), list_text(l)),
            Cond::NotIn(p, l) => format!("{} not in [{}]", p.text(), list_text(l)),
            Cond::Contains(p, w) => format!("{} contains \"{}\"", p.text(), WORDS[*w as usize % 4]),
            Cond::Exists(p) => format!("exists({})", p.text()),
            Cond::Not(c) => format!("not ({})", c.text(depth + 1)),
            Cond::And(a, b) => format!("({}) and ({})", a.text(depth + 1), b.text(depth + 1)),
            Cond::Or(a, b) => format!("({}) or ({})", a.text(depth + 1), b.text(depth + 1)),
        }
    }

    /// The same condition with each negatable comparison written as `not` of its positive.
    fn desugared(&self, depth: usize) -> String {
        // Cut off exactly where `text` does, so both spell the same condition.
        if depth > 8 {
            return self.text(depth);
        }
        match self {
            Cond::Ne(p, l) => format!("not ({} == {})", p.text(), l.text()),
            Cond::NotIn(p, l) => format!("not ({} in [{}])", p.text(), list_text(l)),
            Cond::Not(c) => format!("not ({})", c.desugared(depth + 1)),
            Cond::And(a, b) => format!(
                "({}) and ({})",
                a.desugared(depth + 1),
                b.desugared(depth + 1)
            ),
            Cond::Or(a, b) => format!(
                "({}) or ({})",
                a.desugared(depth + 1),
                b.desugared(depth + 1)
            ),
            other => other.text(depth),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Val {
    Str(u8),
    Int(i16),
    Float(i16),
    Bool(bool),
    Null,
    Arr(Vec<Val>),
    Obj(Vec<Val>),
}

impl Val {
    fn json(&self, depth: usize) -> Value {
        if depth > 4 {
            return Value::Null;
        }
        match self {
            Val::Str(n) => {
                json!(["x", "95", "ALARM", "", "-3", "1e2", "9x", "AL"][*n as usize % 8])
            }
            Val::Int(n) => json!(n),
            Val::Float(n) => json!(f64::from(*n) + 0.5),
            Val::Bool(b) => json!(b),
            Val::Null => Value::Null,
            Val::Arr(v) => Value::Array(v.iter().take(4).map(|v| v.json(depth + 1)).collect()),
            Val::Obj(v) => Value::Object(
                v.iter()
                    .take(2)
                    .enumerate()
                    .map(|(i, v)| (["b", "c"][i].to_owned(), v.json(depth + 1)))
                    .collect(),
            ),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    cond: Cond,
    a: Option<Val>,
}

fuzz_target!(|input: Input| {
    let c = input.cond.text(0);
    let d = input.cond.desugared(0);
    let text = format!(
        "target p {{ url = \"https://x.test/p\" }}\ntarget q {{ url = \"https://x.test/q\" }}\ntarget r {{ url = \"https://x.test/r\" }}\n\
         when {c} -> post p\nwhen not ({c}) -> post q\nwhen {d} -> post r\n"
    );
    let set = match RuleSet::from_files([("f.rules", text.as_str())]) {
        Ok(s) => s,
        // Mixes the checker refuses (`a < 5` is fine, `@source < 5` too); nothing to evaluate.
        Err(_) => return,
    };
    let body = match &input.a {
        Some(v) => json!({ "a": v.json(0) }),
        None => json!({}),
    };
    let alert = Alert::new(body.clone());
    let first = set.evaluate(&alert).summary();
    assert_eq!(set.evaluate(&alert).summary(), first, "deterministic");
    assert_eq!(
        set.evaluate_unindexed(&alert).summary(),
        first,
        "the index and the plain scan agree on `{c}` and {body}"
    );
    let p = first.targets.iter().any(|t| t == "p");
    let q = first.targets.iter().any(|t| t == "q");
    let r = first.targets.iter().any(|t| t == "r");
    assert_ne!(
        p, q,
        "`not ({c})` must fire exactly when `{c}` does not, on {body}"
    );
    assert_eq!(p, r, "`{c}` and `{d}` must agree on {body}");
    let explained = set.explain(&alert);
    assert_eq!(explained.decision, first, "explain agrees with evaluate");
});
