//! Routing that remembers: the one step function that decides, from what the rules chose
//! and what the state holds, which deliveries go out, and what the state holds next.
//!
//! The engine stays pure: it evaluates an alert and hands over, per rule that chose a
//! target, the rule's clauses with their keys already computed from the alert
//! ([`RuleChoice`]). [`step`] then runs with `now` as an input and a [`State`] to read and
//! write, and answers a [`Verdict`] per target. Every store runs this same function inside
//! the transaction that stores the deliveries it keeps (SQLite: on its writer thread), so
//! state and deliveries are committed together: never the record without the delivery,
//! never the delivery without the record. `test` blocks run it too, on [`MemoryState`].
//!
//! Owns: the semantics of `dedup`, `resolve once` and `at most` (docs/state.md is their
//! contract for users). Never: reads a clock, does I/O, or looks at an alert's body (keys
//! arrive as bytes, so no alert data is kept in a key).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::alert::State as AlertState;

mod group;
mod inhibit;
mod silence;
pub use group::{
    Group, GroupIntent, GroupNote, MAX_FLUSH_GROUPS, MAX_GROUP_MEMBERS, MEMBER_REFRESH_MS,
    MEMBER_SILENCE_MS, Member, Notified, due_among, flush,
};
pub use inhibit::{INHIBIT_SOURCE_MS, InhibitFact, MAX_INHIBIT_SOURCES, Recheck};
use inhibit::{inhibited_by, note_sources};
pub use silence::{
    MAX_SILENCE_MS, MAX_SILENCES, Silence, SilenceSpan, SilenceStatus,
    to_forget as silences_to_forget,
};

/// How long an entry without a window of its own is kept: a `dedup ... until resolved`
/// that never sees its resolution, a `resolve once` announcement, a throttle's note that a
/// firing went through. After this they are forgotten (garbage-collected).
pub const RETENTION_MS: u64 = 7 * 24 * 3_600_000;

/// A resolution this close to its held firing's due time no longer cancels it: both go,
/// the firing first. Far more than a commit waits in the writer's queue, so a cancellation
/// never races a worker that is already sending the held delivery.
pub const CANCEL_MARGIN_MS: u64 = 500;

/// One alert's facts the step needs: its `@id` and `@state`.
#[derive(Clone, Debug)]
pub struct AlertFacts {
    /// `@id`: what `resolve once` and a `dedup` without `by` key on.
    pub id: Option<String>,
    /// `@state`.
    pub state: AlertState,
    /// The silences whose condition the alert matches, among those in force when it was
    /// received (the router's view; the step asks the state whether each still is).
    pub silences: Vec<u64>,
    /// Whether a silence may be holding firings: a resolution then looks for its firing
    /// among them, to cancel it.
    pub silencing: bool,
    /// What each `inhibit` whose target or source condition the alert matches says.
    pub inhibits: Vec<InhibitFact>,
}

impl AlertFacts {
    /// An alert's facts, without silences.
    pub fn new(id: Option<String>, state: AlertState) -> AlertFacts {
        AlertFacts {
            id,
            state,
            silences: Vec::new(),
            silencing: false,
            inhibits: Vec::new(),
        }
    }

    /// Whether the step has a say in this alert beyond the rules' clauses: a silence
    /// matches it; or, while silences are in force, it is a resolution that may cancel a
    /// firing one holds; or an `inhibit` names it as a source or a target. Does not look at
    /// `id`, so that a caller fills it in only for an alert that goes through the step.
    pub fn needs_step(&self) -> bool {
        !self.silences.is_empty()
            || (self.silencing && self.state == AlertState::Resolved)
            || !self.inhibits.is_empty()
    }
}

/// What one rule chose for an alert and what it remembers. `P` is what a delivery carries
/// (the dispatcher's stored record, a test's rendered body).
#[derive(Clone, Debug)]
pub struct RuleChoice<P> {
    /// The rule's name: state is keyed by it.
    pub rule: String,
    /// A fingerprint of the rule's clauses: a changed clause starts with fresh state.
    pub clauses: u64,
    /// The targets this rule is the first to choose, in order, with their payloads.
    pub targets: Vec<(String, P)>,
    /// `dedup`: the key (canonical JSON of the `by` values; `None` when the alert has
    /// nothing to key on, such as no `@id`) and the window (`None`: until resolved).
    pub dedup: Option<DedupIntent>,
    /// `resolve once`.
    pub resolve_once: bool,
    /// `at most <n> per <d>`.
    pub throttle: Option<ThrottleIntent<P>>,
    /// `delay`, `hold during`, `mute during`: when a delivery that passed may go.
    pub gate: Option<Gate>,
    /// `group by ... wait ... every ...`: the alert joins a group instead of going alone.
    pub group: Option<GroupIntent>,
}

/// When a delivery that passed `dedup` and `at most` may go out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// `delay <d> unless resolved`: a firing waits `ms`; its resolution within that time
    /// cancels both.
    Delay {
        /// The delay.
        ms: u64,
    },
    /// `hold during <window>`: inside the window, a delivery waits for its end (a firing
    /// resolved meanwhile is cancelled with its resolution).
    Hold {
        /// The window's name.
        window: String,
        /// When `now` is inside the window: the window's end (ms); `None` outside.
        until: Option<u64>,
    },
    /// `mute flapping <n> changes in <d>`: after `changes` changes of `@state` within `ms`,
    /// notifications wait until the state has been stable for `ms`; then the current state
    /// goes once.
    Flapping {
        /// How many changes make a flap.
        changes: u64,
        /// The window they are counted in, and how long the state must then stay put.
        ms: u64,
    },
    /// `mute during <window>`: inside the window, a delivery is dropped (a resolution that
    /// `resolve once` owes still goes).
    Mute {
        /// The window's name.
        window: String,
        /// When `now` is inside the window: the window's end (ms); `None` outside.
        until: Option<u64>,
    },
}

