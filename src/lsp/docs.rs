//! What the editor shows on hover for the language's words, read from the user docs
//! themselves: the tables of `docs/language.md` (operators, actions, clauses, settings,
//! metadata fields, test statements) and the sections of `docs/diagnostics.md` (one per
//! code). The docs are built into the binary, so hover and the docs never disagree.

const LANGUAGE: &str = include_str!("../../docs/language.md");
const DIAGNOSTICS: &str = include_str!("../../docs/diagnostics.md");

/// The table cells of a markdown line, split at `|` that is not escaped.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                if let Some(last) = out.last_mut() {
                    last.push('|');
                }
            }
            '|' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// Whether a table's first cell documents `word`: it names `` `word` `` or starts a
/// form with it (`` `post <target>` ``, `` `exists(path)` ``).
fn names(cell: &str, word: &str) -> bool {
    cell.split('`').skip(1).step_by(2).any(|code| {
        code == word
            || code
                .strip_prefix(word)
                .is_some_and(|rest| rest.starts_with([' ', '(', '<']))
    })
}

/// The row of a `docs/language.md` table that documents `word`, as markdown: the form,
/// then each other column under its header.
pub(crate) fn word(word: &str) -> Option<String> {
    if word.is_empty() {
        return None;
    }
    let mut header: Vec<String> = Vec::new();
    let mut previous_was_table = false;
    for line in LANGUAGE.lines() {
        if !line.starts_with('|') {
            previous_was_table = false;
            continue;
        }
        let row = cells(line);
        if !previous_was_table {
            header = row;
            previous_was_table = true;
            continue;
        }
        if row.iter().all(|c| c.chars().all(|c| c == '-' || c == ':')) {
            continue;
        }
        let Some(first) = row.first() else { continue };
        if !names(first, word) {
            continue;
        }
        let mut out = format!("**{first}**");
        for (h, c) in header.iter().zip(&row).skip(1) {
            out.push_str(&format!("\n\n*{h}*: {c}"));
        }
        return Some(out);
    }
    None
}

/// The section of `docs/diagnostics.md` that explains a code, as markdown.
pub(crate) fn code(code: &str) -> Option<String> {
    let heading = format!("## {code} ");
    let start = heading_start(&heading)?;
    let rest = &DIAGNOSTICS[start..];
    let end = rest
        .get(heading.len()..)
        .and_then(|r| r.find("\n## "))
        .map_or(rest.len(), |e| e + heading.len());
    let section = rest[..end].trim();
    Some(section.replacen("## ", "### ", 1))
}

fn heading_start(heading: &str) -> Option<usize> {
    DIAGNOSTICS
        .match_indices(heading)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || DIAGNOSTICS.as_bytes().get(i - 1) == Some(&b'\n'))
}

#[cfg(test)]
#[path = "docs_test.rs"]
mod tests;
