//! Unit tests of `number.rs`.

use super::parse_number;

#[test]
fn only_json_numbers_are_numbers() {
    for ok in [
        "95",
        "-3",
        "97.39",
        "1e3",
        "0",
        "-0.5",
        "12345678901234567890",
    ] {
        assert!(parse_number(ok).is_some(), "{ok}");
    }
    for bad in [
        "", "-", "inf", "NaN", " 95", "95 ", "0x10", "1.", ".5", "1e", "+1", "1e999", "95%",
    ] {
        assert!(parse_number(bad).is_none(), "{bad}");
    }
    assert_eq!(
        parse_number("12345678901234567890").unwrap().int,
        Some(12_345_678_901_234_567_890)
    );
}
