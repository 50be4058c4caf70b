//! Changing rules safely, with the real binary: recorded traffic and a dry-run reload that
//! diffs a candidate against it, shadow rules beside the live ones, per-file isolation,
//! and reloads gated by tests (docs/changing-rules.md).

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::receiver::Receiver;

/// A scratch folder for one test, removed when dropped; the server is stopped by PID.
struct Scratch {
    dir: PathBuf,
    child: Option<Child>,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("switchyard-changing-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rules")).unwrap();
        Scratch { dir, child: None }
    }

    fn rules(&self) -> PathBuf {
        self.dir.join("rules")
    }

    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.rules().join(file), text).unwrap();
    }

    /// Starts the server with `config`, its folder holding `r.rules` = `rules` beside any
    /// file written before.
    fn serve(&mut self, config: &str, rules: &str) -> String {
        let (child, base) = support::process::serve_with(&self.dir, config, rules);
        self.child = Some(child);
        base
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = support::http::client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn post_empty(base: &str, path: &str) -> (u16, Value) {
    let resp = support::http::client()
        .post(format!("{base}{path}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_str(&resp.text().await.unwrap()).unwrap(),
    )
}

async fn get(base: &str, path: &str) -> Value {
    let text = support::http::get(format!("{base}{path}"))
        .await
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `GET /metrics` as text.
async fn metrics(base: &str) -> String {
    support::http::get(format!("{base}/metrics"))
        .await
        .text()
        .await
        .unwrap()
}

/// A dry-run reload of the candidate folder `files` (file name to text).
async fn dry_run(base: &str, files: Value) -> (u16, Value) {
    post(base, "/-/reload?dry_run=true", json!({ "files": files })).await
}

/// Polls `done` on `GET path` every 50 ms for at most 10 s; the last answer.
async fn wait_until(base: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = get(base, path).await;
        if done(&v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn targets(rx: &Receiver) -> String {
    format!(
        "target pager {{ url = \"{}\" }}\ntarget chat {{ url = \"{}\" }}\n",
        rx.url("/pager"),
        rx.url("/chat")
    )
}

/// The text of every recorded file under `dir`.
fn recorded_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    text
}

#[tokio::test]
async fn a_dry_run_diffs_a_candidate_against_recorded_traffic_and_changes_nothing() {
    let rx = Receiver::start().await;
    let mut s = Scratch::new("dry-run");
    let live = format!(
        "{}rule \"db\" when team == \"db\" -> post pager\nrule \"web\" when team == \"web\" -> post chat\n",
        targets(&rx)
    );
    let base = s.serve("record:\n  enabled: true\n  max_mb: 4\n  files: 4\n", &live);

    // Traffic: 6 alerts for db, 4 for web, one carrying a secret.
    for i in 0..10 {
        let team = if i < 6 { "db" } else { "web" };
        let (status, _) = post(
            &base,
            "/alerts/generic",
            json!({"team": team, "n": i, "api_token": "s3cr3t-value"}),
        )
        .await;
        assert_eq!(status, 202);
    }
    rx.wait_for("/pager", 6, Duration::from_secs(10)).await;

    // The candidate sends db to chat.
    let candidate = format!(
        "{}rule \"db\" when team == \"db\" -> post chat\nrule \"web\" when team == \"web\" -> post chat\n",
        targets(&rx)
    );
    let body = json!({"files": {"r.rules": candidate}});
    // The recording is written off the request's path: wait until it holds all ten.
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let (status, answer) = post(&base, "/-/reload?dry_run=true", body.clone()).await;
        assert_eq!(status, 200, "{answer:#}");
        if answer["recorded"]["alerts"] == 10 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer["status"], "dry_run");
    assert_eq!(answer["would"], "reload");
    assert_eq!(answer["recorded"]["alerts"], 10, "{answer:#}");
    assert_eq!(answer["diff"]["changed"], 6);
    let change = &answer["diff"]["changes"][0];
    assert_eq!(
        (change["before"].as_str(), change["after"].as_str()),
        (Some("pager"), Some("chat"))
    );
    assert_eq!(change["count"], 6);
    assert!(
        change["alerts"][0]["file"]
            .as_str()
            .is_some_and(|f| f.starts_with("recorded-"))
    );

    // Nothing changed: the live rules still page for db.
    let rules = get(&base, "/api/rules").await;
    assert_eq!(rules["rule_list"][0]["actions"][0], "post pager");
    let (status, _) = post(&base, "/alerts/generic", json!({"team": "db"})).await;
    assert_eq!(status, 202);
    rx.wait_for("/pager", 7, Duration::from_secs(10)).await;

    // The secret never reached the disk; the recording says where it is.
    let recorded = recorded_text(&s.dir.join("data/recorded"));
    assert!(
        recorded.contains("[redacted]") && !recorded.contains("s3cr3t"),
        "{recorded}"
    );

    // A broken candidate is answered as a reload would be, and changes nothing either.
    let (status, answer) = dry_run(
        &base,
        json!({"r.rules": "when team = \"db\" -> post pager\n"}),
    )
    .await;
    assert_eq!(status, 422, "{answer:#}");
    assert_eq!(answer["status"], "rejected");
    assert!(answer["diagnostics"][0]["code"].is_string());
    let rules = get(&base, "/api/rules").await;
    assert!(
        rules["rejected_reload"].is_null(),
        "a dry run is not a reload: {rules:#}"
    );

    // Names that are not a folder's rules files are refused.
    let (status, answer) = dry_run(&base, json!({"../etc.rules": "x"})).await;
    assert_eq!(status, 400, "{answer:#}");
    assert_eq!(answer["error"]["code"], "bad_candidate");

    // The metrics count what was recorded (written off the request's path).
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let m = metrics(&base).await;
        if m.contains("switchyard_recorded_requests_total 11") || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        metrics.contains("switchyard_recorded_requests_total 11"),
        "{metrics}"
    );
    assert!(metrics.contains("switchyard_recorded_redacted_total 10"));

    // `switchyard diff` reads the same recording folder.
    std::fs::create_dir_all(s.dir.join("candidate")).unwrap();
    std::fs::write(
        s.dir.join("candidate/r.rules"),
        body["files"]["r.rules"].as_str().unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("diff")
        .arg(s.rules())
        .arg(s.dir.join("candidate"))
        .arg("--alerts")
        .arg(s.dir.join("data/recorded"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.starts_with("7 alerts: pager -> chat"), "{text}");
}

#[tokio::test]
async fn without_a_recording_a_dry_run_checks_the_folder_on_disk_and_says_what_is_missing() {
    let rx = Receiver::start().await;
    let mut s = Scratch::new("dry-run-plain");
    let base = s.serve(
        "",
        &format!("{}when team == \"db\" -> post pager\n", targets(&rx)),
    );
    s.write(
        "r.rules",
        &format!("{}when team == \"db\" -> post chat\n", targets(&rx)),
    );
    let (status, answer) = post_empty(&base, "/-/reload?dry_run=true").await;
    assert_eq!(status, 200, "{answer:#}");
    assert!(answer["diff"].is_null());
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("record:"))
    );
}

#[tokio::test]
async fn shadow_rules_count_and_list_disagreements_and_deliver_nothing() {
    let rx = Receiver::start().await;
    let mut s = Scratch::new("shadow");
    let shadow = s.dir.join("shadow");
    std::fs::create_dir_all(&shadow).unwrap();
    std::fs::write(
        shadow.join("r.rules"),
        format!(
            "{}rule \"db\" when labels.team == \"db\" -> post chat\nrule \"web\" when labels.team == \"web\" -> post chat\n",
            targets(&rx)
        ),
    )
    .unwrap();
    let live = format!(
        "{}rule \"db\" when labels.team == \"db\" -> post pager\nrule \"web\" when labels.team == \"web\" -> post chat\n",
        targets(&rx)
    );
    let base = s.serve(&format!("shadow_rules: {}\n", shadow.display()), &live);
    let alerts: Vec<Value> = (0..5)
        .map(|i| {
            let team = if i < 3 { "db" } else { "web" };
            json!({"labels": {"alertname": format!("A{i}"), "team": team}, "annotations": {}, "startsAt": "2026-11-30T10:00:00Z"})
        })
        .collect();
    let (status, answer) = post(&base, "/api/v2/alerts", Value::Array(alerts)).await;
    assert_eq!(status, 202, "{answer:#}");
    rx.wait_for("/pager", 3, Duration::from_secs(10)).await;
    rx.wait_for("/chat", 2, Duration::from_secs(10)).await;
    // Only the live rules deliver: 3 pages, 2 chats, nothing from the shadow.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((rx.count("/pager"), rx.count("/chat")), (3, 2));

    let report = get(&base, "/api/shadow").await;
    assert_eq!(report["enabled"], true);
    assert_eq!(report["alerts"], 5);
    assert_eq!(report["disagreements"], 3, "{report:#}");
    assert_eq!(
        report["by_rule"],
        json!([{"rule": "db", "disagreements": 3}])
    );
    let last = &report["recent"][0];
    assert_eq!(
        (last["live"].as_str(), last["shadow"].as_str()),
        (Some("pager"), Some("chat"))
    );
    assert!(
        last["alert_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{last:#}"
    );
    let metrics = metrics(&base).await;
    assert!(
        metrics.contains("switchyard_shadow_disagreements_total{rule=\"db\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("switchyard_shadow_alerts_total 5"));

    // An edit of the shadow folder is picked up by its watcher; the counts start again.
    std::fs::write(shadow.join("r.rules"), &live).unwrap();
    let report = wait_until(&base, "/api/shadow", |r| r["alerts"] == 0).await;
    assert_eq!(report["disagreements"], 0, "{report:#}");
    let (status, _) = post(
        &base,
        "/api/v2/alerts",
        json!([{"labels": {"alertname": "B", "team": "db"}, "annotations": {}}]),
    )
    .await;
    assert_eq!(status, 202);
    let report = get(&base, "/api/shadow").await;
    assert_eq!(
        (report["alerts"].as_u64(), report["disagreements"].as_u64()),
        (Some(1), Some(0))
    );
}

#[tokio::test]
async fn one_teams_broken_file_keeps_its_last_good_version_while_anothers_edit_applies() {
    let rx = Receiver::start().await;
    let mut s = Scratch::new("per-file");
    s.write(
        "a-team.rules",
        &format!(
            "{}rule \"a\" when team == \"a\" -> post pager\n",
            targets(&rx)
        ),
    );
    let base = s.serve(
        "reload:\n  isolation: per_file\n",
        "rule \"b\" when team == \"b\" -> post pager\n",
    );
    // Team a breaks its file; team b moves its alerts to chat.
    s.write(
        "a-team.rules",
        &format!(
            "{}rule \"a\" when team = \"a\" -> post chat\n",
            targets(&rx)
        ),
    );
    s.write("r.rules", "rule \"b\" when team == \"b\" -> post chat\n");
    let (status, answer) = post_empty(&base, "/-/reload").await;
    assert_eq!(status, 200, "{answer:#}");
    assert_eq!(answer["status"], "partial");
    let held = &answer["last_good"][0];
    assert_eq!(held["file"], "a-team.rules");
    assert_eq!(held["running"], "last_good");
    assert_eq!(held["used_by"], json!(["r.rules:1 posts to chat"]));
    let rules = get(&base, "/api/rules").await;
    assert_eq!(rules["last_good"][0]["file"], "a-team.rules");
    assert!(rules["last_good"][0]["since_ms"].as_u64().is_some());
    assert_eq!(rules["last_good"][0]["diagnostics"][0]["severity"], "error");

    // a still pages as it last loaded; b's edit is live.
    for team in ["a", "b"] {
        let (status, _) = post(&base, "/alerts/generic", json!({"team": team})).await;
        assert_eq!(status, 202);
    }
    rx.wait_for("/pager", 1, Duration::from_secs(10)).await;
    rx.wait_for("/chat", 1, Duration::from_secs(10)).await;
    let pager = rx.wait_for("/pager", 1, Duration::from_secs(1)).await;
    assert!(pager[0].body.contains("\"a\""), "{}", pager[0].body);

    // Team a's fix loads whole, and nothing is held any more.
    s.write(
        "a-team.rules",
        &format!(
            "{}rule \"a\" when team == \"a\" -> post chat\n",
            targets(&rx)
        ),
    );
    let (status, answer) = post_empty(&base, "/-/reload").await;
    assert_eq!(status, 200);
    assert_eq!(answer["status"], "reloaded", "{answer:#}");
    let rules = get(&base, "/api/rules").await;
    assert_eq!(rules["last_good"], json!([]));
    assert!(rules["rejected_reload"].is_null());
}

#[tokio::test]
async fn a_folder_whose_tests_fail_is_refused_when_tests_are_required() {
    let rx = Receiver::start().await;
    let mut s = Scratch::new("require-tests");
    let test = "test \"db pages\" { alert { \"team\": \"db\" } expect post pager }\n";
    let base = s.serve(
        "reload:\n  require_tests: true\n",
        &format!("{}when team == \"db\" -> post pager\n{test}", targets(&rx)),
    );
    s.write(
        "r.rules",
        &format!("{}when team == \"db\" -> post chat\n{test}", targets(&rx)),
    );
    let (status, answer) = post_empty(&base, "/-/reload").await;
    assert_eq!(status, 422, "{answer:#}");
    assert_eq!(answer["status"], "tests_failed");
    assert_eq!(answer["tests"]["failed"], 1);
    assert_eq!(answer["tests"]["failing"][0]["name"], "db pages");
    assert!(answer["tests"]["failing"][0]["failures"][0].is_string());
    let rules = get(&base, "/api/rules").await;
    assert_eq!(
        rules["rule_list"][0]["actions"][0], "post pager",
        "the running rules stay"
    );
    assert_eq!(rules["rejected_reload"]["failed"], 1);
    let metrics = metrics(&base).await;
    assert!(
        metrics.contains("switchyard_reloads_total{outcome=\"tests_failed\"}"),
        "{metrics}"
    );
}
