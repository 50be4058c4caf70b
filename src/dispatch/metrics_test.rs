//! The series a worker holds count exactly as the labelled families would.

use super::{Counted, Metrics, OutcomeLabel, TargetLabel};

/// A worker looks its target's series up once. What it counts through them lands in the
/// same series `/metrics` exports and `Router::stats` sums, a second holder shares them,
/// and a delivery of another target (which a worker is never given) still counts under
/// that target's own name.
#[test]
fn a_workers_held_series_count_as_the_labelled_ones_would() {
    let all = Metrics::default();
    let outcome = |target: &str, outcome: &'static str| {
        all.deliveries
            .get_or_create(&OutcomeLabel {
                target: target.to_owned(),
                outcome,
            })
            .get()
    };
    let mut pager = all.for_target("pager");
    pager.attempts.inc();
    pager.attempt_seconds.observe(0.002);
    pager.count(&all, String::from("pager"), Counted::Delivered);
    pager.count(&all, String::from("pager"), Counted::Delivered);
    pager.count(&all, String::from("pager"), Counted::Retried);
    pager.count(&all, String::from("chat"), Counted::Dead);
    let mut again = all.for_target("pager");
    again.count(&all, String::from("pager"), Counted::Delivered);
    assert_eq!(outcome("pager", "delivered"), 3);
    assert_eq!(outcome("pager", "retried"), 1);
    assert_eq!(outcome("pager", "dead"), 0);
    assert_eq!(outcome("chat", "dead"), 1);
    assert_eq!(all.total(Counted::Delivered), 3);
    assert_eq!(all.total(Counted::Retried), 1);
    assert_eq!(all.total(Counted::Dead), 1);
    let label = TargetLabel {
        target: String::from("pager"),
    };
    assert_eq!(all.attempts.get_or_create(&label).get(), 1);
    let mut registry = prometheus_client::registry::Registry::default();
    all.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("attempt_seconds_count{target=\"pager\"} 1\n"),
        "one attempt observed: {text}"
    );
}
