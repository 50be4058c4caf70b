//! The step function: each clause's contract as a table, and properties over alert
//! streams (replaying gives the same deliveries; repeats change nothing under `dedup`).

use proptest::prelude::*;

use super::*;

pub(super) const MIN: u64 = 60_000;

pub(super) fn facts(id: &str, state: AlertState) -> AlertFacts {
    AlertFacts::new(Some(id.to_owned()), state)
}

fn dedup_rule(window_ms: Option<u64>, key: &str) -> RuleChoice<String> {
    RuleChoice {
        rule: String::from("pages"),
        clauses: 1,
        targets: vec![(String::from("pager"), String::from("body"))],
        dedup: Some(DedupIntent {
            key: Some(key.as_bytes().to_vec()),
            window_ms,
        }),
        resolve_once: false,
        throttle: None,
        gate: None,
        group: None,
    }
}

/// A test's sink: every delivery (target, id, when held: its time) and every cancellation.
#[derive(Default)]
pub(super) struct Sunk {
    pub(super) next: u64,
    pub(super) delivered: Vec<(String, u64, Option<u64>)>,
    pub(super) cancelled: Vec<u64>,
}

impl Sink<String> for Sunk {
    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
    fn deliver(&mut self, target: &str, _: String, id: u64, at: Option<u64>) {
        self.delivered.push((target.to_owned(), id, at));
    }
    fn cancel(&mut self, _: &str, id: u64) {
        self.cancelled.push(id);
    }
}

/// Runs one step and answers (verdicts, deliveries due now as (target, id)).
fn run(
    state: &mut MemoryState,
    alert: &AlertFacts,
    choices: Vec<RuleChoice<String>>,
    probes: Vec<RuleChoice<String>>,
    now: u64,
    next: &mut u64,
) -> (Vec<Verdict>, Vec<(String, u64)>) {
    let mut sink = Sunk {
        next: *next,
        ..Sunk::default()
    };
    let verdicts = step(state, alert, choices, probes, now, &mut sink);
    *next = sink.next;
    let now_due = sink
        .delivered
        .into_iter()
        .filter(|(_, _, at)| at.is_none())
        .map(|(t, id, _)| (t, id))
        .collect();
    (verdicts, now_due)
}

#[test]
fn dedup_for_a_window_keeps_same_state_copies_out_until_it_ends() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let firing = facts("a", AlertState::Firing);
    let (_, d) = run(
        &mut s,
        &firing,
        vec![dedup_rule(Some(10 * MIN), "a")],
        vec![],
        0,
        &mut next,
    );
    assert_eq!(d, [(String::from("pager"), 1)]);
    // A re-send a minute later is a duplicate of delivery 1, and says when the window ends.
    let (v, d) = run(
        &mut s,
        &firing,
        vec![dedup_rule(Some(10 * MIN), "a")],
        vec![],
        MIN,
        &mut next,
    );
    assert!(d.is_empty());
    assert_eq!(
        v,
        [Verdict {
            rule: String::from("pages"),
            target: String::from("pager"),
            kind: VerdictKind::Duplicate {
                of: 1,
                at: 0,
                until: Some(10 * MIN)
            },
            key: None,
        }]
    );
    // Dropped duplicates do not extend the window: at 10 min it goes out again.
    let (_, d) = run(
        &mut s,
        &firing,
        vec![dedup_rule(Some(10 * MIN), "a")],
        vec![],
        10 * MIN,
        &mut next,
    );
    assert_eq!(d, [(String::from("pager"), 2)]);
}

#[test]
fn a_change_of_state_is_never_a_duplicate() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let rule = || vec![dedup_rule(None, "a")];
    let (_, d) = run(
        &mut s,
        &facts("a", AlertState::Firing),
        rule(),
        vec![],
        0,
        &mut next,
    );
    assert_eq!(d.len(), 1);
    let (_, d) = run(
        &mut s,
        &facts("a", AlertState::Firing),
        rule(),
        vec![],
        MIN,
        &mut next,
    );
    assert!(d.is_empty(), "until resolved: a firing copy is a duplicate");
    let (_, d) = run(
        &mut s,
        &facts("a", AlertState::Resolved),
        rule(),
        vec![],
        2 * MIN,
        &mut next,
    );
    assert_eq!(d.len(), 1, "the resolution goes out");
    let (_, d) = run(
        &mut s,
        &facts("a", AlertState::Resolved),
        rule(),
        vec![],
        3 * MIN,
        &mut next,
    );
    assert!(
        d.is_empty(),
        "a resolved copy is a duplicate of the resolution"
    );
    let (_, d) = run(
        &mut s,
        &facts("a", AlertState::Firing),
        rule(),
        vec![],
        4 * MIN,
        &mut next,
    );
    assert_eq!(d.len(), 1, "firing again after the resolution goes out");
}

