use super::*;
use crate::engine::DecisionSummary;

/// A Prometheus request's body holding `n` alerts, labelled `n="0"`, `n="1"`, ...
fn body(n: usize, pad: usize) -> Body {
    let alerts: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "labels": { "alertname": "a", "n": i.to_string() },
                "annotations": { "pad": "x".repeat(pad) }
            })
        })
        .collect();
    Body {
        bytes: Bytes::from(serde_json::to_vec(&alerts).unwrap()),
        content_type: None,
        named: Some(Source::Prometheus),
    }
}

fn alerts_of(b: &Body) -> Vec<Alert> {
    let v = serde_json::from_slice(&b.bytes).unwrap();
    crate::alert::adapt_json_within(b.named, v, &crate::server::Limits::default().adapt_limits())
        .unwrap()
}

fn submitted(rule: &str) -> Submitted {
    Submitted {
        decision: DecisionSummary {
            targets: vec![String::from("pager")],
            rules: vec![rule.to_owned()],
            dropped: false,
            unrouted: false,
        },
        deliveries: vec![7],
        verdicts: Vec::new(),
    }
}

fn record(r: &Recent, n: usize) {
    let b = body(n + 1, 0);
    let alerts = alerts_of(&b);
    let subs: Vec<Submitted> = (0..=n).map(|i| submitted(&format!("rule {i}"))).collect();
    // Only the last alert of each request is recorded here.
    r.record(&alerts[n..], subs[n..].to_vec(), 42, &b);
}

#[test]
fn the_ring_keeps_the_newest_capacity_numbered_from_one() {
    let r = Recent::new(3);
    for n in 0..5 {
        record(&r, n);
    }
    let listed: Vec<(u64, String)> = r
        .list(10)
        .iter()
        .map(|d| (d.seq(), d.rules[0].clone()))
        .collect();
    assert_eq!(
        listed,
        [
            (5, String::from("rule 4")),
            (4, String::from("rule 3")),
            (3, String::from("rule 2"))
        ]
    );
    assert_eq!(r.list(1).len(), 1);
    assert!(r.get(2).is_none(), "pushed out");
    assert_eq!(
        r.get(4).map(|d| d.rules[0].clone()).as_deref(),
        Some("rule 3")
    );
    assert!(r.get(6).is_none() && r.get(0).is_none());
    let d = r.get(5).unwrap();
    assert_eq!(
        (d.targets.as_slice(), d.rules_hash),
        (&[String::from("pager")][..], 42)
    );
}

#[test]
fn an_alert_is_read_again_from_its_request_at_its_place_and_moment() {
    let r = Recent::new(10);
    let b = body(3, 0);
    let alerts = alerts_of(&b);
    let subs: Vec<Submitted> = (0..3).map(|i| submitted(&format!("rule {i}"))).collect();
    r.record(&alerts, subs, 1, &b);
    let second = r.get(2).unwrap();
    let again = Recent::alert(
        second.kept.as_ref().unwrap(),
        &crate::server::Limits::default().adapt_limits(),
    )
    .unwrap();
    assert_eq!(again.body()["labels"]["n"], "1");
    assert_eq!(again.received_at(), alerts[1].received_at());
    assert_eq!(again, alerts[1]);
}

#[test]
fn a_large_request_keeps_its_newest_alerts_and_not_its_body() {
    let r = Recent::new(2);
    let b = body(4, MAX_KEPT_BYTES / 4);
    assert!(b.bytes.len() > MAX_KEPT_BYTES);
    let alerts = alerts_of(&b);
    let subs: Vec<Submitted> = (0..4).map(|n| submitted(&format!("rule {n}"))).collect();
    r.record(&alerts, subs, 1, &b);
    let listed = r.list(10);
    assert_eq!(listed.len(), 2);
    assert_eq!(
        (listed[0].seq(), listed[0].rules[0].as_str()),
        (2, "rule 3")
    );
    assert!(
        listed.iter().all(|d| d.kept.is_none()),
        "over the cap: decision only"
    );
}

#[test]
fn capacity_zero_keeps_nothing_and_the_capacity_is_bounded() {
    let r = Recent::new(0);
    record(&r, 1);
    assert!(r.list(10).is_empty());
    assert_eq!(Recent::new(usize::MAX).capacity(), MAX_RECENT);
}

#[test]
fn every_decision_is_answered_in_order_whatever_the_ring_keeps() {
    // The ingest answer is written from what `record` returns: all of a request's
    // decisions, also those the ring has no room for, or with the ring off.
    for capacity in [0, 2, 10] {
        let r = Recent::new(capacity);
        let b = body(4, 0);
        let alerts = alerts_of(&b);
        let subs: Vec<Submitted> = (0..4).map(|n| submitted(&format!("rule {n}"))).collect();
        let answered = r.record(&alerts, subs, 1, &b);
        let rules: Vec<&str> = answered.iter().map(|d| d.rules[0].as_str()).collect();
        assert_eq!(
            rules,
            ["rule 0", "rule 1", "rule 2", "rule 3"],
            "capacity {capacity}"
        );
        assert_eq!(answered[3].deliveries, [7]);
        assert_eq!(r.list(10).len(), capacity.min(4), "capacity {capacity}");
        // Only what the ring holds keeps the request's body.
        let kept = answered.iter().filter(|d| d.kept.is_some()).count();
        assert_eq!(kept, capacity.min(4), "capacity {capacity}");
    }
}
