//! The answers to the editor's requests: hover, definition, references, completion,
//! document symbols, formatting and quick fixes, each read off the folder's analysis.
//!
//! Owns: what each request answers. Never: changes a file (formatting and fixes are
//! edits the editor applies).

use std::collections::HashMap;

use lsp_types::{
    CodeAction, CodeActionKind, CodeActionOrCommand, CompletionItem, CompletionItemKind,
    DocumentSymbol, Hover, HoverContents, Location, MarkupContent, MarkupKind, Position, Range,
    SymbolKind, TextEdit, WorkspaceEdit,
};

use super::docs;
use super::symbols::{self, Kind};
use super::text::Encoding;
use super::workspace::{Analysis, FileFacts, Workspace, parse_uri};
use crate::alert::{Source, State};
use crate::check::fields_of;
use crate::syntax::ast::{CmpOp, FieldPath, Item};

/// What hover shows at a position: what the name there is, and the explanation of each
/// diagnostic's code that covers the position.
pub(crate) fn hover(ws: &mut Workspace, uri: &str, pos: Position) -> Option<Hover> {
    let enc = ws.enc;
    let a = ws.analysis_for(uri);
    let file = a.file(uri)?;
    let offset = file.lines.offset(&file.text, pos, enc);
    let mut parts: Vec<String> = Vec::new();
    let mut range = None;
    if let Some(o) = symbols::at(&file.occurrences, offset) {
        range = Some(file.range(o.span, enc));
        let shown = match &o.kind {
            Kind::TargetDecl(n) | Kind::TargetUse(n) => declaration(a, "target", n),
            Kind::WindowDecl(n) | Kind::WindowUse(n) => declaration(a, "window", n),
            Kind::Field(p, source) => Some(field(p, *source)),
            Kind::Operator(op) => docs::word(op.as_str()),
            Kind::Setting(n) => docs::word(n),
            Kind::Source(_) => docs::word("source"),
        };
        parts.extend(shown);
    } else if let Some((start, end)) = word_at(&file.text, offset) {
        let words = words_around(&file.text, start, end);
        let found = words.iter().find_map(|w| docs::word(w));
        if found.is_some() {
            range = Some(file.lines.range(&file.text, start, end, enc));
        }
        parts.extend(found);
    }
    if let Some(published) = a.diagnostics.get(uri) {
        for p in published {
            let r = p.diagnostic.range;
            if r.start <= pos
                && pos <= r.end
                && let Some(lsp_types::NumberOrString::String(code)) = &p.diagnostic.code
                && let Some(section) = docs::code(code)
                && !parts.contains(&section)
            {
                parts.push(section);
            }
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value: parts.join("\n\n---\n\n"),
        }),
        range,
    })
}

/// A target's or window's declaration as written, with where it is.
fn declaration(a: &Analysis, what: &str, name: &str) -> Option<String> {
    for f in &a.files {
        let Some(ast) = &f.ast else { continue };
        for (item, span) in ast.items.iter().zip(&ast.spans) {
            let declared = match item {
                Item::Target(t) => what == "target" && t.name.name == name,
                Item::Window(w) => what == "window" && w.name.name == name,
                _ => false,
            };
            if declared {
                let text = f
                    .text
                    .get(span.start as usize..span.end as usize)
                    .unwrap_or("");
                let line = f
                    .lines
                    .position(&f.text, span.start as usize, Encoding::Utf8)
                    .line;
                let file = f.uri.rsplit('/').next().unwrap_or(&f.uri);
                let uses = a
                    .files
                    .iter()
                    .flat_map(|f| &f.occurrences)
                    .filter(|o| match &o.kind {
                        Kind::TargetUse(n) => what == "target" && n == name,
                        Kind::WindowUse(n) => what == "window" && n == name,
                        _ => false,
                    })
                    .count();
                return Some(format!(
                    "```switchyard\n{text}\n```\n\n{what} `{name}`, declared in `{file}:{}`; used {uses} time{}",
                    line + 1,
                    if uses == 1 { "" } else { "s" }
                ));
            }
        }
    }
    Some(format!("{what} `{name}` is not declared in this folder"))
}

