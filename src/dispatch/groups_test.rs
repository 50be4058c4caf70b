//! What a group flush costs: CPU of the whole process while the store flushes one group
//! of 1,000 alerts and renders its notification (issue 24: under 10 ms). Prints figures;
//! asserts only that each flush notified its group. And what joining one group costs a
//! NATS replica (`nats_group_join_cpu`).
//!
//! Run: `cargo test --release --lib group_flush_cpu -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::alert::Alert;
use crate::dispatch::{Router, now_ms};
use crate::engine::RuleSet;

/// CPU time of every thread of this process so far, in ns (Linux: each thread's
/// `schedstat`); `None` elsewhere.
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        total += text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand, prints figures"]
async fn group_flush_cpu() {
    const MEMBERS: usize = 1_000;
    const ROUNDS: usize = 7;
    let dir = std::env::temp_dir().join(format!("switchyard-bench-groups-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Nothing listens on the discard port; the notification is only stored, never sent
    // (no worker is woken: the flush is called here, not by the groups' clock).
    let rules = RuleSet::from_files([(
        "g.rules",
        "target pager { url = \"http://127.0.0.1:9/hook\" }\n\
         rule \"g\" when exists(labels.cluster) -> post pager, group by labels.cluster wait 1h every 1h\n",
    )])
    .expect("rules");
    let router = Router::builder()
        .rules(rules.clone())
        .data_dir(&dir)
        .in_flight_per_target(1)
        .build()
        .await
        .expect("router");
    println!("round\tmembers\tCPU ms\twall ms\trender ms\tbody KB\tjoining: wall ms, CPU ms");
    let mut cpu = Vec::new();
    for round in 0..ROUNDS {
        let alerts: Vec<Alert> = (0..MEMBERS)
            .map(|i| {
                Alert::new(json!({
                    "labels": {"alertname": format!("HighCPU{i}"), "cluster": format!("c{round}"), "instance": format!("10.0.{}.{}:9100", i / 250, i % 250)},
                    "annotations": {"summary": format!("CPU above 90% on 10.0.{}.{}", i / 250, i % 250)},
                    "startsAt": "2026-11-30T08:00:00Z",
                }))
                .with_id(format!("r{round}-a{i}"))
            })
            .collect();
        let joining = Instant::now();
        let cpu_joining = process_cpu_ns();
        for chunk in alerts.chunks(100) {
            router.submit_many(chunk).await.expect("submitted");
        }
        let joined = joining.elapsed();
        let cpu_joined = process_cpu_ns();
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Due: an hour and a minute from now.
        let now = now_ms() + 3_660_000;
        let set = rules.clone();
        let body_bytes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let render_ns = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (seen, spent) = (body_bytes.clone(), render_ns.clone());
        let render: crate::dispatch::store::GroupRender = Box::new(move |note| {
            let started = Instant::now();
            let r = super::render(&set, note, now);
            spent.fetch_add(
                started.elapsed().as_nanos() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            if let Some(r) = &r {
                seen.fetch_add(r.body.len(), std::sync::atomic::Ordering::Relaxed);
            }
            r
        });
        let before = process_cpu_ns();
        let started = Instant::now();
        let flushed = router
            .inner
            .store
            .flush_groups(now, render)
            .await
            .expect("flushed");
        let wall = started.elapsed();
        let after = process_cpu_ns();
        assert_eq!(flushed.sent, 1, "one group notified in round {round}");
        let (Some(before), Some(after)) = (before, after) else {
            println!("no per-thread CPU figures on this system");
            break;
        };
        let ms = (after - before) as f64 / 1e6;
        cpu.push(ms);
        println!(
            "{round}\t{MEMBERS}\t{ms:.2}\t{:.2}\t{:.2}\t{}\t{:.0}, {:.0}",
            wall.as_secs_f64() * 1e3,
            render_ns.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6,
            body_bytes.load(std::sync::atomic::Ordering::Relaxed) / 1024,
            joined.as_secs_f64() * 1e3,
            cpu_joined
                .zip(cpu_joining)
                .map_or(0.0, |(a, b)| (a - b) as f64 / 1e6),
        );
    }
    cpu.sort_by(f64::total_cmp);
    if let Some(median) = cpu.get(cpu.len() / 2) {
        println!("median CPU per flush of {MEMBERS} alerts: {median:.2} ms (target: under 10 ms)");
    }
    router.shutdown(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// What joining one group costs a replica on NATS: 1,000 alerts in submits of 100, the
/// CPU of this process (the replica's side; the NATS nodes are not counted), five rounds.
/// Run: `cargo test --release --all-features --lib nats_group_join_cpu -- --ignored --nocapture`.
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand, prints figures"]
async fn nats_group_join_cpu() {
    use crate::dispatch::store::conformance::{Nats, grouped};
    let Some(cluster) = crate::dispatch::store::nats::tests::cluster_for("group-join") else {
        return;
    };
    let mut cpu = Vec::new();
    for round in 0..5 {
        let s = Nats::on(&cluster, &format!("group_join_cpu_{round}"))
            .store()
            .await;
        let now = now_ms();
        let before = process_cpu_ns();
        for batch in 0..10 {
            let subs = (0..100)
                .map(|i| grouped(&format!("r{round}-b{batch}-a{i}"), now))
                .collect();
            s.submit(subs).await.unwrap();
        }
        let after = process_cpu_ns();
        s.release().await;
        if let (Some(b), Some(a)) = (before, after) {
            let ms = (a - b) as f64 / 1e6;
            println!("round {round}: joining 1000 alerts to one group: {ms:.1} ms of CPU");
            cpu.push(ms);
        }
    }
    cpu.sort_by(f64::total_cmp);
    if let Some(m) = cpu.get(cpu.len() / 2) {
        println!("median: {m:.1} ms of CPU per 1,000 joins");
    }
}
