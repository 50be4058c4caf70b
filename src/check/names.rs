//! Names across the folder: targets, rule names, test names; "did you mean".
//!
//! Owns: the folder's one namespace (a name is unique across every file), resolving a
//! target name to its declaration, and the suggestion of a near name ([`suggest`]: the one
//! place "did you mean" is decided). Never: reports a name as unknown when it is declared
//! in a file that failed to parse (that file's syntax error is the problem to fix, and a
//! second error would only mislead).

use std::collections::HashMap;

use super::Cx;
use crate::alert::Source;
use crate::diagnostic::{Diagnostic, Span, codes};
use crate::syntax::ast::{self, Ident, Item};

/// The target names a folder declares, in declaration order.
pub(crate) struct Scope {
    /// Each target's name and where it is declared.
    pub(crate) targets: Vec<(String, Span)>,
    /// Index into `targets` by name.
    by_name: HashMap<String, usize>,
    /// Names declared in files that did not parse.
    pub(crate) unparsed: Vec<String>,
    /// Each window's name and where it is declared, in declaration order: a window's index
    /// is its place here.
    pub(crate) windows: Vec<(String, Span)>,
    /// Window names declared in files that did not parse.
    pub(crate) unparsed_windows: Vec<String>,
}

impl Scope {
    /// Collects target names and reports duplicate targets, rules and tests.
    pub(crate) fn collect(cx: &mut Cx<'_>, files: &[ast::File]) -> Scope {
        let mut scope = Scope {
            targets: Vec::new(),
            by_name: HashMap::new(),
            unparsed: Vec::new(),
            windows: Vec::new(),
            unparsed_windows: Vec::new(),
        };
        let mut rules: HashMap<&str, Span> = HashMap::new();
        let mut tests: HashMap<&str, Span> = HashMap::new();
        let mut inhibits: HashMap<&str, Span> = HashMap::new();
        for f in files {
            for item in &f.items {
                match item {
                    Item::Target(t) => {
                        if let Some(&i) = scope.by_name.get(&t.name.name) {
                            let first = scope.targets[i].1;
                            cx.report(duplicate(
                                codes::DUPLICATE_TARGET,
                                "target",
                                &t.name.name,
                                t.name.span,
                                first,
                                cx,
                            ));
                        } else {
                            scope
                                .by_name
                                .insert(t.name.name.clone(), scope.targets.len());
                            scope.targets.push((t.name.name.clone(), t.name.span));
                        }
                    }
                    Item::Window(w) => {
                        let name = &w.name.name;
                        if let Some((_, first)) = scope.windows.iter().find(|(n, _)| n == name) {
                            cx.report(duplicate(
                                codes::DUPLICATE_WINDOW,
                                "window",
                                name,
                                w.name.span,
                                *first,
                                cx,
                            ));
                        } else {
                            scope.windows.push((name.clone(), w.name.span));
                        }
                    }
                    Item::Rule(r) => {
                        if let Some(n) = &r.name {
                            unique(cx, &mut rules, codes::DUPLICATE_RULE, "rule", n);
                        }
                    }
                    Item::Inhibit(i) => {
                        unique(
                            cx,
                            &mut inhibits,
                            codes::DUPLICATE_INHIBIT,
                            "inhibit",
                            &i.name,
                        );
                    }
                    Item::Test(t) => {
                        unique(cx, &mut tests, codes::DUPLICATE_TEST, "test", &t.name);
                    }
                }
            }
        }
        scope
    }

    /// The index of a declared target, or an "unknown target" error with a suggestion.
    pub(crate) fn resolve_target(&self, cx: &mut Cx<'_>, name: &Ident) -> Option<usize> {
        if let Some(&i) = self.by_name.get(&name.name) {
            return Some(i);
        }
        if self.unparsed.contains(&name.name) {
            return None;
        }
        let mut d = Diagnostic::error(
            codes::UNKNOWN_TARGET,
            format!("unknown target `{}`", name.name),
        )
        .with_primary(name.span, "not declared");
        let candidates = self
            .targets
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(self.unparsed.iter().map(String::as_str));
        match suggest(&name.name, candidates) {
            Some(s) => {
                let span = self
                    .by_name
                    .get(s)
                    .and_then(|&i| self.targets.get(i))
                    .map(|t| t.1);
                let at = span
                    .map(|sp| format!(" (declared at {})", cx.place(sp)))
                    .unwrap_or_default();
                d = d.with_suggestion(name.span, s, format!("did you mean `{s}`{at}?"));
            }
            None => {
                d = d.with_help(format!(
                    "declare it in any file of the folder: `target {} {{ url = \"https://...\" }}`",
                    name.name
                ));
            }
        }
        cx.report(d);
        None
    }
}

