//! What a change to the rules does to real alerts: every alert decided under the old rule
//! set and the new one, and the alerts whose outcome differs, grouped by change
//! ("12 alerts: pager -> chat, by rule `db`"). `switchyard diff` prints it; a dry-run
//! reload will answer with it.
//!
//! Owns: what counts as a change (the targets an alert goes to, `drop`, unrouted, and for
//! a target both sets post to, what it would be sent: URL, method, body), and how changes
//! are grouped. Never: delivers, or replays memory (`dedup`, `at most`, groups): each alert
//! is decided alone, as `switchyard route` decides it. Never shows a secret: URLs and
//! bodies are compared as they may be shown (`${env.NAME}` in place).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::alert::Alert;
use crate::engine::{Decision, RuleSet};

/// The most alerts listed under one change; the rest are counted.
pub const MAX_LISTED: usize = 10;

/// The alerts whose decision differs between two rule sets ([`RulesDiff::of`]).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RulesDiff {
    /// How many alerts were decided.
    pub alerts: usize,
    /// How many of them changed.
    pub changed: usize,
    /// The changes, most alerts first.
    pub changes: Vec<Change>,
}

/// One way decisions changed, and the alerts that changed so.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Change {
    /// The outcome before: target names in delivery order, `dropped`, `unrouted`, or
    /// `no target` (a rule matched, but posts nowhere).
    pub before: String,
    /// The outcome after.
    pub after: String,
    /// Targets both sets post to whose URL, method or body changes.
    pub sent_differently: Vec<String>,
    /// Rules that fire only under the old set.
    pub rules_before: Vec<String>,
    /// Rules that fire only under the new set.
    pub rules_after: Vec<String>,
    /// How many alerts changed so.
    pub count: usize,
    /// The first of them ([`MAX_LISTED`]).
    pub alerts: Vec<ChangedAlert>,
}

/// An alert that changed: where it is in the input, and what names it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ChangedAlert {
    /// The recorded file it was read from, when the recording is a folder of files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The line of the recording it was read from (1-based; the alerts of one webhook
    /// share their line); from [`RulesDiff::of`], its place in the input.
    pub line: usize,
    /// `@source`.
    pub source: String,
    /// `@id`, when the sender gives one.
    pub id: Option<String>,
    /// `@name`, when the sender gives one.
    pub name: Option<String>,
}

/// The outcome of a decision, in words.
fn outcome(d: &Decision<'_>) -> String {
    if d.unrouted() {
        return String::from("unrouted");
    }
    let targets: Vec<&str> = d.target_names().collect();
    match (targets.is_empty(), d.dropped()) {
        (true, true) => String::from("dropped"),
        (true, false) => String::from("no target"),
        (false, true) => format!("{}, then dropped", targets.join(", ")),
        (false, false) => targets.join(", "),
    }
}

/// What a target would be sent for an alert, as it may be shown.
fn sent(set: &RuleSet, target: &str, alert: &Alert) -> Option<(String, &'static str, String)> {
    let t = set.target(target)?;
    Some((
        t.url_display(),
        t.method(),
        t.render_body_display(alert).to_string(),
    ))
}

/// How alerts changed, so far: what [`RulesDiff::of`] folds alerts into, one at a time, so
/// a recording of any length is read in constant memory.
#[derive(Default)]
pub struct DiffBuilder {
    groups: BTreeMap<Key, Group>,
    alerts: usize,
    changed: usize,
}

/// How one alert's decision differs between two rule sets ([`Difference::of`]): the one
/// definition of a change, for `switchyard diff`, a dry-run reload and shadow rules.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Difference {
    /// The outcome under the old (live) set: target names, `dropped`, `unrouted`,
    /// `no target`.
    pub before: String,
    /// The outcome under the new (candidate, shadow) set.
    pub after: String,
    /// Targets both post to whose URL, method or body differs.
    pub sent_differently: Vec<String>,
    /// Rules that fire only under the old set.
    pub rules_before: Vec<String>,
    /// Rules that fire only under the new set.
    pub rules_after: Vec<String>,
}

impl Difference {
    /// How `alert`'s decision differs from `old` to `new`; `None` when it is the same
    /// (the same targets, drop and unrouted, and each target sent the same).
    pub fn of(old: &RuleSet, new: &RuleSet, alert: &Alert) -> Option<Difference> {
        let (a, b) = (old.evaluate(alert), new.evaluate(alert));
        let mut before_targets: Vec<&str> = a.target_names().collect();
        let mut after_targets: Vec<&str> = b.target_names().collect();
        before_targets.sort_unstable();
        after_targets.sort_unstable();
        let sent_differently: Vec<String> = after_targets
            .iter()
            .filter(|t| before_targets.contains(t))
            .filter(|t| sent(old, t, alert) != sent(new, t, alert))
            .map(|t| (*t).to_owned())
            .collect();
        let same = before_targets == after_targets
            && a.dropped() == b.dropped()
            && a.unrouted() == b.unrouted()
            && sent_differently.is_empty();
        if same {
            return None;
        }
        let fired_a: Vec<&str> = a.rule_ids().collect();
        let fired_b: Vec<&str> = b.rule_ids().collect();
        let only = |x: &[&str], y: &[&str]| -> Vec<String> {
            x.iter()
                .filter(|r| !y.contains(r))
                .map(|r| (*r).to_owned())
                .collect()
        };
        Some(Difference {
            before: outcome(&a),
            after: outcome(&b),
            sent_differently,
            rules_before: only(&fired_a, &fired_b),
            rules_after: only(&fired_b, &fired_a),
        })
    }
}

/// A change, as the groups are keyed.
type Key = Difference;

