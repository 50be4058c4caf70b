//! The promise under `kill -9`, with the real binary: `switchyard send` queues 1,000 alerts
//! while the receiver is down, is killed without warning mid-retry, and a second
//! `switchyard send` with the receiver up delivers every one from the outbox.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use support::receiver::Receiver;

const ALERTS: usize = 1_000;
const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

#[tokio::test]
async fn every_alert_arrives_after_kill_9() {
    let dir = std::env::temp_dir().join(format!("switchyard-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (rules, data) = (dir.join("rules"), dir.join("data"));
    std::fs::create_dir_all(&rules).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        rules.join("crash.rules"),
        format!("target sink {{ url = \"http://127.0.0.1:{port}/sink\" retries = 100 }}\nwhen exists(n) -> post sink\n"),
    )
    .unwrap();
    let mut alerts = std::fs::File::create(dir.join("alerts.jsonl")).unwrap();
    for n in 0..ALERTS {
        writeln!(alerts, "{{\"n\": {n}}}").unwrap();
    }
    drop(alerts);

    // The receiver is down: `send` queues everything, then keeps retrying until killed.
    let mut cmd = Command::new(BIN);
    cmd.args([
        "send",
        "--wait",
        "300",
        "--rules",
        rules.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ])
    .arg(dir.join("alerts.jsonl"));
    let (mut child, _) = support::process::spawn_until(cmd, "queued:", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300)); // a few failed attempts, mid-retry
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();

    let rx = Receiver::start_on(&format!("127.0.0.1:{port}")).await;
    let started = Instant::now();
    let out = tokio::task::spawn_blocking({
        let (rules, data) = (rules.clone(), data.clone());
        move || {
            Command::new(BIN)
                .args([
                    "send",
                    "--wait",
                    "60",
                    "--rules",
                    rules.to_str().unwrap(),
                    "--data",
                    data.to_str().unwrap(),
                ])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the second run drains the outbox: {stderr}"
    );
    assert!(stderr.contains("pending: 0"), "{stderr}");

    let mut seen: HashMap<i64, usize> = HashMap::new();
    for g in rx.received() {
        let n = serde_json::from_str::<serde_json::Value>(&g.body).unwrap()["n"]
            .as_i64()
            .unwrap();
        *seen.entry(n).or_insert(0) += 1;
    }
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    println!(
        "after kill -9: {} of {ALERTS} alerts arrived, {duplicates} duplicates, in {:?}",
        seen.len(),
        started.elapsed()
    );
    assert_eq!(
        seen.len(),
        ALERTS,
        "every accepted alert arrived at least once"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
