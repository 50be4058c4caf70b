//! The formatter (`switchyard fmt`): a rules file in canonical layout, its comments kept.
//!
//! Owns: the layout between items (one blank line between items; comment lines kept where
//! they are, runs of blank lines made one; a comment at the end of an item's last line kept
//! there) and which items are printed again: an item with a comment inside it is kept as
//! written (only its lines' trailing spaces removed), since the tree holds no comments;
//! every other item is printed canonically (`print.rs`). Never: changes what a file means
//! (its tests check that the result parses to the same tree), or formats a file that does
//! not parse.

use super::ast::File;
use super::print;
use crate::diagnostic::{Diagnostic, FileId};

/// `text` formatted; the parse errors when it does not parse (`file` names it in them).
pub(crate) fn format(text: &str, file: FileId) -> Result<String, Vec<Diagnostic>> {
    let parsed = super::parse(text, file)?;
    Ok(layout(text, &parsed))
}

/// The items of `parsed` (parsed from `text`) with what is between them.
fn layout(text: &str, parsed: &File) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0usize;
    for (i, (item, span)) in parsed.items.iter().zip(&parsed.spans).enumerate() {
        let (start, end) = (span.start as usize, span.end as usize);
        let gap = text.get(at..start).unwrap_or("");
        between(&mut out, gap, i == 0, false);
        let written = text.get(start..end).unwrap_or("");
        if written.contains('#') {
            // A comment inside the item (or a `#` in a string: kept as written all the same).
            for (n, line) in written.lines().enumerate() {
                if n > 0 {
                    out.push('\n');
                }
                out.push_str(line.trim_end());
            }
        } else {
            let mut printed = String::new();
            print::item(&mut printed, item);
            out.push_str(printed.trim_end_matches('\n'));
        }
        at = end;
    }
    between(
        &mut out,
        text.get(at..).unwrap_or(""),
        parsed.items.is_empty(),
        true,
    );
    out
}

/// What lies between two items (or before the first, or after the last): `gap` holds
/// only whitespace and comments. `out` ends with the last item's last line, unended.
fn between(out: &mut String, gap: &str, first: bool, last: bool) {
    let mut lines = gap.split('\n');
    if !first {
        // The rest of the previous item's last line: a comment there stays there.
        let tail = lines.next().unwrap_or("").trim();
        if !tail.is_empty() {
            out.push_str("  ");
            out.push_str(tail);
        }
        out.push('\n');
    }
    // Comment lines, with whether a blank line came before each; and whether one came
    // after the last.
    let mut comments: Vec<(bool, &str)> = Vec::new();
    let mut blank = false;
    let rest: Vec<&str> = lines.collect();
    for (n, line) in rest.iter().enumerate() {
        let line = line.trim();
        // The last piece of the gap is the start of the next item's line: not a line.
        if n + 1 == rest.len() && !last && line.is_empty() {
            break;
        }
        if line.is_empty() {
            blank = true;
        } else {
            comments.push((blank, line));
            blank = false;
        }
    }
    for (n, (blank_before, line)) in comments.iter().enumerate() {
        // One blank line after an item before its comments (unless the comment was on the
        // next line, as a note on that item); between comments, as written.
        if (n == 0 && !first && *blank_before) || (n > 0 && *blank_before) {
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    if last {
        return;
    }
    // Before the next item: one blank line after an item, or after comments when one was
    // there.
    let after_item = comments.is_empty() && !first;
    if after_item || (!comments.is_empty() && blank) {
        out.push('\n');
    }
}

#[cfg(test)]
#[path = "format_test.rs"]
mod tests;
