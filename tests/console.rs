//! The console's pages in-process (no socket, no browser): what each page shows, that data
//! is escaped and secrets are never rendered, that the admin credential and the CSRF token
//! guard every change. `tests/browser.rs` drives the same pages in a real Chromium.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use switchyard::server::{
    AdminAuth, AppState, ConsoleConfig, Credential, IngestAuth, Limits, Secret, app,
};
use switchyard::{Router, RuleSet};
use tower::ServiceExt;

/// Rules with secrets in the places the console must mask: a literal header value and an
/// environment default. The target's port is closed and it has no retries: an alert sent
/// to it becomes a dead letter after one attempt.
const RULES: &str = r#"
target pager {
    url     = "http://127.0.0.1:1/pager"
    headers = { "Authorization": "Bearer hunter2-literal", "X-Team": "${env.SY_CONSOLE_UNSET:-default-secret}" }
    retries = 0
}

rule "page on critical" when severity == "critical" -> post pager
"#;

struct Fixture {
    state: Arc<AppState>,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fixture(name: &str, admin: AdminAuth) -> Fixture {
    let dir =
        std::env::temp_dir().join(format!("switchyard-console-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("pager.rules"), RULES).unwrap();
    let set = RuleSet::load_dir(&rules_dir).unwrap();
    let router = Router::builder()
        .rules(set)
        .data_dir(dir.join("data"))
        .build()
        .await
        .unwrap();
    let state = AppState::new(
        router,
        Some(rules_dir),
        Limits::default(),
        IngestAuth::none(),
    )
    .with_admin(admin)
    .with_console(&ConsoleConfig::default());
    Fixture {
        state: Arc::new(state),
        dir,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(f: &Fixture, req: Request<Body>) -> Answer {
    let resp = app(f.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(f: &Fixture, uri: &str) -> Answer {
    send(f, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// A page and the CSRF token its cookie gave the browser.
async fn page_and_token(f: &Fixture, uri: &str) -> (Answer, String) {
    let a = get(f, uri).await;
    let cookie = a
        .headers
        .get("set-cookie")
        .expect("a token cookie")
        .to_str()
        .unwrap();
    let token = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    assert!(
        a.body.contains(&format!("value=\"{token}\"")),
        "the forms repeat the token"
    );
    (a, token)
}

/// A form posted as a browser on the console's own page posts it.
fn form(uri: &str, token: &str, fields: &str) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "127.0.0.1:9095")
        .header("origin", "http://127.0.0.1:9095")
        .header("sec-fetch-site", "same-origin")
        .header("cookie", format!("switchyard_csrf={token}"))
        .body(Body::from(format!("_csrf={token}&{fields}")))
        .unwrap()
}

async fn ingest(f: &Fixture, body: &str) {
    let req = Request::post("/alerts")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    assert_eq!(send(f, req).await.status, StatusCode::ACCEPTED);
}

/// Waits (bounded) until the router holds `n` dead letters.
async fn dead_letters(f: &Fixture, n: u64) {
    for _ in 0..200 {
        if f.state.router().stats().dead_letters >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no dead letter after 5 s");
}

#[tokio::test]
async fn every_page_answers_html_with_the_security_headers() {
    let f = fixture("pages", AdminAuth::none()).await;
    for uri in [
        "/ui",
        "/ui/rules",
        "/ui/decisions",
        "/ui/explain",
        "/ui/deliveries",
        "/ui/silences",
    ] {
        let a = get(&f, uri).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.body);
        assert!(a.body.starts_with("<!DOCTYPE html>"), "{uri}");
        let csp = a.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(a.headers["x-content-type-options"], "nosniff");
        // Found by the browser test: under `no-referrer` a form's POST says `Origin: null`,
        // and the console refused its own forms.
        assert_eq!(a.headers["referrer-policy"], "same-origin");
        assert_eq!(a.headers["cache-control"], "no-store");
        assert!(
            a.body.contains("aria-current=\"page\""),
            "{uri}: its tab is marked"
        );
    }
    let root = get(&f, "/").await;
    assert!(root.status.is_redirection());
    assert_eq!(root.headers["location"], "/ui");
    let css = get(&f, "/ui/assets/console.css").await;
    assert_eq!(css.headers["content-type"], "text/css");
    assert!(css.body.contains("prefers-color-scheme: dark"));
    let js = get(&f, "/ui/assets/console.js").await;
    assert_eq!(js.headers["content-type"], "text/javascript");
}

#[tokio::test]
async fn secrets_in_the_rules_are_never_rendered() {
    let f = fixture("secrets", AdminAuth::none()).await;
    ingest(&f, r#"{"severity": "critical", "note": "x"}"#).await;
    dead_letters(&f, 1).await;
    for uri in [
        "/ui/rules",
        "/ui/rules?file=pager.rules",
        "/ui/deliveries",
        "/ui",
        "/ui/decisions/1",
    ] {
        let a = get(&f, uri).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        for secret in ["hunter2-literal", "default-secret"] {
            assert!(!a.body.contains(secret), "{uri} shows {secret}");
        }
    }
    let rules = get(&f, "/ui/rules").await;
    assert!(rules.body.contains("•••"), "masked in place");
    assert!(rules.body.contains(r#"id="L9""#), "each line has an anchor");
    assert!(
        rules
            .body
            .contains("href=\"/ui/rules?file=pager.rules#L2\""),
        "a target links to its declaration"
    );
}

#[tokio::test]
async fn alert_fields_with_markup_are_shown_as_text() {
    let f = fixture("escape", AdminAuth::none()).await;
    ingest(
        &f,
        r#"{"severity": "critical", "summary": "<script>alert('x')</script>", "@id": "a1"}"#,
    )
    .await;
    let list = get(&f, "/ui/decisions").await;
    assert!(
        list.body.contains("href=\"/ui/decisions/1\""),
        "{}",
        list.body
    );
    assert!(list.body.contains("page on critical"));
    let one = get(&f, "/ui/decisions/1").await;
    assert_eq!(one.status, StatusCode::OK);
    assert!(!one.body.contains("<script>alert"), "{}", one.body);
    assert!(one.body.contains("&lt;script&gt;alert"), "{}", one.body);
    assert!(
        one.body.contains("severity == &quot;critical&quot;"),
        "the trace: {}",
        one.body
    );
    assert_eq!(
        get(&f, "/ui/decisions/99").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_explain_form_shows_a_trace_and_delivers_nothing() {
    let f = fixture("explain", AdminAuth::none()).await;
    let (_, token) = page_and_token(&f, "/ui/explain").await;
    let alert = "%7B%22severity%22%3A%22critical%22%7D"; // {"severity":"critical"}
    let a = send(
        &f,
        form(
            "/ui/explain",
            &token,
            &format!("source=generic&alert={alert}"),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        a.body.contains("page on critical") && a.body.contains("post pager"),
        "{}",
        a.body
    );
    assert_eq!(
        f.state.router().stats().submitted,
        0,
        "explained, not routed"
    );
    let bad = send(
        &f,
        form("/ui/explain", &token, "source=detect&alert=%7Bnot"),
    )
    .await;
    assert!(bad.body.contains("not valid JSON"), "{}", bad.body);
}

#[tokio::test]
async fn a_dead_letter_is_retried_and_purged_from_the_page_with_the_token_only() {
    let f = fixture("actions", AdminAuth::none()).await;
    ingest(&f, r#"{"severity": "critical"}"#).await;
    dead_letters(&f, 1).await;
    let (page, token) = page_and_token(&f, "/ui/deliveries").await;
    assert!(
        page.body.contains("/ui/dead-letters/1/retry"),
        "{}",
        page.body
    );

    // Without the token, with another, or from another site: refused, nothing done.
    let mut no_token = form("/ui/dead-letters/1/retry", &token, "");
    *no_token.body_mut() = Body::empty();
    assert_eq!(send(&f, no_token).await.status, StatusCode::FORBIDDEN);
    let other = "ab".repeat(32);
    let wrong =
        form("/ui/dead-letters/1/retry", &token, "").map(|_| Body::from(format!("_csrf={other}")));
    assert_eq!(send(&f, wrong).await.status, StatusCode::FORBIDDEN);
    let mut elsewhere = form("/ui/dead-letters/1/retry", &token, "");
    elsewhere
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    elsewhere
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(send(&f, elsewhere).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.state.router().stats().dead_letters, 1, "nothing was done");

    // The same from the page: done, and the page says so.
    let done = send(&f, form("/ui/dead-letters/1/retry", &token, "")).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.headers["location"], "/ui/deliveries?done=retried&id=1");
    let said = get(&f, "/ui/deliveries?done=retried&id=1").await;
    assert!(said.body.contains("Dead letter 1 is queued again"));
    // It fails again (the port is closed) and is purged.
    dead_letters(&f, 1).await;
    let purged = send(&f, form("/ui/dead-letters/1/purge", &token, "")).await;
    assert_eq!(
        purged.headers["location"],
        "/ui/deliveries?done=purged&id=1"
    );
    assert_eq!(f.state.router().stats().dead_letters, 0);
    let again = send(&f, form("/ui/dead-letters/1/purge", &token, "")).await;
    assert_eq!(again.headers["location"], "/ui/deliveries?done=gone&id=1");
}

#[tokio::test]
async fn the_json_api_refuses_a_browsers_change_from_elsewhere_and_takes_a_scripts() {
    let f = fixture("api-csrf", AdminAuth::none()).await;
    let from_page = Request::post("/-/reload")
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .body(Body::empty())
        .unwrap();
    let a = send(&f, from_page).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert!(a.body.contains("\"code\":\"csrf\""), "{}", a.body);
    let script = Request::post("/-/reload").body(Body::empty()).unwrap();
    assert_eq!(send(&f, script).await.status, StatusCode::OK);
    // Reads are not changes: a browser reads the JSON API from anywhere it may.
    let read = Request::get("/api/rules")
        .header("sec-fetch-site", "cross-site")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f, read).await.status, StatusCode::OK);
}

#[tokio::test]
async fn with_an_admin_credential_the_console_asks_the_browser_for_it() {
    let admin = AdminAuth::require(vec![Credential::Basic {
        user: String::from("ops"),
        password: Secret::new("pw"),
    }]);
    let f = fixture("admin", admin).await;
    let a = get(&f, "/ui").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm=")
    );
    assert!(a.body.contains("Sign in"), "an HTML page: {}", a.body);
    let signed = Request::get("/ui/deliveries")
        .header("authorization", "Basic b3BzOnB3") // ops:pw
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f, signed).await.status, StatusCode::OK);
    // An action without the credential is refused before anything else.
    let action = form("/ui/dead-letters/purge", &"00".repeat(32), "");
    assert_eq!(send(&f, action).await.status, StatusCode::UNAUTHORIZED);
    // The assets hold nothing secret.
    assert_eq!(
        get(&f, "/ui/assets/console.css").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_silence_is_made_checked_live_and_expired_from_the_page() {
    let f = fixture("silences", AdminAuth::none()).await;
    let (_, token) = page_and_token(&f, "/ui/silences").await;
    // The live check, as the page's script asks it.
    let mut check = form("/ui/silences/check", &token, "");
    *check.body_mut() = Body::from("condition=severity+%3D+%22critical%22");
    check
        .headers_mut()
        .insert("x-switchyard-csrf", token.parse().unwrap());
    let said = send(&f, check).await;
    assert!(
        said.body.contains("error") && said.body.contains("=="),
        "{}",
        said.body
    );
    // A bad condition: the page again, with the diagnostic and the form kept.
    let bad = send(
        &f,
        form(
            "/ui/silences",
            &token,
            "condition=severity+%3D+%22x%22&for=1h&created_by=ann&comment=db",
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("value=\"ann\""), "{}", bad.body);
    assert!(
        bad.body.contains("^"),
        "a caret under the error: {}",
        bad.body
    );
    // A good one, then expired.
    let made = send(
        &f,
        form(
            "/ui/silences",
            &token,
            "condition=severity+%3D%3D+%22critical%22&for=1h&created_by=ann&comment=upgrade",
        ),
    )
    .await;
    assert_eq!(made.headers["location"], "/ui/silences?done=silenced&id=1");
    let listed = get(&f, "/ui/silences").await;
    assert!(
        listed.body.contains("severity == &quot;critical&quot;"),
        "{}",
        listed.body
    );
    let expired = send(&f, form("/ui/silences/1/expire", &token, "")).await;
    assert_eq!(
        expired.headers["location"],
        "/ui/silences?done=expired&id=1"
    );
}

#[tokio::test]
async fn a_rejected_reload_shows_its_diagnostic_on_the_overview() {
    let f = fixture("rejected", AdminAuth::none()).await;
    std::fs::write(
        f.dir.join("rules").join("pager.rules"),
        format!("{RULES}\nrule \"typo\" when severity = \"x\" -> post pager\n"),
    )
    .unwrap();
    let reload = send(&f, Request::post("/-/reload").body(Body::empty()).unwrap()).await;
    assert_eq!(reload.status, StatusCode::UNPROCESSABLE_ENTITY);
    let o = get(&f, "/ui").await;
    assert!(o.body.contains("reload rejected"), "{}", o.body);
    assert!(
        o.body.contains("pager.rules:10:27"),
        "file, line and column: {}",
        o.body
    );
    assert!(o.body.contains("^"), "the caret: {}", o.body);
}
