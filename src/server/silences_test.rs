use super::*;

/// Found by CI: the handler read the clock before the router did, so a silence made "from
/// now" started a millisecond after the moment its answer was shown at, and the CLI printed
/// `pending` for a silence already in force.
#[test]
fn a_new_silence_is_shown_as_it_was_when_stored_not_at_the_handlers_earlier_clock() {
    let stored = Silence {
        id: 1,
        condition: r#"labels.team == "db""#.into(),
        starts: 1_000_001,
        ends: 1_003_000,
        created_by: "ci".into(),
        comment: "upgrade".into(),
        created_at: 1_000_001,
        expired_at: None,
    };
    let answer = added(&stored);
    assert_eq!(answer["status"], "active", "{answer}");
    let later = Silence {
        starts: 2_000_000,
        ..stored
    };
    assert_eq!(added(&later)["status"], "pending");
}