/// A field: the metadata field's row of the docs, or what the sender's field holds.
fn field(p: &FieldPath, source: Option<Source>) -> String {
    if let Some(m) = &p.meta {
        return docs::word(&format!("@{m}"))
            .unwrap_or_else(|| format!("`@{m}` is not a metadata field"));
    }
    let Some(first) = p.first_key() else {
        return format!("`{p}`: a field of the alert");
    };
    let Some(source) = source else {
        return format!(
            "**`{first}`**: a field of the alert. This rule is not tied to one sender (no `@source == \"...\"`), so any alert's `{first}` counts; a missing field makes the comparison false."
        );
    };
    let Some(fields) = fields_of(source) else {
        return format!("**`{first}`**: a field of a `{source}` alert, whatever it sends");
    };
    match fields.iter().find(|(n, _)| *n == first) {
        Some((_, meaning)) => format!("**`{first}`** ({source}): {meaning}"),
        None => format!("**`{first}`**: no {source} alert has this field (docs/sources.md)"),
    }
}

/// The word (or operator) around a byte offset, as a byte range.
fn word_at(text: &str, offset: usize) -> Option<(usize, usize)> {
    let offset = offset.min(text.len());
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '@';
    let is_op = |c: char| "=!<>~-".contains(c);
    let before = text.get(..offset)?;
    let after = text.get(offset..)?;
    let class = after
        .chars()
        .next()
        .filter(|&c| is_word(c) || is_op(c))
        .or_else(|| before.chars().next_back())?;
    let same = |c: char| if is_word(class) { is_word(c) } else { is_op(c) };
    if !same(class) {
        return None;
    }
    let start = before
        .char_indices()
        .rev()
        .take_while(|&(_, c)| same(c))
        .last()
        .map_or(offset, |(i, _)| i);
    let end = offset + after.find(|c: char| !same(c)).unwrap_or(after.len());
    (start < end).then_some((start, end))
}

/// The phrases a word may be part of, longest first: `resolve once`, `at most`, `expect
/// post`, then the word alone.
fn words_around(text: &str, start: usize, end: usize) -> Vec<String> {
    let word = text.get(start..end).unwrap_or("").to_owned();
    let line_start = text
        .get(..start)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line_end = text
        .get(end..)
        .and_then(|t| t.find('\n'))
        .map_or(text.len(), |i| end + i);
    let prev = text
        .get(line_start..start)
        .and_then(|t| t.split_whitespace().next_back())
        .unwrap_or("");
    let next = text
        .get(end..line_end)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or("");
    let mut out = Vec::new();
    if !prev.is_empty() {
        out.push(format!("{prev} {word}"));
    }
    if !next.is_empty() {
        out.push(format!("{word} {next}"));
    }
    out.push(word);
    out
}

/// Where a target or window under the cursor is declared.
pub(crate) fn definition(ws: &mut Workspace, uri: &str, pos: Position) -> Vec<Location> {
    let enc = ws.enc;
    let a = ws.analysis_for(uri);
    let Some((what, name)) = name_at(a, uri, pos, enc) else {
        return Vec::new();
    };
    locations(a, enc, |k| k.named() == Some((what, name.as_str(), true)))
}

/// Every use of the target or window under the cursor, and its declaration if asked.
pub(crate) fn references(
    ws: &mut Workspace,
    uri: &str,
    pos: Position,
    with_declaration: bool,
) -> Vec<Location> {
    let enc = ws.enc;
    let a = ws.analysis_for(uri);
    let Some((what, name)) = name_at(a, uri, pos, enc) else {
        return Vec::new();
    };
    locations(
        a,
        enc,
        |k| matches!(k.named(), Some((w, n, declared)) if w == what && n == name && (with_declaration || !declared)),
    )
}

/// The target or window named at a position: from the file's tree, or (in a file that
/// does not parse now) the word there, if the folder declares it.
fn name_at(
    a: &Analysis,
    uri: &str,
    pos: Position,
    enc: Encoding,
) -> Option<(&'static str, String)> {
    let file = a.file(uri)?;
    let offset = file.lines.offset(&file.text, pos, enc);
    if let Some(o) = symbols::at(&file.occurrences, offset) {
        return o.kind.named().map(|(what, n, _)| (what, n.to_owned()));
    }
    if file.ast.is_some() {
        return None;
    }
    let (start, end) = word_at(&file.text, offset)?;
    let word = file.text.get(start..end)?.to_owned();
    if declared(a, "target").contains(&word) {
        Some(("target", word))
    } else if declared(a, "window").contains(&word) {
        Some(("window", word))
    } else {
        None
    }
}