impl<P> RuleChoice<P> {
    /// The same choice with each payload turned into another (a decision's deliveries into
    /// stored records, say).
    pub fn map<Q>(self, mut f: impl FnMut(P) -> Q) -> RuleChoice<Q> {
        RuleChoice {
            rule: self.rule,
            clauses: self.clauses,
            targets: self.targets.into_iter().map(|(t, p)| (t, f(p))).collect(),
            dedup: self.dedup,
            resolve_once: self.resolve_once,
            throttle: self.throttle.map(|t| ThrottleIntent {
                key: t.key,
                count: t.count,
                per_ms: t.per_ms,
                else_post: t.else_post.map(|(to, p)| (to, f(p))),
            }),
            gate: self.gate,
            group: self.group,
        }
    }
}

/// A `dedup` clause, keyed for one alert.
#[derive(Clone, Debug)]
pub struct DedupIntent {
    /// The canonical JSON of the key's values; `None`: nothing to key on.
    pub key: Option<Vec<u8>>,
    /// `for <d>` in ms; `None`: until resolved.
    pub window_ms: Option<u64>,
}

/// An `at most` clause, keyed for one alert.
#[derive(Clone, Debug)]
pub struct ThrottleIntent<P> {
    /// The canonical JSON of the key's values (`[]` without `by`).
    pub key: Vec<u8>,
    /// At most this many alerts...
    pub count: u64,
    /// ...in any window of this many ms.
    pub per_ms: u64,
    /// `else post <target>`: where the excess goes, with its payload.
    pub else_post: Option<(String, P)>,
}

/// What happened to one delivery a rule chose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The rule that chose the target.
    pub rule: String,
    /// The target.
    pub target: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: VerdictKind,
    /// For a duplicate or a throttle, the key's values as explain shows them
    /// (`labels.team=db`): filled in by explain, which has the alert; the step and the
    /// store see keys only as bytes and leave it `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// What happened to a delivery: see [`Verdict`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
#[non_exhaustive]
pub enum VerdictKind {
    /// Goes out: stored as delivery `delivery`.
    Delivered {
        /// The delivery's id.
        delivery: u64,
    },
    /// Kept out by `dedup`: delivery `of` went to this target at `at` (ms since the epoch),
    /// and the window runs until `until` (`None`: until resolved).
    Duplicate {
        /// The delivery this one duplicates.
        of: u64,
        /// When that delivery was accepted.
        at: u64,
        /// When the window ends; `None` until the resolution is delivered.
        until: Option<u64>,
    },
    /// Kept out by `at most`: `limit` alerts already went through in the last `per_ms`.
    Throttled {
        /// The clause's count.
        limit: u64,
        /// The clause's window.
        per_ms: u64,
    },
    /// Over an `at most` limit, sent to the clause's `else` target instead.
    Diverted {
        /// Where it went instead.
        to: String,
        /// The delivery's id.
        delivery: u64,
    },
    /// A resolution through `resolve once` for a firing this rule never delivered there.
    Unannounced,
    /// Waits (`delay`, `hold during`): stored as delivery `delivery`, due at `until` (ms).
    Held {
        /// The held delivery's id (an earlier one, when a re-send joins it).
        delivery: u64,
        /// When it goes out, unless its resolution comes first.
        until: u64,
    },
    /// Dropped by `mute during <window>`, which lasts until `until` (ms).
    Muted {
        /// The window.
        window: String,
        /// Its end.
        until: u64,
    },
    /// A resolution that came while its firing was still held: both are dropped, and held
    /// delivery `of` will not go out.
    Cancelled {
        /// The held delivery cancelled.
        of: u64,
    },
    /// Kept out by `inhibit "<inhibit>"`: alert `by` (its `@id`), which its source
    /// condition matches, is firing with the same `matching` values. Never a resolution.
    Inhibited {
        /// The inhibit's name.
        inhibit: String,
        /// The `@id` of a firing source.
        by: String,
    },
    /// Joined a group (`group by ...`): its labels (`groupLabels`, as JSON), when the group
    /// is next notified (ms), and how many alerts it holds.
    Grouped {
        /// The group's labels.
        group: String,
        /// Its next notification time.
        flush: u64,
        /// Its members.
        members: u64,
    },
    /// A firing a silence matches: held as delivery `delivery` until `until` (the
    /// silence's end, or later when the rule's own gate says so), when it goes out unless
    /// its resolution came first. An alert without `@id` is dropped (`delivery` is `None`):
    /// nothing could tell, at the end, whether it still fires.
    Silenced {
        /// The silence.
        silence: u64,
        /// When the held firing goes out.
        until: u64,
        /// The held delivery (an earlier one, when a re-send joins it).
        delivery: Option<u64>,
    },
}

impl std::fmt::Display for Verdict {
    /// `rule "prom pages" -> pager: duplicate of delivery 12 at 2026-01-05T10:01:00Z, window
    /// until the resolution`: the verdict as explain prints it. Delivery 0 is one a preview
    /// would make.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule \"{}\" -> {}: ", self.rule, self.target)?;
        let moment = |ms: u64| {
            i64::try_from(ms)
                .ok()
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                .map_or_else(|| format!("{ms} ms"), |t| t.to_string())
        };
        let delivery = |id: u64| {
            if id == 0 {
                String::from("would be delivered")
            } else {
                format!("delivery {id}")
            }
        };
        let key = self
            .key
            .as_deref()
            .map(|k| format!(" for {k}"))
            .unwrap_or_default();
        match &self.kind {
            VerdictKind::Delivered { delivery: id } => write!(f, "delivered ({})", delivery(*id)),
            VerdictKind::Duplicate { of, at, until } => {
                let until = until.map_or_else(|| String::from("the resolution"), moment);
                write!(
                    f,
                    "duplicate of delivery {of} at {}{key}, window until {until}",
                    moment(*at)
                )
            }
            VerdictKind::Throttled { limit, per_ms } => write!(
                f,
                "throttled: {limit} of {limit} already sent in the last {}{key}",
                crate::syntax::ast::millis(*per_ms)
            ),
            VerdictKind::Diverted { to, delivery: id } => {
                write!(
                    f,
                    "over the limit{key}, sent to {to} instead ({})",
                    delivery(*id)
                )
            }
            VerdictKind::Unannounced => {
                f.write_str("not sent: a resolution of a firing never delivered there")
            }
            VerdictKind::Held {
                delivery: id,
                until,
            } => write!(
                f,
                "held as {} until {}",
                delivery(*id).replace("would be delivered", "a delivery"),
                moment(*until)
            ),
            VerdictKind::Muted { window, until } => {
                write!(f, "muted during {window} (until {})", moment(*until))
            }
            VerdictKind::Cancelled { of } => {
                write!(f, "resolved while delivery {of} was held: neither goes out")
            }
            VerdictKind::Grouped {
                group,
                flush,
                members,
            } => write!(
                f,
                "grouped into {group} ({members} alert(s)); the group is notified at {}",
                moment(*flush)
            ),
            VerdictKind::Inhibited { inhibit, by } => {
                let key = self
                    .key
                    .as_deref()
                    .map(|k| format!(" with {k}"))
                    .unwrap_or_default();
                write!(
                    f,
                    "inhibited by inhibit \"{inhibit}\": alert {by} is firing{key}"
                )
            }
            VerdictKind::Silenced {
                silence,
                until,
                delivery: Some(id),
            } => write!(
                f,
                "silenced by silence {silence}: held as {} until {}",
                delivery(*id).replace("would be delivered", "a delivery"),
                moment(*until)
            ),
            VerdictKind::Silenced {
                silence,
                until,
                delivery: None,
            } => write!(
                f,
                "silenced by silence {silence} (until {}): dropped, the alert has no @id",
                moment(*until)
            ),
        }
    }
}

