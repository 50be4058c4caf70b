use super::*;
use serde_json::json;

#[test]
fn now_in_a_test_alert_is_the_step_time_in_utc() {
    let start = crate::check::TEST_START_MS;
    let v = json!({"startsAt": "${now-5m}", "endsAt": "${now}", "x": ["at ${now+1h}!", 3]});
    assert_eq!(
        at_clock(&v, start).expect("valid"),
        json!({"startsAt": "2026-01-04T23:55:00Z", "endsAt": "2026-01-05T00:00:00Z", "x": ["at 2026-01-05T01:00:00Z!", 3]})
    );
}

#[test]
fn a_wrong_now_is_named() {
    for bad in ["${now", "${now-5x}", "${now*2m}", "${nowish}", "${now-}"] {
        let e = at_clock(&serde_json::Value::String(bad.into()), 0).expect_err(bad);
        assert!(e.contains("is not"), "{bad}: {e}");
    }
}
