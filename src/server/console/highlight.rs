//! A rules file as the console shows it: line by line, each line an anchor (`#L12`), each
//! token classed for colour, and every secret masked before anything is rendered.
//!
//! Owns: what counts as a secret in a rules file (a target's header values, and the
//! default of an `${env.NAME:-default}`, which may be a real token), and the token classes.
//! Never: renders text unescaped (every piece goes through maud's escaping).

use maud::{Markup, html};

use crate::diagnostic::FileId;
use crate::syntax::ast::{Item, Part, Template};

/// What a masked secret shows as.
pub(crate) const MASK: &str = "•••";

/// The words of the language, coloured as keywords.
const KEYWORDS: &[&str] = &[
    "after",
    "alert",
    "and",
    "at",
    "body",
    "by",
    "changes",
    "contains",
    "dedup",
    "delay",
    "drop",
    "during",
    "else",
    "ends_with",
    "every",
    "exists",
    "expect",
    "false",
    "firing",
    "flapping",
    "for",
    "group",
    "held",
    "hold",
    "in",
    "inhibit",
    "inhibited",
    "is",
    "key",
    "matching",
    "most",
    "mute",
    "no",
    "not",
    "null",
    "once",
    "or",
    "per",
    "post",
    "repeat",
    "resolve",
    "resolved",
    "rule",
    "silence",
    "silenced",
    "source",
    "starts_with",
    "stop",
    "target",
    "test",
    "throttled",
    "true",
    "unless",
    "unrouted",
    "until",
    "wait",
    "when",
    "while",
    "window",
];

/// The byte ranges of `text` that hold secrets, sorted, not overlapping. A file that does
/// not parse (never the case for a loaded set's files) masks every string, to be safe.
pub(crate) fn secrets(text: &str) -> Vec<(usize, usize)> {
    let Ok(file) = crate::syntax::parse(text, FileId(0)) else {
        return every_string(text);
    };
    let mut out = Vec::new();
    for item in &file.items {
        let Item::Target(t) = item else { continue };
        for setting in &t.settings {
            if let crate::syntax::ast::SettingValue::Template(tpl) = &setting.value {
                if setting.name.name == "headers" {
                    header_values(tpl, &mut out);
                }
                env_defaults(tpl, text, &mut out);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    // Ranges nest (a header's whole value, an env default inside it): keep the outer.
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (s, e) in out {
        match merged.last_mut() {
            Some(last) if s < last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// The inside of each string a `headers` object holds (its quotes stay).
fn header_values(tpl: &Template, out: &mut Vec<(usize, usize)>) {
    if let Template::Object(members, _) = tpl {
        for (_, value) in members {
            if let Template::String(s) = value {
                let (start, end) = (s.span.start as usize, s.span.end as usize);
                if end > start + 1 {
                    out.push((start + 1, end - 1));
                }
            }
        }
    }
}

/// The default of every `${env.NAME:-default}` in a template.
fn env_defaults(tpl: &Template, text: &str, out: &mut Vec<(usize, usize)>) {
    match tpl {
        Template::String(s) => {
            for part in &s.parts {
                if let Part::Env {
                    default: Some(_),
                    span,
                    ..
                } = part
                {
                    let (start, end) = (span.start as usize, span.end as usize);
                    if let Some(at) = text.get(start..end).and_then(|t| t.find(":-")) {
                        // Up to the closing brace.
                        let from = start + at + 2;
                        if end > from {
                            out.push((from, end - 1));
                        }
                    }
                }
            }
        }
        Template::Array(items, _) => items.iter().for_each(|t| env_defaults(t, text, out)),
        Template::Object(members, _) => {
            members.iter().for_each(|(_, t)| env_defaults(t, text, out))
        }
        _ => {}
    }
}

/// Every string literal's inside, by a scan (for a file that does not parse).
fn every_string(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                out.push((start, i.min(bytes.len())));
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// `text` with each secret range replaced by [`MASK`] (its newlines kept, so that lines
/// keep their numbers).
pub(crate) fn masked(text: &str, secrets: &[(usize, usize)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for &(s, e) in secrets {
        let (Some(before), Some(hidden)) = (text.get(at..s), text.get(s..e)) else {
            continue;
        };
        out.push_str(before);
        out.push_str(MASK);
        out.extend(hidden.chars().filter(|c| *c == '\n'));
        at = e;
    }
    out.push_str(text.get(at..).unwrap_or(""));
    out
}

/// One piece of a line, with its class (`None`: plain).
fn tokens(line: &str) -> Vec<(Option<&'static str>, &str)> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let c = rest.chars().next().unwrap_or(' ');
        let (class, len) = if c == '#' {
            (Some("hl-c"), rest.len())
        } else if c == '"' {
            let mut end = rest.len();
            let mut escaped = false;
            for (i, ch) in rest.char_indices().skip(1) {
                if escaped {
                    escaped = false;
                } else if ch == '\\' {
                    escaped = true;
                } else if ch == '"' {
                    end = i + 1;
                    break;
                }
            }
            (Some("hl-s"), end)
        } else if rest.starts_with(MASK) {
            (Some("hl-x"), MASK.len())
        } else if c.is_ascii_digit() {
            let len = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '.'))
                .unwrap_or(rest.len());
            (Some("hl-n"), len)
        } else if c == '@' || c.is_alphabetic() || c == '_' {
            let len = rest
                .char_indices()
                .skip(1)
                .find(|(_, ch)| !(ch.is_alphanumeric() || *ch == '_'))
                .map_or(rest.len(), |(i, _)| i);
            let word = &rest[..len];
            let keyword = c == '@' || KEYWORDS.contains(&word);
            (keyword.then_some("hl-k"), len)
        } else if "=!<>~-|&".contains(c) {
            let len = rest
                .find(|ch: char| !"=!<>~-|&".contains(ch))
                .unwrap_or(rest.len());
            (Some("hl-o"), len)
        } else {
            let len = rest
                .find(|ch: char| {
                    ch == '#'
                        || ch == '"'
                        || ch == '@'
                        || ch.is_alphanumeric()
                        || ch == '_'
                        || "=!<>~-|&".contains(ch)
                        || rest.starts_with(MASK)
                })
                .filter(|&i| i > 0)
                .unwrap_or_else(|| c.len_utf8());
            // A mask starting mid-run is found on the next turn.
            let len = rest[..len].find(MASK).filter(|&i| i > 0).unwrap_or(len);
            (None, len)
        };
        let len = len.max(1).min(rest.len());
        let len = (len..=rest.len())
            .find(|&i| rest.is_char_boundary(i))
            .unwrap_or(rest.len());
        out.push((class, &rest[..len]));
        rest = &rest[len..];
    }
    out
}

/// A rules file as HTML: secrets masked, every line `<span class="ln" id="L{n}">`.
pub(crate) fn render(text: &str) -> Markup {
    let shown = masked(text, &secrets(text));
    html! {
        pre.source {
            code {
                @for (n, line) in shown.split('\n').enumerate() {
                    span.ln id=(format!("L{}", n + 1)) {
                        @for (class, piece) in tokens(line) {
                            @if let Some(class) = class {
                                span class=(class) { (piece) }
                            } @else {
                                (piece)
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "highlight_test.rs"]
mod tests;
