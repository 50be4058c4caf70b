//! Diagnostics: what is wrong, where, and how to fix it.
//!
//! A [`Diagnostic`] is plain data (severity, code, message, labelled spans, help, notes).
//! Spans are byte ranges into a file of a [`SourceMap`]; they become `line:column` (1-based,
//! columns in characters) only when rendered. The text renderer and the JSON renderer read
//! the same struct, so the CLI, the logs and the HTTP API always agree.
//!
//! Never: prints anything itself, or holds a secret's value (the checker gives it the
//! `${env.NAME}` as written).

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Value, json};

/// Identifies one file of a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub(crate) struct FileId(pub(crate) u32);

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub(crate) struct Span {
    pub(crate) file: FileId,
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) fn new(file: FileId, start: usize, end: usize) -> Span {
        Span {
            file,
            start: clamp_u32(start),
            end: clamp_u32(end.max(start)),
        }
    }

    /// The smallest span that covers both.
    pub(crate) fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One loaded source file: its display name and text.
#[derive(Debug)]
pub struct SourceFile {
    name: String,
    short: String,
    text: Arc<str>,
    line_starts: Vec<u32>,
}

impl SourceFile {
    fn new(name: String, short: String, text: Arc<str>) -> SourceFile {
        let mut line_starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(clamp_u32(i + 1));
            }
        }
        SourceFile {
            name,
            short,
            text,
            line_starts,
        }
    }

    /// The name shown in diagnostics, such as `rules/cloud.rules`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name rules are identified by (`cloud.rules` in `cloud.rules:3`): the file name
    /// within the rules folder.
    pub fn short_name(&self) -> &str {
        &self.short
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// 0-based line index and the byte offset that line starts at.
    fn line_of(&self, offset: u32) -> (usize, u32) {
        let idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        (idx, self.line_starts.get(idx).copied().unwrap_or(0))
    }

    /// The text of 0-based line `idx`, without its line break.
    fn line_text(&self, idx: usize) -> &str {
        let start = self.line_starts.get(idx).copied().unwrap_or(0) as usize;
        let end = self
            .line_starts
            .get(idx + 1)
            .map_or(self.text.len(), |&e| e as usize);
        let line = self.text.get(start..end).unwrap_or("");
        line.trim_end_matches(['\n', '\r'])
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn position(&self, offset: u32) -> Position {
        let offset = offset.min(clamp_u32(self.text.len()));
        let (idx, start) = self.line_of(offset);
        let prefix = self.text.get(start as usize..offset as usize).unwrap_or("");
        Position {
            line: idx + 1,
            column: prefix.chars().count() + 1,
        }
    }
}

/// A 1-based line and column; columns count characters, not bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// The files a rule set was loaded from, so that spans can be shown as text.
#[derive(Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// Adds a file and returns its id; rules are identified by `name`'s last component.
    pub(crate) fn add(&mut self, name: impl Into<String>, text: impl Into<Arc<str>>) -> FileId {
        let name = name.into();
        let short = name.rsplit(['/', '\\']).next().unwrap_or(&name).to_owned();
        let id = FileId(clamp_u32(self.files.len()));
        self.files.push(SourceFile::new(name, short, text.into()));
        id
    }

    /// The file with this id.
    pub(crate) fn get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    /// Every file, in load order.
    pub fn files(&self) -> impl Iterator<Item = &SourceFile> {
        self.files.iter()
    }

    /// The text a span covers.
    pub(crate) fn snippet(&self, span: Span) -> &str {
        self.get(span.file)
            .and_then(|f| f.text.get(span.start as usize..span.end as usize))
            .unwrap_or("")
    }

    /// `file:line` of a span's start, with the file's short name: `cloud.rules:3`.
    pub(crate) fn file_line(&self, span: Span) -> String {
        match self.get(span.file) {
            Some(f) => format!("{}:{}", f.short, f.position(span.start).line),
            None => String::from("<unknown>"),
        }
    }
}

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The rule set cannot be loaded.
    Error,
    /// The rule set loads, but something looks wrong.
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A stable diagnostic code, such as `E0201`. A released code is never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(&'static str);

impl Code {
    /// The code as text: `E0201`.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// The registry of every diagnostic code. `docs/diagnostics.md` has an example of each.
pub(crate) mod codes {
    use super::Code;

    /// A file cannot be read as a rules file: not UTF-8, too large, or unreadable.
    pub(crate) const BAD_FILE: Code = Code("E0001");
    /// A syntax error: something other than what the language allows here.
    pub(crate) const SYNTAX: Code = Code("E0101");
    /// A string that is not closed on its line: `"ALARM`.
    pub(crate) const UNCLOSED_STRING: Code = Code("E0102");
    /// `=` where a comparison operator belongs: `status = "OK"`.
    pub(crate) const EXPECTED_COMPARISON: Code = Code("E0103");
    /// Actions without the arrow: `when a == 1 post x`.
    pub(crate) const MISSING_ARROW: Code = Code("E0104");
    /// Nesting deeper than the limit: 200 `(` in a row.
    pub(crate) const TOO_DEEP: Code = Code("E0105");
    /// A regex literal that is not closed on its line: `/^disk_`.
    pub(crate) const UNCLOSED_REGEX: Code = Code("E0106");
    /// A string with an invalid escape or a lone surrogate: `"\ud800"`.
    pub(crate) const BAD_STRING: Code = Code("E0107");
    /// A number or duration out of range: `retries = 99999999999999999999`.
    pub(crate) const BAD_NUMBER: Code = Code("E0108");
    /// A malformed `${...}` in a string: `"${env.}"`.
    pub(crate) const BAD_INTERPOLATION: Code = Code("E0109");
    /// `post` of a target that no file declares.
    pub(crate) const UNKNOWN_TARGET: Code = Code("E0201");
    /// Two targets with one name.
    pub(crate) const DUPLICATE_TARGET: Code = Code("E0202");
    /// Two rules with one name.
    pub(crate) const DUPLICATE_RULE: Code = Code("E0203");
    /// Two tests with one name.
    pub(crate) const DUPLICATE_TEST: Code = Code("E0204");
    /// `@sorce`: not a metadata field.
    pub(crate) const UNKNOWN_META: Code = Code("E0205");
    /// `@source == "alibab"`: not a sender.
    pub(crate) const UNKNOWN_SOURCE: Code = Code("E0206");
    /// A target setting that does not exist, is missing, is given twice, or has the wrong type.
    pub(crate) const BAD_SETTING: Code = Code("E0207");
    /// `${env.NAME}` with `NAME` unset and no default.
    pub(crate) const MISSING_ENV: Code = Code("E0208");
    /// A target URL that is not an absolute http(s) URL.
    pub(crate) const BAD_URL: Code = Code("E0209");
    /// A test block without exactly one `alert`, or with a field path in it.
    pub(crate) const BAD_TEST: Code = Code("E0210");
    /// A field path where only literal text may go: a `${labels.x}` in a URL.
    pub(crate) const PATH_NOT_ALLOWED: Code = Code("E0211");
    /// A field path longer than the limit.
    pub(crate) const PATH_TOO_LONG: Code = Code("E0212");
    /// An ordering comparison against something that is not a number: `curValue > "90"`.
    pub(crate) const ORDER_NEEDS_NUMBER: Code = Code("E0301");
    /// A regex match against something that is not a regex or string: `x =~ 5`.
    pub(crate) const REGEX_NEEDS_PATTERN: Code = Code("E0302");
    /// A regex that does not compile.
    pub(crate) const BAD_REGEX: Code = Code("E0303");
    /// `in` without a list: `x in "a"`.
    pub(crate) const IN_NEEDS_LIST: Code = Code("E0304");
    /// `==` against a list or a regex: `x == ["a"]`, `x == /a/`.
    pub(crate) const EQ_NEEDS_SCALAR: Code = Code("E0305");
    /// `contains`, `starts_with`, `ends_with` against something that is not a string.
    pub(crate) const TEXT_NEEDS_STRING: Code = Code("E0306");
    /// A duration in a condition, where no field can hold one: `x > 5m`.
    pub(crate) const DURATION_IN_CONDITION: Code = Code("E0307");
    /// A clause that remembers (`dedup`, `resolve once`, `at most`) on a rule without a
    /// name: state is keyed by the rule's name, which a `file:line` is not.
    pub(crate) const STATEFUL_UNNAMED: Code = Code("E0401");
    /// A clause that cannot work as written: given twice, a zero count or window.
    pub(crate) const BAD_CLAUSE: Code = Code("E0402");
    /// `during nigth`: no window of that name is declared.
    pub(crate) const UNKNOWN_WINDOW: Code = Code("E0403");
    /// A window's day, time of day or date is not one, or its range is empty.
    pub(crate) const BAD_WINDOW: Code = Code("E0404");
    /// A time zone the bundled database does not have.
    pub(crate) const UNKNOWN_ZONE: Code = Code("E0405");
    /// Two windows with one name.
    pub(crate) const DUPLICATE_WINDOW: Code = Code("E0406");
    /// A silence's condition that is not one condition.
    pub(crate) const BAD_SILENCE: Code = Code("E0407");
    /// Two `inhibit`s with one name.
    pub(crate) const DUPLICATE_INHIBIT: Code = Code("E0408");
    /// A field no alert of the rule's `@source` has: `alertStat` in an Alibaba rule.
    pub(crate) const UNKNOWN_FIELD: Code = Code("W0201");
    /// `@state == "firng"`: a state value that is never set.
    pub(crate) const UNKNOWN_STATE: Code = Code("W0202");
    /// A target that no rule posts to.
    pub(crate) const UNUSED_TARGET: Code = Code("W0203");
    /// An action that does nothing: `post a, post a`, `drop, drop`, `stop` with `drop`.
    pub(crate) const REDUNDANT_ACTION: Code = Code("W0204");
    /// A `dedup` window shorter than the sender's resend period: it keeps nothing out.
    pub(crate) const DEDUP_SHORTER_THAN_RESEND: Code = Code("W0401");
    /// An `inhibit` whose two sides could match one alert.
    pub(crate) const INHIBIT_OVERLAP: Code = Code("W0402");
    /// A group's `repeat` that is not a multiple of its `every`.
    pub(crate) const GROUP_REPEAT_ROUNDED: Code = Code("W0403");
    /// A rule that can never fire: an earlier rule with `stop` or `drop` takes every alert
    /// it could match.
    pub(crate) const UNREACHABLE_RULE: Code = Code("W0501");
    /// An `and` whose two sides can never both hold: `a == "x" and a == "y"`.
    pub(crate) const NEVER_HOLDS: Code = Code("W0502");
    /// A condition that holds for every alert: `a == "x" or a != "x"`.
    pub(crate) const ALWAYS_HOLDS: Code = Code("W0503");
    /// A rule with the same condition and actions as an earlier one.
    pub(crate) const SAME_RULE: Code = Code("W0504");
    /// A target posted to only by rules that can never fire.
    pub(crate) const TARGET_UNREACHABLE: Code = Code("W0505");
}

/// A labelled span: the `^^^` (primary) or `---` (secondary) under some text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Label {
    pub(crate) span: Span,
    pub(crate) message: String,
    pub(crate) primary: bool,
}

/// A replacement that fixes a diagnostic, exactly: what an editor's quick fix applies and
/// what `check --format json` lists under `fixes`. Only a change that is certainly what the
/// help says is one (a did-you-mean, `=` to `==`); a help that needs judgement is not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fix {
    /// The text to replace (empty: insert at its start).
    pub(crate) span: Span,
    /// What goes there.
    pub(crate) replacement: String,
    /// What the fix does, as a menu shows it: "replace with `alarm_url`".
    pub(crate) title: String,
}

