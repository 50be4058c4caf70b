//! The editor's view of the rules: open documents over the files on disk, and one
//! analysis per rules folder (what `switchyard check` would say of the folder as the
//! editor holds it, and what each file's names are).
//!
//! Owns: which files make a folder (the loader's own list, with each open document in
//! place of its file), and which diagnostics are published where. Never: writes a file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lsp_types::{
    DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString, Range, TextEdit,
    Uri,
};

use super::symbols::{self, Occurrence};
use super::text::{Encoding, LineIndex};
use crate::diagnostic::{Diagnostic, FileId, Severity, Span, codes};
use crate::load::{self, Loader};
use crate::syntax::{self, ast};

/// The most diagnostics published for one file: a file of many thousand mistakes is not
/// read one by one.
const MAX_PUBLISHED: usize = 500;

/// An open document: the editor's text, not the file's.
pub(crate) struct Doc {
    pub(crate) text: Arc<str>,
    pub(crate) version: i32,
}

/// A set of files checked together: a folder on disk, or a document that is not a file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum FolderKey {
    Dir(PathBuf),
    Lone(String),
}

/// One file of an analysis.
pub(crate) struct FileFacts {
    pub(crate) uri: String,
    pub(crate) text: Arc<str>,
    pub(crate) lines: LineIndex,
    pub(crate) ast: Option<ast::File>,
    pub(crate) occurrences: Vec<Occurrence>,
}

impl FileFacts {
    pub(crate) fn range(&self, span: Span, enc: Encoding) -> Range {
        self.lines
            .range(&self.text, span.start as usize, span.end as usize, enc)
    }
}

/// A quick fix: the edit, in the file it changes.
#[derive(Clone, Debug)]
pub(crate) struct FixEdit {
    pub(crate) title: String,
    pub(crate) uri: String,
    pub(crate) edit: TextEdit,
}

/// A diagnostic as the editor gets it, with the fixes it offers.
#[derive(Clone, Debug)]
pub(crate) struct Published {
    pub(crate) diagnostic: lsp_types::Diagnostic,
    pub(crate) fixes: Vec<FixEdit>,
}

/// What the checker says of one folder, file by file.
#[derive(Default)]
pub(crate) struct Analysis {
    pub(crate) files: Vec<Arc<FileFacts>>,
    /// By file URI; every file of the folder has an entry (empty when clean).
    pub(crate) diagnostics: BTreeMap<String, Vec<Published>>,
}

impl Analysis {
    pub(crate) fn file(&self, uri: &str) -> Option<&FileFacts> {
        self.files.iter().find(|f| f.uri == uri).map(|f| &**f)
    }
}

/// Every open document and the analysis of every folder one of them is in.
pub(crate) struct Workspace {
    pub(crate) docs: HashMap<String, Doc>,
    analyses: HashMap<FolderKey, Analysis>,
    dirty: BTreeSet<FolderKey>,
    published: HashMap<FolderKey, BTreeSet<String>>,
    pub(crate) enc: Encoding,
}

impl Workspace {
    pub(crate) fn new(enc: Encoding) -> Workspace {
        Workspace {
            docs: HashMap::new(),
            analyses: HashMap::new(),
            dirty: BTreeSet::new(),
            published: HashMap::new(),
            enc,
        }
    }

    /// The folder a document belongs to.
    pub(crate) fn folder_of(uri: &str) -> FolderKey {
        match uri_to_path(uri).and_then(|p| p.parent().map(Path::to_path_buf)) {
            Some(dir) => FolderKey::Dir(dir),
            None => FolderKey::Lone(uri.to_owned()),
        }
    }

