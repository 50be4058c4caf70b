//! Rule sets the benches share.

/// `n` routes as `benches/load/gen_rules.py` writes them.
pub(crate) fn harness_routes(n: usize) -> String {
    const SHAPES: [&str; 4] = [
        "labels.alertState =~ /^(?:ALERT|CRITICAL)$/ and labels.alertname == \"Rule_{i}\" and labels.metricName =~ /^(?:cpu_.*|memory_.*)$/",
        "labels.alertState == \"ALERT\" and labels.alertname == \"Rule_{i}\"",
        "labels.alertState != \"OK\" and labels.alertname =~ /^(?:Rule_{i}|RuleAlt_{i})$/ and labels.metricName =~ /^(?:cpu_.*)$/",
        "labels.alertState =~ /^(?:ALERT|WARN)$/ and labels.alertname == \"Rule_{i}\" and labels.metricName !~ /^(?:test_.*)$/",
    ];
    let mut text = String::new();
    for j in 0..10 {
        text.push_str(&format!(
            "target hook_{j} {{ url = \"http://127.0.0.1:19094/hook/{j}\" }}\n"
        ));
    }
    text.push_str("target hook_default { url = \"http://127.0.0.1:19094/hook/default\" }\n");
    for i in 0..n {
        let cond = SHAPES[i % 4].replace("{i}", &i.to_string());
        text.push_str(&format!("when {cond} -> post hook_{}, stop\n", i % 10));
    }
    text.push_str("when @source == \"prometheus\" -> post hook_default\n");
    text
}
