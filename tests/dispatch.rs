//! Delivery against a real receiver on 127.0.0.1: what arrives, with which headers and
//! body, and how many attempts were made.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::data::{DataDir, wait_until};
use support::receiver::Receiver;
use switchyard::{Alert, Backoff, Loader, Router, RuleSet};

const WAIT: Duration = Duration::from_secs(10);

fn rules(text: &str) -> RuleSet {
    Loader::new()
        .env(|n| (n == "HOOK_TOKEN").then(|| String::from("s3cret")))
        .from_files([("t.rules", text)])
        .unwrap_or_else(|e| {
            panic!(
                "{}",
                e.diagnostics()
                    .map(|d| d.render(switchyard::Format::Text))
                    .unwrap_or_default()
            )
        })
}

async fn router(rules: RuleSet, dir: &DataDir) -> Router {
    router_backoff(
        rules,
        dir,
        Duration::from_millis(20),
        Duration::from_millis(200),
    )
    .await
}

/// [`router`] with retries waiting a random time under `base * 2^n`, at most `cap`.
async fn router_backoff(rules: RuleSet, dir: &DataDir, base: Duration, cap: Duration) -> Router {
    Router::builder()
        .rules(rules)
        .data_dir(&dir.0)
        .backoff(Backoff { base, cap })
        .build()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The `n` of each received body, in arrival order.
fn numbers(got: &[support::receiver::Received]) -> Vec<i64> {
    got.iter()
        .map(|g| {
            serde_json::from_str::<serde_json::Value>(&g.body).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

fn alert() -> Alert {
    Alert::new(json!({"alertId": "a1", "status": "ALARM", "value": 95})).with_id("a1")
}

#[tokio::test]
async fn delivers_body_headers_and_an_idempotency_key() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-deliver");
    let set = rules(&format!(
        r#"target t {{
            url = "{}"
            method = "PUT"
            headers = {{ "Authorization": "OAuth ${{env.HOOK_TOKEN}}", "X-Team": "web" }}
            body = {{ "alert_id": alertId, "text": "value ${{value}}" }}
        }}
        target raw {{ url = "{}" }}
        when status == "ALARM" -> post t, post raw"#,
        rx.url("/ok"),
        rx.url("/raw")
    ));
    let r = router(set, &dir).await;
    let submitted = r.submit(&alert()).await.unwrap();
    assert_eq!(submitted.decision.targets, ["t", "raw"]);
    assert_eq!(submitted.deliveries.len(), 2);

    let got = rx.wait_for("/ok", 1, WAIT).await;
    let raw = rx.wait_for("/raw", 1, WAIT).await;
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.method, "PUT");
    assert_eq!(req.headers["authorization"], "OAuth s3cret");
    assert_eq!(req.headers["x-team"], "web");
    assert_eq!(req.headers["content-type"], "application/json");
    assert!(req.headers["idempotency-key"].len() >= 16);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&req.body).unwrap(),
        json!({"alert_id": "a1", "text": "value 95"})
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&raw[0].body).unwrap(),
        *alert().body(),
        "no body: the alert as received"
    );
    assert_eq!(raw[0].method, "POST");
    assert_ne!(
        raw[0].headers["idempotency-key"], req.headers["idempotency-key"],
        "one key per delivery"
    );

    wait_until(WAIT, || r.stats().delivered == 2 && r.stats().pending == 0).await;
    let s = r.stats();
    assert_eq!(
        (s.submitted, s.delivered, s.pending, s.dead_letters),
        (1, 2, 0, 0),
        "{s:?}"
    );
    r.shutdown(Duration::from_secs(1)).await;
}