#[test]
fn an_alert_without_a_key_is_not_deduplicated() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let mut rule = dedup_rule(Some(10 * MIN), "a");
    if let Some(d) = &mut rule.dedup {
        d.key = None;
    }
    for now in 0..3 {
        let (_, d) = run(
            &mut s,
            &facts("a", AlertState::Firing),
            vec![rule.clone()],
            vec![],
            now,
            &mut next,
        );
        assert_eq!(d.len(), 1);
    }
}

fn resolve_once_rule(targets: &[&str]) -> RuleChoice<String> {
    RuleChoice {
        rule: String::from("alibaba pages"),
        clauses: 2,
        targets: targets
            .iter()
            .map(|t| ((*t).to_owned(), String::from("body")))
            .collect(),
        dedup: None,
        resolve_once: true,
        throttle: None,
        gate: None,
        group: None,
    }
}

#[test]
fn resolve_once_sends_one_resolution_where_a_firing_went_even_without_a_match() {
    let mut s = MemoryState::default();
    let mut next = 0;
    // A resolution for something never announced is dropped.
    let (v, d) = run(
        &mut s,
        &facts("x", AlertState::Resolved),
        vec![resolve_once_rule(&["pager"])],
        vec![],
        0,
        &mut next,
    );
    assert!(d.is_empty());
    assert_eq!(v[0].kind, VerdictKind::Unannounced);
    assert_eq!(v[0].suppressed(), Some("unannounced"));
    // The firing is announced...
    let (_, d) = run(
        &mut s,
        &facts("x", AlertState::Firing),
        vec![resolve_once_rule(&["pager"])],
        vec![],
        MIN,
        &mut next,
    );
    assert_eq!(d, [(String::from("pager"), 1)]);
    // ...and its resolution (which no longer matches the condition: a probe) goes once.
    let (_, d) = run(
        &mut s,
        &facts("x", AlertState::Resolved),
        vec![],
        vec![resolve_once_rule(&["pager", "chat"])],
        2 * MIN,
        &mut next,
    );
    assert_eq!(
        d,
        [(String::from("pager"), 2)],
        "only where the firing went"
    );
    let (_, d) = run(
        &mut s,
        &facts("x", AlertState::Resolved),
        vec![resolve_once_rule(&["pager"])],
        vec![],
        3 * MIN,
        &mut next,
    );
    assert!(d.is_empty(), "exactly once");
}

fn throttle_rule(count: u64, else_post: Option<&str>) -> RuleChoice<String> {
    RuleChoice {
        rule: String::from("team chat"),
        clauses: 3,
        targets: vec![(String::from("chat"), String::from("body"))],
        dedup: None,
        resolve_once: false,
        throttle: Some(ThrottleIntent {
            key: b"[\"db\"]".to_vec(),
            count,
            per_ms: MIN,
            else_post: else_post.map(|t| (t.to_owned(), String::from("digest body"))),
        }),
        gate: None,
        group: None,
    }
}

#[test]
fn at_most_n_per_window_throttles_the_excess_or_sends_it_elsewhere() {
    let mut s = MemoryState::default();
    let mut next = 0;
    for i in 0..2 {
        let (_, d) = run(
            &mut s,
            &facts(&format!("a{i}"), AlertState::Firing),
            vec![throttle_rule(2, None)],
            vec![],
            i,
            &mut next,
        );
        assert_eq!(d.len(), 1);
    }
    let (v, d) = run(
        &mut s,
        &facts("a2", AlertState::Firing),
        vec![throttle_rule(2, None)],
        vec![],
        2,
        &mut next,
    );
    assert!(d.is_empty());
    assert_eq!(
        v[0].kind,
        VerdictKind::Throttled {
            limit: 2,
            per_ms: MIN
        }
    );
    assert_eq!(
        (v[0].rule.as_str(), v[0].target.as_str()),
        ("team chat", "chat")
    );
    let (v, d) = run(
        &mut s,
        &facts("a3", AlertState::Firing),
        vec![throttle_rule(2, Some("digest"))],
        vec![],
        3,
        &mut next,
    );
    assert_eq!(d, [(String::from("digest"), 3)]);
    assert!(matches!(&v[0].kind, VerdictKind::Diverted { to, .. } if to == "digest"));
    // The window slides: a minute after the first, one more goes through.
    let (_, d) = run(
        &mut s,
        &facts("a4", AlertState::Firing),
        vec![throttle_rule(2, None)],
        vec![],
        MIN,
        &mut next,
    );
    assert_eq!(d.len(), 1);
}

