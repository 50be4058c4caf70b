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
        parse_number("12345678901234567890").unwrap().int(),
        Some(12_345_678_901_234_567_890)
    );
}

#[test]
fn integers_past_64_bits_still_compare_exactly_in_the_compact_form() {
    use std::cmp::Ordering;
    // 2^64 + 1 and 2^64 + 2 are one f64; the integer halves keep them apart.
    let a = parse_number("18446744073709551617").unwrap();
    let b = parse_number("18446744073709551618").unwrap();
    assert_eq!(a.float, b.float);
    assert_eq!(a.cmp(&b), Some(Ordering::Less));
    for v in [
        i128::MIN,
        i128::MIN + 1,
        -1,
        0,
        1,
        i128::from(u64::MAX),
        i128::MAX,
    ] {
        assert_eq!(parse_number(&v.to_string()).unwrap().int(), Some(v), "{v}");
    }
    assert_eq!(
        parse_number("-3").unwrap().cmp(&parse_number("2").unwrap()),
        Some(Ordering::Less)
    );
    assert!(std::mem::size_of::<super::Numeric>() <= 32);
}