/// Found in review of the lingering record: a retry due before the failed attempt's outcome
/// was recorded was looked for in the outbox while that delivery was still skipped as
/// unrecorded; the worker then saw nothing due and never read the table again.
#[tokio::test]
async fn a_retry_due_before_its_failure_is_recorded_is_still_sent() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-retry-early");
    let set = rules(&format!(
        r#"target t {{ url = "{}" retries = 3 }} when exists(status) -> post t"#,
        rx.url("/fail/2")
    ));
    // Every retry is due within a millisecond: before the outcome before it is on disk.
    let r = router_backoff(
        set,
        &dir,
        Duration::from_millis(1),
        Duration::from_millis(1),
    )
    .await;
    for n in 0..5 {
        let a = Alert::new(json!({"status": "ALARM", "n": n})).with_id(format!("a{n}"));
        r.submit(&a).await.unwrap();
    }
    wait_until(WAIT, || r.stats().delivered == 5).await;
    let s = r.stats();
    assert_eq!((s.delivered, s.retried, s.pending), (5, 2, 0), "{s:?}");
    r.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn retries_5xx_with_the_same_idempotency_key() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-retry5xx");
    let set = rules(&format!(
        r#"target t {{ url = "{}" retries = 3 }} when exists(status) -> post t"#,
        rx.url("/fail/2")
    ));
    let r = router(set, &dir).await;
    r.submit(&alert()).await.unwrap();
    let got = rx.wait_for("/fail/2", 3, WAIT).await;
    assert_eq!(got.len(), 3, "two 500s, then a 200");
    let keys: std::collections::HashSet<&str> = got
        .iter()
        .map(|g| g.headers["idempotency-key"].as_str())
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "every attempt of a delivery carries the same key"
    );
    wait_until(WAIT, || r.stats().delivered == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count("/fail/2"), 3, "no attempt after the success");
    let s = r.stats();
    assert_eq!((s.delivered, s.retried, s.dead), (1, 2, 0));
    let m = r.metrics_text();
    for line in [
        r#"switchyard_deliveries_total{target="t",outcome="retried"} 2"#,
        r#"switchyard_deliveries_total{target="t",outcome="delivered"} 1"#,
        r#"switchyard_delivery_attempts_total{target="t"} 3"#,
        r#"switchyard_delivery_attempt_seconds_count{target="t"} 3"#,
        "switchyard_alerts_submitted_total 1",
        "switchyard_outbox_pending 0",
        "switchyard_dead_letters 0",
    ] {
        assert!(m.lines().any(|l| l == line), "missing `{line}` in:\n{m}");
    }
    // Found by a user: the help said "attempts"; it counts recorded outcomes.
    assert!(
        m.contains("# HELP switchyard_deliveries Recorded delivery outcomes by target"),
        "{m}"
    );
    r.shutdown(Duration::from_secs(1)).await;
}

/// Found by a user: the language says a drop is recorded, but no metric counted drops; and
/// the deliveries metric's help said "attempts" while it counts recorded outcomes.
#[tokio::test]
async fn drops_are_counted_and_the_deliveries_metric_says_what_it_counts() {
    let dir = DataDir::new("dispatch-drops");
    let set = rules(
        r#"target t { url = "http://127.0.0.1:9/x" }
           when kind == "noise" -> drop
           when kind == "never" -> post t"#,
    );
    let r = router(set, &dir).await;
    r.submit_many(&[
        Alert::new(json!({"kind": "noise"})),
        Alert::new(json!({"kind": "noise"})),
        Alert::new(json!({"kind": "other"})),
    ])
    .await
    .unwrap();
    let s = r.stats();
    assert_eq!((s.submitted, s.dropped, s.unrouted), (3, 2, 1), "{s:?}");
    let m = r.metrics_text();
    assert!(
        m.lines().any(|l| l == "switchyard_alerts_dropped_total 2"),
        "{m}"
    );
    r.shutdown(Duration::from_millis(100)).await;
}

/// Found by an attack: reqwest followed redirects, so a secret in any header other than
/// `Authorization` went to wherever a receiver pointed (another host or port), and a 301
/// or 302 turned the POST into a bodiless GET whose 200 counted as delivered. Redirects
/// are not followed: a 3xx is a failure, kept as a dead letter with its `Location`.
#[tokio::test]
async fn a_redirect_is_not_followed_and_the_secret_header_stays_home() {
    let rx = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    let dir = DataDir::new("dispatch-redirect");
    let to = elsewhere.url("/stolen");
    let set = rules(&format!(
        r#"target r301 {{ url = "{0}/redirect/301?to={to}?leak=1" headers = {{ "X-Api-Key": "${{env.HOOK_TOKEN}}" }} retries = 0 }}
           target r302 {{ url = "{0}/redirect/302?to={to}" headers = {{ "X-Api-Key": "${{env.HOOK_TOKEN}}" }} retries = 0 }}
           target r307 {{ url = "{0}/redirect/307?to={to}" headers = {{ "X-Api-Key": "${{env.HOOK_TOKEN}}" }} retries = 0 }}
           target r308 {{ url = "{0}/redirect/308?to={to}" headers = {{ "X-Api-Key": "${{env.HOOK_TOKEN}}" }} retries = 0 }}
           when exists(status) -> post r301, post r302, post r307, post r308"#,
        rx.url("")
    ));
    let r = router(set, &dir).await;
    r.submit(&alert()).await.unwrap();
    wait_until(WAIT, || r.stats().dead_letters == 4).await;
    assert_eq!(
        elsewhere.received().len(),
        0,
        "nothing reached the other receiver"
    );
    assert_eq!(r.stats().delivered, 0, "a redirect is not a delivery");
    let dead = r.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 4);
    for d in &dead {
        assert!(d.error.contains("redirect"), "{}", d.error);
        assert!(d.error.contains(&to), "the Location is kept: {}", d.error);
        assert!(
            !d.error.contains("leak=1"),
            "the Location's query is not: {}",
            d.error
        );
        assert!(!d.error.contains("s3cret"), "{}", d.error);
    }
    r.shutdown(Duration::from_secs(1)).await;
}

