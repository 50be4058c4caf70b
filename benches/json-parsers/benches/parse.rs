//! Which JSON parser for the ingest path: serde_json, simd-json or sonic-rs, on the bodies
//! switchyard takes, measured in one run. Each case parses a body and reads the three
//! fields a rule looks at (what routing needs), in three ways:
//!
//! - `value`: into each crate's owned tree (`serde_json::Value`, `simd_json::OwnedValue`,
//!   `sonic_rs::Value`): what switchyard keeps today (the alert is delivered as received
//!   and rendered into templates, so it must outlive the request).
//! - `borrowed`: into a borrowed tree (`simd_json::BorrowedValue`) or a borrowed typed
//!   struct (serde_json, sonic-rs), which avoids copying strings.
//! - `lazy`: sonic-rs's `get_many`-style access without building a tree.
//!
//! Run: `cargo bench` in this folder. Results: docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::Deserialize;

/// How many alerts of a parsed tree have the three fields as strings; the same code for
/// simd-json's and sonic-rs's trees (their traits must be in scope).
macro_rules! routable_tree {
    ($v:expr, $fields:expr) => {
        match $v.as_array() {
            Some(a) => a
                .iter()
                .filter(|a| {
                    $fields.iter().all(|f| {
                        a.get("labels")
                            .and_then(|l| l.get(*f))
                            .is_some_and(|x| x.is_str())
                    })
                })
                .count(),
            None => usize::from(
                $fields
                    .iter()
                    .all(|f| $v.get(*f).is_some_and(|x| x.is_str())),
            ),
        }
    };
}

const ALIBABA: &str = r#"{"userId":"12345","alertName":"putNewAlarm_group_a37cd898-ea6b-4b7b-a8a8-de017a8327f6","timestamp":"1508136760","alertState":"ALARM","dimensions":[{"userId":"12345","instanceId":"i-12345"}],"expression":"[{\"expression\":\"$Average>90\",\"level\":4,\"times\":2}]","curValue":"95","metricName":"CPUUtilization","metricProject":"acs_ecs_dashboard"}"#;

fn am_alert(i: usize) -> String {
    format!(
        r#"{{"labels":{{"alertname":"Rule_{}","metricName":"cpu_usage","alertState":"ALERT","severity":"critical","instance":"host-{}.example","id":"r-0-{i}"}},"annotations":{{"summary":"load test alert {i}"}}}}"#,
        i % 100,
        i % 1000
    )
}

#[derive(Deserialize)]
struct AlibabaView<'a> {
    #[serde(rename = "alertState", borrow)]
    alert_state: &'a str,
    #[serde(rename = "metricName", borrow)]
    metric_name: &'a str,
    #[serde(rename = "curValue", borrow)]
    cur_value: &'a str,
}

#[derive(Deserialize)]
struct Labels<'a> {
    #[serde(borrow)]
    alertname: &'a str,
    #[serde(rename = "alertState", borrow)]
    alert_state: &'a str,
    #[serde(rename = "metricName", borrow)]
    metric_name: &'a str,
}

#[derive(Deserialize)]
struct AmView<'a> {
    #[serde(borrow)]
    labels: Labels<'a>,
}

impl AlibabaView<'_> {
    fn routable(&self) -> usize {
        usize::from(
            !self.alert_state.is_empty()
                && !self.metric_name.is_empty()
                && !self.cur_value.is_empty(),
        )
    }
}

fn routable(alerts: &[AmView<'_>]) -> usize {
    alerts
        .iter()
        .filter(|a| {
            !a.labels.alertname.is_empty()
                && !a.labels.alert_state.is_empty()
                && !a.labels.metric_name.is_empty()
        })
        .count()
}

fn bench(c: &mut Criterion) {
    let one = am_alert(7);
    let batch = format!("[{}]", (0..100).map(am_alert).collect::<Vec<_>>().join(","));
    let cases: [(&str, String); 3] = [
        ("alibaba_300B", ALIBABA.to_owned()),
        ("am_one_alert", format!("[{one}]")),
        ("am_100_alerts", batch),
    ];
    let mut g = c.benchmark_group("parse");
    for (name, body) in &cases {
        g.throughput(Throughput::Bytes(body.len() as u64));
        let is_alibaba = name.starts_with("alibaba");
        let fields: [&str; 3] = if is_alibaba {
            ["alertState", "metricName", "curValue"]
        } else {
            ["alertname", "alertState", "metricName"]
        };
        // serde_json, owned Value.
        g.bench_with_input(
            BenchmarkId::new("serde_json/value", name),
            body,
            |b, body| {
                b.iter(|| {
                    let v: serde_json::Value =
                        serde_json::from_str(black_box(body)).expect("parses");
                    let n = match &v {
                        serde_json::Value::Array(a) => a
                            .iter()
                            .filter(|a| fields.iter().all(|f| a["labels"][*f].is_string()))
                            .count(),
                        o => usize::from(fields.iter().all(|f| o[*f].is_string())),
                    };
                    black_box(n)
                })
            },
        );
        // serde_json, borrowed typed view.
        g.bench_with_input(
            BenchmarkId::new("serde_json/borrowed", name),
            body,
            |b, body| {
                b.iter(|| {
                    let n = if is_alibaba {
                        serde_json::from_str::<AlibabaView<'_>>(black_box(body))
                            .expect("parses")
                            .routable()
                    } else {
                        routable(
                            &serde_json::from_str::<Vec<AmView<'_>>>(black_box(body))
                                .expect("parses"),
                        )
                    };
                    black_box(n)
                })
            },
        );
        // simd-json, owned and borrowed trees (it parses in place: a copy of the body each time).
        g.bench_with_input(
            BenchmarkId::new("simd_json/value", name),
            body,
            |b, body| {
                use simd_json::prelude::*;
                b.iter(|| {
                    let mut bytes = black_box(body.as_bytes()).to_vec();
                    let v = simd_json::to_owned_value(&mut bytes).expect("parses");
                    let n = routable_tree!(v, fields);
                    black_box(n)
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("simd_json/borrowed", name),
            body,
            |b, body| {
                use simd_json::prelude::*;
                b.iter(|| {
                    let mut bytes = black_box(body.as_bytes()).to_vec();
                    let v = simd_json::to_borrowed_value(&mut bytes).expect("parses");
                    let n = routable_tree!(v, fields);
                    black_box(n)
                })
            },
        );
        // sonic-rs, owned Value and borrowed typed view.
        g.bench_with_input(BenchmarkId::new("sonic_rs/value", name), body, |b, body| {
            use sonic_rs::{JsonContainerTrait, JsonValueTrait};
            b.iter(|| {
                let v: sonic_rs::Value = sonic_rs::from_str(black_box(body)).expect("parses");
                let n = routable_tree!(v, fields);
                black_box(n)
            })
        });
        g.bench_with_input(
            BenchmarkId::new("sonic_rs/borrowed", name),
            body,
            |b, body| {
                b.iter(|| {
                    let n = if is_alibaba {
                        sonic_rs::from_str::<AlibabaView<'_>>(black_box(body))
                            .expect("parses")
                            .routable()
                    } else {
                        routable(
                            &sonic_rs::from_str::<Vec<AmView<'_>>>(black_box(body))
                                .expect("parses"),
                        )
                    };
                    black_box(n)
                })
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1)).sample_size(20);
    targets = bench
}
criterion_main!(benches);
