//! Property: the pre-scan, which walks bytes, answers exactly as a walk over characters
//! (its first form, kept here as the reference) on text full of multi-byte characters,
//! escapes, quotes, slashes, comments and brackets: the same verdict, the same position.

use proptest::prelude::*;

use super::{MAX_BRACKET_DEPTH, prescan, too_deep, unclosed};
use crate::diagnostic::{Diagnostic, FileId};

/// The pre-scan as it was written first, character by character (its diagnostics are the
/// real ones: only the walk is the reference's own).
fn by_chars(text: &str, file: FileId) -> Result<(), Box<Diagnostic>> {
    enum State {
        Code,
        Comment,
        Str(usize),
        Regex(usize),
    }
    let mut state = State::Code;
    let mut depth: usize = 0;
    let mut chars = text.char_indices().peekable();
    let mut prev = ' ';
    while let Some((i, c)) = chars.next() {
        let before = std::mem::replace(&mut prev, c);
        match state {
            State::Code => match c {
                '#' => state = State::Comment,
                '"' => state = State::Str(i),
                '/' if before.is_ascii_alphanumeric() || before == '_' => {}
                '/' => state = State::Regex(i),
                '(' | '[' | '{' => {
                    depth += 1;
                    if depth > MAX_BRACKET_DEPTH {
                        return Err(Box::new(too_deep(file, i)));
                    }
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
            State::Comment => {
                if c == '\n' {
                    state = State::Code;
                }
            }
            State::Str(start) | State::Regex(start) => {
                let close = if matches!(state, State::Str(_)) {
                    '"'
                } else {
                    '/'
                };
                if c == '\\' {
                    if chars.peek().is_some_and(|&(_, n)| n != '\n') {
                        chars.next();
                    }
                } else if c == close {
                    state = State::Code;
                } else if c == '\n' || c == '\r' {
                    return Err(Box::new(unclosed(
                        matches!(state, State::Str(_)),
                        file,
                        start,
                        i,
                    )));
                }
            }
        }
    }
    match state {
        State::Str(start) => Err(Box::new(unclosed(true, file, start, text.len()))),
        State::Regex(start) => Err(Box::new(unclosed(false, file, start, text.len()))),
        _ => Ok(()),
    }
}

/// Text drawn from the characters the pre-scan looks at, and multi-byte ones beside them.
fn text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a", "Z", "9", "_", " ", "é", "Ü", "€", "𝄞", "/", "\"", "\\", "\n", "\r", "#", "(", ")",
        "[", "]", "{", "}", "==", "x/y", "é/", "\\é", "\\\n",
    ]);
    prop::collection::vec(pieces, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_byte_prescan_answers_as_the_character_walk(t in text()) {
        let file = FileId(0);
        prop_assert_eq!(format!("{:?}", prescan(&t, file)), format!("{:?}", by_chars(&t, file)));
    }
}

#[test]
fn the_byte_prescan_answers_as_the_character_walk_on_deep_brackets() {
    let file = FileId(0);
    for text in [
        "(".repeat(MAX_BRACKET_DEPTH),
        "(".repeat(MAX_BRACKET_DEPTH + 1),
        format!("é{}", "[".repeat(MAX_BRACKET_DEPTH + 1)),
    ] {
        assert_eq!(
            format!("{:?}", prescan(&text, file)),
            format!("{:?}", by_chars(&text, file))
        );
    }
}
