//! `switchyard receive`: a receiver for trying rules out. It answers every request with
//! 200 and prints it as one line on standard output, `METHOD PATH AUTHORIZATION BODY`
//! (`-` when the request has no `Authorization` header), so that what a target would get
//! can be seen without a real pager or chat. Not for production: it keeps nothing.

use std::io::Write as _;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use tokio::net::TcpListener;

/// The largest request body shown; a larger one is refused with 413.
pub const MAX_RECEIVE_BYTES: usize = 4 * 1024 * 1024;

/// Serves the printing receiver on `listener` until `shutdown` completes.
pub async fn receive(
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .fallback(show)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_RECEIVE_BYTES));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Prints one request as a line and answers 200.
async fn show(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let auth = headers.get(axum::http::header::AUTHORIZATION).map_or_else(
        || String::from("-"),
        |v| String::from_utf8_lossy(v.as_bytes()).into_owned(),
    );
    let line = format!(
        "{method} {} {auth} {}",
        uri.path_and_query().map_or("/", |p| p.as_str()),
        String::from_utf8_lossy(&body).trim_end()
    );
    // A reader that went away (`| head`) is no reason to fail the sender's request.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    StatusCode::OK
}
