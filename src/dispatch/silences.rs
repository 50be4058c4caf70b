//! The silences a router matches alerts against, and the operator's way to add and expire
//! them: each is stored first (durable before the answer), then put in the book that
//! submits read.
//!
//! Owns: checking a new silence (its condition, its times, who and why) and which
//! silences an alert is matched against. Never: decides what a silence does to a delivery
//! (the step does, asking the store whether the silence is still in force).

use crate::alert::Alert;
use crate::engine::SilenceMatcher;
use crate::state::{MAX_SILENCE_MS, Silence, SilenceStatus};

/// The longest `created_by` and `comment`, in bytes.
pub const MAX_SILENCE_TEXT: usize = 4096;

/// A silence as an operator asks for it (`POST /api/silences`).
#[derive(Clone, Debug)]
pub struct NewSilence {
    /// The condition, in the rule language.
    pub condition: String,
    /// When it starts (ms since the epoch); a moment in the past means now.
    pub starts: Option<u64>,
    /// When it ends (ms since the epoch).
    pub ends: u64,
    /// Who asks for it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

/// Why a silence was not added.
#[derive(Debug)]
#[non_exhaustive]
pub enum SilenceError {
    /// The condition has errors; the diagnostics point into it.
    Condition(crate::Diagnostics),
    /// Something else is wrong with it, said in words (`ends` before `starts`).
    Invalid(String),
    /// It could not be stored.
    Store(super::DispatchError),
}

impl std::fmt::Display for SilenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SilenceError::Condition(d) => write!(
                f,
                "the condition has {} error(s):\n{}",
                d.error_count(),
                d.render(crate::Format::Text)
            ),
            SilenceError::Invalid(why) => f.write_str(why),
            SilenceError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SilenceError {}

/// Checks a new silence at `now` and makes the record to store (id 0 until stored).
pub(crate) fn check(new: NewSilence, now: u64) -> Result<(Silence, SilenceMatcher), SilenceError> {
    let matcher = SilenceMatcher::compile(&new.condition).map_err(SilenceError::Condition)?;
    let starts = new.starts.unwrap_or(now).max(now);
    let invalid = |why: String| Err(SilenceError::Invalid(why));
    if new.ends <= starts {
        return invalid(String::from(
            "the silence ends before it starts (or has already ended); give `ends` after `starts` and after now, or `for` (such as \"2h\")",
        ));
    }
    if new.ends - starts > MAX_SILENCE_MS {
        return invalid(format!(
            "a silence lasts at most {}; for longer, write a rule that drops these alerts, reviewed in a file",
            crate::syntax::ast::millis(MAX_SILENCE_MS)
        ));
    }
    for (field, text) in [("created_by", &new.created_by), ("comment", &new.comment)] {
        if text.trim().is_empty() {
            return invalid(format!(
                "`{field}` is empty; say who silences and why, for whoever finds the silence later"
            ));
        }
        if text.len() > MAX_SILENCE_TEXT {
            return invalid(format!(
                "`{field}` is {} bytes; at most {MAX_SILENCE_TEXT} are allowed",
                text.len()
            ));
        }
    }
    let silence = Silence {
        id: 0,
        condition: new.condition,
        starts,
        ends: new.ends,
        created_by: new.created_by,
        comment: new.comment,
        created_at: now,
        expired_at: None,
    };
    Ok((silence, matcher))
}

/// Every silence the router knows, by id, with its matcher while it can still come into
/// force (an ended silence never does, so history costs no compiled condition).
#[derive(Default)]
pub(crate) struct Book {
    entries: Vec<(Silence, Option<SilenceMatcher>)>,
}

impl Book {
    /// The book of stored silences, at `now`. A condition that no longer compiles (written
    /// by another version) is left without a matcher, with a warning: it matches nothing.
    pub(crate) fn load(list: Vec<Silence>, now: u64) -> Book {
        let mut entries: Vec<(Silence, Option<SilenceMatcher>)> = list
            .into_iter()
            .map(|s| {
                if s.status(now) == SilenceStatus::Expired {
                    return (s, None);
                }
                match SilenceMatcher::compile(&s.condition) {
                    Ok(m) => (s, Some(m)),
                    Err(d) => {
                        tracing::warn!(
                            silence = s.id,
                            errors = %d.render(crate::Format::Text),
                            "a stored silence's condition does not compile; it matches nothing"
                        );
                        (s, None)
                    }
                }
            })
            .collect();
        entries.sort_by_key(|(s, _)| s.id);
        Book { entries }
    }

    /// The book with `silence` put in (new, or replacing the one with its id: the matcher
    /// of the one it replaces is kept when `matcher` is `None`, until it has ended), and
    /// without what the stores forget at `now` ([`crate::state::silences_to_forget`]).
    pub(crate) fn with(&self, silence: Silence, matcher: Option<SilenceMatcher>, now: u64) -> Book {
        let mut matcher = matcher;
        let mut entries: Vec<(Silence, Option<SilenceMatcher>)> =
            Vec::with_capacity(self.entries.len() + 1);
        for (s, m) in &self.entries {
            if s.id == silence.id {
                matcher = matcher.or_else(|| m.clone());
            } else {
                entries.push((s.clone(), m.clone()));
            }
        }
        if silence.status(now) == SilenceStatus::Expired {
            matcher = None;
        }
        entries.push((silence, matcher));
        entries.sort_by_key(|(s, _)| s.id);
        let gone = crate::state::silences_to_forget(entries.iter().map(|(s, _)| s), now);
        entries.retain(|(s, _)| !gone.contains(&s.id));
        Book { entries }
    }

    /// The silences, by id.
    pub(crate) fn list(&self) -> impl Iterator<Item = &Silence> {
        self.entries.iter().map(|(s, _)| s)
    }

    /// What the step needs to know of the silences for `alert`, received at `now`: the
    /// ids of those in force that it matches, and whether any is in force (a resolution
    /// then looks for a firing one holds).
    pub(crate) fn facts(&self, alert: &Alert, now: u64) -> (Vec<u64>, bool) {
        let mut ids = Vec::new();
        let mut silencing = false;
        for (s, m) in &self.entries {
            if s.status(now) != SilenceStatus::Active {
                continue;
            }
            silencing = true;
            if m.as_ref().is_some_and(|m| m.matches(alert)) {
                ids.push(s.id);
            }
        }
        (ids, silencing)
    }
}
