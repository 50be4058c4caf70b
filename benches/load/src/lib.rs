//! What the load-benchmark programs share: reading `--flag value` arguments, and serving
//! HTTP/1.1 on a listener for a bounded time.

use std::convert::Infallible;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// The error type of the programs' `main`.
pub type Error = Box<dyn std::error::Error>;

/// The value after `flag` on the command line, parsed.
pub fn value<T>(args: &mut impl Iterator<Item = String>, flag: &str) -> Result<T, Error>
where
    T: FromStr,
    T::Err: std::error::Error + 'static,
{
    let text = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
    Ok(text.parse()?)
}

/// Serves every connection of `listener` with `handle` (keep-alive, no Nagle), for at
/// most `max_seconds`; returns when that time is up.
pub async fn serve_for<H, F>(listener: tokio::net::TcpListener, max_seconds: f64, handle: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let serve = async {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let handle = handle.clone();
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    };
    tokio::select! {
        _ = serve => {}
        () = tokio::time::sleep(Duration::from_secs_f64(max_seconds)) => {}
    }
}
