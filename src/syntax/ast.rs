//! The typed syntax tree of a rules file. Plain data: no pest types.
//!
//! Every node carries a [`Span`]. Spans are skipped when a tree is serialized, so two trees
//! that differ only in layout serialize alike; the round-trip test uses that to check
//! `parse(print(ast)) == ast`.

use serde::Serialize;

use crate::diagnostic::Span;

/// A parsed rules file.
#[derive(Clone, Debug, Serialize, Default)]
pub(crate) struct File {
    /// Items in source order.
    pub(crate) items: Vec<Item>,
    /// Where each item is written, in the same order (the formatter keeps what is between).
    #[serde(skip)]
    pub(crate) spans: Vec<Span>,
}

/// A top-level item.
#[derive(Clone, Debug, Serialize)]
pub(crate) enum Item {
    /// `target alarm_url { ... }`
    Target(TargetDecl),
    /// `window business = mon-fri 09:00-18:00 Europe/Berlin`
    Window(WindowDecl),
    /// `inhibit "name" when ... while ... is firing matching ...`
    Inhibit(InhibitDecl),
    /// `when ... -> ...`
    Rule(Rule),
    /// `test "..." { ... }`
    Test(TestBlock),
}

/// A name with its place: a target name, a source name.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Ident {
    /// The name.
    pub(crate) name: String,
    /// Where it is written.
    #[serde(skip)]
    pub(crate) span: Span,
}

/// A string literal, decoded, with its place (quotes included).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Str {
    /// The decoded text.
    pub(crate) value: String,
    /// Where it is written, quotes included.
    #[serde(skip)]
    pub(crate) span: Span,
}

/// `rule "name" when <condition> -> <actions>`
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Rule {
    /// The name after `rule`, if any.
    pub(crate) name: Option<Str>,
    /// The condition after `when`.
    pub(crate) condition: Condition,
    /// The actions after `->`, in order.
    pub(crate) actions: Vec<Action>,
    /// The `when` keyword (or `rule`, when named): where the rule starts.
    #[serde(skip)]
    pub(crate) span: Span,
}

