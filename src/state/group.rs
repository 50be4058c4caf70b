//! `group by <paths> wait <d> every <d> repeat <d>`: Alertmanager's grouping, durable.
//!
//! An alert a grouped rule chooses joins its group (per rule, target and `by` values) as a
//! member; the group's notifications are made by [`flush`], at the group's flush times: the
//! first `wait` after the group was made, then every `every`. A flush notifies when the
//! group changed since the last notification (a new firing member, or a member that
//! resolved after it was notified firing), or when `repeat` passed since it; resolved
//! members leave the group after a flush, and an empty group ends. Everything a flush
//! needs lives in the group's entry, so a restart flushes on time.
//!
//! Owns: the group's lifecycle and when it notifies. Never: builds the notification's body
//! (the caller renders a [`GroupNote`]), or reads a clock.

use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use super::{AlertFacts, AlertState, Entry, Key, Out, State, VerdictKind};

/// How long a firing member is kept without news: a day. A member not re-sent for that
/// long counts as resolved at the next flush (as Alertmanager resolves an alert whose
/// `endsAt` passed).
pub const MEMBER_SILENCE_MS: u64 = 24 * 3_600_000;

/// How stale a member's news may get before a re-send that changes nothing is written
/// (to move its [`MEMBER_SILENCE_MS`] on): an hour. Re-sends within it cost a read.
pub const MEMBER_REFRESH_MS: u64 = 3_600_000;

/// The most members a group keeps: later alerts are counted in `truncatedAlerts`.
pub const MAX_GROUP_MEMBERS: usize = 1_000;

/// The most groups one flush notifies; the rest are due at once in the next.
pub const MAX_FLUSH_GROUPS: usize = 1_000;

/// A `group` clause, keyed for one alert.
#[derive(Clone, Debug)]
pub struct GroupIntent {
    /// The canonical JSON of the `by` values: the group's key.
    pub key: String,
    /// The group's labels as a JSON object (`{"alertname": "HighCPU"}`): `groupLabels`.
    pub labels: String,
    /// The alert as a member of a notification (Alertmanager's alert object), as JSON.
    pub member: String,
    /// The alert's `@name`, for tests (`expect group pager ["HighCPU"]`).
    pub name: String,
    /// How long a new group waits before its first notification (ms).
    pub wait_ms: u64,
    /// At most one notification per this long (ms).
    pub every_ms: u64,
    /// A reminder after this long without a change (ms; a multiple of `every`).
    pub repeat_ms: u64,
}

/// One alert of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its `@id`.
    pub id: String,
    /// Its `@name`.
    pub name: String,
    /// Firing (else resolved).
    pub firing: bool,
    /// The alert as a member of a notification, as JSON.
    pub data: String,
    /// When a firing member counts as resolved without news (ms).
    pub until: u64,
    /// When it joined, or fired again after it resolved (ms): its `startsAt` when the
    /// sender gave none.
    #[serde(default)]
    pub since: u64,
    /// The inhibits whose target it is, with its `matching` key: at each flush, a member
    /// a firing source inhibits is left out of the notification.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inhibits: Vec<(String, String)>,
}

/// What the last notification of a group said: which members fired and which resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notified {
    /// The `@id`s it announced firing.
    pub firing: Vec<String>,
    /// The `@id`s it announced resolved.
    pub resolved: Vec<String>,
    /// When (ms).
    pub at: u64,
}

/// A group, as the state keeps it: all a flush needs, without the alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The rule's name.
    pub rule: String,
    /// The rule's clause fingerprint.
    pub clauses: u64,
    /// The target notified.
    pub target: String,
    /// The canonical JSON of the `by` values.
    pub key: String,
    /// `groupLabels`, a JSON object.
    pub labels: String,
    /// At most one notification per this long (ms).
    pub every_ms: u64,
    /// A reminder after this long without a change (ms).
    pub repeat_ms: u64,
    /// The alerts of the group, in the order they joined.
    pub members: Vec<Member>,
    /// Alerts left out because the group was full.
    pub truncated: u64,
    /// The next flush (ms).
    pub next_flush: u64,
    /// The last notification, if any.
    pub notified: Option<Notified>,
}

impl Group {
    fn state_key(&self) -> Key<'_> {
        group_key(&self.rule, self.clauses, &self.target, &self.key)
    }

    /// Until when the entry is kept: past its next flush, by the retention.
    fn expires(&self) -> u64 {
        self.next_flush.saturating_add(super::RETENTION_MS)
    }
}

/// One notification a flush makes, for the caller to render: the group's identity and
/// the members it carries.
#[derive(Clone, Debug)]
pub struct GroupNote<'g> {
    /// The rule's name.
    pub rule: &'g str,
    /// The target notified.
    pub target: &'g str,
    /// The canonical JSON of the `by` values.
    pub key: &'g str,
    /// `groupLabels`, a JSON object.
    pub labels: &'g str,
    /// The firing members.
    pub firing: Vec<&'g Member>,
    /// The resolved members it announces (each was announced firing before).
    pub resolved: Vec<&'g Member>,
    /// Alerts left out because the group was full.
    pub truncated: u64,
}

