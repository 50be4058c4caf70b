//! Parsing: rules file text to a typed AST with spans, or diagnostics.
//!
//! Input is bounded before pest runs ([`prescan`]): size, nesting depth of brackets, and
//! strings or regexes left open on their line. pest is built without its native stack
//! probe (Cargo.toml says why), so the pre-scan's depth limit is what bounds the parse's
//! recursion: every text handed to pest passes [`prescan`] first, and `stack_test` proves
//! the deepest nesting it lets through fits in half the smallest stack a parse runs on. The
//! same bound gives a better message and keeps the lowering and every later stage shallow.
//!
//! Never: looks at names or types (`check/` does), or stops at a file's first syntax
//! error (each item is parsed on its own, so one run reports them all, up to a cap).

pub(crate) mod ast;
mod errors;
pub(crate) mod format;
mod lower;
mod parallel;
mod parser;
pub(crate) mod print;

use std::ops::Range;

use pest::Parser as _;

use crate::diagnostic::{Diagnostic, FileId, Span, codes};
pub(crate) use parallel::{PIECE_BYTES, STACK_BYTES, parse_files, threads_for};
use parser::{Rule, RulesParser};

/// The largest rules file accepted, in bytes.
pub(crate) const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// The deepest nesting of `(`, `[` and `{` accepted in a file.
pub(crate) const MAX_BRACKET_DEPTH: usize = 64;

/// The most syntax errors reported for one file: past a few dozen, the rest are likely
/// echoes of the first.
pub(crate) const MAX_SYNTAX_ERRORS: usize = 30;

/// Parses one rules file. Every syntax error is reported, one per item at most: after an
/// error, parsing resumes at the next line that starts an item (`when`, `rule`, `target`,
/// `window`, `test` at a line's start). Problems found while decoding tokens (escapes, number
/// ranges, `${...}`) are all reported.
pub(crate) fn parse(text: &str, file: FileId) -> Result<ast::File, Vec<Diagnostic>> {
    prescan(text, file).map_err(|d| vec![*d])?;
    if let Some(result) = parse_by_item(text, file) {
        return result;
    }
    let mut pairs =
        RulesParser::parse(Rule::file, text).map_err(|first| syntax_errors(text, file, first))?;
    let Some(top) = pairs.next() else {
        unreachable!("grammar: file matched")
    };
    let mut lw = lower::Lowerer::new(file);
    let ast = lw.file(top);
    if lw.diagnostics.is_empty() {
        Ok(ast)
    } else {
        Err(lw.diagnostics)
    }
}

/// Parses a file a few items at a time, each with its own small pest token queue: on a
/// file of 10,000 rules, one queue for the whole file outgrows the CPU caches and parsing
/// slows down per rule. Gives the same AST and spans as parsing the whole file (items are
/// separated by whitespace and comments only, and no rule looks behind an item's start),
/// and `None` as soon as an item does not parse, so that the whole-file parse reports the
/// error exactly as always.
fn parse_by_item(text: &str, file: FileId) -> Option<Result<ast::File, Vec<Diagnostic>>> {
    let (parsed, diagnostics) = parse_items(text, 0..text.len(), file)?;
    Some(if diagnostics.is_empty() {
        Ok(parsed)
    } else {
        Err(diagnostics)
    })
}

/// The items of `text[range]` parsed one by one, with spans in the whole text, and the
/// diagnostics of lowering them; `None` as soon as an item does not parse.
fn parse_items(
    text: &str,
    range: Range<usize>,
    file: FileId,
) -> Option<(ast::File, Vec<Diagnostic>)> {
    let mut lw = lower::Lowerer::new(file);
    let mut items = Vec::new();
    let mut pos = range.start;
    loop {
        let rest = text.get(pos..range.end)?;
        let pairs = RulesParser::parse(Rule::some_items, rest).ok()?;
        let mut end = 0;
        lw.offset = pos;
        for item in pairs.into_iter().next()?.into_inner() {
            if item.as_rule() == Rule::EOI {
                let spans = std::mem::take(&mut lw.item_spans);
                return Some((ast::File { items, spans }, lw.diagnostics));
            }
            end = item.as_span().end();
            lw.item(item, &mut items);
        }
        pos += end;
    }
}

/// Every syntax error of a file, from its first one: after each error, the text before
/// the next item's line is blanked out (newlines kept, so every position and line number
/// stays that of the file) and parsed again.
fn syntax_errors(text: &str, file: FileId, first: pest::error::Error<Rule>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut masked: Option<String> = None;
    let mut err = first;
    loop {
        let source = masked.as_deref().unwrap_or(text);
        let d = errors::syntax_error(&errors::detailed_error(source, err), source, file);
        let at = d.primary_span().map_or(text.len(), |s| s.start as usize);
        out.push(d);
        if out.len() >= MAX_SYNTAX_ERRORS {
            break;
        }
        let Some(resume) = parallel::next_item_line(text.as_bytes(), at) else {
            break;
        };
        let blanked = blank_before(text, resume);
        match RulesParser::parse(Rule::file, &blanked) {
            Ok(_) => break,
            Err(e) => {
                err = e;
                masked = Some(blanked);
            }
        }
    }
    out
}

/// `text` with every byte before `end` that is not a newline replaced by a space: the same
/// length and line structure, with nothing to parse before `end`.
fn blank_before(text: &str, end: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if i >= end {
            out.push_str(text.get(i..).unwrap_or_default());
            break;
        }
        if c == '\n' {
            out.push('\n');
        } else {
            out.extend(std::iter::repeat_n(' ', c.len_utf8()));
        }
    }
    out
}

