//! The HTTP server (feature `server`): every sender in, decisions out.
//!
//! [`app`] builds the whole service ([`App`]) from an [`AppState`]; a daemon can mount it in
//! its own axum or hyper service, and `switchyard serve` is one user of it ([`serve`]). Handlers
//! turn every failure into one JSON error type ([`ApiError`]) with a status that says what
//! was wrong: 400 malformed, 401 credentials, 404 unknown source, 413 too large, 415 content
//! type, 422 rejected rules, 503 not ready.
//!
//! Owns: the endpoints (`app`), the one way a request's alerts are read (`incoming`: body
//! under a byte budget before a handling slot, credentials, the sender's payload adapted
//! within limits), readiness, and applying a reload's outcome. Never: holds a handling slot
//! while a body drips in, answers 202 before the router has stored every delivery, shows a
//! secret, or answers an error in any shape but [`ApiError`]'s. The rooms: `auth.rs`
//! (credentials), `config.rs` (the YAML), `edge.rs` (what every request passes, and the
//! ingest endpoints answered before the router), `error.rs` (the JSON error), `metrics.rs`,
//! `run.rs` (a socket), `assemble.rs` (the whole server: [`Server`]), `receive.rs` (the
//! printing receiver).

mod answer;
mod assemble;
mod auth;
mod config;
mod console;
mod csrf;
mod dry_run;
mod edge;
mod error;
mod metrics;
mod receive;
mod recent;
mod record;
mod run;
mod shadow;
mod silences;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::alert::{AdaptError, Alert, Source, adapt_json_within, form_to_json};
use crate::dispatch::Router;
use crate::engine::RuleSet;
use crate::reload::RulesFolder;
use answer::Accepted;
pub use assemble::{ServeError, Server, shutdown_signal};
pub use auth::{AdminAuth, Credential, IngestAuth, Secret};
pub use config::{
    Admin, Config, ConfigError, ConfigErrorKind, ConsoleConfig, DEFAULT_LISTEN, Limits, LogFormat,
    Logging, ReloadConfig,
};
pub use edge::App;
pub use error::ApiError;
use metrics::ServerMetrics;
pub use receive::{MAX_RECEIVE_BYTES, receive};
pub use record::RecordConfig;
pub use run::serve;

/// What the service needs: the router (rules and delivery), limits, credentials.
pub struct AppState {
    router: Router,
    /// What every reload trigger reloads (none: reload is refused).
    rules_folder: Option<Arc<RulesFolder>>,
    limits: Limits,
    auth: IngestAuth,
    ready: AtomicBool,
    metrics: ServerMetrics,
    /// The rejected reload's diagnostics (or failed tests): as JSON, and rendered as in a
    /// terminal.
    rejected_reload: std::sync::Mutex<Option<(Value, String)>>,
    /// `isolation: per_file`: the files running on a last good version (or left out), each
    /// with when it was first held (ms since the epoch).
    held: std::sync::Mutex<Vec<(u64, crate::reload::HeldFile)>>,
    admin: AdminAuth,
    /// When the set in use was loaded, in ms since the epoch.
    loaded_at_ms: std::sync::atomic::AtomicU64,
    /// Whether `/ui` is served.
    console_enabled: bool,
    /// The last decisions, for the console.
    recent: recent::Recent,
    /// Alerts in and deliveries out per second, for the console.
    rates: console::Rates,
    permits: tokio::sync::Semaphore,
    /// Bytes of request bodies held, all requests together ([`Limits::body_memory_mb`]).
    body_budget: tokio::sync::Semaphore,
    /// The recording of accepted requests (`record:`), when on.
    recorder: Option<record::Recorder>,
    /// The shadow rules (`shadow_rules:`), when set.
    shadow: Option<Arc<shadow::Shadow>>,
    /// Dry-run reloads run one at a time.
    dry_runs: tokio::sync::Semaphore,
}

impl AppState {
    /// State for a router. `rules_dir` is what `POST /-/reload` reloads (none: reload is refused).
    pub fn new(
        router: Router,
        rules_dir: Option<PathBuf>,
        limits: Limits,
        auth: IngestAuth,
    ) -> AppState {
        let permits = tokio::sync::Semaphore::new(limits_permits(&limits));
        let body_budget = tokio::sync::Semaphore::new(limits.body_budget_bytes());
        let metrics = ServerMetrics::new(&router);
        // The files' last good versions are copied only for `isolation: per_file`
        // (`with_reload_policy`), which holds files at them.
        let rules_hash = router.rules().content_hash();
        let rules_folder = rules_dir.map(|dir| Arc::new(RulesFolder::new(dir, rules_hash)));
        AppState {
            router,
            rules_folder,
            limits,
            auth,
            admin: AdminAuth::none(),
            ready: AtomicBool::new(true),
            metrics,
            rejected_reload: std::sync::Mutex::new(None),
            held: std::sync::Mutex::new(Vec::new()),
            loaded_at_ms: std::sync::atomic::AtomicU64::new(crate::dispatch::now_ms()),
            console_enabled: ConsoleConfig::default().enabled,
            recent: recent::Recent::new(ConsoleConfig::default().recent),
            rates: console::Rates::new(),
            permits,
            body_budget,
            recorder: None,
            shadow: None,
            dry_runs: tokio::sync::Semaphore::new(1),
        }
    }

