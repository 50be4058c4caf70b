//! The delivery ceiling: one reqwest client (rustls, as switchyard's) pushing webhooks of
//! one Alertmanager-shaped alert (about 230 bytes) to a URL, `--in-flight` at a time, for
//! `--seconds`. Prints requests/s, failures and the process's CPU seconds per request.
//!
//! ```text
//! bare_push --url http://127.0.0.1:19094/hook/bare [--in-flight 32] [--seconds 10]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchyard_load::{Error, value};

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (Linux), in clock ticks of 100 Hz.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<(), Error> {
    let mut url = String::from("http://127.0.0.1:19094/hook/bare");
    let mut in_flight: usize = 32;
    let mut seconds: f64 = 10.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--url" => url = value(&mut args, "--url")?,
            "--in-flight" => in_flight = value(&mut args, "--in-flight")?,
            "--seconds" => seconds = value(&mut args, "--seconds")?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // No proxies, as switchyard's client when the environment names none: otherwise
        // reqwest asks its empty proxy list about every request.
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let seq = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let cpu0 = cpu_seconds();
        let end = start + Duration::from_secs_f64(seconds);
        let mut tasks = Vec::new();
        for _ in 0..in_flight {
            let (client, url, ok, failed, seq) = (client.clone(), url.clone(), ok.clone(), failed.clone(), seq.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let body = format!(
                        r#"{{"labels":{{"alertname":"Rule_{}","metricName":"cpu_usage","alertState":"ALERT","severity":"critical","instance":"host-{}.example","id":"bare-{n}"}},"annotations":{{"summary":"bare push"}}}}"#,
                        n % 100,
                        n % 1000
                    );
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        let ok = ok.load(Ordering::Relaxed);
        println!(
            "RESULT requests={ok} failed={} seconds={wall:.2} req_s={:.0} cpu_s={cpu:.2} cpu_us_per_req={:.1}",
            failed.load(Ordering::Relaxed),
            ok as f64 / wall,
            if ok > 0 { cpu * 1e6 / ok as f64 } else { 0.0 }
        );
        Ok::<(), Error>(())
    })
}
