//! Shadow rules (`shadow_rules:`): a second rules folder decided beside the live one on
//! every accepted alert. It delivers nothing and remembers nothing; where its decision
//! differs from the live one (what [`crate::Difference`] calls a change), the
//! disagreement is counted by rule, logged with the alert's id, and kept for
//! `GET /api/shadow`.
//!
//! Owns: the shadow set in use (reloaded by its own watcher and SIGHUP; a broken edit
//! keeps the last good shadow set, or none), the disagreements' counters, the last ones
//! (a bounded ring), and the log's rate. Never: delivers, stores, or slows the 202 by more
//! than one evaluation per alert; logs more than [`LOGS_PER_SECOND`] lines a second.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use serde_json::{Value, json};

use super::metrics::RuleLabel;
use crate::alert::Alert;
use crate::diff::Difference;
use crate::engine::RuleSet;
use crate::reload::{Outcome, Reloader, RulesFolder};

/// The most disagreements `GET /api/shadow` keeps.
pub(crate) const MAX_RECENT: usize = 200;

/// The most disagreement log lines a second; the rest are counted in the next line.
pub(crate) const LOGS_PER_SECOND: u32 = 10;

/// One disagreement, as `GET /api/shadow` lists it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Disagreement {
    /// When the alert was received (RFC 3339), formatted only when shown.
    #[serde(serialize_with = "rfc3339")]
    at: jiff::Timestamp,
    source: &'static str,
    alert_id: Option<String>,
    name: Option<String>,
    /// The live set's outcome and the shadow set's, and how they differ.
    live: String,
    shadow: String,
    sent_differently: Vec<String>,
    /// Rules firing only under the live set, and only under the shadow set.
    rules_live_only: Vec<String>,
    rules_shadow_only: Vec<String>,
}

