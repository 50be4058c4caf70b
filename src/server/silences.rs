//! `POST /api/silences`, `GET /api/silences`, `DELETE /api/silences/{id}`: an operator's
//! silences over HTTP, on the router's (docs/server.md, "Silences").
//!
//! Owns: the request and answer shapes (times as RFC 3339, `for` as a duration of the rule
//! language). Never: checks a silence itself (the router does, and the condition's
//! diagnostics come back as a rules file's do).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::dispatch::{NewSilence, SilenceError};
use crate::state::Silence;

/// The body of `POST /api/silences`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SilenceRequest {
    condition: String,
    /// RFC 3339; now when absent or in the past.
    starts: Option<String>,
    /// RFC 3339; give this or `for`.
    ends: Option<String>,
    /// A duration from `starts`: `2h`, `30m`, `1d`.
    #[serde(rename = "for")]
    lasts: Option<String>,
    created_by: String,
    comment: String,
}

impl SilenceRequest {
    /// A silence from now, for `lasts` (a duration of the rule language): the console's form.
    pub(super) fn lasting(
        condition: String,
        lasts: String,
        created_by: String,
        comment: String,
    ) -> SilenceRequest {
        SilenceRequest {
            condition,
            starts: None,
            ends: None,
            lasts: Some(lasts),
            created_by,
            comment,
        }
    }
}

/// A moment in ms as RFC 3339, UTC.
fn moment(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| ms.to_string(), |t| t.to_string())
}

/// A silence as the API shows it, with its status at `now`.
pub(crate) fn view(s: &Silence, now: u64) -> Value {
    json!({
        "id": s.id,
        "status": s.status(now),
        "condition": s.condition,
        "starts": moment(s.starts),
        "ends": moment(s.ends),
        "created_by": s.created_by,
        "comment": s.comment,
        "created_at": moment(s.created_at),
        "expired_at": s.expired_at.map(moment),
    })
}

/// A silence just stored, as it was at that moment: the router's clock, not the handler's
/// (read earlier; a silence made "from now" would otherwise show as pending).
fn added(s: &Silence) -> Value {
    view(s, s.created_at)
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// An RFC 3339 moment of the request, in ms.
fn parse_moment(field: &str, text: &str) -> Result<u64, ApiError> {
    let t: jiff::Timestamp = text.parse().map_err(|e| {
        bad(
            "bad_time",
            format!("`{field}` is not an RFC 3339 moment such as \"2026-12-24T09:00:00Z\": {e}"),
        )
    })?;
    u64::try_from(t.as_millisecond())
        .map_err(|_| bad("bad_time", format!("`{field}` is before 1970")))
}

/// The request as the router takes it.
pub(super) fn new_silence(r: SilenceRequest, now: u64) -> Result<NewSilence, ApiError> {
    let starts = r
        .starts
        .as_deref()
        .map(|t| parse_moment("starts", t))
        .transpose()?;
    let from = starts.unwrap_or(now).max(now);
    let ends = match (r.ends.as_deref(), r.lasts.as_deref()) {
        (Some(ends), None) => parse_moment("ends", ends)?,
        (None, Some(lasts)) => {
            let ms = crate::check::duration_ms(lasts)
                .and_then(|ms| u64::try_from(ms).ok())
                .ok_or_else(|| {
                    bad(
                        "bad_duration",
                        format!("`for` is {lasts:?}; write a whole number and a unit: \"90m\", \"2h\", \"1d\""),
                    )
                })?;
            from.saturating_add(ms)
        }
        _ => {
            return Err(bad(
                "bad_request",
                "give either `ends` (an RFC 3339 moment) or `for` (a duration such as \"2h\"), not both",
            ));
        }
    };
    Ok(NewSilence {
        condition: r.condition,
        starts,
        ends,
        created_by: r.created_by,
        comment: r.comment,
    })
}

/// `POST /api/silences`: 201 with the silence, durable before the answer; 400 with the
/// condition's diagnostics (as `POST /-/reload` gives a file's) when it does not check.
pub(crate) async fn add(State(s): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let request: SilenceRequest = serde_json::from_slice(&body).map_err(|e| {
        bad(
            "malformed",
            format!("the silence is not the JSON this endpoint takes ({e}); fields: condition, starts, ends or for, created_by, comment"),
        )
    })?;
    let now = crate::dispatch::now_ms();
    let new = new_silence(request, now)?;
    match s.router().add_silence(new).await {
        Ok(silence) => Ok((StatusCode::CREATED, Json(added(&silence))).into_response()),
        Err(SilenceError::Condition(d)) => {
            let message = format!("the condition has {} error(s)", d.error_count());
            let body = json!({
                "error": {"status": 400, "code": "bad_condition", "message": message},
                "diagnostics": d.to_json(),
                "rendered": d.render(crate::Format::Text),
            });
            Ok((StatusCode::BAD_REQUEST, Json(body)).into_response())
        }
        Err(SilenceError::Invalid(why)) => Err(bad("bad_silence", why)),
        Err(SilenceError::Store(e)) => Err(e.into()),
    }
}

/// `GET /api/silences`: every silence the router keeps (in force, pending, ended), newest
/// first.
pub(crate) async fn list(State(s): State<Arc<AppState>>) -> Json<Value> {
    let now = crate::dispatch::now_ms();
    let mut all = s.router().silences();
    all.reverse();
    let items: Vec<Value> = all.iter().map(|x| view(x, now)).collect();
    Json(json!({ "silences": items }))
}

/// `DELETE /api/silences/{id}`: expires the silence now (kept as history); the firings it
/// held that still fire go out at once. 200 with the silence; 404 if there is none.
pub(crate) async fn expire(
    State(s): State<Arc<AppState>>,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    match s.router().expire_silence(id).await? {
        Some(silence) => Ok(Json(view(&silence, crate::dispatch::now_ms()))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_silence",
            format!("no silence {id}"),
        )),
    }
}

#[cfg(test)]
#[path = "silences_test.rs"]
mod tests;
