//! Arbitrary bodies through every sender's adapter, as the server receives them (JSON, or
//! a form), then through the example rules. Invariants: no panic; adapting at one moment is
//! deterministic (an alert carries when it was received, so two readings of the clock
//! differ: found by this target when alerts began to carry it);
//! every alert of an explicit sender has that `@source`; detection agrees with adapting
//! with the detected source; every alert evaluates and explains the same way twice.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use switchyard::{RuleSet, Source, adapt_json_at, detect_source, form_to_json};

/// The moment every body is received at: the test clock's start (a Monday, 00:00 UTC).
const AT: jiff::Timestamp = jiff::Timestamp::constant(1_767_571_200, 0);

fn adapt_json(
    source: Option<Source>,
    body: serde_json::Value,
) -> Result<Vec<switchyard::Alert>, switchyard::AdaptError> {
    adapt_json_at(source, body, AT)
}

fn rules() -> &'static RuleSet {
    static RULES: OnceLock<RuleSet> = OnceLock::new();
    RULES.get_or_init(|| {
        RuleSet::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../rules"))
            .expect("the example rules load")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let value = if selector & 1 == 0 {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(v) => v,
            Err(_) => return,
        }
    } else {
        form_to_json(body)
    };
    let explicit = Source::ALL
        .get(usize::from(selector >> 1) % (Source::ALL.len() + 1))
        .copied();
    let first = adapt_json(explicit, value.clone());
    let second = adapt_json(explicit, value.clone());
    assert_eq!(first, second, "adapting is deterministic");
    if explicit.is_none() {
        let detected = detect_source(&value);
        assert_eq!(
            adapt_json(Some(detected), value.clone()),
            first,
            "detection agrees with the detected source"
        );
    }
    let Ok(alerts) = first else { return };
    for alert in &alerts {
        if let Some(s) = explicit {
            assert_eq!(alert.source(), s, "an explicit sender sets @source");
        }
        let d = rules().evaluate(alert).summary();
        assert_eq!(
            rules().evaluate(alert).summary(),
            d,
            "evaluation is deterministic"
        );
        assert_eq!(
            rules().explain(alert).decision,
            d,
            "explain agrees with evaluate"
        );
    }
});
