//! Positions as the editor counts them: a byte offset of a document to and from an LSP
//! `line:character`, in UTF-16 code units (the protocol's default) or UTF-8 bytes (when the
//! editor offers them).
//!
//! Owns: the one conversion every answer uses. Never: a position outside the text (a
//! position past a line's end is that line's end; past the last line, the text's end).

use lsp_types::{Position, Range};

/// How the editor counts characters in a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// UTF-16 code units: every editor understands them.
    Utf16,
    /// UTF-8 bytes: cheaper, when the editor says it can.
    Utf8,
}

/// Where each line of a text starts, for converting offsets.
#[derive(Debug)]
pub(crate) struct LineIndex {
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex {
            starts,
            len: text.len(),
        }
    }

    /// The LSP position of a byte offset (clamped to the text, and back to a character
    /// boundary).
    pub(crate) fn position(&self, text: &str, offset: usize, enc: Encoding) -> Position {
        let mut offset = offset.min(self.len);
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.starts[line];
        let prefix = text.get(start..offset).unwrap_or("");
        let character = match enc {
            Encoding::Utf8 => prefix.len(),
            Encoding::Utf16 => prefix.chars().map(char::len_utf16).sum(),
        };
        Position {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            character: u32::try_from(character).unwrap_or(u32::MAX),
        }
    }

    /// The byte offset of an LSP position.
    pub(crate) fn offset(&self, text: &str, pos: Position, enc: Encoding) -> usize {
        let Some(&start) = self.starts.get(pos.line as usize) else {
            return self.len;
        };
        let end = self
            .starts
            .get(pos.line as usize + 1)
            .map_or(self.len, |&e| e);
        let line = text.get(start..end).unwrap_or("");
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let want = pos.character as usize;
        let mut counted = 0;
        for (i, c) in line.char_indices() {
            if counted >= want {
                return start + i;
            }
            counted += match enc {
                Encoding::Utf8 => c.len_utf8(),
                Encoding::Utf16 => c.len_utf16(),
            };
        }
        start + line.len()
    }

    /// The LSP range of a byte range.
    pub(crate) fn range(&self, text: &str, start: usize, end: usize, enc: Encoding) -> Range {
        Range {
            start: self.position(text, start, enc),
            end: self.position(text, end.max(start), enc),
        }
    }
}

#[cfg(test)]
#[path = "text_test.rs"]
mod tests;