    /// Marks a document's folder for analysis before the next answer.
    pub(crate) fn touch(&mut self, uri: &str) {
        self.dirty.insert(Workspace::folder_of(uri));
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Analyses every folder marked since the last call; returns the diagnostics to
    /// publish: `(uri, version, diagnostics)`, an empty list where a file became clean.
    pub(crate) fn refresh(&mut self) -> Vec<(String, Option<i32>, Vec<lsp_types::Diagnostic>)> {
        let mut out = Vec::new();
        for key in std::mem::take(&mut self.dirty) {
            let analysis = self.analyse(&key);
            let before = self.published.remove(&key).unwrap_or_default();
            let mut now = BTreeSet::new();
            for (uri, ds) in &analysis.diagnostics {
                // Clean files are published when open (the editor may show what an
                // earlier server said) or when they had diagnostics.
                if ds.is_empty() && !before.contains(uri) && !self.docs.contains_key(uri) {
                    continue;
                }
                let version = self.docs.get(uri).map(|d| d.version);
                out.push((
                    uri.clone(),
                    version,
                    ds.iter().map(|p| p.diagnostic.clone()).collect(),
                ));
                if !ds.is_empty() {
                    now.insert(uri.clone());
                }
            }
            for uri in before.difference(&now) {
                if !analysis.diagnostics.contains_key(uri) {
                    out.push((uri.clone(), None, Vec::new()));
                }
            }
            self.published.insert(key.clone(), now);
            if self.docs.keys().any(|u| Workspace::folder_of(u) == key) {
                self.analyses.insert(key, analysis);
            } else {
                self.analyses.remove(&key);
            }
        }
        out
    }

    /// The analysis a document is part of (made now if its folder has none).
    pub(crate) fn analysis_for(&mut self, uri: &str) -> &Analysis {
        let key = Workspace::folder_of(uri);
        if !self.analyses.contains_key(&key) {
            let analysis = self.analyse(&key);
            self.analyses.insert(key.clone(), analysis);
        }
        self.analyses.entry(key).or_default()
    }

    /// The files of a folder as the editor holds them: the loader's files with each open
    /// document's text in place of its file's, and open documents not yet saved.
    fn files(&self, key: &FolderKey) -> Vec<(String, PathBuf, Vec<u8>)> {
        match key {
            FolderKey::Lone(uri) => self
                .docs
                .get(uri)
                .map(|d| {
                    let name = uri.rsplit('/').next().unwrap_or(uri).to_owned();
                    vec![(uri.clone(), PathBuf::from(name), d.text.as_bytes().to_vec())]
                })
                .unwrap_or_default(),
            FolderKey::Dir(dir) => {
                let mut by_path: BTreeMap<PathBuf, (String, Vec<u8>)> = load::read_rule_files(dir)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(p, bytes)| (p.clone(), (path_to_uri(&p), bytes)))
                    .collect();
                for (uri, doc) in &self.docs {
                    if let Some(p) = uri_to_path(uri)
                        && p.parent() == Some(dir.as_path())
                    {
                        by_path.insert(p, (uri.clone(), doc.text.as_bytes().to_vec()));
                    }
                }
                let mut files: Vec<_> = by_path
                    .into_iter()
                    .map(|(p, (uri, bytes))| (uri, p, bytes))
                    .collect();
                files.sort_by(|a, b| a.1.file_name().cmp(&b.1.file_name()));
                files
            }
        }
    }

    fn analyse(&self, key: &FolderKey) -> Analysis {
        let files = self.files(key);
        let loaded = Loader::new().from_bytes(
            files
                .iter()
                .map(|(_, p, bytes)| (p.display().to_string(), bytes.clone())),
        );
        let diagnostics = match &loaded {
            Ok(set) => Some(set.warnings().clone()),
            Err(e) => e.diagnostics().cloned(),
        };
        // A file whose text is what it was at the last analysis keeps its facts: while one
        // file is edited, the others are not parsed again.
        let earlier = self.analyses.get(key);
        let facts: Vec<Arc<FileFacts>> = files
            .into_iter()
            .enumerate()
            .map(|(i, (uri, _, bytes))| {
                if let Some(same) = earlier
                    .and_then(|a| a.files.iter().find(|f| f.uri == uri))
                    .filter(|f| f.text.as_bytes() == bytes.as_slice())
                {
                    return Arc::clone(same);
                }
                let text: Arc<str> = String::from_utf8_lossy(&bytes).into();
                let id = FileId(u32::try_from(i).unwrap_or(u32::MAX));
                let ast = syntax::parse(&text, id).ok();
                let occurrences = ast.as_ref().map(symbols::occurrences).unwrap_or_default();
                Arc::new(FileFacts {
                    uri,
                    lines: LineIndex::new(&text),
                    text,
                    ast,
                    occurrences,
                })
            })
            .collect();
        let mut by_file: BTreeMap<String, Vec<Published>> =
            facts.iter().map(|f| (f.uri.clone(), Vec::new())).collect();
        for d in diagnostics.iter().flat_map(|ds| ds.iter()) {
            let Some(p) = self.publish(&facts, d) else {
                continue;
            };
            let file = d.primary_span().map_or(0, |s| s.file.0 as usize);
            if let Some(f) = facts.get(file)
                && let Some(list) = by_file.get_mut(&f.uri)
                && list.len() < MAX_PUBLISHED
            {
                list.push(p);
            }
        }
        Analysis {
            files: facts,
            diagnostics: by_file,
        }
    }