#[test]
fn the_resolution_of_a_firing_that_went_through_is_never_throttled() {
    let mut s = MemoryState::default();
    let mut next = 0;
    run(
        &mut s,
        &facts("a", AlertState::Firing),
        vec![throttle_rule(1, None)],
        vec![],
        0,
        &mut next,
    );
    let (_, d) = run(
        &mut s,
        &facts("b", AlertState::Firing),
        vec![throttle_rule(1, None)],
        vec![],
        1,
        &mut next,
    );
    assert!(d.is_empty(), "over the limit");
    let (_, d) = run(
        &mut s,
        &facts("a", AlertState::Resolved),
        vec![throttle_rule(1, None)],
        vec![],
        2,
        &mut next,
    );
    assert_eq!(d.len(), 1, "the resolution of a delivered firing goes out");
    let (_, d) = run(
        &mut s,
        &facts("b", AlertState::Resolved),
        vec![throttle_rule(1, None)],
        vec![],
        3,
        &mut next,
    );
    assert!(
        d.is_empty(),
        "a resolution of a throttled firing is counted like any alert"
    );
}

#[test]
fn a_changed_clause_starts_with_fresh_state() {
    let mut s = MemoryState::default();
    let mut next = 0;
    run(
        &mut s,
        &facts("a", AlertState::Firing),
        vec![dedup_rule(None, "a")],
        vec![],
        0,
        &mut next,
    );
    let mut changed = dedup_rule(None, "a");
    changed.clauses = 99;
    let (_, d) = run(
        &mut s,
        &facts("a", AlertState::Firing),
        vec![changed],
        vec![],
        1,
        &mut next,
    );
    assert_eq!(d.len(), 1);
}

#[test]
fn entries_expire() {
    let mut s = MemoryState::default();
    let mut next = 0;
    run(
        &mut s,
        &facts("a", AlertState::Firing),
        vec![dedup_rule(Some(MIN), "a")],
        vec![],
        0,
        &mut next,
    );
    assert_eq!(s.len(), 1);
    s.collect(MIN);
    assert!(s.is_empty());
}

#[test]
fn a_bounded_memory_forgets_the_entries_closest_to_expiring() {
    let mut s = MemoryState::default();
    let mut next = 0;
    for i in 0..100u64 {
        run(
            &mut s,
            &facts(&format!("a{i}"), AlertState::Firing),
            vec![dedup_rule(Some(MIN + i), &format!("a{i}"))],
            vec![],
            0,
            &mut next,
        );
    }
    assert_eq!(s.bound(200), 0);
    assert_eq!(s.bound(80), 20);
    assert_eq!(s.len(), 80);
    // The survivors are the latest to expire: a99 is still remembered, a0 is not.
    let (_, d) = run(
        &mut s,
        &facts("a99", AlertState::Firing),
        vec![dedup_rule(Some(MIN + 99), "a99")],
        vec![],
        1,
        &mut next,
    );
    assert!(d.is_empty());
    let (_, d) = run(
        &mut s,
        &facts("a0", AlertState::Firing),
        vec![dedup_rule(Some(MIN), "a0")],
        vec![],
        1,
        &mut next,
    );
    assert_eq!(d.len(), 1);
}

/// An alert stream: (id index, resolved?, time step).
fn stream() -> impl Strategy<Value = Vec<(u8, bool, u64)>> {
    proptest::collection::vec((0u8..4, any::<bool>(), 0u64..90_000), 0..40)
}

