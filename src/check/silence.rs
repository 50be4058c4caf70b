//! A silence's condition, checked as a rule's is: the text is wrapped into a rule
//! (`when <condition>`, then `-> drop` on a line of its own, so a comment at the
//! condition's end cannot swallow it), parsed and checked, and every diagnostic is moved
//! back onto the condition as it was written (the API's `silence` file, or the string of a
//! test's `silence` statement).
//!
//! Owns: refusing a condition that is more than one condition (E0407). Never: evaluates.

use std::sync::Arc;

use super::{Checked, Unparsed};
use crate::diagnostic::{Diagnostic, FileId, SourceMap, Span, codes};

/// The longest condition a silence may have, in bytes.
pub const MAX_SILENCE_CONDITION: usize = 16 * 1024;

const BEFORE: &str = "when ";
const AFTER: &str = "\n-> drop\n";

/// Where a condition is written: `file`, from `offset`, and, for a condition decoded from
/// a string with escapes, where each of its bytes is in the raw text (`raw[i]`: the byte
/// offset, from `offset`, of decoded byte `i`; one more entry for the end).
pub(crate) struct Place {
    pub(crate) file: FileId,
    pub(crate) offset: usize,
    pub(crate) raw: Option<Vec<usize>>,
}

impl Place {
    /// The condition is the file's text from `offset`, as written.
    pub(crate) fn at(file: FileId, offset: usize) -> Place {
        Place {
            file,
            offset,
            raw: None,
        }
    }

    /// Where decoded byte `i` of the condition is in the file.
    fn byte(&self, i: usize) -> usize {
        match &self.raw {
            Some(raw) => self.offset + raw.get(i).or(raw.last()).copied().unwrap_or(0),
            None => self.offset + i,
        }
    }

    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file, self.byte(start), self.byte(end))
    }
}

/// Checks `condition`, written at `place`, where every diagnostic points. On success,
/// what `then` makes of the checked one-rule set (`when <condition> -> drop`) and its
/// sources: the checked set borrows the parsed condition, which lives only in here.
pub(crate) fn check_silence<T>(
    condition: &str,
    place: &Place,
    then: impl FnOnce(Checked<'_>, Arc<SourceMap>) -> T,
) -> Result<T, Vec<Diagnostic>> {
    let (file, offset) = (place.file, place.offset);
    let whole = place.span(0, condition.len());
    if condition.len() > MAX_SILENCE_CONDITION {
        return Err(vec![
            Diagnostic::error(
                codes::BAD_SILENCE,
                format!(
                    "a silence's condition is {} bytes; at most {MAX_SILENCE_CONDITION} are allowed",
                    condition.len()
                ),
            )
            .with_primary(Span::new(file, offset, offset), "too long")
            .with_help("a condition that long belongs in a rule (`drop`), reviewed in a file"),
        ]);
    }
    if condition.trim().is_empty() {
        return Err(vec![
            Diagnostic::error(codes::BAD_SILENCE, "a silence needs a condition")
                .with_primary(whole, "empty")
                .with_help("match what to silence: `labels.team == \"db\"`"),
        ]);
    }
    let text = format!("{BEFORE}{condition}{AFTER}");
    let mut sources = SourceMap::default();
    let id = sources.add("silence", text.clone());
    let len = condition.len();
    let rebase = |ds: Vec<Diagnostic>| -> Vec<Diagnostic> {
        ds.into_iter()
            .map(|d| {
                d.rebased(file, |at| {
                    place.byte(at.saturating_sub(BEFORE.len()).min(len))
                })
            })
            .collect()
    };
    let parsed = crate::syntax::parse(&text, id);
    // More than one condition (an action, a second rule): the wrapper's own words would
    // confuse, so say what a silence is, where the condition stops.
    if let Some(stop) = crate::syntax::condition_ends_early(condition) {
        let inside: Vec<Diagnostic> = match parsed {
            Err(ds) => rebase(ds)
                .into_iter()
                .filter(|d| {
                    d.primary_span()
                        .is_some_and(|s| (s.start as usize) < place.byte(len))
                })
                .collect(),
            Ok(_) => Vec::new(),
        };
        if !inside.is_empty() {
            return Err(inside);
        }
        return Err(vec![
            Diagnostic::error(
                codes::BAD_SILENCE,
                "a silence's condition must be one condition, without actions or declarations",
            )
            .with_primary(place.span(stop.min(len), len), "the condition ends before this")
            .with_help(
                "write only what follows `when`: `labels.team == \"db\" and labels.env == \"prod\"`",
            ),
        ]);
    }
    let ast = [parsed.map_err(rebase)?];
    let no_env = |_: &str| None;
    let unparsed = Unparsed {
        targets: &[],
        windows: &[],
        any_file_failed: false,
    };
    let checked = super::check(&ast, unparsed, &sources, &no_env, true).map_err(rebase)?;
    let one_rule = checked.rules.len() == 1
        && checked
            .rules
            .iter()
            .all(|r| r.posts.is_empty() && !r.memory.any())
        && checked.targets.is_empty()
        && checked.windows.is_empty()
        && checked.tests.is_empty();
    if !one_rule {
        return Err(vec![
            Diagnostic::error(
                codes::BAD_SILENCE,
                "a silence's condition must be one condition, without actions or declarations",
            )
            .with_primary(whole, "more than a condition")
            .with_help(
                "write only what follows `when`: `labels.team == \"db\" and labels.env == \"prod\"`",
            ),
        ]);
    }
    Ok(then(checked, Arc::new(sources)))
}

/// Where a string literal's decoded text is in the file: the [`Place`] of a condition
/// written as `"..."` (a test's `silence` statement), escapes included. `raw` is the
/// literal as written, quotes included, starting at `start` in `file`.
pub(crate) fn place_of_string(file: FileId, start: usize, raw: &str) -> Place {
    let inner = raw.strip_prefix('"').unwrap_or(raw);
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut map = Vec::with_capacity(inner.len() + 1);
    let mut chars = inner.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let decoded_len = if c == '\\' {
            match chars.next() {
                Some((_, 'u')) => {
                    let hex: String = (0..4)
                        .filter_map(|_| chars.next().map(|(_, h)| h))
                        .collect();
                    let unit = u32::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
                    // A surrogate pair's second half is its own escape; together they are
                    // one four-byte character.
                    if (0xD800..0xDC00).contains(&unit) {
                        for _ in 0..6 {
                            chars.next();
                        }
                        4
                    } else {
                        char::from_u32(unit).map_or(3, char::len_utf8)
                    }
                }
                Some(_) => 1,
                None => 0,
            }
        } else {
            c.len_utf8()
        };
        for _ in 0..decoded_len {
            map.push(at + 1);
        }
    }
    map.push(inner.len() + 1);
    Place {
        file,
        offset: start,
        raw: Some(map),
    }
}