/// Names a file that did not parse seems to declare (`target name` or `window name` at a
/// line's start, for `keyword` `target` or `window`), so that other files' `post name` or
/// `during name` is not reported as unknown as well.
pub(crate) fn declared_names(text: &str, keyword: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix(keyword)?.strip_prefix(' '))
        .filter_map(|rest| {
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// Bounds the input before pest sees it: size, bracket depth, and strings or regexes not
/// closed on their line (pest would only say "expected `\"`" at the end of the file).
fn prescan(text: &str, file: FileId) -> Result<(), Box<Diagnostic>> {
    if text.len() > MAX_FILE_BYTES {
        return Err(Box::new(
            Diagnostic::error(
                codes::BAD_FILE,
                format!(
                    "rules file is too large ({} bytes, the limit is {} MiB)",
                    text.len(),
                    MAX_FILE_BYTES >> 20
                ),
            )
            .with_primary(Span::new(file, 0, 0), "file starts here")
            .with_help("split the rules into several files"),
        ));
    }
    enum State {
        Code,
        Comment,
        Str(usize),
        Regex(usize),
    }
    let mut state = State::Code;
    let mut depth: usize = 0;
    // Byte by byte: every character this looks for is ASCII, and no byte of a multi-byte
    // character is (each is 0x80 or above), so positions and answers are those of a walk
    // over characters, at a fraction of the cost.
    let bytes = text.as_bytes();
    // The byte before, in code: a `/` right after a name is inside a time zone
    // (`Europe/Berlin`), never the start of a regex (which follows an operator).
    let mut prev = b' ';
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        let before = std::mem::replace(&mut prev, c);
        match state {
            State::Code => match c {
                b'#' => state = State::Comment,
                b'"' => state = State::Str(i),
                b'/' if before.is_ascii_alphanumeric() || before == b'_' => {}
                b'/' => state = State::Regex(i),
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_BRACKET_DEPTH {
                        return Err(Box::new(too_deep(file, i)));
                    }
                }
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            },
            State::Comment => {
                if c == b'\n' {
                    state = State::Code;
                }
            }
            State::Str(start) | State::Regex(start) => {
                let close = if matches!(state, State::Str(_)) {
                    b'"'
                } else {
                    b'/'
                };
                if c == b'\\' {
                    // The escaped character is skipped (a line break is not: it still
                    // ends the line); of a multi-byte one, only its first byte, and the
                    // rest are never looked-for bytes.
                    if bytes.get(i + 1).is_some_and(|&n| n != b'\n') {
                        i += 1;
                    }
                } else if c == close {
                    state = State::Code;
                } else if c == b'\n' || c == b'\r' {
                    return Err(Box::new(unclosed(
                        matches!(state, State::Str(_)),
                        file,
                        start,
                        i,
                    )));
                }
            }
        }
        i += 1;
    }
    match state {
        State::Str(start) => Err(Box::new(unclosed(true, file, start, text.len()))),
        State::Regex(start) => Err(Box::new(unclosed(false, file, start, text.len()))),
        _ => Ok(()),
    }
}

/// The bracket at `at` is nested past [`MAX_BRACKET_DEPTH`].
fn too_deep(file: FileId, at: usize) -> Diagnostic {
    Diagnostic::error(
        codes::TOO_DEEP,
        format!("brackets nested more than {MAX_BRACKET_DEPTH} levels deep"),
    )
    .with_primary(Span::new(file, at, at + 1), "too deep")
    .with_help("flatten the condition or the JSON; split it across several rules or fields")
}

fn unclosed(string: bool, file: FileId, start: usize, end: usize) -> Diagnostic {
    if string {
        Diagnostic::error(codes::UNCLOSED_STRING, "string is not closed on its line")
            .with_primary(Span::new(file, start, start + 1), "this string starts here")
            .with_secondary(Span::new(file, end, end), "the line ends here")
            .with_help(
                "add the closing `\"`; a string cannot span lines: write `\\n` for a line break",
            )
    } else {
        Diagnostic::error(codes::UNCLOSED_REGEX, "regex is not closed on its line")
            .with_primary(Span::new(file, start, start + 1), "this regex starts here")
            .with_secondary(Span::new(file, end, end), "the line ends here")
            .with_help("add the closing `/`; write `\\/` for a slash inside the regex")
    }
}

/// Where `text` stops being one condition of the rule language (a silence's): `None` when
/// it is exactly one, else the byte offset where the parser gave up. Text the pre-scan
/// refuses (nested too deep, a string left open) is not parsed here and answers `None`:
/// the parse of the whole silence reports why, where it is.
pub(crate) fn condition_ends_early(text: &str) -> Option<usize> {
    prescan(text, FileId(0)).ok()?;
    match RulesParser::parse(Rule::silence_condition, text) {
        Ok(_) => None,
        Err(e) => Some(match e.location {
            pest::error::InputLocation::Pos(p) => p,
            pest::error::InputLocation::Span((start, _)) => start,
        }),
    }
}

/// Parses a file, for tests and fuzzing.
#[cfg(any(test, feature = "unstable-internals"))]
pub(crate) fn parse_for_tests(text: &str) -> Result<ast::File, Vec<Diagnostic>> {
    parse(text, FileId(0))
}

#[cfg(test)]
mod parallel_test;
#[cfg(test)]
mod prescan_test;
#[cfg(test)]
mod roundtrip_test;
#[cfg(test)]
mod stack_test;