/// Deliveries of a stream through a rule with `dedup` (until resolved), `resolve once`
/// and `at most 3 per 1m`, as (time, id, state, target).
fn deliveries(s: &[(u8, bool, u64)], repeat: bool) -> Vec<(u64, u8, bool, String)> {
    let mut state = MemoryState::default();
    let mut next = 0;
    let mut now = 0;
    let mut out = Vec::new();
    for &(i, resolved, dt) in s {
        now += dt;
        let alert = facts(
            &format!("a{i}"),
            if resolved {
                AlertState::Resolved
            } else {
                AlertState::Firing
            },
        );
        let copies = if repeat { 2 } else { 1 };
        for _ in 0..copies {
            let rule = RuleChoice {
                rule: String::from("r"),
                clauses: 1,
                targets: vec![(String::from("t"), String::new())],
                dedup: Some(DedupIntent {
                    key: Some(format!("a{i}").into_bytes()),
                    window_ms: None,
                }),
                resolve_once: true,
                throttle: Some(ThrottleIntent {
                    key: Vec::new(),
                    count: 3,
                    per_ms: MIN,
                    else_post: None,
                }),
                gate: None,
                group: None,
            };
            let (_, d) = run(&mut state, &alert, vec![rule], vec![], now, &mut next);
            out.extend(d.into_iter().map(|(t, _)| (now, i, resolved, t)));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The step is a function of its inputs: the same stream gives the same deliveries.
    #[test]
    fn replaying_a_stream_gives_the_same_deliveries(s in stream()) {
        prop_assert_eq!(deliveries(&s, false), deliveries(&s, false));
    }

    /// Under `dedup`, every alert sent twice gives what the stream without repeats gives.
    #[test]
    fn repeats_change_nothing_under_dedup(s in stream()) {
        prop_assert_eq!(deliveries(&s, true), deliveries(&s, false));
    }

    /// `resolve once`: a resolution goes to a target only after a firing went there, and
    /// at most once per firing.
    #[test]
    fn every_resolution_follows_an_announced_firing(s in stream()) {
        let mut open = std::collections::HashMap::new();
        for (_, id, resolved, _) in deliveries(&s, false) {
            let was_open = open.insert(id, !resolved).unwrap_or(false);
            if resolved {
                prop_assert!(was_open, "a resolution of {id} without a firing before it");
            }
        }
    }
}

fn gated_rule(gate: Gate, resolve_once: bool) -> RuleChoice<String> {
    RuleChoice {
        rule: String::from("quiet"),
        clauses: 9,
        targets: vec![(String::from("pager"), String::from("body"))],
        dedup: None,
        resolve_once,
        throttle: None,
        gate: Some(gate),
        group: None,
    }
}

/// What one gated step did: verdict kinds, deliveries (id, when held: due), cancellations.
type Gated = (Vec<VerdictKind>, Vec<(u64, Option<u64>)>, Vec<u64>);

/// One step with the whole sink: verdict kinds, deliveries with their times, cancellations.
pub(super) fn run_gated(
    state: &mut MemoryState,
    alert: &AlertFacts,
    rule: RuleChoice<String>,
    now: u64,
    next: &mut u64,
) -> Gated {
    let mut sink = Sunk {
        next: *next,
        ..Sunk::default()
    };
    // A resolved alert reaches a rule it no longer matches as a probe.
    let (choices, probes) = if alert.state == AlertState::Resolved && rule.targets.is_empty() {
        (vec![], vec![rule])
    } else {
        (vec![rule], vec![])
    };
    let verdicts = step(state, alert, choices, probes, now, &mut sink);
    *next = sink.next;
    (
        verdicts.into_iter().map(|v| v.kind).collect(),
        sink.delivered
            .into_iter()
            .map(|(_, id, at)| (id, at))
            .collect(),
        sink.cancelled,
    )
}

#[test]
fn delay_holds_a_firing_joins_its_resends_and_a_timely_resolution_cancels_both() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let delay = || gated_rule(Gate::Delay { ms: 2 * MIN }, false);
    let firing = facts("a", AlertState::Firing);
    let resolved = facts("a", AlertState::Resolved);
    let (v, d, _) = run_gated(&mut s, &firing, delay(), 0, &mut next);
    assert_eq!(
        v,
        [VerdictKind::Held {
            delivery: 1,
            until: 2 * MIN
        }]
    );
    assert_eq!(d, [(1, Some(2 * MIN))], "stored, due later");
    // A re-send joins the held one: no second delivery.
    let (v, d, _) = run_gated(&mut s, &firing, delay(), MIN, &mut next);
    assert_eq!(
        v,
        [VerdictKind::Held {
            delivery: 1,
            until: 2 * MIN
        }]
    );
    assert!(d.is_empty());
    // Resolved in time: the held firing is cancelled, and the resolution goes nowhere.
    let (v, d, c) = run_gated(&mut s, &resolved, delay(), MIN + 1, &mut next);
    assert_eq!(v, [VerdictKind::Cancelled { of: 1 }]);
    assert!(d.is_empty());
    assert_eq!(c, [1]);
    // Fires again, and resolves after the delay: the firing went out, so does the resolution.
    let (v, _, _) = run_gated(&mut s, &firing, delay(), 10 * MIN, &mut next);
    assert_eq!(
        v,
        [VerdictKind::Held {
            delivery: 2,
            until: 12 * MIN
        }]
    );
    let (v, d, c) = run_gated(&mut s, &resolved, delay(), 13 * MIN, &mut next);
    assert_eq!(v, [VerdictKind::Delivered { delivery: 3 }]);
    assert_eq!(d, [(3, None)]);
    assert!(c.is_empty());
}

#[test]
fn a_resolution_that_no_longer_matches_still_cancels_the_held_firing() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let firing = facts("a", AlertState::Firing);
    let resolved = facts("a", AlertState::Resolved);
    let (v, ..) = run_gated(
        &mut s,
        &firing,
        gated_rule(Gate::Delay { ms: 5 * MIN }, true),
        0,
        &mut next,
    );
    assert_eq!(
        v,
        [VerdictKind::Held {
            delivery: 1,
            until: 5 * MIN
        }]
    );
    // The rule says `@state == "firing"`: the resolution reaches it as a probe.
    let mut sink = Sunk {
        next,
        ..Sunk::default()
    };
    let mut probe_full = gated_rule(Gate::Delay { ms: 5 * MIN }, true);
    probe_full.targets = vec![(String::from("pager"), String::from("resolved body"))];
    let v = step(&mut s, &resolved, vec![], vec![probe_full], MIN, &mut sink);
    assert_eq!(
        v.into_iter().map(|v| v.kind).collect::<Vec<_>>(),
        [VerdictKind::Cancelled { of: 1 }]
    );
    assert_eq!(sink.cancelled, [1]);
    assert!(
        sink.delivered.is_empty(),
        "nothing announced, nothing to resolve"
    );
    // And `resolve once` has nothing left to owe: a later resolution goes nowhere.
    let mut again = gated_rule(Gate::Delay { ms: 5 * MIN }, true);
    again.targets = vec![(String::from("pager"), String::from("resolved body"))];
    let mut sink = Sunk::default();
    step(&mut s, &resolved, vec![], vec![again], 2 * MIN, &mut sink);
    assert!(sink.delivered.is_empty());
}

