//! The durable ingest ceiling: a bare hyper HTTP/1.1 server that reads each request body,
//! parses it into a `serde_json::Value`, and hands it to one writer thread that appends it
//! to a file with group commit: every request waiting when the writer comes round joins
//! the batch, the batch is written in one `write` and made durable by one `fdatasync`, and
//! each request is answered 202 only after its batch is on disk. What the machine allows
//! for "accepted means on disk" before any of switchyard's work (routing, the outbox's
//! rows, SQLite's pages).
//!
//! ```text
//! durable_server --dir DIR [--port 19094] [--max-seconds 900]
//! ```
//! Worker threads follow the CPU affinity (`taskset -c 1` gives one); the writer thread is
//! one more, as switchyard's outbox writer is. `GET /stats` answers the requests, batches
//! (syncs) and bytes written so far, as JSON.

use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use switchyard_load::{Error, serve_for, value};
use tokio::sync::oneshot;

/// One request's body on its way to disk, and how its handler learns it arrived.
struct Job {
    body: Bytes,
    done: oneshot::Sender<bool>,
}

/// What the writer did, printed at exit.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    batches: AtomicU64,
    bytes: AtomicU64,
}

impl Counts {
    fn json(&self) -> String {
        let (requests, batches) = (
            self.requests.load(Ordering::Relaxed),
            self.batches.load(Ordering::Relaxed),
        );
        format!(
            r#"{{"requests":{requests},"batches":{batches},"per_sync":{:.1},"bytes":{}}}"#,
            requests as f64 / batches.max(1) as f64,
            self.bytes.load(Ordering::Relaxed)
        )
    }
}

/// The writer thread: takes the first waiting job, then every other job already waiting,
/// writes them as one buffer (each body on its own line), syncs, and answers them all.
fn writer(mut file: File, jobs: mpsc::Receiver<Job>, counts: Arc<Counts>) {
    let mut buf = Vec::with_capacity(1 << 20);
    let mut batch = Vec::with_capacity(1024);
    while let Ok(first) = jobs.recv() {
        batch.push(first);
        batch.extend(jobs.try_iter());
        buf.clear();
        for job in &batch {
            buf.extend_from_slice(&job.body);
            buf.push(b'\n');
        }
        let ok = file.write_all(&buf).is_ok() && file.sync_data().is_ok();
        counts
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        counts.batches.fetch_add(1, Ordering::Relaxed);
        counts.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        for job in batch.drain(..) {
            let _ = job.done.send(ok);
        }
    }
}

async fn handle(
    jobs: mpsc::Sender<Job>,
    counts: Arc<Counts>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status| {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = status;
        Ok(r)
    };
    match req.uri().path() {
        "/-/ready" => return reply(StatusCode::OK),
        "/stats" => return Ok(Response::new(Full::new(Bytes::from(counts.json())))),
        _ => {}
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST),
    };
    if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return reply(StatusCode::BAD_REQUEST);
    }
    let (done, on_disk) = oneshot::channel();
    if jobs.send(Job { body, done }).is_err() {
        return reply(StatusCode::SERVICE_UNAVAILABLE);
    }
    match on_disk.await {
        Ok(true) => reply(StatusCode::ACCEPTED),
        _ => reply(StatusCode::SERVICE_UNAVAILABLE),
    }
}

fn main() -> Result<(), Error> {
    let mut port: u16 = 19094;
    let mut dir: Option<PathBuf> = None;
    let mut max_seconds: f64 = 900.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = value(&mut args, "--port")?,
            "--dir" => dir = Some(value(&mut args, "--dir")?),
            "--max-seconds" => max_seconds = value(&mut args, "--max-seconds")?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let dir = dir.ok_or("--dir DIR is required: where the appended file goes")?;
    std::fs::create_dir_all(&dir)?;
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(dir.join("durable-ceiling.log"))?;
    let (tx, rx) = mpsc::channel();
    let counts = Arc::new(Counts::default());
    let writer_counts = Arc::clone(&counts);
    std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || writer(file, rx, writer_counts))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        serve_for(listener, max_seconds, move |req| {
            handle(tx.clone(), Arc::clone(&counts), req)
        })
        .await;
        Ok::<_, Error>(())
    })
}