impl Verdict {
    /// The suppression's reason, for metrics: `duplicate`, `throttled`, `unannounced`;
    /// `None` for a delivery that goes out (to its target or diverted).
    pub fn suppressed(&self) -> Option<&'static str> {
        match self.kind {
            VerdictKind::Duplicate { .. } => Some("duplicate"),
            VerdictKind::Throttled { .. } => Some("throttled"),
            VerdictKind::Unannounced => Some("unannounced"),
            VerdictKind::Muted { .. } => Some("muted"),
            VerdictKind::Cancelled { .. } => Some("cancelled"),
            VerdictKind::Silenced { .. } => Some("silenced"),
            VerdictKind::Inhibited { .. } => Some("inhibited"),
            VerdictKind::Delivered { .. }
            | VerdictKind::Diverted { .. }
            | VerdictKind::Held { .. }
            | VerdictKind::Grouped { .. } => None,
        }
    }
}

/// What the state holds under one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Entry {
    /// The last delivery through a `dedup` key: its state, when, and its id.
    Dedup {
        /// The `@state` delivered, as its name.
        state: String,
        /// When (ms).
        at: u64,
        /// The delivery's id.
        delivery: u64,
    },
    /// A firing this rule delivered to a target, awaiting its one resolution.
    Announced {
        /// When (ms).
        at: u64,
    },
    /// The times (ms) of the alerts an `at most` window let through, oldest first.
    Window {
        /// At most the clause's count, each within its window.
        times: Vec<u64>,
    },
    /// A firing an `at most` let through: its resolution is never throttled.
    Passed {
        /// When (ms).
        at: u64,
    },
    /// What `mute flapping` knows of an alert: its last `@state`, the times of its recent
    /// changes, and the delivery it holds until the state is stable, if any.
    Flap {
        /// The last `@state` seen, as its name.
        state: String,
        /// When it changed, within the clause's window (ms).
        changes: Vec<u64>,
        /// The held delivery and when it is due.
        held: Option<(u64, u64)>,
    },
    /// A firing held by `delay` or `hold during`: delivery `delivery`, due at `until`.
    Held {
        /// The held delivery.
        delivery: u64,
        /// When it goes out.
        until: u64,
    },
    /// A group (`group by ...`): its members, timers and last notification.
    Group(Box<Group>),
    /// Alerts left out of a full group since its last notification.
    Truncated {
        /// How many.
        count: u64,
    },
    /// The firing sources of an `inhibit` under one key: each source's `@id` and until
    /// when it counts (its last firing plus [`INHIBIT_SOURCE_MS`]).
    Inhibitor {
        /// `(@id, until)`, oldest first.
        sources: Vec<(String, u64)>,
    },
    /// A firing held by silence `silence`: delivery `delivery`, due at `until`.
    Silenced {
        /// The held delivery.
        delivery: u64,
        /// The silence.
        silence: u64,
        /// When it goes out.
        until: u64,
    },
}

/// A key of the state: the rule, the clause, the target and the key values, as bytes. A
/// store hashes the bytes (with a secret of its own, so that nobody can make two keys
/// collide); no alert data appears in a key it stores. The rule, the clause and the target
/// are kept beside, in clear, for an operator's listing: borrowed, since the step makes a
/// key for every read and only a write keeps them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key<'a> {
    /// What the store hashes.
    pub bytes: Vec<u8>,
    /// `dedup`, `announced` (`resolve once`), `window` or `passed` (`at most`), `held`
    /// (`delay`, `hold during`).
    pub kind: &'static str,
    /// The rule's name.
    pub rule: &'a str,
    /// The target, or empty for a clause kept per rule (`at most`).
    pub target: &'a str,
}

impl<'a> Key<'a> {
    fn new(
        kind: &'static str,
        rule: &'a str,
        clauses: u64,
        target: &'a str,
        values: &[u8],
    ) -> Key<'a> {
        let mut k = Vec::with_capacity(kind.len() + rule.len() + target.len() + values.len() + 32);
        for part in [kind.as_bytes(), rule.as_bytes(), target.as_bytes()] {
            k.extend_from_slice(&(part.len() as u64).to_le_bytes());
            k.extend_from_slice(part);
        }
        k.extend_from_slice(&clauses.to_le_bytes());
        k.extend_from_slice(values);
        Key {
            bytes: k,
            kind,
            rule,
            target,
        }
    }
}

/// One live entry, as an operator's listing shows it (never the key's values: they are
/// alert data, and stored only hashed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// The rule's name.
    pub rule: String,
    /// `dedup`, `announced`, `window` or `passed`.
    pub kind: String,
    /// The target, or empty.
    pub target: String,
    /// When it is forgotten (ms since the epoch).
    pub expires: u64,
    /// What it holds.
    pub entry: Entry,
}

