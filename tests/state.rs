//! Routing that remembers, through the router: `dedup`, `resolve once` and `at most` with
//! their state in the outbox (and in memory), across a restart, against a real receiver on
//! 127.0.0.1.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::data::{DataDir, wait_until};
use support::receiver::Receiver;
use switchyard::state::VerdictKind;
use switchyard::{Alert, Backoff, Router, RuleSet, State};

const WAIT: Duration = Duration::from_secs(10);

async fn router(rules: &RuleSet, dir: Option<&DataDir>) -> Router {
    let b = Router::builder().rules(rules.clone()).backoff(Backoff {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
    });
    let b = match dir {
        Some(d) => b.data_dir(&d.0),
        None => b.in_memory(true),
    };
    b.build().await.unwrap_or_else(|e| panic!("{e}"))
}

/// The rule set of one file's text.
fn rules_from(text: String) -> RuleSet {
    RuleSet::from_files([("t.rules", text.as_str())]).unwrap_or_else(|e| panic!("{e}"))
}

fn alert(id: &str, state: State) -> Alert {
    Alert::new(json!({"id": id, "status": state.as_str(), "team": "db"}))
        .with_id(id)
        .with_state(state)
}

fn kinds(s: &switchyard::Submitted) -> Vec<&'static str> {
    s.verdicts
        .iter()
        .map(|v| match v.kind {
            VerdictKind::Delivered { .. } => "delivered",
            VerdictKind::Duplicate { .. } => "duplicate",
            VerdictKind::Throttled { .. } => "throttled",
            VerdictKind::Diverted { .. } => "diverted",
            VerdictKind::Unannounced => "unannounced",
            VerdictKind::Held { .. } => "held",
            VerdictKind::Muted { .. } => "muted",
            VerdictKind::Cancelled { .. } => "cancelled",
            _ => "other",
        })
        .collect()
}

/// Prometheus re-sends a firing alert every minute: one page, however many copies, and a
/// restart (the state is in the outbox file, committed with the deliveries) changes
/// nothing. The resolution goes once, and a second resolved copy goes nowhere.
#[tokio::test]
async fn resends_page_once_across_a_restart_and_the_resolution_goes_once() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("state-resends");
    let rules = rules_from(format!(
        r#"target pager {{ url = "{}" }}
               rule "pages" when exists(status) -> post pager, dedup for 1h, resolve once"#,
        rx.url("/pager")
    ));

    let r = router(&rules, Some(&dir)).await;
    let first = r.submit(&alert("a1", State::Firing)).await.unwrap();
    assert_eq!(kinds(&first), ["delivered"]);
    assert_eq!(first.deliveries.len(), 1);
    for _ in 0..3 {
        let again = r.submit(&alert("a1", State::Firing)).await.unwrap();
        assert_eq!(kinds(&again), ["duplicate"]);
        assert!(again.deliveries.is_empty());
        match &again.verdicts[0].kind {
            VerdictKind::Duplicate { of, until, .. } => {
                assert_eq!(*of, first.deliveries[0], "names the delivery it repeats");
                assert!(until.is_some());
            }
            other => panic!("{other:?}"),
        }
    }
    rx.wait_for("/pager", 1, WAIT).await;
    r.shutdown(Duration::from_secs(1)).await;
    drop(r);

    let r = router(&rules, Some(&dir)).await;
    let after_restart = r.submit(&alert("a1", State::Firing)).await.unwrap();
    assert_eq!(
        kinds(&after_restart),
        ["duplicate"],
        "the state survived the restart"
    );
    let resolved = r.submit(&alert("a1", State::Resolved)).await.unwrap();
    assert_eq!(kinds(&resolved), ["delivered"]);
    let again = r.submit(&alert("a1", State::Resolved)).await.unwrap();
    assert_eq!(kinds(&again), ["unannounced"], "exactly one resolution");
    let never = r.submit(&alert("zz", State::Resolved)).await.unwrap();
    assert_eq!(
        kinds(&never),
        ["unannounced"],
        "nothing announced, nothing resolved"
    );
    rx.wait_for("/pager", 2, WAIT).await;
    wait_until(WAIT, || r.stats().pending == 0).await;
    assert_eq!(rx.count("/pager"), 2, "one firing, one resolution");
    // Counted since this router started: one duplicate, two resolutions owed nothing.
    let metrics = r.metrics_text();
    assert!(
        metrics.contains(
            r#"switchyard_deliveries_suppressed_total{rule="pages",reason="duplicate"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"switchyard_deliveries_suppressed_total{rule="pages",reason="unannounced"} 2"#
        ),
        "{metrics}"
    );
    r.shutdown(Duration::from_secs(1)).await;
}

/// `resolve once` sends the resolution even when the resolved alert no longer matches
/// (Alibaba's `OK` callback fails `curValue > 90`).
#[tokio::test]
async fn the_resolution_goes_out_though_the_resolved_alert_no_longer_matches() {
    let dir = DataDir::new("state-no-longer-matches");
    resolution_without_a_match(None).await;
    resolution_without_a_match(Some(&dir)).await;
}

async fn resolution_without_a_match(dir: Option<&DataDir>) {
    let rx = Receiver::start().await;
    let rules = rules_from(format!(
        r#"target pager {{ url = "{}" }}
               rule "cpu" when curValue > 90 -> post pager, resolve once"#,
        rx.url("/pager")
    ));
    let r = router(&rules, dir).await;
    let firing = Alert::new(json!({"curValue": 95}))
        .with_id("i-1")
        .with_state(State::Firing);
    let resolved = Alert::new(json!({"curValue": 20}))
        .with_id("i-1")
        .with_state(State::Resolved);
    assert_eq!(kinds(&r.submit(&firing).await.unwrap()), ["delivered"]);
    let back = r.submit(&resolved).await.unwrap();
    assert!(back.decision.unrouted, "no rule matches the resolved alert");
    assert_eq!(
        kinds(&back),
        ["delivered"],
        "its resolution goes out all the same"
    );
    rx.wait_for("/pager", 2, WAIT).await;
    r.shutdown(Duration::from_secs(1)).await;
}

