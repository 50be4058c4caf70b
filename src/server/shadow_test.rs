use super::*;

const TARGETS: &str = "target pager { url = \"https://example.test/p\" }\ntarget chat { url = \"https://example.test/c\" }\n";

fn shadow_of(name: &str, rules: &str) -> (Shadow, PathBuf) {
    let dir = std::env::temp_dir().join(format!("switchyard-shadow-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(std::fs::create_dir_all(&dir).is_ok());
    assert!(std::fs::write(dir.join("r.rules"), format!("{TARGETS}{rules}")).is_ok());
    let shadow = Shadow::load(dir.clone()).unwrap_or_else(|e| panic!("{e}"));
    (shadow, dir)
}

fn live() -> RuleSet {
    RuleSet::from_files([(
        "r.rules",
        format!("{TARGETS}rule \"db\" when team == \"db\" -> post pager\nrule \"web\" when team == \"web\" -> post chat\n"),
    )])
    .unwrap_or_else(|e| panic!("{e}"))
}

fn alert(team: &str, id: &str) -> Alert {
    Alert::new(serde_json::json!({"team": team, "alert_id": id}))
}

#[test]
fn disagreements_are_counted_by_rule_and_the_agreements_are_not() {
    let (shadow, dir) = shadow_of(
        "count",
        "rule \"db\" when team == \"db\" -> post chat\nrule \"web\" when team == \"web\" -> post chat\n",
    );
    let alerts: Vec<Alert> = (0..5)
        .map(|i| alert(if i % 2 == 0 { "db" } else { "web" }, &format!("a{i}")))
        .collect();
    shadow.observe(&live(), &alerts);
    let v = shadow.to_json();
    assert_eq!(v["alerts"], 5);
    assert_eq!(v["disagreements"], 3, "{v:#}");
    assert_eq!(shadow.alerts_total.get(), 5);
    // The same rule fires under both and posts elsewhere: that rule is blamed.
    assert_eq!(
        v["by_rule"],
        serde_json::json!([{"rule": "db", "disagreements": 3}])
    );
    let first = &v["recent"][0];
    assert_eq!(first["live"], "pager");
    assert_eq!(first["shadow"], "chat");
    assert_eq!(
        shadow
            .disagreements_total
            .get_or_create(&RuleLabel {
                rule: String::from("db")
            })
            .get(),
        3
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_recent_list_is_bounded_and_a_broken_shadow_decides_nothing() {
    let (shadow, dir) = shadow_of("bounded", "rule \"all\" when team == \"db\" -> post chat\n");
    let alerts: Vec<Alert> = (0..MAX_RECENT + 50)
        .map(|i| alert("db", &format!("a{i}")))
        .collect();
    shadow.observe(&live(), &alerts);
    let v = shadow.to_json();
    assert_eq!(v["recent"].as_array().map(Vec::len), Some(MAX_RECENT));
    assert_eq!(v["disagreements"], MAX_RECENT + 50);
    // Newest first.
    assert_eq!(v["recent"][0]["alert_id"], serde_json::Value::Null);

    assert!(std::fs::write(dir.join("r.rules"), "when x == -> post nowhere").is_ok());
    shadow.reload_now();
    let v = shadow.to_json();
    assert!(v["rejected_reload"].is_array(), "{v:#}");
    assert!(v["rules"].is_object(), "the last good shadow set stays");
    let _ = std::fs::remove_dir_all(&dir);

    let broken =
        std::env::temp_dir().join(format!("switchyard-shadow-broken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&broken);
    assert!(std::fs::create_dir_all(&broken).is_ok());
    assert!(std::fs::write(broken.join("r.rules"), "when -> post").is_ok());
    let none = Shadow::load(broken.clone()).unwrap_or_else(|e| panic!("{e}"));
    none.observe(&live(), &alerts);
    let v = none.to_json();
    assert_eq!(v["alerts"], 0);
    assert!(v["rules"].is_null());
    assert!(v["rejected_reload"].is_array());
    let _ = std::fs::remove_dir_all(&broken);
    let missing = Shadow::load(broken.join("nope")).err().unwrap_or_default();
    assert!(missing.starts_with("shadow_rules:"), "{missing}");
}
