//! A `window` declaration's calendar, and whether a moment falls inside it.
//!
//! Owns: the meaning of a window (`mon-fri 09:00-18:00 Europe/Berlin`, `daily 22:00-06:00
//! UTC`, `2026-12-24 .. 2026-12-26 Europe/Berlin`), decided on the wall clock of the
//! window's zone, from the bundled time-zone database. Never: reads the clock (the moment is
//! always given), or knows the syntax (the checker builds a [`Window`]; evaluation asks it).
//!
//! Wall-clock semantics, which is what "09:00-18:00 in Berlin" means to the person who wrote
//! it: a daily range is compared with the local time of day, so it keeps its local hours
//! across a DST change; on the day the clocks go forward, a range inside the skipped hour
//! (02:00-03:00 in Berlin) is empty; on the day they go back, the repeated hour is inside a
//! range that covers it both times it happens.

use jiff::Timestamp;
use jiff::civil::{DateTime, Weekday};
use jiff::tz::TimeZone;

/// Minutes in a day: the end of `00:00-24:00`.
pub(crate) const DAY_MINUTES: u16 = 24 * 60;

/// A declared window: the union of its parts, on the wall clock of `zone`.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    /// The declared name: `business`.
    pub(crate) name: String,
    /// The zone's name as written (checked against the database): `Europe/Berlin`.
    pub(crate) zone_name: String,
    pub(crate) zone: TimeZone,
    /// At least one.
    pub(crate) parts: Vec<Part>,
}

/// One part of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// Days of the week (bit 0 Monday .. bit 6 Sunday) and a time of day `from` (inclusive)
    /// to `to` (exclusive), in minutes. `from >= to` crosses midnight: the range starts on
    /// one of `days` and ends the next morning.
    Weekly { days: u8, from: u16, to: u16 },
    /// From one local date and time (inclusive) to another (exclusive).
    Dated { from: DateTime, to: DateTime },
}

/// The longest a `hold during` a window holds: 35 days. A window that covers every moment
/// longer than that (`daily` with no times) releases what it holds then.
pub(crate) const MAX_HOLD_MS: u64 = 35 * 24 * 3_600_000;

/// Every day of the week, as a `days` mask.
pub(crate) const EVERY_DAY: u8 = 0x7f;

/// The day's bit in a `days` mask.
pub(crate) fn day_bit(d: Weekday) -> u8 {
    1 << (d.to_monday_zero_offset() as u8)
}

/// A three-letter day name: `mon`.
pub(crate) const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Part {
    fn contains(&self, local: DateTime) -> bool {
        match *self {
            Part::Weekly { days, from, to } => {
                let minute = local.hour() as u16 * 60 + local.minute() as u16;
                let today = days & day_bit(local.weekday()) != 0;
                if from < to {
                    today && (from..to).contains(&minute)
                } else {
                    let yesterday = days & day_bit(local.weekday().previous()) != 0;
                    (today && minute >= from) || (yesterday && minute < to)
                }
            }
            Part::Dated { from, to } => from <= local && local < to,
        }
    }

    /// Where this part, holding at `local`, ends: the local date and time of its end.
    fn end(&self, local: DateTime) -> Option<DateTime> {
        match *self {
            Part::Weekly { from, to, .. } => {
                let minute = local.hour() as u16 * 60 + local.minute() as u16;
                let day = local.date();
                // Today's end, unless the range crosses midnight and started today.
                let end_day = if from >= to && minute >= from {
                    day.tomorrow().ok()?
                } else {
                    day
                };
                if to >= DAY_MINUTES {
                    Some(end_day.tomorrow().ok()?.at(0, 0, 0, 0))
                } else {
                    Some(end_day.at((to / 60) as i8, (to % 60) as i8, 0, 0))
                }
            }
            Part::Dated { to, .. } => Some(to),
        }
    }

    /// The part as the language writes it: `mon-fri 09:00-18:00`, `daily 22:00-06:00`,
    /// `2026-12-24 00:00 .. 2026-12-27 00:00`.
    pub(crate) fn text(&self) -> String {
        match *self {
            Part::Weekly { days, from, to } => {
                let mut s = days_text(days);
                if !(from == 0 && to == DAY_MINUTES) {
                    s.push_str(&format!(" {}-{}", clock(from), clock(to)));
                }
                s
            }
            Part::Dated { from, to } => format!(
                "{} {} .. {} {}",
                from.date(),
                clock(from.hour() as u16 * 60 + from.minute() as u16),
                to.date(),
                clock(to.hour() as u16 * 60 + to.minute() as u16)
            ),
        }
    }
}