    /// Decides every accepted alert with the rules folder `dir` too, delivering nothing,
    /// and keeps their disagreements (`GET /api/shadow`). The folder is watched by the
    /// caller ([`AppState::watch_shadow`]).
    pub fn with_shadow(mut self, dir: Option<&std::path::Path>) -> Result<AppState, ConfigError> {
        if let Some(dir) = dir {
            let shadow = shadow::Shadow::load(dir.to_owned()).map_err(ConfigError::invalid)?;
            self.metrics.shadow(&shadow);
            self.shadow = Some(Arc::new(shadow));
        }
        Ok(self)
    }

    /// Reloads the shadow rules folder now, if there is one (SIGHUP).
    pub async fn reload_shadow(&self) {
        if let Some(shadow) = self.shadow.clone() {
            let _ = tokio::task::spawn_blocking(move || shadow.reload_now()).await;
        }
    }

    /// Watches the shadow rules folder, if there is one; dropping the result stops it.
    pub fn watch_shadow(&self) -> Option<crate::reload::Reloader> {
        self.shadow.as_ref().and_then(shadow::Shadow::watch)
    }

    /// Records a sample of accepted requests as `record` says (none when it is off);
    /// `data` is the data directory the recording's folder defaults to. An error names the
    /// setting and the fix.
    pub fn with_recording(
        mut self,
        record: &RecordConfig,
        data: &std::path::Path,
    ) -> Result<AppState, ConfigError> {
        if record.enabled {
            let recorder = record::Recorder::start(record, record.folder(data))
                .map_err(ConfigError::invalid)?;
            self.metrics.recording(&recorder.stats);
            self.recorder = Some(recorder);
        }
        Ok(self)
    }

    /// Marks the service ready or not (`GET /readyz`, and ingest answers 503 when not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Reloads follow `policy` (tests required, per-file isolation; see
    /// [`crate::reload::Policy`]).
    pub fn with_reload_policy(mut self, policy: crate::reload::Policy) -> AppState {
        if let Some(folder) = &self.rules_folder {
            let dir = folder.dir().to_owned();
            let rules = self.router.rules();
            let folder = match policy.isolation {
                crate::reload::Isolation::PerFile => RulesFolder::of_set(dir, &rules),
                crate::reload::Isolation::Whole => RulesFolder::new(dir, rules.content_hash()),
            };
            self.rules_folder = Some(Arc::new(folder.with_policy(policy)));
        }
        self
    }

    /// Guards the operator endpoints with `admin` (see [`AdminAuth`]).
    pub fn with_admin(mut self, admin: AdminAuth) -> AppState {
        self.admin = admin;
        self
    }

    /// Serves the console (or not) and keeps `recent` decisions for it (see
    /// [`ConsoleConfig`]; at most 10,000).
    pub fn with_console(mut self, console: &ConsoleConfig) -> AppState {
        self.console_enabled = console.enabled;
        self.recent = recent::Recent::new(if console.enabled { console.recent } else { 0 });
        self
    }

