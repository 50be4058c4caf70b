//! Target settings: names, types, `${env.NAME}` resolution, URL and header validity.
//!
//! Values read from the environment are secrets: no diagnostic ever shows one, and the
//! display form of a resolved text keeps the `${env.NAME}` placeholder.

use super::names::suggest;
use super::{CheckedTarget, Cx, EnvLookup};
use crate::diagnostic::{Diagnostic, Span, codes};
use crate::syntax::ast::{FieldPath, Interpolated, Part, SettingValue, TargetDecl, Template};

/// The settings a target accepts.
pub(crate) const SETTINGS: [&str; 7] = [
    "url", "method", "headers", "body", "timeout", "retries", "fallback",
];

/// The default per-attempt timeout.
pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// The default number of retries after the first attempt.
pub(crate) const DEFAULT_RETRIES: u32 = 3;
/// The most retries a target may ask for.
pub(crate) const MAX_RETRIES: u32 = 100;
/// The longest per-attempt timeout.
pub(crate) const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// The HTTP method of a target: `method = "PUT"`; `POST` by default. Stored in the outbox
/// as `"POST"` or `"PUT"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Method {
    /// `POST`, the default.
    #[serde(rename = "POST")]
    Post,
    /// `PUT`.
    #[serde(rename = "PUT")]
    Put,
}

impl Method {
    /// `"POST"` or `"PUT"`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// A piece of a resolved text.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TextPart {
    Text(String),
    /// An environment variable, resolved at load; shown as `${env.NAME}`.
    Env {
        name: String,
        value: String,
    },
    /// A field of the alert, read when the body is rendered.
    Path(FieldPath),
}

/// A text whose secret parts are never displayed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SecretText {
    pub(crate) parts: Vec<TextPart>,
}

impl SecretText {
    /// The text with environment variables substituted. Field paths render as nothing.
    pub(crate) fn value(&self) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                TextPart::Text(t) => s.push_str(t),
                TextPart::Env { value, .. } => s.push_str(value),
                TextPart::Path(_) => {}
            }
        }
        s
    }

    /// The text as written, `${env.NAME}` kept: safe for logs and explain output.
    pub(crate) fn display(&self) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                TextPart::Text(t) => s.push_str(t),
                TextPart::Env { name, .. } => {
                    s.push_str("${env.");
                    s.push_str(name);
                    s.push('}');
                }
                TextPart::Path(p) => {
                    s.push_str("${");
                    s.push_str(&p.to_string());
                    s.push('}');
                }
            }
        }
        s
    }

    pub(crate) fn has_secret(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, TextPart::Env { .. }))
    }
}

/// A body template with environment variables resolved.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum BodyTemplate {
    Value(serde_json::Value),
    Text(SecretText),
    Path(FieldPath),
    Array(Vec<BodyTemplate>),
    Object(Vec<(String, BodyTemplate)>),
}

/// A target's settings as checked so far, with their defaults.
struct Settings {
    url: Option<SecretText>,
    method: Method,
    headers: Vec<(String, SecretText)>,
    body: Option<BodyTemplate>,
    timeout_ms: u64,
    retries: u32,
    fallback: Option<(usize, Span)>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            url: None,
            method: Method::Post,
            headers: Vec::new(),
            body: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            retries: DEFAULT_RETRIES,
            fallback: None,
        }
    }
}