#[test]
fn hold_during_a_window_waits_for_its_end_and_goes_at_once_outside_it() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let inside = |until| {
        gated_rule(
            Gate::Hold {
                window: String::from("night"),
                until: Some(until),
            },
            true,
        )
    };
    let outside = || {
        gated_rule(
            Gate::Hold {
                window: String::from("night"),
                until: None,
            },
            true,
        )
    };
    let firing = facts("a", AlertState::Firing);
    let resolved = facts("a", AlertState::Resolved);
    // Inside the night: held until its end.
    let (v, d, _) = run_gated(&mut s, &firing, inside(60 * MIN), 0, &mut next);
    assert_eq!(
        v,
        [VerdictKind::Held {
            delivery: 1,
            until: 60 * MIN
        }]
    );
    assert_eq!(d, [(1, Some(60 * MIN))]);
    // It went out at the window's end (the store sends it then); it resolves by day: the
    // resolution `resolve once` owes goes at once.
    let (v, d, _) = run_gated(&mut s, &resolved, outside(), 90 * MIN, &mut next);
    assert_eq!(v, [VerdictKind::Delivered { delivery: 2 }]);
    assert_eq!(d, [(2, None)]);
    // By day a firing goes at once.
    let (v, _, _) = run_gated(&mut s, &firing, outside(), 100 * MIN, &mut next);
    assert_eq!(v, [VerdictKind::Delivered { delivery: 3 }]);
    // Its resolution at night is held to the night's end, like any delivery.
    let (v, d, _) = run_gated(&mut s, &resolved, inside(200 * MIN), 150 * MIN, &mut next);
    assert_eq!(
        v,
        [VerdictKind::Held {
            delivery: 4,
            until: 200 * MIN
        }]
    );
    assert_eq!(d, [(4, Some(200 * MIN))]);
}

#[test]
fn mute_during_a_window_drops_but_a_resolution_owed_still_goes() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let muted = || {
        gated_rule(
            Gate::Mute {
                window: String::from("maintenance"),
                until: Some(30 * MIN),
            },
            true,
        )
    };
    let open = || {
        gated_rule(
            Gate::Mute {
                window: String::from("maintenance"),
                until: None,
            },
            true,
        )
    };
    let firing = facts("a", AlertState::Firing);
    let resolved = facts("a", AlertState::Resolved);
    // Announced before the maintenance.
    let (v, _, _) = run_gated(&mut s, &firing, open(), 0, &mut next);
    assert_eq!(v, [VerdictKind::Delivered { delivery: 1 }]);
    // During it, another alert is muted...
    let other = facts("b", AlertState::Firing);
    let (v, d, _) = run_gated(&mut s, &other, muted(), MIN, &mut next);
    assert_eq!(
        v,
        [VerdictKind::Muted {
            window: String::from("maintenance"),
            until: 30 * MIN
        }]
    );
    assert!(d.is_empty());
    // ...but the resolution owed for the first goes out.
    let (v, d, _) = run_gated(&mut s, &resolved, muted(), 2 * MIN, &mut next);
    assert_eq!(v, [VerdictKind::Delivered { delivery: 2 }]);
    assert_eq!(d, [(2, None)]);
    // The muted one was never announced: its resolution goes nowhere.
    let (v, d, _) = run_gated(
        &mut s,
        &facts("b", AlertState::Resolved),
        open(),
        40 * MIN,
        &mut next,
    );
    assert_eq!(v, [VerdictKind::Unannounced]);
    assert!(d.is_empty());
}