    /// The rejected reload's diagnostics, rendered as in a terminal, while the folder
    /// holds the rejected edit.
    fn rejected_text(&self) -> Option<String> {
        self.rejected_reload
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|(_, text)| text.clone()))
    }

    /// Explains a payload given as text (the console's form): parsed and adapted as
    /// ingest does (JSON, or a form body), within the ingest limits.
    async fn explain_text(
        &self,
        source: Option<Source>,
        text: &[u8],
    ) -> Result<Vec<crate::engine::Explanation>, ApiError> {
        if text.len() > self.limits.max_body_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the alert is larger than {} bytes",
                    self.limits.max_body_bytes
                ),
            ));
        }
        let value = parse_payload(None, text)?;
        let alerts =
            adapt_json_within(source, value, &self.limits.adapt_limits()).map_err(adapt_error)?;
        self.explanations(&alerts).await
    }

    /// Each alert's trace under the rules in use, with what the rules that remember would
    /// do now (nothing stored).
    async fn explanations(
        &self,
        alerts: &[Alert],
    ) -> Result<Vec<crate::engine::Explanation>, ApiError> {
        let rules = self.router.rules();
        let previews = self
            .router
            .preview(alerts)
            .await
            .map_err(|e| ApiError::not_stored(&e))?;
        Ok(alerts
            .iter()
            .zip(previews)
            .map(|(a, verdicts)| {
                let mut e = rules.explain(a);
                e.verdicts = verdicts;
                rules.name_keys(&mut e.verdicts, a);
                e
            })
            .collect())
    }

    /// The rules folder every reload goes through (the watcher and SIGHUP too), if the
    /// service was started from one.
    pub fn rules_folder(&self) -> Option<Arc<RulesFolder>> {
        self.rules_folder.clone()
    }

    /// Reloads the rules folder now (SIGHUP, `POST /-/reload`) and applies the outcome;
    /// returns the HTTP answer. `None` when the service has no rules folder.
    pub async fn reload_now(&self, trigger: &str) -> Option<(StatusCode, Value)> {
        let folder = self.rules_folder.clone()?;
        let outcome = tokio::task::spawn_blocking(move || folder.reload(true))
            .await
            .unwrap_or_else(|e| {
                crate::reload::Outcome::WatchError(crate::reload::WatchError::new(
                    crate::reload::WatchErrorKind::Task,
                    "the reload failed",
                    e,
                ))
            });
        Some(self.apply_reload(outcome, trigger))
    }

    /// The router behind the service.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Records a successful reload attempt: the running set matches the folder. Clears a
    /// rejected edit's diagnostics (the edit is gone or fixed).
    fn note_success(&self) {
        self.metrics.reload_succeeded();
        self.loaded_at_ms
            .store(crate::dispatch::now_ms(), Ordering::Relaxed);
        let held = self.held_report();
        if let Ok(mut r) = self.rejected_reload.lock() {
            *r = held;
        }
    }

    /// The diagnostics of the files held at a last good version, as a rejected reload's
    /// are kept: the folder holds their errors still. `None` when no file is held.
    fn held_report(&self) -> Option<(Value, String)> {
        let held = self.held.lock().ok()?;
        if held.is_empty() {
            return None;
        }
        let shown = held.iter().map(|(_, f)| f.to_json()).collect();
        let text = held
            .iter()
            .map(|(_, f)| f.diagnostics.render(crate::Format::Text))
            .collect();
        Some((Value::Array(shown), text))
    }

    /// Records the set in use (at start and after each reload) in the metrics.
    pub fn note_loaded(&self, set: &RuleSet) {
        self.note_success();
        self.metrics.loaded(set);
    }

    /// Applies the outcome of a reload, from any trigger (watcher, SIGHUP, `POST /-/reload`):
    /// a loaded set is swapped in whole; a rejected one leaves the running set and its
    /// diagnostics are logged and kept for `GET /api/rules`. Returns the HTTP answer.
    pub fn apply_reload(
        &self,
        outcome: crate::reload::Outcome,
        trigger: &str,
    ) -> (StatusCode, Value) {
        use crate::reload::Outcome;
        match outcome {
            Outcome::Loaded(set) => self.swap(set, Vec::new(), trigger),
            Outcome::Partial(set, held) => self.swap(set, held, trigger),
            Outcome::TestsFailed(report) => {
                tracing::warn!(
                    trigger,
                    failed = report.failed(),
                    "reload refused: the new rules' tests fail (reload.require_tests); the running rules stay:\n{report}"
                );
                let tests = tests_json(&report);
                if let Ok(mut r) = self.rejected_reload.lock() {
                    *r = Some((tests.clone(), report.to_string()));
                }
                self.metrics.reload_failed();
                self.metrics.reload("tests_failed");
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"status": "tests_failed", "message": "the new rules' tests fail (reload.require_tests); the running rules stay", "tests": tests}),
                )
            }
            Outcome::Rejected(e) => {
                let (diagnostics, text) = rejected_diagnostics(&e);
                match e.diagnostics() {
                    Some(d) => tracing::warn!(
                        trigger,
                        errors = d.error_count(),
                        "reload rejected; the running rules stay:\n{text}"
                    ),
                    None => {
                        tracing::warn!(trigger, error = %e, "reload rejected; the running rules stay")
                    }
                }
                if let Ok(mut r) = self.rejected_reload.lock() {
                    *r = Some((diagnostics.clone(), text));
                }
                self.metrics.reload_failed();
                self.metrics.reload("rejected");
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"status": "rejected", "message": "the new rules have errors; the running rules stay", "diagnostics": diagnostics}),
                )
            }
            Outcome::Unchanged => {
                // The running set matches the folder: a success, also after a rejected edit
                // was reverted.
                self.note_success();
                self.metrics.reload("unchanged");
                (StatusCode::OK, json!({"status": "unchanged"}))
            }
            Outcome::WatchError(e) => {
                match e.kind() {
                    crate::reload::WatchErrorKind::Watch => {
                        tracing::error!(error = %e, trigger, "the rules watcher failed; edits may not be picked up until SIGHUP or POST /-/reload")
                    }
                    _ => {
                        tracing::error!(error = %e, trigger, "the reload could not run; the rules in use stay")
                    }
                }
                let label = e.kind().label();
                self.metrics.reload(label);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"status": label, "message": e.to_string()}),
                )
            }
        }
    }
}

