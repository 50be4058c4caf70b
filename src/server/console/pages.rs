//! The console's pages as HTML: pure functions from what a handler read to markup. Every
//! value goes through maud's escaping; the only markup not escaped is the highlighter's,
//! which escapes its own pieces.
//!
//! Owns: the layout (navigation with its keys, the CSRF meta tag and form fields, the
//! refresh hint) and each page's shape. Never: reads the router or the store.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::super::csrf;
use crate::engine::{Explanation, PredicateTrace};

/// The pages, in the navigation's order, with their keys.
pub(crate) const TABS: &[(&str, &str, &str)] = &[
    ("overview", "Overview", "/ui"),
    ("rules", "Rules", "/ui/rules"),
    ("decisions", "Decisions", "/ui/decisions"),
    ("explain", "Explain", "/ui/explain"),
    ("deliveries", "Deliveries", "/ui/deliveries"),
    ("silences", "Silences", "/ui/silences"),
];

/// What every page needs besides its body.
pub(crate) struct Frame<'a> {
    pub(crate) tab: &'a str,
    pub(crate) title: &'a str,
    pub(crate) csrf: &'a str,
    /// A message of the last action: `(ok, text)`.
    pub(crate) flash: Option<(bool, String)>,
    /// Seconds between quiet refreshes of `<main>`, if the page has live data.
    pub(crate) refresh: Option<u32>,
}

/// A whole page.
pub(crate) fn page(frame: &Frame<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                (head(frame.title))
                meta name="csrf-token" content=(frame.csrf);
                script src="/ui/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui" { "switchyard" }
                    nav.tabs aria-label="Pages" {
                        @for (n, (id, label, href)) in TABS.iter().enumerate() {
                            @let key = (n + 1).to_string();
                            @if *id == frame.tab {
                                a href=(href) data-key=(key) aria-current="page" { (label) kbd { (key) } }
                            } @else {
                                a href=(href) data-key=(key) { (label) kbd { (key) } }
                            }
                        }
                    }
                }
                main data-refresh=[frame.refresh] {
                    @if let Some((ok, text)) = &frame.flash {
                        div.flash.ok[*ok].bad[!*ok] role="status" { (text) }
                    }
                    (body)
                }
            }
        }
    }
}

/// What every page's `<head>` holds.
fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        meta name="color-scheme" content="light dark";
        title { (title) " · switchyard" }
        link rel="stylesheet" href="/ui/assets/console.css";
        link rel="icon" type="image/svg+xml" href="/ui/assets/icon.svg";
    }
}

/// The hidden field that repeats the CSRF token in a form.
pub(crate) fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name=(csrf::FIELD) value=(token); }
}

/// A moment in ms as RFC 3339 (UTC, to the second).
pub(crate) fn moment(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(
            || ms.to_string(),
            |t| t.round(jiff::Unit::Second).unwrap_or(t).to_string(),
        )
}

/// `n` with thin grouping: 12 345.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// A card with a number and its label.
fn card(n: &str, label: &str) -> Markup {
    html! { div.card { div.n { (n) } div.l { (label) } } }
}

/// What the Overview shows.
pub(crate) struct Overview {
    pub(crate) rules: usize,
    pub(crate) targets: usize,
    pub(crate) hash: u64,
    pub(crate) loaded_at_ms: u64,
    /// `(file, bytes, hash)`.
    pub(crate) files: Vec<(String, usize, u64)>,
    /// The rejected reload's diagnostics, rendered as in a terminal.
    pub(crate) rejected: Option<String>,
    pub(crate) warnings: Option<String>,
    pub(crate) stats: crate::dispatch::RouterStats,
    /// Alerts received and deliveries made per second, over the last minute.
    pub(crate) rates: Option<(f64, f64)>,
    pub(crate) outbox: Vec<crate::dispatch::TargetDepth>,
    pub(crate) backend: &'static str,
}

