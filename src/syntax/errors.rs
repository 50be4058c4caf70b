//! Syntax errors in the language's own words.
//!
//! pest reports the grammar rules (and, with error detail on, the literal tokens) it tried
//! at the furthest position it reached. Users never see rule names: each rule maps to the
//! words `docs/language.md` uses, and common slips get a targeted hint with a fix.

use std::sync::Mutex;

use pest::Parser as _;
use pest::error::{Error, ErrorVariant, InputLocation};

use super::parser::{Rule as R, RulesParser};
use crate::diagnostic::{Code, Diagnostic, FileId, Span, codes};

/// Parses a file that failed once more with pest's error detail on, for the literal tokens
/// (`)`, `,`, `=`) it expected. The detail is a process-wide switch that slows every parse
/// by about 40%, so it is on only for this second parse of a failed file, under a lock,
/// and off again afterwards. The original error is used if the second parse disagrees.
pub(super) fn detailed_error(text: &str, first: Error<R>) -> Error<R> {
    static DETAIL: Mutex<()> = Mutex::new(());
    let _guard = DETAIL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    pest::set_error_detail(true);
    let again = RulesParser::parse(R::file, text);
    pest::set_error_detail(false);
    match again {
        Err(e) => e,
        Ok(_) => first,
    }
}

/// What the user would call a grammar rule. `None` hides the rule from messages.
fn words(r: R) -> Option<&'static str> {
    Some(match r {
        R::EOI => "end of file",
        R::kw_when | R::rule => "`when`",
        R::kw_rule | R::rule_name => "`rule`",
        R::kw_target | R::target_decl => "`target`",
        R::kw_test | R::test_block => "`test`",
        R::kw_window | R::window_decl => "`window`",
        R::kw_inhibit | R::inhibit_decl => "`inhibit`",
        R::kw_while => "`while`",
        R::kw_is => "`is firing`",
        R::kw_firing => "`firing`",
        R::kw_matching | R::inhibit_matching => "`matching`",
        R::window_name => "a window name",
        R::dated_part | R::weekly_part | R::days | R::day_range | R::day | R::kw_daily => {
            "days (`daily`, `mon-fri`, `sat,sun`) or dates (`2026-12-24 .. 2026-12-26`)"
        }
        R::clock_range | R::clock => "a time of day (`09:00`)",
        R::date => "a date (`2026-12-24`)",
        R::zone => "a time zone (`UTC`, `Europe/Berlin`)",
        R::condition
        | R::conjunction
        | R::operand
        | R::group
        | R::exists
        | R::comparison
        | R::kw_not
        | R::kw_exists
        | R::during => "a condition",
        R::kw_during => "`during <window>`",
        R::field_path | R::key | R::meta_field | R::key_any => "a field path",
        R::cmp_op => "a comparison operator",
        R::arrow => "`->`",
        R::kw_and => "`and`",
        R::kw_or => "`or`",
        R::actions
        | R::post_action
        | R::drop_action
        | R::stop_action
        | R::kw_post
        | R::kw_drop
        | R::kw_stop
        | R::dedup_clause
        | R::resolve_once
        | R::throttle_clause
        | R::kw_dedup
        | R::kw_resolve
        | R::kw_at
        | R::delay_clause
        | R::hold_clause
        | R::mute_clause
        | R::kw_delay
        | R::kw_hold
        | R::kw_mute => {
            "an action (`post <target>`, `drop`, `stop`, `dedup ...`, `resolve once`, `at most ...`, `delay ...`, `hold during ...` or `mute during ...`)"
        }
        R::kw_unless => "`unless resolved`",
        R::kw_flapping => "`flapping <n> changes in <duration>`",
        R::kw_changes => "`changes in <duration>`",
        R::kw_in => "`in <duration>`",
        R::dedup_for | R::dedup_until | R::kw_for | R::kw_until => {
            "`for <duration>` or `until resolved`"
        }
        R::kw_resolved => "`resolved`",
        R::kw_once => "`once`",
        R::by_paths | R::kw_by => "`by <fields>`",
        R::kw_most => "`most`",
        R::kw_per => "`per <duration>`",
        R::count => "a whole number",
        R::throttle_else | R::kw_else => "`else post <target>`",
        R::target_name => "a target name",
        R::setting | R::setting_name => "a setting such as `url = \"https://...\"`",
        R::source_name => "a source name",
        R::test_source
        | R::kw_source
        | R::test_alert
        | R::kw_alert
        | R::expect
        | R::kw_expect
        | R::test_time
        | R::kw_after => "`source`, `alert`, `expect`, `at` or `after`",
        R::expect_post
        | R::expect_no_post
        | R::expect_drop
        | R::expect_unrouted
        | R::expect_body
        | R::kw_no
        | R::kw_unrouted
        | R::kw_body
        | R::expect_throttled
        | R::kw_throttled
        | R::expect_held
        | R::kw_held => "`post`, `no post`, `drop`, `unrouted`, `throttled`, `held` or `body`",
        R::member => "a `\"key\": value` member",
        R::string => "a string",
        R::number => "a number",
        R::duration => "a duration",
        R::boolean | R::null | R::list | R::regex | R::object | R::array => "a value",
        R::index | R::wildcard => "an index or `*`",
        R::escape => "a valid escape (`\\\"`, `\\\\`, `\\n`, `\\u00e9`, ...)",
        _ => return None,
    })
}