impl AppState {
    /// Swaps `set` in (a reload's new set; `held`: its files on a last good version) and
    /// answers as a reload does.
    fn swap(
        &self,
        set: RuleSet,
        held: Vec<crate::reload::HeldFile>,
        trigger: &str,
    ) -> (StatusCode, Value) {
        let summary = rules_summary(&set);
        let memory = set.memory_changes(&self.router.rules());
        self.note_loaded(&set);
        tracing::info!(trigger, rules = set.rule_count(), targets = set.targets().len(), hash = %format!("{:016x}", set.content_hash()), "rules reloaded");
        if !memory.fresh.is_empty() {
            tracing::info!(trigger, rules = ?memory.fresh, "rules whose clauses are new or changed start with no state");
        }
        self.router.set_rules(set);
        let shown: Vec<Value> = held.iter().map(crate::reload::HeldFile::to_json).collect();
        if held.is_empty() {
            self.metrics.reload("loaded");
        } else {
            for h in &held {
                tracing::warn!(
                    trigger,
                    file = %h.file,
                    running = if h.last_good { "last_good" } else { "left_out" },
                    depends_on = ?h.depends_on,
                    used_by = ?h.used_by,
                    "a rules file has errors and keeps its last good version; the other files' edits apply:\n{}",
                    h.diagnostics.render(crate::Format::Text)
                );
            }
            self.metrics.reload("partial");
        }
        let now = crate::dispatch::now_ms();
        if let Ok(mut h) = self.held.lock() {
            let before = std::mem::take(&mut *h);
            *h = held
                .into_iter()
                .map(|file| {
                    let since = before
                        .iter()
                        .find(|(_, f)| f.file == file.file)
                        .map_or(now, |(since, _)| *since);
                    (since, file)
                })
                .collect();
        }
        let held = self.held_report();
        if let Ok(mut r) = self.rejected_reload.lock() {
            *r = held;
        }
        let status = if shown.is_empty() {
            "reloaded"
        } else {
            "partial"
        };
        (
            StatusCode::OK,
            json!({"status": status, "rules": summary, "state": memory, "last_good": shown}),
        )
    }

