//! Regexes of rules: compiled once per distinct pattern and flags in a load, and not at
//! all when the pattern's language is a short list of strings.
//!
//! Alertmanager-style routes write an exact set as a regex (`=~ /^(?:Rule_1|RuleAlt_1)$/`).
//! Such a pattern is parsed (which checks it), its strings listed, and tested as a list:
//! the same answer as the regex for every value (a string is in the list; a number's text
//! is), without a compiled regex's memory or build time. Any other pattern is compiled, once
//! for all the rules that repeat it.

use std::sync::Arc;

use regex::Regex;
use rustc_hash::FxHashMap;

/// How a regex test is decided.
#[derive(Clone, Debug)]
pub(crate) enum Matcher {
    /// A compiled regex, shared by every rule that writes the same pattern and flags.
    Regex(Arc<Regex>),
    /// Every string the pattern matches, sorted: the regex matches a text exactly when
    /// the text is one of them.
    Strings(Arc<[Box<str>]>),
}

impl Matcher {
    /// Whether the pattern matches `text`.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        match self {
            Matcher::Regex(re) => re.is_match(text),
            Matcher::Strings(words) => words.binary_search_by(|w| (**w).cmp(text)).is_ok(),
        }
    }

    /// The strings the pattern matches, when it is a list.
    pub(crate) fn strings(&self) -> Option<&[Box<str>]> {
        match self {
            Matcher::Regex(_) => None,
            Matcher::Strings(words) => Some(words),
        }
    }
}

/// The matchers made in one load, by pattern and flags.
#[derive(Default)]
pub(crate) struct Cache {
    made: FxHashMap<(String, String), Matcher>,
}

impl Cache {
    /// The matcher of `pattern` with `flags`: the one made before, or `make`'s (`None`
    /// when the pattern is invalid, reported by `make`), or the list of its strings.
    pub(crate) fn get_or_make(
        &mut self,
        pattern: &str,
        flags: &str,
        make: impl FnOnce() -> Option<Regex>,
    ) -> Option<Matcher> {
        let key = (pattern.to_owned(), flags.to_owned());
        if let Some(m) = self.made.get(&key) {
            return Some(m.clone());
        }
        let made = match regex_literals(pattern, flags) {
            Some(words) => {
                let mut words: Vec<Box<str>> =
                    words.into_iter().map(String::into_boxed_str).collect();
                words.sort_unstable();
                words.dedup();
                Matcher::Strings(words.into())
            }
            None => Matcher::Regex(Arc::new(make()?)),
        };
        self.made.insert(key, made.clone());
        Some(made)
    }
}

/// The strings a regex matches when it is anchored at both ends and its language is a
/// short finite list (`^(?:a|b)$`, `^cpu_(user|system)$`); `None` otherwise.
pub(crate) fn regex_literals(pattern: &str, flags: &str) -> Option<Vec<String>> {
    use regex_syntax::hir::{HirKind, Look};
    const MAX: usize = 64;
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(flags.contains('i'))
        .multi_line(flags.contains('m'))
        .dot_matches_new_line(flags.contains('s'))
        .ignore_whitespace(flags.contains('x'))
        .nest_limit(64)
        .build()
        .parse(pattern)
        .ok()?;
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    let [first, middle @ .., last] = parts.as_slice() else {
        return None;
    };
    if !matches!(first.kind(), HirKind::Look(Look::Start))
        || !matches!(last.kind(), HirKind::Look(Look::End))
    {
        return None;
    }
    fn language(h: &regex_syntax::hir::Hir, max: usize) -> Option<Vec<Vec<u8>>> {
        use regex_syntax::hir::{Class, HirKind};
        match h.kind() {
            HirKind::Empty => Some(vec![Vec::new()]),
            HirKind::Literal(l) => Some(vec![l.0.to_vec()]),
            HirKind::Capture(c) => language(&c.sub, max),
            HirKind::Concat(hs) => concat(hs, max),
            HirKind::Alternation(hs) => {
                let mut out = Vec::new();
                for h in hs {
                    out.extend(language(h, max)?);
                    if out.len() > max {
                        return None;
                    }
                }
                Some(out)
            }
            HirKind::Class(Class::Unicode(c)) => {
                // Small classes only: `[kK]` from a case-insensitive flag, not `[a-z]`.
                let size: u32 = c
                    .ranges()
                    .iter()
                    .map(|r| u32::from(r.end()) - u32::from(r.start()) + 1)
                    .sum();
                if size > 8 {
                    return None;
                }
                let mut out = Vec::new();
                for r in c.ranges() {
                    for ch in r.start()..=r.end() {
                        out.push(ch.to_string().into_bytes());
                        if out.len() > max {
                            return None;
                        }
                    }
                }
                Some(out)
            }
            _ => None,
        }
    }
    fn concat(hs: &[regex_syntax::hir::Hir], max: usize) -> Option<Vec<Vec<u8>>> {
        let mut acc: Vec<Vec<u8>> = vec![Vec::new()];
        for h in hs {
            let next = language(h, max)?;
            if acc.len().saturating_mul(next.len()) > max {
                return None;
            }
            acc = acc
                .iter()
                .flat_map(|a| {
                    next.iter().map(move |b| {
                        let mut s = a.clone();
                        s.extend_from_slice(b);
                        s
                    })
                })
                .collect();
        }
        Some(acc)
    }
    let words = concat(middle, MAX)?;
    words
        .into_iter()
        .map(|w| String::from_utf8(w).ok())
        .collect()
}

#[cfg(test)]
#[path = "regex_test.rs"]
mod tests;
