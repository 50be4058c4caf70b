//! Hot reload (feature `reload`): watch a rules folder, and when its content changes, build
//! the whole new rule set before anything uses it.
//!
//! - File events are debounced: a save (or a burst of writes) is one reload.
//! - Editors' temporary and backup files (`.swp`, `~`, `.#x`, `4913`, anything not ending in
//!   `.rules`) are ignored; atomic saves by rename work; so does a folder mounted the way
//!   Kubernetes mounts a ConfigMap (its `..data` link swapped to a new directory).
//! - A reload that finds the same content as the loaded set (a touch, an editor's
//!   write-rename dance) is reported as `Unchanged`, not as a reload.
//! - The callback gets every outcome: a new set to swap in, or the diagnostics of a rejected
//!   edit while the old set stays. Watcher errors are reported too, never dropped.
//! - Every trigger (the watcher, SIGHUP, `POST /-/reload`) reloads through one
//!   [`RulesFolder`]: one list of files, one size limit, and one record of what is loaded,
//!   so that a reload by one trigger is known to the others.
//! - A [`Policy`] may ask more of a new folder: its `test` blocks pass
//!   ([`Outcome::TestsFailed`] otherwise), or, with [`Isolation::PerFile`], a file with
//!   errors keeps its last good version while the other files' edits apply
//!   ([`Outcome::Partial`]). [`RulesFolder::candidate`] answers what a reload would do
//!   without doing it (a dry run).
//!
//! ```no_run
//! use switchyard::reload::{Outcome, Reloader};
//! use switchyard::RuleSet;
//!
//! let current = RuleSet::load_dir("rules")?;
//! let reloader = Reloader::watch("rules", current.content_hash(), |outcome| match outcome {
//!     Outcome::Loaded(set) => println!("now {} rules", set.rule_count()),
//!     Outcome::Partial(set, held) => println!("now {} rules, {} files held", set.rule_count(), held.len()),
//!     Outcome::Rejected(e) => eprintln!("kept the old rules: {e}"),
//!     Outcome::TestsFailed(report) => eprintln!("kept the old rules:\n{report}"),
//!     Outcome::Unchanged => {}
//!     Outcome::WatchError(e) => eprintln!("{}: {e}", e.kind().label()),
//! })?;
//! reloader.trigger(); // reload now, as SIGHUP does
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};

use std::collections::BTreeMap;

use crate::diagnostic::Diagnostics;
use crate::engine::{RuleSet, TestReport, content_hash};
use crate::error::Error;

/// How long the folder must be quiet before a reload: one save is one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// How far apart two reads of the folder must agree before it is loaded: a file caught
/// between its truncation and its new content is not loaded.
pub const SETTLE: Duration = Duration::from_millis(20);

/// The longest a stream of events can delay a reload.
pub const MAX_DELAY: Duration = Duration::from_millis(1000);

/// What a reload found.
#[derive(Debug)]
pub enum Outcome {
    /// The folder changed and the new set loaded: swap it in.
    Loaded(RuleSet),
    /// The folder changed; some files have errors and run on their last good version
    /// (or, never having loaded, are left out) while every other file's edits apply
    /// (`isolation: per_file`, [`Policy`]). Swap the set in, and show what is held.
    Partial(RuleSet, Vec<HeldFile>),
    /// The folder changed and the new set has errors: keep the old one.
    Rejected(Error),
    /// The folder changed and loads, but its `test` blocks fail (`require_tests`,
    /// [`Policy`]): keep the old one.
    TestsFailed(TestReport),
    /// Something happened in the folder, but the rules files are as loaded.
    Unchanged,
    /// The watcher failed (a folder removed, an inotify limit; kind
    /// [`WatchErrorKind::Watch`]): reloads may be missed. Or the reload itself could not run
    /// ([`WatchErrorKind::Task`]): the rules in use stay.
    WatchError(WatchError),
}

/// What a reload asks of a new folder before it is used (`reload:` in the server's
/// config). The default is what a reload always did: the whole folder loads, or nothing
/// changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// The folder's `test` blocks must pass, or the reload is refused with their failures.
    pub require_tests: bool,
    /// How a folder with errors is treated.
    pub isolation: Isolation,
}

/// How a reload treats a folder in which some files have errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// One error anywhere keeps the whole running set (the default).
    #[default]
    Whole,
    /// A file with errors keeps its last good version and the other files' edits apply:
    /// one team's broken file cannot block another team's change.
    PerFile,
}