/// Where the step reads and writes state: a store's transaction, or a map.
pub trait State {
    /// The entry under `key`, unless it expired before `now`, borrowed: a group's entry
    /// holds up to 1,000 alerts, and a re-send that changes nothing in it only reads it.
    fn peek(&mut self, key: &Key<'_>, now: u64) -> Option<&Entry>;
    /// The entry under `key`, unless it expired before `now`: a copy to change.
    fn get(&mut self, key: &Key<'_>, now: u64) -> Option<Entry> {
        self.peek(key, now).cloned()
    }
    /// The entry under `key`, unless it expired before `now`, taken to be changed and put
    /// back: until it is, `key` may read as deleted. A store that holds its own copy of
    /// what this write put earlier (the same SQLite commit, the same NATS decision) hands
    /// it over instead of copying it: a group joined by many alerts at once was copied
    /// whole for each.
    fn take(&mut self, key: &Key<'_>, now: u64) -> Option<Entry> {
        self.get(key, now)
    }
    /// Stores `entry` under `key` until `expires` (ms). Taken whole: a group's entry holds
    /// up to 1,000 alerts, and a copy of it per join was a third of a join's time.
    fn put(&mut self, key: &Key<'_>, entry: Entry, expires: u64);
    /// Forgets `key`.
    fn delete(&mut self, key: &Key<'_>);
    /// Silence `id` as the store holds it now (an early expiry committed before this step
    /// counts), if the store knows it.
    fn silence(&mut self, id: u64) -> Option<SilenceSpan>;
    /// Up to `limit` groups due to be flushed by `now`, earliest first.
    fn due_groups(&mut self, now: u64, limit: usize) -> Vec<Group>;
}

/// One alert through the rules' memory: which of the targets its rules chose get a
/// delivery, and the state after it. `ids` hands out delivery ids (the store's); `deliver`
/// is called with (target, payload, id) for each delivery that goes out, in order.
///
/// `probes` are the `resolve once` rules that did not choose a target for this alert but
/// may owe it a resolution (the alert no longer matches their condition): for a resolved
/// alert, each announced target gets the resolution once.
pub fn step<P: Clone>(
    state: &mut dyn State,
    alert: &AlertFacts,
    choices: Vec<RuleChoice<P>>,
    probes: Vec<RuleChoice<P>>,
    now: u64,
    sink: &mut dyn Sink<P>,
) -> Vec<Verdict> {
    let mut out = Out {
        sink,
        verdicts: Vec::new(),
        held: Vec::new(),
    };
    let silenced = silenced(state, alert, now);
    note_sources(state, alert, now);
    let gates = Gates {
        silenced,
        inhibited: inhibited_by(state, alert, now),
    };
    for choice in choices {
        one_rule(state, alert, choice, &gates, now, &mut out);
    }
    if alert.state == AlertState::Resolved {
        for probe in probes {
            for (target, payload) in probe.targets {
                let place = (probe.rule.as_str(), probe.clauses, target.as_str());
                if let Some(g) = &probe.group {
                    group::join(state, alert, place, g, now, &mut out);
                    continue;
                }
                if cancel_held(state, alert, place, now, &mut out)
                    || cancel_silenced(state, alert, place, now, &mut out)
                {
                    continue;
                }
                if take_announced(state, alert, &probe.rule, probe.clauses, &target, now) {
                    out.send(&probe.rule, &target, payload);
                }
            }
        }
    }
    out.verdicts
}

/// Where the step's deliveries go: a store's write, a test's list.
pub trait Sink<P> {
    /// A new delivery id.
    fn id(&mut self) -> u64;
    /// Stores `payload` for `target` as delivery `id`: due now, or at `at` (ms) when it is
    /// held.
    fn deliver(&mut self, target: &str, payload: P, id: u64, at: Option<u64>);
    /// Held delivery `id`, for `target`, is not to go out after all.
    fn cancel(&mut self, target: &str, id: u64);
    /// Held delivery `delivery` waits for silence `silence`: an early expiry of the
    /// silence releases it.
    fn held_by(&mut self, delivery: u64, silence: u64) {
        let _ = (delivery, silence);
    }
    /// Held delivery `delivery` is a firing that inhibits name as a target: when it is
    /// due, `check` says whether a source fires by then and keeps it out
    /// ([`Recheck::inhibitor`]).
    fn recheck(&mut self, delivery: u64, check: Recheck) {
        let _ = (delivery, check);
    }
}

/// Where the step's deliveries and verdicts go.
struct Out<'o, P> {
    sink: &'o mut dyn Sink<P>,
    verdicts: Vec<Verdict>,
    /// The deliveries held in this step: what [`one_rule`] gives a [`Recheck`].
    held: Vec<u64>,
}

impl<P> Out<'_, P> {
    /// Delivers `payload` to `target` under a new delivery id, which it returns.
    fn send(&mut self, rule: &str, target: &str, payload: P) -> u64 {
        let delivery = self.sink.id();
        self.sink.deliver(target, payload, delivery, None);
        self.verdict(rule, target, VerdictKind::Delivered { delivery });
        delivery
    }

    /// Stores `payload` for `target`, due at `until`; returns its id.
    fn hold(&mut self, rule: &str, target: &str, payload: P, until: u64) -> u64 {
        let delivery = self.held(target, payload, until);
        self.verdict(rule, target, VerdictKind::Held { delivery, until });
        delivery
    }

    /// Stores `payload` for `target`, due at `until`; returns its id.
    fn held(&mut self, target: &str, payload: P, until: u64) -> u64 {
        let delivery = self.sink.id();
        self.sink.deliver(target, payload, delivery, Some(until));
        self.held.push(delivery);
        delivery
    }

    fn verdict(&mut self, rule: &str, target: &str, kind: VerdictKind) {
        self.verdicts.push(Verdict {
            rule: rule.to_owned(),
            target: target.to_owned(),
            kind,
            key: None,
        });
    }
}

/// The key of an entry kept per alert (`announced`, `held`): `None` without an `@id`.
fn per_alert<'a>(
    kind: &'static str,
    alert: &AlertFacts,
    rule: &'a str,
    clauses: u64,
    target: &'a str,
) -> Option<Key<'a>> {
    let id = alert.id.as_ref()?;
    Some(Key::new(kind, rule, clauses, target, id.as_bytes()))
}