#[test]
fn mute_flapping_holds_until_the_state_is_stable_then_the_current_state_goes_once() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let rule = || {
        gated_rule(
            Gate::Flapping {
                changes: 3,
                ms: 10 * MIN,
            },
            false,
        )
    };
    let firing = facts("a", AlertState::Firing);
    let resolved = facts("a", AlertState::Resolved);
    let mut step_at = |alert: &AlertFacts, at: u64| run_gated(&mut s, alert, rule(), at, &mut next);
    // The first sighting and two changes go as they come.
    assert_eq!(
        step_at(&firing, 0).0,
        [VerdictKind::Delivered { delivery: 1 }]
    );
    assert_eq!(
        step_at(&resolved, MIN).0,
        [VerdictKind::Delivered { delivery: 2 }]
    );
    assert_eq!(
        step_at(&firing, 2 * MIN).0,
        [VerdictKind::Delivered { delivery: 3 }]
    );
    // The third change within 10 minutes: held until the state is stable for 10 minutes.
    let (v, d, _) = step_at(&resolved, 3 * MIN);
    assert_eq!(
        v,
        [VerdictKind::Held {
            delivery: 4,
            until: 13 * MIN
        }]
    );
    assert_eq!(d, [(4, Some(13 * MIN))]);
    // A repeat of the held state joins it.
    let (v, d, _) = step_at(&resolved, 4 * MIN);
    assert_eq!(
        v,
        [VerdictKind::Held {
            delivery: 4,
            until: 13 * MIN
        }]
    );
    assert!(d.is_empty());
    // Another change: the held resolution is cancelled; the firing waits its 10 minutes.
    let (v, d, c) = step_at(&firing, 5 * MIN);
    assert_eq!(
        v,
        [VerdictKind::Held {
            delivery: 5,
            until: 15 * MIN
        }]
    );
    assert_eq!(d, [(5, Some(15 * MIN))]);
    assert_eq!(c, [4]);
    // Stable since: delivery 5 went at 15 min; a re-send after that goes as usual.
    let (v, d, c) = step_at(&firing, 16 * MIN);
    assert_eq!(v, [VerdictKind::Delivered { delivery: 6 }]);
    assert_eq!(d, [(6, None)]);
    assert!(c.is_empty());
}

/// A cancellation must never race a worker already sending the held firing: a resolution
/// within the margin of its due time lets both go, the firing first.
#[test]
fn a_resolution_just_before_the_held_firing_is_due_lets_both_go() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let delay = || gated_rule(Gate::Delay { ms: 2 * MIN }, false);
    let (v, ..) = run_gated(
        &mut s,
        &facts("a", AlertState::Firing),
        delay(),
        0,
        &mut next,
    );
    assert_eq!(
        v,
        [VerdictKind::Held {
            delivery: 1,
            until: 2 * MIN
        }]
    );
    let (v, d, c) = run_gated(
        &mut s,
        &facts("a", AlertState::Resolved),
        delay(),
        2 * MIN - CANCEL_MARGIN_MS,
        &mut next,
    );
    assert_eq!(v, [VerdictKind::Delivered { delivery: 2 }]);
    assert_eq!(d, [(2, None)]);
    assert!(c.is_empty(), "the held firing goes as planned");
}

/// The alert's facts while silence `id` matches it.
fn silenced_facts(id: &str, state: AlertState, silence: u64) -> AlertFacts {
    AlertFacts {
        silences: vec![silence],
        silencing: true,
        ..facts(id, state)
    }
}

pub(super) fn plain_rule() -> RuleChoice<String> {
    RuleChoice {
        rule: String::from("pages"),
        clauses: 0,
        targets: vec![(String::from("pager"), String::from("body"))],
        dedup: None,
        resolve_once: false,
        throttle: None,
        gate: None,
        group: None,
    }
}

fn silence_span(starts: u64, ends: u64) -> SilenceSpan {
    SilenceSpan {
        starts,
        ends,
        expired_early: false,
    }
}

#[test]
fn a_silence_holds_a_firing_until_it_ends_and_a_resend_joins_it() {
    let mut s = MemoryState::default();
    s.set_silence(1, silence_span(0, 60 * MIN));
    let mut next = 0;
    let firing = silenced_facts("a", AlertState::Firing, 1);
    let (v, d, _) = run_gated(&mut s, &firing, plain_rule(), MIN, &mut next);
    let held = VerdictKind::Silenced {
        silence: 1,
        until: 60 * MIN,
        delivery: Some(1),
    };
    assert_eq!(v, std::slice::from_ref(&held));
    assert_eq!(d, [(1, Some(60 * MIN))]);
    // A re-send joins it: nothing new is stored.
    let (v, d, _) = run_gated(&mut s, &firing, plain_rule(), 2 * MIN, &mut next);
    assert_eq!(v, [held]);
    assert!(d.is_empty());
    // The silence the router saw has been expired early: the state says so, and the next
    // firing goes at once.
    s.set_silence(
        1,
        SilenceSpan {
            ends: 3 * MIN,
            expired_early: true,
            ..silence_span(0, 0)
        },
    );
    let (v, d, _) = run_gated(&mut s, &firing, plain_rule(), 4 * MIN, &mut next);
    assert_eq!(v, [VerdictKind::Delivered { delivery: 2 }]);
    assert_eq!(d, [(2, None)]);
}

