//! Delivery metrics in the Prometheus data model, ready for the server's `/metrics`. They
//! are the router's only counters: `Router::stats` reads them too, so an event is counted
//! in one place.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a delivery outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub(crate) target: String,
    /// `delivered`, `retried`, `fallback`, `dead`, `inhibited`.
    pub(crate) outcome: &'static str,
}

/// Labels of a suppressed delivery.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SuppressedLabel {
    pub(crate) rule: String,
    /// `duplicate`, `throttled`, `unannounced`.
    pub(crate) reason: &'static str,
}

/// Labels of a target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TargetLabel {
    pub(crate) target: String,
}

/// What a finished attempt counts as, once its outcome is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counted {
    Delivered,
    Retried,
    FellBack,
    Dead,
    /// A held firing an inhibit kept out when it was due: never attempted.
    Inhibited,
}

impl Counted {
    /// The `outcome` label.
    fn label(self) -> &'static str {
        match self {
            Counted::Delivered => "delivered",
            Counted::Retried => "retried",
            Counted::FellBack => "fallback",
            Counted::Dead => "dead",
            Counted::Inhibited => "inhibited",
        }
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// One target's series, looked up once by the target's worker instead of by label on every
/// attempt (hashing the label, with a copy of the target's name, three times a delivery).
/// A series stays in its family once made, so a held one is never a stale copy.
pub(crate) struct TargetMetrics {
    target: String,
    pub(crate) attempts: Counter,
    pub(crate) attempt_seconds: Histogram,
    /// Deliveries of this target being sent now.
    pub(crate) in_flight: Gauge,
    /// How many this target may have in flight now (its adaptive limit).
    pub(crate) in_flight_limit: Gauge,
    /// `deliveries` for this target, by [`Counted`], each made when first counted.
    outcomes: [Option<Counter>; 5],
}

impl TargetMetrics {
    /// [`Metrics::count`], through the series held for a delivery to this target.
    pub(crate) fn count(&mut self, all: &Metrics, target: String, kind: Counted) {
        if target != self.target {
            return all.count(target, kind);
        }
        all.totals[kind as usize].inc();
        self.outcomes[kind as usize]
            .get_or_insert_with(|| {
                all.deliveries
                    .get_or_create(&OutcomeLabel {
                        target,
                        outcome: kind.label(),
                    })
                    .clone()
            })
            .inc();
    }
}

/// Every metric of the delivery path. Clones share the same series.
#[derive(Clone)]
pub(crate) struct Metrics {
    pub(crate) submitted: Counter,
    pub(crate) unrouted: Counter,
    pub(crate) dropped: Counter,
    deliveries: Family<OutcomeLabel, Counter>,
    /// `deliveries` summed over targets, by [`Counted`]: for `Router::stats`, not exported.
    totals: [Counter; 5],
    pub(crate) attempts: Family<TargetLabel, Counter>,
    /// Deliveries being sent now, per target.
    pub(crate) in_flight: Family<TargetLabel, Gauge>,
    /// How many each target may have in flight now.
    pub(crate) in_flight_limit: Family<TargetLabel, Gauge>,
    suppressed: Family<SuppressedLabel, Counter>,
    pub(crate) state_entries: Gauge,
    /// Silences in force.
    pub(crate) silences_active: Gauge,
    pub(crate) attempt_seconds: Family<TargetLabel, Histogram, fn() -> Histogram>,
    pub(crate) submit_seconds: Histogram,
    pub(crate) pending: Gauge,
    pub(crate) dead_letters: Gauge,
    pub(crate) unreadable: Gauge,
    pub(crate) lost: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            submitted: Counter::default(),
            unrouted: Counter::default(),
            dropped: Counter::default(),
            deliveries: Family::default(),
            totals: Default::default(),
            attempts: Family::default(),
            in_flight: Family::default(),
            in_flight_limit: Family::default(),
            suppressed: Family::default(),
            state_entries: Gauge::default(),
            silences_active: Gauge::default(),
            attempt_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            submit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            pending: Gauge::default(),
            dead_letters: Gauge::default(),
            unreadable: Gauge::default(),
            lost: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Counts one finished attempt whose outcome is recorded.
    pub(crate) fn count(&self, target: String, kind: Counted) {
        self.totals[kind as usize].inc();
        self.deliveries
            .get_or_create(&OutcomeLabel {
                target,
                outcome: kind.label(),
            })
            .inc();
    }