/// Takes the announcement `resolve once` left when `rule` delivered the alert's firing to
/// `target`; whether there was one.
fn take_announced(
    state: &mut dyn State,
    alert: &AlertFacts,
    rule: &str,
    clauses: u64,
    target: &str,
    now: u64,
) -> bool {
    let Some(key) = per_alert("announced", alert, rule, clauses, target) else {
        return false;
    };
    let announced = state.get(&key, now).is_some();
    if announced {
        state.delete(&key);
    }
    announced
}

/// For a resolved alert: when `rule` still holds its firing for `target` (`delay`, `hold
/// during`), the held delivery is cancelled and the resolution dropped with it (verdict
/// `cancelled`); true when it was. A held firing that already went out is forgotten.
fn cancel_held<P>(
    state: &mut dyn State,
    alert: &AlertFacts,
    (rule, clauses, target): (&str, u64, &str),
    now: u64,
    out: &mut Out<'_, P>,
) -> bool {
    let Some(key) = per_alert("held", alert, rule, clauses, target) else {
        return false;
    };
    let Some(Entry::Held { delivery, until }) = state.get(&key, now) else {
        return false;
    };
    state.delete(&key);
    cancel(
        state,
        alert,
        (rule, clauses, target),
        (delivery, until),
        now,
        out,
    )
}

/// For a resolved alert, while silences may hold firings: when a silence still holds the
/// firing `rule` delivers to `target`, the held delivery is cancelled and the resolution
/// dropped with it; true when it was. A firing the silence already released (it ended, or
/// was expired early) is forgotten, and its resolution goes out after it.
fn cancel_silenced<P>(
    state: &mut dyn State,
    alert: &AlertFacts,
    (rule, clauses, target): (&str, u64, &str),
    now: u64,
    out: &mut Out<'_, P>,
) -> bool {
    if !alert.silencing {
        return false;
    }
    let Some(key) = per_alert("silenced", alert, rule, clauses, target) else {
        return false;
    };
    let Some(Entry::Silenced {
        delivery,
        silence,
        until,
    }) = state.get(&key, now)
    else {
        return false;
    };
    state.delete(&key);
    if state.silence(silence).is_none_or(|s| s.expired_early) {
        return false;
    }
    cancel(
        state,
        alert,
        (rule, clauses, target),
        (delivery, until),
        now,
        out,
    )
}

/// Cancels held delivery `delivery`, due at `until`, with the resolution that came for it
/// (verdict `cancelled`), unless it is due or about to be; true when it was cancelled.
fn cancel<P>(
    state: &mut dyn State,
    alert: &AlertFacts,
    (rule, clauses, target): (&str, u64, &str),
    (delivery, until): (u64, u64),
    now: u64,
    out: &mut Out<'_, P>,
) -> bool {
    // Due, or about to be: a worker may be sending it already, and cancelling then would
    // drop the resolution of a firing that went out. Both go, the firing first.
    if now.saturating_add(CANCEL_MARGIN_MS) >= until {
        return false;
    }
    out.sink.cancel(target, delivery);
    // What `resolve once` noted for the firing goes too: it was never said; and a hold
    // noted both for a gate and for a silence goes from both.
    for kind in ["announced", "held", "silenced"] {
        if let Some(key) = per_alert(kind, alert, rule, clauses, target) {
            state.delete(&key);
        }
    }
    out.verdict(rule, target, VerdictKind::Cancelled { of: delivery });
    true
}

/// What holds back every firing delivery of this alert, whatever rule chose it.
struct Gates {
    /// The silence in force that matches it, and its end.
    silenced: Option<(u64, u64)>,
    /// The inhibit that keeps it out, and the `@id` of a firing source.
    inhibited: Option<(String, String)>,
}

/// The silence that holds the alert's firings now, and its end: of the silences the alert
/// matches, those the state says are in force, the one that ends last. `None` for a
/// resolution (silences never hold one back).
fn silenced(state: &mut dyn State, alert: &AlertFacts, now: u64) -> Option<(u64, u64)> {
    if alert.state == AlertState::Resolved {
        return None;
    }
    alert
        .silences
        .iter()
        .filter_map(|&id| Some((id, state.silence(id)?.in_force(now)?)))
        .max_by_key(|&(id, until)| (until, std::cmp::Reverse(id)))
}

/// A firing a silence holds for `rule` and `target`: its delivery, silence and due time,
/// while the silence is in force.
fn silenced_firing(
    state: &mut dyn State,
    alert: &AlertFacts,
    (rule, clauses, target): (&str, u64, &str),
    now: u64,
) -> Option<(u64, u64, u64)> {
    let key = per_alert("silenced", alert, rule, clauses, target)?;
    match state.get(&key, now) {
        Some(Entry::Silenced {
            delivery,
            silence,
            until,
        }) if now < until && state.silence(silence)?.in_force(now).is_some() => {
            Some((delivery, silence, until))
        }
        _ => None,
    }
}

/// A firing `rule` holds for `target`: its delivery and when it is due, unless that passed.
fn held_firing(
    state: &mut dyn State,
    alert: &AlertFacts,
    rule: &str,
    clauses: u64,
    target: &str,
    now: u64,
) -> Option<(u64, u64)> {
    let key = per_alert("held", alert, rule, clauses, target)?;
    match state.get(&key, now) {
        Some(Entry::Held { delivery, until }) if now < until => Some((delivery, until)),
        _ => None,
    }
}

