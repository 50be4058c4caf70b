//! The compiled program: what the compiler makes and evaluation, the index, explain and
//! rendering read. Data only, no logic but turning a field path into its lookup: a leaf
//! that every other engine file may import, and that imports none of them (as
//! minijinja's `compiler/instructions.rs` sits beside `codegen.rs`).

use super::value::{Meta, Path, Seg, Test};
use crate::diagnostic::Span;
use crate::syntax::ast::{FieldPath, Segment};

/// A compiled condition. Its tests are [`Atom`]s of the rule set, shared by every rule
/// that writes the same test on the same field.
#[derive(Clone, Debug)]
pub(crate) enum Pred {
    All(Box<[Pred]>),
    Any(Box<[Pred]>),
    Not(Box<Pred>, Span),
    /// Atom `atom` of the set; `negate` for `!=`, `!~`, `not in`, which are exactly `not`
    /// of the positive.
    Test {
        atom: u32,
        negate: bool,
        span: Span,
    },
    /// `during NAME`: the alert's time is inside window `window` of the set.
    During {
        window: u32,
        span: Span,
    },
}

/// No memo slot: the atom is used once in the whole set, so remembering it gains nothing.
pub(crate) const NO_MEMO: u32 = u32::MAX;

/// A test on one field (`path <test>`), compiled once for the whole set.
#[derive(Debug)]
pub(crate) struct Atom {
    /// Index into the set's path table.
    pub(crate) path: u32,
    pub(crate) test: Test,
    /// Slot of the per-alert memo when several rules use this atom, else [`NO_MEMO`].
    pub(crate) memo: u32,
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
