use lsp_types::Position;

use super::{Encoding, LineIndex};

fn pos(line: u32, character: u32) -> Position {
    Position { line, character }
}

#[test]
fn utf16_counts_code_units_and_utf8_counts_bytes() {
    let text = "ab\n\u{e9}\u{1F600}x\r\nlast";
    let idx = LineIndex::new(text);
    let x = text.find('x').unwrap();
    assert_eq!(idx.position(text, x, Encoding::Utf16), pos(1, 3));
    assert_eq!(idx.position(text, x, Encoding::Utf8), pos(1, 6));
    assert_eq!(idx.offset(text, pos(1, 3), Encoding::Utf16), x);
    assert_eq!(idx.offset(text, pos(1, 6), Encoding::Utf8), x);
    assert_eq!(idx.offset(text, pos(2, 4), Encoding::Utf16), text.len());
}

#[test]
fn positions_outside_the_text_are_clamped() {
    let text = "one\r\ntwo";
    let idx = LineIndex::new(text);
    // Past a line's end: the line's end, before its `\r\n`.
    assert_eq!(idx.offset(text, pos(0, 99), Encoding::Utf16), 3);
    // Past the last line: the text's end.
    assert_eq!(idx.offset(text, pos(9, 0), Encoding::Utf16), text.len());
    assert_eq!(idx.position(text, 999, Encoding::Utf16), pos(1, 3));
    // Inside a character: the character's start.
    let wide = "\u{1F600}";
    let idx = LineIndex::new(wide);
    assert_eq!(idx.position(wide, 2, Encoding::Utf16), pos(0, 0));
    assert_eq!(idx.offset(wide, pos(0, 1), Encoding::Utf16), wide.len());
}