pub(crate) fn overview(o: &Overview) -> Markup {
    let rate = |r: Option<f64>| r.map_or_else(|| String::from("–"), |r| format!("{r:.1}/s"));
    html! {
        h1 { "Overview" }
        @if let Some(rejected) = &o.rejected {
            section.panel aria-labelledby="rejected" {
                h2 #rejected { span.badge.bad { "reload rejected" } " the running rules stay" }
                p.muted { "The folder holds an edit with errors. Fix it and the next reload applies it." }
                pre.diag { (rejected) }
            }
        }
        div.cards {
            (card(&count(o.stats.submitted), "alerts routed"))
            (card(&rate(o.rates.map(|r| r.0)), "alerts in, last minute"))
            (card(&rate(o.rates.map(|r| r.1)), "delivered, last minute"))
            (card(&count(o.stats.pending), "waiting in the outbox"))
            (card(&count(o.stats.dead_letters), "dead letters"))
            (card(&count(o.stats.delivered), "delivered since start"))
        }
        h2 { "Rules in use" }
        div.panel {
            p {
                (count(o.rules as u64)) " rules, " (count(o.targets as u64)) " targets · hash "
                code { (format!("{:016x}", o.hash)) }
                " · loaded " (moment(o.loaded_at_ms)) " · store " (o.backend)
            }
            table {
                thead { tr { th { "File" } th.num { "Bytes" } th.wide { "Hash" } } }
                tbody {
                    @for (file, bytes, hash) in &o.files {
                        tr {
                            td { a href={ "/ui/rules?file=" (file) } { (file) } }
                            td.num { (count(*bytes as u64)) }
                            td.wide { code { (format!("{hash:016x}")) } }
                        }
                    }
                }
            }
            @if let Some(w) = &o.warnings {
                details { summary { "Warnings" } pre.diag { (w) } }
            }
        }
        h2 { "Outbox by target" }
        (outbox_table(&o.outbox))
    }
}