    /// A checker diagnostic as the editor shows it: the message with its `help:` and
    /// `note:` lines, the code, the other labels as related places, and the fixes.
    fn publish(&self, facts: &[Arc<FileFacts>], d: &Diagnostic) -> Option<Published> {
        let enc = self.enc;
        let span = d.primary_span().unwrap_or_default();
        let file = facts.get(span.file.0 as usize)?;
        let mut message = d.message.clone();
        if let Some(label) = d.labels.iter().find(|l| l.primary && !l.message.is_empty()) {
            message.push_str(&format!(": {}", label.message));
        }
        // The editor's environment is not the server's: an unset variable is worth a
        // warning here, and an error only where the rules are loaded.
        let mut severity = match d.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
        };
        if d.code == codes::MISSING_ENV {
            severity = DiagnosticSeverity::WARNING;
            message.push_str(" (in the editor's environment)");
        }
        for h in &d.help {
            message.push_str(&format!("\nhelp: {h}"));
        }
        for n in &d.notes {
            message.push_str(&format!("\nnote: {n}"));
        }
        let related: Vec<DiagnosticRelatedInformation> = d
            .labels
            .iter()
            .filter(|l| !l.primary)
            .filter_map(|l| {
                let f = facts.get(l.span.file.0 as usize)?;
                Some(DiagnosticRelatedInformation {
                    location: Location {
                        uri: parse_uri(&f.uri)?,
                        range: f.range(l.span, enc),
                    },
                    message: if l.message.is_empty() {
                        String::from("here")
                    } else {
                        l.message.clone()
                    },
                })
            })
            .collect();
        let fixes = d
            .fixes
            .iter()
            .filter_map(|fix| {
                let f = facts.get(fix.span.file.0 as usize)?;
                Some(FixEdit {
                    title: fix.title.clone(),
                    uri: f.uri.clone(),
                    edit: TextEdit {
                        range: f.range(fix.span, enc),
                        new_text: fix.replacement.clone(),
                    },
                })
            })
            .collect();
        Some(Published {
            diagnostic: lsp_types::Diagnostic {
                range: file.range(span, enc),
                severity: Some(severity),
                code: Some(NumberOrString::String(d.code.as_str().to_owned())),
                source: Some(String::from("switchyard")),
                message,
                related_information: (!related.is_empty()).then_some(related),
                ..Default::default()
            },
            fixes,
        })
    }
}

/// The path of a `file:` URI, decoded.
pub(crate) fn uri_to_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    // `file:///x` and `file://localhost/x`; other hosts are not this machine's files.
    let path = match rest.find('/') {
        Some(0) => rest,
        Some(i) if rest[..i].eq_ignore_ascii_case("localhost") => &rest[i..],
        _ => return None,
    };
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    Some(PathBuf::from(decoded.into_owned()))
}

/// The `file:` URI of a path.
pub(crate) fn path_to_uri(path: &Path) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let text = path.to_string_lossy();
    format!(
        "file://{}",
        percent_encoding::utf8_percent_encode(&text, KEEP)
    )
}

/// A URI string as the protocol's type.
pub(crate) fn parse_uri(uri: &str) -> Option<Uri> {
    uri.parse().ok()
}
