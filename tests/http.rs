//! The service in-process (no socket): every endpoint, status code and sender, with built
//! requests sent through `tower::ServiceExt::oneshot`.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchyard::server::{AdminAuth, AppState, Credential, IngestAuth, Limits, Secret, app};
use switchyard::{Router, RuleSet, Source};
use tower::ServiceExt;

mod support;

struct Fixture {
    state: Arc<AppState>,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

use support::fixtures::read as payload;

/// The example rules, with every target pointing at a closed local port (nothing is sent
/// anywhere real), and a rules folder the service can reload.
async fn fixture(name: &str, limits: Limits, auth: IngestAuth) -> Fixture {
    fixture_with(name, limits, auth, AdminAuth::none()).await
}

/// [`fixture`], with the operator endpoints guarded by `admin`.
async fn fixture_with(name: &str, limits: Limits, auth: IngestAuth, admin: AdminAuth) -> Fixture {
    let dir = std::env::temp_dir().join(format!("switchyard-http-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, rules_dir.join(p.file_name().unwrap())).unwrap();
    }
    let set = RuleSet::load_dir(&rules_dir).unwrap();
    let router = Router::builder()
        .rules(set)
        .data_dir(dir.join("data"))
        .build()
        .await
        .unwrap();
    let state = Arc::new(AppState::new(router, Some(rules_dir), limits, auth).with_admin(admin));
    Fixture { state, dir }
}

async fn send(f: &Fixture, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app(f.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}

fn post(uri: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

fn targets(v: &Value, i: usize) -> Vec<String> {
    v["alerts"][i]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded; charset=UTF-8";

/// The Prometheus fixtures were written on one day; Prometheus sends no status, so once
/// their `endsAt` passed, every "critical" example read as resolved and went unrouted. Sent
/// as if now, they page; as written, they are resolved (the clock decides, not the file).
#[tokio::test]
async fn prometheus_fixtures_sent_now_page_instead_of_reading_as_expired() {
    let f = fixture("expiry", Limits::default(), IngestAuth::none()).await;
    let now =
        support::fixtures::sent_now("alertmanager/api-v2-alerts.json", "2026-11-20T08:12:05Z");
    let (s, v) = send(&f, post("/api/v2/alerts", JSON, now)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    for i in 0..2 {
        assert_eq!(v["alerts"][i]["state"], "firing", "{v}");
        assert_eq!(targets(&v, i), ["oncall_pager"], "{v}");
    }
    let (_, v) = send(
        &f,
        post(
            "/api/v2/alerts",
            JSON,
            payload("alertmanager/api-v2-alerts.json"),
        ),
    )
    .await;
    assert_eq!(v["alerts"][0]["state"], "resolved", "{v}");
    assert_eq!(v["alerts"][0]["unrouted"], true, "{v}");
}

/// The 202 answer is written from typed structs; its keys keep the order the earlier
/// `Value` answer had (alphabetical), compact, so clients that compare bytes see no change.
#[tokio::test]
async fn the_202_answer_has_alphabetical_keys_and_compact_json() {
    let f = fixture("senders", Limits::default(), IngestAuth::none()).await;
    let req = post(
        "/alerts/alibaba",
        FORM,
        payload("alibaba/metric-alarm.form.txt"),
    );
    let resp = app(f.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = std::str::from_utf8(&bytes).unwrap();
    let v: Value = serde_json::from_str(text).unwrap();
    // serde_json's map is ordered by key, so this is the same answer with sorted keys.
    assert_eq!(text, serde_json::to_string(&v).unwrap());
    let keys: Vec<&String> = v["alerts"][0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "deliveries",
            "dropped",
            "id",
            "rules",
            "source",
            "state",
            "targets",
            "unrouted"
        ]
    );
}

#[tokio::test]
async fn every_sender_is_routed() {
    let f = fixture("senders", Limits::default(), IngestAuth::none()).await;

    let (s, v) = send(
        &f,
        post(
            "/alerts/alibaba",
            FORM,
            payload("alibaba/metric-alarm.form.txt"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(targets(&v, 0), ["ecs_critical", "web_team_chat"]);
    assert_eq!(v["alerts"][0]["state"], "firing");
    assert_eq!(v["alerts"][0]["deliveries"].as_array().unwrap().len(), 2);

    // Form bodies are detected on /alerts too.
    let (s, v) = send(
        &f,
        post("/alerts", FORM, payload("alibaba/metric-ok.form.txt")),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(
        (v["alerts"][0]["source"].as_str(), targets(&v, 0)),
        (Some("alibaba"), vec![String::from("ecs_recovered")])
    );

    let (_, v) = send(
        &f,
        post(
            "/alerts/alibaba",
            JSON,
            payload("alibaba/metric-alarm.legacy.json"),
        ),
    )
    .await;
    assert_eq!(targets(&v, 0), ["ecs_critical"]);

    for (file, expected) in [
        ("yandex/function-alarm.json", "alarm_url"),
        ("yandex/function-escalation.status.json", "alarm_url"),
        ("yandex/function-ok.json", "ok_url"),
    ] {
        let (s, v) = send(&f, post("/alerts/yandex", JSON, payload(file))).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{file}");
        assert_eq!(targets(&v, 0), [expected], "{file}");
        let (_, v) = send(&f, post("/alerts", JSON, payload(file))).await;
        assert_eq!(v["alerts"][0]["source"], "yandex", "{file} detected");
    }

    let (s, v) = send(
        &f,
        post(
            "/alerts/alertmanager",
            JSON,
            payload("alertmanager/webhook-mixed.json"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(
        v["accepted"], 3,
        "every alert of the group is routed on its own"
    );
    let (_, v) = send(
        &f,
        post(
            "/alerts",
            JSON,
            payload("alertmanager/captured-alertmanager-0.25-webhook.json"),
        ),
    )
    .await;
    assert_eq!(v["alerts"][0]["source"], "alertmanager");

    let (s, v) = send(
        &f,
        post(
            "/alerts/grafana",
            JSON,
            payload("grafana/webhook-firing.json"),
        ),
    )
    .await;
    assert_eq!((s, v["accepted"].as_u64()), (StatusCode::ACCEPTED, Some(2)));
    let (_, v) = send(
        &f,
        post("/alerts", JSON, payload("grafana/webhook-resolved.json")),
    )
    .await;
    assert_eq!(
        (
            v["alerts"][0]["source"].as_str(),
            v["alerts"][0]["state"].as_str()
        ),
        (Some("grafana"), Some("resolved"))
    );

    let (s, v) = send(
        &f,
        post(
            "/api/v2/alerts",
            JSON,
            support::fixtures::sent_now(
                "alertmanager/captured-prometheus-2.42-api-v2.json",
                "2026-11-24T14:36:45Z",
            ),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["alerts"][0]["source"], "prometheus");
    assert_eq!(v["alerts"][0]["state"], "firing");

    let (s, v) = send(&f, post("/alerts/generic", JSON, r#"{"anything": 1}"#)).await;
    assert_eq!(
        (s, v["alerts"][0]["unrouted"].as_bool()),
        (StatusCode::ACCEPTED, Some(true))
    );
    // PUT is accepted as Grafana can send it.
    let req = Request::put("/alerts/grafana")
        .header("content-type", JSON)
        .body(Body::from(payload("grafana/webhook-firing.json")))
        .unwrap();
    assert_eq!(send(&f, req).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn bad_input_gets_a_json_error_with_the_right_status() {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        max_alerts_per_request: 2,
        ..Limits::default()
    };
    let f = fixture("errors", limits, IngestAuth::none()).await;
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            post("/alerts", JSON, "{not json"),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            post("/alerts/alibaba", JSON, "[1, 2]"),
            StatusCode::BAD_REQUEST,
            "wrong_shape",
        ),
        (
            post("/alerts/alertmanager", JSON, r#"{"version": "4"}"#),
            StatusCode::BAD_REQUEST,
            "wrong_shape",
        ),
        (
            post("/api/v2/alerts", JSON, r#"{"labels": {}}"#),
            StatusCode::BAD_REQUEST,
            "wrong_shape",
        ),
        (
            post("/alerts", JSON, "[".repeat(100_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            post("/alerts", JSON, "[".repeat(50_000)),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            post("/alerts", JSON, vec![b' '; 70_000]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            post(
                "/alerts/alertmanager",
                JSON,
                payload("alertmanager/webhook-mixed.json"),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_alerts",
        ),
        (
            post("/alerts", "text/xml", "<alert/>"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            post("/alerts/nope", JSON, "{}"),
            StatusCode::NOT_FOUND,
            "unknown_source",
        ),
        (
            post("/nowhere", JSON, "{}"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            post("/alerts", JSON, b"{\"a\": \"\xff\"}".to_vec()),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            post("/alerts", JSON, b"{\"a\": \"x\0y\"}".to_vec()),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            post(
                "/alerts",
                JSON,
                (0..4096u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                    .collect::<Vec<u8>>(),
            ),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            post(
                "/alerts/alibaba",
                FORM,
                b"alertState=\xff\xfe&x=\0".to_vec(),
            ),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
    ];
    for (req, status, code) in cases {
        let uri = req.uri().to_string();
        let (s, v) = send(&f, req).await;
        assert_eq!(s, status, "{uri}: {v}");
        assert_eq!(v["error"]["code"], code, "{uri}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    f.state.set_ready(false);
    let (s, v) = send(&f, post("/alerts", JSON, "{}")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("not_ready"))
    );
    let (s, _) = send(&f, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let (s, _) = send(&f, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK, "alive while not ready");
}

#[tokio::test]
async fn credentials_per_source() {
    let auth = IngestAuth::none()
        .require(
            Some(Source::Alibaba),
            vec![Credential::QueryToken(Secret::new("q-secret"))],
        )
        .require(
            None,
            vec![
                Credential::Bearer(Secret::new("b-secret")),
                Credential::Basic {
                    user: String::from("am"),
                    password: Secret::new("pw"),
                },
            ],
        );
    let f = fixture("auth", Limits::default(), auth).await;
    let form = payload("alibaba/metric-alarm.form.txt");
    let yandex = payload("yandex/function-alarm.json");
    let with = |uri: &str, ct: &str, body: &[u8], authz: Option<&str>| {
        let mut b = Request::post(uri).header("content-type", ct);
        if let Some(a) = authz {
            b = b.header("authorization", a);
        }
        b.body(Body::from(body.to_vec())).unwrap()
    };
    let basic = format!("Basic {}", base64_encode("am:pw"));
    let cases = [
        (
            with("/alerts/alibaba", FORM, &form, None),
            StatusCode::UNAUTHORIZED,
        ),
        (
            with("/alerts/alibaba?token=wrong", FORM, &form, None),
            StatusCode::UNAUTHORIZED,
        ),
        (
            with("/alerts/alibaba?token=q-secret", FORM, &form, None),
            StatusCode::ACCEPTED,
        ),
        (
            with("/alerts/alibaba", FORM, &form, Some("Bearer b-secret")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            with("/alerts/yandex", JSON, &yandex, None),
            StatusCode::UNAUTHORIZED,
        ),
        (
            with("/alerts/yandex", JSON, &yandex, Some("Bearer nope")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            with("/alerts/yandex", JSON, &yandex, Some("Bearer b-secret")),
            StatusCode::ACCEPTED,
        ),
        (
            with("/alerts/yandex", JSON, &yandex, Some(&basic)),
            StatusCode::ACCEPTED,
        ),
        (
            with("/alerts/yandex", JSON, &yandex, Some("Basic bm9wZTpub3Bl")),
            StatusCode::UNAUTHORIZED,
        ),
        // Detection cannot bypass a sender's own credentials.
        (
            with(
                "/alerts?token=q-secret",
                FORM,
                &form,
                Some("Bearer b-secret"),
            ),
            StatusCode::ACCEPTED,
        ),
        (
            with("/alerts", FORM, &form, Some("Bearer b-secret")),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (i, (req, status)) in cases.into_iter().enumerate() {
        let (s, v) = send(&f, req).await;
        assert_eq!(s, status, "case {i}: {v}");
        if s == StatusCode::UNAUTHORIZED {
            let text = v.to_string();
            assert!(
                !text.contains("secret") && !text.contains("pw"),
                "no secret in the answer: {text}"
            );
        }
    }
}

/// What a request presents: an `Authorization` header, a `?token=`.
type Presented<'a> = (Option<String>, Option<&'a str>);

/// The whole matrix: every way of naming a sender (its path, `?source=`, detection from
/// the payload) x every credential a request may carry. Found by an attack: with
/// credentials for yandex, alibaba and alertmanager and no `*` entry,
/// `POST /alerts?source=yandex` with no credential was accepted and routed as yandex; with a
/// `*` entry, the `*` token was accepted there although `/alerts/yandex` refused it.
#[tokio::test]
async fn authentication_matrix_every_way_of_naming_a_sender_enforces_its_credentials() {
    let basic = format!("Basic {}", base64_encode("am:am-pw"));
    for with_star in [false, true] {
        let mut auth = IngestAuth::none()
            .require(
                Some(Source::Yandex),
                vec![Credential::Bearer(Secret::new("y-token"))],
            )
            .require(
                Some(Source::Alibaba),
                vec![Credential::QueryToken(Secret::new("a-token"))],
            )
            .require(
                Some(Source::Alertmanager),
                vec![Credential::Basic {
                    user: String::from("am"),
                    password: Secret::new("am-pw"),
                }],
            );
        if with_star {
            auth = auth.require(None, vec![Credential::Bearer(Secret::new("star-token"))]);
        }
        let f = fixture(&format!("matrix-{with_star}"), Limits::default(), auth).await;
        let senders = [
            ("yandex", JSON, payload("yandex/function-alarm.json")),
            ("alibaba", FORM, payload("alibaba/metric-alarm.form.txt")),
            (
                "alertmanager",
                JSON,
                payload("alertmanager/webhook-firing.json"),
            ),
        ];
        // (name, Authorization header, ?token=)
        let right = |sender: &str| match sender {
            "yandex" => (Some(String::from("Bearer y-token")), None),
            "alibaba" => (None, Some("a-token")),
            _ => (Some(basic.clone()), None),
        };
        for (sender, ct, body) in &senders {
            let others: Vec<&str> = ["yandex", "alibaba", "alertmanager"]
                .into_iter()
                .filter(|o| o != sender)
                .collect();
            let mut creds: Vec<(&str, Presented, bool)> = vec![
                ("right", right(sender), true),
                ("missing", (None, None), false),
                (
                    "wrong",
                    (Some(String::from("Bearer nope")), Some("nope")),
                    false,
                ),
                (
                    "star",
                    (Some(String::from("Bearer star-token")), None),
                    false,
                ),
                // The scheme is case-insensitive (found by the same attack).
                (
                    "lowercase scheme",
                    match *sender {
                        "yandex" => (Some(String::from("bearer y-token")), None),
                        "alibaba" => (None, Some("a-token")),
                        _ => (Some(basic.replace("Basic", "BASIC")), None),
                    },
                    true,
                ),
            ];
            for o in &others {
                creds.push(("other sender's", right(o), false));
            }
            for (how, uri) in [
                ("path", format!("/alerts/{sender}")),
                ("?source=", format!("/alerts?source={sender}")),
                ("detection", String::from("/alerts")),
            ] {
                for (what, (authz, token), accepted) in &creds {
                    let uri = match token {
                        Some(t) if uri.contains('?') => format!("{uri}&token={t}"),
                        Some(t) => format!("{uri}?token={t}"),
                        None => uri.clone(),
                    };
                    let mut req = Request::post(uri.as_str()).header("content-type", *ct);
                    if let Some(a) = authz {
                        req = req.header("authorization", a.as_str());
                    }
                    let (s, v) = send(&f, req.body(Body::from(body.clone())).unwrap()).await;
                    let want = if *accepted {
                        StatusCode::ACCEPTED
                    } else {
                        StatusCode::UNAUTHORIZED
                    };
                    assert_eq!(
                        s, want,
                        "star={with_star} {sender} by {how} with {what} credential ({uri}): {v}"
                    );
                    if s == StatusCode::ACCEPTED {
                        assert_eq!(v["alerts"][0]["source"], *sender, "{v}");
                    }
                }
            }
        }
        // A sender with no entry of its own: free without `*`, the `*` token with it.
        let grafana = payload("grafana/webhook-firing.json");
        for (uri, authz, want) in [
            ("/alerts/grafana", None, !with_star),
            ("/alerts?source=grafana", None, !with_star),
            ("/alerts", None, !with_star),
            ("/alerts/grafana", Some("Bearer star-token"), true),
            ("/alerts", Some("Bearer star-token"), true),
            ("/alerts/grafana", Some("Bearer y-token"), !with_star),
        ] {
            let mut req = Request::post(uri).header("content-type", JSON);
            if let Some(a) = authz {
                req = req.header("authorization", a);
            }
            let (s, v) = send(&f, req.body(Body::from(grafana.clone())).unwrap()).await;
            let want = if want {
                StatusCode::ACCEPTED
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(s, want, "star={with_star} grafana {uri} {authz:?}: {v}");
        }
    }
}

/// Found by an attack: an empty credential file was accepted, and then `?token=` (empty)
/// got 202. Empty or blank secrets are refused at start, from every source, with the line.
#[test]
fn empty_secrets_are_refused_at_start_with_their_line() {
    use switchyard::server::Config;
    let dir = std::env::temp_dir().join(format!("switchyard-empty-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, content) in [("empty", ""), ("newline", "\n"), ("blank", "  \t \n")] {
        let file = dir.join(name);
        std::fs::write(&file, content).unwrap();
        let yaml = format!(
            "ingest:\n  auth:\n    - sources: [alibaba]\n      query_token: {{ file: {} }}\n",
            file.display()
        );
        let cfg = Config::parse(&yaml, "s.yaml").unwrap();
        let err = cfg.ingest_auth(&|_| None).unwrap_err().to_string();
        assert!(
            err.contains("line 4") && err.contains("is empty") && err.contains("query_token"),
            "{name}: {err}"
        );
    }
    let yaml = "ingest:\n  auth:\n    - sources: ['*']\n      bearer: { env: TOKEN }\n";
    let cfg = Config::parse(yaml, "s.yaml").unwrap();
    for value in ["", "   "] {
        let err = cfg
            .ingest_auth(&|n| (n == "TOKEN").then(|| value.to_owned()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4") && err.contains("is empty"), "{err}");
    }
    let err = cfg.ingest_auth(&|_| None).unwrap_err().to_string();
    assert!(
        err.contains("line 4") && err.contains("is not set"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found by an attack: wrong methods answered 405 with an empty body, axum's path and query
/// rejections answered `text/plain`, an oversized head an empty 431. Every refusal is the
/// one JSON shape, and a 405 says which methods the endpoint takes (`Allow`).
#[tokio::test]
async fn every_refusal_is_json_and_a_405_has_allow() {
    let f = fixture("refusals", Limits::default(), IngestAuth::none()).await;
    let routes: [(&str, &[&str]); 11] = [
        ("/alerts", &["POST"]),
        ("/alerts/yandex", &["POST", "PUT"]),
        ("/api/v2/alerts", &["POST"]),
        ("/healthz", &["GET", "HEAD"]),
        ("/readyz", &["GET", "HEAD"]),
        ("/metrics", &["GET", "HEAD"]),
        ("/api/explain", &["POST"]),
        ("/api/rules", &["GET", "HEAD"]),
        ("/api/dead-letters", &["GET", "HEAD"]),
        ("/api/dead-letters/1/retry", &["POST"]),
        ("/-/reload", &["POST"]),
    ];
    let mut checked = 0;
    for (path, allowed) in routes {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            if allowed.contains(&method) {
                continue;
            }
            let req = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            let resp = app(f.state.clone()).oneshot(req).await.unwrap();
            let status = resp.status();
            let ct = resp.headers().get("content-type").cloned();
            let allow = resp.headers().get("allow").cloned();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let v: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {bytes:?}"));
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(ct.unwrap(), "application/json", "{method} {path}");
            assert_eq!(v["error"]["code"], "method_not_allowed", "{method} {path}");
            let allow = allow.unwrap_or_else(|| panic!("{method} {path}: no Allow"));
            for m in allowed.iter().filter(|m| **m != "HEAD") {
                assert!(
                    allow.to_str().unwrap().contains(m),
                    "{method} {path}: Allow {allow:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "{checked}");
    // axum's path and query rejections.
    let (s, v) = send(&f, post("/api/dead-letters/abc/retry", JSON, "")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request")),
        "{v}"
    );
    let (s, v) = send(
        &f,
        Request::get("/api/dead-letters?limit=lots")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request")),
        "{v}"
    );
    // A head over the limit (16 KiB by default).
    let req = Request::get("/healthz")
        .header("x-big", "a".repeat(20_000))
        .body(Body::empty())
        .unwrap();
    let (s, v) = send(&f, req).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Some("head_too_large")
        ),
        "{v}"
    );
}

/// Found by an attack: with ingest credentials on, the operator endpoints (dead letters
/// with alert bodies, their retry, reload, rules, metrics) answered anyone. An admin
/// credential, separate from the senders', now guards them; `/metrics` may stay open.
#[tokio::test]
async fn operator_endpoints_need_the_admin_credential() {
    let ingest = IngestAuth::none().require(
        Some(Source::Yandex),
        vec![Credential::Bearer(Secret::new("y-token"))],
    );
    for metrics_open in [true, false] {
        let admin = AdminAuth::require(vec![Credential::Bearer(Secret::new("admin-token"))])
            .metrics_open(metrics_open);
        let f = fixture_with(
            &format!("admin-{metrics_open}"),
            Limits::default(),
            ingest.clone(),
            admin,
        )
        .await;
        let req = |method: &str, uri: &str, authz: Option<&str>| {
            let mut b = Request::builder()
                .method(method)
                .uri(uri)
                .header("content-type", JSON);
            if let Some(a) = authz {
                b = b.header("authorization", a);
            }
            let body = if uri.starts_with("/api/explain") {
                Body::from(payload("yandex/function-alarm.json"))
            } else {
                Body::empty()
            };
            b.body(body).unwrap()
        };
        let guarded = [
            ("GET", "/api/dead-letters"),
            ("POST", "/api/dead-letters/1/retry"),
            ("POST", "/-/reload"),
            ("GET", "/api/rules"),
            ("POST", "/api/explain?source=yandex"),
            ("GET", "/api/silences"),
            ("DELETE", "/api/silences/1"),
        ];
        for (method, uri) in guarded {
            for authz in [None, Some("Bearer y-token"), Some("Bearer nope")] {
                let (s, v) = send(&f, req(method, uri, authz)).await;
                assert_eq!(
                    s,
                    StatusCode::UNAUTHORIZED,
                    "{method} {uri} with {authz:?}: {v}"
                );
            }
            let (s, v) = send(&f, req(method, uri, Some("bearer admin-token"))).await;
            assert_ne!(
                s,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with the admin token: {v}"
            );
            assert!(
                s.is_success() || s == StatusCode::NOT_FOUND,
                "{method} {uri}: {s} {v}"
            );
        }
        let (s, _) = send(&f, req("GET", "/metrics", None)).await;
        let want = if metrics_open {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(s, want, "metrics_open={metrics_open}");
        let (s, _) = send(&f, req("GET", "/metrics", Some("Bearer admin-token"))).await;
        assert_eq!(s, StatusCode::OK);
        // Health stays open; ingest still takes the sender's credential, not the admin's.
        let (s, _) = send(&f, req("GET", "/healthz", None)).await;
        assert_eq!(s, StatusCode::OK);
        let ingest_req = |authz: &str| {
            Request::post("/alerts/yandex")
                .header("content-type", JSON)
                .header("authorization", authz)
                .body(Body::from(payload("yandex/function-alarm.json")))
                .unwrap()
        };
        let (s, _) = send(&f, ingest_req("Bearer admin-token")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = send(&f, ingest_req("Bearer y-token")).await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    // The config: `admin:` with a bearer from the environment; metrics open by default.
    use switchyard::server::Config;
    let cfg = Config::parse("admin:\n  bearer: { env: ADMIN }\n", "s.yaml").unwrap();
    let admin = cfg
        .admin_auth(&|n| (n == "ADMIN").then(|| String::from("a")))
        .unwrap();
    assert!(admin.is_enabled());
    let err = cfg
        .admin_auth(&|_| Some(String::from(" ")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2") && err.contains("empty"), "{err}");
    assert!(
        !Config::default()
            .admin_auth(&|_| None)
            .unwrap()
            .is_enabled()
    );
}

/// `?source=` with a name that is no sender is refused, not silently detected.
#[tokio::test]
async fn an_unknown_source_in_the_query_is_refused() {
    let f = fixture(
        "unknown-query-source",
        Limits::default(),
        IngestAuth::none(),
    )
    .await;
    let (s, v) = send(
        &f,
        post(
            "/alerts?source=yandx",
            JSON,
            payload("yandex/function-alarm.json"),
        ),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_source")),
        "{v}"
    );
}

fn base64_encode(s: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn operations_endpoints() {
    let f = fixture("ops", Limits::default(), IngestAuth::none()).await;
    let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();

    let (s, v) = send(&f, get("/healthz")).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, v) = send(&f, get("/readyz")).await;
    assert_eq!((s, v["rules"].as_u64()), (StatusCode::OK, Some(11)));

    // Explain routes without delivering.
    let before = f.state.router().stats().submitted;
    let (s, v) = send(
        &f,
        post(
            "/api/explain?source=yandex",
            JSON,
            payload("yandex/function-alarm.json"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["alerts"][0]["decision"]["targets"][0], "alarm_url");
    assert!(v["alerts"][0]["rules"][0]["condition"]["children"].is_array());
    assert_eq!(
        f.state.router().stats().submitted,
        before,
        "explain delivers nothing"
    );
    let (s, _) = send(&f, post("/api/explain?source=nope", JSON, "{}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, v) = send(&f, get("/api/rules")).await;
    assert_eq!((s, v["rules"].as_u64()), (StatusCode::OK, Some(11)));
    assert_eq!(v["files"].as_array().unwrap().len(), 4);
    assert_eq!(
        v["inhibits"],
        serde_json::json!([{"name": "warnings under a critical", "location": "30-prometheus.rules:122"}])
    );
    assert_eq!(
        v["windows"],
        serde_json::json!([{"name": "office_hours", "definition": "mon-fri 09:00-18:00 Europe/Berlin"}])
    );
    assert!(v["files"][0]["hash"].as_str().unwrap().len() == 16);
    // Found by a user: the listing had counts but no rule names.
    let list = v["rule_list"].as_array().unwrap();
    assert_eq!(list.len(), 11);
    assert_eq!(list[0]["name"], "yandex alarm");
    assert_eq!(list[0]["actions"][0], "post alarm_url");
    assert!(
        list[0]["location"]
            .as_str()
            .unwrap()
            .contains("10-yandex.rules:")
    );

    send(
        &f,
        post(
            "/alerts/yandex",
            JSON,
            payload("yandex/function-alarm.json"),
        ),
    )
    .await;
    let (s, text) = send(&f, get("/metrics")).await;
    let text = text.as_str().unwrap().to_owned();
    assert_eq!(s, StatusCode::OK);
    for needle in [
        r#"switchyard_http_ingest_requests_total{source="yandex",status="202"} 1"#,
        r#"switchyard_alerts_received_total{source="yandex"} 1"#,
        "switchyard_alerts_submitted_total 1",
        "switchyard_outbox_pending",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }

    let (s, v) = send(&f, get("/api/dead-letters")).await;
    assert_eq!(
        (s, v["dead_letters"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    let (s, v) = send(&f, post("/api/dead-letters/424242/retry", JSON, "")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_such_dead_letter"))
    );
}

#[tokio::test]
async fn reload_takes_a_good_folder_and_keeps_the_old_rules_on_errors() {
    let f = fixture("reload", Limits::default(), IngestAuth::none()).await;
    let rules_dir = f.dir.join("rules");
    let yandex = payload("yandex/function-alarm.json");

    // A broken edit: rejected with diagnostics, the old rules keep routing.
    std::fs::write(
        rules_dir.join("10-yandex.rules"),
        "when status = \"ALARM\" -> post alarm_url\n",
    )
    .unwrap();
    let (s, v) = send(&f, post("/-/reload", JSON, "")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["diagnostics"][0]["code"], "E0103");
    assert!(
        v["diagnostics"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("10-yandex.rules")
    );
    let (_, r) = send(&f, Request::get("/api/rules").body(Body::empty()).unwrap()).await;
    assert_eq!(
        r["rejected_reload"][0]["code"], "E0103",
        "the pending diagnostics are visible"
    );
    let (_, v) = send(&f, post("/alerts/yandex", JSON, yandex.clone())).await;
    assert_eq!(targets(&v, 0), ["alarm_url"], "the old rules still route");

    // A good edit: taken.
    std::fs::write(
        rules_dir.join("10-yandex.rules"),
        "when @source == \"yandex\" -> post ok_url\n",
    )
    .unwrap();
    let (s, v) = send(&f, post("/-/reload", JSON, "")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "reloaded");
    let (_, v) = send(&f, post("/alerts/yandex", JSON, yandex)).await;
    assert_eq!(targets(&v, 0), ["ok_url"], "the new rules route");
    let (_, r) = send(&f, Request::get("/api/rules").body(Body::empty()).unwrap()).await;
    assert!(r["rejected_reload"].is_null());
}

/// A reload says which rules that remember keep their state (same name, same clauses) and
/// which start fresh (new, or a clause changed).
#[tokio::test]
async fn a_reload_says_which_rules_keep_their_memory() {
    let f = fixture("reload-memory", Limits::default(), IngestAuth::none()).await;
    let rules_dir = f.dir.join("rules");
    let write = |window: &str| {
        std::fs::write(
            rules_dir.join("50-memory.rules"),
            format!("rule \"yandex pages\" when @source == \"yandex\" -> post alarm_url, dedup for {window}\n"),
        )
        .unwrap();
    };
    // Whether the reload's `state` lists the rule under `kind` (`kept` or `fresh`).
    let listed = |v: &Value, kind: &str| {
        v["state"][kind]
            .as_array()
            .is_some_and(|a| a.contains(&json!("yandex pages")))
    };
    write("1h");
    let (s, v) = send(&f, post("/-/reload", JSON, "")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        listed(&v, "fresh") && !listed(&v, "kept"),
        "a new rule starts fresh: {v}"
    );
    // Another file changes; this rule does not: its state carries on.
    std::fs::write(
        rules_dir.join("60-other.rules"),
        "when exists(nothing) -> post ok_url\n",
    )
    .unwrap();
    let (_, v) = send(&f, post("/-/reload", JSON, "")).await;
    assert!(listed(&v, "kept") && !listed(&v, "fresh"), "{v}");
    write("2h");
    let (_, v) = send(&f, post("/-/reload", JSON, "")).await;
    assert_eq!(
        v["state"]["fresh"],
        json!(["yandex pages"]),
        "a changed window starts fresh: {v}"
    );
}

/// Found by a user: an edit rejected, then reverted (the folder back to the running
/// content), counted `unchanged` and left `reload_last_success` at 0 and the stale
/// diagnostics in `/api/rules`. The running set matching the folder is a success.
#[tokio::test]
async fn a_reverted_bad_edit_is_a_successful_reload() {
    let f = fixture("revert", Limits::default(), IngestAuth::none()).await;
    let rules_dir = f.dir.join("rules");
    let good = std::fs::read(rules_dir.join("10-yandex.rules")).unwrap();
    std::fs::write(
        rules_dir.join("10-yandex.rules"),
        "when status = 1 -> post alarm_url\n",
    )
    .unwrap();
    let (s, _) = send(&f, post("/-/reload", JSON, "")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let metric = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("switchyard_reload_last_success "))
            .map(str::to_owned)
    };
    let (_, m) = send(&f, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(metric(m.as_str().unwrap()).as_deref(), Some("0"));

    // The watcher sees the folder back at the running content: `Unchanged`.
    std::fs::write(rules_dir.join("10-yandex.rules"), good).unwrap();
    let (s, v) = f
        .state
        .apply_reload(switchyard::reload::Outcome::Unchanged, "watch");
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("unchanged"))
    );
    let (_, m) = send(&f, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(metric(m.as_str().unwrap()).as_deref(), Some("1"));
    let (_, r) = send(&f, Request::get("/api/rules").body(Body::empty()).unwrap()).await;
    assert!(r["rejected_reload"].is_null(), "{r}");
}

#[test]
fn config_files_are_checked_with_a_place_and_a_hint() {
    use switchyard::server::Config;
    let ok = Config::parse("listen: 127.0.0.1:9999\nrules: r\nlimits:\n  max_body_bytes: 2048\nlogging:\n  format: json\n", "s.yaml").unwrap();
    assert_eq!(ok.listen.port(), 9999);
    assert_eq!(ok.limits.max_body_bytes, 2048);
    assert_eq!(
        ok.limits.max_alerts_per_request, 1_000,
        "unset keys keep their defaults"
    );
    assert_eq!(ok.delivery.queue_memory_mb, 64);
    let queue = Config::parse("delivery:\n  queue_memory_mb: 0\n", "s.yaml").unwrap();
    assert_eq!(queue.delivery.queue_memory_mb, 0, "0: queue ids only");
    assert!(
        ok.delivery.adaptive_in_flight,
        "the in-flight limit adapts by default"
    );
    let fixed = Config::parse("delivery:\n  adaptive_in_flight: false\n", "s.yaml").unwrap();
    assert!(!fixed.delivery.adaptive_in_flight);

    let unknown = Config::parse("listen: 127.0.0.1:9999\nlisen: oops\n", "s.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("s.yaml") && unknown.contains("lisen") && unknown.contains("line 2"),
        "{unknown}"
    );
    // Found by a user: the message said `error:` twice and pointed at `<input>`.
    assert!(unknown.contains("--> s.yaml:2:1"), "{unknown}");
    assert!(
        !unknown.contains("<input>") && !unknown.starts_with("error:"),
        "{unknown}"
    );
    let wrong = Config::parse("limits:\n  max_body_bytes: lots\n", "s.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        wrong.contains("s.yaml") && wrong.contains("line 2"),
        "{wrong}"
    );
    let bad_addr = Config::parse("listen: nowhere\n", "s.yaml")
        .unwrap_err()
        .to_string();
    assert!(bad_addr.contains("line 1"), "{bad_addr}");

    let with_auth = Config::parse(
        "ingest:\n  auth:\n    - sources: [alibaba]\n      query_token: { env: ALI_TOKEN }\n",
        "s.yaml",
    )
    .unwrap();
    assert!(
        with_auth
            .ingest_auth(&|_| None)
            .unwrap_err()
            .to_string()
            .contains("ALI_TOKEN")
    );
    assert!(
        with_auth
            .ingest_auth(&|n| (n == "ALI_TOKEN").then(|| String::from("t")))
            .unwrap()
            .is_enabled()
    );
    let bad_source = Config::parse(
        "ingest:\n  auth:\n    - sources: [alibab]\n      bearer: { env: X }\n",
        "s.yaml",
    )
    .unwrap();
    assert!(
        bad_source
            .ingest_auth(&|_| Some(String::from("v")))
            .unwrap_err()
            .to_string()
            .contains("alibab")
    );
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("switchyard.example.yaml"),
    )
    .unwrap();
    let example = Config::parse(&example, "switchyard.example.yaml").unwrap();
    // Found by a user: the example named variables and files that do not exist, so it
    // could not be used as it is. Its credentials are now commented out.
    example
        .ingest_auth(&|_| None)
        .expect("the example config starts with an empty environment");
}

#[tokio::test]
async fn media_types_are_read_without_regard_to_case() {
    let f = fixture("media-types", Limits::default(), IngestAuth::none()).await;
    let yandex = r#"{"alertId":"m1","alertName":"cpu","status":"ALARM","metric":"cpu_usage"}"#;
    for ct in [
        "Application/JSON",
        "application/vnd.sender+JSON; charset=utf-8",
        "TEXT/JSON",
        "Text/Plain",
        "",
    ] {
        let (s, v) = send(&f, post("/alerts/yandex", ct, yandex)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{ct}: {v}");
    }
    let form = payload("alibaba/metric-alarm.form.txt");
    let (s, v) = send(
        &f,
        post("/alerts/alibaba", "Application/X-WWW-Form-URLEncoded", form),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let (s, v) = send(
        &f,
        post("/alerts/yandex", "Text/XML; charset=utf-8", yandex),
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("`text/xml`"), "{message}");
}