fn locations(a: &Analysis, enc: Encoding, wanted: impl Fn(&Kind) -> bool) -> Vec<Location> {
    let mut out = Vec::new();
    for f in &a.files {
        let Some(uri) = parse_uri(&f.uri) else {
            continue;
        };
        for o in f.occurrences.iter().filter(|o| wanted(&o.kind)) {
            out.push(Location {
                uri: uri.clone(),
                range: f.range(o.span, enc),
            });
        }
    }
    out
}

/// The names the folder declares (`target` or `window`), from each file's tree or, for a
/// file that does not parse now, from its lines.
fn declared(a: &Analysis, what: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for f in &a.files {
        if f.ast.is_some() {
            names.extend(f.occurrences.iter().filter_map(|o| match &o.kind {
                Kind::TargetDecl(n) if what == "target" => Some(n.clone()),
                Kind::WindowDecl(n) if what == "window" => Some(n.clone()),
                _ => None,
            }));
        } else {
            names.extend(crate::syntax::declared_names(&f.text, what));
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The document's outline: targets, windows, inhibits, rules and tests.
#[allow(deprecated)] // `DocumentSymbol::deprecated` must still be written.
pub(crate) fn symbols(ws: &mut Workspace, uri: &str) -> Vec<DocumentSymbol> {
    let enc = ws.enc;
    let a = ws.analysis_for(uri);
    let Some(f) = a.file(uri) else {
        return Vec::new();
    };
    let Some(ast) = &f.ast else {
        return lexical_symbols(f, enc);
    };
    let mut out = Vec::new();
    for (item, span) in ast.items.iter().zip(&ast.spans) {
        let (name, kind, selection, detail) = match item {
            Item::Target(t) => (
                t.name.name.clone(),
                SymbolKind::OBJECT,
                t.name.span,
                "target",
            ),
            Item::Window(w) => (
                w.name.name.clone(),
                SymbolKind::EVENT,
                w.name.span,
                "window",
            ),
            Item::Inhibit(i) => (
                i.name.value.clone(),
                SymbolKind::INTERFACE,
                i.name.span,
                "inhibit",
            ),
            Item::Rule(r) => match &r.name {
                Some(n) => (n.value.clone(), SymbolKind::FUNCTION, n.span, "rule"),
                None => {
                    let cond = r.condition.span();
                    let text = f
                        .text
                        .get(cond.start as usize..cond.end as usize)
                        .unwrap_or("");
                    let short: String = text.chars().take(60).collect();
                    let cut = if text.chars().count() > 60 { "..." } else { "" };
                    (
                        format!("when {short}{cut}"),
                        SymbolKind::FUNCTION,
                        r.span,
                        "rule",
                    )
                }
            },
            Item::Test(t) => (
                t.name.value.clone(),
                SymbolKind::METHOD,
                t.name.span,
                "test",
            ),
        };
        let range = f.range(*span, enc);
        let selection = f.range(selection, enc);
        out.push(DocumentSymbol {
            name,
            detail: Some(detail.to_owned()),
            kind,
            tags: None,
            deprecated: None,
            range,
            selection_range: if range.start <= selection.start && selection.end <= range.end {
                selection
            } else {
                range
            },
            children: None,
        });
    }
    out
}

/// The outline of a file that does not parse now: each line that starts an item.
#[allow(deprecated)]
fn lexical_symbols(f: &FileFacts, enc: Encoding) -> Vec<DocumentSymbol> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in f.text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let body = line.trim_end();
        let kind = [
            ("target ", SymbolKind::OBJECT),
            ("window ", SymbolKind::EVENT),
            ("inhibit ", SymbolKind::INTERFACE),
            ("rule ", SymbolKind::FUNCTION),
            ("when ", SymbolKind::FUNCTION),
            ("test ", SymbolKind::METHOD),
        ]
        .into_iter()
        .find(|(k, _)| body.starts_with(k));
        let Some((keyword, kind)) = kind else {
            continue;
        };
        let name: String = body.chars().take(60).collect();
        let range = f.lines.range(&f.text, start, start + body.len(), enc);
        out.push(DocumentSymbol {
            name,
            detail: Some(keyword.trim().to_owned()),
            kind,
            tags: None,
            deprecated: None,
            range,
            selection_range: range,
            children: None,
        });
    }
    out
}

/// The whole document in the formatter's layout, as one edit; none when it is already so
/// or does not parse (its diagnostics say why).
pub(crate) fn format(ws: &Workspace, uri: &str) -> Vec<TextEdit> {
    let Some(doc) = ws.docs.get(uri) else {
        return Vec::new();
    };
    let name = uri.rsplit('/').next().unwrap_or(uri);
    match crate::format_rules(name, &doc.text) {
        Ok(formatted) if formatted != *doc.text => {
            let lines = super::text::LineIndex::new(&doc.text);
            vec![TextEdit {
                range: lines.range(&doc.text, 0, doc.text.len(), ws.enc),
                new_text: formatted,
            }]
        }
        _ => Vec::new(),
    }
}

/// The quick fixes of the diagnostics that touch a range.
pub(crate) fn code_actions(
    ws: &mut Workspace,
    uri: &str,
    range: Range,
) -> Vec<CodeActionOrCommand> {
    let a = ws.analysis_for(uri);
    let Some(published) = a.diagnostics.get(uri) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in published {
        let r = p.diagnostic.range;
        if r.end < range.start || range.end < r.start {
            continue;
        }
        for fix in &p.fixes {
            let Some(target) = parse_uri(&fix.uri) else {
                continue;
            };
            out.push(CodeActionOrCommand::CodeAction(CodeAction {
                title: fix.title.clone(),
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![p.diagnostic.clone()]),
                edit: Some(WorkspaceEdit {
                    changes: Some(HashMap::from([(target, vec![fix.edit.clone()])])),
                    ..Default::default()
                }),
                is_preferred: Some(p.fixes.len() == 1),
                ..Default::default()
            }));
        }
    }
    out
}