    /// The files running on a last good version, as `GET /api/rules` shows them.
    fn held_json(&self) -> Vec<Value> {
        self.held
            .lock()
            .map(|h| {
                h.iter()
                    .map(|(since, f)| {
                        let mut v = f.to_json();
                        v["since_ms"] = json!(since);
                        v
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A rejected folder's diagnostics: as JSON, and rendered as in a terminal.
fn rejected_diagnostics(e: &crate::Error) -> (Value, String) {
    match e.diagnostics() {
        Some(d) => (d.to_json(), d.render(crate::Format::Text)),
        None => (json!([{"message": e.to_string()}]), e.to_string()),
    }
}

/// A test report as a refused reload shows it: counts, and each failing test.
fn tests_json(report: &crate::TestReport) -> Value {
    let failing: Vec<Value> = report
        .tests
        .iter()
        .filter(|t| !t.failures.is_empty())
        .map(|t| json!({"name": t.name, "location": t.location, "failures": t.failures, "trace": t.trace}))
        .collect();
    json!({"passed": report.passed(), "failed": report.failed(), "failing": failing})
}

/// Handling slots: `limits.max_concurrent_requests`, within what a semaphore can hold.
fn limits_permits(l: &Limits) -> usize {
    l.max_concurrent_requests
        .clamp(1, tokio::sync::Semaphore::MAX_PERMITS)
}

/// Builds the service: every endpoint of `docs/server.md`, behind the edge every request
/// passes (`edge.rs`: the head's size limit, errors as JSON, the ingest endpoints).
pub fn app(state: Arc<AppState>) -> App {
    App::new(state.clone(), routes(state))
}

/// Every endpoint, as axum routes (the edge answers the ingest ones itself; the same
/// routes here answer their other methods, and hold the edge to the same answers in
/// tests).
fn routes(state: Arc<AppState>) -> axum::Router {
    // What an operator uses: guarded by the admin credential, when one is configured.
    let operator = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/api/explain", post(explain))
        .route("/api/rules", get(rules))
        .route("/api/shadow", get(shadow_report))
        .route("/api/dead-letters", get(dead_letters))
        .route("/api/state", get(state_entries))
        .route("/api/dead-letters/{id}/retry", post(retry_dead_letter))
        .route("/api/silences", get(silences::list).post(silences::add))
        .route(
            "/api/silences/{id}",
            axum::routing::delete(silences::expire),
        )
        .route("/-/reload", post(reload))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin_guard,
        ));
    let console = console::routes(state.clone());
    // `/alerts/{source}` for each sender, as a route of its own: a path parameter costs
    // every request its extraction (a map of parameters, a string); the parameter route
    // is left with the names that are no sender's, and answers them 404. The ingest
    // routes come from the edge's one list of them, which the edge also answers itself.
    let mut ingest_routes =
        axum::Router::new().route("/alerts/{source}", post(no_such_source).put(no_such_source));
    for endpoint in edge::ingest_endpoints() {
        let source = endpoint.source;
        let handler = move |State(s): State<Arc<AppState>>,
                            Query(q): Query<SourceQuery>,
                            req: axum::extract::Request| async move {
            ingest(&s, source, &q, req).await
        };
        let methods = if endpoint.put {
            post(handler).put(handler)
        } else {
            post(handler)
        };
        ingest_routes = ingest_routes.route(&endpoint.path, methods);
    }
    ingest_routes
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(operator)
        .merge(console)
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see docs/server.md",
            )
        })
        .with_state(state)
}

/// Lets a request to an operator endpoint through only with the admin credential (when
/// one is configured; `/metrics` may stay open).
async fn admin_guard(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let metrics = req.uri().path() == "/metrics";
    if let Err(e) = s.admin.check(req.headers(), metrics) {
        return e.into_response();
    }
    // A change made from a browser must come from the console's own pages.
    let reads = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if !reads && let Err(e) = csrf::check(req.headers(), None) {
        return e.into_response();
    }
    next.run(req).await
}

/// `?source=NAME` (names the sender instead of detecting it) and `?token=` (a query-token
/// credential, for senders that cannot set a header).
#[derive(Deserialize)]
struct SourceQuery {
    source: Option<String>,
    token: Option<String>,
}

/// `POST|PUT /alerts/{source}` for a name that no sender has (each sender's own path is a
/// route of its own, see [`app`]): 404, with the names there are. The query is read first,
/// as on a sender's path: a malformed one is a 400.
async fn no_such_source(Path(name): Path<String>, Query(_): Query<SourceQuery>) -> ApiError {
    unknown_source(&name)
}

/// A sender name that is none, in the path or in `?source=`: 404, with the names there are.
fn unknown_source(name: &str) -> ApiError {
    let names: Vec<&str> = Source::ALL.iter().map(|s| s.as_str()).collect();
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_source",
        format!(
            "unknown source `{name}`; the sources are {}",
            names.join(", ")
        ),
    )
}

/// One ingest request, counted by sender and status in the metrics whatever its end. The
/// request is taken whole, so that its headers are read where they are, not copied.
async fn ingest(
    s: &AppState,
    source: Option<Source>,
    q: &SourceQuery,
    req: axum::extract::Request,
) -> Result<Accepted, ApiError> {
    let (parts, body) = req.into_parts();
    let result = accept(s, source, q, &parts.headers, body).await;
    let status = result
        .as_ref()
        .map_or_else(ApiError::status, |_| StatusCode::ACCEPTED);
    s.metrics.request(source, status.as_u16());
    result
}

/// Reads, routes and stores a request's alerts: the 202's body once every delivery is
/// stored; `503 outbox_unavailable` (with the kind) when they could not be.
async fn accept(
    s: &AppState,
    source: Option<Source>,
    q: &SourceQuery,
    headers: &HeaderMap,
    body: Body,
) -> Result<Accepted, ApiError> {
    let incoming = incoming(s, source, q, headers, body, Caller::Sender).await?;
    let alerts = &incoming.alerts;
    for a in alerts {
        s.metrics.alert(a.source());
    }
    let rules_hash = s.router.rules().content_hash();
    let submitted = s
        .router
        .submit_many(alerts)
        .await
        .map_err(|e| ApiError::not_stored(&e))?;
    for sub in &submitted {
        s.metrics.fired(&sub.decision.rules);
    }
    let decided = s
        .recent
        .record(alerts, submitted, rules_hash, &incoming.body);
    if let Some(shadow) = &s.shadow {
        shadow.observe(&s.router.rules(), alerts);
    }
    if let (Some(recorder), Some(first)) = (&s.recorder, alerts.first()) {
        recorder.offer(
            &incoming.body.bytes,
            incoming.body.content_type.as_ref(),
            incoming.body.named.unwrap_or(first.source()),
            first.received_at(),
        );
    }
    Ok(Accepted { alerts: decided })
}

