//! The pipeline: read the folder, parse every file, check them as one set, compile. On a
//! large folder the parse runs on several threads, and the reach analysis and the content
//! hash on a thread of their own beside the check and the compile.
//!
//! Owns: which files of a folder count (`*.rules`, not hidden ones such as an editor's
//! `.#x.rules`, in name order) and how much is read ([`MAX_FILES`], [`MAX_TOTAL_BYTES`]): the one file list and
//! the one limit every reload trigger uses. Never: watches anything, or gives back a rule
//! set with an error in it (a folder loads whole or not at all).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::check;
use crate::diagnostic::{Diagnostic, Diagnostics, FileId, SourceMap, Span, codes};
use crate::engine::{Beside, RuleSet};
use crate::error::Error;
use crate::syntax::{self, MAX_FILE_BYTES};

/// The most `.rules` files a folder may hold.
pub const MAX_FILES: usize = 10_000;

/// The most bytes all files of a folder may hold together.
pub const MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;

/// Loads rule sets, with options. [`RuleSet::load_dir`] is `Loader::new().load_dir(..)`.
///
/// ```
/// use switchyard::Loader;
/// let rules = Loader::new()
///     .env(|name| (name == "TOKEN").then(|| String::from("secret")))
///     .from_files([("a.rules", r#"target t { url = "https://example.test/${env.TOKEN}" }
///                                 when status == "OK" -> post t"#)])?;
/// let shown = rules.target("t").map(|t| t.url_display());
/// assert_eq!(shown.as_deref(), Some("https://example.test/${env.TOKEN}"));
/// # Ok::<(), switchyard::Error>(())
/// ```
pub struct Loader<'e> {
    env: Box<EnvFn<'e>>,
    /// `None`: the CPUs available, asked only when a folder is large enough to use them.
    threads: Option<usize>,
}

/// Reads one environment variable by name.
type EnvFn<'e> = dyn Fn(&str) -> Option<String> + 'e;

impl Default for Loader<'_> {
    fn default() -> Self {
        Loader::new()
    }
}

