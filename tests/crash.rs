//! The promise under `kill -9`: submit 1,000 alerts while the receiver is down, kill the
//! process without warning, start again with the receiver up, and every alert arrives.
//!
//! The test binary plays both parts: run normally it is the parent; with
//! `SWITCHYARD_CRASH_CHILD` set it is the child, which submits and then waits to be killed.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::receiver::Receiver;
use switchyard::{Alert, Backoff, Router, RuleSet};

const ALERTS: usize = 1_000;

fn rules(port: u16) -> RuleSet {
    RuleSet::from_files([(
        "crash.rules",
        format!(r#"target sink {{ url = "http://127.0.0.1:{port}/sink" retries = 100 }} when exists(n) -> post sink"#),
    )])
    .unwrap()
}

async fn router(port: u16, dir: &str) -> Router {
    Router::builder()
        .rules(rules(port))
        .data_dir(dir)
        .backoff(Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(300),
        })
        .build()
        .await
        .unwrap()
}

/// The child: submit every alert (each durable when `submit` returns), say so, then wait.
#[tokio::test]
async fn crash_child() {
    let (Ok(dir), Ok(port)) = (
        std::env::var("SWITCHYARD_CRASH_CHILD"),
        std::env::var("SWITCHYARD_CRASH_PORT"),
    ) else {
        return; // run as a normal test: nothing to do
    };
    let r = router(port.parse().unwrap(), &dir).await;
    let mut tasks = Vec::new();
    for chunk in 0..10 {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..ALERTS / 10 {
                r.submit(&Alert::new(json!({"n": chunk * (ALERTS / 10) + i})))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!("SUBMITTED {}", ALERTS);
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test]
async fn every_alert_arrives_after_kill_9() {
    if std::env::var("SWITCHYARD_CRASH_CHILD").is_ok() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("switchyard-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("SWITCHYARD_CRASH_CHILD", &dir)
        .env("SWITCHYARD_CRASH_PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("SUBMITTED") {
                let _ = tx.send(());
            }
        }
    });
    let submitted = ready.recv_timeout(Duration::from_secs(60)).is_ok();
    // Let the child fail a few attempts against the closed port, then kill it mid-retry.
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(submitted, "the child did not finish submitting");

    let rx = Receiver::start_on(&format!("127.0.0.1:{port}")).await;
    let r = router(port, dir.to_str().unwrap()).await;
    let started = Instant::now();
    let mut seen: HashMap<i64, usize> = HashMap::new();
    while started.elapsed() < Duration::from_secs(60) {
        seen.clear();
        for g in rx.received() {
            let n = serde_json::from_str::<serde_json::Value>(&g.body).unwrap()["n"]
                .as_i64()
                .unwrap();
            *seen.entry(n).or_insert(0) += 1;
        }
        if seen.len() == ALERTS && r.stats().pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
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
    assert_eq!(r.stats().pending, 0, "the outbox ends empty");
    assert_eq!(r.stats().dead_letters, 0);
    r.shutdown(Duration::from_secs(1)).await;
    drop(r);
    let _ = std::fs::remove_dir_all(&dir);
}
