//! `inhibit`: which alerts fire as sources, remembered by `@id` under the inhibit's name
//! and `matching` values, and whether a target has a firing source. Part of the step
//! (`state::step`), on the same [`State`].

use serde::{Deserialize, Serialize};

use super::{AlertFacts, AlertState, Entry, Key, State};

/// What one `inhibit` says about an alert.
#[derive(Clone, Debug)]
pub struct InhibitFact {
    /// The inhibit's name.
    pub inhibit: String,
    /// The canonical JSON of the alert's `matching` values; `None` when a field is
    /// missing (a missing field equals nothing: the alert neither inhibits nor is
    /// inhibited through this declaration).
    pub key: Option<Vec<u8>>,
    /// The target condition matches: a firing may be kept out.
    pub target: bool,
    /// The source condition matches: firing, it keeps targets out.
    pub source: bool,
}

/// How long a firing source is remembered without a re-send: a day. A source is forgotten
/// at its resolution, or after a day without news (a sender that stopped sending does not
/// keep its targets quiet for ever).
pub const INHIBIT_SOURCE_MS: u64 = 24 * 3_600_000;

/// The most firing sources remembered under one inhibit and key: past it, the one seen
/// longest ago is forgotten (one is enough to inhibit).
pub const MAX_INHIBIT_SOURCES: usize = 64;

/// The key under which an inhibit's firing sources are kept, for one `matching` key.
fn inhibitor_key<'a>(inhibit: &'a str, key: &[u8]) -> Key<'a> {
    Key::new("inhibitor", inhibit, 0, "", key)
}

/// A firing source of inhibit `inhibit` under `key`, other than alert `id`, at `now`.
fn firing_source(
    state: &mut dyn State,
    inhibit: &str,
    key: &[u8],
    id: Option<&str>,
    now: u64,
) -> Option<String> {
    match state.get(&inhibitor_key(inhibit, key), now) {
        Some(Entry::Inhibitor { sources }) => sources
            .iter()
            .find(|(s, until)| Some(s.as_str()) != id && *until > now)
            .map(|(s, _)| s.clone()),
        _ => None,
    }
}

/// Notes the alert as a firing source of each inhibit whose source condition it matches
/// (a resolution, or a firing alert that no longer matches, forgets it). An alert without
/// `@id` is not noted: its resolution could not be told apart.
pub(super) fn note_sources(state: &mut dyn State, alert: &AlertFacts, now: u64) {
    let Some(id) = alert.id.as_deref() else {
        return;
    };
    for f in &alert.inhibits {
        let Some(values) = &f.key else { continue };
        let key = inhibitor_key(&f.inhibit, values);
        let mut sources = match state.get(&key, now) {
            Some(Entry::Inhibitor { sources }) => sources,
            _ => Vec::new(),
        };
        let before = sources.len();
        sources.retain(|(s, until)| s != id && *until > now);
        let firing = f.source && alert.state != AlertState::Resolved;
        if firing {
            sources.push((id.to_owned(), now.saturating_add(INHIBIT_SOURCE_MS)));
            if sources.len() > MAX_INHIBIT_SOURCES {
                sources.remove(0);
            }
        } else if sources.len() == before {
            continue;
        }
        match sources.iter().map(|(_, until)| *until).max() {
            Some(expires) => state.put(&key, Entry::Inhibitor { sources }, expires),
            None => state.delete(&key),
        }
    }
}

/// The inhibit that keeps this alert's firings out, and a source that fires for it: the
/// first inhibit whose target condition the alert matches and under whose key another
/// alert is firing. `None` for a resolution (never inhibited).
pub(super) fn inhibited_by(
    state: &mut dyn State,
    alert: &AlertFacts,
    now: u64,
) -> Option<(String, String)> {
    if alert.state == AlertState::Resolved {
        return None;
    }
    let id = alert.id.as_deref();
    alert.inhibits.iter().filter(|f| f.target).find_map(|f| {
        let by = firing_source(state, &f.inhibit, f.key.as_ref()?, id, now)?;
        Some((f.inhibit.clone(), by))
    })
}

