//! The web console at `/ui` (docs/console.md): server-rendered pages over what the server
//! already knows (the rule set, the recent decisions, the outbox, the silences), with a
//! small script for quiet refreshes and keys. Every asset is embedded in the binary.
//!
//! Owns: the pages' routes and handlers, the console's guard (the admin credential with a
//! basic-auth challenge a browser can answer, the CSRF cookie, the security headers), and
//! the actions' post-then-redirect. Never: a state change on GET, a secret in a page (the
//! store's shown bodies, the highlighter's masks), markup from data unescaped.

mod highlight;
mod pages;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Form;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::Markup;
use serde::Deserialize;

use super::{AppState, csrf};
use crate::alert::Source;
use pages::{Frame, SilenceForm};

const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");
const ICON: &str = include_str!("icon.svg");

/// The most deliveries the Deliveries page lists in each of its tables.
const LISTED: usize = 200;

/// What every console response says to the browser: run only this server's script and
/// style, never inside a frame, send a referrer only to this server, guess no content type.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes (`/ui/...` and `/`), guarded; the assets are served to anyone.
pub(crate) fn routes(state: Arc<AppState>) -> axum::Router<Arc<AppState>> {
    let pages = axum::Router::new()
        .route("/ui", get(overview))
        .route("/ui/", get(overview))
        .route("/ui/rules", get(rules))
        .route("/ui/decisions", get(decisions))
        .route("/ui/decisions/{seq}", get(decision))
        .route("/ui/explain", get(explain_form).post(explain))
        .route("/ui/deliveries", get(deliveries))
        .route("/ui/dead-letters/{id}/retry", post(retry))
        .route("/ui/dead-letters/{id}/purge", post(purge_one))
        .route("/ui/dead-letters/purge", post(purge_all))
        .route("/ui/silences", get(silences).post(add_silence))
        .route("/ui/silences/check", post(check_condition))
        .route("/ui/silences/{id}/expire", post(expire_silence))
        .route_layer(axum::middleware::from_fn_with_state(state, guard));
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route(
            "/ui/assets/console.css",
            get(|| async { asset(CSS, "text/css") }),
        )
        .route(
            "/ui/assets/console.js",
            get(|| async { asset(JS, "text/javascript") }),
        )
        .route(
            "/ui/assets/icon.svg",
            get(|| async { asset(ICON, "image/svg+xml") }),
        )
        .merge(pages)
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut resp = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        body,
    )
        .into_response();
    harden(resp.headers_mut());
    resp
}

/// The security headers of every console response.
fn harden(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: under `no-referrer` a form's POST carries `Origin:
    // null`, which the CSRF check refuses (found by the browser test).
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// The CSRF token of this browser, for the page to repeat in its forms.
#[derive(Clone)]
struct Token(String);

/// Lets a console request through with the admin credential (when one is configured),
/// answering a browser's missing credential with a basic-auth challenge; gives the browser
/// a CSRF token cookie when it has none; hardens every answer.
async fn guard(State(s): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    if !s.console_enabled {
        return problem(
            StatusCode::NOT_FOUND,
            "No console here",
            "The console is turned off (console.enabled: false in the configuration).",
        );
    }
    if s.admin.check(req.headers(), false).is_err() {
        let mut resp = problem(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            "The console needs the admin credential (admin.basic in the configuration).",
        );
        if s.admin.has_basic() {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"switchyard\", charset=\"UTF-8\""),
            );
        }
        return resp;
    }
    let (token, fresh) = match csrf::cookie_token(req.headers()) {
        Some(t) => (t.to_owned(), false),
        None => match csrf::new_token() {
            Some(t) => (t, true),
            None => {
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "No token",
                    "The operating system's random generator failed; try again.",
                );
            }
        },
    };
    // Every change is a POST from the console's own page that repeats the token: checked
    // here, once, for every action (the form's field, or the script's header).
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, s.limits.max_body_bytes).await else {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                &format!(
                    "The form is larger than {} bytes (limits.max_body_bytes).",
                    s.limits.max_body_bytes
                ),
            );
        };
        let field = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == csrf::FIELD)
            .map(|(_, v)| v.into_owned());
        if let Err(e) = csrf::check(&parts.headers, field.as_deref()) {
            return problem(StatusCode::FORBIDDEN, "Refused", e.message());
        }
        req = Request::from_parts(parts, axum::body::Body::from(bytes));
    }
    req.extensions_mut().insert(Token(token.clone()));
    let mut resp = next.run(req).await;
    if fresh && let Some(cookie) = csrf::set_cookie(&token) {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    harden(h);
    resp
}

