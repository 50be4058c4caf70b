//! Heap bytes per compiled rule, measured with a counting allocator (dhat). Prints figures;
//! no timing is measured here, so the allocator's cost does not matter.
//!
//! Run: `cargo bench --bench heap`.

use switchyard::RuleSet;

#[path = "support/rules.rs"]
mod rules;
use rules::harness_routes;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    println!("rules\theap bytes (rule set)\tper rule\tsource bytes per rule");
    for n in [10usize, 1_000, 10_000] {
        let mut text = String::from("target alarm_url { url = \"https://example.test/alarm\" }\n");
        for i in 0..n {
            text.push_str(&format!("when metricName == \"metric_{i}\" and alertState == \"ALARM\" and curValue > {} -> post alarm_url\n", i % 100));
        }
        let source_bytes = text.len();
        let before = dhat::HeapStats::get().curr_bytes;
        let set = RuleSet::from_files([("set.rules", text)]).expect("loads");
        let after = dhat::HeapStats::get().curr_bytes;
        let held = after.saturating_sub(before);
        println!("{n}\t{held}\t{}\t{}", held / n, source_bytes / n);
        drop(set);
    }
    // The load harness's Alertmanager-style routes (benches/load/gen_rules.py): anchored
    // regexes, most of them repeated in every fourth rule, one distinct per rule in four.
    println!(
        "\nharness routes\theap bytes (rule set)\tper rule\tpeak bytes while loading\tload ms"
    );
    for n in [1_000usize, 10_000] {
        let text = harness_routes(n);
        let before = dhat::HeapStats::get();
        let started = std::time::Instant::now();
        let set = RuleSet::from_files([("routes.rules", text)]).expect("loads");
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let after = dhat::HeapStats::get();
        let held = after.curr_bytes.saturating_sub(before.curr_bytes);
        let peak = after.max_bytes.saturating_sub(before.curr_bytes);
        println!(
            "{n}\t{held}\t{}\t{peak}\t{ms:.0} (under the counting allocator)",
            held / n
        );
        drop(set);
    }
}