/// A request's alerts, read as ingest and explain both read them, and what they hold
/// while the request is handled: a handling slot and the body's bytes of the budget.
struct Incoming<'a> {
    alerts: Vec<Alert>,
    /// The body as it came (shared, not copied): the console reads an alert again from it.
    body: recent::Body,
    _slot: tokio::sync::SemaphorePermit<'a>,
    _bytes: Option<tokio::sync::SemaphorePermit<'a>>,
}

/// Who sends a request's alerts: a sender (its credentials are checked), or an operator
/// the admin guard has already let in (`/api/explain` with an admin credential).
#[derive(Clone, Copy)]
enum Caller {
    Sender,
    Operator,
}

/// Bodies larger than this are parsed and split on a blocking thread, so that one large
/// request does not hold a runtime worker (and `/healthz`) for the time it takes.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// The one way a request's alerts are read, for ingest and explain alike:
///
/// 1. readiness, and the named sender's credentials (the path's or `?source=`'s, else any
///    configured one), before a byte of the body is read;
/// 2. the body, within its size limit and the request's time limit, each chunk taking its
///    bytes from the shared body budget: a client that drips its body holds only what it
///    has sent, and no handling slot;
/// 3. a handling slot (at most `max_concurrent_requests` at once);
/// 4. parsing and splitting, bounded before any alert is made (`AdaptLimits`); large bodies
///    on a blocking thread;
/// 5. the detected sender's own credentials, for every alert.
async fn incoming<'a>(
    s: &'a AppState,
    source: Option<Source>,
    q: &SourceQuery,
    headers: &HeaderMap,
    body: Body,
    who: Caller,
) -> Result<Incoming<'a>, ApiError> {
    let sender = matches!(who, Caller::Sender);
    if !s.ready.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "switchyard is starting or stopping; retry shortly",
        ));
    }
    // The sender named by the path, or by `?source=`: its own credentials apply, never
    // the `*` entry's in its place.
    let named = match (source, q.source.as_deref()) {
        (Some(s), _) => Some(s),
        (None, None) => None,
        (None, Some(name)) => Some(Source::from_name(name).ok_or_else(|| unknown_source(name))?),
    };
    if sender {
        s.auth.check(named, headers, q.token.as_deref())?;
    }
    let (bytes, budget) =
        tokio::time::timeout(s.limits.request_timeout(), read_body(s, headers, body))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the body did not arrive in time",
                )
            })??;
    // More requests than the limit wait here: the limit bounds the work in progress, and
    // waiting is better than refusing alerts.
    let slot =
        s.permits.acquire().await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping", "shutting down")
        })?;
    let limits = s.limits.adapt_limits();
    let content_type = headers.get(header::CONTENT_TYPE).cloned();
    let large = bytes.len() > INLINE_PARSE_BYTES;
    let body = recent::Body {
        bytes: bytes.clone(),
        content_type: content_type.clone(),
        named,
    };
    let parse = move || -> Result<Vec<Alert>, ApiError> {
        let value = parse_payload(content_type.as_ref(), &bytes)?;
        adapt_json_within(named, value, &limits).map_err(adapt_error)
    };
    let alerts = if large {
        tokio::task::spawn_blocking(parse).await.map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "parsing the body failed unexpectedly",
            )
        })??
    } else {
        parse()?
    };
    if sender && named.is_none() {
        // A detected sender must present that sender's own credentials too.
        let mut checked = Vec::new();
        for a in &alerts {
            if !checked.contains(&a.source()) {
                s.auth
                    .check(Some(a.source()), headers, q.token.as_deref())?;
                checked.push(a.source());
            }
        }
    }
    Ok(Incoming {
        alerts,
        body,
        _slot: slot,
        _bytes: budget,
    })
}

/// An adapter's refusal as an answer: too much is 413, a wrong shape 400.
fn adapt_error(e: AdaptError) -> ApiError {
    match e {
        AdaptError::TooManyAlerts { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_alerts",
            e.to_string(),
        ),
        AdaptError::GroupTooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "group_too_large",
            e.to_string(),
        ),
        e => ApiError::new(StatusCode::BAD_REQUEST, "wrong_shape", e.to_string()),
    }
}