    /// `target`'s series, for its worker to hold: see [`TargetMetrics`].
    pub(crate) fn for_target(&self, target: &str) -> TargetMetrics {
        let label = TargetLabel {
            target: target.to_owned(),
        };
        TargetMetrics {
            attempts: self.attempts.get_or_create(&label).clone(),
            attempt_seconds: self.attempt_seconds.get_or_create(&label).clone(),
            in_flight: self.in_flight.get_or_create(&label).clone(),
            in_flight_limit: self.in_flight_limit.get_or_create(&label).clone(),
            target: label.target,
            outcomes: Default::default(),
        }
    }

    /// Counts a delivery a rule that remembers kept out.
    pub(crate) fn suppressed(&self, rule: &str, reason: &'static str) {
        self.suppressed
            .get_or_create(&SuppressedLabel {
                rule: rule.to_owned(),
                reason,
            })
            .inc();
    }

    /// How many finished attempts counted as `kind`, over every target.
    pub(crate) fn total(&self, kind: Counted) -> u64 {
        self.totals[kind as usize].get()
    }

    /// Registers every series under the `switchyard` prefix.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("switchyard");
        r.register(
            "deliveries_in_flight",
            "Deliveries being sent now by this process, per target",
            self.in_flight.clone(),
        );
        r.register(
            "deliveries_in_flight_limit",
            "Deliveries this process may send at once now, per target (the adaptive limit)",
            self.in_flight_limit.clone(),
        );
        r.register(
            "alerts_submitted",
            "Alerts submitted to the router",
            self.submitted.clone(),
        );
        r.register(
            "alerts_unrouted",
            "Alerts no rule matched",
            self.unrouted.clone(),
        );
        r.register(
            "alerts_dropped",
            "Alerts a rule's drop action stopped",
            self.dropped.clone(),
        );
        r.register(
            "deliveries",
            "Recorded delivery outcomes by target: delivered, fallback and dead once per delivery; retried once per failed attempt that will be tried again; inhibited once per held firing an inhibit kept out when it was due",
            self.deliveries.clone(),
        );
        r.register(
            "deliveries_suppressed",
            "Deliveries a rule that remembers kept out, by rule and reason: duplicate (dedup), throttled (at most), unannounced (resolve once: a resolution of nothing delivered), muted, cancelled, silenced, inhibited",
            self.suppressed.clone(),
        );
        r.register(
            "state_entries",
            "Entries the rules' memory holds (dedup, resolve once, at most), expired ones not yet collected included",
            self.state_entries.clone(),
        );
        r.register(
            "silences_active",
            "Silences in force now (GET /api/silences lists them)",
            self.silences_active.clone(),
        );
        r.register(
            "delivery_attempts",
            "HTTP requests made, by target",
            self.attempts.clone(),
        );
        r.register(
            "delivery_attempt_seconds",
            "Time of one delivery attempt, by target",
            self.attempt_seconds.clone(),
        );
        r.register(
            "submit_seconds",
            "Time from submit to deliveries durable in the outbox",
            self.submit_seconds.clone(),
        );
        r.register(
            "outbox_pending",
            "Deliveries waiting in the outbox, in flight included",
            self.pending.clone(),
        );
        r.register(
            "dead_letters",
            "Deliveries given up and kept for an operator",
            self.dead_letters.clone(),
        );
        r.register(
            "outbox_unreadable_records",
            "Stored deliveries that could not be read since start; each is kept as a dead letter",
            self.unreadable.clone(),
        );
        r.register(
            "outbox_lost_deliveries",
            "Delivery ids the outbox's database had lost at start (a damaged write-ahead log), accepted with --accept-outbox-loss; 0 normally",
            self.lost.clone(),
        );
    }
}

#[cfg(test)]
#[path = "metrics_test.rs"]
mod tests;
