//! Memory stays flat under steady delivery: heap in use after 10,000 more delivered alerts
//! is about what it was before (regression: finished delivery tasks were kept in the
//! worker's `JoinSet` until shutdown, about 1.6 KB per delivery).
//!
//! Counted with dhat's allocator, so this file is its own test binary.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use switchyard::{Alert, Router, RuleSet};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// A receiver that only counts, so that it holds no memory per request itself.
async fn counting_receiver() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let c = c.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let c = c.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        c.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}/hook"), count)
}

async fn deliver(router: &Router, count: &AtomicUsize, n: usize) {
    let target = count.load(Ordering::Relaxed) + n;
    for chunk in 0..n / 100 {
        let alerts: Vec<Alert> = (0..100)
            .map(|i| Alert::new(json!({"status": "ALARM", "n": chunk * 100 + i})))
            .collect();
        router.submit_many(&alerts).await.unwrap();
    }
    let start = Instant::now();
    while count.load(Ordering::Relaxed) < target && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        count.load(Ordering::Relaxed) >= target,
        "every alert delivered"
    );
    // Let the workers record the last outcomes.
    let start = Instant::now();
    while router.stats().pending > 0 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heap_stays_flat_under_steady_delivery() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let dir = std::env::temp_dir().join(format!("switchyard-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (url, count) = counting_receiver().await;
    let rules = RuleSet::from_files([(
        "m.rules",
        format!("target t {{ url = \"{url}\" }}\nwhen exists(status) -> post t\n"),
    )])
    .unwrap();
    let router = Router::builder()
        .rules(rules)
        .data_dir(&dir)
        .build()
        .await
        .unwrap();
    // Warm up: connection pools, statement caches, the runtime's own structures.
    deliver(&router, &count, 2_000).await;
    let before = dhat::HeapStats::get().curr_bytes;
    deliver(&router, &count, 10_000).await;
    let after = dhat::HeapStats::get().curr_bytes;
    let grown = after.saturating_sub(before);
    eprintln!("heap in use: {before} B before, {after} B after 10,000 more deliveries");
    assert!(
        grown < 2_000_000,
        "heap grew by {grown} B over 10,000 deliveries ({} B each)",
        grown / 10_000
    );
    router.shutdown(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
