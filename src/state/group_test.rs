//! Grouping's contract as tables: the schedule, what a flush notifies, members' lives,
//! a full group. The step's helpers are `state::tests`'.

use super::*;
use crate::state::tests::{MIN, Sunk, facts, plain_rule, run_gated};
use crate::state::{AlertState, MemoryState, RuleChoice};

fn group_rule(wait: u64, every: u64, repeat: u64) -> RuleChoice<String> {
    RuleChoice {
        group: Some(GroupIntent {
            key: String::from("[[\"eu\"]]"),
            labels: String::from("{\"cluster\":\"eu\"}"),
            member: String::from("{}"),
            name: String::new(),
            wait_ms: wait,
            every_ms: every,
            repeat_ms: repeat,
        }),
        ..plain_rule()
    }
}

/// Flushes what is due at `now`: each notification's firing and resolved member ids.
fn flush_at(s: &mut MemoryState, now: u64, next: &mut u64) -> Vec<(Vec<String>, Vec<String>)> {
    let mut sink = Sunk {
        next: *next,
        ..Sunk::default()
    };
    let mut notes = Vec::new();
    let mut render = |n: &GroupNote<'_>| {
        let ids = |ms: &[&Member]| ms.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
        notes.push((ids(&n.firing), ids(&n.resolved)));
        Some(String::new())
    };
    flush(s, now, &mut sink, &mut render);
    *next = sink.next;
    notes
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_group_notifies_after_its_wait_then_only_on_change_or_at_its_repeat() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let rule = || group_rule(30_000, 5 * MIN, 60 * MIN);
    let (v, d, _) = run_gated(
        &mut s,
        &facts("a", AlertState::Firing),
        rule(),
        0,
        &mut next,
    );
    assert!(
        matches!(
            v[..],
            [VerdictKind::Grouped {
                flush: 30_000,
                members: 1,
                ..
            }]
        ),
        "{v:?}"
    );
    assert!(d.is_empty(), "nothing goes alone");
    run_gated(
        &mut s,
        &facts("b", AlertState::Firing),
        rule(),
        10_000,
        &mut next,
    );
    assert!(
        flush_at(&mut s, 29_999, &mut next).is_empty(),
        "not before the wait"
    );
    assert_eq!(
        flush_at(&mut s, 30_000, &mut next),
        [(strings(&["a", "b"]), vec![])]
    );
    // Re-sends change nothing: the next flushes say nothing until the repeat.
    run_gated(
        &mut s,
        &facts("a", AlertState::Firing),
        rule(),
        MIN,
        &mut next,
    );
    for k in 1..12 {
        assert!(
            flush_at(&mut s, 30_000 + k * 5 * MIN, &mut next).is_empty(),
            "flush {k}"
        );
    }
    // The reminder, exactly at the repeat (a multiple of every).
    assert_eq!(
        flush_at(&mut s, 30_000 + 60 * MIN, &mut next),
        [(strings(&["a", "b"]), vec![])]
    );
    // A resolution is said once, at the next flush; then the group holds what fires.
    run_gated(
        &mut s,
        &facts("b", AlertState::Resolved),
        rule(),
        61 * MIN,
        &mut next,
    );
    assert_eq!(
        flush_at(&mut s, 30_000 + 65 * MIN, &mut next),
        [(strings(&["a"]), strings(&["b"]))]
    );
    // All resolved: a last notification, and the group ends.
    run_gated(
        &mut s,
        &facts("a", AlertState::Resolved),
        rule(),
        66 * MIN,
        &mut next,
    );
    assert_eq!(
        flush_at(&mut s, 30_000 + 70 * MIN, &mut next),
        [(vec![], strings(&["a"]))]
    );
    assert!(s.next_group_flush().is_none(), "no group left");
}

#[test]
fn a_group_flushed_late_notifies_once_and_keeps_its_schedule() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let rule = || group_rule(30_000, 5 * MIN, 60 * MIN);
    run_gated(
        &mut s,
        &facts("a", AlertState::Firing),
        rule(),
        0,
        &mut next,
    );
    // Down for 23 minutes: one notification, and the next flush on the old schedule.
    assert_eq!(
        flush_at(&mut s, 23 * MIN, &mut next),
        [(strings(&["a"]), vec![])]
    );
    assert_eq!(s.next_group_flush(), Some(30_000 + 25 * MIN));
}