/// One problem found in a rules folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub(crate) severity: Severity,
    pub(crate) code: Code,
    pub(crate) message: String,
    pub(crate) labels: Vec<Label>,
    pub(crate) help: Vec<String>,
    pub(crate) notes: Vec<String>,
    pub(crate) fixes: Vec<Fix>,
}

impl Diagnostic {
    pub(crate) fn error(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Error, code, message)
    }

    pub(crate) fn warning(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Warning, code, message)
    }

    fn new(severity: Severity, code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity,
            code,
            message: message.into(),
            labels: Vec::new(),
            help: Vec::new(),
            notes: Vec::new(),
            fixes: Vec::new(),
        }
    }

    /// Adds a fix: `replacement` in place of the text at `span`.
    pub(crate) fn with_fix(
        mut self,
        span: Span,
        replacement: impl Into<String>,
        title: impl Into<String>,
    ) -> Diagnostic {
        self.fixes.push(Fix {
            span,
            replacement: replacement.into(),
            title: title.into(),
        });
        self
    }

    /// A did-you-mean: the help, and the fix that writes `name` over `span`.
    pub(crate) fn with_suggestion(self, span: Span, name: &str, help: String) -> Diagnostic {
        self.with_help(help)
            .with_fix(span, name, format!("replace with `{name}`"))
    }

    pub(crate) fn with_primary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: true,
        });
        self
    }

    pub(crate) fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
            primary: false,
        });
        self
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help.push(help.into());
        self
    }

    pub(crate) fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// Error or warning.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// The stable code, such as `E0201`.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The headline: what is wrong, in lowercase, without a period.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Actions the user can take, each one pasteable.
    pub fn help(&self) -> &[String] {
        &self.help
    }

    /// Rules of the language that explain the diagnostic.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The same diagnostic with each span's ends moved by `to` (a condition parsed inside a
    /// wrapper, shown where it was written), into the file `to`'s answers point into.
    pub(crate) fn rebased(mut self, file: FileId, to: impl Fn(usize) -> usize) -> Diagnostic {
        let moved = |span: Span| Span {
            file,
            start: clamp_u32(to(span.start as usize)),
            end: clamp_u32(to(span.end as usize)),
        };
        for l in &mut self.labels {
            l.span = moved(l.span);
        }
        for f in &mut self.fixes {
            f.span = moved(f.span);
        }
        self
    }

    /// The primary span, where the diagnostic points.
    pub(crate) fn primary_span(&self) -> Option<Span> {
        self.labels
            .iter()
            .find(|l| l.primary)
            .or(self.labels.first())
            .map(|l| l.span)
    }

    fn sort_key(&self) -> (FileId, u32, Severity) {
        let span = self.primary_span().unwrap_or_default();
        (span.file, span.start, self.severity)
    }
}