/// Found by an attack: `${env.X}` in a target's `body` template was stored rendered, and
/// `GET /api/dead-letters` and `switchyard dead-letters show` showed the secret. What is
/// sent carries the value; what is shown keeps `${env.X}`.
#[tokio::test]
async fn a_secret_in_a_body_template_is_sent_but_never_shown_in_a_dead_letter() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-body-secret");
    let set = rules(&format!(
        r#"target t {{ url = "{}" retries = 0 body = {{ "token": "${{env.HOOK_TOKEN}}", "id": alertId }} }}
           when exists(status) -> post t"#,
        rx.url("/bad")
    ));
    {
        let r = router(set, &dir).await;
        r.submit(&alert()).await.unwrap();
        wait_until(WAIT, || r.stats().dead_letters == 1).await;
        let got = rx.received();
        assert_eq!(got.len(), 1);
        assert!(
            got[0].body.contains("s3cret"),
            "the receiver gets the value"
        );
        let dead = r.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert!(!dead[0].body().contains("s3cret"), "{}", dead[0].body());
        assert!(
            dead[0].body().contains("${env.HOOK_TOKEN}"),
            "{}",
            dead[0].body()
        );
        let debug = format!("{:?}", dead[0]);
        assert!(!debug.contains("s3cret"), "{debug}");
        r.shutdown(Duration::from_secs(1)).await;
    }
    let data = dir.0.to_str().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["dead-letters", "list", "--json", "--data", data])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = serde_json::from_str::<serde_json::Value>(list.lines().next().unwrap()).unwrap()["id"]
        .to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["dead-letters", "show", &id, "--data", data])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(shown.contains("${env.HOOK_TOKEN}"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");

    // A replay sends the real body again.
    let r = router(
        rules(r#"target x { url = "http://127.0.0.1:9/x" } when never == 1 -> post x"#),
        &dir,
    )
    .await;
    let id: u64 = id.parse().unwrap();
    assert!(r.retry_dead_letter(id).await.unwrap());
    let again = rx.wait_for("/bad", 2, WAIT).await;
    assert!(again[1].body.contains("s3cret"));
    r.shutdown(Duration::from_secs(1)).await;
}

/// Found by a user: ten alternating firing and resolved copies of one alert arrived as
/// 1,10,2,3,4,5,6,7,9,8, so the receiver's last word could be "firing" for an alert that had
/// resolved. One alert's deliveries to one target now go in the order they were accepted:
/// the first fails once, and the nine after it wait for its retry.
#[tokio::test]
async fn one_alerts_deliveries_arrive_in_the_order_accepted_even_across_a_retry() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-order");
    let set = rules(&format!(
        r#"target t {{ url = "{}" retries = 3 body = {{ "n": n, "state": state }} }}
           when exists(n) -> post t"#,
        rx.url("/fail/1")
    ));
    let r = router(set, &dir).await;
    let alerts: Vec<Alert> = (1..=10)
        .map(|n| {
            let state = if n % 2 == 1 { "firing" } else { "resolved" };
            Alert::new(json!({"n": n, "state": state})).with_id("disk-full")
        })
        .collect();
    r.submit_many(&alerts).await.unwrap();
    let got = rx.wait_for("/fail/1", 11, WAIT).await;
    let arrived = numbers(&got);
    // The first request (answered 500) is delivery 1; its retry, then the other nine.
    assert_eq!(arrived, [1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "{arrived:?}");
    wait_until(WAIT, || r.stats().delivered == 10).await;
    assert_eq!(r.stats().retried, 1);
    r.shutdown(Duration::from_secs(1)).await;
}

/// The order holds across a restart: a delivery waiting for its retry when the router
/// stopped still goes before a later one of the same alert that was never attempted.
#[tokio::test]
async fn one_alerts_order_holds_across_a_restart() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-order-restart");
    let set = rules(&format!(
        r#"target t {{ url = "{}" retries = 3 body = {{ "n": n }} }} when exists(n) -> post t"#,
        rx.url("/busy/2")
    ));
    // The first attempt is answered 429 with `Retry-After: 2`: its retry is at least 2 s
    // later, well after the restart.
    let slow_retry = Backoff {
        base: Duration::from_millis(20),
        cap: Duration::from_secs(5),
    };
    let first = Alert::new(json!({"n": 1})).with_id("disk-full");
    let second = Alert::new(json!({"n": 2})).with_id("disk-full");
    {
        let r = Router::builder()
            .rules(set.clone())
            .data_dir(&dir.0)
            .backoff(slow_retry)
            .build()
            .await
            .unwrap();
        r.submit(&first).await.unwrap();
        wait_until(WAIT, || r.stats().retried == 1).await;
        // Accepted while the first waits for its retry: held, never attempted.
        r.submit(&second).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Until the first's retry (at least 2 s after its first attempt), nothing else goes.
        let first_attempt = rx.received()[0].at;
        let count = rx.count("/busy/2");
        if first_attempt.elapsed() < Duration::from_secs(2) {
            assert_eq!(count, 1, "the second waits for the first");
        }
        r.shutdown(Duration::from_secs(1)).await;
    }
    let r = Router::builder()
        .rules(set)
        .data_dir(&dir.0)
        .backoff(slow_retry)
        .build()
        .await
        .unwrap();
    let got = rx.wait_for("/busy/2", 3, WAIT).await;
    let arrived = numbers(&got);
    assert_eq!(
        arrived,
        [1, 1, 2],
        "the retry first, then the later delivery"
    );
    wait_until(WAIT, || r.stats().delivered == 2).await;
    r.shutdown(Duration::from_secs(1)).await;
}

/// `delay <d> unless resolved`: the firing waits in the outbox and goes when the delay ends;
/// one resolved in time goes nowhere, nor does its resolution.
#[tokio::test]
async fn a_delayed_firing_goes_when_its_delay_ends_and_a_timely_resolution_cancels_it() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-delay");
    let set = rules(&format!(
        r#"target t {{ url = "{}" body = {{ "n": n, "state": state }} }}
           rule "slow" when exists(n) -> post t, delay 1s unless resolved"#,
        rx.url("/delayed")
    ));
    let r = router(set, &dir).await;
    let firing = |n: i64| {
        Alert::new(json!({"n": n, "state": "firing"}))
            .with_id(format!("alert-{n}"))
            .with_state(switchyard::State::Firing)
    };
    let resolved = |n: i64| {
        Alert::new(json!({"n": n, "state": "resolved"}))
            .with_id(format!("alert-{n}"))
            .with_state(switchyard::State::Resolved)
    };
    let started = Instant::now();
    let s = r.submit_many(&[firing(1), firing(2)]).await.unwrap();
    assert!(
        s.iter().all(|s| matches!(
            s.verdicts[0].kind,
            switchyard::state::VerdictKind::Held { .. }
        )),
        "{:?}",
        s.iter().map(|s| &s.verdicts).collect::<Vec<_>>()
    );
    // Alert 2 resolves within the delay: neither its firing nor its resolution goes.
    let s = r.submit(&resolved(2)).await.unwrap();
    assert!(
        matches!(
            s.verdicts[0].kind,
            switchyard::state::VerdictKind::Cancelled { .. }
        ),
        "{:?}",
        s.verdicts
    );
    let got = rx.wait_for("/delayed", 1, WAIT).await;
    assert_eq!(got.len(), 1);
    // Timed by when it arrived, not by a sleep: a loaded machine cannot make this flaky.
    assert!(
        got[0].at.duration_since(started) >= Duration::from_secs(1),
        "nothing before the delay ends: arrived after {:?}",
        got[0].at.duration_since(started)
    );
    let body: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body, json!({"n": 1, "state": "firing"}));
    wait_until(WAIT, || r.stats().delivered == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count("/delayed"), 1, "the cancelled firing never goes");
    assert_eq!(r.stats().pending, 0);
    r.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-retryafter");
    let set = rules(&format!(
        r#"target t {{ url = "{}" }} when exists(status) -> post t"#,
        rx.url("/busy/1")
    ));
    let r = router_backoff(set, &dir, Duration::from_millis(1), Duration::from_secs(5)).await;
    r.submit(&alert()).await.unwrap();
    let got = rx.wait_for("/busy/1", 2, WAIT).await;
    assert_eq!(got.len(), 2);
    let waited = got[1].at - got[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 was honoured ({waited:?})"
    );
    r.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_4xx_is_final_and_becomes_a_dead_letter_that_can_be_replayed() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-dead");
    let set = rules(&format!(
        r#"target t {{ url = "{}" retries = 5 }} when exists(status) -> post t"#,
        rx.url("/bad")
    ));
    let r = router(set, &dir).await;
    r.submit(&alert()).await.unwrap();
    wait_until(WAIT, || r.stats().dead_letters == 1).await;
    assert_eq!(rx.count("/bad"), 1, "a 400 is not retried");
    let dead = r.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].target, "t");
    assert_eq!(dead[0].attempts, 1);
    assert!(dead[0].error.contains("400"), "{}", dead[0].error);
    assert_eq!(dead[0].alert_id.as_deref(), Some("a1"));

    assert!(r.retry_dead_letter(dead[0].id).await.unwrap());
    rx.wait_for("/bad", 2, WAIT).await;
    wait_until(WAIT, || {
        r.stats().dead_letters == 1 && r.stats().pending == 0
    })
    .await;
    assert_eq!(rx.count("/bad"), 2, "replayed once, refused again");
    assert_eq!(r.purge_dead_letters(None).await.unwrap(), 1);
    assert_eq!(r.stats().dead_letters, 0);
    assert!(!r.retry_dead_letter(999).await.unwrap());
    r.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_timeout_is_retried_then_given_up() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-timeout");
    let set = rules(&format!(
        r#"target t {{ url = "{}" timeout = 200ms retries = 1 }} when exists(status) -> post t"#,
        rx.url("/hang")
    ));
    let r = router(set, &dir).await;
    let started = Instant::now();
    r.submit(&alert()).await.unwrap();
    wait_until(WAIT, || r.stats().dead_letters == 1).await;
    assert_eq!(rx.count("/hang"), 2, "first attempt and one retry");
    assert!(started.elapsed() < Duration::from_secs(5));
    let dead = r.dead_letters(1).await.unwrap();
    assert!(dead[0].error.contains("timed out"), "{}", dead[0].error);
    r.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_refused_connection_goes_to_the_fallback() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-fallback");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let set = rules(&format!(
        r#"target primary {{ url = "http://{closed}/hook" retries = 1 fallback = backup }}
           target backup {{ url = "{}" }}
           when exists(status) -> post primary"#,
        rx.url("/backup")
    ));
    let r = router(set, &dir).await;
    r.submit(&alert()).await.unwrap();
    let got = rx.wait_for("/backup", 1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&got[0].body).unwrap(),
        *alert().body()
    );
    // The counters move after the outcome is committed, and `pending` is read from the
    // outbox: wait for the whole state the test asserts, not one field of it.
    wait_until(WAIT, || {
        let s = r.stats();
        (s.fell_back, s.delivered, s.dead_letters, s.pending) == (1, 1, 0, 0)
    })
    .await;
    let s = r.stats();
    assert_eq!(
        (s.fell_back, s.delivered, s.dead_letters, s.pending),
        (1, 1, 0, 0),
        "{s:?}"
    );
    r.shutdown(Duration::from_secs(1)).await;
}

