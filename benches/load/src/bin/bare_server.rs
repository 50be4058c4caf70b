//! The ingest ceiling: a bare hyper HTTP/1.1 server that reads each request body, parses
//! it into a `serde_json::Value` (unless `--no-parse`), and answers 202. No routing, no
//! storage: what the machine allows before any of switchyard's work.
//!
//! ```text
//! bare_server [--port 19093] [--no-parse] [--max-seconds 900]
//! ```
//! Worker threads follow the CPU affinity (`taskset -c 1` gives one).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use switchyard_load::{Error, serve_for, value};

async fn handle(parse: bool, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path_ok = req.uri().path() != "/-/ready";
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut status = if path_ok {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    if parse && path_ok && serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        status = StatusCode::BAD_REQUEST;
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    Ok(r)
}

fn main() -> Result<(), Error> {
    let mut port: u16 = 19093;
    let mut parse = true;
    let mut max_seconds: f64 = 900.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = value(&mut args, "--port")?,
            "--no-parse" => parse = false,
            "--max-seconds" => max_seconds = value(&mut args, "--max-seconds")?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        serve_for(listener, max_seconds, move |req| handle(parse, req)).await;
        Ok(())
    })
}
