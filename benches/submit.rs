//! Durable submits per second: `Router::submit` with fsync and group commit, at 1, 32 and
//! 256 concurrent submitters, then again with 10,000+ deliveries already pending. Prints a
//! table; no timing is asserted.
//!
//! Run: `cargo bench --bench submit`. The target is a local socket that never answers, with
//! one request in flight, so delivery work does not compete with the submits measured.

use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::{Alert, Router, RuleSet};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accept and hold connections without answering.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let rules = RuleSet::from_files([(
        "b.rules",
        format!("target sink {{ url = \"http://{addr}/hook\" timeout = 1h }}\nwhen exists(alertState) -> post sink\n"),
    )])
    .expect("rules");
    let dir = std::env::temp_dir().join(format!("switchyard-bench-submit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let router = Router::builder()
        .rules(rules)
        .data_dir(&dir)
        .in_flight_per_target(1)
        .build()
        .await
        .expect("router");
    let alert = Alert::new(
        json!({"alertState": "ALARM", "metricName": "CPUUtilization", "curValue": "95"}),
    );

    println!("concurrency\tsubmits\tseconds\tsubmits/s\tpending before");
    for (concurrency, total) in [
        (1usize, 2_000usize),
        (32, 20_000),
        (256, 40_000),
        (1, 2_000),
        (32, 20_000),
        (256, 40_000),
    ] {
        let pending_before = router.stats().pending;
        let per_task = total / concurrency;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (r, a) = (router.clone(), alert.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..per_task {
                    r.submit(&a).await.expect("submit");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let secs = started.elapsed().as_secs_f64();
        let n = per_task * concurrency;
        println!(
            "{concurrency}\t{n}\t{secs:.2}\t{:.0}\t{pending_before}",
            n as f64 / secs
        );
    }
    router.shutdown(Duration::from_millis(100)).await;
    drop(router);
    let _ = std::fs::remove_dir_all(&dir);
}