/// An action of a rule.
#[derive(Clone, Debug, Serialize)]
pub(crate) enum Action {
    /// `post alarm_url`
    Post(Ident),
    /// `drop`
    Drop(#[serde(skip)] Span),
    /// `stop`
    Stop(#[serde(skip)] Span),
    /// `dedup [by <paths>] for <d>` or `dedup [by <paths>] until resolved`
    Dedup(Dedup),
    /// `resolve once`
    ResolveOnce(#[serde(skip)] Span),
    /// `at most <n> per <d> [by <paths>] [else post <target>]`
    Throttle(Throttle),
    /// `delay <d> unless resolved`, with the duration's place and the whole clause's.
    Delay(Duration, #[serde(skip)] Span, #[serde(skip)] Span),
    /// `hold during <window>`, with the whole clause's place.
    HoldDuring(Ident, #[serde(skip)] Span),
    /// `mute during <window>`, with the whole clause's place.
    MuteDuring(Ident, #[serde(skip)] Span),
    /// `mute flapping <n> changes in <d>`.
    MuteFlapping(Flapping),
    /// `group [by <paths>] wait <d> every <d> [repeat <d>]`.
    Group(GroupClause),
}

/// `group by labels.alertname wait 30s every 5m repeat 4h`
#[derive(Clone, Debug, Serialize)]
pub(crate) struct GroupClause {
    /// The fields whose values make a group; empty: one group for the rule and target.
    pub(crate) by: Vec<FieldPath>,
    /// How long a new group waits before its first notification.
    pub(crate) wait: Duration,
    /// At most one notification per this long, when the group changed.
    pub(crate) every: Duration,
    /// A reminder after this long without a change; `None`: the default, 4h.
    pub(crate) repeat: Option<Duration>,
    /// Where each duration is written: wait, every, repeat.
    #[serde(skip)]
    pub(crate) spans: [Span; 3],
    /// The whole clause.
    #[serde(skip)]
    pub(crate) span: Span,
}

/// `mute flapping 4 changes in 30m`
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Flapping {
    /// How many changes; `None` when the number does not fit (a diagnostic says so).
    pub(crate) changes: Option<u64>,
    /// Where the number is written.
    #[serde(skip)]
    pub(crate) changes_span: Span,
    /// The window the changes are counted in.
    pub(crate) within: Duration,
    /// Where the window is written.
    #[serde(skip)]
    pub(crate) within_span: Span,
    /// The whole clause.
    #[serde(skip)]
    pub(crate) span: Span,
}

/// `dedup by labels.alertname for 4h`
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Dedup {
    /// The key's fields; empty: `@id`.
    pub(crate) by: Vec<FieldPath>,
    /// How long a delivery keeps duplicates out.
    pub(crate) window: DedupWindow,
    /// The whole clause.
    #[serde(skip)]
    pub(crate) span: Span,
}

/// How long a `dedup` keeps duplicates out.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub(crate) enum DedupWindow {
    /// `for 4h`: from each delivery.
    For(Duration, #[serde(skip)] Span),
    /// `until resolved`: until the resolution was delivered.
    UntilResolved,
}

/// `at most 5 per 1m by labels.team else post digest`
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Throttle {
    /// How many alerts per window; `None` when the number does not fit (a diagnostic says so).
    pub(crate) count: Option<u64>,
    /// Where the number is written.
    #[serde(skip)]
    pub(crate) count_span: Span,
    /// The sliding window.
    pub(crate) per: Duration,
    /// Where the window is written.
    #[serde(skip)]
    pub(crate) per_span: Span,
    /// The key's fields; empty: one window for the whole rule.
    pub(crate) by: Vec<FieldPath>,
    /// `else post <target>`: where the excess goes.
    pub(crate) else_post: Option<Ident>,
    /// The whole clause.
    #[serde(skip)]
    pub(crate) span: Span,
}

/// A condition.
#[derive(Clone, Debug, Serialize)]
pub(crate) enum Condition {
    /// Two or more conditions joined by `or`.
    Any(Vec<Condition>),
    /// Two or more conditions joined by `and`.
    All(Vec<Condition>),
    /// `not <condition>`
    Not(Box<Condition>, #[serde(skip)] Span),
    /// `field <op> value`
    Compare(Comparison),
    /// `exists(field)`
    Exists(FieldPath, #[serde(skip)] Span),
    /// `during business`: the alert arrived inside the window.
    During(Ident, #[serde(skip)] Span),
}

impl Condition {
    /// The span the condition covers.
    pub(crate) fn span(&self) -> Span {
        match self {
            Condition::Any(cs) | Condition::All(cs) => match (cs.first(), cs.last()) {
                (Some(a), Some(b)) => a.span().to(b.span()),
                _ => Span::default(),
            },
            Condition::Not(_, s) | Condition::Exists(_, s) | Condition::During(_, s) => *s,
            Condition::Compare(c) => c.span,
        }
    }
}

/// `field <op> value`
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Comparison {
    /// The field on the left.
    pub(crate) path: FieldPath,
    /// The operator.
    pub(crate) op: CmpOp,
    /// Where the operator is written.
    #[serde(skip)]
    pub(crate) op_span: Span,
    /// The value on the right.
    pub(crate) value: Literal,
    /// The whole comparison.
    #[serde(skip)]
    pub(crate) span: Span,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, Hash)]
pub(crate) enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `=~`
    Match,
    /// `!~`
    NotMatch,
    /// `in`
    In,
    /// `not in`
    NotIn,
    /// `contains`
    Contains,
    /// `starts_with`
    StartsWith,
    /// `ends_with`
    EndsWith,
}

impl CmpOp {
    /// Every operator, in the order the language reference lists them (completion offers
    /// them).
    #[cfg_attr(not(feature = "lsp"), allow(dead_code))]
    pub(crate) const ALL: [CmpOp; 13] = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
        CmpOp::Match,
        CmpOp::NotMatch,
        CmpOp::In,
        CmpOp::NotIn,
        CmpOp::Contains,
        CmpOp::StartsWith,
        CmpOp::EndsWith,
    ];

    /// The operator as written in the language.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Match => "=~",
            CmpOp::NotMatch => "!~",
            CmpOp::In => "in",
            CmpOp::NotIn => "not in",
            CmpOp::Contains => "contains",
            CmpOp::StartsWith => "starts_with",
            CmpOp::EndsWith => "ends_with",
        }
    }

    /// Parses an operator token; inner whitespace of `not in` may vary.
    pub(crate) fn from_token(s: &str) -> Option<CmpOp> {
        Some(match s {
            "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            "=~" => CmpOp::Match,
            "!~" => CmpOp::NotMatch,
            "in" => CmpOp::In,
            "contains" => CmpOp::Contains,
            "starts_with" => CmpOp::StartsWith,
            "ends_with" => CmpOp::EndsWith,
            _ if s.split_whitespace().eq(["not", "in"]) => CmpOp::NotIn,
            _ => return None,
        })
    }
}

/// The value side of a comparison. Equality ignores the span.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Literal {
    /// What was written.
    pub(crate) kind: LiteralKind,
    /// Where.
    #[serde(skip)]
    pub(crate) span: Span,
}

/// A literal value.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, Hash)]
pub(crate) enum LiteralKind {
    /// `"text"`
    String(String),
    /// `90`, `-3.5`, `1e3`
    Number(serde_json::Number),
    /// `true`, `false`
    Bool(bool),
    /// `null`
    Null,
    /// `/pattern/flags`
    Regex {
        /// The pattern, with `\/` unescaped to `/`.
        pattern: String,
        /// Flags from `imsx`.
        flags: String,
    },
    /// `5s`, `500ms`
    Duration(Duration),
    /// `[lit, lit, ...]`
    List(Vec<Literal>),
}

impl PartialEq for Literal {
    fn eq(&self, other: &Literal) -> bool {
        self.kind == other.kind
    }
}

impl Eq for Literal {}

/// Hashes what was written, not where: two equal lists in different places hash alike.
impl std::hash::Hash for Literal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

impl LiteralKind {
    /// How the kind is named in diagnostics: "the string `\"90\"`", "a list".
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            LiteralKind::String(_) => "a string",
            LiteralKind::Number(_) => "a number",
            LiteralKind::Bool(_) => "a boolean",
            LiteralKind::Null => "`null`",
            LiteralKind::Regex { .. } => "a regex",
            LiteralKind::Duration(_) => "a duration",
            LiteralKind::List(_) => "a list",
        }
    }
}

/// A duration literal as written: an amount and a unit.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, Hash)]
pub(crate) struct Duration {
    /// The number before the unit.
    pub(crate) amount: u64,
    /// The unit.
    pub(crate) unit: DurationUnit,
}

/// The unit of a duration.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, Hash)]
pub(crate) enum DurationUnit {
    /// `ms`
    Millis,
    /// `s`
    Seconds,
    /// `m`
    Minutes,
    /// `h`
    Hours,
    /// `d`
    Days,
}

impl Duration {
    /// The duration in milliseconds, if it fits.
    pub(crate) fn as_millis(self) -> Option<u64> {
        let factor = match self.unit {
            DurationUnit::Millis => 1,
            DurationUnit::Seconds => 1_000,
            DurationUnit::Minutes => 60_000,
            DurationUnit::Hours => 3_600_000,
            DurationUnit::Days => 86_400_000,
        };
        self.amount.checked_mul(factor)
    }