/// What may be written at a position, from the text before it (which, while typing, is
/// seldom a whole file that parses).
pub(crate) fn completion(ws: &mut Workspace, uri: &str, pos: Position) -> Vec<CompletionItem> {
    let enc = ws.enc;
    let a = ws.analysis_for(uri);
    let Some(f) = a.file(uri) else {
        return Vec::new();
    };
    let offset = f.lines.offset(&f.text, pos, enc);
    let before = f.text.get(..offset).unwrap_or("");
    let line = before.rsplit('\n').next().unwrap_or("");
    // The word being typed, and the words before it on the line.
    let typed_len = line
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || "_@.\"".contains(*c))
        .map(char::len_utf8)
        .sum::<usize>();
    let head = &line[..line.len() - typed_len];
    let words: Vec<&str> = head.split_whitespace().collect();
    let prev = words.last().copied().unwrap_or("");
    let prev2 = words
        .len()
        .checked_sub(2)
        .and_then(|i| words.get(i))
        .copied()
        .unwrap_or("");
    let (item, item_text) = enclosing(before);
    let names = |what: &str, kind| {
        declared(a, what)
            .into_iter()
            .map(|n| item_of(&n, kind, Some(format!("{what} declared in this folder"))))
            .collect::<Vec<_>>()
    };

    if prev == "post"
        || (item == "test"
            && prev2 == "expect"
            && matches!(
                prev,
                "throttled" | "held" | "silenced" | "inhibited" | "group" | "body"
            ))
        || head.trim_end().ends_with("fallback =")
    {
        return names("target", CompletionItemKind::REFERENCE);
    }
    if prev == "during" {
        return names("window", CompletionItemKind::EVENT);
    }
    if item == "test" && prev == "source" {
        return Source::ALL
            .iter()
            .map(|s| {
                item_of(
                    s.as_str(),
                    CompletionItemKind::ENUM_MEMBER,
                    Some(String::from("sender")),
                )
            })
            .collect();
    }
    if item == "test" && prev == "expect" {
        return [
            "post",
            "no post",
            "drop",
            "unrouted",
            "throttled",
            "held",
            "silenced",
            "inhibited",
            "group",
            "body",
        ]
        .into_iter()
        .map(|w| keyword(w, &format!("expect {w}")))
        .collect();
    }
    let at_line_start = head.trim().is_empty();
    let open = inside_braces(item, item_text);
    if item == "target" && open && at_line_start {
        return [
            "url", "method", "headers", "body", "timeout", "retries", "fallback",
        ]
        .into_iter()
        .map(|w| {
            let mut c = keyword(w, w);
            c.insert_text = Some(format!("{w} = "));
            c
        })
        .collect();
    }
    if item == "test" && open && at_line_start {
        return ["source", "alert", "expect", "at", "after", "silence"]
            .into_iter()
            .map(|w| keyword(w, w))
            .collect();
    }
    if line.len() == typed_len && !open {
        return ["when", "rule", "target", "test", "window", "inhibit"]
            .into_iter()
            .map(|w| {
                item_of(
                    w,
                    CompletionItemKind::KEYWORD,
                    Some(format!("starts a {w}")),
                )
            })
            .collect();
    }
    if item == "rule" || item == "when" || item == "inhibit" {
        let rule_text = item_text;
        if rule_text.contains("->") {
            return [
                "post",
                "drop",
                "stop",
                "dedup",
                "resolve once",
                "at most",
                "delay",
                "hold during",
                "mute during",
                "mute flapping",
                "group",
            ]
            .into_iter()
            .map(|w| keyword(w, w))
            .collect();
        }
        // After a field: operators. After `@source ==` or `@state ==`: their values.
        if prev.ends_with("==") || prev == "!=" {
            let values: Vec<&str> = match prev2 {
                "@source" => Source::ALL.iter().map(|s| s.as_str()).collect(),
                "@state" => State::ALL.iter().map(|s| s.as_str()).collect(),
                _ => Vec::new(),
            };
            return values
                .into_iter()
                .map(|v| {
                    let mut c = item_of(v, CompletionItemKind::ENUM_MEMBER, None);
                    c.insert_text = Some(format!("\"{v}\""));
                    c
                })
                .collect();
        }
        let after_field = !prev.is_empty()
            && !matches!(prev, "when" | "and" | "or" | "not" | "(" | "while")
            && prev
                .chars()
                .all(|c| c.is_alphanumeric() || "_@.[]*\"".contains(c));
        if after_field {
            return CmpOp::ALL
                .iter()
                .map(|op| op.as_str())
                .map(|w| {
                    let mut c = keyword(w, w);
                    c.kind = Some(CompletionItemKind::OPERATOR);
                    c
                })
                .collect();
        }
        let mut out: Vec<CompletionItem> = ["@source", "@state", "@name", "@id"]
            .into_iter()
            .map(|w| keyword(w, w))
            .collect();
        let source = Source::ALL
            .into_iter()
            .find(|s| rule_text.contains(&format!("@source == \"{}\"", s.as_str())));
        if let Some(fields) = source.and_then(fields_of) {
            let source = source.map(Source::as_str).unwrap_or_default();
            out.extend(fields.into_iter().map(|(n, meaning)| {
                let mut c = item_of(
                    n,
                    CompletionItemKind::FIELD,
                    Some(format!("{source} field")),
                );
                c.documentation = Some(lsp_types::Documentation::String(meaning.to_owned()));
                c
            }));
        }
        out.extend(
            ["and", "or", "not", "exists", "during"]
                .into_iter()
                .map(|w| keyword(w, w)),
        );
        return out;
    }
    Vec::new()
}

