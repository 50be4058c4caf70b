//! The console in a real headless Chromium (Debian's, installed by `scripts/chromium`),
//! against the real binary on 127.0.0.1: every page loads without a console error, the
//! explain form shows a trace, a dead letter is retried from its page, a rejected reload
//! shows its diagnostic, HTML in an alert's field is shown as text, and a change without
//! the admin credential or the CSRF token is refused. Skips, saying why, only when
//! Chromium cannot be installed.
//!
//! With `SWITCHYARD_SCREENSHOTS=DIR` it writes a screenshot of each page into DIR (the ones
//! in `docs/console/` were taken so).

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::browser::{Browser, StartError};

/// A target on a closed port with no retries: an alert sent to it is a dead letter after
/// one attempt. A header secret the pages must never show.
const RULES: &str = r#"# The on-call pager, and what pages it.
target pager {
    url     = "http://127.0.0.1:1/pager"
    headers = { "Authorization": "Bearer hunter2-literal" }
    body    = { "summary": summary, "severity": severity }
    retries = 0
}

target chat {
    url      = "http://127.0.0.1:1/chat"
    retries  = 0
}

rule "page on critical" when severity == "critical" -> post pager
rule "chat on warning" when severity == "warning" and team in ["db", "web"] -> post chat

test "a critical pages" {
    alert { "severity": "critical", "summary": "disk full" }
    expect post pager
}
"#;

async fn browser(name: &str) -> Option<Browser> {
    match Browser::start(name).await {
        Ok(b) => Some(b),
        Err(StartError::Unavailable(why)) => {
            eprintln!("skipped: Chromium cannot be installed here: {why}");
            None
        }
        Err(StartError::Failed(why)) => panic!("{why}"),
    }
}

