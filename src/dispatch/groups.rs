//! The groups' clock: one task flushes the groups when they are due (`state::flush`, run
//! by the store inside a write), renders each notification for its target, and wakes the
//! targets' workers. It sleeps until the next group is due, or until a submit made one.
//!
//! Owns: when flushes run, and turning a group's notification into a delivery (the body
//! is Alertmanager's webhook, or the target's template reading it). Never: decides what a
//! flush notifies.

use std::sync::Arc;
use std::time::Duration;

use super::{RouterCore, now_ms, record};
use crate::alert::Alert;
use crate::engine::RuleSet;
use crate::state::GroupNote;

/// The longest the clock sleeps without looking: a bound, not a schedule (every group's
/// flush time is known).
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// After a failed flush (a full disk), how long until the next try.
const RETRY: Duration = Duration::from_secs(1);

/// A group's notification as a delivery to its target, with the rules in use now: the
/// webhook body, or the target's body template reading it. `None` when the target is no
/// longer declared (a reload removed it): the notification is dropped, with a warning.
pub(crate) fn render(rules: &RuleSet, note: &GroupNote<'_>, now: u64) -> Option<super::Record> {
    let Some(target) = rules.target(note.target) else {
        tracing::warn!(
            rule = note.rule,
            target = note.target,
            "a group's target is no longer declared; its notification is dropped"
        );
        return None;
    };
    let body = crate::engine::group::webhook_body(note);
    let key = body
        .get("groupKey")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    // Each group's notifications go in order, like one alert's.
    let alert = Alert::new(body).with_id(key);
    let delivery = rules.delivery(target, &alert);
    Some(record(delivery, &alert, now))
}

/// Runs until the router stops: flushes what is due, then sleeps until the next group is
/// due (at most [`MAX_SLEEP`]) or a submit wakes it.
pub(crate) async fn clock(core: Arc<RouterCore>) {
    let mut shutdown = core.shutdown.clone();
    loop {
        let now = now_ms();
        let rules = RuleSet::clone(&core.rules.load());
        let render: crate::dispatch::store::GroupRender =
            Box::new(move |note| render(&rules, note, now));
        let wait = match core.store.flush_groups(now, render).await {
            Ok(flushed) => {
                if flushed.sent > 0 {
                    tracing::debug!(notifications = flushed.sent, "groups notified");
                }
                for target in &flushed.targets {
                    core.wake(target);
                }
                flushed
                    .next
                    .map_or(MAX_SLEEP, |at| {
                        Duration::from_millis(at.saturating_sub(now_ms()))
                    })
                    .min(MAX_SLEEP)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the groups could not be flushed; trying again");
                RETRY
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = core.groups_changed.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
#[path = "groups_test.rs"]
mod tests;