/// Punctuation the user may have left out; other literal tokens live inside named rules.
const PUNCTUATION: &[&str] = &[")", "]", "}", ",", ":", "="];

/// pest's error as a diagnostic: "expected X, found Y" in the language's words, at the
/// furthest position pest reached, with a hint and a corrected line for the common slips
/// (`=` for `==`, `&&`, a missing `->`, an unquoted word, `:` in a setting).
pub(super) fn syntax_error(err: &Error<R>, text: &str, file: FileId) -> Diagnostic {
    let (pos, expected) = expectations(err, text);
    let (found, found_len) = found_token(text, pos);
    let span = Span::new(file, pos, pos + found_len);
    let expected_text = join_or(&expected);
    let message = if expected.is_empty() {
        format!("unexpected {found}")
    } else {
        format!("expected {expected_text}, found {found}")
    };
    let mut slip = Slip {
        code: codes::SYNTAX,
        label: if expected.is_empty() {
            String::from("unexpected here")
        } else {
            format!("expected {expected_text}")
        },
        help: Vec::new(),
        fixes: Vec::new(),
    };
    slip.hint(text, pos, &expected, &found, found_len);
    let mut d = Diagnostic::error(slip.code, message).with_primary(span, slip.label);
    for h in slip.help {
        d = d.with_help(h);
    }
    for (len, with) in slip.fixes {
        let title = if len == 0 {
            format!("insert `{}`", with.trim())
        } else {
            format!("replace with `{}`", with.trim())
        };
        d = d.with_fix(Span::new(file, pos, pos + len), with, title);
    }
    d
}