/// What an alert does to its group, decided on the group as stored (borrowed, so that
/// the cases that leave it as it is never copy its members).
enum Join {
    /// Nothing changes: a re-send with nothing new (Prometheus every minute, while the
    /// member's news is fresh enough), or a resolution of an alert the group does not hold.
    Answer(VerdictKind),
    /// A full group only counts the alert, until the group's expiry.
    Count(VerdictKind, u64),
    /// Member `i` changes.
    Update(usize),
    /// The alert joins the group, which is made if there is none.
    Add,
}

/// One alert joins its groups (a rule's targets); answers the verdict for each.
pub(super) fn join<P>(
    state: &mut dyn State,
    alert: &AlertFacts,
    (rule, clauses, target): (&str, u64, &str),
    g: &GroupIntent,
    now: u64,
    out: &mut Out<'_, P>,
) {
    let Some(id) = alert.id.as_deref() else {
        return;
    };
    let key = group_key(rule, clauses, target, &g.key);
    let firing = alert.state != AlertState::Resolved;
    let inhibits = super::inhibit::target_keys(alert);
    let until = now.saturating_add(MEMBER_SILENCE_MS);
    let stored = match state.peek(&key, now) {
        Some(Entry::Group(group)) => Some(&**group),
        _ => None,
    };
    let join = match stored.map(|group| (group, group.members.iter().position(|m| m.id == id))) {
        Some((group, Some(i))) => match group.members.get(i) {
            Some(m)
                if m.firing == firing
                    && m.data == g.member
                    && m.inhibits == inhibits
                    && m.until.saturating_add(MEMBER_REFRESH_MS) >= until =>
            {
                Join::Answer(grouped(g, group))
            }
            _ => Join::Update(i),
        },
        _ if !firing => Join::Answer(VerdictKind::Unannounced),
        // A full group: the alert is only counted, in an entry of its own, so that a flood
        // into a full group does not rewrite the group for each alert.
        Some((group, None)) if group.members.len() >= MAX_GROUP_MEMBERS => {
            Join::Count(grouped(g, group), group.expires())
        }
        _ => Join::Add,
    };
    let mut group = match join {
        Join::Answer(kind) => {
            out.verdict(rule, target, kind);
            return;
        }
        Join::Count(kind, expires) => {
            count_truncated(state, (rule, clauses, target), g, expires, now);
            out.verdict(rule, target, kind);
            return;
        }
        Join::Update(_) | Join::Add => match state.take(&key, now) {
            Some(Entry::Group(group)) => *group,
            _ => Group {
                rule: rule.to_owned(),
                clauses,
                target: target.to_owned(),
                key: g.key.clone(),
                labels: g.labels.clone(),
                every_ms: g.every_ms,
                repeat_ms: g.repeat_ms,
                members: Vec::new(),
                truncated: 0,
                next_flush: now.saturating_add(g.wait_ms),
                notified: None,
            },
        },
    };
    match join {
        Join::Update(i) => {
            if let Some(m) = group.members.get_mut(i) {
                if firing && !m.firing {
                    m.since = now;
                }
                m.firing = firing;
                m.data = g.member.clone();
                m.until = until;
                m.inhibits = inhibits;
            }
        }
        _ => group.members.push(Member {
            id: id.to_owned(),
            name: g.name.clone(),
            firing,
            data: g.member.clone(),
            until,
            since: now,
            inhibits,
        }),
    }
    let kind = grouped(g, &group);
    let expires = group.expires();
    state.put(&key, Entry::Group(Box::new(group)), expires);
    out.verdict(rule, target, kind);
}

/// The state key of the group of `rule`'s clause `clauses`, `target` and `by` values
/// `key`.
fn group_key<'a>(rule: &'a str, clauses: u64, target: &'a str, key: &str) -> Key<'a> {
    Key::new("group", rule, clauses, target, key.as_bytes())
}

/// Counts one alert a full group left out, in an entry of its own (until `expires`).
fn count_truncated(
    state: &mut dyn State,
    (rule, clauses, target): (&str, u64, &str),
    g: &GroupIntent,
    expires: u64,
    now: u64,
) {
    let count = Key::new("group-truncated", rule, clauses, target, g.key.as_bytes());
    let n = match state.peek(&count, now) {
        Some(Entry::Truncated { count }) => *count,
        _ => 0,
    };
    state.put(&count, Entry::Truncated { count: n + 1 }, expires);
}

/// The verdict of an alert in `group`.
fn grouped(g: &GroupIntent, group: &Group) -> VerdictKind {
    VerdictKind::Grouped {
        group: g.labels.clone(),
        flush: group.next_flush,
        members: group.members.len() as u64,
    }
}