/// How diagnostics are rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// rustc-style text.
    #[default]
    Text,
    /// rustc-style text with ANSI colours, for terminals.
    Color,
    /// One JSON array of objects.
    Json,
}

/// Diagnostics with the files they point into, ready to render.
#[derive(Clone, Debug)]
pub struct Diagnostics {
    sources: Arc<SourceMap>,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn new(sources: Arc<SourceMap>, mut items: Vec<Diagnostic>) -> Diagnostics {
        items.sort_by_key(Diagnostic::sort_key);
        items.dedup();
        Diagnostics { sources, items }
    }

    /// Each diagnostic, sorted by file and position.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.items.iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many are errors.
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// How many are warnings.
    pub fn warning_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }

    /// The files (by [`SourceFile::short_name`], in load order) that hold an error; `None`
    /// when some error points at no file (the folder itself: no `.rules` files, too large
    /// as a whole), which no one file can be blamed for.
    pub fn files_with_errors(&self) -> Option<Vec<String>> {
        let mut files: Vec<FileId> = Vec::new();
        for d in self.items.iter().filter(|d| d.severity == Severity::Error) {
            let span = d.primary_span()?;
            self.sources.get(span.file)?;
            if !files.contains(&span.file) {
                files.push(span.file);
            }
        }
        files.sort_unstable();
        Some(
            files
                .into_iter()
                .filter_map(|id| self.sources.get(id).map(|f| f.short_name().to_owned()))
                .collect(),
        )
    }

    /// The diagnostics that point into the file named `short_name`.
    pub fn in_file(&self, short_name: &str) -> Diagnostics {
        let items = self
            .items
            .iter()
            .filter(|d| {
                d.primary_span()
                    .and_then(|s| self.sources.get(s.file))
                    .is_some_and(|f| f.short_name() == short_name)
            })
            .cloned()
            .collect();
        Diagnostics {
            sources: self.sources.clone(),
            items,
        }
    }

    /// The file and 1-based position a diagnostic points at.
    pub fn location(&self, d: &Diagnostic) -> Option<(&str, Position)> {
        let span = d.primary_span()?;
        let file = self.sources.get(span.file)?;
        Some((file.name(), file.position(span.start)))
    }

    /// Renders every diagnostic, followed by a summary line for text formats.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => self.to_json().to_string(),
            Format::Text | Format::Color => {
                let color = format == Format::Color;
                let mut out = String::new();
                for d in &self.items {
                    render_text(&mut out, &self.sources, d, color);
                    out.push('\n');
                }
                out
            }
        }
    }

    /// Every diagnostic as a JSON array of
    /// `{severity, code, message, file, line, column, labels, help, notes, fixes}`.
    pub fn to_json(&self) -> Value {
        Value::Array(self.items.iter().map(|d| self.diagnostic_json(d)).collect())
    }

    fn diagnostic_json(&self, d: &Diagnostic) -> Value {
        // A span as `{file, line, column, end_line, end_column}`: labels and fixes.
        let place = |span: Span| {
            let file = self.sources.get(span.file);
            let start = file.map(|f| f.position(span.start));
            let end = file.map(|f| f.position(span.end));
            json!({
                "file": file.map(SourceFile::name),
                "line": start.map(|p| p.line),
                "column": start.map(|p| p.column),
                "end_line": end.map(|p| p.line),
                "end_column": end.map(|p| p.column),
            })
        };
        let at = d.primary_span().map(place).unwrap_or(Value::Null);
        let labels: Vec<Value> = d
            .labels
            .iter()
            .map(|l| {
                let mut v = place(l.span);
                v["message"] = json!(l.message);
                v["primary"] = json!(l.primary);
                v
            })
            .collect();
        json!({
            "severity": d.severity.as_str(),
            "code": d.code.as_str(),
            "message": d.message,
            "file": at["file"],
            "line": at["line"],
            "column": at["column"],
            "labels": labels,
            "help": d.help,
            "notes": d.notes,
            "fixes": d.fixes.iter().map(|f| {
                let mut v = place(f.span);
                v["replacement"] = json!(f.replacement);
                v["title"] = json!(f.title);
                v
            }).collect::<Vec<_>>(),
        })
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// The widest source line shown; longer lines are cut around the labels.
const MAX_SHOWN_LINE: usize = 120;

struct Painter {
    color: bool,
}

impl Painter {
    fn paint(&self, out: &mut String, style: &str, text: &str) {
        if self.color && !text.is_empty() {
            let _ = write!(out, "\x1b[{style}m{text}\x1b[0m");
        } else {
            out.push_str(text);
        }
    }
}

const BOLD_RED: &str = "1;31";
const BOLD_YELLOW: &str = "1;33";
const BOLD_BLUE: &str = "1;34";
const BOLD: &str = "1";

/// One source line with its labels, as character columns (0-based, end exclusive).
struct LineLabels<'a> {
    line: usize,
    labels: Vec<(usize, usize, &'a Label)>,
}

fn render_text(out: &mut String, sources: &SourceMap, d: &Diagnostic, color: bool) {
    let p = Painter { color };
    let sev_style = match d.severity {
        Severity::Error => BOLD_RED,
        Severity::Warning => BOLD_YELLOW,
    };
    p.paint(
        out,
        sev_style,
        &format!("{}[{}]", d.severity.as_str(), d.code),
    );
    p.paint(out, BOLD, &format!(": {}", d.message));
    out.push('\n');

    // Group labels by file (primary file first), then by line.
    let mut files: Vec<FileId> = Vec::new();
    if let Some(s) = d.primary_span() {
        files.push(s.file);
    }
    for l in &d.labels {
        if !files.contains(&l.span.file) {
            files.push(l.span.file);
        }
    }
    let mut gutter = 1;
    let mut per_file: Vec<(&SourceFile, Vec<LineLabels<'_>>)> = Vec::new();
    for fid in files {
        let Some(file) = sources.get(fid) else {
            continue;
        };
        let mut lines: Vec<LineLabels<'_>> = Vec::new();
        for l in d.labels.iter().filter(|l| l.span.file == fid) {
            let start = file.position(l.span.start);
            let (line_idx, line_start) = file.line_of(l.span.start.min(clamp_u32(file.text.len())));
            let line_text = file.line_text(line_idx);
            let line_end = line_start as usize + line_text.len();
            let end_off = (l.span.end as usize)
                .min(line_end)
                .max(l.span.start as usize);
            let end_col = file
                .text
                .get(line_start as usize..end_off)
                .map_or(start.column - 1, |s| s.chars().count());
            let (s, e) = (start.column - 1, end_col.max(start.column));
            match lines.iter_mut().find(|ll| ll.line == start.line) {
                Some(ll) => ll.labels.push((s, e, l)),
                None => lines.push(LineLabels {
                    line: start.line,
                    labels: vec![(s, e, l)],
                }),
            }
        }
        lines.sort_by_key(|ll| ll.line);
        if let Some(last) = lines.last() {
            gutter = gutter.max(last.line.to_string().len());
        }
        per_file.push((file, lines));
    }

    let pad = " ".repeat(gutter);
    for (i, (file, lines)) in per_file.iter().enumerate() {
        let Some(first) = lines.first() else { continue };
        let Some(first_label) = first
            .labels
            .iter()
            .find(|(_, _, l)| l.primary)
            .or(first.labels.first())
        else {
            continue;
        };
        let arrow = if i == 0 { "-->" } else { ":::" };
        p.paint(out, BOLD_BLUE, &format!("{pad}{arrow}"));
        let _ = writeln!(out, " {}:{}:{}", file.name, first.line, first_label.0 + 1);
        p.paint(out, BOLD_BLUE, &format!("{pad} |"));
        out.push('\n');
        for (j, ll) in lines.iter().enumerate() {
            if j > 0 && lines[j - 1].line + 1 < ll.line {
                p.paint(out, BOLD_BLUE, "...");
                out.push('\n');
            }
            render_line(out, &p, file, ll, gutter, sev_style);
        }
    }
    if !per_file.is_empty() && (!d.help.is_empty() || !d.notes.is_empty()) {
        p.paint(out, BOLD_BLUE, &format!("{pad} |"));
        out.push('\n');
    }
    for h in &d.help {
        p.paint(out, BOLD_BLUE, &format!("{pad} ="));
        p.paint(out, BOLD, " help");
        let _ = writeln!(out, ": {}", clean(h));
    }
    for n in &d.notes {
        p.paint(out, BOLD_BLUE, &format!("{pad} ="));
        p.paint(out, BOLD, " note");
        let _ = writeln!(out, ": {}", clean(n));
    }
}

/// Replaces characters that would break the layout of a rendered line.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '\t' {
                ' '
            } else if c.is_control() {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

fn render_line(
    out: &mut String,
    p: &Painter,
    file: &SourceFile,
    ll: &LineLabels<'_>,
    gutter: usize,
    sev: &str,
) {
    let text: Vec<char> = clean(file.line_text(ll.line - 1)).chars().collect();
    // Cut long lines to a window around the labels.
    let lo = ll.labels.iter().map(|l| l.0).min().unwrap_or(0);
    let hi = ll.labels.iter().map(|l| l.1).max().unwrap_or(0);
    let (mut from, mut to) = (0, text.len());
    if text.len() > MAX_SHOWN_LINE {
        from = lo.saturating_sub(40);
        to = (hi.max(lo + 1) + 40)
            .min(text.len())
            .max(from + 1)
            .min(from + MAX_SHOWN_LINE);
    }
    let prefix = if from > 0 { "..." } else { "" };
    let suffix = if to < text.len() { "..." } else { "" };
    let shown: String = text
        .get(from..to)
        .map(|s| s.iter().collect())
        .unwrap_or_default();
    let shift = |c: usize| c.saturating_sub(from).min(to - from) + prefix.len();

    p.paint(out, BOLD_BLUE, &format!("{:>gutter$} |", ll.line));
    let line = format!(" {prefix}{shown}{suffix}");
    out.push_str(line.trim_end());
    out.push('\n');

    let mut labels: Vec<(usize, usize, &Label)> = ll
        .labels
        .iter()
        .map(|&(s, e, l)| (shift(s), shift(e).max(shift(s) + 1), l))
        .collect();
    labels.sort_by_key(|l| (l.0, l.1));
    let pad = " ".repeat(gutter);

    // Marker line: `^` under primaries, `-` under secondaries; the rightmost label's message inline.
    let mut marks = String::new();
    let mut col = 0;
    for &(s, e, l) in &labels {
        if s < col {
            continue;
        }
        marks.push_str(&" ".repeat(s - col));
        let ch = if l.primary { "^" } else { "-" };
        marks.push_str(&ch.repeat(e - s));
        col = e;
    }
    p.paint(out, BOLD_BLUE, &format!("{pad} |"));
    out.push(' ');
    p.paint(out, sev, &marks);
    if let Some(&(_, _, last)) = labels.last()
        && !last.message.is_empty()
    {
        out.push(' ');
        p.paint(
            out,
            if last.primary { sev } else { BOLD_BLUE },
            &clean(&last.message),
        );
    }
    out.push('\n');

    // Every other label's message on its own line, hung from a `|` at its column.
    let rest: Vec<&(usize, usize, &Label)> = labels
        .iter()
        .take(labels.len().saturating_sub(1))
        .filter(|l| !l.2.message.is_empty())
        .collect();
    for (k, &&(s, _, l)) in rest.iter().enumerate().rev() {
        let connectors = |upto: usize| {
            let mut line = String::new();
            let mut c = 0;
            for &&(s2, _, _) in rest.iter().take(upto) {
                if s2 >= c {
                    line.push_str(&" ".repeat(s2 - c));
                    line.push('|');
                    c = s2 + 1;
                }
            }
            line
        };
        let bar = connectors(k + 1);
        p.paint(out, BOLD_BLUE, &format!("{pad} |"));
        let _ = writeln!(out, " {}", bar.trim_end());
        let mut msg_line = connectors(k);
        let c = msg_line.chars().count();
        msg_line.push_str(&" ".repeat(s.saturating_sub(c)));
        p.paint(out, BOLD_BLUE, &format!("{pad} |"));
        let _ = writeln!(out, " {}{}", msg_line, clean(&l.message));
    }
}

#[cfg(test)]
#[path = "diagnostic_test.rs"]
mod tests;