fn outbox_table(rows: &[crate::dispatch::TargetDepth]) -> Markup {
    html! {
        div.panel {
            @if rows.is_empty() {
                p.muted { "Nothing waits: every delivery went out." }
            } @else {
                table {
                    thead { tr { th { "Target" } th.num { "New" } th.num { "Retrying" } th.num { "In flight" } th.num title="How many it may be sent at once now: its adaptive limit" { "Limit" } } }
                    tbody {
                        @for t in rows {
                            tr {
                                td { a href={ "/ui/deliveries#t-" (t.target) } { (t.target) } }
                                td.num { (count(t.fresh)) }
                                td.num { (count(t.waiting)) }
                                td.num { (count(t.in_flight)) }
                                td.num { (count(t.in_flight_limit)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One rule as the Rules page lists it.
pub(crate) struct RuleRow {
    pub(crate) id: String,
    pub(crate) location: String,
    pub(crate) actions: Vec<String>,
    pub(crate) hits: u64,
}

/// One target as the Rules page lists it.
pub(crate) struct TargetRow {
    pub(crate) name: String,
    pub(crate) location: String,
    pub(crate) method: &'static str,
    pub(crate) url: String,
    pub(crate) fallback: Option<String>,
}

/// `file:line` as a link to the line in the Rules page.
fn location_link(location: &str) -> Markup {
    let (file, line) = location.rsplit_once(':').unwrap_or((location, "1"));
    html! { a.mono href={ "/ui/rules?file=" (file) "#L" (line) } { (location) } }
}

pub(crate) fn rules(
    files: &[String],
    shown: Option<(&str, &str)>,
    rules: &[RuleRow],
    targets: &[TargetRow],
) -> Markup {
    let target_link = |name: &str| -> Markup {
        match targets.iter().find(|t| t.name == name) {
            Some(t) => location_link_named(&t.location, name),
            None => html! { (name) },
        }
    };
    html! {
        h1 { "Rules" }
        nav aria-label="Files" {
            @for f in files {
                @if shown.is_some_and(|(name, _)| name == f) {
                    strong { (f) } " "
                } @else {
                    a href={ "/ui/rules?file=" (f) } { (f) } " "
                }
            }
        }
        @if let Some((name, text)) = shown {
            h2 { (name) }
            (super::highlight::render(text))
        }
        h2 { "Rules, in evaluation order" }
        div.panel {
            table {
                thead { tr { th { "Rule" } th { "Where" } th { "Actions" } th.num { "Hits since start" } } }
                tbody {
                    @for r in rules {
                        tr {
                            td { (r.id) }
                            td { (location_link(&r.location)) }
                            td {
                                @for a in &r.actions {
                                    @if let Some(t) = a.strip_prefix("post ") {
                                        "post " (target_link(t)) " "
                                    } @else {
                                        (a) " "
                                    }
                                }
                            }
                            td.num { (count(r.hits)) }
                        }
                    }
                }
            }
        }
        h2 { "Targets" }
        div.panel {
            table {
                thead { tr { th { "Target" } th { "Declared" } th.wide { "Sends to" } th { "Falls back to" } } }
                tbody {
                    @for t in targets {
                        tr id={ "target-" (t.name) } {
                            td { (t.name) }
                            td { (location_link(&t.location)) }
                            td.wide { code { (t.method) " " (t.url) } }
                            td { @if let Some(f) = &t.fallback { (target_link(f)) } }
                        }
                    }
                }
            }
        }
    }
}

fn location_link_named(location: &str, name: &str) -> Markup {
    let (file, line) = location.rsplit_once(':').unwrap_or((location, "1"));
    html! { a href={ "/ui/rules?file=" (file) "#L" (line) } title={ "declared at " (location) } { (name) } }
}

/// The verdicts, one per line.
fn verdicts(list: &[crate::state::Verdict]) -> Markup {
    html! {
        @for v in list { div { (v.to_string()) } }
    }
}

pub(crate) fn decisions(
    list: &[std::sync::Arc<crate::server::recent::Recorded>],
    capacity: usize,
) -> Markup {
    html! {
        h1 { "Recent decisions" }
        p.muted { "The last " (capacity) " alerts, newest first (" code { "console.recent" } ")." }
        div.panel {
            @if list.is_empty() {
                p.muted { "No alert has come since start." }
            } @else {
                table {
                    thead { tr { th { "#" } th.wide { "When" } th { "Alert" } th { "Rules" } th { "Targets" } th.wide { "Remembered" } } }
                    tbody {
                        @for d in list {
                            tr {
                                td { a href={ "/ui/decisions/" (d.seq()) } { (d.seq()) } }
                                td.wide { (moment(d.at_ms)) }
                                td {
                                    span.badge { (d.source) } " " span.badge { (d.state) } " "
                                    @if let Some(n) = &d.name { (n) } @else if let Some(id) = &d.id { code { (id) } }
                                }
                                td { @for r in &d.rules { div { (r) } } @if d.unrouted { span.badge.warn { "unrouted" } } @if d.dropped { span.badge { "dropped" } } }
                                td { @for t in &d.targets { div { (t) } } }
                                td.wide { (verdicts(&d.verdicts)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One decision, with its trace under the rules in use.
pub(crate) fn decision(
    d: &crate::server::recent::Recorded,
    trace: Option<&(&crate::alert::Alert, Explanation)>,
    rules_changed: bool,
) -> Markup {
    html! {
        h1 { "Decision " (d.seq()) }
        div.panel {
            p {
                span.badge { (d.source) } " " span.badge { (d.state) } " "
                @if let Some(n) = &d.name { (n) " " }
                @if let Some(id) = &d.id { code { (id) } }
                " · " (moment(d.at_ms))
            }
            p { "Rules: " @if d.rules.is_empty() { span.muted { "none" } } @for r in &d.rules { code { (r) } " " } }
            p { "Targets: " @if d.targets.is_empty() { span.muted { "none" } } @for t in &d.targets { code { (t) } " " } }
            @if !d.deliveries.is_empty() {
                p { "Deliveries: " @for id in &d.deliveries { code { (id) } " " } }
            }
            (verdicts(&d.verdicts))
        }
        h2 { "Trace" }
        @match trace {
            Some((alert, e)) => {
                @if rules_changed {
                    div.flash.bad role="note" { "The rules were reloaded since this alert: the trace below is under the rules in use now." }
                }
                (trace_rules(e))
                h2 { "Alert" }
                (json_block(Some(alert.body())))
            }
            None => {
                p.muted { "This alert's request was too large to keep (over 64 KiB); its decision is above." }
            }
        }
    }
}

fn json_block(v: Option<&Value>) -> Markup {
    let text = v
        .map(|v| serde_json::to_string_pretty(v).unwrap_or_default())
        .unwrap_or_default();
    html! { pre { code { (text) } } }
}

/// Every rule tried, with its condition's predicates.
fn trace_rules(e: &Explanation) -> Markup {
    html! {
        div.panel.trace {
            p {
                "Decision: "
                @if e.decision.unrouted { span.badge.warn { "unrouted" } " " }
                @if e.decision.dropped { span.badge { "dropped" } " " }
                @for t in &e.decision.targets { code { "post " (t) } " " }
            }
            @if !e.verdicts.is_empty() { (verdicts(&e.verdicts)) }
            ul {
                @for r in &e.rules {
                    li {
                        @if r.matched { span.yes { "✓ " } } @else { span.no { "✗ " } }
                        strong { (r.rule) } " " (location_link(&r.location)) " "
                        @for a in &r.actions { code { (a) } " " }
                        (predicate(&r.condition))
                    }
                }
            }
        }
    }
}

fn predicate(p: &PredicateTrace) -> Markup {
    html! {
        ul {
            li {
                @if p.result { span.yes { "✓ " } } @else { span.no { "✗ " } }
                code { (p.text) }
                @if let Some(seen) = &p.seen {
                    span.muted {
                        @if seen.is_empty() { " (missing)" } @else { " seen: " (seen.iter().map(Value::to_string).collect::<Vec<_>>().join(", ")) }
                    }
                }
                @for c in &p.children { (predicate(c)) }
            }
        }
    }
}

/// The Explain page: the form, and the traces of what was explained.
pub(crate) fn explain(
    csrf: &str,
    sources: &[&str],
    chosen: &str,
    text: &str,
    result: Option<Result<Vec<Explanation>, String>>,
) -> Markup {
    html! {
        h1 { "Explain an alert" }
        p.muted { "Paste an alert as its sender posts it: every rule's trace under the rules in use. Nothing is delivered or remembered." }
        form.panel method="post" action="/ui/explain" {
            (csrf_field(csrf))
            div.row {
                div {
                    label for="source" { "Sender" }
                    select #source name="source" {
                        @for s in sources {
                            option value=(s) selected[*s == chosen] { (s) }
                        }
                    }
                }
            }
            label for="alert" { "Payload (JSON, or a form body for Alibaba)" }
            textarea #alert name="alert" spellcheck="false" required { (text) }
            p { button.primary type="submit" { "Explain" } }
        }
        @match result {
            Some(Ok(list)) => {
                @for (i, e) in list.iter().enumerate() {
                    h2 { "Alert " (i + 1) " of " (list.len()) }
                    (trace_rules(e))
                }
            }
            Some(Err(why)) => { div.flash.bad role="alert" { (why) } }
            None => {}
        }
    }
}

/// One delivery waiting for a retry.
pub(crate) fn deliveries(
    csrf: &str,
    outbox: &[crate::dispatch::TargetDepth],
    waiting: &[crate::dispatch::Waiting],
    dead: &[crate::dispatch::DeadLetter],
) -> Markup {
    html! {
        h1 { "Deliveries" }
        h2 { "By target" }
        (outbox_table(outbox))
        h2 { "Retrying" }
        div.panel {
            @if waiting.is_empty() {
                p.muted { "No delivery waits for a retry." }
            } @else {
                table {
                    thead { tr { th { "Delivery" } th { "Target" } th.wide { "Alert" } th.num { "Attempts" } th { "Next attempt" } th { "Last error" } } }
                    tbody {
                        @for w in waiting {
                            tr id={ "t-" (w.target) } {
                                td { code { (w.id) } }
                                td { (w.target) }
                                td.wide { @if let Some(a) = &w.alert_id { code { (a) } } }
                                td.num { (w.attempts) }
                                td { (moment(w.next_at_ms)) }
                                td { (w.last_error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Dead letters" }
        div.panel {
            @if dead.is_empty() {
                p.muted { "No dead letters." }
            } @else {
                form.inline method="post" action="/ui/dead-letters/purge" data-confirm="Purge every dead letter? They cannot be sent again." {
                    (csrf_field(csrf))
                    button.danger type="submit" { "Purge all " (dead.len()) }
                }
                table {
                    thead { tr { th { "Delivery" } th { "Target" } th.num { "Attempts" } th { "Error" } th.wide { "Died" } th { "" } } }
                    tbody {
                        @for d in dead {
                            tr {
                                td { code { (d.id) } }
                                td { (d.target) }
                                td.num { (d.attempts) }
                                td {
                                    (d.error)
                                    details { summary { "body" } pre { code { (d.body()) } } }
                                }
                                td.wide { (moment(d.dead_ms)) }
                                td {
                                    @if !d.is_unreadable() {
                                        form.inline method="post" action={ "/ui/dead-letters/" (d.id) "/retry" } {
                                            (csrf_field(csrf))
                                            button type="submit" { "Retry" }
                                        }
                                        " "
                                    }
                                    form.inline method="post" action={ "/ui/dead-letters/" (d.id) "/purge" } data-confirm="Purge this dead letter?" {
                                        (csrf_field(csrf))
                                        button.danger type="submit" { "Purge" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The Silences page: the form (with the condition's diagnostics when it did not check),
/// and every silence.
pub(crate) fn silences(
    csrf: &str,
    list: &[crate::state::Silence],
    now: u64,
    form: &SilenceForm,
    diagnostics: Option<&str>,
) -> Markup {
    html! {
        h1 { "Silences" }
        form.panel method="post" action="/ui/silences" {
            (csrf_field(csrf))
            label for="condition" { "Condition (as a rule's " code { "when" } ")" }
            textarea #condition name="condition" data-check="/ui/silences/check" spellcheck="false" rows="3" required { (form.condition) }
            div #condition-check aria-live="polite" {
                @if let Some(d) = diagnostics { (check_result(Some(d))) }
            }
            div.row {
                div { label for="for" { "For" } input #for type="text" name="for" value=(form.lasts) placeholder="2h"; }
                div { label for="created_by" { "By" } input #created_by type="text" name="created_by" value=(form.created_by) required; }
                div { label for="comment" { "Why" } input #comment type="text" name="comment" value=(form.comment) required; }
            }
            p { button.primary type="submit" { "Silence" } }
        }
        div.panel {
            @if list.is_empty() {
                p.muted { "No silences." }
            } @else {
                table {
                    thead { tr { th { "#" } th { "Status" } th { "Condition" } th.wide { "Starts" } th { "Ends" } th.wide { "By" } th.wide { "Why" } th { "" } } }
                    tbody {
                        @for s in list.iter().rev() {
                            @let status = s.status(now);
                            tr {
                                td { (s.id) }
                                td { span.badge.ok[status == crate::state::SilenceStatus::Active] { (format!("{status:?}").to_lowercase()) } }
                                td { code { (s.condition) } }
                                td.wide { (moment(s.starts)) }
                                td { (moment(s.ends)) }
                                td.wide { (s.created_by) }
                                td.wide { (s.comment) }
                                td {
                                    @if status != crate::state::SilenceStatus::Expired {
                                        form.inline method="post" action={ "/ui/silences/" (s.id) "/expire" } {
                                            (csrf_field(csrf))
                                            button.danger type="submit" { "Expire" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What the silence form holds (kept when it is shown again with its errors).
#[derive(Default, serde::Deserialize)]
pub(crate) struct SilenceForm {
    #[serde(default)]
    pub(crate) condition: String,
    #[serde(default, rename = "for")]
    pub(crate) lasts: String,
    #[serde(default)]
    pub(crate) created_by: String,
    #[serde(default)]
    pub(crate) comment: String,
}

/// A condition's check, as the live check and the form show it: its diagnostics as the
/// terminal renders them, or that it checks.
pub(crate) fn check_result(diagnostics: Option<&str>) -> Markup {
    match diagnostics {
        Some(d) => html! { pre.diag role="alert" { (d) } },
        None => html! { p.yes { "✓ the condition checks" } },
    }
}

/// A page of its own for a refusal (401, 404, ...), with the way back.
pub(crate) fn problem(title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body { main { h1 { (title) } p { (message) } p { a href="/ui" { "Back to the console" } } } }
        }
    }
}

#[cfg(test)]
#[path = "pages_test.rs"]
mod tests;