impl Scope {
    /// The index of a declared window, or an "unknown window" error with a suggestion.
    pub(crate) fn resolve_window(&self, cx: &mut Cx<'_>, name: &Ident) -> Option<usize> {
        if let Some(i) = self.windows.iter().position(|(n, _)| *n == name.name) {
            return Some(i);
        }
        if self.unparsed_windows.contains(&name.name) {
            return None;
        }
        let d = Diagnostic::error(
            codes::UNKNOWN_WINDOW,
            format!("unknown window `{}`", name.name),
        )
        .with_primary(name.span, "not declared");
        let candidates = self.windows.iter().map(|(n, _)| n.as_str());
        let d = match suggest(&name.name, candidates) {
            Some(s) => {
                let at = self
                    .windows
                    .iter()
                    .find(|(n, _)| n == s)
                    .map(|(_, sp)| format!(" (declared at {})", cx.place(*sp)))
                    .unwrap_or_default();
                d.with_suggestion(name.span, s, format!("did you mean `{s}`{at}?"))
            }
            None => d.with_help(format!(
                "declare it in any file of the folder: `window {} = mon-fri 09:00-18:00 Europe/Berlin`",
                name.name
            )),
        };
        cx.report(d);
        None
    }
}

/// Notes `name` among the names of its kind (`seen`), or reports it declared twice.
fn unique<'n>(
    cx: &mut Cx<'_>,
    seen: &mut HashMap<&'n str, Span>,
    code: crate::diagnostic::Code,
    what: &str,
    name: &'n ast::Str,
) {
    match seen.get(name.value.as_str()) {
        Some(&first) => cx.report(duplicate(code, what, &name.value, name.span, first, cx)),
        None => {
            seen.insert(&name.value, name.span);
        }
    }
}

/// "`what` `name` is declared twice", pointing at both declarations.
fn duplicate(
    code: crate::diagnostic::Code,
    what: &str,
    name: &str,
    at: Span,
    first: Span,
    cx: &Cx<'_>,
) -> Diagnostic {
    Diagnostic::error(code, format!("{what} `{name}` is declared twice"))
        .with_primary(at, "declared again here")
        .with_secondary(first, "first declared here")
        .with_help(format!(
            "rename one of them; the first is at {}",
            cx.place(first)
        ))
        .with_note(format!(
            "{} {what} name is unique across every file of the rules folder",
            if what.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            }
        ))
}

/// The closest candidate to `name`, if one is close enough to be a slip: within a third of
/// its length in edits (transpositions count once), or very similar by Jaro-Winkler,
/// ignoring case. Ties go to the first candidate.
pub(crate) fn suggest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(&str, f64)> = None;
    let lower = name.to_ascii_lowercase();
    for c in candidates {
        if c == name {
            continue;
        }
        let score = strsim::jaro_winkler(&lower, &c.to_ascii_lowercase());
        let close = strsim::damerau_levenshtein(name, c) <= (name.chars().count() / 3).max(1)
            || score > 0.88;
        if close && best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

/// `source alibab`, `@source == "alibab"`: an unknown sender, with a suggestion.
/// `quoted`: the span is a string literal (`"alibab"`), so the fix keeps the quotes.
pub(crate) fn unknown_source(name: &str, span: Span, quoted: bool) -> Diagnostic {
    let all: Vec<&str> = Source::ALL.iter().map(|s| s.as_str()).collect();
    let d = Diagnostic::error(codes::UNKNOWN_SOURCE, format!("unknown source `{name}`"))
        .with_primary(span, "not a sender");
    match suggest(name, all.iter().copied()) {
        Some(s) if quoted => {
            d.with_suggestion(span, &format!("\"{s}\""), format!("did you mean `{s}`?"))
        }
        Some(s) => d.with_suggestion(span, s, format!("did you mean `{s}`?")),
        None => d.with_help(format!(
            "the sources are {}",
            all.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