/// A file that runs on its last good version (or is left out) after a reload, and why.
#[derive(Clone, Debug)]
pub struct HeldFile {
    /// The file's name in the folder: `team-a.rules`.
    pub file: String,
    /// True when the file runs on its last good version; false when it never loaded and
    /// is left out.
    pub last_good: bool,
    /// The errors of its version in the folder.
    pub diagnostics: Diagnostics,
    /// Files held before it whose last good versions its new version does not fit (a
    /// target it uses that only their new versions declare); empty when its own errors
    /// hold it.
    pub depends_on: Vec<String>,
    /// What the other files use of its held version: `b.rules:3 posts to pager` for a
    /// target it declares. They keep working on the held version, and may break when the
    /// file is fixed.
    pub used_by: Vec<String>,
}

impl HeldFile {
    /// As `GET /api/rules` and a reload's answer show it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.file,
            "running": if self.last_good { "last_good" } else { "left_out" },
            "errors": self.diagnostics.error_count(),
            "diagnostics": self.diagnostics.to_json(),
            "depends_on": self.depends_on,
            "used_by": self.used_by,
        })
    }
}

/// A folder's files as read: path and bytes.
type Files = Vec<(PathBuf, Vec<u8>)>;

/// What the running set was built from.
#[derive(Debug)]
struct Loaded {
    /// [`content_hash`] of the folder as read for the set in use (its files' names and
    /// bytes; a set with held files differs from it).
    hash: u64,
    /// Each file's last version that loaded (by file name), for `isolation: per_file`;
    /// `None` when the folder was given only a hash ([`RulesFolder::new`]).
    good: Option<BTreeMap<String, Vec<u8>>>,
}

/// A folder's files and the set in use: the one way to reload it, whatever asks (the
/// watcher, SIGHUP, `POST /-/reload`).
#[derive(Debug)]
pub struct RulesFolder {
    dir: PathBuf,
    policy: Policy,
    loaded: std::sync::Mutex<Loaded>,
}

impl RulesFolder {
    /// The folder `dir`, whose set in use has content hash `loaded_hash`. Without the set
    /// itself, a file with errors cannot be held at its last good version: use
    /// [`RulesFolder::of_set`] for `isolation: per_file`.
    pub fn new(dir: impl Into<PathBuf>, loaded_hash: u64) -> RulesFolder {
        RulesFolder {
            dir: dir.into(),
            policy: Policy::default(),
            loaded: std::sync::Mutex::new(Loaded {
                hash: loaded_hash,
                good: None,
            }),
        }
    }

    /// The folder `dir`, whose set in use is `set` (its files are the last good versions).
    pub fn of_set(dir: impl Into<PathBuf>, set: &RuleSet) -> RulesFolder {
        let good = set
            .sources()
            .files()
            .map(|f| (f.short_name().to_owned(), f.text().as_bytes().to_vec()))
            .collect();
        RulesFolder {
            dir: dir.into(),
            policy: Policy::default(),
            loaded: std::sync::Mutex::new(Loaded {
                hash: set.content_hash(),
                good: Some(good),
            }),
        }
    }

