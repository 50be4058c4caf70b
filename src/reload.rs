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
//!
//! ```no_run
//! use switchyard::reload::{Outcome, Reloader};
//! use switchyard::RuleSet;
//!
//! let current = RuleSet::load_dir("rules")?;
//! let reloader = Reloader::watch("rules", current.content_hash(), |outcome| match outcome {
//!     Outcome::Loaded(set) => println!("now {} rules", set.rule_count()),
//!     Outcome::Rejected(e) => eprintln!("kept the old rules: {e}"),
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

use crate::engine::{RuleSet, content_hash};
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
    /// The folder changed and the new set has errors: keep the old one.
    Rejected(Error),
    /// Something happened in the folder, but the rules files are as loaded.
    Unchanged,
    /// The watcher failed (a folder removed, an inotify limit; kind
    /// [`WatchErrorKind::Watch`]): reloads may be missed. Or the reload itself could not run
    /// ([`WatchErrorKind::Task`]): the rules in use stay.
    WatchError(WatchError),
}

/// A rules folder and the content of the set loaded from it: the one way to reload it,
/// whatever asks (the watcher, SIGHUP, `POST /-/reload`).
#[derive(Debug)]
pub struct RulesFolder {
    dir: PathBuf,
    /// [`RuleSet::content_hash`] of the set in use.
    loaded: std::sync::Mutex<u64>,
}

impl RulesFolder {
    /// The folder `dir`, whose set in use has content hash `loaded_hash`.
    pub fn new(dir: impl Into<PathBuf>, loaded_hash: u64) -> RulesFolder {
        RulesFolder {
            dir: dir.into(),
            loaded: std::sync::Mutex::new(loaded_hash),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the folder and loads it: `Loaded` when its content differs from the set in
    /// use (or always, with `force`, as SIGHUP and `POST /-/reload` ask), `Unchanged` when
    /// it is the set in use, `Rejected` with the diagnostics otherwise.
    pub fn reload(&self, force: bool) -> Outcome {
        match crate::load::read_rule_files(&self.dir) {
            Ok(files) => self.reload_files(files, force),
            Err(e) => Outcome::Rejected(e),
        }
    }

    /// [`RulesFolder::reload`] from files already read (the watcher reads until two reads
    /// agree, then loads exactly those bytes).
    fn reload_files(&self, files: Vec<(PathBuf, Vec<u8>)>, force: bool) -> Outcome {
        let hash = content_hash(files.iter().map(|(p, b)| {
            (
                p.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
                b.as_slice(),
            )
        }));
        // Held while loading: two triggers at once load one after the other, and each
        // compares with what the other loaded.
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !force && hash == *loaded {
            return Outcome::Unchanged;
        }
        match crate::Loader::new().load_files(&self.dir, files) {
            Ok(set) => {
                *loaded = set.content_hash();
                Outcome::Loaded(set)
            }
            Err(e) => Outcome::Rejected(e),
        }
    }
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
    let files = snapshot(dir)?;
    Some(content_hash(files.iter().map(|(p, b)| {
        (
            p.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
            b.as_slice(),
        )
    })))
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