/// The alerts of one change: how many, the first few, and where the first was.
struct Group {
    count: usize,
    listed: Vec<ChangedAlert>,
    first: usize,
}

impl DiffBuilder {
    /// Decides one more alert, read from `line` of the input, under both sets.
    pub fn add(&mut self, old: &RuleSet, new: &RuleSet, alert: &Alert, line: usize) {
        self.add_from(old, new, alert, None, line);
    }

    /// [`DiffBuilder::add`] for an alert read from `line` of `file` (a recording of several
    /// files).
    pub fn add_from(
        &mut self,
        old: &RuleSet,
        new: &RuleSet,
        alert: &Alert,
        file: Option<&str>,
        line: usize,
    ) {
        let i = self.alerts;
        self.alerts += 1;
        let Some(key) = Difference::of(old, new, alert) else {
            return;
        };
        self.changed += 1;
        let group = self.groups.entry(key).or_insert(Group {
            count: 0,
            listed: Vec::new(),
            first: i,
        });
        group.count += 1;
        if group.listed.len() < MAX_LISTED {
            group.listed.push(ChangedAlert {
                file: file.map(str::to_owned),
                line,
                source: alert.source().as_str().to_owned(),
                id: alert.id().map(str::to_owned),
                name: alert.name().map(str::to_owned),
            });
        }
    }

    /// The changes, most alerts first; among equals, in the order the input first showed
    /// them.
    pub fn finish(self) -> RulesDiff {
        let mut changes: Vec<(usize, Change)> = self
            .groups
            .into_iter()
            .map(|(d, g)| {
                (
                    g.first,
                    Change {
                        before: d.before,
                        after: d.after,
                        sent_differently: d.sent_differently,
                        rules_before: d.rules_before,
                        rules_after: d.rules_after,
                        count: g.count,
                        alerts: g.listed,
                    },
                )
            })
            .collect();
        changes.sort_by(|(fa, a), (fb, b)| b.count.cmp(&a.count).then(fa.cmp(fb)));
        RulesDiff {
            alerts: self.alerts,
            changed: self.changed,
            changes: changes.into_iter().map(|(_, c)| c).collect(),
        }
    }
}

impl RulesDiff {
    /// Decides every alert under both sets and groups the ones whose outcome differs.
    ///
    /// ```
    /// use switchyard::{Alert, RuleSet, RulesDiff};
    /// let t = "target pager { url = \"https://example.test/p\" }\n\
    ///          target chat { url = \"https://example.test/c\" }\n";
    /// let old = RuleSet::from_files([("a.rules", format!("{t}when sev == \"high\" -> post pager\nwhen sev == \"low\" -> post chat"))])?;
    /// let new = RuleSet::from_files([("a.rules", format!("{t}rule \"db\" when sev == \"high\" -> post chat\nwhen sev == \"low\" -> post chat"))])?;
    /// let alerts = [Alert::new(serde_json::json!({"sev": "high"})), Alert::new(serde_json::json!({"sev": "low"}))];
    /// let d = RulesDiff::of(&old, &new, &alerts);
    /// assert_eq!((d.alerts, d.changed), (2, 1));
    /// assert_eq!(d.changes[0].before, "pager");
    /// assert_eq!(d.changes[0].after, "chat");
    /// assert_eq!(d.changes[0].rules_after, ["db"]);
    /// # Ok::<(), switchyard::Error>(())
    /// ```
    pub fn of<'a>(
        old: &RuleSet,
        new: &RuleSet,
        alerts: impl IntoIterator<Item = &'a Alert>,
    ) -> RulesDiff {
        let mut b = DiffBuilder::default();
        for (i, alert) in alerts.into_iter().enumerate() {
            b.add(old, new, alert, i + 1);
        }
        b.finish()
    }

    /// True when no alert changed.
    pub fn is_empty(&self) -> bool {
        self.changed == 0
    }
}

fn quoted(rules: &[String]) -> String {
    rules
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for RulesDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        for c in &self.changes {
            write!(
                f,
                "{} alert{}: {} -> {}",
                c.count,
                plural(c.count),
                c.before,
                c.after
            )?;
            if !c.sent_differently.is_empty() {
                write!(f, " (sent differently: {})", c.sent_differently.join(", "))?;
            }
            let mut by = Vec::new();
            if !c.rules_after.is_empty() {
                by.push(format!("now by {}", quoted(&c.rules_after)));
            }
            if !c.rules_before.is_empty() {
                by.push(format!("no longer by {}", quoted(&c.rules_before)));
            }
            if !by.is_empty() {
                write!(f, ", {}", by.join("; "))?;
            }
            writeln!(f)?;
            for a in &c.alerts {
                match &a.file {
                    Some(file) => write!(f, "    {file}:{} ({}", a.line, a.source)?,
                    None => write!(f, "    line {} ({}", a.line, a.source)?,
                }
                if let Some(id) = &a.id {
                    write!(f, ", @id {id}")?;
                }
                if let Some(name) = &a.name {
                    write!(f, ", @name {name}")?;
                }
                writeln!(f, ")")?;
            }
            if c.count > c.alerts.len() {
                writeln!(f, "    and {} more", c.count - c.alerts.len())?;
            }
        }
        if self.is_empty() {
            writeln!(
                f,
                "no change: all {} alert{} are decided as before",
                self.alerts,
                plural(self.alerts)
            )
        } else {
            writeln!(
                f,
                "{} of {} alert{} change ({} way{})",
                self.changed,
                self.alerts,
                plural(self.alerts),
                self.changes.len(),
                plural(self.changes.len())
            )
        }
    }
}

#[cfg(test)]
#[path = "diff_test.rs"]
mod tests;