/// Reads a body within `max_body_bytes`, each chunk taking its bytes from the body budget
/// (waiting for room when the budget is spent); returns it with the bytes it holds.
async fn read_body<'a>(
    s: &'a AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, Option<tokio::sync::SemaphorePermit<'a>>), ApiError> {
    use http_body_util::BodyExt as _;
    let limit = s.limits.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = body;
    // A body that arrives in one chunk (most alerts) is kept as it is, not copied.
    let mut first: Option<Bytes> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut len = 0usize;
    // The body's bytes of the budget, merged into one permit as chunks arrive.
    let mut held: Option<tokio::sync::SemaphorePermit<'a>> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "the body could not be read",
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if len + data.len() > limit {
            return Err(too_large());
        }
        let n = u32::try_from(data.len()).map_err(|_| too_large())?;
        if n == 0 {
            continue;
        }
        let more = s.body_budget.acquire_many(n).await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping", "shutting down")
        })?;
        match held.as_mut() {
            Some(h) => h.merge(more),
            None => held = Some(more),
        }
        len += data.len();
        if len == data.len() {
            first = Some(data);
        } else {
            if let Some(f) = first.take() {
                buf.extend_from_slice(&f);
            }
            buf.extend_from_slice(&data);
        }
    }
    let bytes = match first {
        Some(one) => one,
        None => Bytes::from(buf),
    };
    Ok((bytes, held))
}

/// JSON, or form-encoded (Alibaba CloudMonitor); the content type decides, and a body
/// without one is read as JSON if it looks like JSON, else as a form.
fn parse_payload(content_type: Option<&HeaderValue>, bytes: &[u8]) -> Result<Value, ApiError> {
    let form = is_form(content_type, bytes)?;
    if form {
        if std::str::from_utf8(bytes).is_err() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                "the form body is not valid UTF-8",
            ));
        }
        return Ok(form_to_json(bytes));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// Whether a body is form-encoded rather than JSON: its content type says, and a body
/// without one (or `text/plain`) is JSON when it starts with `{` or `[`. Any other
/// content type is refused (415).
fn is_form(content_type: Option<&HeaderValue>, bytes: &[u8]) -> Result<bool, ApiError> {
    let ct = content_type.and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    let is = |name: &str| mime.eq_ignore_ascii_case(name);
    let trimmed = bytes.trim_ascii_start();
    Ok(match mime {
        _ if is("application/x-www-form-urlencoded") => true,
        _ if is("application/json") || is("text/json") => false,
        m if m
            .as_bytes()
            .get(m.len().saturating_sub(5)..)
            .is_some_and(|end| end.eq_ignore_ascii_case(b"+json")) =>
        {
            false
        }
        _ if mime.is_empty() || is("text/plain") || is("application/octet-stream") => {
            !(trimmed.starts_with(b"{") || trimmed.starts_with(b"["))
        }
        _ => {
            let other = mime.to_ascii_lowercase();
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "content type `{other}` is not accepted; send application/json or application/x-www-form-urlencoded"
                ),
            ));
        }
    })
}

/// `GET /healthz`: the process answers (liveness); says nothing of the outbox.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: ready to accept alerts: started, and the outbox takes writes.
async fn readyz(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    if !s.router.outbox_writable() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "outbox_unavailable",
            "the outbox cannot be written (a full disk; on NATS, the servers unreachable or without a majority); alerts would be refused",
        ));
    }
    if !s.ready.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "not ready",
        ));
    }
    let rules = s.router.rules();
    Ok(Json(
        json!({"status": "ready", "rules": rules.rule_count(), "targets": rules.targets().len()}),
    ))
}

/// `GET /metrics`: OpenMetrics text, the router's gauges read first.
async fn metrics(State(s): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    s.router.refresh_gauges();
    let out = s.metrics.encode().map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics",
            "cannot encode the metrics",
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    ))
}

/// `POST /api/explain`: each alert's decision and trace under the rules in use; delivers
/// nothing. Reads the body the way ingest does (same limits, same credentials).
async fn explain(
    State(s): State<Arc<AppState>>,
    Query(q): Query<SourceQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    // With an admin credential, the guard has let this operator in; without one, explain
    // asks what ingest asks.
    let who = if s.admin.is_enabled() {
        Caller::Operator
    } else {
        Caller::Sender
    };
    let incoming = incoming(&s, None, &q, &headers, body, who).await?;
    // What rules that remember would do now, against the live state; nothing is stored.
    let explained: Vec<Value> = s
        .explanations(&incoming.alerts)
        .await?
        .into_iter()
        .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
        .collect();
    Ok(Json(json!({ "alerts": explained })))
}

