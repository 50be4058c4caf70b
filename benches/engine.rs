//! The two engine workloads of `benches/load/harness/BENCH-WORKLOADS.md`, with the hand-written baseline
//! measured in the same run:
//!
//! 1. one rule, `alertState == "ALARM" and metricName == "CPUUtilization"`, against the
//!    300-byte Alibaba sample alert (eval only, and including parsing the alert);
//! 2. rule sets of N = 10 .. 10,000 rules, rule i being
//!    `metricName == "metric_i" and alertState == "ALARM" and curValue > i%100`, over a
//!    stream of 512 alerts; one iteration is one alert, every rule evaluated.
//!
//! Run: `cargo bench --bench engine`. Results and ratios: `docs/benchmarks.md`.
//!
//! The bench runs on mimalloc, the allocator the `switchyard` binary ships with, so that
//! its figures are the server's and `switchyard check`'s. Loading rules allocates a lot;
//! with the system allocator (glibc) it takes about 25% longer, also in docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;
use switchyard::{Alert, RuleSet};

#[path = "support/rules.rs"]
mod rules;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SAMPLE: &str = r#"{"userId":"12345","alertName":"putNewAlarm_group_a37cd898-ea6b-4b7b-a8a8-de017a8327f6","timestamp":"1508136760","alertState":"ALARM","dimensions":[{"userId":"12345","instanceId":"i-12345"}],"expression":"[{\"expression\":\"$Average>90\",\"level\":4,\"times\":2}]","curValue":"95","metricName":"CPUUtilization","metricProject":"acs_ecs_dashboard"}"#;

const TARGET: &str = "target alarm_url { url = \"https://example.test/alarm\" }\n";

fn one_rule() -> RuleSet {
    RuleSet::from_files([(
        "one.rules",
        format!("{TARGET}when alertState == \"ALARM\" and metricName == \"CPUUtilization\" -> post alarm_url\n"),
    )])
    .expect("the one-rule set loads")
}

/// The floor: the same test written by hand on a `serde_json::Value`.
fn hand_one(v: &Value) -> bool {
    v.get("alertState").and_then(Value::as_str) == Some("ALARM")
        && v.get("metricName").and_then(Value::as_str) == Some("CPUUtilization")
}

fn rule_set_text(n: usize) -> String {
    rules_text(n, |i| format!("metricName == \"metric_{i}\""))
}

/// The same rules written so that the index cannot use `metricName`
/// (`not (metricName != ...)` means `metricName == ...`, but the index does not look
/// inside `not`): every rule is tried, as in an engine without an index.
fn unindexable_text(n: usize) -> String {
    rules_text(n, |i| format!("not (metricName != \"metric_{i}\")"))
}

/// Rule i is `<name test i> and alertState == "ALARM" and curValue > i%100`.
fn rules_text(n: usize, name_test: impl Fn(usize) -> String) -> String {
    let mut s = String::from(TARGET);
    for i in 0..n {
        s.push_str(&format!(
            "when {} and alertState == \"ALARM\" and curValue > {} -> post alarm_url\n",
            name_test(i),
            i % 100
        ));
    }
    s
}

/// A deterministic stream of 512 alerts shaped like the sample.
fn stream(n: usize) -> Vec<Value> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..512)
        .map(|_| {
            let mut v: Value = serde_json::from_str(SAMPLE).expect("sample parses");
            v["metricName"] = Value::String(format!("metric_{}", next() % n as u64));
            v["alertState"] =
                Value::String(if next() % 4 == 0 { "OK" } else { "ALARM" }.to_owned());
            v["curValue"] = Value::String((next() % 100).to_string());
            v
        })
        .collect()
}

/// The floor for rule sets: every rule evaluated by hand, all-match, in order, each rule
/// reading its own fields as an engine that scans rules does (as the peers' floor in
/// `benches/load/harness/BENCH-WORKLOADS.md` does).
fn hand_set(rules: &[(String, f64)], v: &Value, fired: &mut Vec<usize>) {
    fired.clear();
    for (i, (name, threshold)) in rules.iter().enumerate() {
        if v.get("metricName").and_then(Value::as_str) == Some(name.as_str())
            && v.get("alertState").and_then(Value::as_str) == Some("ALARM")
            && v.get("curValue")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<f64>().ok())
                .is_some_and(|c| c > *threshold)
        {
            fired.push(i);
        }
    }
}