    /// The unit's suffix.
    pub(crate) fn suffix(self) -> &'static str {
        match self.unit {
            DurationUnit::Millis => "ms",
            DurationUnit::Seconds => "s",
            DurationUnit::Minutes => "m",
            DurationUnit::Hours => "h",
            DurationUnit::Days => "d",
        }
    }
}

/// `600000` ms as `10m`: the largest unit that divides it.
pub(crate) fn millis(ms: u64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A field of the alert: `labels.severity`, `dimensions[*].instanceId`, `@source`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub(crate) struct FieldPath {
    /// `@name` for a metadata field, else `None`.
    pub(crate) meta: Option<String>,
    /// The steps from the alert's root.
    pub(crate) segments: Vec<Segment>,
    /// Where the path is written.
    #[serde(skip)]
    pub(crate) span: Span,
}

/// One step of a field path.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, Hash)]
pub(crate) enum Segment {
    /// `.name` or `."quoted name"` (or the first name).
    Key(String),
    /// `[3]`
    Index(u32),
    /// `[*]`
    Any,
}

impl FieldPath {
    /// The first key, when the path starts with one.
    pub(crate) fn first_key(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Key(k)) if self.meta.is_none() => Some(k),
            _ => None,
        }
    }
}

/// `target name { settings }`
#[derive(Clone, Debug, Serialize)]
pub(crate) struct TargetDecl {
    /// The target's name.
    pub(crate) name: Ident,
    /// Settings in source order.
    pub(crate) settings: Vec<Setting>,
}

