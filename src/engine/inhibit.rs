//! `inhibit` declarations, compiled, and what they say about one alert: whether it is a
//! source (firing, it keeps others out) or a target (it may be kept out), and its key (the
//! `matching` fields' values).
//!
//! Owns: the key of an inhibition (the canonical JSON of the `matching` values; `None`
//! when a field is missing, since a missing field equals nothing). Never: reads or writes
//! state (the step does).

use serde_json::Value;

use super::RuleSet;
use super::program::Pred;
use super::value::Path;
use crate::alert::Alert;
use crate::state::InhibitFact;

/// An `inhibit`, compiled.
#[derive(Debug)]
pub(crate) struct CompiledInhibit {
    pub(crate) name: String,
    pub(crate) location: String,
    pub(crate) target: Pred,
    pub(crate) source: Pred,
    pub(crate) matching: Vec<Path>,
    /// The `matching` fields as written, for explain.
    pub(crate) matching_text: Vec<String>,
}

impl CompiledInhibit {
    /// The canonical JSON of the alert's values at the `matching` fields; `None` when one
    /// of them reaches nothing.
    fn key(&self, alert: &Alert) -> Option<Vec<u8>> {
        let mut lists = Vec::with_capacity(self.matching.len());
        for p in &self.matching {
            let mut values = Vec::new();
            p.any(alert, &mut |v| {
                values.push(v.to_json());
                false
            });
            if values.is_empty() {
                return None;
            }
            lists.push(Value::Array(values));
        }
        serde_json::to_vec(&Value::Array(lists)).ok()
    }

    /// `labels.cluster=eu, labels.alertname=DiskFull`: the alert's `matching` values, as
    /// explain shows them; `None` without `matching`.
    pub(crate) fn shown_key(&self, alert: &Alert) -> Option<String> {
        (!self.matching.is_empty())
            .then(|| super::memory::shown_values(&self.matching, &self.matching_text, alert))
    }
}

impl super::Decision<'_> {
    /// [`RuleSet::inhibit_facts`] of the set that made this decision.
    pub fn inhibit_facts(&self, alert: &Alert) -> Vec<InhibitFact> {
        self.set.inhibit_facts(alert)
    }
}

impl RuleSet {
    /// What each `inhibit` says about `alert`: one fact per inhibit whose target or source
    /// condition it matches, in declaration order. Empty for a set without any.
    pub fn inhibit_facts(&self, alert: &Alert) -> Vec<InhibitFact> {
        let set = &*self.inner;
        set.inhibits
            .iter()
            .filter_map(|i| {
                let target = i.target.eval(set, alert);
                let source = i.source.eval(set, alert);
                (target || source).then(|| InhibitFact {
                    inhibit: i.name.clone(),
                    key: i.key(alert),
                    target,
                    source,
                })
            })
            .collect()
    }

    /// The `inhibit` declarations, for listings: name, `file:line`.
    pub fn inhibits(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.inner
            .inhibits
            .iter()
            .map(|i| (i.name.as_str(), i.location.as_str()))
    }
}
