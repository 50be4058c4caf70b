//! Reload under load, with the real binary: while clients post a steady stream of alerts,
//! the rules folder is rewritten every 100 ms between two versions. No request may fail,
//! every decision must match exactly one version, and every accepted alert must arrive.
//! Prints the p99 time from a file write to the first decision made with the new set.
//! `RELOAD_LOAD_SECONDS` sets the duration (30 by default).

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::receiver::Receiver;

fn version(v: u8, rx: &Receiver) -> String {
    format!(
        "target v1 {{ url = \"{}\" }}\ntarget v2 {{ url = \"{}\" }}\n# version {v}\nwhen exists(n) -> post v{v}\n",
        rx.url("/v1"),
        rx.url("/v2")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_every_100ms_under_load_lose_nothing_and_never_mix() {
    let seconds: u64 = std::env::var("RELOAD_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let rx = Receiver::start().await;
    let dir = std::env::temp_dir().join(format!("switchyard-reload-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("a.rules"), version(1, &rx)).unwrap();

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rules",
        rules.to_str().unwrap(),
    ])
    .args(["--data", dir.join("data").to_str().unwrap()])
    .env("RUST_LOG", "warn");
    let (mut child, base) =
        support::process::spawn_until(cmd, "listening on ", Duration::from_secs(30));

    let deadline = Instant::now() + Duration::from_secs(seconds);
    // Writes: (time, version written).
    let writes: Arc<Mutex<Vec<(Instant, u8)>>> = Arc::default();
    let writer = {
        let (writes, rules, v1, v2) = (
            writes.clone(),
            rules.clone(),
            version(1, &rx),
            version(2, &rx),
        );
        std::thread::spawn(move || {
            let mut v = 1u8;
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                v = 3 - v;
                std::fs::write(rules.join("a.rules"), if v == 1 { &v1 } else { &v2 }).unwrap();
                writes.lock().unwrap().push((Instant::now(), v));
            }
        })
    };

    // Clients: (time sent, version decided).
    let decisions: Arc<Mutex<Vec<(Instant, u8)>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let client = support::http::client();
    let mut tasks = Vec::new();
    for c in 0..8 {
        let (client, base, decisions, failures) = (
            client.clone(),
            base.clone(),
            decisions.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let sent = Instant::now();
                let resp = client
                    .post(format!("{base}/alerts/generic"))
                    .header("content-type", "application/json")
                    .body(format!("{{\"n\": \"{c}-{n}\"}}"))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().as_u16() == 202 => {
                        let v: serde_json::Value =
                            serde_json::from_str(&r.text().await.unwrap()).unwrap();
                        let targets = v["alerts"][0]["targets"].as_array().unwrap().clone();
                        match targets.as_slice() {
                            [t] if t == "v1" => decisions.lock().unwrap().push((sent, 1)),
                            [t] if t == "v2" => decisions.lock().unwrap().push((sent, 2)),
                            other => failures
                                .lock()
                                .unwrap()
                                .push(format!("a decision of no single version: {other:?}")),
                        }
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status())),
                    Err(e) => failures
                        .lock()
                        .unwrap()
                        .push(format!("request failed: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    writer.join().unwrap();

    let failures = failures.lock().unwrap().clone();
    let decisions = decisions.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failures of {} requests, first: {:?}",
        failures.len(),
        failures.len() + decisions.len(),
        failures.first()
    );
    let accepted = decisions.len();

    // Every accepted alert arrives at the target its decision named.
    let start = Instant::now();
    while rx.received().len() < accepted && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        rx.received().len(),
        accepted,
        "every accepted alert arrived"
    );
    let (d1, d2) = (
        decisions.iter().filter(|d| d.1 == 1).count(),
        decisions.iter().filter(|d| d.1 == 2).count(),
    );
    assert_eq!(
        (rx.count("/v1"), rx.count("/v2")),
        (d1, d2),
        "each went where its decision said"
    );

    // Latency: for each write that changed the version, the first decision with the new
    // version among requests sent after the write.
    let writes = writes.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = Vec::new();
    for (i, &(at, v)) in writes.iter().enumerate() {
        let next_write = writes.get(i + 1).map_or(deadline, |w| w.0);
        if let Some(&(sent, _)) = decisions
            .iter()
            .filter(|d| d.0 >= at && d.0 < next_write && d.1 == v)
            .min_by_key(|d| d.0)
        {
            latencies.push(sent - at);
        }
    }
    latencies.sort();
    let p = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "reload under load: {seconds}s, {} writes, {accepted} alerts accepted ({d1} v1, {d2} v2), 0 failed; \
         write-to-first-decision over {} version changes: p50 {:?}, p99 {:?}, max {:?}",
        writes.len(),
        latencies.len(),
        p(0.5),
        p(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    assert!(
        latencies.len() * 2 >= writes.len(),
        "most versions were seen live: {} of {}",
        latencies.len(),
        writes.len()
    );

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