/// Checks one `target` declaration: each setting once, of the right kind and in range,
/// `${env.NAME}` resolved, a `url` present. Reports every problem it finds and returns the
/// target only when there was none.
pub(crate) fn check_target(
    cx: &mut Cx<'_>,
    t: &TargetDecl,
    scope: &super::names::Scope,
    env: EnvLookup<'_>,
) -> Option<CheckedTarget> {
    let errors_before = cx.errors.len();
    let mut seen: Vec<(&str, Span)> = Vec::new();
    let mut out = Settings::default();
    let tname = &t.name.name;

    for s in &t.settings {
        let name = s.name.name.as_str();
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            cx.report(
                Diagnostic::error(
                    codes::BAD_SETTING,
                    format!("setting `{name}` is given twice in target `{tname}`"),
                )
                .with_primary(s.name.span, "given again here")
                .with_secondary(*first, "first given here")
                .with_help("remove one of them"),
            );
            continue;
        }
        seen.push((name, s.name.span));
        let wrong = |cx: &mut Cx<'_>, expected: &str, example: &str| {
            cx.report(
                Diagnostic::error(codes::BAD_SETTING, format!("`{name}` must be {expected}"))
                    .with_primary(s.value_span, "wrong kind of value")
                    .with_help(format!("for example: `{name} = {example}`")),
            );
        };
        match (name, &s.value) {
            ("url", SettingValue::Template(Template::String(text))) => {
                out.url = check_url(cx, text, env);
            }
            ("url", _) => wrong(cx, "a string", "\"https://alerts.example.com/hook\""),
            ("method", SettingValue::Template(Template::String(text))) => {
                if let Some(m) = check_method(cx, text) {
                    out.method = m;
                }
            }
            ("method", _) => wrong(cx, "\"POST\" or \"PUT\"", "\"PUT\""),
            ("headers", SettingValue::Template(Template::Object(members, _))) => {
                out.headers = check_headers(cx, members, env);
            }
            ("headers", _) => wrong(
                cx,
                "an object of strings",
                "{ \"Authorization\": \"Bearer ${env.TOKEN}\" }",
            ),
            ("body", SettingValue::Template(tpl)) => out.body = body_template(cx, tpl, env),
            ("body", _) => wrong(cx, "a JSON template", "{ \"alert_id\": alertId }"),
            ("timeout", SettingValue::Duration(d)) => match d.as_millis() {
                Some(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => out.timeout_ms = ms,
                _ => cx.report(
                    Diagnostic::error(codes::BAD_SETTING, "`timeout` must be between 1ms and 1h")
                        .with_primary(s.value_span, "out of range")
                        .with_help("for example: `timeout = 5s`"),
                ),
            },
            ("timeout", _) => wrong(cx, "a duration", "5s"),
            ("retries", SettingValue::Template(Template::Number(n))) => match n.as_u64() {
                Some(r) if r <= u64::from(MAX_RETRIES) => out.retries = r as u32,
                _ => cx.report(
                    Diagnostic::error(
                        codes::BAD_SETTING,
                        format!("`retries` must be a whole number from 0 to {MAX_RETRIES}"),
                    )
                    .with_primary(s.value_span, "out of range")
                    .with_help("for example: `retries = 3` (at most 4 attempts)"),
                ),
            },
            ("retries", _) => wrong(cx, "a whole number", "3"),
            ("fallback", SettingValue::Template(Template::Path(p)))
                if p.meta.is_none() && p.segments.len() == 1 =>
            {
                out.fallback = check_fallback(cx, tname, p, scope);
            }
            ("fallback", _) => wrong(cx, "a target name", "ops_backup"),
            (other, _) => unknown_setting(cx, tname, other, s.name.span),
        }
    }
    if out.url.is_none() && !seen.iter().any(|(n, _)| *n == "url") {
        cx.report(
            Diagnostic::error(codes::BAD_SETTING, format!("target `{tname}` has no `url`"))
                .with_primary(t.name.span, "declared without a url")
                .with_help(format!(
                    "add one: `target {tname} {{ url = \"https://alerts.example.com/hook\" }}`"
                )),
        );
    }
    if cx.errors.len() > errors_before {
        return None;
    }
    Some(CheckedTarget {
        name: tname.clone(),
        location: cx.sources.file_line(t.name.span),
        url: out.url?,
        method: out.method,
        headers: out.headers,
        body: out.body,
        timeout_ms: out.timeout_ms,
        retries: out.retries,
        fallback: out.fallback,
    })
}