#[test]
fn a_resolution_cancels_the_firing_a_silence_holds_unless_the_silence_was_expired() {
    let mut s = MemoryState::default();
    s.set_silence(1, silence_span(0, 60 * MIN));
    let mut next = 0;
    run_gated(
        &mut s,
        &silenced_facts("a", AlertState::Firing, 1),
        plain_rule(),
        0,
        &mut next,
    );
    // The resolution need not match the silence: silences in force are enough to look.
    let resolved = AlertFacts {
        silencing: true,
        ..facts("a", AlertState::Resolved)
    };
    let (v, d, c) = run_gated(&mut s, &resolved, plain_rule(), MIN, &mut next);
    assert_eq!(v, [VerdictKind::Cancelled { of: 1 }]);
    assert!(d.is_empty());
    assert_eq!(c, [1]);

    // Expired early, the held firing was released: its resolution goes, after it.
    run_gated(
        &mut s,
        &silenced_facts("b", AlertState::Firing, 1),
        plain_rule(),
        2 * MIN,
        &mut next,
    );
    s.set_silence(
        1,
        SilenceSpan {
            ends: 3 * MIN,
            expired_early: true,
            ..silence_span(0, 0)
        },
    );
    let resolved = AlertFacts {
        silencing: true,
        ..facts("b", AlertState::Resolved)
    };
    let (v, d, c) = run_gated(&mut s, &resolved, plain_rule(), 4 * MIN, &mut next);
    assert_eq!(v, [VerdictKind::Delivered { delivery: 3 }]);
    assert_eq!(d, [(3, None)]);
    assert!(c.is_empty());
}

#[test]
fn a_silence_never_holds_a_resolution_and_a_mute_stays_a_mute() {
    let mut s = MemoryState::default();
    s.set_silence(1, silence_span(0, 60 * MIN));
    let mut next = 0;
    let (v, d, _) = run_gated(
        &mut s,
        &silenced_facts("a", AlertState::Resolved, 1),
        plain_rule(),
        MIN,
        &mut next,
    );
    assert_eq!(v, [VerdictKind::Delivered { delivery: 1 }]);
    assert_eq!(d, [(1, None)]);
    let mute = gated_rule(
        Gate::Mute {
            window: String::from("w"),
            until: Some(30 * MIN),
        },
        false,
    );
    let (v, _, _) = run_gated(
        &mut s,
        &silenced_facts("b", AlertState::Firing, 1),
        mute,
        MIN,
        &mut next,
    );
    assert_eq!(
        v,
        [VerdictKind::Muted {
            window: String::from("w"),
            until: 30 * MIN
        }]
    );
}

#[test]
fn a_delay_longer_than_the_silence_holds_to_its_own_end_and_its_resolution_still_cancels() {
    let mut s = MemoryState::default();
    s.set_silence(1, silence_span(0, 2 * MIN));
    let mut next = 0;
    let delay = || gated_rule(Gate::Delay { ms: 10 * MIN }, false);
    let (v, d, _) = run_gated(
        &mut s,
        &silenced_facts("a", AlertState::Firing, 1),
        delay(),
        0,
        &mut next,
    );
    assert_eq!(
        v,
        [VerdictKind::Silenced {
            silence: 1,
            until: 10 * MIN,
            delivery: Some(1)
        }]
    );
    assert_eq!(d, [(1, Some(10 * MIN))]);
    // The silence has ended; no silence is in force, yet the delay's own note cancels.
    let (v, _, c) = run_gated(
        &mut s,
        &facts("a", AlertState::Resolved),
        delay(),
        5 * MIN,
        &mut next,
    );
    assert_eq!(v, [VerdictKind::Cancelled { of: 1 }]);
    assert_eq!(c, [1]);
}

#[test]
fn a_silenced_alert_without_an_id_is_dropped() {
    let mut s = MemoryState::default();
    s.set_silence(1, silence_span(0, 60 * MIN));
    let mut next = 0;
    let no_id = AlertFacts {
        id: None,
        ..silenced_facts("x", AlertState::Firing, 1)
    };
    let (v, d, _) = run_gated(&mut s, &no_id, plain_rule(), MIN, &mut next);
    assert_eq!(
        v,
        [VerdictKind::Silenced {
            silence: 1,
            until: 60 * MIN,
            delivery: None
        }]
    );
    assert!(d.is_empty());
}