/// `name = value` inside a target.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Setting {
    /// `url`, `method`, ...
    pub(crate) name: Ident,
    /// The value.
    pub(crate) value: SettingValue,
    /// Where the value is written.
    #[serde(skip)]
    pub(crate) value_span: Span,
}

/// A setting's value.
#[derive(Clone, Debug, Serialize)]
pub(crate) enum SettingValue {
    /// `5s`
    Duration(Duration),
    /// JSON in shape, with field paths.
    Template(Template),
}

/// JSON in shape whose values may be field paths or strings with `${...}`.
#[derive(Clone, Debug, Serialize)]
pub(crate) enum Template {
    /// `null`
    Null,
    /// `true`, `false`
    Bool(bool),
    /// `5`, `2.5`
    Number(serde_json::Number),
    /// `"text ${labels.x} ${env.TOKEN}"`
    String(Interpolated),
    /// `alertId`: the field's value, or `null` when missing.
    Path(FieldPath),
    /// `[ ... ]`
    Array(Vec<Template>, #[serde(skip)] Span),
    /// `{ "k": v, ... }`
    Object(Vec<(Str, Template)>, #[serde(skip)] Span),
}

/// A string split into literal text and `${...}` interpolations.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Interpolated {
    /// The parts in order.
    pub(crate) parts: Vec<Part>,
    /// The whole string literal, quotes included.
    #[serde(skip)]
    pub(crate) span: Span,
}

impl Interpolated {
    /// The text when the string has no interpolation.
    pub(crate) fn as_plain(&self) -> Option<String> {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => s.push_str(t),
                _ => return None,
            }
        }
        Some(s)
    }
}

/// A part of an [`Interpolated`] string.
#[derive(Clone, Debug, Serialize)]
pub(crate) enum Part {
    /// Literal text.
    Text(String),
    /// `${env.NAME}` or `${env.NAME:-default}`.
    Env {
        /// The variable's name.
        name: String,
        /// The text after `:-`.
        default: Option<String>,
        /// Where `${...}` is written.
        #[serde(skip)]
        span: Span,
    },
    /// `${labels.severity}`
    Path(FieldPath),
}

/// `inhibit "warnings under a critical" when <target> while <source> is firing matching
/// labels.cluster`
#[derive(Clone, Debug, Serialize)]
pub(crate) struct InhibitDecl {
    /// Its name: what explain and metrics call it.
    pub(crate) name: Str,
    /// What it keeps out: the alerts this condition matches.
    pub(crate) target: Condition,
    /// While an alert this condition matches is firing...
    pub(crate) source: Condition,
    /// ...with the same values at these fields (none: any such alert).
    pub(crate) matching: Vec<FieldPath>,
    /// The `inhibit` keyword.
    #[serde(skip)]
    pub(crate) span: Span,
}

/// `window business = mon-fri 09:00-18:00 or sat 10:00-14:00 Europe/Berlin`
#[derive(Clone, Debug, Serialize)]
pub(crate) struct WindowDecl {
    /// The name `during` refers to.
    pub(crate) name: Ident,
    /// The parts, joined by `or`: at least one.
    pub(crate) parts: Vec<WindowPart>,
    /// The time zone, as written: `Europe/Berlin`; `None` when it is missing (an error).
    pub(crate) zone: Option<Ident>,
    /// The declaration up to its end.
    #[serde(skip)]
    pub(crate) span: Span,
}