struct Server {
    child: std::process::Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve(name: &str, config: &str) -> Server {
    serve_env(name, config, &[])
}

/// `switchyard serve` on [`RULES`] and `config`, with `env` in its environment.
fn serve_env(name: &str, config: &str, env: &[(&str, &str)]) -> Server {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-browser-srv-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let (child, url) = support::process::serve_with_env(&dir, config, RULES, env);
    Server { child, url, dir }
}

async fn post_json(url: &str, body: &str) -> u16 {
    support::http::client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Where screenshots go, if asked for.
fn shots() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("SWITCHYARD_SCREENSHOTS")?);
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

async fn dead_letters(url: &str, n: usize) {
    for _ in 0..200 {
        let body = support::http::get(format!("{url}/api/dead-letters"))
            .await
            .text()
            .await
            .unwrap();
        if body.matches("\"id\":").count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {n} dead letters within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_uses_every_page_in_a_real_browser() {
    let Some(b) = browser("pages").await else {
        return;
    };
    let s = serve("pages", "");
    let base = &s.url;
    let alerts = [
        r#"{"severity": "critical", "summary": "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script>", "@id": "db-1", "team": "db"}"#,
        r#"{"severity": "warning", "summary": "replication lag", "@id": "db-2", "team": "db"}"#,
        r#"{"severity": "info", "summary": "nothing to do", "@id": "db-3"}"#,
    ];
    for a in alerts {
        assert_eq!(post_json(&format!("{base}/alerts"), a).await, 202);
    }
    dead_letters(base, 2).await;

    // Every page loads, without an error on the browser's console.
    for (path, heading) in [
        ("/ui", "Overview"),
        ("/ui/rules", "Rules"),
        ("/ui/decisions", "Recent decisions"),
        ("/ui/decisions/1", "Decision 1"),
        ("/ui/explain", "Explain an alert"),
        ("/ui/deliveries", "Deliveries"),
        ("/ui/silences", "Silences"),
    ] {
        b.goto(&format!("{base}{path}")).await;
        assert_eq!(b.text("h1").await, heading, "{path}");
        let errors = b.console_errors().await;
        assert!(errors.is_empty(), "{path}: {errors:?}");
        let source = b.run("return document.documentElement.outerHTML").await;
        assert!(
            !source.as_str().unwrap().contains("hunter2-literal"),
            "{path} shows a secret"
        );
        if let Some(dir) = shots() {
            let name = if path == "/ui" {
                "overview"
            } else {
                path.trim_start_matches("/ui/")
            };
            b.screenshot(&dir.join(format!("{}.png", name.replace('/', "-"))))
                .await;
        }
    }

    // HTML in an alert's field is text: shown as written, never run.
    b.goto(&format!("{base}/ui/decisions/1")).await;
    let shown = b.text("main pre").await;
    assert!(shown.contains("<script>window.pwned=2</script>"), "{shown}");
    assert_eq!(b.run("return window.pwned === undefined").await, true);

    // The explain form shows a trace, and routes nothing.
    b.goto(&format!("{base}/ui/explain")).await;
    b.type_into("#alert", r#"{"severity": "warning", "team": "web"}"#)
        .await;
    b.click("button[type=submit]").await;
    let trace = b.wait_text(".trace", "chat on warning").await;
    assert!(
        trace.contains("chat on warning") && trace.contains("post chat"),
        "{trace}"
    );
    assert!(trace.contains("team in"), "the predicates: {trace}");
    if let Some(dir) = shots() {
        b.screenshot(&dir.join("explain-trace.png")).await;
    }

    // A silence's condition is checked as it is typed.
    b.goto(&format!("{base}/ui/silences")).await;
    b.type_into("#condition", "severity = \"critical\"").await;
    let said = b.wait_text("#condition-check", "error").await;
    assert!(said.contains("=="), "the checker's help: {said}");

    // A dead letter is retried from its page.
    b.goto(&format!("{base}/ui/deliveries")).await;
    b.click("form[action$='/retry'] button").await;
    let flash = b.wait_text(".flash", "queued again").await;
    assert!(flash.contains("queued again"), "{flash}");
    assert!(b.current_url().await.contains("done=retried"));

    // Without the page's token a change is refused, from the page's own origin too.
    let refused = b
        .run_async(
            "const done = arguments[0];
             fetch('/ui/dead-letters/purge', {method: 'POST', body: new URLSearchParams({_csrf: '00'.repeat(32)})})
               .then(r => fetch('/-/reload', {method: 'POST'}).then(r2 => done([r.status, r2.status])))
               .catch(e => done(String(e)));",
        )
        .await;
    assert_eq!(refused, serde_json::json!([403, 403]));
    dead_letters(base, 1).await;

    // A rejected reload shows its diagnostic, with file, line and caret.
    std::fs::write(
        s.dir.join("rules").join("r.rules"),
        format!("{RULES}\nrule \"typo\" when severity = \"x\" -> post pager\n"),
    )
    .unwrap();
    let reload = support::http::client()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(reload.as_u16(), 422);
    b.goto(&format!("{base}/ui")).await;
    let diag = b.text("pre.diag").await;
    assert!(
        diag.contains("error[E0103]") && diag.contains("r.rules:22:27"),
        "{diag}"
    );
    assert!(diag.contains('^'), "{diag}");
    if let Some(dir) = shots() {
        b.screenshot(&dir.join("overview-rejected.png")).await;
        b.resize(400, 800).await;
        b.goto(&format!("{base}/ui/deliveries")).await;
        b.screenshot(&dir.join("narrow.png")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_admin_credential_the_console_and_its_changes_are_refused() {
    let Some(b) = browser("admin").await else {
        return;
    };
    let config = "admin:\n  basic: { user: ops, password: { env: SY_BROWSER_PW } }\n";
    let s = serve_env("admin", config, &[("SY_BROWSER_PW", "pw")]);
    let base = &s.url;

    // A page of the server's that needs no credential, to run the requests from.
    b.goto(&format!("{base}/ui/assets/icon.svg")).await;
    let statuses = b
        .run_async(
            "const done = arguments[0];
             Promise.all([
               fetch('/-/reload', {method: 'POST'}).then(r => r.status),
               fetch('/api/dead-letters/1/retry', {method: 'POST'}).then(r => r.status),
               fetch('/api/dead-letters').then(r => r.status),
             ]).then(done).catch(e => done(String(e)));",
        )
        .await;
    assert_eq!(statuses, serde_json::json!([401, 401, 401]));
    // The console's own pages ask a browser for the credential (a basic-auth challenge,
    // which a page's script cannot answer): read here as a script would.
    let page = support::http::get(format!("{base}/ui/deliveries")).await;
    assert_eq!(page.status().as_u16(), 401);
    assert!(
        page.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    // With the credential (a browser that was asked for it sends it on every request),
    // the pages open.
    let host = base.trim_start_matches("http://");
    b.goto(&format!("http://ops:pw@{host}/ui/deliveries")).await;
    assert_eq!(b.text("h1").await, "Deliveries");
}
