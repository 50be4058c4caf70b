//! The server's own metrics (requests, alerts received, reloads, the set in use) and the
//! registry `/metrics` encodes, with the router's. Handlers call one method per event;
//! nothing here decides anything.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use std::sync::OnceLock;

use crate::alert::Source;
use crate::dispatch::Router;
use crate::engine::RuleSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HashLabel {
    hash: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    // Static names: a `String` here cost an allocation per request and per alert.
    source: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RuleLabel {
    pub(crate) rule: String,
}

/// The server's metrics, registered with the router's in one registry.
pub(crate) struct ServerMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// `requests` with status 202, by [`Source`] (then `detect`), each made when first
    /// counted: found without hashing a label on every request.
    accepted: [OnceLock<Counter>; Source::ALL.len() + 1],
    alerts: Family<SourceLabel, Counter>,
    /// `alerts` by [`Source`], the same way.
    alerts_from: [OnceLock<Counter>; Source::ALL.len()],
    /// `alerts` over every source, for the console's rate (not exported).
    received: Counter,
    /// Alerts each rule fired for, by the rule's name or `file:line`, since start.
    rule_hits: Family<RuleLabel, Counter>,
    /// The same counters by name, found without making a label (an allocation) per hit.
    /// Names come from the rules' files, not from senders, so the unkeyed hash is safe.
    hits_by_name: std::sync::RwLock<rustc_hash::FxHashMap<String, Counter>>,
    reloads: Family<OutcomeLabel, Counter>,
    last_reload_ok: Gauge,
    last_reload_success_seconds: Gauge,
    rules_loaded: Gauge,
    targets_loaded: Gauge,
    rules_hash: Family<HashLabel, Gauge>,
}

impl ServerMetrics {
    /// The server's metrics and `router`'s, in one registry.
    pub(crate) fn new(router: &Router) -> ServerMetrics {
        let mut registry = Registry::default();
        router.register_metrics(&mut registry);
        let m = ServerMetrics {
            registry: Registry::default(),
            requests: Family::default(),
            accepted: Default::default(),
            alerts: Family::default(),
            alerts_from: Default::default(),
            received: Counter::default(),
            rule_hits: Family::default(),
            hits_by_name: std::sync::RwLock::default(),
            reloads: Family::default(),
            last_reload_ok: Gauge::default(),
            last_reload_success_seconds: Gauge::default(),
            rules_loaded: Gauge::default(),
            targets_loaded: Gauge::default(),
            rules_hash: Family::default(),
        };
        let sub = registry.sub_registry_with_prefix("switchyard");
        sub.register(
            "http_ingest_requests",
            "Ingest requests by source and status",
            m.requests.clone(),
        );
        sub.register(
            "alerts_received",
            "Alerts received, by source",
            m.alerts.clone(),
        );
        sub.register(
            "rule_hits",
            "Alerts each rule fired for since start, by the rule's name or file:line (a rule reloaded under the same name keeps counting)",
            m.rule_hits.clone(),
        );
        sub.register(
            "reloads",
            "Rule reloads by outcome (loaded, rejected, unchanged, watch_error, reload_error)",
            m.reloads.clone(),
        );
        sub.register(
            "reload_last_success",
            "1 if the last reload attempt loaded (or found the folder as loaded), 0 if it was rejected",
            m.last_reload_ok.clone(),
        );
        sub.register(
            "reload_last_success_timestamp_seconds",
            "When rules were last loaded, Unix time",
            m.last_reload_success_seconds.clone(),
        );
        sub.register(
            "rules_loaded",
            "Rules in the set in use",
            m.rules_loaded.clone(),
        );
        sub.register(
            "targets_loaded",
            "Targets in the set in use",
            m.targets_loaded.clone(),
        );
        sub.register(
            "rules_content_hash",
            "The content hash of the set in use, as a label (value 1)",
            m.rules_hash.clone(),
        );
        ServerMetrics { registry, ..m }
    }

    /// An ingest request for `source` (`None`: detected from the body) answered with
    /// `status`. An accepted one counts through the series held for its source.
    pub(crate) fn request(&self, source: Option<Source>, status: u16) {
        let label = RequestLabels {
            source: source.map_or("detect", Source::as_str),
            status,
        };
        let held = (status == 202)
            .then(|| source.map_or(Source::ALL.len(), |s| s as usize))
            .and_then(|at| self.accepted.get(at));
        count_held(held, &self.requests, &label);
    }

