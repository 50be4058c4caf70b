use super::*;
use crate::engine::DecisionSummary;

fn alert(n: usize) -> Alert {
    Alert::new(serde_json::json!({ "n": n }))
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

fn record(r: &Recent, n: usize, body_bytes: usize) {
    r.record(
        &[alert(n)],
        &[submitted(&format!("rule {n}"))],
        42,
        body_bytes,
    );
}

#[test]
fn the_ring_keeps_the_newest_capacity_numbered_from_one() {
    let r = Recent::new(3);
    for n in 0..5 {
        record(&r, n, 100);
    }
    let listed: Vec<(u64, String)> = r
        .list(10)
        .iter()
        .map(|d| (d.seq, d.rules[0].clone()))
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
    assert_eq!(
        d.alert.as_ref().map(|a| a.body().clone()),
        Some(serde_json::json!({ "n": 4 }))
    );
}

#[test]
fn a_large_request_keeps_its_newest_alerts_and_no_payload_over_the_cap() {
    let r = Recent::new(2);
    let alerts: Vec<Alert> = (0..4).map(alert).collect();
    let subs: Vec<Submitted> = (0..4).map(|n| submitted(&format!("rule {n}"))).collect();
    r.record(&alerts, &subs, 1, 4 * (MAX_KEPT_BYTES + 1));
    let listed = r.list(10);
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].seq, listed[0].rules[0].as_str()), (2, "rule 3"));
    assert!(
        listed.iter().all(|d| d.alert.is_none()),
        "over the cap: decision only"
    );
}

#[test]
fn capacity_zero_keeps_nothing_and_the_capacity_is_bounded() {
    let r = Recent::new(0);
    record(&r, 1, 10);
    assert!(r.list(10).is_empty());
    assert_eq!(Recent::new(usize::MAX).capacity(), MAX_RECENT);
}
