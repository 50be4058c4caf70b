//! The service every request enters ([`App`], what [`super::app`] returns): the head's size
//! limit and errors as JSON for every request, the ingest endpoints answered here, and
//! every other request handed to the axum router.
//!
//! Why the ingest endpoints do not go through the router: it is the one path that runs for
//! every alert, and the router's own work per request (matching the path, the route's
//! boxed future and service clone, the extractors, a layer around it) was about 7,000
//! instructions of a one-alert request's 48,000 (docs/benchmarks.md). Here they are a match
//! on the method and the path. The router keeps the same routes, with the same handlers:
//! it answers what this does not take (another method gets its 405 with `Allow`, an
//! unknown sender its 404), and a test holds the two to the same answers
//! (`edge_test.rs`).
//!
//! Owns: the list of ingest endpoints (exactly `POST /alerts`, `POST /api/v2/alerts`,
//! `POST|PUT /alerts/<sender>`: [`ingest_endpoints`], which the router's routes are made
//! from as well), and what every request passes through. Never: knows
//! another endpoint, or answers an ingest differently from the router's handler.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use super::{ApiError, AppState, SourceQuery, error, ingest};
use crate::alert::Source;

/// The whole HTTP service: a `tower::Service` for any request body, cheap to clone (two
/// reference counts). Serve it with [`super::serve`], or mount it in another axum router
/// with `Router::nest_service`.
#[derive(Clone)]
pub struct App {
    state: Arc<AppState>,
    router: axum::Router,
}

impl App {
    pub(super) fn new(state: Arc<AppState>, router: axum::Router) -> App {
        App { state, router }
    }

    /// The answer to one request; with `direct`, an ingest is answered here, else by the
    /// router (only the tests ask for that).
    async fn answer(self, req: Request<Body>, direct: bool) -> Response {
        if let Some(refused) = head_too_large(&self.state, &req) {
            return refused;
        }
        let route = if direct {
            ingest_route(req.method(), req.uri().path())
        } else {
            None
        };
        let resp = match route {
            // As the router's handler: the query first (a malformed one is axum's 400),
            // then the request.
            Some(source) => match Query::<SourceQuery>::try_from_uri(req.uri()) {
                Ok(Query(q)) => {
                    with_length(ingest(&self.state, source, &q, req).await.into_response())
                }
                Err(rejection) => with_length(rejection.into_response()),
            },
            None => match self.router.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            },
        };
        error::json_errors(resp).await
    }

    /// The answer through the router alone, without this service's own path to the
    /// ingest endpoints: what the tests hold this service to.
    #[cfg(test)]
    pub(super) async fn through_router(self, req: Request<Body>) -> Response {
        self.answer(req, false).await
    }
}

/// An ingest endpoint: the one list of them ([`ingest_endpoints`]) makes both the
/// router's routes and what this service answers itself.
pub(super) struct IngestEndpoint {
    pub(super) path: String,
    /// `PUT` is taken as `POST` (a sender's own path); else `POST` only.
    pub(super) put: bool,
    /// The sender; `None`: detected from the payload (or `?source=`).
    pub(super) source: Option<Source>,
}

/// Every ingest endpoint: `POST /alerts` (the sender detected), `POST /api/v2/alerts`
/// (Prometheus's own path, so `alerting.alertmanagers` can point at switchyard
/// unchanged), and `POST`/`PUT /alerts/<sender>` for each sender.
pub(super) fn ingest_endpoints() -> Vec<IngestEndpoint> {
    let mut all = vec![
        IngestEndpoint {
            path: String::from("/alerts"),
            put: false,
            source: None,
        },
        IngestEndpoint {
            path: String::from("/api/v2/alerts"),
            put: false,
            source: Some(Source::Prometheus),
        },
    ];
    all.extend(Source::ALL.iter().map(|&s| IngestEndpoint {
        path: format!("/alerts/{}", s.as_str()),
        put: true,
        source: Some(s),
    }));
    all
}

/// The sender of a request this service answers itself (`Some(None)`: detected from the
/// payload), or `None` for the router's requests: a look-up in [`ingest_endpoints`], made
/// once.
fn ingest_route(method: &Method, path: &str) -> Option<Option<Source>> {
    static ENDPOINTS: std::sync::LazyLock<Vec<IngestEndpoint>> =
        std::sync::LazyLock::new(ingest_endpoints);
    let put = *method == Method::PUT;
    if *method != Method::POST && !put {
        return None;
    }
    ENDPOINTS
        .iter()
        .find(|e| e.path == path && (e.put || !put))
        .map(|e| e.source)
}

/// `content-length` from a body of known length, as the router's routes set it.
fn with_length(mut resp: Response) -> Response {
    if !resp.headers().contains_key(header::CONTENT_LENGTH)
        && let Some(n) = hyper::body::Body::size_hint(resp.body()).exact()
    {
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    resp
}

/// The JSON 431 for a request whose head (request line and headers) is over
/// `max_header_bytes` (hyper's own buffer is larger, see `run.rs`, so that only a head too
/// large even for that gets hyper's bare 431). Counted without building anything: this
/// runs for every request.
fn head_too_large(s: &AppState, req: &Request<Body>) -> Option<Response> {
    let uri = req.uri();
    let head = req.method().as_str().len()
        + uri.scheme_str().map_or(0, str::len)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len())
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    (head > s.limits.max_header_bytes).then(|| {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "head_too_large",
            format!(
                "the request line and headers are {head} bytes; the limit is {}",
                s.limits.max_header_bytes
            ),
        )
        .into_response()
    })
}

impl<B> tower::Service<Request<B>> for App
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready, and so is this.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let app = self.clone();
        Box::pin(async move { Ok(app.answer(req.map(Body::new), true).await) })
    }
}

#[cfg(test)]
#[path = "edge_test.rs"]
mod tests;