/// An HTML answer with `status`.
fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        markup.into_string(),
    )
        .into_response()
}

fn problem(status: StatusCode, title: &str, message: &str) -> Response {
    let mut resp = html(status, pages::problem(title, message));
    harden(resp.headers_mut());
    resp
}

/// A page of the console, with its frame.
fn page(
    tab: &str,
    title: &str,
    token: &Token,
    done: &Done,
    refresh: Option<u32>,
    body: Markup,
) -> Response {
    page_with(
        StatusCode::OK,
        tab,
        title,
        token,
        done.flash(),
        refresh,
        body,
    )
}

fn page_with(
    status: StatusCode,
    tab: &str,
    title: &str,
    token: &Token,
    flash: Option<(bool, String)>,
    refresh: Option<u32>,
    body: Markup,
) -> Response {
    let frame = Frame {
        tab,
        title,
        csrf: &token.0,
        flash,
        refresh,
    };
    html(status, pages::page(&frame, body))
}

/// What the last action did, from the query its redirect carries: a code this module
/// wrote (never text from the request).
#[derive(Deserialize, Default)]
struct Done {
    done: Option<String>,
    id: Option<u64>,
}

impl Done {
    fn flash(&self) -> Option<(bool, String)> {
        let id = self.id.unwrap_or(0);
        let (ok, text) = match self.done.as_deref()? {
            "retried" => (true, format!("Dead letter {id} is queued again, due now.")),
            "purged" => (true, format!("Dead letter {id} is purged.")),
            "purged-all" => (true, format!("{id} dead letter(s) purged.")),
            "silenced" => (true, format!("Silence {id} is in force.")),
            "expired" => (
                true,
                format!("Silence {id} is expired; what it held goes out now."),
            ),
            "gone" => (
                false,
                format!("There is no {id} any more: someone was quicker."),
            ),
            _ => return None,
        };
        Some((ok, text))
    }
}

fn redirect(to: &str, done: &str, id: u64) -> Response {
    Redirect::to(&format!("{to}?done={done}&id={id}")).into_response()
}

/// A refusal of an action, as a page (a store that failed, a bad form).
fn failed(token: &Token, tab: &str, e: &super::ApiError) -> Response {
    page_with(
        e.status(),
        tab,
        "Not done",
        token,
        Some((false, e.message().to_owned())),
        None,
        maud::html! { p { a href={ "/ui/" (tab) } { "Back" } } },
    )
}

/// Alerts in and deliveries out per second, over about the last minute.
pub(crate) struct Rates {
    samples: Mutex<std::collections::VecDeque<(Instant, u64, u64)>>,
}

impl Rates {
    pub(crate) fn new() -> Rates {
        Rates {
            samples: Mutex::new(std::collections::VecDeque::from([(Instant::now(), 0, 0)])),
        }
    }