/// The inhibits whose target condition the alert matches, each with the alert's `matching`
/// key (canonical JSON): what is checked later, at a group's flush or a held firing's due
/// time. An inhibit whose `matching` field the alert lacks is left out (it equals nothing).
pub(super) fn target_keys(alert: &AlertFacts) -> Vec<(String, String)> {
    alert
        .inhibits
        .iter()
        .filter(|f| f.target)
        .filter_map(|f| {
            let key = String::from_utf8(f.key.clone()?).ok()?;
            Some((f.inhibit.clone(), key))
        })
        .collect()
}

/// Of `keys` ([`target_keys`] of alert `id`), the inhibit under which a source other than
/// the alert fires at `now`, and that source's `@id`.
pub(super) fn inhibitor_among(
    state: &mut dyn State,
    keys: &[(String, String)],
    id: &str,
    now: u64,
) -> Option<(String, String)> {
    keys.iter().find_map(|(inhibit, key)| {
        let by = firing_source(state, inhibit, key.as_bytes(), Some(id), now)?;
        Some((inhibit.clone(), by))
    })
}

/// What a firing held for later (by `delay`, `hold during`, `mute flapping` or a silence)
/// checks again when it is due: the inhibits whose target condition it matched when it
/// came, with its `matching` values. Inhibition is decided when a delivery would be made,
/// so a source that fires by then keeps the held firing out; and then what the step noted
/// for the firing ([`Recheck::forget`]) is undone, as for a firing kept out on arrival.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recheck {
    /// The rule that held it (what a suppression is counted under).
    pub rule: String,
    /// The rule's clause fingerprint: with the rule and target, where its notes are kept.
    pub clauses: u64,
    /// The target it is held for.
    pub target: String,
    /// The alert's `@id`: an alert is never its own source.
    pub alert: String,
    /// The `dedup` key the firing was noted under, if the rule has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<Vec<u8>>,
    /// Each inhibit's name, and the alert's `matching` key under it (canonical JSON).
    pub inhibits: Vec<(String, String)>,
}

impl Recheck {
    /// What a firing of `alert` held at `place` must check when it is due; `None` for a
    /// resolution (never inhibited), an alert without `@id` (held alerts always have one)
    /// or one that no inhibit names as a target.
    pub(super) fn of(
        alert: &AlertFacts,
        (rule, clauses, target): (&str, u64, &str),
        dedup: Option<&[u8]>,
    ) -> Option<Recheck> {
        if alert.state == AlertState::Resolved || !alert.inhibits.iter().any(|f| f.target) {
            return None;
        }
        let id = alert.id.as_ref()?;
        let inhibits = target_keys(alert);
        (!inhibits.is_empty()).then(|| Recheck {
            rule: rule.to_owned(),
            clauses,
            target: target.to_owned(),
            alert: id.clone(),
            dedup: dedup.map(<[u8]>::to_vec),
            inhibits,
        })
    }

    /// The inhibit that keeps the held firing out at `now`, and the `@id` of a source
    /// firing for it; `None`: it goes.
    pub fn inhibitor(&self, state: &mut dyn State, now: u64) -> Option<(String, String)> {
        inhibitor_among(state, &self.inhibits, &self.alert, now)
    }

    /// Held delivery `delivery` was kept out when due: what the step noted for it goes, as
    /// for a firing kept out on arrival. `resolve once` owes its resolution nothing, and a
    /// `dedup` that measured re-sends against it no longer does (the next re-send, once
    /// the source is over, goes out).
    pub fn forget(&self, state: &mut dyn State, delivery: u64, now: u64) {
        let (rule, clauses, target) = (self.rule.as_str(), self.clauses, self.target.as_str());
        state.delete(&Key::new(
            "announced",
            rule,
            clauses,
            target,
            self.alert.as_bytes(),
        ));
        if let Some(values) = &self.dedup {
            let key = Key::new("dedup", rule, clauses, target, values);
            if let Some(Entry::Dedup { delivery: of, .. }) = state.get(&key, now)
                && of == delivery
            {
                state.delete(&key);
            }
        }
    }
}