/// The facts of alert `id` in `state` for one inhibit, as its source, its target or both.
fn inhibit_facts(id: &str, state: AlertState, key: &str, source: bool, target: bool) -> AlertFacts {
    AlertFacts {
        inhibits: vec![InhibitFact {
            inhibit: String::from("warn under crit"),
            key: Some(key.as_bytes().to_vec()),
            target,
            source,
        }],
        ..facts(id, state)
    }
}

#[test]
fn an_inhibit_keeps_targets_out_while_a_source_with_the_same_key_fires() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let crit = |state| inhibit_facts("crit", state, "eu", true, false);
    let warn = |id: &str, key: &str| inhibit_facts(id, AlertState::Firing, key, false, true);
    // The source fires (and is delivered: it is no target).
    let (v, _, _) = run_gated(
        &mut s,
        &crit(AlertState::Firing),
        plain_rule(),
        0,
        &mut next,
    );
    assert_eq!(v, [VerdictKind::Delivered { delivery: 1 }]);
    // A target with the same key is kept out; another key is not.
    let (v, d, _) = run_gated(&mut s, &warn("w1", "eu"), plain_rule(), MIN, &mut next);
    assert_eq!(
        v,
        [VerdictKind::Inhibited {
            inhibit: String::from("warn under crit"),
            by: String::from("crit")
        }]
    );
    assert!(d.is_empty());
    let (v, _, _) = run_gated(&mut s, &warn("w2", "us"), plain_rule(), MIN, &mut next);
    assert_eq!(v, [VerdictKind::Delivered { delivery: 2 }]);
    // A target's resolution is never inhibited.
    let (v, _, _) = run_gated(
        &mut s,
        &inhibit_facts("w1", AlertState::Resolved, "eu", false, true),
        plain_rule(),
        2 * MIN,
        &mut next,
    );
    assert_eq!(v, [VerdictKind::Delivered { delivery: 3 }]);
    // The source resolves: targets go again.
    run_gated(
        &mut s,
        &crit(AlertState::Resolved),
        plain_rule(),
        3 * MIN,
        &mut next,
    );
    let (v, _, _) = run_gated(&mut s, &warn("w1", "eu"), plain_rule(), 4 * MIN, &mut next);
    assert_eq!(v, [VerdictKind::Delivered { delivery: 5 }]);
}

#[test]
fn an_alert_never_inhibits_itself_and_a_silent_source_is_forgotten_after_a_day() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let both = inhibit_facts("a", AlertState::Firing, "k", true, true);
    let (v, _, _) = run_gated(&mut s, &both, plain_rule(), 0, &mut next);
    assert_eq!(v, [VerdictKind::Delivered { delivery: 1 }]);
    let (v, _, _) = run_gated(&mut s, &both, plain_rule(), MIN, &mut next);
    assert_eq!(v, [VerdictKind::Delivered { delivery: 2 }], "not by itself");
    // Another alert that matches both sides is inhibited by the first.
    let other = inhibit_facts("b", AlertState::Firing, "k", true, true);
    let (v, _, _) = run_gated(&mut s, &other, plain_rule(), 2 * MIN, &mut next);
    assert!(
        matches!(v[..], [VerdictKind::Inhibited { ref by, .. }] if by == "a"),
        "{v:?}"
    );
    // A day after the last news of both sources, a target goes.
    let target = inhibit_facts("c", AlertState::Firing, "k", false, true);
    let later = 2 * MIN + INHIBIT_SOURCE_MS;
    let (v, _, _) = run_gated(&mut s, &target, plain_rule(), later, &mut next);
    assert!(matches!(v[..], [VerdictKind::Delivered { .. }]), "{v:?}");
}

#[test]
fn a_missing_matching_field_neither_inhibits_nor_is_inhibited() {
    let mut s = MemoryState::default();
    let mut next = 0;
    let no_key = |id: &str, source: bool, target: bool| AlertFacts {
        inhibits: vec![InhibitFact {
            inhibit: String::from("warn under crit"),
            key: None,
            target,
            source,
        }],
        ..facts(id, AlertState::Firing)
    };
    run_gated(
        &mut s,
        &no_key("crit", true, false),
        plain_rule(),
        0,
        &mut next,
    );
    let (v, _, _) = run_gated(
        &mut s,
        &no_key("warn", false, true),
        plain_rule(),
        MIN,
        &mut next,
    );
    assert!(matches!(v[..], [VerdictKind::Delivered { .. }]), "{v:?}");
    assert!(s.is_empty(), "nothing is remembered without a key");
}
