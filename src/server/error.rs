//! One error type for every handler, turned into one JSON shape:
//! `{"error": {"status": 413, "code": "body_too_large", "message": "..."}}`.
//!
//! Owns: mapping a router error's kind to a status in one place (a full disk and a
//! stopping router are 503, a refused operation 409, ...), and the JSON shape of refusals
//! that no handler made (axum's own 404, 405, 413, 415). Never: puts a secret or a stored
//! body in a message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A failed request: an HTTP status, a stable machine-readable code, and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code: `malformed`, `unauthorized`, `body_too_large`, ...
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// What went wrong and how to fix it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

/// The one place an outbox failure becomes an answer: a 503 (nothing was accepted or
/// changed; retry), `stopping` while the router stops and `outbox_unavailable` otherwise,
/// with the kind in the message; a 409 `outbox_conflict` for what is refused for that item
/// (an unreadable dead letter's replay). Ingest says more in its own words
/// (`ApiError::not_stored`).
impl From<crate::DispatchError> for ApiError {
    fn from(e: crate::DispatchError) -> ApiError {
        use crate::DispatchErrorKind as K;
        match e.kind() {
            K::Closed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping", e.to_string()),
            K::Refused => ApiError::new(StatusCode::CONFLICT, "outbox_conflict", e.to_string()),
            k => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "outbox_unavailable",
                format!("{}: {e}", k.describe()),
            ),
        }
    }
}

impl ApiError {
    /// Alerts that could not be stored: nothing was accepted, and the sender should retry
    /// (503), unless they can never be stored as they are (413). Says why in a few words,
    /// never the outbox's path.
    pub(crate) fn not_stored(e: &crate::DispatchError) -> ApiError {
        if e.kind() == crate::DispatchErrorKind::Refused {
            // Never storable as it is (larger than the shared store takes): a retry would
            // fail the same way, so it is not a 503.
            tracing::warn!(error = %e, "alerts refused: too large to store");
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large_to_store",
                format!("the alerts cannot be stored: {e}; nothing was accepted"),
            );
        }
        tracing::error!(error = %e, "cannot queue the alerts");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "outbox_unavailable",
            format!(
                "the alerts could not be stored ({}); nothing was accepted, retry",
                e.kind().describe()
            ),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"status": self.status.as_u16(), "code": self.code, "message": self.message}});
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"switchyard\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Turns every error answer that no handler made (axum's 405 with its `Allow`, its path and
/// query rejections, a 404 of a route's own) into the one JSON shape, keeping its headers:
/// a client reads every refusal the same way.
pub(crate) async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    // A handler's own answer (JSON, or a console page) is kept as it is.
    let is_html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if is_json || is_html {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let code = match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "body_too_large",
        415 => "unsupported_media_type",
        431 => "head_too_large",
        _ => "error",
    };
    let message = if !text.is_empty() {
        text
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("another method");
        format!("this endpoint takes {allow}")
    } else {
        status.canonical_reason().unwrap_or("refused").to_owned()
    };
    let mut out = ApiError::new(status, code, message).into_response();
    for (k, v) in &parts.headers {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}
