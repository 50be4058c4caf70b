//! `inhibit`: which alerts fire as sources, remembered by `@id` under the inhibit's name
//! and `matching` values, and whether a target has a firing source. Part of the step
//! (`state::step`), on the same [`State`].

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
pub(super) fn firing_source(
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
            Some(expires) => state.put(&key, &Entry::Inhibitor { sources }, expires),
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