fn bench_one_rule(c: &mut Criterion) {
    let set = one_rule();
    let value: Value = serde_json::from_str(SAMPLE).expect("sample parses");
    let alert = Alert::new(value.clone());
    assert!(hand_one(&value) && !set.evaluate(&alert).unrouted());
    let mut g = c.benchmark_group("one_rule");
    g.bench_function("hand_written/eval", |b| {
        b.iter(|| hand_one(black_box(&value)))
    });
    g.bench_function("switchyard/eval", |b| {
        b.iter(|| set.evaluate(black_box(&alert)).unrouted())
    });
    g.bench_function("hand_written/parse+eval", |b| {
        b.iter(|| hand_one(&serde_json::from_str::<Value>(black_box(SAMPLE)).expect("parses")))
    });
    g.bench_function("switchyard/parse+eval", |b| {
        b.iter(|| {
            let alert = Alert::new(serde_json::from_str(black_box(SAMPLE)).expect("parses"));
            set.evaluate(&alert).unrouted()
        })
    });
    g.finish();
}

fn bench_rule_sets(c: &mut Criterion) {
    let mut g = c.benchmark_group("rule_sets");
    g.throughput(Throughput::Elements(1));
    for n in [10usize, 100, 1_000, 10_000] {
        let set =
            RuleSet::from_files([("set.rules", rule_set_text(n))]).expect("the rule set loads");
        let unindexable =
            RuleSet::from_files([("set.rules", unindexable_text(n))]).expect("the rule set loads");
        assert_eq!(set.indexed_rule_count(), n);
        let hand: Vec<(String, f64)> = (0..n)
            .map(|i| (format!("metric_{i}"), (i % 100) as f64))
            .collect();
        let values = stream(n);
        let alerts: Vec<Alert> = values.iter().cloned().map(Alert::new).collect();
        // Every way of evaluating agrees with the hand-written rules on every alert.
        let mut fired = Vec::new();
        for (v, a) in values.iter().zip(&alerts) {
            hand_set(&hand, v, &mut fired);
            assert_eq!(fired.len(), set.evaluate(a).rule_ids().count());
            assert_eq!(fired.len(), set.evaluate_unindexed(a).rule_ids().count());
            assert_eq!(fired.len(), unindexable.evaluate(a).rule_ids().count());
        }
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("hand_written", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % values.len();
                hand_set(&hand, black_box(&values[k]), &mut fired);
                fired.len()
            })
        });
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("switchyard", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % alerts.len();
                set.evaluate(black_box(&alerts[k])).unrouted()
            })
        });
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("switchyard_unindexable", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % alerts.len();
                unindexable.evaluate(black_box(&alerts[k])).unrouted()
            })
        });
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("switchyard_plain_scan", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % alerts.len();
                set.evaluate_unindexed(black_box(&alerts[k])).unrouted()
            })
        });
    }
    g.finish();
}

fn bench_compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    for n in [1_000usize, 10_000] {
        let text = rule_set_text(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("load", n), &text, |b, text| {
            b.iter(|| {
                RuleSet::from_files([("set.rules", text.as_str())])
                    .expect("loads")
                    .rule_count()
            })
        });
    }
    // The load harness's Alertmanager-style routes: anchored regexes in every rule.
    let routes = rules::harness_routes(10_000);
    g.throughput(Throughput::Elements(10_000));
    g.bench_with_input(
        BenchmarkId::new("load_harness_routes", 10_000),
        &routes,
        |b, text| {
            b.iter(|| {
                RuleSet::from_files([("routes.rules", text.as_str())])
                    .expect("loads")
                    .rule_count()
            })
        },
    );
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(30);
    targets = bench_one_rule, bench_rule_sets, bench_compile
}
criterion_main!(benches);
