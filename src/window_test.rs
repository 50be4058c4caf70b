use super::*;

fn date(year: i16, month: i8, day: i8) -> Option<jiff::civil::Date> {
    jiff::civil::Date::new(year, month, day).ok()
}

fn at(s: &str) -> Timestamp {
    s.parse().expect("a timestamp")
}

fn berlin(parts: Vec<Part>) -> Window {
    Window {
        name: String::from("w"),
        zone_name: String::from("Europe/Berlin"),
        zone: zone("Europe/Berlin").expect("the bundled database has Berlin"),
        parts,
    }
}

const MON_FRI: u8 = 0b001_1111;

#[test]
fn business_hours_are_local_time_on_weekdays() {
    let w = berlin(vec![Part::Weekly {
        days: MON_FRI,
        from: 9 * 60,
        to: 18 * 60,
    }]);
    // Monday 2026-01-05, Berlin is UTC+1 in winter.
    assert!(!w.contains(at("2026-01-05T07:59:59Z")));
    assert!(w.contains(at("2026-01-05T08:00:00Z")));
    assert!(w.contains(at("2026-01-05T16:59:59Z")));
    assert!(!w.contains(at("2026-01-05T17:00:00Z")));
    // Saturday.
    assert!(!w.contains(at("2026-01-10T10:00:00Z")));
    // Summer: UTC+2, the same local hours.
    assert!(w.contains(at("2026-07-06T07:00:00Z")));
    assert!(!w.contains(at("2026-07-06T06:59:00Z")));
    assert_eq!(w.text(), "mon-fri 09:00-18:00 Europe/Berlin");
}

#[test]
fn a_range_crossing_midnight_belongs_to_the_day_it_starts() {
    // Friday nights only: Fri 22:00 to Sat 06:00.
    let w = berlin(vec![Part::Weekly {
        days: 1 << 4,
        from: 22 * 60,
        to: 6 * 60,
    }]);
    assert!(w.contains(at("2026-01-09T21:00:00Z"))); // Fri 22:00
    assert!(w.contains(at("2026-01-10T04:59:00Z"))); // Sat 05:59
    assert!(!w.contains(at("2026-01-10T05:00:00Z"))); // Sat 06:00
    assert!(!w.contains(at("2026-01-10T21:00:00Z"))); // Sat 22:00
    assert!(!w.contains(at("2026-01-09T04:00:00Z"))); // Fri 05:00: Thursday's night
    assert_eq!(w.text(), "fri 22:00-06:00 Europe/Berlin");
}

#[test]
fn the_skipped_hour_is_empty_and_the_repeated_hour_counts_twice() {
    let w = berlin(vec![Part::Weekly {
        days: EVERY_DAY,
        from: 2 * 60,
        to: 3 * 60,
    }]);
    // 2026-03-29: clocks go from 02:00 to 03:00 local (01:00Z): no instant is inside.
    assert!(!w.contains(at("2026-03-29T00:59:59Z")));
    assert!(!w.contains(at("2026-03-29T01:00:00Z")));
    // 2026-10-25: 02:00-03:00 local happens at 00:00Z (CEST) and again at 01:00Z (CET).
    assert!(w.contains(at("2026-10-25T00:30:00Z")));
    assert!(w.contains(at("2026-10-25T01:30:00Z")));
    assert!(!w.contains(at("2026-10-25T02:00:00Z")));
}

#[test]
fn a_dated_range_is_local_and_its_end_is_exclusive() {
    let from = date(2026, 12, 24).expect("a date").at(0, 0, 0, 0);
    let to = date(2026, 12, 27).expect("a date").at(0, 0, 0, 0);
    let w = berlin(vec![Part::Dated { from, to }]);
    assert!(!w.contains(at("2026-12-23T22:59:59Z")));
    assert!(w.contains(at("2026-12-23T23:00:00Z")));
    assert!(w.contains(at("2026-12-26T22:59:59Z")));
    assert!(!w.contains(at("2026-12-26T23:00:00Z")));
    assert_eq!(
        w.text(),
        "2026-12-24 00:00 .. 2026-12-27 00:00 Europe/Berlin"
    );
}

#[test]
fn a_hold_ends_where_the_window_does() {
    let w = berlin(vec![Part::Weekly {
        days: EVERY_DAY,
        from: 22 * 60,
        to: 6 * 60,
    }]);
    // 23:30 Berlin: the night ends at 06:00 the next morning.
    assert_eq!(
        w.end_after(at("2026-01-05T22:30:00Z")),
        at("2026-01-06T05:00:00Z")
    );
    // Outside: it ends at once.
    assert_eq!(
        w.end_after(at("2026-01-05T12:00:00Z")),
        at("2026-01-05T12:00:00Z")
    );
    // Across the spring change (29 March 2026, 02:00 -> 03:00): still 06:00 local.
    assert_eq!(
        w.end_after(at("2026-03-28T22:30:00Z")),
        at("2026-03-29T04:00:00Z")
    );
    // Two parts that touch: Friday night runs into the weekend.
    let weekend = berlin(vec![
        Part::Weekly {
            days: 1 << 4,
            from: 18 * 60,
            to: DAY_MINUTES,
        },
        Part::Weekly {
            days: 0b110_0000,
            from: 0,
            to: DAY_MINUTES,
        },
    ]);
    assert_eq!(
        weekend.end_after(at("2026-01-09T20:00:00Z")),
        at("2026-01-11T23:00:00Z"),
        "Monday 00:00 Berlin"
    );
    // A window that never ends releases after the longest hold.
    let always = berlin(vec![Part::Weekly {
        days: EVERY_DAY,
        from: 0,
        to: DAY_MINUTES,
    }]);
    let start = at("2026-01-05T00:00:00Z");
    let end = always.end_after(start);
    assert_eq!(
        end.as_millisecond() - start.as_millisecond(),
        MAX_HOLD_MS as i64
    );
}

#[test]
fn day_lists_print_as_runs() {
    assert_eq!(days_text(EVERY_DAY), "daily");
    assert_eq!(days_text(0b101_0101), "mon,wed,fri,sun");
    assert_eq!(days_text(0b110_0000), "sat-sun");
    assert_eq!(days_text(0b110_0011), "mon-tue,sat-sun");
}

#[test]
fn zones_are_found_by_their_exact_name_only() {
    assert!(zone("Europe/Berlin").is_some());
    assert!(zone("UTC").is_some());
    assert!(zone("America/Argentina/Buenos_Aires").is_some());
    assert!(zone("europe/berlin").is_none());
    assert!(zone("Europe/Berln").is_none());
    assert!(zone_names().len() > 300);
}
