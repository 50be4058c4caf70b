//! Recorded traffic: the one-payload-a-line format the server's recording writes and
//! `switchyard diff`, `switchyard test --coverage --alerts` and a dry-run reload read.
//!
//! A line is either a sender's payload as it came (JSON; what a user writes by hand), or
//! what the server records:
//!
//! ```json
//! {"@recorded": {"source": "alertmanager", "at": "2026-11-30T10:00:00Z"}, "payload": {...}}
//! ```
//!
//! `source` is the sender the payload was read as, `at` when it was received (what
//! `during` windows are decided at when it is replayed).
//!
//! Owns: the line format, which values count as secrets and are never written
//! ([`redact`]), and reading a recording (a file, or a folder of rotated files) one line at
//! a time in bounded memory. Never: stores a request's headers or query string (where
//! credentials travel), or reads a line longer than [`MAX_LINE_BYTES`].

use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::alert::{Alert, Source, adapt_json_at};

/// The key of a recorded line's envelope.
pub const RECORDED_KEY: &str = "@recorded";

/// The longest line a recording may hold.
pub const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;

/// What a value under a secret key is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Words that make a key's value a secret, compared with the key lowercased and stripped
/// of `_`, `-`, `.` and spaces: `X-Api-Key`, `access_token`, Alibaba's `signature`.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "signature",
    "authorization",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
    "cookie",
    "sessionid",
];

/// Whether a key names a secret.
fn secret_key(key: &str) -> bool {
    let folded: String = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_WORDS.iter().any(|w| folded.contains(w))
}

/// Replaces every secret in `value` with [`REDACTED`]; returns how many were replaced:
///
/// - the value of a key that names a secret (`password`, `token`, `signature`, `apiKey`,
///   `Authorization`, ...), whatever it holds;
/// - a string holding credentials: `Bearer ...` or `Basic ...`, and the user and
///   password of a URL (`https://user:pass@host/` keeps its host and path).
///
/// ```
/// let mut v = serde_json::json!({"signature": "k7Qm", "labels": {"api_key": "x"},
///     "url": "https://u:p@example.test/a", "alertname": "Cpu"});
/// assert_eq!(switchyard::recording::redact(&mut v), 3);
/// assert_eq!(v, serde_json::json!({"signature": "[redacted]", "labels": {"api_key": "[redacted]"},
///     "url": "https://[redacted]@example.test/a", "alertname": "Cpu"}));
/// ```
pub fn redact(value: &mut Value) -> usize {
    // Iterative: a payload nested a thousand deep does not recurse a thousand frames.
    let mut count = 0;
    let mut stack: Vec<&mut Value> = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if secret_key(k) && !child.is_null() {
                        *child = Value::String(REDACTED.to_owned());
                        count += 1;
                    } else {
                        stack.push(child);
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::String(s) => {
                if let Some(clean) = redact_text(s) {
                    *s = clean;
                    count += 1;
                }
            }
            _ => {}
        }
    }
    count
}

/// What may hold a secret in a payload's raw bytes: each secret word with any of the
/// separators [`secret_key`] ignores between its letters, `Bearer ` and `Basic `, a URL's
/// `@`, and a `\u` escape (a key spelled with escapes is read as [`redact`] reads it only
/// once parsed). A superset of what [`redact`] replaces: bytes it does not match hold
/// nothing to redact.
fn may_hold_secret(raw: &[u8]) -> bool {
    static SCAN: std::sync::LazyLock<Option<regex::bytes::Regex>> =
        std::sync::LazyLock::new(|| {
            let mut alternatives: Vec<String> = SECRET_WORDS
                .iter()
                .map(|w| {
                    w.chars()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join("[-_. ]*")
                })
                .collect();
            alternatives.extend(["bearer ".into(), "basic ".into(), "@".into()]);
            alternatives.push(String::from(r"\\u"));
            regex::bytes::Regex::new(&format!("(?i){}", alternatives.join("|"))).ok()
        });
    // Without the scanner (it always builds), every payload takes the careful path.
    SCAN.as_ref().is_none_or(|re| re.is_match(raw))
}

