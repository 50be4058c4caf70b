//! The server binary under attack, each test a class of what an attack on it found:
//! slow bodies holding every slot, explain without limits, and grouped webhooks whose
//! alerts each copied the group's fields. Everything runs on 127.0.0.1 with ports from
//! the OS, every loop is bounded, and the server is stopped by its PID.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::http::request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RULES: &str = r#"target t { url = "http://127.0.0.1:9/x" }
when @source == "yandex" and status == "ALARM" -> post t
"#;

const YANDEX: &str = r#"{"alertId":"a1","alertName":"cpu","folderId":"f1","status":"ALARM"}"#;

fn temp(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("switchyard-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Found by an attack: 1,500 clients dripping bodies held the 1,024 handling slots until
/// their timeout, and a real alert waited up to 8.8 s. A body is now read before its
/// request takes a slot: the real alert is accepted in well under a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hold_no_slot_and_a_real_alert_goes_through_in_under_a_second() {
    let dir = temp("drip");
    let (mut child, base) = support::process::serve_with(
        &dir,
        "delivery:\n  hold: true\nlimits:\n  request_timeout_secs: 10\n",
        RULES,
    );
    let addr = base.trim_start_matches("http://").to_owned();
    let drippers = 1_500;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(drippers);
    for _ in 0..drippers {
        let addr = addr.clone();
        let ready = ready_tx.clone();
        tasks.spawn(async move {
            let Ok(mut s) = TcpStream::connect(&addr).await else {
                let _ = ready.send(()).await;
                return;
            };
            let head = "POST /alerts/yandex HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{";
            let _ = s.write_all(head.as_bytes()).await;
            let _ = ready.send(()).await;
            // One byte every 200 ms, for at most 12 s (the server cuts it off at 10).
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if s.write_all(b" ").await.is_err() {
                    break;
                }
            }
        });
    }
    drop(ready_tx);
    for _ in 0..drippers {
        tokio::time::timeout(Duration::from_secs(30), ready_rx.recv())
            .await
            .unwrap();
    }
    // Let the server read every head and start on every body.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = Instant::now();
    let (status, body) = request(
        &addr,
        "POST",
        "/alerts/yandex",
        "application/json",
        YANDEX.as_bytes(),
    )
    .await;
    let took = before.elapsed();
    assert_eq!(status, 202, "{body}");
    assert!(
        took < Duration::from_secs(1),
        "a real alert behind {drippers} dripping bodies took {took:?}"
    );
    // The server still answers on its health endpoint, and then stops cleanly.
    let (status, _) = request(&addr, "GET", "/healthz", "text/plain", b"").await;
    assert_eq!(status, 200);
    tasks.abort_all();
    let _ = child.kill();
    let _ = child.wait();
    assert!(started.elapsed() < Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found by an attack: `POST /api/explain` had no body timeout and no concurrency limit
/// (connections dripping a body stayed open indefinitely). It now reads its request exactly
/// as ingest does: the same time limit, size limit, slots and budget.
#[tokio::test]
async fn explain_reads_its_body_as_ingest_does() {
    let dir = temp("explain");
    let (mut child, base) = support::process::serve_with(
        &dir,
        "limits:\n  request_timeout_secs: 1\n  max_body_bytes: 4096\n",
        RULES,
    );
    let addr = base.trim_start_matches("http://").to_owned();
    // A dripping body is cut off with 408 after the request time limit.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /api/explain HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        .await
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let read = async {
        loop {
            let mut buf = [0u8; 1024];
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if out.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
            let _ = s.write_all(b" ").await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Too large: 413, as for ingest.
    let (status, body) = request(
        &addr,
        "POST",
        "/api/explain",
        "application/json",
        &vec![b' '; 5000],
    )
    .await;
    assert_eq!(status, 413, "{body}");
    // A good one is explained.
    let (status, body) = request(
        &addr,
        "POST",
        "/api/explain?source=yandex",
        "application/json",
        YANDEX.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""decision":{"dropped":false,"rules":["r.rules:2"],"targets":["t"]"#),
        "{body}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// An Alertmanager webhook of `alerts` alerts whose group fields hold `common` bytes.
fn webhook(alerts: usize, common: usize) -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..alerts)
        .map(|i| serde_json::json!({"status": "firing", "labels": {"alertname": "A", "i": i.to_string()}}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "version": "4", "status": "firing", "receiver": "r", "groupKey": "{}",
        "commonAnnotations": {"description": "x".repeat(common)},
        "alerts": items,
    }))
    .unwrap()
}

/// Found by an attack: a 1 MiB webhook with 1,000 alerts and a large `commonAnnotations`
/// took 3.0 GiB, because each alert got its own copy of the group's fields, and the
/// 1,000-alert limit was checked only after the copies were made. Both are now checked
/// before any alert is made, and the server's peak memory stays bounded.
#[tokio::test]
async fn grouped_webhooks_cost_memory_bounded_by_their_size() {
    let dir = temp("group");
    let (mut child, base) = support::process::serve_with(&dir, "delivery:\n  hold: true\n", RULES);
    let addr = base.trim_start_matches("http://").to_owned();
    let pid = child.id();
    let before = support::process::peak_rss_kib(pid);

    // 1,000 alerts and 900 KB of group fields: 900 MB once copied. Refused, at once.
    let attack = webhook(1_000, 900_000);
    assert!(attack.len() < 1 << 20);
    for _ in 0..4 {
        let started = Instant::now();
        let (status, body) = request(
            &addr,
            "POST",
            "/alerts/alertmanager",
            "application/json",
            &attack,
        )
        .await;
        assert_eq!(status, 413, "{body}");
        assert!(body.contains("group_too_large"), "{body}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    // 1,001 small alerts: refused before anything is copied.
    let (status, body) = request(
        &addr,
        "POST",
        "/alerts/alertmanager",
        "application/json",
        &webhook(1_001, 100_000),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("too_many_alerts"), "{body}");
    // Explain reads its request the same way.
    let (status, body) = request(
        &addr,
        "POST",
        "/api/explain?source=alertmanager",
        "application/json",
        &attack,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("group_too_large"), "{body}");
    // What a real Alertmanager sends (1,000 alerts, small group fields) is accepted, four
    // at once, while the health endpoint keeps answering: large bodies are parsed off the
    // runtime's workers (two such requests stalled `/healthz` for 5.4 s before).
    let real = webhook(1_000, 500);
    let posts: Vec<_> = (0..4)
        .map(|_| {
            let (addr, real) = (addr.clone(), real.clone());
            tokio::spawn(async move {
                request(
                    &addr,
                    "POST",
                    "/alerts/alertmanager",
                    "application/json",
                    &real,
                )
                .await
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let (status, _) = request(&addr, "GET", "/healthz", "text/plain", b"").await;
        assert_eq!(status, 200);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for p in posts {
        let (status, body) = p.await.unwrap();
        assert_eq!(status, 202, "{body}");
    }
    eprintln!("slowest /healthz beside four 1,000-alert webhooks: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "/healthz took {slowest:?}"
    );

    let peak = support::process::peak_rss_kib(pid);
    // docs/server.md states the bound: about 64 MiB per request in flight at most.
    assert!(
        peak - before < 200 * 1024,
        "the server grew from {before} KiB to a peak of {peak} KiB"
    );
    eprintln!("peak RSS: {before} KiB at start, {peak} KiB after the attack");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A small filesystem of our own, mounted for one test and unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// `None` where mounting is not allowed (not root): the test says so and checks nothing.
    fn mount(dir: &std::path::Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_owned()))
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Found by an attack: when a delivery's outcome could not be committed (disk full), the
/// worker sent the same delivery again at once: 93,515 requests for 40 alerts in 30 s, an
/// ERROR line each. Now the worker pauses with backoff, `/readyz` says the outbox cannot
/// be written, the log says so once per 10 s, and all goes on once there is room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_delivery_instead_of_a_retry_storm() {
    let dir = temp("disk-full");
    let Some(disk) = SmallDisk::mount(&dir.join("mnt"), "4m") else {
        eprintln!("skipped: mounting a small filesystem needs root (CI runs as root)");
        return;
    };
    let rx = support::receiver::Receiver::start().await;
    let rules = format!(
        "target t {{ url = \"{}\" retries = 100 }}\nwhen exists(n) -> post t\n",
        rx.url("/fail/100000000")
    );
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("r.rules"), &rules).unwrap();
    let data = disk.0.join("data");
    let (mut child, base) = support::process::serve(&[
        "--listen",
        "127.0.0.1:0",
        "--rules",
        rules_dir.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    let addr = base.trim_start_matches("http://").to_owned();
    for n in 0..40 {
        let (status, body) = request(
            &addr,
            "POST",
            "/alerts/generic",
            "application/json",
            format!("{{\"n\":{n}}}").as_bytes(),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
    rx.wait_for("/fail/100000000", 40, Duration::from_secs(20))
        .await;
    let filler = disk.fill();
    // The outbox soon finds it cannot commit: /readyz says so.
    let mut unready = false;
    for _ in 0..100 {
        let (status, body) = request(&addr, "GET", "/readyz", "text/plain", b"").await;
        if status == 503 {
            assert!(body.contains("outbox_unavailable"), "{body}");
            unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(unready, "/readyz never said the outbox cannot be written");
    // Ten seconds of a full disk: no storm.
    let before = rx.received().len();
    let log_before = support::process::stderr_lines(child.id()).len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let sent = rx.received().len() - before;
    let lines = support::process::stderr_lines(child.id());
    let errors = lines[log_before..]
        .iter()
        .filter(|l| l.contains("ERROR"))
        .count();
    eprintln!(
        "with the disk full for 10 s: {sent} requests for 40 deliveries, {errors} ERROR lines"
    );
    assert!(
        sent <= 40 * 10,
        "{sent} requests for 40 deliveries in 10 s: a retry storm"
    );
    assert!(
        errors <= 4,
        "{errors} ERROR lines in 10 s:\n{}",
        lines[log_before..].join("\n")
    );
    // A new alert is refused while the disk is full, and the answer says why.
    let (status, body) = request(
        &addr,
        "POST",
        "/alerts/generic",
        "application/json",
        b"{\"n\":99}",
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("the disk is full"), "{body}");
    // Room again: the next commit succeeds, and the server is ready.
    std::fs::remove_file(filler).unwrap();
    let (status, body) = request(
        &addr,
        "POST",
        "/alerts/generic",
        "application/json",
        b"{\"n\":40}",
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = request(&addr, "GET", "/readyz", "text/plain", b"").await;
    assert_eq!(status, 200, "{body}");
    let _ = child.kill();
    let _ = child.wait();
    drop(disk);
    let _ = std::fs::remove_dir_all(&dir);
}
