//! switchyard: an alert routing engine. Rules are written as files, checked like code,
//! compiled to an immutable rule set, and evaluated against alerts from any sender.
//!
//! ```
//! use switchyard::{Alert, RuleSet};
//!
//! let rules = RuleSet::from_files([(
//!     "cloud.rules",
//!     r#"
//!     target alarm_url { url = "https://example.test/alarm" }
//!     target ok_url    { url = "https://example.test/ok" }
//!     when alertState == "ALARM" and curValue > 90 -> post alarm_url
//!     when @state == "resolved" -> post ok_url
//!     "#,
//! )])?;
//!
//! // Alibaba sends numbers as strings: "95" > 90 holds.
//! let alert = Alert::new(serde_json::json!({"alertState": "ALARM", "curValue": "95"}));
//! let decision = rules.evaluate(&alert);
//! assert_eq!(decision.target_names().collect::<Vec<_>>(), ["alarm_url"]);
//! assert!(!decision.unrouted());
//! # Ok::<(), switchyard::Error>(())
//! ```
//!
//! - [`RuleSet::load_dir`] loads a folder of `*.rules` files; on error, [`Error::diagnostics`]
//!   holds every problem of every file, ready to render as text or JSON.
//! - [`RuleSet::evaluate`] is pure and allocation-light; [`RuleSet::explain`] says why.
//! - [`adapt_json`] turns each sender's payload into [`Alert`]s with `@source`, `@state`,
//!   `@name` and `@id` set.
//!
//! The engine needs no async runtime and no network crates: build with
//! `default-features = false` to embed it alone.
//!
//! For embedders that use pest themselves: pest's error detail is a process-wide switch.
//! switchyard turns it on only while it re-parses a rules file that failed (to name the
//! tokens it expected), under a lock, and turns it off again. switchyard never changes
//! pest's call limit; it bounds its own input before pest runs (8 MiB per file, 64 levels of
//! nesting). It asks for pest without pest's `std` feature, which leaves out pest's native
//! stack probe: that depth bound is what keeps its parses shallow. Cargo unifies features,
//! so an embedder that uses pest with its defaults turns the probe back on for switchyard
//! too; that is safe, and costs a rules load about a tenth more instructions.

// pest is built without its `std` feature (Cargo.toml says why); its generated parser then
// names `alloc` by path.
extern crate alloc;

mod alert;
mod check;
mod diagnostic;
mod diff;
#[cfg(feature = "dispatch")]
mod dispatch;
mod engine;
mod error;
mod load;
#[cfg(feature = "lsp")]
pub mod lsp;
mod number;
pub mod recording;
#[cfg(feature = "reload")]
pub mod reload;
#[cfg(feature = "server")]
pub mod server;
pub mod state;
mod syntax;
mod window;

pub use alert::{
    AdaptError, AdaptLimits, Alert, Source, State, adapt_json, adapt_json_at, adapt_json_within,
    detect_source, form_to_json,
};
pub use check::MAX_SILENCE_CONDITION;
pub use diagnostic::{
    Code, Diagnostic, Diagnostics, Format, Position, Severity, SourceFile, SourceMap,
};
pub use diff::{Change, ChangedAlert, DiffBuilder, Difference, MAX_LISTED, RulesDiff};
#[cfg(feature = "dispatch")]
pub use dispatch::{
    Backoff, DeadLetter, DispatchError, DispatchErrorKind, Outbox, OutboxView, Router,
    RouterBuilder, RouterStats, Submitted, TargetDepth, Waiting,
};
#[cfg(feature = "dispatch")]
pub use dispatch::{MAX_SILENCE_TEXT, NewSilence, SilenceError, http_client};
#[cfg(feature = "nats")]
pub use dispatch::{NatsAuth, NatsSettings};
pub use engine::{
    Choices, Decision, DecisionSummary, Delivery, Explanation, MAX_FALLBACKS, MemoryChanges,
    PredicateTrace, RuleInfo, RuleSet, RuleTrace, SilenceMatcher, Target, TestOutcome, TestReport,
    content_hash,
};
pub use error::{Error, ErrorKind};
pub use load::{Loader, MAX_FILES, MAX_TOTAL_BYTES};

/// Formats one rules file as `switchyard fmt` does: canonical layout, comments kept, the
/// same meaning (it parses to the same tree); idempotent. `Err`: the file does not parse,
/// with its diagnostics (`name` names the file in them).
pub fn format_rules(name: &str, text: &str) -> Result<String, Diagnostics> {
    let mut sources = SourceMap::default();
    let file = sources.add(name, text.to_owned());
    syntax::format::format(text, file)
        .map_err(|items| Diagnostics::new(std::sync::Arc::new(sources), items))
}

/// The stages between text and rule set, for tests and fuzz targets. Not a stable API.
#[cfg(feature = "unstable-internals")]
pub mod internals {
    /// Parses one file to its canonical printed form, or `Err` with the rendered diagnostics.
    pub fn parse_and_print(text: &str) -> Result<String, String> {
        let ast = crate::syntax::parse_for_tests(text).map_err(|ds| render(text, ds))?;
        Ok(crate::syntax::print::file(&ast))
    }

    /// Parses one file to its syntax tree as JSON (spans left out), or `Err` with the
    /// rendered diagnostics.
    pub fn parse_to_json(text: &str) -> Result<serde_json::Value, String> {
        let ast = crate::syntax::parse_for_tests(text).map_err(|ds| render(text, ds))?;
        serde_json::to_value(&ast).map_err(|e| e.to_string())
    }

    /// Every diagnostic of a file as `(line, column, end byte <= file length)`, for
    /// checking that no diagnostic points outside its file.
    pub fn diagnostic_spans(text: &str) -> Vec<(u32, u32)> {
        match crate::syntax::parse_for_tests(text) {
            Ok(_) => Vec::new(),
            Err(ds) => ds
                .iter()
                .flat_map(|d| d.labels.iter().map(|l| (l.span.start, l.span.end)))
                .collect(),
        }
    }

    /// Whether parsing `text` cut into pieces of at least `piece_bytes`, on two threads,
    /// gives exactly the tree, spans and diagnostics of parsing it whole.
    pub fn pieces_parse_as_whole(text: &str, piece_bytes: usize) -> bool {
        let id = crate::diagnostic::FileId(0);
        let whole = crate::syntax::parse_for_tests(text);
        // An empty second file makes two pieces at least, so the threads are used even
        // when `text` is one piece.
        let pieces =
            crate::syntax::parse_files(&[(id, text), (id, "")], Some(2), piece_bytes.max(1));
        format!("{:?}", [whole, crate::syntax::parse_for_tests("")]) == format!("{pieces:?}")
    }

    fn render(text: &str, ds: Vec<crate::Diagnostic>) -> String {
        let mut map = crate::SourceMap::default();
        map.add("input.rules", text);
        crate::Diagnostics::new(std::sync::Arc::new(map), ds).render(crate::Format::Text)
    }
}
