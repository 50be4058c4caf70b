//! Many replicas, one truth, with the real binary: three `switchyard serve` replicas on a
//! 3-node NATS JetStream cluster on 127.0.0.1, and a counting receiver. Every alert is sent
//! twice, to two different replicas; one replica is `kill -9`ed and one NATS node killed
//! mid-run. Every accepted alert is paged, once (a re-send after a replica died holding a
//! page carries the same `Idempotency-Key`: counted and reported). With two nodes down,
//! ingest answers 503 with `Retry-After`, `/readyz` says so, and once they are back every
//! accepted alert still goes out, and a refused one retried by its sender goes once. Skips, with the reason, only when `nats-server` cannot be
//! installed here.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::time::{Duration, Instant};

use support::nats::{Cluster, StartError};
use support::receiver::Receiver;

/// Alerts sent in the chaos run.
const ALERTS: usize = 150;

fn cluster(name: &str) -> Option<Cluster> {
    match Cluster::start(name, 3, Duration::from_secs(60)) {
        Ok(c) => Some(c),
        Err(StartError::Unavailable(why)) => {
            eprintln!("skipped: nats-server cannot be installed here: {why}");
            None
        }
        Err(StartError::Failed(why)) => panic!("{why}"),
    }
}

/// One request on a new connection, bounded in time: the status, the headers (lowercase
/// names) and the body; `None` when the replica does not answer (killed).
async fn request(
    base: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Option<(u16, String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.ok()?;
        s.write_all(body.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        Some((status, head.to_ascii_lowercase(), body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .ok()
        .flatten()
}

/// A Prometheus alert `n`, firing (its `@id` is its labels' fingerprint).
fn alert(n: usize) -> String {
    format!(
        r#"[{{"labels": {{"alertname": "Load", "n": "{n}"}}, "annotations": {{}}, "startsAt": "2026-11-29T10:00:00Z"}}]"#
    )
}

/// Sends alert `n` as a sender does: to replica `first`, and on no answer or a 503 to the
/// next one, a bounded number of times. Whether some replica accepted it (202).
async fn send(bases: &[String], first: usize, n: usize) -> bool {
    for i in 0..12 {
        let base = &bases[(first + i) % bases.len()];
        match request(base, "POST", "/api/v2/alerts", &alert(n)).await {
            Some((202, _, _)) => return true,
            Some((503, _, _)) | None => tokio::time::sleep(Duration::from_millis(250)).await,
            Some((status, _, body)) => panic!("alert {n}: {status} {body}"),
        }
    }
    false
}

/// The receiver's pages by alert `n`: the `Idempotency-Key` of each request.
fn pages(rx: &Receiver) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rx.received() {
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let n = v["labels"]["n"].as_str().unwrap_or_default().to_owned();
        let key = r
            .headers
            .get("idempotency-key")
            .cloned()
            .unwrap_or_default();
        out.entry(n).or_default().push(key);
    }
    out
}

fn config(c: &Cluster) -> String {
    let urls: Vec<String> = c
        .nodes
        .iter()
        .map(|n| format!("nats://127.0.0.1:{}", n.client))
        .collect();
    format!(
        "state:\n  backend: nats\n  urls: [{}]\n  stream: SY\n  replicas: 3\n  timeout_ms: 4000\n  lease_ms: 3000\n",
        urls.join(", ")
    )
}

/// Rules paging `path` of the receiver once per alert.
fn rules(rx: &Receiver, path: &str) -> String {
    format!(
        "target pager {{ url = \"{}\" retries = 50 }}\n\
         rule \"pages\" when @source == \"prometheus\" -> post pager, dedup until resolved\n",
        rx.url(path)
    )
}

struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replicas(name: &str, n: usize, config: &str, rules: &str) -> (Vec<Replica>, std::path::PathBuf) {
    let root = std::env::temp_dir().join(format!("switchyard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let out = (0..n)
        .map(|i| {
            let dir = root.join(format!("r{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let (child, base) = support::process::serve_with(&dir, config, rules);
            Replica { child, base }
        })
        .collect();
    (out, root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_page_each_alert_once_through_a_replica_kill_and_a_node_kill() {
    let Some(mut c) = cluster("replicas") else {
        return;
    };
    let rx = Receiver::start().await;
    // A slow receiver: a replica killed mid-run holds pages sent and not yet answered.
    let (mut reps, root) = replicas("replicas", 3, &config(&c), &rules(&rx, "/slow/300"));
    let bases: Vec<String> = reps.iter().map(|r| r.base.clone()).collect();

    let started = Instant::now();
    let mut accepted = BTreeSet::new();
    let mut refused = 0usize;
    for chunk in (0..ALERTS).collect::<Vec<_>>().chunks(10) {
        if chunk[0] == ALERTS / 3 {
            // A replica dies without warning, some of its pages taken and not finished.
            let _ = reps[1].child.kill();
            let _ = reps[1].child.wait();
        }
        if chunk[0] == ALERTS / 2 {
            c.kill(0);
        }
        let sends = chunk.iter().map(|&n| {
            let bases = bases.clone();
            async move {
                // Twice, to two different replicas: a sender's re-send, or two senders.
                let (a, b) = tokio::join!(send(&bases, n % 3, n), send(&bases, (n + 1) % 3, n));
                (n, a || b)
            }
        });
        for (n, ok) in futures_util::future::join_all(sends).await {
            if ok {
                accepted.insert(n.to_string());
            } else {
                refused += 1;
            }
        }
    }
    let sent_in = started.elapsed();
    assert!(
        accepted.len() >= ALERTS * 9 / 10,
        "most alerts accepted: {} of {ALERTS}",
        accepted.len()
    );

    // Every accepted alert is paged (the killed replica's leases lapse after 3 s).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let paged: BTreeSet<String> = pages(&rx).into_keys().collect();
        if accepted.is_subset(&paged) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Late pages would show here: wait out one more lease.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let paged = pages(&rx);
    let missing: Vec<&String> = accepted
        .iter()
        .filter(|n| !paged.contains_key(*n))
        .collect();
    assert!(missing.is_empty(), "accepted and never paged: {missing:?}");
    let mut same_key = 0usize;
    for (n, keys) in &paged {
        let distinct: BTreeSet<&String> = keys.iter().collect();
        assert_eq!(
            distinct.len(),
            1,
            "alert {n} paged under different keys (two replicas both paged): {keys:?}"
        );
        same_key += keys.len() - 1;
    }
    println!(
        "3 replicas, 3 NATS nodes: {ALERTS} alerts sent twice in {sent_in:?}; {} accepted, {refused} refused; {} paged; {same_key} re-sends with the same Idempotency-Key (a replica killed holding them)",
        accepted.len(),
        paged.len()
    );
    drop(reps);
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_nats_majority_ingest_answers_503_and_nothing_accepted_is_lost() {
    let Some(mut c) = cluster("majority") else {
        return;
    };
    let rx = Receiver::start().await;
    let (reps, root) = replicas("majority", 1, &config(&c), &rules(&rx, "/pager"));
    let base = reps[0].base.clone();
    assert!(send(std::slice::from_ref(&base), 0, 1).await);
    rx.wait_for("/pager", 1, Duration::from_secs(15)).await;
    // The backend's own metrics are exported beside the router's.
    let (status, _, metrics) = request(&base, "GET", "/metrics", "").await.unwrap();
    assert_eq!(status, 200);
    for name in [
        "switchyard_nats_round_trip_seconds_count",
        "switchyard_nats_redeliveries_total",
        "switchyard_nats_pending_acks",
        "switchyard_nats_conflicts",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }

    // The first page's outcome is stored before the outage: killed between the receiver's
    // answer and that commit, it would be sent again after the outage, under the same
    // Idempotency-Key (at least once, as documented), which is not what this test is about.
    // CI failed so once, under load.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, _, metrics) = request(&base, "GET", "/metrics", "").await.unwrap();
        let in_flight = metrics
            .lines()
            .find(|l| l.starts_with("switchyard_deliveries_in_flight{") && l.contains("\"pager\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        if in_flight == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first page is still in flight: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.kill(0);
    c.kill(1);
    // No majority: refused within the senders' patience, with Retry-After; not ready.
    let asked = Instant::now();
    let (status, head, body) = request(&base, "POST", "/api/v2/alerts", &alert(2))
        .await
        .expect("an answer");
    let took = asked.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(head.contains("retry-after:"), "{head}");
    assert!(took < Duration::from_secs(6), "answered in {took:?}");
    let (status, _, body) = request(&base, "GET", "/readyz", "").await.unwrap();
    assert_eq!(status, 503, "{body}");

    // Back: accepted again, and delivered.
    c.restart(0).unwrap();
    c.restart(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ok = false;
    while !ok && Instant::now() < deadline {
        ok = matches!(
            request(&base, "POST", "/api/v2/alerts", &alert(3)).await,
            Some((202, _, _))
        );
        if !ok {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(ok, "accepted again once a majority is back");
    // The sender retries the alert it was refused. A 503 says "not known to be stored":
    // a commit the lone node held may have been stored once the majority came back; the
    // retry is then decided on it. Either way it is paged once.
    assert!(send(std::slice::from_ref(&base), 0, 2).await);
    let got = rx.wait_for("/pager", 3, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let paged = pages(&rx);
    assert_eq!(paged.get("3").map(Vec::len), Some(1), "{got:?}");
    assert_eq!(paged.get("2").map(Vec::len), Some(1), "{got:?}");
    assert_eq!(paged.get("1").map(Vec::len), Some(1), "{got:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut ready = false;
    while !ready && Instant::now() < deadline {
        ready = matches!(
            request(&base, "GET", "/readyz", "").await,
            Some((200, _, _))
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "ready again");
    drop(reps);
    let _ = std::fs::remove_dir_all(root);
}

/// Start-up with NATS unreachable: the replica refuses to start, within the timeout, and
/// says which servers it tried and why (no NATS server needed for this one).
#[test]
fn a_replica_refuses_to_start_when_nats_is_unreachable_and_says_where() {
    let dir = std::env::temp_dir().join(format!("switchyard-unreachable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("rules/r.rules"),
        "target t { url = \"http://127.0.0.1:9/x\" }\nwhen exists(n) -> post t\n",
    )
    .unwrap();
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join("s.yaml"),
        format!("state:\n  backend: nats\n  urls: [nats://127.0.0.1:{port}]\n  timeout_ms: 1000\n"),
    )
    .unwrap();
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .arg("--config")
        .arg(dir.join("s.yaml"))
        .arg("--rules")
        .arg(dir.join("rules"))
        .arg("--data")
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("nats://127.0.0.1:{port}")),
        "names the server: {stderr}"
    );
    assert!(took < Duration::from_secs(10), "refused in {took:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Messages the switchyard replicas sent to the NATS servers so far (every publish,
/// request, acknowledgement and pull, summed over the nodes' client connections): what a
/// replica's round trips cost the cluster.
fn nats_messages(c: &Cluster) -> u64 {
    c.nodes
        .iter()
        .filter_map(|n| support::nats::get(n.monitor, "/connz?limit=1024"))
        .filter_map(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .flat_map(|v| v["connections"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["name"] == "switchyard")
        .map(|c| c["in_msgs"].as_u64().unwrap_or(0))
        .sum()
}

/// One set-up of the benchmark: the SQLite outbox, or `n` replicas on NATS.
#[derive(Clone, Copy, Debug)]
enum Setup {
    Sqlite,
    Nats(usize),
}

/// Sends `{"n": i}` alerts, one per request, from `conns` connections spread over
/// `bases`, for `secs` seconds or until `total` were accepted; answers how many were
/// accepted (202) and the seconds it took.
async fn load(bases: &[String], conns: usize, secs: u64, total: usize) -> (usize, f64) {
    let client = support::http::client();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..conns)
        .map(|k| {
            let (client, next) = (client.clone(), next.clone());
            let url = format!("{}/alerts", bases[k % bases.len()]);
            tokio::spawn(async move {
                let mut ok = 0usize;
                while Instant::now() < until {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(format!("{{\"n\": {i}}}"))
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status().as_u16() == 202) {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    (accepted, started.elapsed().as_secs_f64())
}

/// Starts `setup` with `rules`, held (ingest alone) or not; the replicas and their bases.
fn start_setup(
    c: &Cluster,
    setup: Setup,
    stream: &str,
    hold: bool,
    rules: &str,
) -> (Vec<Replica>, std::path::PathBuf) {
    let delivery = format!("delivery:\n  hold: {hold}\n");
    let (config, n) = match setup {
        Setup::Sqlite => (delivery, 1),
        Setup::Nats(n) => (
            format!(
                "{delivery}{}",
                config(c).replace("stream: SY", &format!("stream: {stream}"))
            ),
            n,
        ),
    };
    replicas(stream, n, &config, rules)
}

/// Ingest and end-to-end throughput with 1, 2 and 3 replicas on a 3-node NATS cluster,
/// against the SQLite outbox in the same run, alternated over two rounds; and the messages
/// the replicas send NATS per accepted alert. Everything (3 NATS nodes, the replicas, the
/// load and the receiver) shares this machine's cores: the ratios say what the design
/// costs here, not what a cluster of machines reaches. Release build:
/// `cargo test --release --all-features --test replicas -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand, with --release"]
async fn replica_throughput_against_the_embedded_store() {
    let Some(c) = cluster("bench") else {
        return;
    };
    let rx = Receiver::start().await;
    let rules = format!(
        "target sink {{ url = \"{}\" retries = 20 }}\nwhen exists(n) -> post sink\n",
        rx.url("/sink")
    );
    const CONNS: usize = 32;
    const INGEST_SECS: u64 = 5;
    const E2E: usize = 3000;
    let setups = [
        Setup::Sqlite,
        Setup::Nats(1),
        Setup::Nats(2),
        Setup::Nats(3),
    ];
    println!(
        "{} cores; {CONNS} connections; ingest {INGEST_SECS} s held; end to end {E2E} alerts",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for round in 0..2 {
        let mut baseline = (0.0, 0.0);
        for setup in setups {
            let stream = match setup {
                Setup::Sqlite => format!("B{round}s"),
                Setup::Nats(n) => format!("B{round}n{n}"),
            };
            // Ingest alone: stored, not sent.
            let (reps, root) = start_setup(&c, setup, &format!("{stream}i"), true, &rules);
            let bases: Vec<String> = reps.iter().map(|r| r.base.clone()).collect();
            let before = nats_messages(&c);
            let (accepted, took) = load(&bases, CONNS, INGEST_SECS, usize::MAX).await;
            let per_alert = (nats_messages(&c) - before) as f64 / accepted.max(1) as f64;
            let ingest = accepted as f64 / took;
            drop(reps);
            let _ = std::fs::remove_dir_all(root);
            // End to end: every alert delivered.
            let (reps, root) = start_setup(&c, setup, &format!("{stream}e"), false, &rules);
            let bases: Vec<String> = reps.iter().map(|r| r.base.clone()).collect();
            let already = rx.count("/sink");
            let started = Instant::now();
            let before = nats_messages(&c);
            let (accepted, _) = load(&bases, CONNS, 120, E2E).await;
            let got = rx
                .wait_for("/sink", already + accepted, Duration::from_secs(120))
                .await;
            let took = started.elapsed().as_secs_f64();
            let e2e_msgs = (nats_messages(&c) - before) as f64 / accepted.max(1) as f64;
            let delivered = got.len() - already;
            let e2e = delivered as f64 / took;
            drop(reps);
            let _ = std::fs::remove_dir_all(root);
            if matches!(setup, Setup::Sqlite) {
                baseline = (ingest, e2e);
            }
            println!(
                "round {round} {setup:?}: ingest {ingest:.0}/s ({:.2}x SQLite), {per_alert:.1} NATS messages per accepted alert; end to end {delivered}/{accepted} delivered, {e2e:.0}/s ({:.2}x SQLite), {e2e_msgs:.1} NATS messages per alert",
                ingest / baseline.0,
                e2e / baseline.1
            );
            assert_eq!(delivered, accepted, "every accepted alert delivered");
        }
    }
}

/// A silence added through one replica is in force on the others at once (the servers
/// push the change to every replica), not only after their 5 s census; expired through
/// another replica, it ends for all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_added_on_one_replica_holds_on_the_others_at_once() {
    let Some(c) = cluster("silence") else {
        return;
    };
    let rx = Receiver::start().await;
    let (reps, root) = replicas("silence", 2, &config(&c), &rules(&rx, "/pager"));
    let (a, b) = (reps[0].base.clone(), reps[1].base.clone());
    let (status, _, body) = request(
        &a,
        "POST",
        "/api/silences",
        r#"{"condition": "labels.n == \"7\"", "for": "1h", "created_by": "ops", "comment": "upgrade"}"#,
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let added = Instant::now();
    // On the other replica, within a moment: the push, not the census.
    let mut silenced = false;
    while !silenced && added.elapsed() < Duration::from_secs(3) {
        let (status, _, body) = request(&b, "GET", "/api/silences", "").await.unwrap();
        assert_eq!(status, 200, "{body}");
        silenced = body.contains("upgrade");
        if !silenced {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let seen_in = added.elapsed();
    assert!(silenced, "the other replica knows the silence");
    assert!(seen_in < Duration::from_secs(2), "seen in {seen_in:?}");
    let (status, _, body) = request(&b, "POST", "/api/v2/alerts", &alert(7))
        .await
        .unwrap();
    assert_eq!(status, 202, "{body}");
    assert!(body.contains(r#""verdict":"silenced""#), "{body}");
    // Expired through b: a's next alert goes out (and the held one is released).
    let (status, _, body) = request(&b, "DELETE", "/api/silences/1", "").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let expired = Instant::now();
    let mut ended = false;
    while !ended && expired.elapsed() < Duration::from_secs(3) {
        let (_, _, body) = request(&a, "GET", "/api/silences", "").await.unwrap();
        ended = body.contains(r#""status":"expired""#);
        if !ended {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(ended, "ended for a too");
    rx.wait_for("/pager", 1, Duration::from_secs(10)).await;
    println!("a silence reached the other replica in {seen_in:?}");
    drop(reps);
    let _ = std::fs::remove_dir_all(root);
}

/// An alert whose delivery is larger than the NATS servers take (their `max_payload`, 1 MB
/// by default) can never be stored as it is: ingest answers 413 saying so and what to
/// change, not a 503 that the sender would retry forever; the replica stays ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_too_large_for_the_servers_is_refused_413_not_retried() {
    let Some(c) = cluster("too-large") else {
        return;
    };
    let rx = Receiver::start().await;
    let (reps, root) = replicas("too-large", 1, &config(&c), &rules(&rx, "/pager"));
    let base = reps[0].base.clone();
    // 400 kB of quotes: each is escaped in the request and the body, and again in the record.
    let quotes = "\"".repeat(400_000);
    let body = format!(
        r#"[{{"labels": {{"alertname": "Big", "n": "1"}}, "annotations": {{"q": {}}}, "startsAt": "2026-11-29T10:00:00Z"}}]"#,
        serde_json::Value::String(quotes)
    );
    let (status, _, answer) = request(&base, "POST", "/api/v2/alerts", &body)
        .await
        .unwrap();
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("too_large_to_store"), "{answer}");
    assert!(answer.contains("max_payload"), "{answer}");
    let (status, _, _) = request(&base, "GET", "/readyz", "").await.unwrap();
    assert_eq!(status, 200, "a refused alert says nothing of the servers");
    assert!(
        send(std::slice::from_ref(&base), 0, 2).await,
        "the next alert goes in"
    );
    drop(reps);
    let _ = std::fs::remove_dir_all(root);
}