/// [`line()`] straight from a JSON payload's bytes as the sender posted them, without
/// parsing them again: `None` when the bytes may hold a secret (a scan that finds more
/// than [`redact`] would replace) or a line break, for [`line()`] to take the careful way. `raw` must be a JSON document (a
/// body the server already parsed).
pub fn line_from_json(source: Source, at: jiff::Timestamp, raw: &[u8]) -> Option<String> {
    if raw.contains(&b'\n') || raw.contains(&b'\r') || may_hold_secret(raw) {
        return None;
    }
    let text = std::str::from_utf8(raw).ok()?;
    Some(format!(
        "{{\"{RECORDED_KEY}\":{{\"at\":\"{at}\",\"source\":\"{}\"}},\"payload\":{text}}}",
        source.as_str()
    ))
}

/// A string without the credentials it holds, or `None` when it holds none.
fn redact_text(s: &str) -> Option<String> {
    let lower = s.trim_start().get(..7).map(str::to_ascii_lowercase);
    if lower
        .as_deref()
        .is_some_and(|p| p.starts_with("bearer ") || p.starts_with("basic "))
    {
        return Some(REDACTED.to_owned());
    }
    // `scheme://user:password@host...`: the user information goes.
    let scheme_end = s.find("://")?;
    let rest = &s[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    Some(format!("{}://{REDACTED}{}", &s[..scheme_end], &rest[at..]))
}

/// One recorded line: `payload` (redacted first) as read from `source` at `at`.
///
/// ```
/// use switchyard::recording;
/// let at: jiff::Timestamp = "2026-11-30T10:00:00Z".parse().unwrap();
/// let line = recording::line(switchyard::Source::Generic, at, serde_json::json!({"token": "t", "sev": "high"}));
/// assert_eq!(line, r#"{"@recorded":{"at":"2026-11-30T10:00:00Z","source":"generic"},"payload":{"sev":"high","token":"[redacted]"}}"#);
/// let alerts = recording::alerts_of(line.as_bytes(), None, None).unwrap();
/// assert_eq!(alerts[0].received_at(), at);
/// ```
pub fn line(source: Source, at: jiff::Timestamp, mut payload: Value) -> String {
    redact(&mut payload);
    let mut envelope = Map::new();
    envelope.insert(
        RECORDED_KEY.to_owned(),
        serde_json::json!({"source": source.as_str(), "at": at.to_string()}),
    );
    envelope.insert(String::from("payload"), payload);
    Value::Object(envelope).to_string()
}

/// The alerts of one line: a recorded envelope read as its sender at its moment, or a
/// payload as it came, read as `source` (detected when `None`) at `at` (now when `None`).
/// `source` and `at` given override what the envelope says.
pub fn alerts_of(
    line: &[u8],
    source: Option<Source>,
    at: Option<jiff::Timestamp>,
) -> Result<Vec<Alert>, String> {
    let doc: Value = serde_json::from_slice(line)
        .map_err(|e| format!("not a JSON document ({e}); write one alert a line"))?;
    let (doc, recorded_source, recorded_at) = match doc {
        Value::Object(mut map) if map.len() == 2 && map.contains_key(RECORDED_KEY) => {
            let meta = map.remove(RECORDED_KEY).unwrap_or(Value::Null);
            let payload = map
                .remove("payload")
                .ok_or("a recorded line without its `payload`")?;
            let src = match meta.get("source").and_then(Value::as_str) {
                Some(name) => Some(
                    Source::from_name(name)
                        .ok_or_else(|| format!("a recorded line of an unknown source `{name}`"))?,
                ),
                None => None,
            };
            let when = match meta.get("at").and_then(Value::as_str) {
                Some(t) => Some(
                    t.parse::<jiff::Timestamp>()
                        .map_err(|e| format!("a recorded line's `at` is not a time: {e}"))?,
                ),
                None => None,
            };
            (payload, src, when)
        }
        doc => (doc, None, None),
    };
    let source = source.or(recorded_source);
    let at = at.or(recorded_at).unwrap_or_else(jiff::Timestamp::now);
    adapt_json_at(source, doc, at).map_err(|e| format!("not an alert: {e}"))
}

/// The files of a recording: `path` itself, or the `recorded-*.jsonl` files of a folder
/// (what the server writes) oldest first. `-` is standard input.
pub fn files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if path == Path::new("-") || !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(FILE_PREFIX) && name.ends_with(FILE_SUFFIX) {
            out.push(entry.path());
        }
    }
    // Numbered with leading zeros: the name's order is the writing order.
    out.sort();
    Ok(out)
}

