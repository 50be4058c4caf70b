//! `window` declarations and the moments of test steps: days, times of day, dates and zones.
//!
//! Owns: reading what the grammar keeps as written (`mon`, `09:00`, `2026-12-24`,
//! `Europe/Berlin`) into a [`Window`], with a diagnostic and a suggestion for each slip
//! (`monday` is accepted, `mno` is not; `25:00`; `09:00-09:00`; a zone the bundled database
//! lacks). Never: decides whether a moment is inside a window (`crate::window` does).

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};

use super::Cx;
use super::names::suggest;
use crate::diagnostic::{Diagnostic, codes};
use crate::syntax::ast::{Ident, WindowDecl, WindowPart};
use crate::window::{DAY_MINUTES, DAY_NAMES, EVERY_DAY, Part, Window, zone, zone_names};

/// The full day names, accepted as well as the short ones.
const LONG_DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// The most parts a window has: each alert that asks `during` tries every part.
pub(crate) const MAX_WINDOW_PARTS: usize = 100;

/// Checks a window declaration; `None` when a part of it is wrong (a diagnostic says which).
pub(crate) fn check_window(cx: &mut Cx<'_>, w: &WindowDecl) -> Option<Window> {
    if w.parts.len() > MAX_WINDOW_PARTS {
        cx.report(
            Diagnostic::error(
                codes::BAD_WINDOW,
                format!(
                    "window `{}` has {} parts; the limit is {MAX_WINDOW_PARTS}",
                    w.name.name,
                    w.parts.len()
                ),
            )
            .with_primary(w.name.span, "too many parts")
            .with_help("merge days into ranges (`mon-fri`, `mon,wed,fri`), or split it into several windows joined with `or` in the condition"),
        );
        return None;
    }
    let zone = match &w.zone {
        Some(z) => check_zone(cx, z),
        None => {
            cx.report(
                Diagnostic::error(codes::BAD_WINDOW, format!("window `{}` has no time zone", w.name.name))
                    .with_primary(
                        crate::diagnostic::Span::new(w.span.file, w.span.end as usize, w.span.end as usize),
                        "the zone goes here",
                    )
                    .with_help(format!(
                        "end it with the zone its times are in: `window {} = mon-fri 09:00-18:00 Europe/Berlin`, or `UTC`",
                        w.name.name
                    )),
            );
            None
        }
    };
    let mut parts = Vec::new();
    let mut ok = true;
    for p in &w.parts {
        match check_part(cx, p, w) {
            Some(p) => parts.push(p),
            None => ok = false,
        }
    }
    let (zone, zone_name) = (zone?, w.zone.as_ref()?.name.clone());
    (ok && !parts.is_empty()).then(|| Window {
        name: w.name.name.clone(),
        zone_name,
        zone,
        parts,
    })
}

fn check_part(cx: &mut Cx<'_>, p: &WindowPart, w: &WindowDecl) -> Option<Part> {
    match p {
        WindowPart::Weekly {
            daily,
            days,
            hours,
            span,
        } => {
            if !daily && days.is_empty() {
                let at = if span.start == span.end {
                    w.span
                } else {
                    *span
                };
                let example = match hours {
                    Some((a, b)) => format!("daily {}-{}", a.name, b.name),
                    None => String::from("mon-fri 09:00-18:00"),
                };
                cx.report(
                    Diagnostic::error(codes::BAD_WINDOW, "which days does the window cover?")
                        .with_primary(at, "no days")
                        .with_help(format!(
                            "start the part with `daily`, days (`mon-fri`, `sat,sun`) or dates (`2026-12-24 .. 2026-12-26`): `{example}`"
                        )),
                );
                return None;
            }
            let mut mask = if *daily { EVERY_DAY } else { 0 };
            let mut ok = true;
            for (first, last) in days {
                let a = day(cx, first);
                let b = match last {
                    Some(l) => day(cx, l),
                    None => a,
                };
                match (a, b) {
                    (Some(a), Some(b)) => {
                        // `fri-mon` wraps over the weekend.
                        let mut d = a;
                        loop {
                            mask |= 1 << d;
                            if d == b {
                                break;
                            }
                            d = (d + 1) % 7;
                        }
                    }
                    _ => ok = false,
                }
            }
            let (from, to) = match hours {
                None => (0, DAY_MINUTES),
                Some((a, b)) => {
                    let from = clock(cx, a, false);
                    let to = clock(cx, b, true);
                    let (from, to) = (from?, to?);
                    if from == to {
                        cx.report(
                            Diagnostic::error(codes::BAD_WINDOW, "the time range is empty")
                                .with_primary(a.span.to(b.span), "starts where it ends")
                                .with_help("for whole days, leave the times out (`mon-fri`); for a range across midnight, end it earlier than it starts (`22:00-06:00`)"),
                        );
                        return None;
                    }
                    (from, to)
                }
            };
            ok.then_some(Part::Weekly {
                days: mask,
                from,
                to,
            })
        }
        WindowPart::Dated { from, to, span } => {
            let start = date(cx, &from.0);
            let start_time = from.1.as_ref().map(|c| clock(cx, c, false));
            let end = date(cx, &to.0);
            let end_time = to.1.as_ref().map(|c| clock(cx, c, true));
            let start = at(start?, start_time.unwrap_or(Some(0))?);
            // A date without a time is the whole day: the range ends at the next midnight.
            let end = match end_time {
                Some(t) => at(end?, t?),
                None => match end?.tomorrow() {
                    Ok(next) => next.at(0, 0, 0, 0),
                    Err(_) => {
                        cx.report(
                            Diagnostic::error(
                                codes::BAD_WINDOW,
                                "the dated range ends past the calendar's last day",
                            )
                            .with_primary(to.0.span, "no day follows this one")
                            .with_help("end the range on 9999-12-30 at the latest"),
                        );
                        return None;
                    }
                },
            };
            if end <= start {
                cx.report(
                    Diagnostic::error(codes::BAD_WINDOW, "the dated range ends before it starts")
                        .with_primary(
                            *span,
                            format!(
                                "from {} to {}",
                                start.strftime("%Y-%m-%d %H:%M"),
                                end.strftime("%Y-%m-%d %H:%M")
                            ),
                        )
                        .with_help("write the earlier moment first: `2026-12-24 .. 2026-12-26`"),
                );
                return None;
            }
            Some(Part::Dated {
                from: start,
                to: end,
            })
        }
    }
}