/// The store seam: a router on the in-memory outbox keeps every delivery rule of the
/// SQLite one (retries with one key, fallbacks, dead letters and replays), and writes no
/// file.
#[tokio::test]
async fn an_in_memory_router_retries_falls_back_and_keeps_dead_letters() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-in-memory");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let set = rules(&format!(
        r#"target flaky {{ url = "{}" retries = 2 }}
           target primary {{ url = "http://{closed}/hook" retries = 1 fallback = backup }}
           target backup {{ url = "{}" }}
           target bad {{ url = "{}" retries = 3 }}
           when exists(status) -> post flaky, post primary, post bad"#,
        rx.url("/fail/1"),
        rx.url("/backup"),
        rx.url("/bad")
    ));
    let r = Router::builder()
        .rules(set)
        .data_dir(&dir.0)
        .in_memory(true)
        .backoff(Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        })
        .build()
        .await
        .unwrap();
    assert_eq!(r.outbox_path(), std::path::Path::new("memory"));
    let submitted = r.submit(&alert()).await.unwrap();
    assert_eq!(submitted.deliveries.len(), 3);
    let done = |r: &Router| {
        let s = r.stats();
        (s.delivered, s.fell_back, s.dead_letters, s.pending) == (2, 1, 1, 0)
    };
    wait_until(WAIT, || done(&r)).await;
    let s = r.stats();
    assert_eq!(
        (s.delivered, s.fell_back, s.dead_letters, s.pending),
        (2, 1, 1, 0),
        "{s:?}"
    );
    let flaky = rx.wait_for("/fail/1", 2, WAIT).await;
    assert_eq!(
        flaky[0].headers["idempotency-key"], flaky[1].headers["idempotency-key"],
        "one key across attempts"
    );
    assert_eq!(rx.count("/backup"), 1);
    let dead = r.dead_letters(10).await.unwrap();
    assert_eq!((dead[0].target.as_str(), dead[0].attempts), ("bad", 1));
    assert!(r.retry_dead_letter(dead[0].id).await.unwrap());
    rx.wait_for("/bad", 2, WAIT).await;
    wait_until(WAIT, || {
        r.stats().dead_letters == 1 && r.stats().pending == 0
    })
    .await;
    assert_eq!(r.purge_dead_letters(None).await.unwrap(), 1);
    assert!(
        !dir.0.join("outbox.sqlite3").exists(),
        "nothing written to the data folder"
    );
    r.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_slow_target_does_not_delay_another() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-isolation");
    let set = rules(&format!(
        r#"target slow {{ url = "{}" timeout = 20s }}
           target fast {{ url = "{}" }}
           when kind == "slow" -> post slow
           when kind == "fast" -> post fast"#,
        rx.url("/hang"),
        rx.url("/fast")
    ));
    let r = Router::builder()
        .rules(set)
        .data_dir(&dir.0)
        .in_flight_per_target(4)
        .build()
        .await
        .unwrap();
    let slow: Vec<Alert> = (0..200)
        .map(|_| Alert::new(json!({"kind": "slow"})))
        .collect();
    r.submit_many(&slow).await.unwrap();
    let started = Instant::now();
    r.submit(&Alert::new(json!({"kind": "fast"})))
        .await
        .unwrap();
    let got = rx.wait_for("/fast", 1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the fast target waited {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        rx.count("/hang") <= 4,
        "the slow target has at most its in-flight limit open: {}",
        rx.count("/hang")
    );
    assert_eq!(r.stats().pending, 200, "the backlog is in the outbox");
    r.shutdown(Duration::from_millis(100)).await;
}

