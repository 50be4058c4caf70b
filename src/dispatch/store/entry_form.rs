//! The stored form of an entry of the rules' memory (`state::Entry`): a tag byte, then
//! postcard. Entries were stored as JSON; a group's entry holds every member's alert as
//! JSON text, which JSON stored as an escaped string, so each alert joining a group of
//! 1,000 escaped about 300 KB (a third of the writer thread's time, measured). Postcard
//! stores a string as its length and its bytes.
//!
//! Owns: encoding and decoding an entry. Entries stored as JSON by an earlier version are
//! still read (their first byte is `{`, never [`COMPACT`]). Never: changes what an entry
//! means; a variant or a field is only ever added at the end, under a new tag byte
//! (postcard is not self-describing: nothing is skipped, nothing is named).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::state::{Entry, Group, Member, Notified};

/// The first byte of an entry in the compact form.
const COMPACT: u8 = 1;

/// An entry as stored, variant for variant in [`Entry`]'s order.
#[derive(Serialize, Deserialize)]
enum Compact<'a> {
    Dedup {
        state: Cow<'a, str>,
        at: u64,
        delivery: u64,
    },
    Announced {
        at: u64,
    },
    Window {
        times: Cow<'a, [u64]>,
    },
    Passed {
        at: u64,
    },
    Flap {
        state: Cow<'a, str>,
        changes: Cow<'a, [u64]>,
        held: Option<(u64, u64)>,
    },
    Held {
        delivery: u64,
        until: u64,
    },
    Group(CompactGroup<'a>),
    Truncated {
        count: u64,
    },
    Inhibitor {
        sources: Cow<'a, [(String, u64)]>,
    },
    Silenced {
        delivery: u64,
        silence: u64,
        until: u64,
    },
}

#[derive(Serialize, Deserialize)]
struct CompactGroup<'a> {
    rule: Cow<'a, str>,
    clauses: u64,
    target: Cow<'a, str>,
    key: Cow<'a, str>,
    labels: Cow<'a, str>,
    every_ms: u64,
    repeat_ms: u64,
    members: Vec<CompactMember<'a>>,
    truncated: u64,
    next_flush: u64,
    notified: Option<Cow<'a, Notified>>,
}

#[derive(Serialize, Deserialize)]
struct CompactMember<'a> {
    id: Cow<'a, str>,
    name: Cow<'a, str>,
    firing: bool,
    data: Cow<'a, str>,
    until: u64,
    since: u64,
    inhibits: Cow<'a, [(String, String)]>,
}

/// The entry's stored bytes.
#[cfg(test)]
pub(super) fn encode(entry: &Entry) -> Result<Vec<u8>, postcard::Error> {
    let mut out = Vec::new();
    encode_into(entry, &mut out)?;
    Ok(out)
}

/// Appends the entry's stored bytes to `out` (a page of the rules' memory holds many).
pub(super) fn encode_into(entry: &Entry, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
    let b = Cow::Borrowed;
    let compact = match entry {
        Entry::Dedup {
            state,
            at,
            delivery,
        } => Compact::Dedup {
            state: b(state.as_str()),
            at: *at,
            delivery: *delivery,
        },
        Entry::Announced { at } => Compact::Announced { at: *at },
        Entry::Window { times } => Compact::Window {
            times: Cow::Borrowed(times.as_slice()),
        },
        Entry::Passed { at } => Compact::Passed { at: *at },
        Entry::Flap {
            state,
            changes,
            held,
        } => Compact::Flap {
            state: b(state.as_str()),
            changes: Cow::Borrowed(changes.as_slice()),
            held: *held,
        },
        Entry::Held { delivery, until } => Compact::Held {
            delivery: *delivery,
            until: *until,
        },
        Entry::Group(g) => Compact::Group(CompactGroup {
            rule: b(g.rule.as_str()),
            clauses: g.clauses,
            target: b(g.target.as_str()),
            key: b(g.key.as_str()),
            labels: b(g.labels.as_str()),
            every_ms: g.every_ms,
            repeat_ms: g.repeat_ms,
            members: g
                .members
                .iter()
                .map(|m| CompactMember {
                    id: b(m.id.as_str()),
                    name: b(m.name.as_str()),
                    firing: m.firing,
                    data: b(m.data.as_str()),
                    until: m.until,
                    since: m.since,
                    inhibits: Cow::Borrowed(m.inhibits.as_slice()),
                })
                .collect(),
            truncated: g.truncated,
            next_flush: g.next_flush,
            notified: g.notified.as_ref().map(Cow::Borrowed),
        }),
        Entry::Truncated { count } => Compact::Truncated { count: *count },
        Entry::Inhibitor { sources } => Compact::Inhibitor {
            sources: Cow::Borrowed(sources.as_slice()),
        },
        Entry::Silenced {
            delivery,
            silence,
            until,
        } => Compact::Silenced {
            delivery: *delivery,
            silence: *silence,
            until: *until,
        },
    };
    out.reserve(match entry {
        Entry::Group(g) => 256 + g.members.iter().map(|m| m.data.len() + 64).sum::<usize>(),
        _ => 32,
    });
    out.push(COMPACT);
    postcard::to_io(&compact, out)?;
    Ok(())
}

/// The entry stored as `bytes`: the compact form, or JSON from an earlier version.
pub(super) fn decode(bytes: &[u8]) -> Result<Entry, String> {
    let compact = match bytes.split_first() {
        Some((&COMPACT, rest)) => {
            postcard::from_bytes::<Compact<'_>>(rest).map_err(|e| format!("compact entry: {e}"))?
        }
        _ => return serde_json::from_slice(bytes).map_err(|e| format!("JSON entry: {e}")),
    };
    Ok(match compact {
        Compact::Dedup {
            state,
            at,
            delivery,
        } => Entry::Dedup {
            state: state.into_owned(),
            at,
            delivery,
        },
        Compact::Announced { at } => Entry::Announced { at },
        Compact::Window { times } => Entry::Window {
            times: times.into_owned(),
        },
        Compact::Passed { at } => Entry::Passed { at },
        Compact::Flap {
            state,
            changes,
            held,
        } => Entry::Flap {
            state: state.into_owned(),
            changes: changes.into_owned(),
            held,
        },
        Compact::Held { delivery, until } => Entry::Held { delivery, until },
        Compact::Group(g) => Entry::Group(Box::new(Group {
            rule: g.rule.into_owned(),
            clauses: g.clauses,
            target: g.target.into_owned(),
            key: g.key.into_owned(),
            labels: g.labels.into_owned(),
            every_ms: g.every_ms,
            repeat_ms: g.repeat_ms,
            members: g
                .members
                .into_iter()
                .map(|m| Member {
                    id: m.id.into_owned(),
                    name: m.name.into_owned(),
                    firing: m.firing,
                    data: m.data.into_owned(),
                    until: m.until,
                    since: m.since,
                    inhibits: m.inhibits.into_owned(),
                })
                .collect(),
            truncated: g.truncated,
            next_flush: g.next_flush,
            notified: g.notified.map(Cow::into_owned),
        })),
        Compact::Truncated { count } => Entry::Truncated { count },
        Compact::Inhibitor { sources } => Entry::Inhibitor {
            sources: sources.into_owned(),
        },
        Compact::Silenced {
            delivery,
            silence,
            until,
        } => Entry::Silenced {
            delivery,
            silence,
            until,
        },
    })
}

#[cfg(test)]
#[path = "entry_form_test.rs"]
mod tests;