    /// Reloads under `policy` (tests required, per-file isolation). The last good
    /// versions are kept only for `isolation: per_file`, which uses them.
    pub fn with_policy(mut self, policy: Policy) -> RulesFolder {
        self.policy = policy;
        if policy.isolation == Isolation::Whole {
            self.loaded
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .good = None;
        }
        self
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The policy reloads follow.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Reads the folder and loads it: `Loaded` when its content differs from the set in
    /// use (or always, with `force`, as SIGHUP and `POST /-/reload` ask), `Unchanged` when
    /// it is the set in use, `Rejected` with the diagnostics otherwise (or `Partial`,
    /// `TestsFailed` under a [`Policy`] that asks for them).
    pub fn reload(&self, force: bool) -> Outcome {
        match crate::load::read_rule_files(&self.dir) {
            Ok(files) => self.reload_files(files, force),
            Err(e) => Outcome::Rejected(e),
        }
    }

    /// What a reload would do now, without doing it: the folder read and built under the
    /// policy (`Loaded`, `Partial`, `Rejected`, `TestsFailed`), the set in use and the
    /// record of what is loaded untouched. A dry-run reload asks this.
    pub fn candidate(&self) -> Outcome {
        let files = match crate::load::read_rule_files(&self.dir) {
            Ok(files) => files,
            Err(e) => return Outcome::Rejected(e),
        };
        let loaded = self.lock();
        self.build(files, loaded.good.as_ref()).0
    }

    /// [`RulesFolder::candidate`] of other files in place of the folder's (a candidate
    /// folder sent to a dry run), by file name, in name order. The last good versions are
    /// the running set's, as for a reload.
    pub fn candidate_of(&self, files: Vec<(String, Vec<u8>)>) -> Outcome {
        let mut files: Files = files
            .into_iter()
            .map(|(name, bytes)| (self.dir.join(name), bytes))
            .collect();
        files.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
        let loaded = self.lock();
        self.build(files, loaded.good.as_ref()).0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// [`RulesFolder::reload`] from files already read (the watcher reads until two reads
    /// agree, then loads exactly those bytes).
    fn reload_files(&self, files: Files, force: bool) -> Outcome {
        let hash = files_hash(&files);
        // Held while loading: two triggers at once load one after the other, and each
        // compares with what the other loaded.
        let mut loaded = self.lock();
        if !force && hash == loaded.hash {
            return Outcome::Unchanged;
        }
        let (outcome, good) = self.build(files, loaded.good.as_ref());
        if matches!(outcome, Outcome::Loaded(_) | Outcome::Partial(..)) {
            loaded.hash = hash;
            if good.is_some() {
                loaded.good = good;
            }
        }
        outcome
    }

    /// Builds `files` under the policy; with the outcome, the last good version of each
    /// file once it is in use (`good` is what ran before).
    fn build(
        &self,
        files: Files,
        good: Option<&BTreeMap<String, Vec<u8>>>,
    ) -> (Outcome, Option<BTreeMap<String, Vec<u8>>>) {
        let now_good = |files: &Files, held: &[HeldFile]| -> BTreeMap<String, Vec<u8>> {
            let mut next: BTreeMap<String, Vec<u8>> = files
                .iter()
                .map(|(p, b)| (short_name(p).to_owned(), b.clone()))
                .collect();
            for h in held {
                match good.and_then(|g| g.get(&h.file)) {
                    Some(old) => next.insert(h.file.clone(), old.clone()),
                    None => next.remove(&h.file),
                };
            }
            next
        };
        let (Isolation::PerFile, Some(good)) = (self.policy.isolation, good) else {
            // Nothing to hold files at: the folder loads whole, or not at all.
            return match crate::Loader::new().load_files(&self.dir, files) {
                Ok(set) => (self.tested(set, Vec::new()), None),
                Err(e) => (Outcome::Rejected(e), None),
            };
        };
        let first = match crate::Loader::new().load_files(&self.dir, files.clone()) {
            Ok(set) => {
                let next = now_good(&files, &[]);
                return (self.tested(set, Vec::new()), Some(next));
            }
            Err(e) => e,
        };
        match isolate(&self.dir, &files, good, &first) {
            Some((set, held)) => {
                let next = now_good(&files, &held);
                (self.tested(set, held), Some(next))
            }
            None => (Outcome::Rejected(first), None),
        }
    }

    /// `set` as the outcome, once its tests pass if the policy requires them.
    fn tested(&self, set: RuleSet, held: Vec<HeldFile>) -> Outcome {
        if self.policy.require_tests {
            let report = set.run_tests();
            if report.failed() > 0 {
                return Outcome::TestsFailed(report);
            }
        }
        if held.is_empty() {
            Outcome::Loaded(set)
        } else {
            Outcome::Partial(set, held)
        }
    }
}

/// The name a file is known by in diagnostics and locations: its name in the folder.
fn short_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

/// [`content_hash`] of a folder's files as read.
fn files_hash(files: &Files) -> u64 {
    content_hash(files.iter().map(|(p, b)| (short_name(p), b.as_slice())))
}

/// `isolation: per_file`: the folder loaded with each file that has errors held at its
/// last good version (`good`), or left out when it never loaded. A file whose new version
/// does not fit the held ones is held too, in rounds (at most one per file). `None` when
/// the errors cannot be pinned on changed files: an error of the folder itself, or in a
/// file as it last loaded (another file's edit broke it: that edit is refused whole).
fn isolate(
    dir: &Path,
    files: &Files,
    good: &BTreeMap<String, Vec<u8>>,
    first: &Error,
) -> Option<(RuleSet, Vec<HeldFile>)> {
    let mut held: Vec<HeldFile> = Vec::new();
    let mut error = first.diagnostics()?.clone();
    for _ in 0..=files.len() {
        let before: Vec<String> = held.iter().map(|h| h.file.clone()).collect();
        let blamed = error.files_with_errors()?;
        let fresh: Vec<String> = blamed.into_iter().filter(|f| !before.contains(f)).collect();
        if fresh.is_empty() {
            return None;
        }
        for file in fresh {
            let changed = files
                .iter()
                .find(|(p, _)| short_name(p) == file)
                .is_some_and(|(_, bytes)| good.get(&file) != Some(bytes));
            if !changed {
                return None;
            }
            held.push(HeldFile {
                last_good: good.contains_key(&file),
                diagnostics: error.in_file(&file),
                depends_on: before.clone(),
                file,
                used_by: Vec::new(),
            });
        }
        let mixed: Files = files
            .iter()
            .filter_map(|(path, bytes)| {
                let name = short_name(path);
                if !held.iter().any(|h| h.file == name) {
                    return Some((path.clone(), bytes.clone()));
                }
                good.get(name).map(|old| (path.clone(), old.clone()))
            })
            .collect();
        match crate::Loader::new().load_files(dir, mixed) {
            Ok(set) => {
                for h in &mut held {
                    h.used_by = used_by(&set, &h.file);
                }
                return Some((set, held));
            }
            Err(e) => error = e.diagnostics()?.clone(),
        }
    }
    None
}

/// What other files of `set` use of what `file` declares: the rules that post to its
/// targets, and the targets that fall back to them.
fn used_by(set: &RuleSet, file: &str) -> Vec<String> {
    let in_file = |location: &str| location.rsplit_once(':').is_some_and(|(f, _)| f == file);
    let mut uses = Vec::new();
    for t in set.targets().iter().filter(|t| in_file(t.location())) {
        let post = format!("post {}", t.name());
        for r in set.rules().filter(|r| !in_file(&r.location)) {
            if r.actions.contains(&post) {
                uses.push(format!("{} posts to {}", r.location, t.name()));
            }
        }
        for other in set.targets().iter().filter(|o| !in_file(o.location())) {
            if other.fallback() == Some(t.name()) {
                uses.push(format!(
                    "target {} ({}) falls back to {}",
                    other.name(),
                    other.location(),
                    t.name()
                ));
            }
        }
    }
    uses
}

enum Signal {
    Event,
    Now,
    Error(notify::Error),
}

/// Watches a rules folder until dropped.
pub struct Reloader {
    tx: mpsc::Sender<Signal>,
    _watcher: notify::RecommendedWatcher,
}

/// Why watching could not start, or a reload could not run; the cause is chained
/// ([`std::error::Error::source`]).
#[derive(Debug)]
pub struct WatchError {
    kind: WatchErrorKind,
    failed: crate::error::Failed,
}

/// What kind of failure a [`WatchError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchErrorKind {
    /// The folder cannot be watched, or its watcher reported an error (the folder
    /// removed, an inotify limit): edits may be missed until a reload is asked for.
    Watch,
    /// The reload thread or task could not start or failed: the rules in use stay.
    Task,
}

impl WatchErrorKind {
    /// The `outcome` label of `switchyard_reloads_total` and the `status` of
    /// `POST /-/reload`: `watch_error`, `reload_error`.
    pub fn label(self) -> &'static str {
        match self {
            WatchErrorKind::Watch => "watch_error",
            WatchErrorKind::Task => "reload_error",
        }
    }
}

