//! A webhook receiver for tests, on 127.0.0.1 with a port from the OS. The path tells it how
//! to answer:
//!
//! - `/ok`: 200;
//! - `/fail/N`: 500 for the first N requests to that path, then 200;
//! - `/busy/N`: 429 with `Retry-After: N` the first time, then 200;
//! - `/bad`: 400;
//! - `/hang`: answers only after 30 s;
//! - `/slow/MS`: 200 after MS milliseconds (at most 10 s);
//! - `/redirect/CODE?to=URL`: answers CODE (301, 302, 307, 308) with `Location: URL`.
//!
//! Every request is recorded (method, path, headers, body, arrival time). The server stops
//! when the receiver is dropped.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    hits: HashMap<String, usize>,
}

pub(crate) struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0").await
    }

    pub(crate) async fn start_on(addr: &str) -> Receiver {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver { addr, state, task }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub(crate) fn count(&self, path: &str) -> usize {
        self.received().iter().filter(|r| r.path == path).count()
    }

    /// Waits (at most `limit`) until `n` requests to `path` have arrived.
    pub(crate) async fn wait_for(&self, path: &str, n: usize, limit: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got: Vec<Received> = self
                .received()
                .into_iter()
                .filter(|r| r.path == path)
                .collect();
            if got.len() >= n || start.elapsed() > limit {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let location = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("to="))
        .map(str::to_owned);
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let hit = {
        let mut s = state.lock().unwrap();
        s.received.push(Received {
            method,
            path: path.clone(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        });
        let h = s.hits.entry(path.clone()).or_insert(0);
        *h += 1;
        *h
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (status, retry_after) = match parts.as_slice() {
        ["fail", n] if hit <= n.parse::<usize>().unwrap_or(0) => (500, None),
        ["busy", n] if hit == 1 => (429, Some((*n).to_owned())),
        ["bad"] => (400, None),
        ["redirect", code] => (code.parse::<u16>().unwrap_or(302), None),
        ["hang"] => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            (200, None)
        }
        ["slow", ms] => {
            let ms = ms.parse::<u64>().unwrap_or(0).min(10_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            (200, None)
        }
        _ => (200, None),
    };
    let mut resp = Response::builder().status(status);
    if let Some(ra) = retry_after {
        resp = resp.header("retry-after", ra);
    }
    if let (true, Some(to)) = (parts.first() == Some(&"redirect"), location) {
        resp = resp.header("location", to);
    }
    Ok(resp.body(Full::new(Bytes::from_static(b"{}"))).unwrap())
}