fn one_rule<P: Clone>(
    state: &mut dyn State,
    alert: &AlertFacts,
    choice: RuleChoice<P>,
    gates: &Gates,
    now: u64,
    out: &mut Out<'_, P>,
) {
    let silenced = gates.silenced;
    let RuleChoice {
        rule,
        clauses,
        targets,
        dedup,
        resolve_once,
        throttle,
        gate,
        group,
    } = choice;
    let resolved = alert.state == AlertState::Resolved;
    let state_name = alert.state.as_str();
    // Resolutions through `resolve once` go only where a firing went, exactly once, and
    // neither `dedup` nor `at most` holds them back.
    // Each passing target with the bytes of its `dedup` key, made once for the check and
    // the entry.
    let mut passing: Vec<(String, P, Option<Vec<u8>>)> = Vec::new();
    for (target, payload) in targets {
        let place = (rule.as_str(), clauses, target.as_str());
        // A resolution while its firing is still held: neither goes out.
        let holds = matches!(gate, Some(Gate::Delay { .. } | Gate::Hold { .. }));
        if resolved
            && ((holds && cancel_held(state, alert, place, now, out))
                || cancel_silenced(state, alert, place, now, out))
        {
            continue;
        }
        // A re-sent firing while one is held joins it.
        if !resolved
            && holds
            && let Some((delivery, until)) = held_firing(state, alert, &rule, clauses, &target, now)
        {
            out.verdict(&rule, &target, VerdictKind::Held { delivery, until });
            continue;
        }
        if silenced.is_some()
            && let Some((delivery, silence, until)) = silenced_firing(state, alert, place, now)
        {
            let delivery = Some(delivery);
            let kind = VerdictKind::Silenced {
                silence,
                until,
                delivery,
            };
            out.verdict(&rule, &target, kind);
            continue;
        }
        if resolve_once && resolved {
            if take_announced(state, alert, &rule, clauses, &target, now) {
                // Owed: a mute lets it through; a hold keeps it to the window's end.
                let delivery = match &gate {
                    Some(Gate::Hold {
                        until: Some(until), ..
                    }) => out.hold(&rule, &target, payload, *until),
                    _ => out.send(&rule, &target, payload),
                };
                record_dedup(
                    state,
                    &rule,
                    clauses,
                    &target,
                    dedup.as_ref(),
                    state_name,
                    now,
                    delivery,
                );
            } else {
                out.verdict(&rule, &target, VerdictKind::Unannounced);
            }
            continue;
        }
        let mut dedup_key = None;
        if let Some(DedupIntent {
            key: Some(values),
            window_ms,
        }) = &dedup
        {
            let key = Key::new("dedup", &rule, clauses, &target, values);
            if let Some(Entry::Dedup {
                state: last,
                at,
                delivery,
            }) = state.get(&key, now)
                && last == state_name
            {
                let until = window_ms.map(|w| at.saturating_add(w));
                if until.is_none_or(|u| now < u) {
                    out.verdict(
                        &rule,
                        &target,
                        VerdictKind::Duplicate {
                            of: delivery,
                            at,
                            until,
                        },
                    );
                    continue;
                }
            }
            dedup_key = Some(key.bytes);
        }
        // A group member's inhibition is decided at each flush, not here: it joins.
        if let Some(g) = &group
            && alert.id.is_some()
        {
            // A silenced firing does not join: its re-send after the silence does.
            if !resolved && let Some((silence, until)) = silenced {
                let kind = VerdictKind::Silenced {
                    silence,
                    until,
                    delivery: None,
                };
                out.verdict(&rule, &target, kind);
            } else {
                group::join(state, alert, (&rule, clauses, &target), g, now, out);
            }
            continue;
        }
        // Inhibited: kept out, neither counted by `at most` nor noted by `dedup` or
        // `resolve once` (its resolution is owed nothing).
        if !resolved && let Some((inhibit, by)) = &gates.inhibited {
            let kind = VerdictKind::Inhibited {
                inhibit: inhibit.clone(),
                by: by.clone(),
            };
            out.verdict(&rule, &target, kind);
            continue;
        }
        passing.push((target, payload, dedup_key));
    }
    if passing.is_empty() {
        return;
    }
    // `at most`, counted once per alert that passed `dedup` for at least one target.
    if let Some(t) = &throttle {
        let passed = alert
            .id
            .as_ref()
            .map(|id| Key::new("passed", &rule, clauses, "", id.as_bytes()));
        let owed = resolved && passed.as_ref().is_some_and(|k| state.get(k, now).is_some());
        if owed {
            if let Some(k) = &passed {
                state.delete(k);
            }
        } else {
            let wkey = Key::new("window", &rule, clauses, "", &t.key);
            let mut times = match state.get(&wkey, now) {
                Some(Entry::Window { times }) => times,
                _ => Vec::new(),
            };
            times.retain(|&at| at.saturating_add(t.per_ms) > now);
            if times.len() as u64 >= t.count {
                over_limit(&rule, t, passing, out);
                return;
            }
            times.push(now);
            let expires = now.saturating_add(t.per_ms);
            state.put(&wkey, Entry::Window { times }, expires);
            if !resolved && let Some(k) = &passed {
                state.put(
                    k,
                    Entry::Passed { at: now },
                    now.saturating_add(RETENTION_MS),
                );
            }
        }
    }
    for (target, payload, dedup_key) in passing {
        let delivery = match silence(gated(&gate, resolved, now), silenced) {
            Gated::Now => out.send(&rule, &target, payload),
            Gated::Silenced {
                silence,
                until,
                gate,
            } => {
                let place = (rule.as_str(), clauses, target.as_str());
                let held = (silence, until, gate);
                match hold_silenced(state, alert, place, payload, held, out) {
                    Some(delivery) => delivery,
                    None => continue,
                }
            }
            Gated::Flapping { changes, ms } => {
                let place = (rule.as_str(), clauses, target.as_str());
                match flapping(state, alert, place, payload, (changes, ms), now, out) {
                    Some(delivery) => delivery,
                    None => continue,
                }
            }
            Gated::Muted { window, until } => {
                out.verdict(&rule, &target, VerdictKind::Muted { window, until });
                continue;
            }
            Gated::Until(until) => {
                let delivery = out.hold(&rule, &target, payload, until);
                if !resolved && let Some(key) = per_alert("held", alert, &rule, clauses, &target) {
                    state.put(&key, Entry::Held { delivery, until }, until);
                }
                delivery
            }
        };
        if let Some(bytes) = dedup_key {
            let key = Key {
                bytes,
                kind: "dedup",
                rule: &rule,
                target: &target,
            };
            put_dedup(state, &key, dedup.as_ref(), state_name, now, delivery);
        }
        // Held: inhibition is decided again when it is due.
        if out.held.last() == Some(&delivery) {
            let place = (rule.as_str(), clauses, target.as_str());
            let key = dedup.as_ref().and_then(|d| d.key.as_deref());
            if let Some(check) = Recheck::of(alert, place, key) {
                out.sink.recheck(delivery, check);
            }
        }
        if resolve_once
            && !resolved
            && let Some(key) = per_alert("announced", alert, &rule, clauses, &target)
        {
            state.put(
                &key,
                Entry::Announced { at: now },
                now.saturating_add(RETENTION_MS),
            );
        }
    }
}