/// The adaptive in-flight limit (src/dispatch/limit.rs) starts at one and is raised by one
/// for each 5 ms its deliveries wait with every slot busy: a target that never answers
/// gets more requests at once only that fast, and ends at the most, never past it.
#[tokio::test]
async fn a_target_that_never_answers_gets_one_more_request_at_once_per_wait() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-limit-ramp");
    let set = rules(&format!(
        r#"target t {{ url = "{}" timeout = 30s }} when exists(n) -> post t"#,
        rx.url("/hang")
    ));
    let r = router(set, &dir).await;
    let alerts: Vec<Alert> = (0..100).map(|i| Alert::new(json!({"n": i}))).collect();
    let started = Instant::now();
    r.submit_many(&alerts).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (open, elapsed) = (rx.count("/hang"), started.elapsed());
    // One at first, and at most one more per 5 ms since (one more for the last look).
    let bound = 2 + elapsed.as_millis() as usize / 5;
    assert!(
        open <= bound,
        "{open} requests open after {elapsed:?}: more than one more per 5 ms"
    );
    let got = rx.wait_for("/hang", 32, WAIT).await;
    assert_eq!(got.len(), 32, "raised to the most (32)");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.count("/hang"), 32, "never past the most");
    // The console's view of the outbox shows the limit beside the requests in flight.
    let view = r.outbox_view(10).await.unwrap();
    let row = view.targets.iter().find(|t| t.target == "t").unwrap();
    assert_eq!((row.in_flight, row.in_flight_limit), (32, 32), "{row:?}");
    r.shutdown(Duration::from_millis(100)).await;
}