    /// Takes a sample of the two totals now and answers the rates since the oldest sample
    /// of the last minute (`None` within a second of it).
    fn sample(&self, alerts: u64, delivered: u64) -> Option<(f64, f64)> {
        let now = Instant::now();
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        // Keep the newest sample older than a minute as the window's start.
        while s.len() > 1
            && s.get(1)
                .is_some_and(|x| now.duration_since(x.0).as_secs() >= 60)
        {
            s.pop_front();
        }
        if s.back()
            .is_none_or(|x| now.duration_since(x.0).as_millis() >= 1000)
        {
            s.push_back((now, alerts, delivered));
        }
        if s.len() > 128 {
            s.pop_front();
        }
        let first = s.front()?;
        let secs = now.duration_since(first.0).as_secs_f64();
        (secs >= 1.0).then(|| {
            (
                alerts.saturating_sub(first.1) as f64 / secs,
                delivered.saturating_sub(first.2) as f64 / secs,
            )
        })
    }
}

async fn overview(
    State(s): State<Arc<AppState>>,
    axum::Extension(token): axum::Extension<Token>,
    Query(done): Query<Done>,
) -> Response {
    let set = s.router().rules();
    let stats = s.router().stats();
    let outbox = s
        .router()
        .outbox_view(0)
        .await
        .map(|v| v.targets)
        .unwrap_or_default();
    let warnings = (!set.warnings().is_empty()).then(|| set.warnings().render(crate::Format::Text));
    let o = pages::Overview {
        rules: set.rule_count(),
        targets: set.targets().len(),
        hash: set.content_hash(),
        loaded_at_ms: s.loaded_at_ms.load(std::sync::atomic::Ordering::Relaxed),
        files: set
            .sources()
            .files()
            .map(|f| {
                (
                    f.short_name().to_owned(),
                    f.text().len(),
                    crate::engine::fnv64(f.text().as_bytes()),
                )
            })
            .collect(),
        rejected: s.rejected_text(),
        warnings,
        rates: s.rates.sample(s.metrics.alerts_total(), stats.delivered),
        stats,
        outbox,
        backend: if s.router().shared_store() {
            "NATS JetStream"
        } else {
            "SQLite"
        },
    };
    page(
        "overview",
        "Overview",
        &token,
        &done,
        Some(5),
        pages::overview(&o),
    )
}

#[derive(Deserialize)]
struct FileQuery {
    file: Option<String>,
}

async fn rules(
    State(s): State<Arc<AppState>>,
    axum::Extension(token): axum::Extension<Token>,
    Query(q): Query<FileQuery>,
) -> Response {
    let set = s.router().rules();
    let files: Vec<String> = set
        .sources()
        .files()
        .map(|f| f.short_name().to_owned())
        .collect();
    let chosen = q.file.as_deref().or(files.first().map(String::as_str));
    let shown = chosen.and_then(|name| {
        set.sources()
            .files()
            .find(|f| f.short_name() == name)
            .map(|f| (f.short_name(), f.text()))
    });
    let rules: Vec<pages::RuleRow> = set
        .rules()
        .map(|r| {
            let id = r.name.clone().unwrap_or_else(|| r.location.clone());
            pages::RuleRow {
                hits: s.metrics.rule_hits(&id),
                id,
                location: r.location,
                actions: r.actions,
            }
        })
        .collect();
    let targets: Vec<pages::TargetRow> = set
        .targets()
        .iter()
        .map(|t| pages::TargetRow {
            name: t.name().to_owned(),
            location: t.location().to_owned(),
            method: t.method(),
            url: t.url_display(),
            fallback: t.fallback().map(str::to_owned),
        })
        .collect();
    let body = pages::rules(&files, shown, &rules, &targets);
    page("rules", "Rules", &token, &Done::default(), None, body)
}

async fn decisions(
    State(s): State<Arc<AppState>>,
    axum::Extension(token): axum::Extension<Token>,
) -> Response {
    let list = s.recent.list(usize::MAX);
    let body = pages::decisions(&list, s.recent.capacity());
    page(
        "decisions",
        "Decisions",
        &token,
        &Done::default(),
        Some(5),
        body,
    )
}