/// The rule set in use as `GET /api/rules` and a reload's answer show it: counts, each
/// rule, the targets, each file with its hash, the warnings.
fn rules_summary(rules: &RuleSet) -> Value {
    let files: Vec<Value> = rules
        .sources()
        .files()
        .map(|f| json!({"file": f.name(), "bytes": f.text().len(), "hash": format!("{:016x}", crate::engine::fnv64(f.text().as_bytes()))}))
        .collect();
    json!({
        "rules": rules.rule_count(),
        "rule_list": rules.rules().collect::<Vec<_>>(),
        "targets": rules.targets().iter().map(|t| t.name()).collect::<Vec<_>>(),
        "windows": rules.windows().map(|(name, definition)| json!({"name": name, "definition": definition})).collect::<Vec<_>>(),
        "inhibits": rules.inhibits().map(|(name, location)| json!({"name": name, "location": location})).collect::<Vec<_>>(),
        "tests": rules.test_count(),
        "files": files,
        "warnings": rules.warnings().to_json(),
    })
}

/// `GET /api/rules`: the set in use, and the diagnostics of a rejected reload if the
/// folder still holds the rejected edit.
async fn rules(State(s): State<Arc<AppState>>) -> Json<Value> {
    let mut v = rules_summary(&s.router.rules());
    let rejected = s
        .rejected_reload
        .lock()
        .ok()
        .and_then(|r| r.as_ref().map(|(json, _)| json.clone()));
    v["rejected_reload"] = rejected.unwrap_or(Value::Null);
    v["last_good"] = Value::Array(s.held_json());
    Json(v)
}

/// `GET /api/shadow`: the shadow rules and their disagreements with the live ones.
async fn shadow_report(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(match &s.shadow {
        Some(shadow) => shadow.to_json(),
        None => {
            json!({"enabled": false, "message": "no shadow rules: set shadow_rules in the config to a candidate rules folder (docs/changing-rules.md)"})
        }
    })
}

/// `?dry_run=true` of `POST /-/reload`.
#[derive(Deserialize)]
struct ReloadQuery {
    #[serde(default)]
    dry_run: bool,
}

/// `POST /-/reload`: reloads the folder now, through the one reload every trigger uses;
/// with `?dry_run=true`, answers what the reload would do instead (the candidate checked
/// under the reload policy, and its decisions diffed against the live set's over the
/// recorded traffic), changing nothing.
async fn reload(
    State(s): State<Arc<AppState>>,
    Query(q): Query<ReloadQuery>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let answer = if q.dry_run {
        let files = dry_run::candidate_files(body).await?;
        s.dry_run(files).await
    } else {
        s.reload_now("http").await
    };
    let (status, body) = answer.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "no_rules_dir",
            "this service was not started from a rules folder",
        )
    })?;
    Ok((status, Json(body)))
}

/// `?limit=N` of the dead-letter list (default 100, at most 10,000).
#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

/// `GET /api/dead-letters`: oldest first, bodies as they may be shown (no secret).
async fn dead_letters(
    State(s): State<Arc<AppState>>,
    Query(l): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    let list = s
        .router
        .dead_letters(l.limit.unwrap_or(100).min(10_000))
        .await?;
    let items: Vec<Value> = list
        .iter()
        .map(|d| {
            let body: Value = serde_json::from_str(d.body())
                .unwrap_or_else(|_| Value::String(d.body().to_owned()));
            json!({"id": d.id, "target": d.target, "alert_id": d.alert_id, "attempts": d.attempts, "error": d.error,
                   "created_ms": d.created_ms, "dead_ms": d.dead_ms, "body": body})
        })
        .collect();
    Ok(Json(json!({"dead_letters": items})))
}

/// `GET /api/state`: the live entries of the rules' memory (`dedup`, `resolve once`, `at
/// most`), newest first, at most `?limit=` (default 100, at most 10,000), and how many there
/// are. Keys' values are alert data and are stored only hashed: never shown.
async fn state_entries(
    State(s): State<Arc<AppState>>,
    Query(l): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    let list = s
        .router
        .state_list(l.limit.unwrap_or(100).min(10_000))
        .await?;
    Ok(Json(json!({"entries": list})))
}

/// `POST /api/dead-letters/{id}/retry`: queues a dead letter again, due now.
async fn retry_dead_letter(
    State(s): State<Arc<AppState>>,
    Path(id): Path<u64>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if s.router.retry_dead_letter(id).await? {
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({"status": "queued", "id": id})),
        ))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_dead_letter",
            format!("no dead letter {id}"),
        ))
    }
}
