//! The real binary: `switchyard serve` on 127.0.0.1 with a port from the OS, senders
//! posting their fixtures, a real receiver getting the deliveries, and SIGTERM.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::receiver::Receiver;

use support::fixtures::read as fixture;

#[tokio::test]
async fn serve_routes_real_senders_to_a_real_receiver_and_stops_on_sigterm() {
    let rx = Receiver::start().await;
    let dir = std::env::temp_dir().join(format!("switchyard-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("r.rules"),
        format!(
            r#"target alarm_url {{ url = "{}" headers = {{ "Authorization": "OAuth ${{env.T:-tok}}" }} body = {{ "alert_id": alertId }} }}
               target ecs {{ url = "{}" }}
               when @source == "yandex" and @state == "firing" -> post alarm_url
               when @source == "alibaba" and curValue > 90 -> post ecs"#,
            rx.url("/alarm"),
            rx.url("/ecs")
        ),
    )
    .unwrap();

    let (mut child, base) = support::process::serve(&[
        "--listen",
        "127.0.0.1:0",
        "--rules",
        rules.to_str().unwrap(),
        "--data",
        dir.join("data").to_str().unwrap(),
    ]);
    let client = support::http::client();

    let resp = client
        .post(format!("{base}/alerts/yandex"))
        .header("content-type", "application/json")
        .body(fixture("yandex/function-alarm.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(body["alerts"][0]["targets"][0], "alarm_url");

    let resp = client
        .post(format!("{base}/alerts/alibaba"))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body(fixture("alibaba/metric-alarm.form.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);

    let got = rx.wait_for("/alarm", 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["authorization"], "OAuth tok");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&got[0].body).unwrap(),
        serde_json::json!({"alert_id": "fjo3k9a1b2c3d4e5f6g7"})
    );
    let ecs = rx.wait_for("/ecs", 1, Duration::from_secs(10)).await;
    let delivered: serde_json::Value = serde_json::from_str(&ecs[0].body).unwrap();
    assert_eq!(
        delivered["curValue"], "93.75",
        "the alert as received, normalized"
    );
    assert_eq!(
        delivered["dimensions"]["instanceId"],
        "i-bp1a2b3c4d5e6f7g8h9i"
    );

    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // SIGTERM: a graceful stop, exit 0.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Deliveries go through the proxy the environment names. The server builds its client
/// without proxies when no proxy variable is set (reqwest asked its empty list about every
/// request); with `HTTP_PROXY` set, a delivery to a host that does not resolve arrives at
/// the proxy, in absolute form, with the target's host.
#[tokio::test]
async fn deliveries_go_through_the_proxy_the_environment_names() {
    let proxy = Receiver::start().await;
    let dir = std::env::temp_dir().join(format!("switchyard-serve-proxy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let proxy_url = proxy.url("");
    let (mut child, base) = support::process::serve_with_env(
        &dir,
        "",
        "target t { url = \"http://hook.invalid/via-proxy\" }\nwhen alertname == \"Proxied\" -> post t\n",
        &[
            ("HTTP_PROXY", proxy_url.as_str()),
            ("http_proxy", proxy_url.as_str()),
            ("NO_PROXY", ""),
            ("no_proxy", ""),
        ],
    );
    let answer = support::http::client()
        .post(format!("{base}/alerts"))
        .header("content-type", "application/json")
        .body(r#"{"alertname":"Proxied"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    let got = proxy
        .wait_for("/via-proxy", 1, Duration::from_secs(10))
        .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got.len(), 1, "the delivery reached the proxy");
    assert_eq!(
        got[0].headers.get("host").map(String::as_str),
        Some("hook.invalid")
    );
    assert!(got[0].body.contains("Proxied"), "{}", got[0].body);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `serve` with a config file; returns the child and its base URL.
fn start_with_config(dir: &Path, config: &str) -> (std::process::Child, String) {
    support::process::serve_with(
        dir,
        config,
        "target t { url = \"http://127.0.0.1:9/x\" }\nwhen never == 1 -> post t\n",
    )
}

#[tokio::test]
async fn slow_and_oversized_requests_are_cut_off_without_slowing_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = std::env::temp_dir().join(format!("switchyard-serve-limits-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (mut child, base) = start_with_config(
        &dir,
        "limits:\n  request_timeout_secs: 1\n  max_header_bytes: 8192\n",
    );
    let addr = base.trim_start_matches("http://").to_owned();

    // A head that drips: the connection is closed after the timeout.
    let mut drip = tokio::net::TcpStream::connect(&addr).await.unwrap();
    drip.write_all(b"POST /alerts HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A body that drips: 408 with a JSON error.
    let mut slow_body = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow_body
        .write_all(b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":")
        .await
        .unwrap();

    // Meanwhile the server answers others at once.
    let started = std::time::Instant::now();
    let health = support::http::get(format!("{base}/healthz")).await;
    assert_eq!(health.status().as_u16(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "others were slowed: {:?}",
        started.elapsed()
    );

    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), drip.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "a dripping head is cut off within the request timeout"
    );

    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), slow_body.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");

    // A body that says it is 100 MB: refused after the first MiB, not read to the end.
    let mut huge = tokio::net::TcpStream::connect(&addr).await.unwrap();
    huge.write_all(b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..32 {
        if huge.write_all(&chunk).await.is_err() {
            break; // the server stopped reading: fine
        }
    }
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), huge.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let health = support::http::get(format!("{base}/healthz")).await;
    assert_eq!(health.status().as_u16(), 200, "still serving");

    // A head over the limit is refused with the JSON 431; one too large even for the
    // HTTP library's buffer (64 KiB here) gets its bare 431, or a closed connection.
    for (size, json) in [(20_000, true), (200_000, false)] {
        let mut big = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(size)
        );
        let _ = big.write_all(head.as_bytes()).await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), big.read_to_end(&mut buf)).await;
        let answer = String::from_utf8_lossy(&buf);
        if json {
            assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
            assert!(answer.contains("\"code\":\"head_too_large\""), "{answer}");
        } else {
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
                "{answer}"
            );
        }
        assert!(
            !answer.contains("200 OK"),
            "an oversized head is never served"
        );
    }

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sighup_reloads_and_metrics_say_so() {
    let dir = std::env::temp_dir().join(format!("switchyard-serve-hup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (mut child, base) = start_with_config(&dir, "logging:\n  format: json\n");
    let metric = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let text = support::http::get(format!("{base}/metrics"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&text, "switchyard_reload_last_success "),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "switchyard_rules_loaded "), Some(1.0));
    assert!(
        text.contains("switchyard_rules_content_hash{hash=\""),
        "{text}"
    );

    assert!(
        Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let loaded = poll_metric(&base, "switchyard_reloads_total{outcome=\"loaded\"}", |v| {
        v.is_some()
    })
    .await;
    assert_eq!(
        loaded,
        Some(1.0),
        "SIGHUP forces a reload even when nothing changed"
    );

    // A broken edit through the watcher: rejected, the last-success gauge drops to 0.
    std::fs::write(dir.join("rules/r.rules"), "when x = 1 -> post t\n").unwrap();
    let ok = poll_metric(&base, "switchyard_reload_last_success ", |v| v == Some(0.0)).await;
    assert_eq!(ok, Some(0.0));
    let rules: serde_json::Value = serde_json::from_str(
        &support::http::get(format!("{base}/api/rules"))
            .await
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(rules["rejected_reload"][0]["code"], "E0103");
    assert_eq!(rules["rules"], 1, "the old set still runs");

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads a metric from `/metrics` every 100 ms (at most 5 s) until `done` accepts its value.
async fn poll_metric(base: &str, name: &str, done: impl Fn(Option<f64>) -> bool) -> Option<f64> {
    let mut value = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let text = support::http::get(format!("{base}/metrics"))
            .await
            .text()
            .await
            .unwrap();
        value = text
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok());
        if done(value) {
            break;
        }
    }
    value
}

/// The server is assembled in the library: a program embeds the same server `switchyard
/// serve` runs (router, outbox, watcher, SIGHUP, graceful stop), from a config and a rule
/// set, and stops it with its own signal.
#[tokio::test]
async fn an_embedder_runs_the_same_server_from_the_library() {
    use switchyard::server::{Config, Server};
    let dir = std::env::temp_dir().join(format!("switchyard-embed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("rules/r.rules"),
        "target t { url = \"http://127.0.0.1:9/x\" }\nwhen exists(n) -> post t\n",
    )
    .unwrap();
    let config = Config::parse(
        &format!(
            "listen: 127.0.0.1:0\nrules: {}\ndata: {}\ndelivery:\n  hold: true\n",
            dir.join("rules").display(),
            dir.join("data").display()
        ),
        "embedded",
    )
    .unwrap();
    let rules = switchyard::RuleSet::load_dir(&config.rules).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(Server::new(config, rules).run(
        async {
            let _ = stop_rx.await;
        },
        move |addr| {
            let _ = addr_tx.send(addr);
        },
    ));
    let addr = tokio::time::timeout(Duration::from_secs(10), addr_rx)
        .await
        .unwrap()
        .unwrap();
    let resp = support::http::client()
        .post(format!("http://{addr}/alerts/generic"))
        .header("content-type", "application/json")
        .body(r#"{"n": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(body["alerts"][0]["targets"][0], "t");
    stop_tx.send(()).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .unwrap()
        .unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