impl<'e> Loader<'e> {
    /// A loader that reads `${env.NAME}` from the process environment.
    pub fn new() -> Loader<'e> {
        Loader {
            env: Box::new(|name| std::env::var(name).ok()),
            threads: None,
        }
    }

    /// Parses on at most `n` threads, the calling one included (default: the CPUs
    /// available, at most 8; `1` parses on the calling thread only). Large files are cut at
    /// item boundaries and parsed side by side; a folder under 64 KiB is parsed on the
    /// calling thread. On a folder that is parsed on several threads (and holds at most
    /// 8 MiB), the analysis behind W0501-W0505 then runs on one more thread, beside the
    /// check and the compile. The
    /// result, warnings included, does not depend on `n`.
    ///
    /// ```
    /// use switchyard::Loader;
    /// let mut text = String::from("target t { url = \"https://example.test\" }\n");
    /// for i in 0..2_000 {
    ///     text.push_str(&format!("when metricName == \"m_{i}\" -> post t\n"));
    /// }
    /// let one = Loader::new().threads(1).from_files([("a.rules", text.as_str())])?;
    /// let four = Loader::new().threads(4).from_files([("a.rules", text.as_str())])?;
    /// assert_eq!(one.rule_count(), 2_000);
    /// assert_eq!(four.rule_count(), one.rule_count());
    /// let alert = switchyard::Alert::new(serde_json::json!({"metricName": "m_1999"}));
    /// let fired = |set: &switchyard::RuleSet| {
    ///     set.evaluate(&alert).rule_ids().map(String::from).collect::<Vec<_>>()
    /// };
    /// assert_eq!(fired(&four), ["a.rules:2001"]);
    /// assert_eq!(fired(&four), fired(&one));
    /// # Ok::<(), switchyard::Error>(())
    /// ```
    pub fn threads(mut self, n: usize) -> Loader<'e> {
        self.threads = Some(n.max(1));
        self
    }

    /// Reads `${env.NAME}` from `lookup` instead of the process environment.
    pub fn env(mut self, lookup: impl Fn(&str) -> Option<String> + 'e) -> Loader<'e> {
        self.env = Box::new(lookup);
        self
    }

    /// Loads every `*.rules` file of a folder, in file-name order.
    pub fn load_dir(&self, dir: impl AsRef<Path>) -> Result<RuleSet, Error> {
        let dir = dir.as_ref();
        self.load_files(dir, read_rule_files(dir)?)
    }

    /// Loads a folder's files as [`read_rule_files`] read them (a reload reads them once,
    /// compares, then builds from the same bytes).
    pub(crate) fn load_files(
        &self,
        dir: &Path,
        files: Vec<(PathBuf, Vec<u8>)>,
    ) -> Result<RuleSet, Error> {
        if files.is_empty() {
            let d = Diagnostic::error(
                codes::BAD_FILE,
                format!("no `.rules` files in `{}`", dir.display()),
            )
            .with_help(format!(
                "add a rules file, such as `{}`",
                dir.join("00-targets.rules").display()
            ));
            return Err(Error::rules(Diagnostics::new(
                Arc::new(SourceMap::default()),
                vec![d],
            )));
        }
        self.from_bytes(
            files
                .into_iter()
                .map(|(path, bytes)| (path.display().to_string(), bytes)),
        )
    }

    /// Loads rules from `(file name, text)` pairs, in the order given.
    pub fn from_files<N: Into<String>, T: Into<String>>(
        &self,
        files: impl IntoIterator<Item = (N, T)>,
    ) -> Result<RuleSet, Error> {
        self.from_bytes(files.into_iter().map(|(n, t)| (n, t.into().into_bytes())))
    }

    /// Loads rules from `(file name, bytes)` pairs, in the order given, as a daemon that
    /// receives its rules from elsewhere (a config store, a ConfigMap) would. Bytes that are
    /// not UTF-8 or too large are diagnostics with a position, like any other problem.
    pub fn from_bytes<N: Into<String>>(
        &self,
        files: impl IntoIterator<Item = (N, Vec<u8>)>,
    ) -> Result<RuleSet, Error> {
        let mut sources = SourceMap::default();
        let mut texts = Vec::new();
        let mut problems = Vec::new();
        let mut total = 0usize;
        for (name, bytes) in files {
            let name = name.into();
            total += bytes.len();
            if bytes.len() > MAX_FILE_BYTES || total > MAX_TOTAL_BYTES {
                let id = sources.add(name, "");
                problems.push(too_large(id, bytes.len() > MAX_FILE_BYTES, bytes.len()));
                continue;
            }
            match String::from_utf8(bytes) {
                Ok(text) => {
                    let id = sources.add(name, text);
                    texts.push(id);
                }
                Err(e) => {
                    let at = e.utf8_error().valid_up_to();
                    let id = sources.add(name, String::from_utf8_lossy(e.as_bytes()).into_owned());
                    problems.push(not_utf8(id, at));
                }
            }
        }
        self.finish(sources, texts, problems)
    }

    fn finish(
        &self,
        sources: SourceMap,
        texts: Vec<FileId>,
        mut problems: Vec<Diagnostic>,
    ) -> Result<RuleSet, Error> {
        let texts: Vec<(FileId, &str)> = texts
            .into_iter()
            .filter_map(|id| sources.get(id).map(|f| (id, f.text())))
            .collect();
        let total = texts.iter().map(|(_, text)| text.len()).sum();
        let helped = syntax::threads_for(self.threads, total, syntax::PIECE_BYTES) > 1;
        let mut files = Vec::with_capacity(texts.len());
        let mut unparsed_targets = Vec::new();
        let mut unparsed_windows = Vec::new();
        let parsed = syntax::parse_files(&texts, self.threads, syntax::PIECE_BYTES);
        for ((_, text), result) in texts.iter().zip(parsed) {
            match result {
                Ok(ast) => files.push(ast),
                Err(ds) => {
                    problems.extend(ds);
                    unparsed_targets.extend(syntax::declared_names(text, "target"));
                    unparsed_windows.extend(syntax::declared_names(text, "window"));
                }
            }
        }
        drop(texts);
        let sources = Arc::new(sources);
        let unparsed = check::Unparsed {
            targets: &unparsed_targets,
            windows: &unparsed_windows,
            any_file_failed: !problems.is_empty(),
        };
        std::thread::scope(|s| {
            // On a folder large enough to parse on several threads, the analysis of what
            // rules can reach and the content hash are worked out on a thread of their own,
            // while this one checks and compiles: both only read the files (the checked
            // rules borrow from them). A thread the system refuses is no error: the check
            // then analyses here.
            let files = &files;
            let helper = helped
                .then(|| {
                    let sources = &*sources;
                    std::thread::Builder::new()
                        .name(String::from("switchyard-check"))
                        .stack_size(syntax::STACK_BYTES)
                        .spawn_scoped(s, move || {
                            Beside::of(sources, check::analyse(files, sources))
                        })
                        .ok()
                })
                .flatten();
            let analyse_here = helper.is_none();
            match check::check(files, unparsed, &sources, &*self.env, analyse_here) {
                Ok(checked) if problems.is_empty() => Ok(RuleSet::compile(
                    checked,
                    sources.clone(),
                    || match helper {
                        Some(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                        None => Beside::of(&sources, Vec::new()),
                    },
                )),
                Ok(checked) => {
                    problems.extend(checked.warnings);
                    Err(Error::rules(Diagnostics::new(sources.clone(), problems)))
                }
                Err(ds) => {
                    problems.extend(ds);
                    Err(Error::rules(Diagnostics::new(sources.clone(), problems)))
                }
            }
        })
    }
}

fn too_large(file: FileId, one_file: bool, len: usize) -> Diagnostic {
    let what = if one_file {
        format!(
            "rules file is too large ({len} bytes, the limit is {} MiB)",
            MAX_FILE_BYTES >> 20
        )
    } else {
        format!(
            "the rules folder holds more than {} MiB",
            MAX_TOTAL_BYTES >> 20
        )
    };
    Diagnostic::error(codes::BAD_FILE, what)
        .with_primary(Span::new(file, 0, 0), "this file")
        .with_help("split the rules across smaller files, and keep data out of the rules folder")
}

fn not_utf8(file: FileId, at: usize) -> Diagnostic {
    Diagnostic::error(codes::BAD_FILE, "rules file is not valid UTF-8")
        .with_primary(Span::new(file, at, at + 1), "invalid byte here")
        .with_help("save the file as UTF-8; rules files are text")
}

/// The `*.rules` files of a folder, sorted by file name. Hidden files (`.#x.rules`, `..data`)
/// and anything that is not a file are skipped; links to files are followed, as a
/// Kubernetes ConfigMap mount needs.
/// The `*.rules` files of a folder that a load reads, in file-name order, with their bytes:
/// the one definition of which files count (not hidden, ending in `.rules`, a file or a
/// link to one) and of how much is read (a file over the size limit is not read, and is
/// reported by its size when loaded). Every load and every reload reads a folder so.
pub(crate) fn read_rule_files(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, Error> {
    let paths = rule_files(dir)?;
    let mut files = Vec::with_capacity(paths.len());
    let mut total = 0u64;
    for path in paths {
        let len = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        // Never read more than the limits: a too-large file (or folder) is reported by size.
        total = total.saturating_add(len);
        let bytes = if len > MAX_FILE_BYTES as u64 || total > MAX_TOTAL_BYTES as u64 {
            vec![0; MAX_FILE_BYTES.min(len as usize) + 1]
        } else {
            std::fs::read(&path).map_err(|e| Error::io(&path, e))?
        };
        files.push((path, bytes));
    }
    Ok(files)
}

fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".rules") {
            continue;
        }
        let path = entry.path();
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            out.push(path);
        }
        if out.len() > MAX_FILES {
            return Err(Error::io(
                dir,
                std::io::Error::other(format!(
                    "the folder holds more than {MAX_FILES} .rules files"
                )),
            ));
        }
    }
    out.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(out)
}

impl RuleSet {
    /// Loads every `*.rules` file of a folder (in file-name order), checks them as one set,
    /// and compiles them. `Err` carries every diagnostic of every file.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<RuleSet, Error> {
        Loader::new().load_dir(dir)
    }

    /// Loads rules from `(file name, text)` pairs, in the order given.
    pub fn from_files<N: Into<String>, T: Into<String>>(
        files: impl IntoIterator<Item = (N, T)>,
    ) -> Result<RuleSet, Error> {
        Loader::new().from_files(files)
    }
}

#[cfg(test)]
#[path = "load_test.rs"]
mod tests;
