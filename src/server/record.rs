//! Recording live traffic (`record:`, off by default): a bounded, rotating sample of the
//! payloads senders posted, on disk, for `switchyard diff`, `switchyard test --coverage
//! --alerts` and `POST /-/reload?dry_run=true`.
//!
//! Owns: choosing what is kept (one request in `one_in`, accepted requests only), the
//! writer thread (parsing, redacting and writing happen there, never on the request's
//! path), rotation (the sample is `files` files of at most `max_mb / files` each; the
//! oldest is removed when a new one starts), and its counters. Never: blocks or fails an
//! ingest (a full queue, a full disk or a write error drops the sample line, counted and
//! logged), stores a request's headers or query string, or writes a secret (the line
//! format's [`crate::recording::redact`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::metrics::counter::Counter;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderValue;
use serde::Deserialize;

use crate::alert::Source;

/// `record:` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// Whether accepted requests are recorded (false).
    pub enabled: bool,
    /// The folder (`<data>/recorded`).
    pub dir: Option<PathBuf>,
    /// The most the recording takes on disk, all files together, in MiB (64).
    pub max_mb: u64,
    /// How many files the recording rotates through (8): the oldest goes when a new one
    /// starts, so the sample holds the most recent `max_mb` at least `(files-1)/files`
    /// full.
    pub files: u64,
    /// Keep one accepted request in this many (1: every one).
    pub one_in: u64,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            enabled: false,
            dir: None,
            max_mb: 64,
            files: 8,
            one_in: 1,
        }
    }
}

impl RecordConfig {
    /// The folder recorded into, for a data directory.
    pub fn folder(&self, data: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data.join("recorded"))
    }

    /// The settings, checked: each mistake named with its key and a fix.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !(1..=100_000).contains(&self.max_mb) {
            return Err(format!(
                "record.max_mb: {} is out of range: 1 to 100000 (MiB on disk, all files together)",
                self.max_mb
            ));
        }
        if !(2..=1000).contains(&self.files) {
            return Err(format!(
                "record.files: {} is out of range: 2 to 1000 (the oldest file goes when a new one starts)",
                self.files
            ));
        }
        if self.one_in == 0 {
            return Err(String::from(
                "record.one_in: 0 keeps nothing; give 1 to keep every request, or N for one in N (or set record.enabled: false)",
            ));
        }
        Ok(())
    }
}

/// Bytes of request bodies waiting for the writer, all together: beyond it a request is
/// not recorded (counted as dropped).
const MAX_QUEUED_BYTES: usize = 32 << 20;

/// The most requests waiting for the writer.
const MAX_QUEUED_REQUESTS: usize = 65_536;

/// How often the writer takes what waits.
const WRITE_EVERY: Duration = Duration::from_millis(50);

/// How often a failing write is logged again.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// One request to record.
struct Job {
    body: Bytes,
    content_type: Option<HeaderValue>,
    source: Source,
    at: jiff::Timestamp,
}

/// The recording's counters, for `/metrics` (shared with the registry).
#[derive(Default, Debug)]
pub(crate) struct RecordStats {
    /// Requests written.
    pub written: Counter,
    /// Requests not written: the queue full, a line over a file's size, a write failed.
    pub dropped: Counter,
    /// Secrets replaced before writing.
    pub redacted: Counter,
}

/// The recorder: hands accepted requests to its writer thread. Dropping it stops the
/// thread once what waits is written.
pub(crate) struct Recorder {
    /// Requests waiting for the writer, which takes them every [`WRITE_EVERY`]: a request
    /// pushes under a lock and wakes no thread (on a busy core, a wake-up per request cost
    /// more than the writing).
    queue: Arc<Queue>,
    queued: Arc<AtomicUsize>,
    seen: AtomicU64,
    one_in: u64,
    pub(crate) stats: Arc<RecordStats>,
    dir: PathBuf,
}