/// The local date and time `minutes` after midnight of `d` (`24:00` is the next midnight).
fn at(d: Date, minutes: u16) -> DateTime {
    if minutes >= DAY_MINUTES {
        // `24:00` of the calendar's last day is its last instant.
        return d
            .tomorrow()
            .map_or(d.at(23, 59, 59, 999_999_999), |t| t.at(0, 0, 0, 0));
    }
    d.at((minutes / 60) as i8, (minutes % 60) as i8, 0, 0)
}

/// A day's number, Monday 0, from `mon` or `monday`.
fn day(cx: &mut Cx<'_>, d: &Ident) -> Option<u8> {
    let lower = d.name.to_ascii_lowercase();
    let found = DAY_NAMES
        .iter()
        .position(|n| *n == lower)
        .or_else(|| LONG_DAY_NAMES.iter().position(|n| *n == lower));
    if let Some(i) = found {
        return Some(i as u8);
    }
    let names = DAY_NAMES.iter().chain(LONG_DAY_NAMES.iter()).copied();
    let help = match suggest(&d.name, names) {
        Some(s) => format!("did you mean `{s}`?"),
        None => String::from(
            "days are `mon` `tue` `wed` `thu` `fri` `sat` `sun` (or spelled out), ranges `mon-fri`, lists `mon,wed,fri`, or `daily`",
        ),
    };
    cx.report(
        Diagnostic::error(codes::BAD_WINDOW, format!("`{}` is not a day", d.name))
            .with_primary(d.span, "not a day of the week")
            .with_help(help),
    );
    None
}

/// Minutes after midnight of `09:30`; `24:00` only as the end of a range.
fn clock(cx: &mut Cx<'_>, c: &Ident, end: bool) -> Option<u16> {
    let parsed = c.name.split_once(':').and_then(|(h, m)| {
        if m.len() != 2 {
            return None;
        }
        let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
        (m < 60 && (h < 24 || (end && h == 24 && m == 0))).then_some(h * 60 + m)
    });
    if parsed.is_none() {
        let help = if c.name.starts_with("24:") && !end {
            "a range starts at 23:59 at the latest; `24:00` may only end one"
        } else {
            "a time of day is `HH:MM` from `00:00` to `23:59` (`24:00` ends a day)"
        };
        cx.report(
            Diagnostic::error(
                codes::BAD_WINDOW,
                format!("`{}` is not a time of day", c.name),
            )
            .with_primary(c.span, "not a time of day")
            .with_help(help),
        );
    }
    parsed
}

/// The calendar date `2026-12-24`.
fn date(cx: &mut Cx<'_>, d: &Ident) -> Option<Date> {
    let found = d.name.parse::<Date>().ok().filter(|_| {
        // jiff reads `2026-2-3` too; the language writes two digits.
        d.name.len() == 10
    });
    if found.is_none() {
        cx.report(
            Diagnostic::error(codes::BAD_WINDOW, format!("`{}` is not a date", d.name))
                .with_primary(d.span, "no such day in the calendar")
                .with_help("a date is `YYYY-MM-DD`, a day that exists: `2026-12-24`"),
        );
    }
    found
}