/// Where the user slipped and what could have come there, in words: the grammar rules pest
/// tried (by [`words`]), punctuation it wanted, collapsed to what a user would call one
/// thing ("a value", not "a string, a number, a duration").
fn expectations(err: &Error<R>, text: &str) -> (usize, Vec<&'static str>) {
    let pos = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let mut pos = pos.min(text.len());
    let mut expected: Vec<&'static str> = Vec::new();
    let mut punctuation: Vec<&'static str> = Vec::new();
    let attempts = err.parse_attempts();
    // pest's rule-level position can trail its token-level one (`url: "..."` fails at `:`
    // while the rules failed at `url`); the furthest position is where the user slipped.
    let furthest = attempts
        .as_ref()
        .map(|a| a.max_position)
        .filter(|&m| m > pos && m <= text.len());
    if let (Some(m), Some(a)) = (furthest, &attempts) {
        pos = m;
        for stack in a.call_stacks() {
            if let Some(w) = stack.parent.and_then(words) {
                push_unique(&mut expected, w);
            }
        }
    } else if let ErrorVariant::ParsingError { positives, .. } = &err.variant {
        for r in positives {
            if let Some(w) = words(*r) {
                push_unique(&mut expected, w);
            }
        }
    }
    if let Some(a) = &attempts
        && a.max_position == pos
    {
        for t in a.expected_tokens() {
            let t = t.to_string();
            if PUNCTUATION.contains(&t.as_str()) {
                push_unique(
                    &mut punctuation,
                    match t.as_str() {
                        ")" => "`)`",
                        "]" => "`]`",
                        "}" => "`}`",
                        "," => "`,`",
                        ":" => "`:`",
                        _ => "`=`",
                    },
                );
            }
        }
    }
    if expected.contains(&"`when`") && !expected.contains(&"`rule`") {
        expected.push("`rule`");
    }
    // Collapse what a user would see as one thing.
    if expected.contains(&"a value")
        || expected.contains(&"a string") && expected.contains(&"a number")
    {
        expected.retain(|w| !matches!(*w, "a string" | "a number" | "a duration" | "a field path"));
        if !expected.contains(&"a value") {
            expected.insert(0, "a value");
        }
    }
    if expected.contains(&"a condition") {
        expected.retain(|w| *w != "a field path");
    }
    if expected.contains(&"`target`") {
        // At the start of an item: "end of file" is not something to write.
        expected.retain(|w| *w != "end of file");
        expected.sort_by_key(|w| {
            ["`when`", "`rule`", "`target`", "`test`"]
                .iter()
                .position(|x| x == w)
        });
    }
    if expected.contains(&"a setting such as `url = \"https://...\"`")
        && punctuation.contains(&"`=`")
    {
        expected.clear();
    }
    expected.extend(punctuation);
    (pos, expected)
}

/// A syntax error's code, label and hints, refined by what the user most likely meant.
struct Slip {
    code: Code,
    label: String,
    help: Vec<String>,
    /// Exact fixes at the error's position: the bytes replaced there, and by what.
    fixes: Vec<(usize, String)>,
}

impl Slip {
    /// Looks at the token found (`found`, `found_len` bytes at `pos`) against what was
    /// `expected`, and adds the hint with the corrected line for a common slip.
    fn hint(&mut self, text: &str, pos: usize, expected: &[&str], found: &str, found_len: usize) {
        let Slip {
            code,
            label: d_label,
            help,
            fixes,
        } = self;
        let mut fix = |len: usize, with: &str| fixes.push((len, with.to_owned()));
        let line = line_around(text, pos);
        let token = text.get(pos..pos + found_len).unwrap_or("");

        if expected.contains(&"a comparison operator") {
            *code = codes::EXPECTED_COMPARISON;
            *d_label = String::from(
                "expected `==`, `!=`, `<`, `<=`, `>`, `>=`, `=~`, `!~`, `in`, `not in`, `contains`, ...",
            );
            if token == "=" {
                help.push(format!(
                    "use `==` to test equality: `{}`",
                    fix_line(text, pos, 1, "==")
                ));
                fix(1, "==");
            } else if token == "<>" {
                help.push(format!(
                    "use `!=` for \"not equal\": `{}`",
                    fix_line(text, pos, 2, "!=")
                ));
                fix(2, "!=");
            } else if token == "===" {
                help.push(format!(
                    "use `==` to test equality: `{}`",
                    fix_line(text, pos, 3, "==")
                ));
                fix(3, "==");
            } else if token == "is" || token == "eq" {
                help.push(format!(
                    "use `==` to test equality: `{}`",
                    fix_line(text, pos, token.len(), "==")
                ));
                fix(token.len(), "==");
            }
        }
        if expected.contains(&"`->`") && matches!(token, "post" | "drop" | "stop") {
            *code = codes::MISSING_ARROW;
            help.push(format!(
                "put `->` between the condition and the actions: `{}`",
                fix_line(text, pos, 0, "-> ")
            ));
            fix(0, "-> ");
        }
        if expected.contains(&"`->`") && token == "=>" {
            *code = codes::MISSING_ARROW;
            help.push(format!(
                "write the arrow as `->`: `{}`",
                fix_line(text, pos, 2, "->")
            ));
            fix(2, "->");
        }
        if token == "&&" {
            help.push(format!("write `and`: `{}`", fix_line(text, pos, 2, "and")));
            fix(2, "and");
        } else if token == "||" {
            help.push(format!("write `or`: `{}`", fix_line(text, pos, 2, "or")));
            fix(2, "or");
        } else if token == "!" {
            help.push(String::from(
                "write `not` before a condition, or use `!=`, `!~`",
            ));
        }
        if expected.contains(&"a value")
            && found.starts_with('`')
            && is_word(token)
            && !matches!(token, "true" | "false" | "null")
        {
            help.push(format!("put text in quotes: `\"{token}\"`"));
            fix(token.len(), &format!("\"{token}\""));
            d_label.push_str("; a field cannot be compared with another field");
        }
        if expected.contains(&"`when`") && is_word(token) && line.contains("->") {
            help.push(format!("a rule starts with `when`: `when {}`", line.trim()));
        }
        if expected.contains(&"`)`") && !expected.contains(&"a condition") {
            help.push(String::from("close every `(` of the condition with a `)`"));
        }
        if token == ":" && expected.contains(&"`=`") {
            help.push(format!(
                "settings use `=`: `{}`",
                fix_line(text, pos, 1, " =").replace("  =", " =")
            ));
            let spaced = text.get(..pos).is_some_and(|t| t.ends_with(' '));
            fix(1, if spaced { "=" } else { " =" });
        }
    }
}