fn item_of(label: &str, kind: CompletionItemKind, detail: Option<String>) -> CompletionItem {
    CompletionItem {
        label: label.to_owned(),
        kind: Some(kind),
        detail,
        ..Default::default()
    }
}

/// A keyword, with its row of the docs.
fn keyword(label: &str, doc_word: &str) -> CompletionItem {
    let mut c = item_of(label, CompletionItemKind::KEYWORD, None);
    c.documentation = docs::word(doc_word).map(|d| {
        lsp_types::Documentation::MarkupContent(MarkupContent {
            kind: MarkupKind::Markdown,
            value: d,
        })
    });
    c
}

/// The keywords that start an item at the start of a line.
const ITEM_KEYWORDS: [&str; 6] = ["target", "test", "window", "inhibit", "rule", "when"];

/// The item the text before the cursor is in: its keyword (empty before the first), and
/// its text up to the cursor. An item starts at a line that starts with its keyword.
fn enclosing(before: &str) -> (&'static str, &str) {
    let mut end = before.len();
    loop {
        let start = before
            .get(..end)
            .and_then(|t| t.rfind('\n'))
            .map_or(0, |i| i + 1);
        let line = before.get(start..).unwrap_or("");
        let keyword = ITEM_KEYWORDS.into_iter().find(|k| {
            line.strip_prefix(k)
                .is_some_and(|r| r.is_empty() || r.starts_with([' ', '"']))
        });
        if let Some(k) = keyword {
            return (k, line);
        }
        if start == 0 {
            return ("", before);
        }
        end = start - 1;
    }
}

/// Whether the cursor is inside the braces of a `target` or `test` block.
fn inside_braces(item: &str, text: &str) -> bool {
    if item != "target" && item != "test" {
        return false;
    }
    let opened = text.matches('{').count();
    let closed = text.matches('}').count();
    opened > closed
}

#[cfg(test)]
#[path = "features_test.rs"]
mod tests;