impl WatchError {
    /// A failure of `what`, caused by `source`.
    pub fn new(
        kind: WatchErrorKind,
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> WatchError {
        WatchError {
            kind,
            failed: crate::error::Failed::caused(what, source),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> WatchErrorKind {
        self.kind
    }
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.failed.fmt(f)
    }
}

impl std::error::Error for WatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failed.cause()
    }
}

impl Reloader {
    /// Starts watching `dir`. `loaded_hash` is [`RuleSet::content_hash`] of the set in use;
    /// `on_change` runs on the reloader's own thread for every outcome.
    pub fn watch(
        dir: impl Into<PathBuf>,
        loaded_hash: u64,
        on_change: impl FnMut(Outcome) + Send + 'static,
    ) -> Result<Reloader, WatchError> {
        Reloader::watch_folder(
            std::sync::Arc::new(RulesFolder::new(dir, loaded_hash)),
            on_change,
        )
    }

    /// Starts watching `folder`, which other triggers (SIGHUP, `POST /-/reload`) reload
    /// too: each knows what the others loaded.
    pub fn watch_folder(
        folder: std::sync::Arc<RulesFolder>,
        on_change: impl FnMut(Outcome) + Send + 'static,
    ) -> Result<Reloader, WatchError> {
        let dir = folder.dir().to_owned();
        let (tx, rx) = mpsc::channel::<Signal>();
        let events = tx.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let signal = match res {
                Ok(ev) if relevant(&ev) => Signal::Event,
                Ok(_) => return,
                Err(e) => Signal::Error(e),
            };
            // The reloader thread has stopped only when the Reloader is gone.
            let _ = events.send(signal);
        })
        .map_err(|e| watch_failed(&dir, e))?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| watch_failed(&dir, e))?;
        std::thread::Builder::new()
            .name(String::from("switchyard-reload"))
            .spawn(move || run(&folder, &rx, on_change))
            .map_err(|e| {
                WatchError::new(WatchErrorKind::Task, "cannot start the reload thread", e)
            })?;
        Ok(Reloader {
            tx,
            _watcher: watcher,
        })
    }

    /// Reloads now (SIGHUP), even if the content looks unchanged.
    pub fn trigger(&self) {
        let _ = self.tx.send(Signal::Now);
    }
}

