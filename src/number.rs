//! The one definition of "a string that holds a decimal number", shared by the checker
//! (to suggest dropping quotes) and the engine (to coerce field values).

/// A number as the engine compares it: exact for integers, `f64` otherwise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Numeric {
    pub(crate) float: f64,
    /// Set when the value is an integer that fits, so large integers compare exactly.
    pub(crate) int: Option<i128>,
}

impl Numeric {
    pub(crate) fn from_json(n: &serde_json::Number) -> Option<Numeric> {
        let int = n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from));
        Some(Numeric {
            float: n.as_f64()?,
            int,
        })
    }

    pub(crate) fn cmp(&self, other: &Numeric) -> Option<std::cmp::Ordering> {
        match (self.int, other.int) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => self.float.partial_cmp(&other.float),
        }
    }
}

/// Parses `"95"`, `"-3"`, `"97.39"`, `"1e3"`: JSON number syntax, nothing around it. Text
/// such as `"inf"`, `"NaN"`, `" 95"` or `"0x10"` is not a number.
pub(crate) fn parse_number(s: &str) -> Option<Numeric> {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i == int_start {
        return None;
    }
    let mut integral = true;
    if b.get(i) == Some(&b'.') {
        integral = false;
        i += 1;
        let frac = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == frac {
            return None;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        integral = false;
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    let float: f64 = s.parse().ok()?;
    if !float.is_finite() {
        return None;
    }
    let int = if integral {
        s.parse::<i128>().ok()
    } else {
        None
    };
    Some(Numeric { float, int })
}

#[cfg(test)]
#[path = "number_test.rs"]
mod tests;
