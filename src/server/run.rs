//! Binding the service to a socket: the only place that sees connections.
//!
//! Owns: HTTP/1 on hyper with a header read timeout and a head size limit (a client that
//! drips or sends a huge head is cut off before the app sees it), and the graceful end.
//! Never: reads a body (the app does, under its own budget) or knows an endpoint.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::Limits;

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish
/// for up to `grace`. A request head must arrive within `limits.request_timeout()` (a
/// slowly dripping client is cut off) and fit in `limits.max_header_bytes`.
/// `app` is [`super::app`]'s service, or any other that answers every request (an
/// `axum::Router` of the program's own, say).
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()>
where
    S: tower::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout())
        // Room for heads past the limit, so that the app refuses them with its JSON 431
        // (`edge`); only a head over this gets hyper's own, bare, 431. hyper
        // refuses a buffer under 8 KiB.
        .max_buf_size(limits.max_header_bytes.saturating_mul(2).max(64 * 1024));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(app.clone());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::warn!("open connections did not finish within the grace period"),
    }
    Ok(())
}