#[test]
fn a_member_without_news_for_a_day_counts_as_resolved() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let rule = || group_rule(0, 5 * MIN, 7 * 24 * 60 * MIN);
    run_gated(
        &mut s,
        &facts("a", AlertState::Firing),
        rule(),
        0,
        &mut next,
    );
    assert_eq!(flush_at(&mut s, 0, &mut next), [(strings(&["a"]), vec![])]);
    let day = MEMBER_SILENCE_MS;
    assert_eq!(
        flush_at(&mut s, day.div_ceil(5 * MIN) * 5 * MIN, &mut next),
        [(vec![], strings(&["a"]))]
    );
    assert!(s.next_group_flush().is_none());
}

#[test]
fn a_resend_that_changes_nothing_writes_nothing_yet_keeps_the_member_alive() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let rule = || group_rule(0, 5 * MIN, 7 * 24 * 60 * MIN);
    let firing = facts("a", AlertState::Firing);
    run_gated(&mut s, &firing, rule(), 0, &mut next);
    assert_eq!(flush_at(&mut s, 0, &mut next), [(strings(&["a"]), vec![])]);
    let member_until = |s: &MemoryState| match &s.list(10)[0].entry {
        Entry::Group(g) => g.members[0].until,
        other => panic!("{other:?}"),
    };
    // Within the refresh period: the member is not rewritten.
    run_gated(&mut s, &firing, rule(), 30 * MIN, &mut next);
    assert_eq!(member_until(&s), MEMBER_SILENCE_MS);
    // Past it: rewritten, and the member outlives the first day.
    let later = MEMBER_SILENCE_MS - 30 * MIN;
    run_gated(&mut s, &firing, rule(), later, &mut next);
    assert_eq!(member_until(&s), later + MEMBER_SILENCE_MS);
    let after_a_day = (MEMBER_SILENCE_MS + 10 * MIN).div_ceil(5 * MIN) * 5 * MIN;
    assert!(
        flush_at(&mut s, after_a_day, &mut next).is_empty(),
        "still firing: nothing new"
    );
}

#[test]
fn a_full_group_counts_the_alerts_it_leaves_out_without_rewriting_itself() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let rule = || group_rule(30_000, 5 * MIN, 60 * MIN);
    for i in 0..MAX_GROUP_MEMBERS + 2 {
        run_gated(
            &mut s,
            &facts(&format!("a{i}"), AlertState::Firing),
            rule(),
            0,
            &mut next,
        );
    }
    let mut sink = Sunk::default();
    let mut seen = None;
    let mut render = |n: &GroupNote<'_>| {
        seen = Some((n.firing.len(), n.truncated));
        Some(String::new())
    };
    flush(&mut s, 30_000, &mut sink, &mut render);
    assert_eq!(seen, Some((MAX_GROUP_MEMBERS, 2)));
}

#[test]
fn a_large_group_announces_each_member_once_in_the_order_it_joined() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let rule = || group_rule(30_000, 5 * MIN, 60 * MIN);
    let ids: Vec<String> = (0..300).map(|i| format!("a{i}")).collect();
    let send = |s: &mut MemoryState, id: &str, state, at, next: &mut u64| {
        run_gated(s, &facts(id, state), rule(), at, next);
    };
    // Joined in an order that is not the ids' sorted order.
    for id in ids.iter().rev() {
        send(&mut s, id, AlertState::Firing, 0, &mut next);
    }
    let joined: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(
        flush_at(&mut s, 30_000, &mut next),
        [(joined.clone(), vec![])]
    );
    // Every third resolves; one new member joins.
    for id in ids.iter().step_by(3) {
        send(&mut s, id, AlertState::Resolved, MIN, &mut next);
    }
    send(&mut s, "late", AlertState::Firing, MIN, &mut next);
    let resolved: Vec<String> = joined
        .iter()
        .filter(|id| ids.iter().step_by(3).any(|r| r == *id))
        .cloned()
        .collect();
    let mut firing: Vec<String> = joined
        .iter()
        .filter(|id| !resolved.contains(id))
        .cloned()
        .collect();
    firing.push(String::from("late"));
    assert_eq!(resolved.len(), 100);
    assert_eq!(
        flush_at(&mut s, 30_000 + 5 * MIN, &mut next),
        [(firing.clone(), resolved)]
    );
    // Nothing new: nothing said until the reminder, which names every firing member.
    for k in 2..13 {
        assert!(
            flush_at(&mut s, 30_000 + k * 5 * MIN, &mut next).is_empty(),
            "flush {k}"
        );
    }
    assert_eq!(
        flush_at(&mut s, 30_000 + 65 * MIN, &mut next),
        [(firing, vec![])]
    );
}
