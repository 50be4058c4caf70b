//! The edge answers every ingest request exactly as the router's handler does: the same
//! status, headers and body bytes, for accepted alerts and for every way a request is
//! refused.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::super::{AppState, Credential, IngestAuth, Limits, Secret, app};
use crate::{Router, RuleSet, Source};

/// A server on the example rules (every target at a closed local port, and delivery held:
/// nothing is sent), with a token required from Grafana and small limits.
async fn server(dir: &Path) -> super::App {
    let _ = std::fs::remove_dir_all(dir);
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let router = Router::builder()
        .rules(RuleSet::load_dir(&rules).expect("the example rules load"))
        .data_dir(dir.join("data"))
        .hold_deliveries(true)
        .build()
        .await
        .expect("the router starts");
    let limits = Limits {
        max_body_bytes: 4_096,
        max_header_bytes: 1_024,
        ..Limits::default()
    };
    let auth = IngestAuth::none().require(
        Some(Source::Grafana),
        vec![Credential::QueryToken(Secret::new("s3cret"))],
    );
    app(std::sync::Arc::new(AppState::new(
        router, None, limits, auth,
    )))
}

/// Status, every header, and the body, as text.
async fn shown(resp: axum::response::Response) -> String {
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("the body reads").to_bytes();
    format!(
        "{} {:?}\n{}",
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes)
    )
}

fn request(method: &str, uri: &str, content_type: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(Body::from(body.to_owned()))
        .expect("a valid request")
}

#[tokio::test]
async fn every_ingest_is_answered_by_the_edge_as_by_the_router() {
    const JSON: &str = "application/json";
    let yandex = r#"{"alertId":"a1","alertName":"cpu","status":"ALARM","metric":"cpu_usage"}"#;
    let prometheus = r#"[{"labels":{"alertname":"Disk","severity":"page"},"annotations":{}}]"#;
    let grafana = r#"{"status":"firing","alerts":[{"status":"firing","labels":{"alertname":"G"},"fingerprint":"f1"}]}"#;
    let long_header = "x".repeat(1_100);
    let big = format!("{{\"pad\":\"{}\"}}", "y".repeat(5_000));
    let mut requests = vec![
        request("POST", "/alerts/yandex", JSON, yandex),
        request("PUT", "/alerts/yandex", JSON, yandex),
        request("POST", "/alerts/yandex?source=yandex", JSON, yandex),
        request("POST", "/alerts", JSON, yandex),
        request("POST", "/alerts?source=yandex", JSON, yandex),
        request("POST", "/alerts?source=nobody", JSON, yandex),
        request("POST", "/alerts?source=a&source=b", JSON, yandex),
        request("POST", "/alerts?%zz=1", JSON, yandex),
        request("POST", "/api/v2/alerts", JSON, prometheus),
        request("POST", "/alerts/prometheus", JSON, prometheus),
        request("POST", "/alerts/grafana", JSON, grafana),
        request("POST", "/alerts/grafana?token=wrong", JSON, grafana),
        request("POST", "/alerts/grafana?token=s3cret", JSON, grafana),
        request("POST", "/alerts/yandex", JSON, "{not json"),
        request("POST", "/alerts/yandex", JSON, "[]"),
        request("POST", "/alerts/yandex", "text/plain", yandex),
        request("POST", "/alerts/yandex", "application/xml", yandex),
        request("POST", "/alerts/yandex", JSON, &big),
        request(
            "POST",
            "/alerts/alibaba",
            "application/x-www-form-urlencoded",
            "alertName=x&alertState=ALARM",
        ),
        // What the edge leaves to the router.
        request("GET", "/alerts/yandex", JSON, ""),
        request("PUT", "/alerts", JSON, yandex),
        request("PUT", "/api/v2/alerts", JSON, prometheus),
        request("DELETE", "/alerts/yandex", JSON, ""),
        request("POST", "/alerts/nobody", JSON, yandex),
        request("POST", "/alerts/yandex/", JSON, yandex),
        request("POST", "/alerts//yandex", JSON, yandex),
        request("POST", "/ALERTS/yandex", JSON, yandex),
    ];
    let mut too_long = request("POST", "/alerts/yandex", JSON, yandex);
    too_long
        .headers_mut()
        .insert("x-long", long_header.parse().expect("a header value"));
    requests.push(too_long);

    let base = std::env::temp_dir().join(format!("switchyard-edge-{}", std::process::id()));
    let (edge_dir, router_dir): (PathBuf, PathBuf) = (base.join("edge"), base.join("router"));
    let (edge, router) = (server(&edge_dir).await, server(&router_dir).await);
    let mut statuses = std::collections::BTreeSet::new();
    let mut accepted = 0;
    for req in requests {
        let label = format!("{} {}", req.method(), req.uri());
        let (parts, body) = req.into_parts();
        let bytes = body.collect().await.expect("the body reads").to_bytes();
        let again = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
        let by_edge = shown(
            edge.clone()
                .oneshot(Request::from_parts(parts, Body::from(bytes)))
                .await
                .expect("infallible"),
        )
        .await;
        let by_router = shown(router.clone().through_router(again).await).await;
        assert_eq!(by_edge, by_router, "{label}");
        accepted += usize::from(by_edge.starts_with("202"));
        statuses.insert(by_edge[..3].to_owned());
    }
    // Every way an ingest ends was compared.
    for status in ["202", "400", "401", "404", "405", "413", "415", "431"] {
        assert!(statuses.contains(status), "no {status} among {statuses:?}");
    }
    // Both sides stored the same alerts, so their delivery ids agree: the answers above
    // compared them too.
    assert!(accepted >= 8, "{accepted} accepted");
    let _ = std::fs::remove_dir_all(&base);
}

#[tokio::test]
async fn the_service_mounted_under_a_prefix_in_another_router_takes_alerts() {
    let dir = std::env::temp_dir().join(format!("switchyard-edge-nest-{}", std::process::id()));
    let outer = axum::Router::new().nest_service("/switchyard", server(&dir).await);
    let alert = r#"{"alertId":"n1","alertName":"cpu","status":"ALARM","metric":"cpu_usage"}"#;
    let resp = outer
        .clone()
        .oneshot(request(
            "POST",
            "/switchyard/alerts/yandex",
            "application/json",
            alert,
        ))
        .await
        .expect("infallible");
    let text = shown(resp).await;
    assert!(text.starts_with("202"), "{text}");
    assert!(text.contains("\"id\":\"n1\""), "{text}");
    let missing = shown(
        outer
            .oneshot(request(
                "GET",
                "/switchyard/nothing",
                "application/json",
                "",
            ))
            .await
            .expect("infallible"),
    )
    .await;
    assert!(missing.starts_with("404"), "{missing}");
    assert!(missing.contains("not_found"), "{missing}");
    let _ = std::fs::remove_dir_all(&dir);
}