/// Flushes every group due by `now` (at most [`MAX_FLUSH_GROUPS`]): each that needs it is
/// notified through `render` and `sink`, resolved members leave, empty groups end, and the
/// others are due again `every` later. Answers how many notifications were made.
pub fn flush<P>(
    state: &mut dyn State,
    now: u64,
    sink: &mut dyn super::Sink<P>,
    render: &mut dyn FnMut(&GroupNote<'_>) -> Option<P>,
) -> usize {
    let mut sent = 0;
    for mut group in state.due_groups(now, MAX_FLUSH_GROUPS) {
        let count = Key::new(
            "group-truncated",
            &group.rule,
            group.clauses,
            &group.target,
            group.key.as_bytes(),
        );
        if let Some(Entry::Truncated { count: n }) = state.get(&count, now) {
            group.truncated = group.truncated.saturating_add(n);
            state.delete(&count);
        }
        // Its scheduled time: reminders are counted on the schedule; members' news at `now`
        // (later than `at` after a restart).
        let at = group.next_flush;
        // A firing member without news for a day counts as resolved.
        for m in &mut group.members {
            if m.firing && m.until <= now {
                m.firing = false;
            }
        }
        // Which members this flush announces, by `@id`, in sets: a group holds up to
        // MAX_GROUP_MEMBERS, and a search of a list per member was quadratic.
        let (firing, resolved, needed) = {
            // A firing member a firing source inhibits now is left out of this notification
            // (it stays a member: once the source resolves, it is new to the next one).
            let inhibited: FxHashSet<&str> = group
                .members
                .iter()
                .filter(|m| m.firing)
                .filter(|m| {
                    super::inhibit::inhibitor_among(state, &m.inhibits, &m.id, now).is_some()
                })
                .map(|m| m.id.as_str())
                .collect();
            let firing: Vec<String> = group
                .members
                .iter()
                .filter(|m| m.firing && !inhibited.contains(m.id.as_str()))
                .map(|m| m.id.clone())
                .collect();
            let last = group.notified.as_ref();
            let was_firing: FxHashSet<&str> = last
                .map(|n| n.firing.iter().map(String::as_str).collect())
                .unwrap_or_default();
            // Resolutions go only for members a notification announced firing.
            let resolved: Vec<String> = group
                .members
                .iter()
                .filter(|m| !m.firing && was_firing.contains(m.id.as_str()))
                .map(|m| m.id.clone())
                .collect();
            let needed = match last {
                None => !firing.is_empty(),
                Some(n) => {
                    firing.iter().any(|id| !was_firing.contains(id.as_str()))
                        || !resolved.is_empty()
                        // On the schedule, so that a clock that wakes a little late never
                        // moves a reminder to the flush after.
                        || (!firing.is_empty() && n.at.saturating_add(group.repeat_ms) <= at)
                }
            };
            (firing, resolved, needed)
        };
        if needed {
            // The members announced, in the order they joined: `firing` and `resolved` are.
            let announced = |ids: &[String]| {
                let mut next = 0;
                group
                    .members
                    .iter()
                    .filter(|m| {
                        let hit = ids.get(next) == Some(&m.id);
                        next += usize::from(hit);
                        hit
                    })
                    .collect::<Vec<&Member>>()
            };
            let note = GroupNote {
                rule: &group.rule,
                target: &group.target,
                key: &group.key,
                labels: &group.labels,
                firing: announced(&firing),
                resolved: announced(&resolved),
                truncated: group.truncated,
            };
            if let Some(payload) = render(&note) {
                let id = sink.id();
                sink.deliver(&group.target, payload, id, None);
                sent += 1;
            }
            group.notified = Some(Notified {
                firing,
                resolved,
                at,
            });
        }
        group.members.retain(|m| m.firing);
        group.truncated = 0;
        if group.members.is_empty() {
            state.delete(&group.state_key());
            continue;
        }
        // On schedule: the first flush time after now (a restart may have missed some).
        let every = group.every_ms.max(1);
        let behind = now.saturating_sub(at) / every + 1;
        group.next_flush = at.saturating_add(behind.saturating_mul(every));
        let (rule, target) = (group.rule.clone(), group.target.clone());
        let key = group_key(&rule, group.clauses, &target, &group.key);
        let expires = group.expires();
        state.put(&key, Entry::Group(Box::new(group)), expires);
    }
    sent
}

/// The groups among `entries` (each with when it expires) due by `now`, earliest first, at
/// most `limit`: what every store's [`State::due_groups`] answers.
pub fn due_among<'e>(
    entries: impl Iterator<Item = (&'e Entry, u64)>,
    now: u64,
    limit: usize,
) -> Vec<Group> {
    let mut due: Vec<Group> = entries
        .filter(|(_, expires)| *expires > now)
        .filter_map(|(entry, _)| match entry {
            Entry::Group(g) if g.next_flush <= now => Some(Group::clone(g)),
            _ => None,
        })
        .collect();
    due.sort_by_key(|g| g.next_flush);
    due.truncate(limit);
    due
}

#[cfg(test)]
#[path = "group_test.rs"]
mod tests;
