//! A webhook sink for the load benchmark: a drop-in for the harness's `sink.py` (same flags,
//! same `/stats`, `/reset` and `/healthz`, same counting), fast enough not to be the
//! bottleneck (the Python sink tops out near 15k webhooks/s on a shared core).
//!
//! Every POST or PUT is answered 200 with an empty body and counted: requests, bytes, alert
//! objects (an Alertmanager webhook's `alerts`, a JSON array's items, or one object), and
//! per distinct `labels.id` the latency from `annotations.sent_at` to its first arrival.
//!
//! ```text
//! sink [--host 127.0.0.1] [--port 19094] [--no-parse] [--max-seconds 3600] [--delay-ms 0]
//! ```
//!
//! `--delay-ms N` answers each webhook N ms after it arrives (counted on arrival): a
//! receiver that far away, for measuring delivery to a remote target.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use switchyard_load::{Error, serve_for, value};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[derive(Default)]
struct Stats {
    started: f64,
    requests: u64,
    alerts: u64,
    firing: u64,
    resolved: u64,
    bytes: u64,
    parse_errors: u64,
    by_path: HashMap<String, u64>,
    /// id -> latency in seconds (first arrival), NaN when `sent_at` was missing.
    first_seen: HashMap<String, f64>,
    first_ts: Option<f64>,
    last_ts: Option<f64>,
    last_new_ts: Option<f64>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            started: now(),
            ..Stats::default()
        }
    }

    fn record(&mut self, path: &str, body: &[u8], parse: bool, t: f64) {
        self.requests += 1;
        self.bytes += body.len() as u64;
        match self.by_path.get_mut(path) {
            Some(n) => *n += 1,
            None => {
                self.by_path.insert(path.to_owned(), 1);
            }
        }
        self.first_ts.get_or_insert(t);
        self.last_ts = Some(t);
        if !parse {
            return;
        }
        let Ok(doc) = serde_json::from_slice::<Value>(body) else {
            self.parse_errors += 1;
            return;
        };
        let one;
        let items: &[Value] = match &doc {
            Value::Object(o) if matches!(o.get("alerts"), Some(Value::Array(_))) => {
                match o.get("alerts") {
                    Some(Value::Array(a)) => a,
                    _ => &[],
                }
            }
            Value::Array(a) => a,
            other => {
                one = [other.clone()];
                &one
            }
        };
        self.alerts += items.len() as u64;
        for a in items {
            let Value::Object(a) = a else { continue };
            match a.get("status").and_then(Value::as_str) {
                Some("firing") => self.firing += 1,
                Some("resolved") => self.resolved += 1,
                _ => {}
            }
            let id = match a.get("labels").and_then(|l| l.get("id")) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => continue,
                Some(other) => other.to_string(),
            };
            if self.first_seen.contains_key(&id) {
                continue;
            }
            let sent = match a.get("annotations").and_then(|n| n.get("sent_at")) {
                Some(Value::String(s)) => s.parse::<f64>().ok(),
                Some(Value::Number(n)) => n.as_f64(),
                _ => None,
            };
            self.first_seen.insert(id, sent.map_or(f64::NAN, |s| t - s));
            self.last_new_ts = Some(t);
        }
    }

    fn snapshot(&self, with_latencies: bool) -> Value {
        let mut lat: Vec<f64> = self.first_seen.values().copied().collect();
        lat.sort_by(f64::total_cmp);
        let n = lat.len();
        // The same percentile rule as sink.py.
        let pct = |p: f64| -> Option<f64> {
            if n == 0 {
                return None;
            }
            let i =
                ((p / 100.0 * n as f64 + 0.5).round_ties_even() as i64 - 1).clamp(0, n as i64 - 1);
            lat.get(i as usize).copied()
        };
        let mean = (n > 0).then(|| lat.iter().sum::<f64>() / n as f64);
        let mut out = json!({
            "since": self.started,
            "requests": self.requests,
            "alerts": self.alerts,
            "firing": self.firing,
            "resolved": self.resolved,
            "bytes": self.bytes,
            "parse_errors": self.parse_errors,
            "distinct": n,
            "by_path": self.by_path,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "last_new_ts": self.last_new_ts,
            "latency_s": {
                "count": n,
                "min": lat.first(),
                "p50": pct(50.0),
                "p90": pct(90.0),
                "p99": pct(99.0),
                "max": lat.last(),
                "mean": mean,
            },
        });
        if with_latencies {
            out["latencies"] = json!(lat);
        }
        out
    }
}

struct Shared {
    stats: Mutex<Stats>,
    parse: bool,
    delay: std::time::Duration,
}

fn json_response(v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let lock = || match shared.stats.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    match (&method, path.as_str()) {
        (&Method::GET, "/stats") => {
            let snap = lock().snapshot(query.contains("latencies=1"));
            Ok(json_response(&snap))
        }
        (&Method::POST, "/reset") => {
            let mut s = lock();
            let snap = s.snapshot(false);
            *s = Stats::new();
            Ok(json_response(&snap))
        }
        (&Method::GET, "/" | "/healthz") => Ok(json_response(&json!({"ok": true}))),
        (&Method::POST | &Method::PUT, _) => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => Bytes::new(),
            };
            let t = now();
            lock().record(&path, &body, shared.parse, t);
            if !shared.delay.is_zero() {
                tokio::time::sleep(shared.delay).await;
            }
            Ok(Response::new(Full::new(Bytes::new())))
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_FOUND;
            Ok(r)
        }
    }
}

fn main() -> Result<(), Error> {
    let mut host = String::from("127.0.0.1");
    let mut port: u16 = 19094;
    let mut parse = true;
    let mut max_seconds: f64 = 3600.0;
    let mut delay_ms: u64 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--host" => host = value(&mut args, "--host")?,
            "--port" => port = value(&mut args, "--port")?,
            "--no-parse" => parse = false,
            "--max-seconds" => max_seconds = value(&mut args, "--max-seconds")?,
            "--delay-ms" => delay_ms = value(&mut args, "--delay-ms")?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1") {
        return Err("refusing to listen on a non-loopback address".into());
    }
    let host = if host == "localhost" {
        String::from("127.0.0.1")
    } else {
        host
    };
    let addr: SocketAddr = format!("{host}:{port}").parse()?;
    // One thread: the sink shares a core with the load generators and must not take more.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("sink listening on http://{addr} parse={parse}");
        let shared = Arc::new(Shared {
            stats: Mutex::new(Stats::new()),
            parse,
            delay: std::time::Duration::from_millis(delay_ms.min(60_000)),
        });
        // Bounded life, as sink.py: it stops by itself after max_seconds.
        serve_for(listener, max_seconds, move |req| {
            handle(shared.clone(), req)
        })
        .await;
        println!("sink: max lifetime reached, exiting");
        Ok(())
    })
}