/// What a gate does with a delivery that passed, now.
enum Gated {
    /// It goes now.
    Now,
    /// `mute flapping` decides, from what it knows of the alert.
    Flapping { changes: u64, ms: u64 },
    /// It is dropped (`mute during`).
    Muted { window: String, until: u64 },
    /// It waits until then (`delay`, `hold during`).
    Until(u64),
    /// A silence holds it until then (`gate`: the rule's gate held it too, to then or
    /// earlier).
    Silenced {
        silence: u64,
        until: u64,
        gate: bool,
    },
}

/// What a silence in force makes of a gate's answer: a firing that would go, now or later,
/// waits for the silence's end (or the gate's, when later); a muted one stays muted.
fn silence(g: Gated, silenced: Option<(u64, u64)>) -> Gated {
    let Some((silence, end)) = silenced else {
        return g;
    };
    match g {
        Gated::Muted { .. } => g,
        Gated::Until(until) => Gated::Silenced {
            silence,
            until: until.max(end),
            gate: true,
        },
        Gated::Now | Gated::Flapping { .. } | Gated::Silenced { .. } => Gated::Silenced {
            silence,
            until: end,
            gate: false,
        },
    }
}

/// Holds a firing for silence `silence` until `until`, noted per alert so that a re-send
/// joins it and its resolution cancels it; answers the held delivery. When the rule's gate
/// held it too (`gate`), the hold is noted for the gate as well: after the silence ends,
/// the gate's own resolution check still finds it. An alert without `@id` is dropped
/// (`None`): nothing could tell at the end whether it still fires.
fn hold_silenced<P>(
    state: &mut dyn State,
    alert: &AlertFacts,
    (rule, clauses, target): (&str, u64, &str),
    payload: P,
    (silence, until, gate): (u64, u64, bool),
    out: &mut Out<'_, P>,
) -> Option<u64> {
    let Some(key) = per_alert("silenced", alert, rule, clauses, target) else {
        let kind = VerdictKind::Silenced {
            silence,
            until,
            delivery: None,
        };
        out.verdict(rule, target, kind);
        return None;
    };
    let delivery = out.held(target, payload, until);
    out.sink.held_by(delivery, silence);
    let entry = Entry::Silenced {
        delivery,
        silence,
        until,
    };
    state.put(&key, entry, until);
    if gate && let Some(key) = per_alert("held", alert, rule, clauses, target) {
        state.put(&key, Entry::Held { delivery, until }, until);
    }
    let kind = VerdictKind::Silenced {
        silence,
        until,
        delivery: Some(delivery),
    };
    out.verdict(rule, target, kind);
    Some(delivery)
}

fn gated(gate: &Option<Gate>, resolved: bool, now: u64) -> Gated {
    match gate {
        None => Gated::Now,
        // A resolution is never delayed: its firing went out, or was cancelled above.
        Some(Gate::Delay { .. }) if resolved => Gated::Now,
        Some(Gate::Delay { ms }) => Gated::Until(now.saturating_add(*ms)),
        Some(Gate::Hold {
            until: Some(until), ..
        }) => Gated::Until(*until),
        Some(Gate::Mute {
            window,
            until: Some(until),
        }) => Gated::Muted {
            window: window.clone(),
            until: *until,
        },
        Some(Gate::Hold { until: None, .. } | Gate::Mute { until: None, .. }) => Gated::Now,
        Some(Gate::Flapping { changes, ms }) => Gated::Flapping {
            changes: *changes,
            ms: *ms,
        },
    }
}

/// `mute flapping <n> changes in <d>` for one delivery: counts the alert's change of
/// `@state`; once `n` changes fall within `d`, or while a delivery is held for being
/// unstable, the delivery is held until the state has stayed put for `d` (a change cancels
/// the held one and holds the new state; a repeat of the held state joins it). Answers the
/// delivery stored (sent or held), or `None` when it joined one. An alert without `@id`
/// goes at once.
fn flapping<P>(
    state: &mut dyn State,
    alert: &AlertFacts,
    (rule, clauses, target): (&str, u64, &str),
    payload: P,
    (limit, ms): (u64, u64),
    now: u64,
    out: &mut Out<'_, P>,
) -> Option<u64> {
    let Some(key) = per_alert("flap", alert, rule, clauses, target) else {
        return Some(out.send(rule, target, payload));
    };
    let (mut last, mut changes, held) = match state.get(&key, now) {
        Some(Entry::Flap {
            state,
            changes,
            held,
        }) => (state, changes, held),
        _ => (String::new(), Vec::new(), None),
    };
    let name = alert.state.as_str();
    changes.retain(|&t| t.saturating_add(ms) > now);
    let changed = !last.is_empty() && last != name;
    if changed {
        changes.push(now);
    }
    last = name.to_owned();
    let held = held.filter(|&(_, until)| until > now);
    let (delivery, held) = if changes.len() as u64 >= limit || held.is_some() {
        match held {
            Some((delivery, until)) if !changed => {
                out.verdict(rule, target, VerdictKind::Held { delivery, until });
                (None, Some((delivery, until)))
            }
            _ => {
                if let Some((old, _)) = held {
                    out.sink.cancel(target, old);
                }
                let until = now.saturating_add(ms);
                let delivery = out.hold(rule, target, payload, until);
                (Some(delivery), Some((delivery, until)))
            }
        }
    } else {
        (Some(out.send(rule, target, payload)), None)
    };
    let expires = now
        .saturating_add(ms)
        .max(held.map_or(0, |(_, until)| until));
    state.put(
        &key,
        Entry::Flap {
            state: last,
            changes,
            held,
        },
        expires,
    );
    delivery
}