impl Recorder {
    /// Starts recording into `dir` (created if missing): an error when it cannot be made or
    /// written, said at start rather than discovered on the first alert.
    pub(crate) fn start(cfg: &RecordConfig, dir: PathBuf) -> Result<Recorder, String> {
        cfg.check()?;
        std::fs::create_dir_all(&dir).map_err(|e| {
            format!(
                "record.dir: cannot create `{}`: {e}; give a writable folder",
                dir.display()
            )
        })?;
        let probe = dir.join(".switchyard-write-probe");
        std::fs::write(&probe, b"").map_err(|e| {
            format!(
                "record.dir: cannot write in `{}`: {e}; give a writable folder",
                dir.display()
            )
        })?;
        let _ = std::fs::remove_file(&probe);
        let file_cap = cfg.max_mb.saturating_mul(1 << 20) / cfg.files;
        let mut writer = Writer {
            dir: dir.clone(),
            file_cap,
            files: cfg.files,
            current: None,
            next_number: next_number(&dir),
            last_error_log: None,
            paused_until: None,
        };
        let queue = Arc::new(Queue::default());
        let queued = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(RecordStats::default());
        let (jobs, q, st) = (queue.clone(), queued.clone(), stats.clone());
        std::thread::Builder::new()
            .name(String::from("switchyard-record"))
            .spawn(move || {
                loop {
                    let stopping = jobs.stopping.load(Ordering::Acquire);
                    let batch = std::mem::take(&mut *jobs.lock());
                    for job in batch {
                        let len = job.body.len();
                        writer.write(job, &st);
                        q.fetch_sub(len, Ordering::Relaxed);
                    }
                    // Flushed after each batch: a dry run reads what was accepted.
                    writer.flush(&st);
                    if stopping {
                        return;
                    }
                    std::thread::sleep(WRITE_EVERY);
                }
            })
            .map_err(|e| format!("cannot start the recording thread: {e}"))?;
        tracing::info!(dir = %dir.display(), max_mb = cfg.max_mb, files = cfg.files, one_in = cfg.one_in, "recording accepted requests (secrets redacted)");
        Ok(Recorder {
            queue,
            queued,
            seen: AtomicU64::new(0),
            one_in: cfg.one_in,
            stats,
            dir,
        })
    }

    /// The folder recorded into.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records an accepted request's body (shared, not copied), read as `source`, if it is
    /// one the sample keeps. Never waits.
    pub(crate) fn offer(
        &self,
        body: &Bytes,
        content_type: Option<&HeaderValue>,
        source: Source,
        at: jiff::Timestamp,
    ) {
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        if !n.is_multiple_of(self.one_in) {
            return;
        }
        let len = body.len();
        if self.queued.fetch_add(len, Ordering::Relaxed) + len > MAX_QUEUED_BYTES {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.stats.dropped.inc();
            return;
        }
        let job = Job {
            body: body.clone(),
            content_type: content_type.cloned(),
            source,
            at,
        };
        let mut jobs = self.queue.lock();
        if jobs.len() >= MAX_QUEUED_REQUESTS {
            drop(jobs);
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.stats.dropped.inc();
            return;
        }
        jobs.push(job);
    }
}

impl Drop for Recorder {
    /// The writer writes what waits, then stops.
    fn drop(&mut self) {
        self.queue.stopping.store(true, Ordering::Release);
    }
}

