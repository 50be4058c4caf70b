//! Heap bytes per compiled rule, measured with a counting allocator (dhat). Prints figures;
//! no timing is measured here, so the allocator's cost does not matter.
//!
//! Run: `cargo bench --bench heap`.

use switchyard::RuleSet;

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
}