/// `09:05` for minute 545.
pub(crate) fn clock(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `daily`, `mon-fri`, `mon,wed,fri`, `sat-sun`: runs of days as ranges.
fn days_text(days: u8) -> String {
    if days == EVERY_DAY {
        return String::from("daily");
    }
    let mut runs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < 7 {
        if days & (1 << i) == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i + 1 < 7 && days & (1 << (i + 1)) != 0 {
            i += 1;
        }
        runs.push(if start == i {
            DAY_NAMES[start].to_owned()
        } else {
            format!("{}-{}", DAY_NAMES[start], DAY_NAMES[i])
        });
        i += 1;
    }
    runs.join(",")
}

impl Window {
    /// Whether `at` falls inside the window.
    pub(crate) fn contains(&self, at: Timestamp) -> bool {
        let local = self.zone.to_datetime(at);
        self.parts.iter().any(|p| p.contains(local))
    }

    /// The first moment at or after `at` outside the window: when a hold ends. Found by
    /// jumping from one part's end to the next; a window that covers every moment for more
    /// than [`MAX_HOLD_MS`] ends there (a hold never lasts longer).
    pub(crate) fn end_after(&self, at: Timestamp) -> Timestamp {
        let limit = at
            .checked_add(jiff::SignedDuration::from_millis(MAX_HOLD_MS as i64))
            .unwrap_or(at);
        let mut t = at;
        while t < limit {
            let local = self.zone.to_datetime(t);
            let ends: Vec<Timestamp> = self
                .parts
                .iter()
                .filter(|p| p.contains(local))
                .filter_map(|p| p.end(local))
                .filter_map(|end| self.zone.to_ambiguous_timestamp(end).later().ok())
                .collect();
            match ends.into_iter().max() {
                // Every part that holds ends later than `t` (an end in a skipped hour is
                // read as the later moment), so this moves forward.
                Some(end) if end > t => t = end,
                Some(_) => {
                    t = t
                        .checked_add(jiff::SignedDuration::from_mins(1))
                        .unwrap_or(limit)
                }
                None => return t,
            }
        }
        limit
    }

    /// `at` on the window's wall clock, for explanations: `Mon 2026-01-05 09:30 Europe/Berlin`.
    pub(crate) fn local(&self, at: Timestamp) -> String {
        let local = self.zone.to_datetime(at);
        format!(
            "{} {} {} {}",
            weekday_title(local.weekday()),
            local.date(),
            clock(local.hour() as u16 * 60 + local.minute() as u16),
            self.zone_name
        )
    }

    /// The declaration's right side, canonical: `mon-fri 09:00-18:00 Europe/Berlin`.
    pub(crate) fn text(&self) -> String {
        let parts: Vec<String> = self.parts.iter().map(Part::text).collect();
        format!("{} {}", parts.join(" or "), self.zone_name)
    }
}

fn weekday_title(d: Weekday) -> &'static str {
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][d.to_monday_zero_offset() as usize]
}

/// A zone of the bundled database by name, exactly as the database spells it, or `None`.
pub(crate) fn zone(name: &str) -> Option<TimeZone> {
    if name == "UTC" {
        return Some(TimeZone::UTC);
    }
    // `get` also finds a name in another case; a window keeps the database's spelling.
    TimeZone::get(name)
        .ok()
        .filter(|tz| tz.iana_name() == Some(name))
}

/// Every zone name of the bundled database.
pub(crate) fn zone_names() -> Vec<String> {
    jiff::tz::db().available().map(|n| n.to_string()).collect()
}

#[cfg(test)]
#[path = "window_test.rs"]
mod tests;
