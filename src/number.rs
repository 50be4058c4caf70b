//! The one definition of "a string that holds a decimal number", shared by the checker
//! (to suggest dropping quotes) and the engine (to coerce field values).

/// A number as the engine compares it: exact for integers, `f64` otherwise.
///
/// 32 bytes: the integer is kept as two 64-bit halves, because an `i128` field would align
/// the struct to 16 bytes and make it 48 (every compiled test that holds a number carries
/// one, so that was a fifth of a rule's heap).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Numeric {
    pub(crate) float: f64,
    /// Set when the value is an integer that fits an `i128`, so large integers compare
    /// exactly.
    int: Option<Int>,
}

/// An `i128` at 8-byte alignment.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Int {
    hi: i64,
    lo: u64,
}

impl Int {
    fn new(v: i128) -> Int {
        Int {
            hi: (v >> 64) as i64,
            lo: v as u64,
        }
    }

    fn get(self) -> i128 {
        (i128::from(self.hi) << 64) | i128::from(self.lo)
    }
}

impl Numeric {
    /// A number without an exact integer reading (a fraction, or NaN for "no number").
    pub(crate) fn float(float: f64) -> Numeric {
        Numeric { float, int: None }
    }

    /// The exact integer, when the number is one that fits an `i128`.
    #[cfg(test)]
    pub(crate) fn int(&self) -> Option<i128> {
        self.int.map(Int::get)
    }

    pub(crate) fn from_json(n: &serde_json::Number) -> Option<Numeric> {
        let int = n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from));
        Some(Numeric {
            float: n.as_f64()?,
            int: int.map(Int::new),
        })
    }

    pub(crate) fn cmp(&self, other: &Numeric) -> Option<std::cmp::Ordering> {
        match (self.int, other.int) {
            (Some(a), Some(b)) => Some(a.get().cmp(&b.get())),
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
    Some(Numeric {
        float,
        int: int.map(Int::new),
    })
}

#[cfg(test)]
#[path = "number_test.rs"]
mod tests;