/// What the shadow holds besides its set.
struct Inner {
    recent: VecDeque<Disagreement>,
    /// Disagreements by rule since the shadow set in use was loaded, with the rule's
    /// counter since start (found once, not made again for every disagreement).
    by_rule: HashMap<String, (u64, Counter)>,
    alerts: u64,
    disagreements: u64,
    /// When the shadow set in use was loaded (ms since the epoch).
    loaded_ms: u64,
    /// The last shadow edit's diagnostics, while the folder holds it.
    rejected: Option<Value>,
    /// The log's budget: lines this second, and those not written.
    log_second: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

/// The shadow rules: their set, what they disagreed on, their counters.
pub(crate) struct Shadow {
    dir: PathBuf,
    set: ArcSwapOption<RuleSet>,
    inner: Mutex<Inner>,
    folder: Arc<RulesFolder>,
    /// Alerts decided by both sets, and disagreements by rule, since start (`/metrics`).
    pub(crate) alerts_total: Counter,
    pub(crate) disagreements_total: Family<RuleLabel, Counter>,
}

impl Shadow {
    /// The shadow folder `dir`, loaded now. A folder that cannot be read is an error (a
    /// mistaken path); one whose rules have errors starts without a shadow set, its
    /// diagnostics shown, until an edit fixes it.
    pub(crate) fn load(dir: PathBuf) -> Result<Shadow, String> {
        if !dir.is_dir() {
            return Err(format!(
                "shadow_rules: `{}` is not a folder; give the candidate rules folder, or remove shadow_rules",
                dir.display()
            ));
        }
        let (set, rejected, hash) = match RuleSet::load_dir(&dir) {
            Ok(set) => {
                let hash = set.content_hash();
                (Some(Arc::new(set)), None, hash)
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), "the shadow rules have errors; no shadow decisions until they are fixed:\n{}", rendered(&e));
                (None, Some(diagnostics_json(&e)), 0)
            }
        };
        Ok(Shadow {
            folder: Arc::new(RulesFolder::new(dir.clone(), hash)),
            dir,
            set: ArcSwapOption::new(set),
            inner: Mutex::new(Inner {
                recent: VecDeque::new(),
                by_rule: HashMap::new(),
                alerts: 0,
                disagreements: 0,
                loaded_ms: crate::dispatch::now_ms(),
                rejected,
                log_second: None,
                logged: 0,
                suppressed: 0,
            }),
            alerts_total: Counter::default(),
            disagreements_total: Family::default(),
        })
    }

    /// Watches the shadow folder: each edit reloads it. Kept alive by the caller.
    pub(crate) fn watch(self: &Arc<Shadow>) -> Option<Reloader> {
        let me = self.clone();
        match Reloader::watch_folder(self.folder.clone(), move |outcome| me.apply(outcome)) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the shadow rules folder; reload it with SIGHUP");
                None
            }
        }
    }

    /// Reloads the shadow folder now (SIGHUP).
    pub(crate) fn reload_now(&self) {
        self.apply(self.folder.reload(true));
    }

    /// Applies a reload of the shadow folder.
    fn apply(&self, outcome: Outcome) {
        let mut inner = self.lock();
        match outcome {
            Outcome::Loaded(set) | Outcome::Partial(set, _) => {
                tracing::info!(dir = %self.dir.display(), rules = set.rule_count(), hash = %format!("{:016x}", set.content_hash()), "shadow rules reloaded");
                self.set.store(Some(Arc::new(set)));
                inner.recent.clear();
                inner.by_rule.clear();
                inner.alerts = 0;
                inner.disagreements = 0;
                inner.loaded_ms = crate::dispatch::now_ms();
                inner.rejected = None;
            }
            Outcome::Rejected(e) => {
                tracing::warn!(dir = %self.dir.display(), "shadow reload rejected; the last good shadow rules stay:\n{}", rendered(&e));
                inner.rejected = Some(diagnostics_json(&e));
            }
            Outcome::TestsFailed(_) | Outcome::Unchanged => {}
            Outcome::WatchError(e) => {
                tracing::error!(error = %e, "the shadow rules watcher failed; reload with SIGHUP");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decides each alert with the shadow set too, and records where it disagrees with
    /// `live`.
    pub(crate) fn observe(&self, live: &RuleSet, alerts: &[Alert]) {
        let Some(shadow) = self.set.load_full() else {
            return;
        };
        let differences: Vec<(usize, Difference)> = alerts
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((i, Difference::of(live, &shadow, a)?)))
            .collect();
        self.alerts_total.inc_by(alerts.len() as u64);
        let mut inner = self.lock();
        inner.alerts += alerts.len() as u64;
        for (i, d) in differences {
            let Some(alert) = alerts.get(i) else { continue };
            inner.disagreements += 1;
            // The rules that fire under one set only; when the same rules fire and send
            // differently, the shadow's rules that fired.
            let blamed: Vec<String> = if d.rules_before.is_empty() && d.rules_after.is_empty() {
                shadow
                    .evaluate(alert)
                    .rule_ids()
                    .map(str::to_owned)
                    .collect()
            } else {
                d.rules_before
                    .iter()
                    .chain(&d.rules_after)
                    .cloned()
                    .collect()
            };
            for rule in blamed {
                let entry = inner.by_rule.entry(rule).or_insert_with_key(|rule| {
                    let total = self
                        .disagreements_total
                        .get_or_create(&RuleLabel { rule: rule.clone() })
                        .clone();
                    (0, total)
                });
                entry.0 += 1;
                entry.1.inc();
            }
            let entry = Disagreement {
                at: alert.received_at(),
                source: alert.source().as_str(),
                alert_id: alert.id().map(str::to_owned),
                name: alert.name().map(str::to_owned),
                live: d.before,
                shadow: d.after,
                sent_differently: d.sent_differently,
                rules_live_only: d.rules_before,
                rules_shadow_only: d.rules_after,
            };
            log(&mut inner, &entry);
            if inner.recent.len() == MAX_RECENT {
                inner.recent.pop_front();
            }
            inner.recent.push_back(entry);
        }
    }

    /// `GET /api/shadow`: the shadow set, its counts since it loaded, by rule, and the
    /// last disagreements (newest first).
    pub(crate) fn to_json(&self) -> Value {
        let set = self.set.load_full();
        let inner = self.lock();
        let mut by_rule: Vec<(&String, &u64)> = inner
            .by_rule
            .iter()
            .map(|(rule, (n, _))| (rule, n))
            .collect();
        by_rule.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        json!({
            "enabled": true,
            "dir": self.dir.display().to_string(),
            "rules": set.as_ref().map(|s| json!({
                "rules": s.rule_count(),
                "hash": format!("{:016x}", s.content_hash()),
                "files": s.sources().files().map(|f| f.short_name().to_owned()).collect::<Vec<_>>(),
            })),
            "loaded_ms": inner.loaded_ms,
            "rejected_reload": inner.rejected,
            "alerts": inner.alerts,
            "disagreements": inner.disagreements,
            "by_rule": by_rule.into_iter().map(|(rule, n)| json!({"rule": rule, "disagreements": n})).collect::<Vec<_>>(),
            "recent": inner.recent.iter().rev().collect::<Vec<_>>(),
        })
    }
}

fn rfc3339<S: serde::Serializer>(at: &jiff::Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(at)
}

/// Logs a disagreement within the log's budget.
fn log(inner: &mut Inner, d: &Disagreement) {
    let now = Instant::now();
    if inner
        .log_second
        .is_none_or(|t| now.duration_since(t).as_secs() >= 1)
    {
        inner.log_second = Some(now);
        inner.logged = 0;
    }
    if inner.logged >= LOGS_PER_SECOND {
        inner.suppressed += 1;
        return;
    }
    inner.logged += 1;
    let suppressed = std::mem::take(&mut inner.suppressed);
    tracing::info!(
        alert_id = d.alert_id.as_deref().unwrap_or("-"),
        source = d.source,
        live = %d.live,
        shadow = %d.shadow,
        rules_live_only = ?d.rules_live_only,
        rules_shadow_only = ?d.rules_shadow_only,
        sent_differently = ?d.sent_differently,
        not_logged_before = suppressed,
        "shadow rules disagree"
    );
}

fn rendered(e: &crate::Error) -> String {
    e.diagnostics()
        .map_or_else(|| e.to_string(), |d| d.render(crate::Format::Text))
}

fn diagnostics_json(e: &crate::Error) -> Value {
    e.diagnostics().map_or_else(
        || json!([{"message": e.to_string()}]),
        crate::Diagnostics::to_json,
    )
}

#[cfg(test)]
#[path = "shadow_test.rs"]
mod tests;