    /// An alert received from `source`, counted through the series held for it.
    pub(crate) fn alert(&self, source: Source) {
        let label = SourceLabel {
            source: source.as_str(),
        };
        count_held(self.alerts_from.get(source as usize), &self.alerts, &label);
        self.received.inc();
    }

    /// Alerts received since start, from every source.
    pub(crate) fn alerts_total(&self) -> u64 {
        self.received.get()
    }

    /// The rules that fired for one alert.
    pub(crate) fn fired(&self, rules: &[String]) {
        let known = self
            .hits_by_name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut new = Vec::new();
        for rule in rules {
            match known.get(rule) {
                Some(c) => {
                    c.inc();
                }
                None => new.push(rule),
            }
        }
        drop(known);
        for rule in new {
            self.hits(rule).inc();
        }
    }

    /// How many alerts `rule` fired for since start.
    pub(crate) fn rule_hits(&self, rule: &str) -> u64 {
        self.hits(rule).get()
    }

    /// The counter of `rule`: a read lock and a lookup by name; made (once) the first time.
    fn hits(&self, rule: &str) -> Counter {
        let known = self
            .hits_by_name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(rule)
            .cloned();
        known.unwrap_or_else(|| {
            let made = self
                .rule_hits
                .get_or_create(&RuleLabel {
                    rule: rule.to_owned(),
                })
                .clone();
            self.hits_by_name
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(rule.to_owned(), made.clone());
            made
        })
    }

    /// A reload that ended `outcome` (`loaded`, `rejected`, `unchanged`, `watch_error`, `reload_error`).
    pub(crate) fn reload(&self, outcome: &'static str) {
        self.reloads.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// The last reload attempt failed.
    pub(crate) fn reload_failed(&self) {
        self.last_reload_ok.set(0);
    }

    /// The last reload attempt succeeded: the running set matches the folder.
    pub(crate) fn reload_succeeded(&self) {
        self.last_reload_ok.set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_reload_success_seconds
            .set(i64::try_from(now).unwrap_or(i64::MAX));
    }

    /// The set in use is `set`.
    pub(crate) fn loaded(&self, set: &RuleSet) {
        self.rules_loaded
            .set(i64::try_from(set.rule_count()).unwrap_or(i64::MAX));
        self.targets_loaded
            .set(i64::try_from(set.targets().len()).unwrap_or(i64::MAX));
        self.rules_hash.clear();
        self.rules_hash
            .get_or_create(&HashLabel {
                hash: format!("{:016x}", set.content_hash()),
            })
            .set(1);
    }

    /// The recording's counters (`record:` on).
    pub(crate) fn recording(&mut self, stats: &super::record::RecordStats) {
        let sub = self.registry.sub_registry_with_prefix("switchyard");
        sub.register(
            "recorded_requests",
            "Accepted requests written to the recording",
            stats.written.clone(),
        );
        sub.register(
            "recorded_dropped",
            "Requests the recording kept but could not write: its queue full, a line larger than a file, a write failed (ingest is not affected)",
            stats.dropped.clone(),
        );
        sub.register(
            "recorded_redacted",
            "Secrets replaced before a recorded line was written",
            stats.redacted.clone(),
        );
    }

    /// The shadow rules' counters (`shadow_rules:` set).
    pub(crate) fn shadow(&mut self, shadow: &super::shadow::Shadow) {
        let sub = self.registry.sub_registry_with_prefix("switchyard");
        sub.register(
            "shadow_alerts",
            "Alerts decided by the shadow rules beside the live ones",
            shadow.alerts_total.clone(),
        );
        sub.register(
            "shadow_disagreements",
            "Alerts the shadow rules decide differently from the live ones, by the rule that fires under one set only (or, sending differently, the shadow rule that fired)",
            shadow.disagreements_total.clone(),
        );
    }

    /// Every metric, in the OpenMetrics text format.
    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Counts one in `family`'s series for `label`, through `held` when there is a slot for
/// it: the series is looked up by label only the first time.
fn count_held<L>(held: Option<&OnceLock<Counter>>, family: &Family<L, Counter>, label: &L)
where
    L: Clone + std::hash::Hash + Eq,
{
    match held {
        Some(held) => {
            held.get_or_init(|| family.get_or_create(label).clone())
                .inc();
        }
        None => {
            family.get_or_create(label).inc();
        }
    }
}

#[cfg(test)]
#[path = "metrics_test.rs"]
mod tests;