/// What the server's recording files are called: `recorded-0000000042.jsonl`.
pub const FILE_PREFIX: &str = "recorded-";

/// See [`FILE_PREFIX`].
pub const FILE_SUFFIX: &str = ".jsonl";

/// A recorded file's name for its number.
pub fn file_name(number: u64) -> String {
    format!("{FILE_PREFIX}{number:010}{FILE_SUFFIX}")
}

/// The number in a recorded file's name.
pub fn file_number(name: &str) -> Option<u64> {
    name.strip_prefix(FILE_PREFIX)?
        .strip_suffix(FILE_SUFFIX)?
        .parse()
        .ok()
}

/// Why a recording could not be read, or a line of it not used.
#[derive(Debug)]
pub enum ReadError {
    /// The file cannot be read.
    Io(PathBuf, std::io::Error),
    /// A line is longer than [`MAX_LINE_BYTES`], or not an alert.
    Line {
        /// The file.
        file: PathBuf,
        /// Its 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(file, e) => write!(f, "cannot read `{}`: {e}", file.display()),
            ReadError::Line {
                file,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", file.display()),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Io(_, e) => Some(e),
            ReadError::Line { .. } => None,
        }
    }
}

/// Reads every line of every file of the recording at `path` ([`files`]), one line in
/// memory at a time, and gives `each` the file, the line number and its alerts (or why
/// the line is not usable: the caller decides whether that stops it, by returning the
/// error). Blank lines are skipped.
pub fn read(
    path: &Path,
    source: Option<Source>,
    at: Option<jiff::Timestamp>,
    mut each: impl FnMut(&Path, usize, Result<Vec<Alert>, ReadError>) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let list = files(path).map_err(|e| ReadError::Io(path.to_owned(), e))?;
    for file in list {
        let input: Box<dyn std::io::Read> = if file == Path::new("-") {
            Box::new(std::io::stdin())
        } else {
            match std::fs::File::open(&file) {
                Ok(f) => Box::new(f),
                // A rotated file removed between the listing and now: the recording moved on.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.is_dir() => continue,
                Err(e) => return Err(ReadError::Io(file, e)),
            }
        };
        let mut input = std::io::BufReader::new(input);
        let mut buf = Vec::new();
        for number in 1.. {
            buf.clear();
            let n = std::io::Read::take(&mut input, MAX_LINE_BYTES + 1)
                .read_until(b'\n', &mut buf)
                .map_err(|e| ReadError::Io(file.clone(), e))?;
            if n == 0 {
                break;
            }
            let line_error = |message: String| ReadError::Line {
                file: file.clone(),
                line: number,
                message,
            };
            if n as u64 > MAX_LINE_BYTES {
                each(
                    &file,
                    number,
                    Err(line_error(format!(
                        "a line is larger than {} MiB; write one alert a line",
                        MAX_LINE_BYTES >> 20
                    ))),
                )?;
                // The rest of the long line is skipped, never held.
                if buf.last() != Some(&b'\n') {
                    skip_line(&mut input).map_err(|e| ReadError::Io(file.clone(), e))?;
                }
                continue;
            }
            if buf.trim_ascii().is_empty() {
                continue;
            }
            let alerts = alerts_of(&buf, source, at).map_err(line_error);
            each(&file, number, alerts)?;
        }
    }
    Ok(())
}

/// Reads past the rest of a line.
fn skip_line(input: &mut impl std::io::BufRead) -> std::io::Result<()> {
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                input.consume(n);
            }
        }
    }
}

#[cfg(test)]
#[path = "recording_test.rs"]
mod tests;