/// The alert is over an `at most` limit: each target it would have gone to is throttled,
/// or the alert goes to the `else` target once instead.
fn over_limit<P: Clone>(
    rule: &str,
    t: &ThrottleIntent<P>,
    passing: Vec<(String, P, Option<Vec<u8>>)>,
    out: &mut Out<'_, P>,
) {
    match &t.else_post {
        Some((to, payload)) => {
            let delivery = out.sink.id();
            out.sink.deliver(to, payload.clone(), delivery, None);
            for (target, ..) in passing {
                let kind = VerdictKind::Diverted {
                    to: to.clone(),
                    delivery,
                };
                out.verdict(rule, &target, kind);
            }
        }
        None => {
            for (target, ..) in passing {
                let kind = VerdictKind::Throttled {
                    limit: t.count,
                    per_ms: t.per_ms,
                };
                out.verdict(rule, &target, kind);
            }
        }
    }
}

/// Notes a delivery through a `dedup` key: what its duplicates are measured against.
#[allow(clippy::too_many_arguments)]
fn record_dedup(
    state: &mut dyn State,
    rule: &str,
    clauses: u64,
    target: &str,
    dedup: Option<&DedupIntent>,
    state_name: &str,
    now: u64,
    delivery: u64,
) {
    let Some(DedupIntent {
        key: Some(values), ..
    }) = dedup
    else {
        return;
    };
    let key = Key::new("dedup", rule, clauses, target, values);
    put_dedup(state, &key, dedup, state_name, now, delivery);
}

/// Notes `delivery` under the `dedup` key `key`, until the window ends.
fn put_dedup(
    state: &mut dyn State,
    key: &Key<'_>,
    dedup: Option<&DedupIntent>,
    state_name: &str,
    now: u64,
    delivery: u64,
) {
    let entry = Entry::Dedup {
        state: state_name.to_owned(),
        at: now,
        delivery,
    };
    let window_ms = dedup.and_then(|d| d.window_ms);
    let expires = now.saturating_add(window_ms.unwrap_or(RETENTION_MS));
    state.put(key, entry, expires);
}

/// State in a map: for `test` blocks, explain, the in-memory store and the step's tests.
#[derive(Clone, Debug, Default)]
pub struct MemoryState {
    /// By the key's bytes.
    entries: BTreeMap<Vec<u8>, Held>,
    /// The silences the step may ask about, by id.
    silences: BTreeMap<u64, SilenceSpan>,
}

/// One entry of a [`MemoryState`], with what a listing shows of its key.
#[derive(Clone, Debug)]
struct Held {
    entry: Entry,
    expires: u64,
    kind: &'static str,
    rule: String,
    target: String,
}

impl MemoryState {
    /// Up to `limit` entries, for an operator.
    pub fn list(&self, limit: usize) -> Vec<Listed> {
        self.entries
            .values()
            .take(limit)
            .map(|h| Listed {
                rule: h.rule.clone(),
                kind: h.kind.to_owned(),
                target: h.target.clone(),
                expires: h.expires,
                entry: h.entry.clone(),
            })
            .collect()
    }

    /// How many entries are held (expired ones included until touched or collected).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Notes silence `id` (new, or changed by an early expiry) for the step to ask about.
    pub fn set_silence(&mut self, id: u64, span: SilenceSpan) {
        self.silences.insert(id, span);
    }

    /// Forgets silence `id` (history past [`MAX_SILENCES`]).
    pub fn forget_silence(&mut self, id: u64) {
        self.silences.remove(&id);
    }

    /// Forgets every entry that expired before `now`.
    pub fn collect(&mut self, now: u64) {
        self.entries.retain(|_, h| h.expires > now);
    }

    /// Keeps at most `max` entries: past it, forgets the tenth closest to expiring (at
    /// least enough to get back under `max`), so that a full memory is not sorted again
    /// for every new entry. Returns how many it forgot.
    pub fn bound(&mut self, max: usize) -> usize {
        if self.entries.len() <= max {
            return 0;
        }
        let forget = (self.entries.len() - max).max(self.entries.len() / 10);
        let mut by_expiry: Vec<(u64, Vec<u8>)> = self
            .entries
            .iter()
            .map(|(k, h)| (h.expires, k.clone()))
            .collect();
        let cut = forget.min(by_expiry.len());
        if cut < by_expiry.len() {
            by_expiry.select_nth_unstable_by_key(cut, |(e, _)| *e);
        }
        for (_, k) in by_expiry.into_iter().take(cut) {
            self.entries.remove(&k);
        }
        cut
    }
}

impl State for MemoryState {
    fn peek(&mut self, key: &Key<'_>, now: u64) -> Option<&Entry> {
        if self
            .entries
            .get(&key.bytes)
            .is_some_and(|h| h.expires <= now)
        {
            self.entries.remove(&key.bytes);
        }
        self.entries.get(&key.bytes).map(|h| &h.entry)
    }

    fn put(&mut self, key: &Key<'_>, entry: Entry, expires: u64) {
        self.entries.insert(
            key.bytes.clone(),
            Held {
                entry,
                expires,
                kind: key.kind,
                rule: key.rule.to_owned(),
                target: key.target.to_owned(),
            },
        );
    }

    fn take(&mut self, key: &Key<'_>, now: u64) -> Option<Entry> {
        self.entries
            .remove(&key.bytes)
            .filter(|h| h.expires > now)
            .map(|h| h.entry)
    }

    fn delete(&mut self, key: &Key<'_>) {
        self.entries.remove(&key.bytes);
    }

    fn silence(&mut self, id: u64) -> Option<SilenceSpan> {
        self.silences.get(&id).copied()
    }

    fn due_groups(&mut self, now: u64, limit: usize) -> Vec<Group> {
        let entries = self.entries.values().map(|h| (&h.entry, h.expires));
        group::due_among(entries, now, limit)
    }
}

impl MemoryState {
    /// When the next group is due to be flushed, if any.
    pub fn next_group_flush(&self) -> Option<u64> {
        self.entries
            .values()
            .filter_map(|h| match &h.entry {
                Entry::Group(g) => Some(g.next_flush),
                _ => None,
            })
            .min()
    }
}

#[cfg(test)]
#[path = "step_test.rs"]
mod tests;