async fn decision(
    State(s): State<Arc<AppState>>,
    axum::Extension(token): axum::Extension<Token>,
    Path(seq): Path<u64>,
) -> Response {
    let Some(d) = s.recent.get(seq) else {
        return page_with(
            StatusCode::NOT_FOUND,
            "decisions",
            "Decision",
            &token,
            Some((
                false,
                format!(
                    "Decision {seq} is no longer kept (only the last {}).",
                    s.recent.capacity()
                ),
            )),
            None,
            maud::html! { p { a href="/ui/decisions" { "Recent decisions" } } },
        );
    };
    let set = s.router().rules();
    let alert = d
        .kept
        .as_ref()
        .and_then(|k| super::recent::Recent::alert(k, &s.limits.adapt_limits()));
    let trace = alert.as_ref().map(|a| (a, set.explain(a)));
    let body = pages::decision(&d, trace.as_ref(), set.content_hash() != d.rules_hash);
    page(
        "decisions",
        &format!("Decision {seq}"),
        &token,
        &Done::default(),
        None,
        body,
    )
}

/// The senders the Explain form offers: detection first.
fn sources() -> Vec<&'static str> {
    std::iter::once("detect")
        .chain(Source::ALL.iter().map(|s| s.as_str()))
        .collect()
}

async fn explain_form(axum::Extension(token): axum::Extension<Token>) -> Response {
    let body = pages::explain(&token.0, &sources(), "detect", "", None);
    page("explain", "Explain", &token, &Done::default(), None, body)
}

#[derive(Deserialize)]
struct ExplainForm {
    #[serde(default)]
    source: String,
    #[serde(default)]
    alert: String,
}

async fn explain(
    State(s): State<Arc<AppState>>,
    axum::Extension(token): axum::Extension<Token>,
    Form(f): Form<ExplainForm>,
) -> Response {
    let named = Source::from_name(&f.source);
    let result = match s.explain_text(named, f.alert.as_bytes()).await {
        Ok(list) => Ok(list),
        Err(e) => Err(e.message().to_owned()),
    };
    let chosen = named.map_or("detect", Source::as_str);
    let body = pages::explain(&token.0, &sources(), chosen, &f.alert, Some(result));
    page("explain", "Explain", &token, &Done::default(), None, body)
}

async fn deliveries(
    State(s): State<Arc<AppState>>,
    axum::Extension(token): axum::Extension<Token>,
    Query(done): Query<Done>,
) -> Response {
    let view = s.router().outbox_view(LISTED).await;
    let dead = s.router().dead_letters(LISTED).await;
    match (view, dead) {
        (Ok(view), Ok(dead)) => {
            let body = pages::deliveries(&token.0, &view.targets, &view.waiting, &dead);
            page("deliveries", "Deliveries", &token, &done, Some(5), body)
        }
        (Err(e), _) | (_, Err(e)) => failed(&token, "deliveries", &e.into()),
    }
}

async fn retry(
    State(s): State<Arc<AppState>>,
    axum::Extension(token): axum::Extension<Token>,
    Path(id): Path<u64>,
) -> Response {
    match s.router().retry_dead_letter(id).await {
        Ok(true) => redirect("/ui/deliveries", "retried", id),
        Ok(false) => redirect("/ui/deliveries", "gone", id),
        Err(e) => failed(&token, "deliveries", &e.into()),
    }
}

async fn purge_one(
    State(s): State<Arc<AppState>>,
    axum::Extension(token): axum::Extension<Token>,
    Path(id): Path<u64>,
) -> Response {
    match s.router().purge_dead_letters(Some(id)).await {
        Ok(0) => redirect("/ui/deliveries", "gone", id),
        Ok(_) => redirect("/ui/deliveries", "purged", id),
        Err(e) => failed(&token, "deliveries", &e.into()),
    }
}