/// Found by the interop test with a real Prometheus: a resolution owed by `resolve once`
/// to a target no rule chose (the resolved alert no longer matches) was stored but its
/// target's worker was not woken, so an idle worker never sent it (and a busy one did: the
/// earlier test passed by chance). Every target that gets a delivery is woken now.
#[tokio::test]
async fn a_resolution_owed_by_resolve_once_wakes_an_idle_worker() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("state-wakes-idle");
    let rules = rules_from(format!(
        r#"target pager {{ url = "{}" }}
               rule "cpu" when curValue > 90 -> post pager, resolve once"#,
        rx.url("/pager")
    ));
    let r = router(&rules, Some(&dir)).await;
    let firing = Alert::new(json!({"curValue": 95}))
        .with_id("i-1")
        .with_state(State::Firing);
    r.submit(&firing).await.unwrap();
    rx.wait_for("/pager", 1, WAIT).await;
    wait_until(WAIT, || r.stats().pending == 0 && r.stats().delivered == 1).await;
    // The pager's worker is idle now, with nothing due.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resolved = Alert::new(json!({"curValue": 20}))
        .with_id("i-1")
        .with_state(State::Resolved);
    assert_eq!(kinds(&r.submit(&resolved).await.unwrap()), ["delivered"]);
    let got = rx.wait_for("/pager", 2, WAIT).await;
    assert_eq!(got.len(), 2, "the resolution reached the pager");
    r.shutdown(Duration::from_secs(1)).await;
}

/// `at most 2 per 1m by team else post digest`: the third alert of a team goes to the
/// digest; another team has its own window.
#[tokio::test]
async fn at_most_n_per_window_sends_the_excess_to_the_else_target() {
    let rx = Receiver::start().await;
    let rules = rules_from(format!(
        r#"target chat {{ url = "{}" }}
               target digest {{ url = "{}" }}
               rule "team chat" when exists(team) -> post chat, at most 2 per 1m by team else post digest"#,
        rx.url("/chat"),
        rx.url("/digest")
    ));
    let r = router(&rules, None).await;
    for i in 0..2 {
        let s = r
            .submit(&alert(&format!("a{i}"), State::Firing))
            .await
            .unwrap();
        assert_eq!(kinds(&s), ["delivered"]);
    }
    let third = r.submit(&alert("a2", State::Firing)).await.unwrap();
    assert_eq!(kinds(&third), ["diverted"]);
    let other_team = Alert::new(json!({"team": "web"}))
        .with_id("w1")
        .with_state(State::Firing);
    assert_eq!(kinds(&r.submit(&other_team).await.unwrap()), ["delivered"]);
    rx.wait_for("/chat", 3, WAIT).await;
    rx.wait_for("/digest", 1, WAIT).await;
    wait_until(WAIT, || r.stats().pending == 0).await;
    assert_eq!((rx.count("/chat"), rx.count("/digest")), (3, 1));
    r.shutdown(Duration::from_secs(1)).await;
}

/// `POST /api/explain` previews what rules that remember would do now, against the live
/// state, and stores nothing: the announcement a preview "uses" is still there for the
/// real resolution.
#[tokio::test]
async fn a_preview_shows_the_verdicts_and_stores_nothing() {
    let dir = DataDir::new("state-preview");
    for d in [None, Some(&dir)] {
        let rx = Receiver::start().await;
        let rules = rules_from(format!(
            r#"target pager {{ url = "{}" }}
                   rule "pages" when exists(status) -> post pager, dedup until resolved, resolve once"#,
            rx.url("/pager")
        ));
        let r = router(&rules, d).await;
        let first = r.submit(&alert("a1", State::Firing)).await.unwrap();
        let preview = r
            .preview(&[alert("a1", State::Firing), alert("a1", State::Resolved)])
            .await
            .unwrap();
        match &preview[0][0].kind {
            VerdictKind::Duplicate { of, .. } => assert_eq!(*of, first.deliveries[0]),
            other => panic!("{other:?}"),
        }
        assert_eq!(preview[1][0].kind, VerdictKind::Delivered { delivery: 0 });
        assert_eq!(r.stats().submitted, 1, "a preview submits nothing");
        let resolved = r.submit(&alert("a1", State::Resolved)).await.unwrap();
        assert_eq!(
            kinds(&resolved),
            ["delivered"],
            "the preview consumed nothing"
        );
        rx.wait_for("/pager", 2, WAIT).await;
        r.shutdown(Duration::from_secs(1)).await;
    }
}

/// Rules without a clause behave as before: no verdicts, every copy delivered.
#[tokio::test]
async fn a_rule_without_memory_delivers_every_copy() {
    let rx = Receiver::start().await;
    let rules = rules_from(format!(
        r#"target t {{ url = "{}" }}
               when exists(status) -> post t"#,
        rx.url("/t")
    ));
    let r = router(&rules, None).await;
    for _ in 0..3 {
        let s = r.submit(&alert("a1", State::Firing)).await.unwrap();
        assert!(s.verdicts.is_empty());
        assert_eq!(s.deliveries.len(), 1);
    }
    rx.wait_for("/t", 3, WAIT).await;
    r.shutdown(Duration::from_secs(1)).await;
}