/// A zone of the bundled database, or an "unknown time zone" error with a suggestion.
pub(crate) fn check_zone(cx: &mut Cx<'_>, z: &Ident) -> Option<jiff::tz::TimeZone> {
    if let Some(tz) = zone(&z.name) {
        return Some(tz);
    }
    let names = zone_names();
    let d = Diagnostic::error(codes::UNKNOWN_ZONE, format!("unknown time zone `{}`", z.name))
        .with_primary(z.span, "not in the time-zone database")
        .with_note(format!(
            "zones come from the IANA database bundled in switchyard ({} zones), so a window means the same on every machine",
            names.len()
        ));
    let d = match suggest(&z.name, names.iter().map(String::as_str)) {
        Some(s) => d.with_suggestion(z.span, s, format!("did you mean `{s}`?")),
        None => d.with_help(
            "write an IANA zone as `Area/City` (`Europe/Berlin`, `America/New_York`) or `UTC`",
        ),
    };
    cx.report(d);
    None
}

/// The moment of `at 2026-12-24 09:00 Europe/Berlin`: the date and time on that zone's
/// wall clock (in a repeated hour, the earlier; in a skipped one, as if the clock had not
/// been moved, as RFC 9557 and jiff do by default).
pub(crate) fn moment(
    cx: &mut Cx<'_>,
    date_text: &Ident,
    clock_text: &Ident,
    zone_text: Option<&Ident>,
) -> Option<Timestamp> {
    let d = date(cx, date_text);
    let c = clock(cx, clock_text, false);
    let Some(zone_text) = zone_text else {
        cx.report(
            Diagnostic::error(codes::BAD_TEST, "the moment has no time zone")
                .with_primary(date_text.span.to(clock_text.span), "in which zone?")
                .with_help(format!(
                    "add the zone: `at {} {} UTC` or `at {} {} Europe/Berlin`",
                    date_text.name, clock_text.name, date_text.name, clock_text.name
                )),
        );
        return None;
    };
    let tz = check_zone(cx, zone_text)?;
    let (d, c) = (d?, c?);
    let local = d.to_datetime(Time::new((c / 60) as i8, (c % 60) as i8, 0, 0).ok()?);
    let moment = tz
        .to_ambiguous_timestamp(local)
        .compatible()
        .ok()
        .filter(|m| m.as_millisecond() >= 0);
    if moment.is_none() {
        cx.report(
            Diagnostic::error(
                codes::BAD_TEST,
                "the moment is outside the test clock's range",
            )
            .with_primary(date_text.span.to(zone_text.span), "here")
            .with_help("a test's clock runs from 1970-01-01 00:00 UTC to the end of 9999"),
        );
    }
    moment
}

/// A test alert with each `${now}`, `${now-5m}` or `${now+1h}` in its strings replaced by
/// that moment of the test's clock, as RFC 3339 in UTC (`2026-01-05T00:05:00Z`): what a
/// sender's timestamps (`startsAt`, `endsAt`) look like. `Err` names the first `${now...}`
/// that is not one of these.
pub(crate) fn at_clock(v: &serde_json::Value, now_ms: u64) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match v {
        Value::String(s) if s.contains("${now") => Value::String(replace_now(s, now_ms)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| at_clock(i, now_ms))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), at_clock(v, now_ms)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn replace_now(s: &str, now_ms: u64) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${now") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("`{}` is not closed with `}}`", &rest[i..]));
        };
        let expr = &after[..end];
        let offset_ms: i64 = match expr.strip_prefix("now") {
            Some("") => 0,
            Some(o) => {
                let (sign, d) = match (o.strip_prefix('-'), o.strip_prefix('+')) {
                    (Some(d), _) => (-1, d),
                    (_, Some(d)) => (1, d),
                    _ => return Err(bad_now(expr)),
                };
                sign * duration_ms(d).ok_or_else(|| bad_now(expr))?
            }
            None => return Err(bad_now(expr)),
        };
        let at = i64::try_from(now_ms)
            .ok()
            .and_then(|n| n.checked_add(offset_ms))
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .ok_or_else(|| bad_now(expr))?;
        out.push_str(&at.to_string());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn bad_now(expr: &str) -> String {
    format!(
        "`${{{expr}}}` is not a moment of the test's clock: write `${{now}}`, `${{now-5m}}` or `${{now+1h}}`"
    )
}

/// `90s` in milliseconds: a whole number and `ms`, `s`, `m`, `h` or `d`.
pub(crate) fn duration_ms(d: &str) -> Option<i64> {
    let digits = d.len() - d.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (n, unit) = d.split_at(digits);
    let n: i64 = n.parse().ok()?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
#[path = "windows_test.rs"]
mod tests;
