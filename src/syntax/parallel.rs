//! Parsing a folder on several threads: each file is cut into pieces at lines that start
//! an item, and the pieces are parsed side by side.
//!
//! Why the result is the sequential parse's: a piece boundary is a line starting with
//! `when`, `rule`, `target`, `window` or `test`. No item can go on with such a word once
//! it is complete (a rule ends with its actions, which only `,` continues; targets and
//! tests end with `}`; a window with its zone, which is never one of these words), so where every piece parses to its end, item by item, the items and their
//! spans are those of parsing the whole file. Where a boundary falls inside an item (a
//! template line starting with the field `when`, say), the piece before it ends in an
//! unfinished item and fails; then that whole file is parsed sequentially, so its
//! diagnostics are always those of [`super::parse`]. `parallel_test.rs` checks the
//! equality on random files cut into many pieces.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ast::File;
use super::{MAX_FILE_BYTES, parse, parse_items, prescan};
use crate::diagnostic::{Diagnostic, FileId};

/// The smallest piece worth a hand-off to another thread. A piece is a whole number of
/// items, so pieces are at least this long but end at the next item after it.
pub(crate) const PIECE_BYTES: usize = 64 * 1024;

/// The most threads a load uses, the calling one included.
const MAX_THREADS: usize = 8;

/// A helper's stack: as much as a main thread's, for the deepest file the pre-scan lets
/// through.
pub(crate) const STACK_BYTES: usize = 8 * 1024 * 1024;

/// How many threads a load of `total` bytes uses, the calling one included: one for a
/// folder under `piece_bytes`, else `threads` (`None`: the CPUs available), at most
/// [`MAX_THREADS`]. The parse and the checker's analysis ask the same question.
pub(crate) fn threads_for(threads: Option<usize>, total: usize, piece_bytes: usize) -> usize {
    if total < piece_bytes {
        return 1;
    }
    threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, MAX_THREADS)
}

/// Parses every file, on up to `threads` threads (the calling one included; `None`: the
/// CPUs available). Gives, file by file, exactly what [`parse`] gives.
pub(crate) fn parse_files(
    files: &[(FileId, &str)],
    threads: Option<usize>,
    piece_bytes: usize,
) -> Vec<Result<File, Vec<Diagnostic>>> {
    let sequential = || files.iter().map(|(id, text)| parse(text, *id)).collect();
    let total: usize = files.iter().map(|(_, text)| text.len()).sum();
    let threads = threads_for(threads, total, piece_bytes);
    if threads == 1 {
        return sequential();
    }
    // Files over the size limit are parsed (and reported) sequentially.
    let pieces: Vec<(usize, Range<usize>)> = files
        .iter()
        .enumerate()
        .filter(|(_, (_, text))| text.len() <= MAX_FILE_BYTES)
        .flat_map(|(i, (_, text))| pieces(text, piece_bytes).into_iter().map(move |r| (i, r)))
        .collect();
    if pieces.len() < 2 {
        return sequential();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let Some((i, range)) = pieces.get(n) else {
                break;
            };
            let (id, text) = files[*i];
            // Each piece is pre-scanned on its own, here rather than the whole file before
            // the hand-out: the parser of a piece reads that piece only, so its pre-scan
            // bounds the parser's depth as the file's does for the whole file. A piece that
            // fails it has its file parsed whole, which pre-scans and reports as always.
            let piece = text
                .get(range.clone())
                .filter(|piece| prescan(piece, id).is_ok())
                .and_then(|_| parse_items(text, range.clone(), id));
            done.push((n, piece));
        }
        done
    };
    let mut results: Vec<Piece> = (0..pieces.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        // A thread the system refuses is no error: this thread parses what is left.
        let helpers: Vec<_> = (1..threads.min(pieces.len()))
            .map_while(|_| {
                std::thread::Builder::new()
                    .name(String::from("switchyard-parse"))
                    .stack_size(STACK_BYTES)
                    .spawn_scoped(s, work)
                    .ok()
            })
            .collect();
        let mut all = work();
        for h in helpers {
            // A helper that panicked leaves its pieces without a result: their files are
            // parsed again below, on this thread.
            all.extend(h.join().unwrap_or_default());
        }
        for (n, piece) in all {
            results[n] = piece;
        }
    });
    let mut by_file: Vec<Vec<Piece>> = files.iter().map(|_| Vec::new()).collect();
    for ((i, _), piece) in pieces.iter().zip(results) {
        by_file[*i].push(piece);
    }
    files
        .iter()
        .zip(by_file)
        .map(|((id, text), pieces)| join(pieces).unwrap_or_else(|| parse(text, *id)))
        .collect()
}

/// A file from its pieces, in order; `None` (parse it whole) when it has none (it failed
/// the prescan) or one of them did not parse.
fn join(pieces: Vec<Piece>) -> Option<Result<File, Vec<Diagnostic>>> {
    let pieces: Vec<(File, Vec<Diagnostic>)> = pieces.into_iter().collect::<Option<_>>()?;
    if pieces.is_empty() {
        return None;
    }
    // Each item moves once, into a vector of the right size.
    let n = pieces.iter().map(|(f, _)| f.items.len()).sum();
    let (mut items, mut spans) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut diagnostics = Vec::new();
    for (part, ds) in pieces {
        items.extend(part.items);
        spans.extend(part.spans);
        diagnostics.extend(ds);
    }
    Some(if diagnostics.is_empty() {
        Ok(File { items, spans })
    } else {
        Err(diagnostics)
    })
}

/// A piece's items and diagnostics, or `None` when it does not parse item by item.
type Piece = Option<(File, Vec<Diagnostic>)>;

/// Cuts `text` into ranges of at least `piece_bytes` (all of it if shorter), each ending
/// just before a line that starts an item.
pub(crate) fn pieces(text: &str, piece_bytes: usize) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut from = piece_bytes.max(1);
    while from < bytes.len() {
        let Some(cut) = next_item_line(bytes, from) else {
            break;
        };
        out.push(start..cut);
        start = cut;
        from = cut + piece_bytes.max(1);
    }
    out.push(start..bytes.len());
    out
}

/// The first position at or after `from` that starts a line beginning with an item's
/// first word.
pub(super) fn next_item_line(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at < bytes.len() {
        let nl = at + bytes.get(at..)?.iter().position(|&b| b == b'\n')?;
        let line = nl + 1;
        if starts_item(bytes.get(line..)?) {
            return Some(line);
        }
        at = line;
    }
    None
}

fn starts_item(line: &[u8]) -> bool {
    ["when", "rule", "target", "window", "inhibit", "test"]
        .iter()
        .any(|w| {
            line.strip_prefix(w.as_bytes())
                .and_then(|rest| rest.first())
                .is_some_and(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        })
}