/// One part of a window. Days, times and dates are kept as written (with their places);
/// the checker reads them, so a wrong one gets a diagnostic rather than a parse error.
#[derive(Clone, Debug, Serialize)]
pub(crate) enum WindowPart {
    /// `mon-fri 09:00-18:00`; `hours` `None` for whole days. Neither `daily` nor days is
    /// an error.
    Weekly {
        /// `daily`
        daily: bool,
        /// Day names or ranges: `mon-fri`, `sat`.
        days: Vec<(Ident, Option<Ident>)>,
        /// From and to: `09:00`, `18:00`.
        hours: Option<(Ident, Ident)>,
        /// The whole part.
        #[serde(skip)]
        span: Span,
    },
    /// `2026-12-24 .. 2026-12-26` or `2026-12-24 18:00 .. 2027-01-02 09:00`.
    Dated {
        /// The first date, and its time when given.
        from: (Ident, Option<Ident>),
        /// The last date (a whole day when no time is given), and its time when given.
        to: (Ident, Option<Ident>),
        /// The whole part.
        #[serde(skip)]
        span: Span,
    },
}

/// `test "name" { ... }`
#[derive(Clone, Debug, Serialize)]
pub(crate) struct TestBlock {
    /// The test's name.
    pub(crate) name: Str,
    /// Statements in order.
    pub(crate) statements: Vec<TestStatement>,
    /// The `test` keyword.
    #[serde(skip)]
    pub(crate) span: Span,
}

/// A statement of a test block.
#[derive(Clone, Debug, Serialize)]
pub(crate) enum TestStatement {
    /// `source alibaba`
    Source(Ident),
    /// `alert { ... }`
    Alert(Template),
    /// `expect ...`
    Expect(Expect, #[serde(skip)] Span),
    /// `at 5m`: what follows happens 5 minutes after the test's start.
    At(Duration, #[serde(skip)] Span),
    /// `after 30s`: what follows happens 30 seconds after the last step.
    After(Duration, #[serde(skip)] Span),
    /// `silence "labels.team == \"db\"" for 2h`: a silence from this step's moment.
    Silence {
        /// The condition, as a string of the rule language.
        condition: Str,
        /// How long it lasts.
        duration: Duration,
        /// The whole statement.
        #[serde(skip)]
        span: Span,
    },
    /// `at 2026-12-24 09:00 Europe/Berlin`: what follows happens at that moment.
    AtMoment {
        /// `2026-12-24`
        date: Ident,
        /// `09:00`
        clock: Ident,
        /// `Europe/Berlin`; `None` when it is missing (an error).
        zone: Option<Ident>,
        /// The whole statement.
        #[serde(skip)]
        span: Span,
    },
}

/// An expectation of a test block.
#[derive(Clone, Debug, Serialize)]
pub(crate) enum Expect {
    /// `expect post alarm_url`: the decision includes the target.
    Post(Ident),
    /// `expect throttled chat`: an `at most` held the alert back from the target.
    Throttled(Ident),
    /// `expect held pager`: a `delay` or `hold during` keeps the delivery for later.
    Held(Ident),
    /// `expect silenced pager`: a silence holds the delivery (or drops it).
    Silenced(Ident),
    /// `expect inhibited chat`: an `inhibit` keeps the delivery out.
    Inhibited(Ident),
    /// `expect group pager ["A", "B"]`: a group notification went to the target, with
    /// exactly these alerts (by `@name`) when a list is given.
    Group(Ident, Option<Vec<Str>>),
    /// `expect no post ok_url`: the decision does not include the target.
    NoPost(Ident),
    /// `expect drop`: a `drop` action fired.
    Drop,
    /// `expect unrouted`: no rule matched.
    Unrouted,
    /// `expect body alarm_url { "alert_id": "x" }`: the rendered body equals the JSON.
    Body(Ident, Template),
}