/// `url = "..."`: an absolute http(s) URL once `${env.NAME}` is resolved. The error shows
/// the URL as written when it holds a secret.
fn check_url(cx: &mut Cx<'_>, text: &Interpolated, env: EnvLookup<'_>) -> Option<SecretText> {
    let resolved = resolve(cx, text, env, "a URL")?;
    let value = resolved.value();
    if is_http_url(&value) {
        return Some(resolved);
    }
    let shown = if resolved.has_secret() {
        resolved.display()
    } else {
        value
    };
    cx.report(
        Diagnostic::error(
            codes::BAD_URL,
            format!("`{shown}` is not an absolute http or https URL"),
        )
        .with_primary(text.span, "not a URL")
        .with_help("write the full URL: `url = \"https://alerts.example.com/hook\"`")
        .with_note(
            "a target's URL is fixed by the rules; alert data can never change where it goes",
        ),
    );
    None
}

/// `method = "POST"` or `"PUT"`, in any case.
fn check_method(cx: &mut Cx<'_>, text: &Interpolated) -> Option<Method> {
    match text.as_plain().map(|m| m.to_ascii_uppercase()).as_deref() {
        Some("POST") => Some(Method::Post),
        Some("PUT") => Some(Method::Put),
        _ => {
            cx.report(
                Diagnostic::error(codes::BAD_SETTING, "`method` must be \"POST\" or \"PUT\"")
                    .with_primary(text.span, "unsupported method")
                    .with_help("write `method = \"POST\"` (the default) or `method = \"PUT\"`"),
            );
            None
        }
    }
}

/// `headers = { "Name": "value", ... }`: valid header names (RFC 9110 tokens), string
/// values without a line break or NUL once resolved (a header cannot be split into two).
/// A bad member is reported and left out; the others are kept.
fn check_headers(
    cx: &mut Cx<'_>,
    members: &[(crate::syntax::ast::Str, Template)],
    env: EnvLookup<'_>,
) -> Vec<(String, SecretText)> {
    let mut headers = Vec::new();
    for (k, v) in members {
        if k.value.is_empty() || !k.value.bytes().all(is_tchar) {
            cx.report(
                Diagnostic::error(
                    codes::BAD_SETTING,
                    format!("`{}` is not a valid header name", k.value),
                )
                .with_primary(k.span, "invalid header name")
                .with_help("header names are letters, digits and `-`: `\"X-Api-Key\"`"),
            );
            continue;
        }
        let Template::String(text) = v else {
            cx.report(
                Diagnostic::error(
                    codes::BAD_SETTING,
                    format!("header `{}` must be a string", k.value),
                )
                .with_primary(k.span.to(k.span), "not a string")
                .with_help(format!("quote it: `\"{}\": \"...\"`", k.value)),
            );
            continue;
        };
        let Some(resolved) = resolve(cx, text, env, "a header") else {
            continue;
        };
        if resolved
            .value()
            .bytes()
            .any(|b| b == b'\r' || b == b'\n' || b == 0)
        {
            cx.report(
                Diagnostic::error(
                    codes::BAD_SETTING,
                    format!("header `{}` contains a line break or NUL byte", k.value),
                )
                .with_primary(text.span, "invalid header value")
                .with_help(
                    "remove the line break from the value (or from the environment variable it reads)",
                ),
            );
            continue;
        }
        headers.push((k.value.clone(), resolved));
    }
    headers
}

/// `fallback = other_target`: a declared target other than this one (cycles through
/// several targets are the module's `check_fallback_cycles`' to find).
fn check_fallback(
    cx: &mut Cx<'_>,
    tname: &str,
    p: &FieldPath,
    scope: &super::names::Scope,
) -> Option<(usize, Span)> {
    let name = crate::syntax::ast::Ident {
        name: p.to_string(),
        span: p.span,
    };
    if name.name == tname {
        cx.report(
            Diagnostic::error(
                codes::BAD_SETTING,
                format!("target `{tname}` cannot fall back to itself"),
            )
            .with_primary(p.span, "the same target")
            .with_help("name another target, or remove `fallback`"),
        );
        return None;
    }
    scope.resolve_target(cx, &name).map(|i| (i, p.span))
}