async fn purge_all(
    State(s): State<Arc<AppState>>,
    axum::Extension(token): axum::Extension<Token>,
) -> Response {
    match s.router().purge_dead_letters(None).await {
        Ok(n) => redirect("/ui/deliveries", "purged-all", n as u64),
        Err(e) => failed(&token, "deliveries", &e.into()),
    }
}

fn silences_page(
    s: &AppState,
    token: &Token,
    status: StatusCode,
    flash: Option<(bool, String)>,
    form: &SilenceForm,
    diagnostics: Option<&str>,
) -> Response {
    let list = s.router().silences();
    let now = crate::dispatch::now_ms();
    let body = pages::silences(&token.0, &list, now, form, diagnostics);
    page_with(status, "silences", "Silences", token, flash, Some(10), body)
}

async fn silences(
    State(s): State<Arc<AppState>>,
    axum::Extension(token): axum::Extension<Token>,
    Query(done): Query<Done>,
) -> Response {
    let form = SilenceForm {
        lasts: String::from("2h"),
        ..SilenceForm::default()
    };
    silences_page(&s, &token, StatusCode::OK, done.flash(), &form, None)
}

async fn add_silence(
    State(s): State<Arc<AppState>>,
    axum::Extension(token): axum::Extension<Token>,
    Form(form): Form<SilenceForm>,
) -> Response {
    let lasts = if form.lasts.trim().is_empty() {
        "2h"
    } else {
        form.lasts.trim()
    };
    let request = super::silences::SilenceRequest::lasting(
        form.condition.clone(),
        lasts.to_owned(),
        form.created_by.clone(),
        form.comment.clone(),
    );
    let now = crate::dispatch::now_ms();
    let new = match super::silences::new_silence(request, now) {
        Ok(new) => new,
        Err(e) => {
            let flash = Some((false, e.message().to_owned()));
            return silences_page(&s, &token, StatusCode::BAD_REQUEST, flash, &form, None);
        }
    };
    match s.router().add_silence(new).await {
        Ok(silence) => redirect("/ui/silences", "silenced", silence.id),
        Err(crate::dispatch::SilenceError::Condition(d)) => {
            let text = d.render(crate::Format::Text);
            let flash = Some((
                false,
                format!("The condition has {} error(s).", d.error_count()),
            ));
            silences_page(
                &s,
                &token,
                StatusCode::BAD_REQUEST,
                flash,
                &form,
                Some(&text),
            )
        }
        Err(e) => {
            let flash = Some((false, e.to_string()));
            silences_page(&s, &token, StatusCode::BAD_REQUEST, flash, &form, None)
        }
    }
}

#[derive(Deserialize)]
struct ConditionForm {
    #[serde(default)]
    condition: String,
}

/// The live check of a silence's condition (the page's script asks as it is typed).
async fn check_condition(Form(f): Form<ConditionForm>) -> Response {
    let markup = if f.condition.trim().is_empty() {
        maud::html! {}
    } else if f.condition.len() > crate::dispatch::MAX_SILENCE_TEXT {
        let why = format!(
            "the condition is {} bytes; at most {} are allowed",
            f.condition.len(),
            crate::dispatch::MAX_SILENCE_TEXT
        );
        pages::check_result(Some(&why))
    } else {
        match crate::SilenceMatcher::compile(&f.condition) {
            Ok(_) => pages::check_result(None),
            Err(d) => pages::check_result(Some(&d.render(crate::Format::Text))),
        }
    };
    html(StatusCode::OK, markup)
}

async fn expire_silence(
    State(s): State<Arc<AppState>>,
    axum::Extension(token): axum::Extension<Token>,
    Path(id): Path<u64>,
) -> Response {
    match s.router().expire_silence(id).await {
        Ok(Some(_)) => redirect("/ui/silences", "expired", id),
        Ok(None) => redirect("/ui/silences", "gone", id),
        Err(e) => failed(&token, "silences", &e.into()),
    }
}

#[cfg(test)]
#[path = "mod_test.rs"]
mod tests;