/// The requests waiting for the writer, and whether it should stop.
#[derive(Default)]
struct Queue {
    jobs: std::sync::Mutex<Vec<Job>>,
    stopping: std::sync::atomic::AtomicBool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The number the next file starts at: one past the highest in the folder (a restart
/// never appends to a file whose last line may be torn).
fn next_number(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| crate::recording::file_number(e.file_name().to_str()?))
        .max()
        .map_or(1, |n| n + 1)
}

/// The writer thread's side: the open file and rotation.
struct Writer {
    dir: PathBuf,
    file_cap: u64,
    files: u64,
    /// The file being written and its size so far.
    current: Option<(std::io::BufWriter<std::fs::File>, u64)>,
    next_number: u64,
    last_error_log: Option<Instant>,
    /// After a failed write, nothing is tried until then: a full disk is not asked again
    /// for every line, nor rotated through.
    paused_until: Option<Instant>,
}

/// How long writing pauses after a failure.
const PAUSE_AFTER_ERROR: Duration = Duration::from_secs(5);

impl Writer {
    fn write(&mut self, job: Job, stats: &RecordStats) {
        if self.paused_until.is_some_and(|t| Instant::now() < t) {
            stats.dropped.inc();
            return;
        }
        // A JSON body without anything to redact is written as it came; anything else
        // (a form, a body that may hold a secret) is parsed and redacted first.
        let json = super::is_form(job.content_type.as_ref(), &job.body).is_ok_and(|form| !form);
        let fast = json
            .then(|| crate::recording::line_from_json(job.source, job.at, &job.body))
            .flatten();
        let mut line = match fast {
            Some(line) => line,
            None => {
                let Ok(mut value) = super::parse_payload(job.content_type.as_ref(), &job.body)
                else {
                    // Accepted requests parsed before: only a body changed since could fail.
                    stats.dropped.inc();
                    return;
                };
                let redacted = crate::recording::redact(&mut value);
                stats.redacted.inc_by(redacted as u64);
                crate::recording::line(job.source, job.at, value)
            }
        };
        line.push('\n');
        let len = line.len() as u64;
        if len > self.file_cap || len > crate::recording::MAX_LINE_BYTES {
            stats.dropped.inc();
            return;
        }
        if self
            .current
            .as_ref()
            .is_none_or(|(_, size)| size + len > self.file_cap)
            && let Err(e) = self.rotate()
        {
            self.failed("cannot start a recording file", &e, stats);
            return;
        }
        let Some((file, size)) = self.current.as_mut() else {
            return;
        };
        match file.write_all(line.as_bytes()) {
            Ok(()) => {
                *size += len;
                stats.written.inc();
            }
            Err(e) => {
                // The next line starts a new file: this one may end in a torn line.
                self.current = None;
                self.failed("cannot write the recording", &e, stats);
            }
        }
    }

    fn flush(&mut self, stats: &RecordStats) {
        if let Some((file, _)) = self.current.as_mut()
            && let Err(e) = file.flush()
        {
            self.current = None;
            self.failed("cannot write the recording", &e, stats);
        }
    }

    /// Starts the next file and removes the oldest beyond `files`.
    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some((mut old, _)) = self.current.take() {
            old.flush()?;
        }
        let path = self.dir.join(crate::recording::file_name(self.next_number));
        self.next_number += 1;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        self.current = Some((std::io::BufWriter::with_capacity(64 << 10, file), 0));
        let mut numbers: Vec<u64> = std::fs::read_dir(&self.dir)?
            .flatten()
            .filter_map(|e| crate::recording::file_number(e.file_name().to_str()?))
            .collect();
        numbers.sort_unstable();
        let excess = numbers.len().saturating_sub(self.files as usize);
        for n in &numbers[..excess] {
            let _ = std::fs::remove_file(self.dir.join(crate::recording::file_name(*n)));
        }
        Ok(())
    }

    /// A failed write: dropped and counted, logged at most once a minute.
    fn failed(&mut self, what: &str, e: &std::io::Error, stats: &RecordStats) {
        stats.dropped.inc();
        self.paused_until = Some(Instant::now() + PAUSE_AFTER_ERROR);
        if self
            .last_error_log
            .is_none_or(|t| t.elapsed() >= ERROR_LOG_EVERY)
        {
            self.last_error_log = Some(Instant::now());
            tracing::warn!(dir = %self.dir.display(), error = %e, "{what}; recorded samples are dropped (ingest is not affected) until it works again");
        }
    }
}

#[cfg(test)]
#[path = "record_test.rs"]
mod tests;