/// A setting no target has: the list of settings, and the nearest one if it is a typo.
fn unknown_setting(cx: &mut Cx<'_>, tname: &str, other: &str, span: Span) {
    let d = Diagnostic::error(
        codes::BAD_SETTING,
        format!("target `{tname}` has no setting `{other}`"),
    )
    .with_primary(span, "unknown setting")
    .with_note(format!(
        "the settings are {}",
        SETTINGS
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    cx.report(match suggest(other, SETTINGS) {
        Some(x) => d.with_suggestion(span, x, format!("did you mean `{x}`?")),
        None => d.with_help("remove it"),
    });
}

/// Resolves `${env.NAME}`; `${path}` is refused where only fixed text may go (`what`).
fn resolve(
    cx: &mut Cx<'_>,
    text: &Interpolated,
    env: EnvLookup<'_>,
    what: &str,
) -> Option<SecretText> {
    let mut parts = Vec::new();
    let mut ok = true;
    for p in &text.parts {
        match p {
            Part::Text(t) => parts.push(TextPart::Text(t.clone())),
            Part::Env {
                name,
                default,
                span,
            } => match (env(name), default) {
                (Some(value), _) => parts.push(TextPart::Env {
                    name: name.clone(),
                    value,
                }),
                // A default is written in the rules, so it is no secret: shown as it is.
                (None, Some(d)) => parts.push(TextPart::Text(d.clone())),
                (None, None) => {
                    ok = false;
                    cx.report(
                        Diagnostic::error(codes::MISSING_ENV, format!("environment variable `{name}` is not set"))
                            .with_primary(*span, "read when the rules load")
                            .with_help(format!("set it before starting switchyard (`export {name}=...`), or give a default: `${{env.{name}:-value}}`")),
                    );
                }
            },
            Part::Path(fp) => {
                ok = false;
                cx.report(
                    Diagnostic::error(codes::PATH_NOT_ALLOWED, format!("{what} cannot contain alert data (`${{{}}}`)", fp))
                        .with_primary(fp.span, "a field of the alert")
                        .with_help("use field paths in `body`; a URL or header is fixed by the rules (`${env.NAME}` is allowed)")
                        .with_note("alert data must never choose where an alert goes or which credentials it carries"),
                );
            }
        }
    }
    ok.then_some(SecretText { parts })
}

fn body_template(cx: &mut Cx<'_>, t: &Template, env: EnvLookup<'_>) -> Option<BodyTemplate> {
    Some(match t {
        Template::Null => BodyTemplate::Value(serde_json::Value::Null),
        Template::Bool(b) => BodyTemplate::Value(serde_json::Value::Bool(*b)),
        Template::Number(n) => BodyTemplate::Value(serde_json::Value::Number(n.clone())),
        Template::Path(p) => {
            super::types::check_path(cx, p);
            BodyTemplate::Path(p.clone())
        }
        Template::String(s) => {
            let mut parts = Vec::new();
            for p in &s.parts {
                match p {
                    Part::Text(t) => parts.push(TextPart::Text(t.clone())),
                    Part::Path(fp) => {
                        super::types::check_path(cx, fp);
                        parts.push(TextPart::Path(fp.clone()));
                    }
                    Part::Env { .. } => {
                        let single = Interpolated {
                            parts: vec![p.clone()],
                            span: s.span,
                        };
                        parts.extend(resolve(cx, &single, env, "a body")?.parts);
                    }
                }
            }
            if parts.iter().all(|p| matches!(p, TextPart::Text(_))) {
                BodyTemplate::Value(serde_json::Value::String(SecretText { parts }.value()))
            } else {
                BodyTemplate::Text(SecretText { parts })
            }
        }
        Template::Array(items, _) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                out.push(body_template(cx, i, env)?);
            }
            BodyTemplate::Array(out)
        }
        Template::Object(members, _) => {
            let mut out = Vec::with_capacity(members.len());
            for (k, v) in members {
                out.push((k.value.clone(), body_template(cx, v, env)?));
            }
            BodyTemplate::Object(out)
        }
    })
}

/// An absolute `http://` or `https://` URL with a host.
fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    let Some(rest) = rest else { return false };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or("");
    !host.is_empty()
        && !host.starts_with(':')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// RFC 9110 token characters, for header names.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