/// A target 100 ms away with a backlog is given as many requests at once as the backlog
/// needs: its answers keep pace (they take what they always took), so waiting deliveries
/// raise its limit to the most. At one at a time the 200 would take 20 s.
#[tokio::test]
async fn a_slow_target_with_a_backlog_is_sent_many_at_once() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-limit-slow");
    let set = rules(&format!(
        r#"target t {{ url = "{}" }} when exists(n) -> post t"#,
        rx.url("/slow/100")
    ));
    let r = router(set, &dir).await;
    let alerts: Vec<Alert> = (0..200).map(|i| Alert::new(json!({"n": i}))).collect();
    let started = Instant::now();
    r.submit_many(&alerts).await.unwrap();
    wait_until(WAIT, || r.stats().delivered == 200).await;
    assert_eq!(r.stats().delivered, 200);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "200 deliveries to a 100 ms target took {:?}",
        started.elapsed()
    );
    r.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn pending_deliveries_survive_a_restart() {
    let dir = DataDir::new("dispatch-restart");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let set = rules(&format!(
        r#"target t {{ url = "http://127.0.0.1:{port}/later" retries = 50 }} when exists(status) -> post t"#
    ));
    {
        let r = router(set.clone(), &dir).await;
        let alerts: Vec<Alert> = (0..20)
            .map(|i| Alert::new(json!({"status": "ALARM", "n": i})))
            .collect();
        r.submit_many(&alerts).await.unwrap();
        wait_until(WAIT, || r.stats().retried >= 20).await;
        assert!(
            r.stats().retried >= 20,
            "every delivery failed at least once"
        );
        r.shutdown(Duration::from_millis(200)).await;
    }
    let rx = Receiver::start_on(&format!("127.0.0.1:{port}")).await;
    // A rule set without the target: deliveries keep the definition they were queued with.
    let r = router(
        rules(r#"target other { url = "http://127.0.0.1:9/x" } when never == 1 -> post other"#),
        &dir,
    )
    .await;
    let got = rx.wait_for("/later", 20, WAIT).await;
    assert_eq!(
        got.len(),
        20,
        "every pending delivery resumed after the restart"
    );
    let mut ns = numbers(&got);
    ns.sort_unstable();
    assert_eq!(ns, (0..20).collect::<Vec<_>>());
    wait_until(WAIT, || r.stats().pending == 0).await;
    assert_eq!(r.stats().pending, 0);
    r.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn dead_letters_from_the_command_line() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-cli");
    {
        let set = rules(&format!(
            r#"target hook {{ url = "{}" }} when exists(status) -> post hook"#,
            rx.url("/bad")
        ));
        let r = router(set, &dir).await;
        r.submit(&alert()).await.unwrap();
        r.submit(&alert()).await.unwrap();
        wait_until(WAIT, || r.stats().dead_letters == 2).await;
        r.shutdown(Duration::from_secs(1)).await;
    }
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let data = dir.0.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["dead-letters", "list", "--data", data]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("hook") && out.contains("HTTP 400"), "{out}");
    assert!(err.contains("2 dead letter(s)"), "{err}");

    let (_, out, _) = run(&["dead-letters", "list", "--json", "--data", data]);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let id = first["id"].as_u64().unwrap().to_string();

    let (code, out, _) = run(&["dead-letters", "show", &id, "--data", data]);
    assert_eq!(code, Some(0));
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["body"], *alert().body());
    assert_eq!(shown["attempts"], 1);

    let (code, _, err) = run(&["dead-letters", "retry", &id, "--data", data]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(&["dead-letters", "show", &id, "--data", data]);
    assert_eq!(
        code,
        Some(2),
        "a replayed letter is pending again, not dead: {err}"
    );
    let (code, _, err) = run(&["dead-letters", "purge", "--all", "--data", data]);
    assert_eq!(code, Some(0));
    assert!(err.contains("1 dead letter(s) deleted"), "{err}");

    let (code, _, err) = run(&["dead-letters", "list", "--data", "/nonexistent/dir"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no outbox"), "{err}");

    // The replayed delivery is sent by the next router to start on this data directory.
    let r = router(
        rules(r#"target x { url = "http://127.0.0.1:9/x" } when never == 1 -> post x"#),
        &dir,
    )
    .await;
    rx.wait_for("/bad", 3, WAIT).await;
    assert_eq!(rx.count("/bad"), 3);
    // While a router holds the outbox, the command says so instead of failing obscurely.
    let (code, _, err) = run(&["dead-letters", "list", "--data", data]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("in use by another switchyard process"),
        "{err}"
    );
    // Found by a user: the cause was printed twice on one line.
    assert_eq!(err.matches("in use by another").count(), 1, "{err}");
    r.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_outbox_does_not_grow_with_delivered_alerts() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-growth");
    let set = rules(&format!(
        r#"target t {{ url = "{}" }} when exists(n) -> post t"#,
        rx.url("/ok")
    ));
    let r = router(set, &dir).await;
    let size = || -> u64 {
        ["outbox.sqlite3", "outbox.sqlite3-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.0.join(f)).ok())
            .map(|m| m.len())
            .sum()
    };
    let mut sizes = Vec::new();
    for round in 0..2 {
        let alerts: Vec<Alert> = (0..3_000)
            .map(|i| Alert::new(json!({"n": i, "pad": "x".repeat(300)})))
            .collect();
        for chunk in alerts.chunks(250) {
            r.submit_many(chunk).await.unwrap();
        }
        wait_until(Duration::from_secs(60), || r.stats().pending == 0).await;
        assert_eq!(r.stats().pending, 0, "round {round}: everything delivered");
        sizes.push(size());
    }
    assert_eq!(rx.count("/ok"), 6_000);
    // Delivered entries are deleted and their pages reused: a second round of the same size
    // does not grow the files much beyond the first.
    assert!(
        sizes[1] <= sizes[0] + sizes[0] / 2,
        "the outbox grew from {} to {} bytes",
        sizes[0],
        sizes[1]
    );
    r.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn send_exits_3_while_deliveries_are_pending() {
    let dir = DataDir::new("dispatch-send-pending");
    let rules_dir = dir.0.join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(rules_dir.join("a.rules"), format!("target t {{ url = \"http://{closed}/x\" retries = 50 }}\nwhen exists(status) -> post t\n")).unwrap();
    std::fs::write(
        dir.0.join("alerts.json"),
        r#"{"status": "ALARM"} {"status": "OK"}"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "send",
            "--wait",
            "1",
            "--rules",
            rules_dir.to_str().unwrap(),
            "--data",
            dir.0.join("data").to_str().unwrap(),
        ])
        .arg(dir.0.join("alerts.json"))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(
        stdout.lines().count(),
        2,
        "one decision per alert: {stdout}"
    );
    assert!(
        stderr.contains("queued: 2 alert(s)") && stderr.contains("pending: 2"),
        "{stderr}"
    );
}

/// Found as a flaky restart under load: a child process forked by another thread keeps a
/// copy of the outbox's lock until it starts its program, so a router opened right after
/// the previous one closed was refused as "in use". Opening waits briefly for the holder.
#[tokio::test]
async fn a_restart_waits_for_a_lock_that_a_forked_child_still_holds_briefly() {
    let dir = DataDir::new("dispatch-lock-wait");
    std::fs::create_dir_all(&dir.0).unwrap();
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.0.join("outbox.lock"))
        .unwrap();
    held.lock().unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
    });
    let set = rules(r#"target t { url = "http://127.0.0.1:9/x" } when never == 1 -> post t"#);
    let r = router(set, &dir).await;
    release.join().unwrap();
    r.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn held_deliveries_stay_in_the_outbox_until_a_router_without_hold() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-hold");
    let set = rules(&format!(
        r#"target t {{ url = "{}" }} when exists(status) -> post t"#,
        rx.url("/held")
    ));
    {
        let r = Router::builder()
            .rules(set.clone())
            .data_dir(&dir.0)
            .hold_deliveries(true)
            .build()
            .await
            .unwrap();
        let alerts: Vec<Alert> = (0..10)
            .map(|i| Alert::new(json!({"status": "ALARM", "n": i})))
            .collect();
        r.submit_many(&alerts).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rx.count("/held"), 0, "nothing is sent while held");
        assert_eq!(r.stats().pending, 10, "every delivery is stored");
        r.shutdown(Duration::from_millis(100)).await;
    }
    let r = router(set, &dir).await;
    assert_eq!(rx.wait_for("/held", 10, WAIT).await.len(), 10);
    wait_until(WAIT, || r.stats().pending == 0).await;
    r.shutdown(Duration::from_secs(1)).await;
}

/// Under concurrent submits, with retries interleaved and a queue memory so small that
/// most new deliveries are queued by id and read back, every delivery succeeds exactly
/// once: none is both handed over in memory and read back from the outbox.
#[tokio::test]
async fn every_delivery_succeeds_exactly_once_under_load() {
    let rx = Receiver::start().await;
    let dir = DataDir::new("dispatch-exactly-once");
    let set = rules(&format!(
        r#"target ok {{ url = "{}" }}
target flaky {{ url = "{}" retries = 20 }}
when exists(n) -> post ok, post flaky"#,
        rx.url("/ok"),
        rx.url("/fail/200")
    ));
    let r = Router::builder()
        .rules(set)
        .data_dir(&dir.0)
        .in_flight_per_target(8)
        .queue_memory(4096)
        .backoff(Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(50),
        })
        .build()
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..15 {
        let r = r.clone();
        tasks.spawn(async move {
            for i in 0..100 {
                r.submit(&Alert::new(json!({"n": t * 100 + i})))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    wait_until(Duration::from_secs(60), || {
        r.stats().pending == 0 && r.stats().delivered == 3_000
    })
    .await;
    assert_eq!(r.stats().pending, 0, "everything delivered");
    let got = rx.received();
    for (path, failed) in [("/ok", 0), ("/fail/200", 200)] {
        let keys: Vec<&str> = got
            .iter()
            .filter(|x| x.path == path)
            .skip(failed)
            .map(|x| x.headers["idempotency-key"].as_str())
            .collect();
        let distinct: std::collections::HashSet<&str> = keys.iter().copied().collect();
        assert_eq!(keys.len(), 1_500, "{path}: successful requests");
        assert_eq!(distinct.len(), 1_500, "{path}: no delivery succeeded twice");
    }
    assert_eq!(r.stats().delivered, 3_000);
    r.shutdown(Duration::from_secs(1)).await;
}