fn push_unique(v: &mut Vec<&'static str>, w: &'static str) {
    if !v.contains(&w) {
        v.push(w);
    }
}

fn is_word(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The token at `pos`, described for a message, and its length in bytes.
fn found_token(text: &str, pos: usize) -> (String, usize) {
    let rest = text.get(pos..).unwrap_or("");
    let Some(c) = rest.chars().next() else {
        return (String::from("end of file"), 0);
    };
    let len = if c.is_alphanumeric() || c == '_' {
        rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(rest.len())
    } else if "=<>!~&|-".contains(c) {
        rest.find(|c: char| !"=<>!~&|-".contains(c))
            .unwrap_or(rest.len())
            .min(3)
    } else if c == '"' {
        rest.get(1..).and_then(|r| r.find('"')).map_or(1, |e| e + 2)
    } else {
        c.len_utf8()
    };
    let len = len.max(c.len_utf8());
    let tok = rest.get(..len).unwrap_or("");
    if c == '\n' || c == '\r' {
        return (String::from("end of line"), 1);
    }
    if c.is_control() || c == '\u{fffd}' {
        return (format!("the character U+{:04X}", c as u32), c.len_utf8());
    }
    let shown: String = tok.chars().take(40).collect();
    let ellipsis = if tok.chars().count() > 40 { "..." } else { "" };
    (format!("`{shown}{ellipsis}`"), len)
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

/// The source line around `pos`.
fn line_around(text: &str, pos: usize) -> &str {
    let start = text
        .get(..pos)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let end = text
        .get(pos..)
        .and_then(|t| t.find('\n'))
        .map_or(text.len(), |i| pos + i);
    text.get(start..end).unwrap_or("")
}

/// The line around `pos` with `len` bytes at `pos` replaced by `with`, trimmed, for a help.
fn fix_line(text: &str, pos: usize, len: usize, with: &str) -> String {
    let start = text
        .get(..pos)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line = line_around(text, pos);
    let at = pos - start;
    let (Some(before), Some(after)) = (line.get(..at), line.get(at + len..)) else {
        return line.trim().to_owned();
    };
    let fixed = format!("{before}{with}{after}");
    let fixed = fixed.trim();
    if fixed.chars().count() > 100 {
        format!("{}...", fixed.chars().take(100).collect::<String>())
    } else {
        fixed.to_owned()
    }
}
