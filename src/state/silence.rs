//! A silence: an operator's "not now" for the alerts a condition matches, from `starts` to
//! `ends`. Data only: the engine matches an alert against the condition, the step holds the
//! firings it matches, a store keeps the record. docs/state.md ("Silences") is the contract.

use serde::{Deserialize, Serialize};

/// The most silences a router keeps, in force and ended together: past it, the oldest
/// ended ones are forgotten first (history is for reading, never for routing).
pub const MAX_SILENCES: usize = 10_000;

/// The longest a silence may last, like the longest hold: 35 days. A longer "forever"
/// silence is a rule (`drop`), reviewed in a file.
pub const MAX_SILENCE_MS: u64 = 35 * 24 * 3_600_000;

/// One silence, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Its id, given by the store (from 1).
    pub id: u64,
    /// The condition, in the rule language (`labels.team == "db"`).
    pub condition: String,
    /// When it starts (ms since the epoch).
    pub starts: u64,
    /// When it ends (ms); an early expiry moves it to the moment of the expiry.
    pub ends: u64,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// When it was made (ms).
    pub created_at: u64,
    /// When it was expired early (`DELETE /api/silences/{id}`), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<u64>,
}

/// Which silences to forget so that at most [`MAX_SILENCES`] remain at `now`: those that
/// ended longest ago (history; one in force or pending is never forgotten). The one policy
/// every store and the router's list apply.
pub fn to_forget<'s>(all: impl IntoIterator<Item = &'s Silence>, now: u64) -> Vec<u64> {
    let all: Vec<&Silence> = all.into_iter().collect();
    let over = all.len().saturating_sub(MAX_SILENCES);
    if over == 0 {
        return Vec::new();
    }
    let mut ended: Vec<(u64, u64)> = all
        .iter()
        .filter(|s| s.ends <= now)
        .map(|s| (s.ends, s.id))
        .collect();
    ended.sort_unstable();
    ended.into_iter().take(over).map(|(_, id)| id).collect()
}

/// Where a silence is in its life at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceStatus {
    /// It starts later.
    Pending,
    /// In force: firings it matches are held until it ends.
    Active,
    /// Over (ended, or expired early).
    Expired,
}

impl Silence {
    /// Where the silence is at `now`.
    pub fn status(&self, now: u64) -> SilenceStatus {
        if now >= self.ends {
            SilenceStatus::Expired
        } else if now < self.starts {
            SilenceStatus::Pending
        } else {
            SilenceStatus::Active
        }
    }

    /// Ends it at `now`, before its time (`DELETE /api/silences/{id}`): one that had not
    /// started never does.
    pub fn expire(&mut self, now: u64) {
        self.starts = self.starts.min(now);
        self.ends = now;
        self.expired_at = Some(now);
    }

    /// What the step needs of it: its span, and whether it was expired early.
    pub fn span(&self) -> SilenceSpan {
        SilenceSpan {
            starts: self.starts,
            ends: self.ends,
            expired_early: self.expired_at.is_some(),
        }
    }
}

/// What the step reads of a silence from the state ([`super::State::silence`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceSpan {
    /// When it starts (ms).
    pub starts: u64,
    /// When it ends (ms).
    pub ends: u64,
    /// Expired before its end: the firings it held were released then.
    pub expired_early: bool,
}

impl SilenceSpan {
    /// When it ends, if it is in force at `now`.
    pub fn in_force(&self, now: u64) -> Option<u64> {
        (self.starts <= now && now < self.ends).then_some(self.ends)
    }
}