/// The watcher of `dir` failed with `e`.
fn watch_failed(dir: &Path, e: notify::Error) -> WatchError {
    WatchError::new(
        WatchErrorKind::Watch,
        format!("cannot watch `{}`", dir.display()),
        e,
    )
}

fn run(folder: &RulesFolder, rx: &mpsc::Receiver<Signal>, mut on_change: impl FnMut(Outcome)) {
    let dir = folder.dir();
    while let Ok(first) = rx.recv() {
        let mut forced = matches!(first, Signal::Now);
        if let Signal::Error(e) = first {
            on_change(Outcome::WatchError(watch_failed(dir, e)));
            continue;
        }
        // Debounce: wait until the folder is quiet, but not forever.
        let started = Instant::now();
        loop {
            let left = MAX_DELAY.saturating_sub(started.elapsed());
            match rx.recv_timeout(DEBOUNCE.min(left)) {
                Ok(Signal::Now) => forced = true,
                Ok(Signal::Event) => {}
                Ok(Signal::Error(e)) => on_change(Outcome::WatchError(watch_failed(dir, e))),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if started.elapsed() >= MAX_DELAY {
                break;
            }
        }
        // Settle: two reads SETTLE apart must agree, and no file may be empty (a writer
        // truncates before it writes). A file that stays empty is loaded after the cap.
        let mut snap = snapshot(dir);
        let settle_started = Instant::now();
        loop {
            std::thread::sleep(SETTLE);
            let again = snapshot(dir);
            let stable = again == snap
                && again
                    .as_ref()
                    .is_some_and(|files| files.iter().all(|(_, b)| !b.is_empty()));
            snap = again;
            if stable || settle_started.elapsed() >= 2 * MAX_DELAY {
                break;
            }
        }
        // Build from the bytes that were checked, not from a second read of the files.
        on_change(match snap {
            Some(files) => folder.reload_files(files, forced),
            // Unreadable: the loader's own error says why.
            None => folder.reload(forced),
        });
    }
}

/// The folder's `.rules` files as every load reads them; `None` if the folder cannot be
/// read.
fn snapshot(dir: &Path) -> Option<Vec<(PathBuf, Vec<u8>)>> {
    crate::load::read_rule_files(dir).ok()
}

/// The content hash of the folder's rules files as [`RuleSet::content_hash`] computes it,
/// or `None` if the folder cannot be read.
pub fn folder_hash(dir: &Path) -> Option<u64> {
    snapshot(dir).map(|files| files_hash(&files))
}

/// Whether an event can change the rule set: a `.rules` file, or a ConfigMap's `..data`
/// link and timestamped folders; not an editor's temporary or backup file.
fn relevant(ev: &notify::Event) -> bool {
    if matches!(ev.kind, EventKind::Access(_)) {
        return false;
    }
    ev.paths.iter().any(|p| {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        let editor_temp = name.ends_with(".swp")
            || name.ends_with(".swx")
            || name.ends_with('~')
            || name.starts_with(".#")
            || name.starts_with('#')
            || name == "4913";
        !editor_temp && (name.ends_with(".rules") || name.starts_with(".."))
    })
}

#[cfg(test)]
#[path = "reload_test.rs"]
mod tests;
