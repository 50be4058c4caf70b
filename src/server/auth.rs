//! Ingest credentials: per sender, a bearer token, basic auth, or a token in the query
//! string (for senders that cannot set headers, such as Alibaba's callback URL). Secrets
//! are compared in constant time and never logged or shown.

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::alert::Source;

/// A secret value: compared in constant time; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value, for handing to a client library that sends it (the NATS connection);
    /// never for a log or a message.
    #[cfg(feature = "nats")]
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    fn matches(&self, candidate: &str) -> bool {
        // An empty secret never authenticates (the config refuses one at start; this is the
        // second lock on that door).
        if self.0.is_empty() {
            return false;
        }
        // Lengths differ for a wrong guess anyway; `ct_eq` keeps equal-length guesses flat.
        self.0.len() == candidate.len() && bool::from(self.0.as_bytes().ct_eq(candidate.as_bytes()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One accepted way to authenticate.
#[derive(Clone, Debug)]
pub enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic <base64(user:password)>`.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
    /// `?token=<token>` in the URL.
    QueryToken(Secret),
}

/// Which credentials each sender must present. A sender with no entry (and no `*` entry)
/// needs none.
#[derive(Clone, Debug, Default)]
pub struct IngestAuth {
    rules: Vec<(Option<Source>, Vec<Credential>)>,
}

/// The credentials of an `Authorization` value whose scheme is `name`, compared without
/// regard to case as HTTP says (`Bearer`, `bearer`, `BEARER`); `None` for another scheme.
fn scheme<'a>(authz: &'a str, name: &str) -> Option<&'a str> {
    let (scheme, rest) = authz.trim_start().split_once([' ', '\t'])?;
    let rest = rest.trim();
    (scheme.eq_ignore_ascii_case(name) && !rest.is_empty()).then_some(rest)
}

impl IngestAuth {
    /// No credentials required.
    pub fn none() -> IngestAuth {
        IngestAuth::default()
    }

    /// Requires one of `credentials` from `source` (`None`: every sender without its own entry).
    pub fn require(mut self, source: Option<Source>, credentials: Vec<Credential>) -> IngestAuth {
        self.rules.push((source, credentials));
        self
    }

    /// True when some sender needs credentials.
    pub fn is_enabled(&self) -> bool {
        !self.rules.is_empty()
    }

    fn credentials_for(&self, source: Option<Source>) -> Option<&[Credential]> {
        let own = source.and_then(|s| self.rules.iter().find(|(r, _)| *r == Some(s)));
        own.or_else(|| self.rules.iter().find(|(r, _)| r.is_none()))
            .map(|(_, c)| c.as_slice())
    }

    /// Checks a request from a known sender: that sender's own entry, else the `*` entry.
    /// `None`, a sender not yet known (`POST /alerts` before its body is read): the request
    /// passes when some sender needs no credentials (no `*` entry), or when it presents
    /// any configured credential; the detected sender's own check follows.
    pub(crate) fn check(
        &self,
        source: Option<Source>,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<(), ApiError> {
        let presented = Presented::of(headers, query_token);
        let ok = match source {
            Some(s) => self
                .credentials_for(Some(s))
                .is_none_or(|creds| creds.iter().any(|c| presented.matches(c))),
            None => {
                self.credentials_for(None).is_none()
                    || self
                        .rules
                        .iter()
                        .flat_map(|(_, creds)| creds)
                        .any(|c| presented.matches(c))
            }
        };
        if ok {
            Ok(())
        } else {
            let what = source.map_or_else(
                || String::from("this endpoint"),
                |s| format!("source `{s}`"),
            );
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("missing or wrong credentials for {what}"),
            ))
        }
    }
}

/// Credentials for the operator endpoints: any one of them opens them. None: open to
/// whoever reaches the listen address.
#[derive(Clone, Debug)]
pub struct AdminAuth {
    credentials: Vec<Credential>,
    metrics_open: bool,
}

impl Default for AdminAuth {
    fn default() -> Self {
        AdminAuth::none()
    }
}

impl AdminAuth {
    /// No credential: the operator endpoints answer everyone.
    pub fn none() -> AdminAuth {
        AdminAuth {
            credentials: Vec::new(),
            metrics_open: true,
        }
    }

    /// Requires one of `credentials` (bearer or basic; a query token is not accepted
    /// here: URLs end up in logs). `/metrics` stays open unless [`AdminAuth::metrics_open`]
    /// says otherwise.
    pub fn require(credentials: Vec<Credential>) -> AdminAuth {
        AdminAuth {
            credentials: credentials
                .into_iter()
                .filter(|c| !matches!(c, Credential::QueryToken(_)))
                .collect(),
            metrics_open: true,
        }
    }

    /// Whether `/metrics` answers without the credential.
    pub fn metrics_open(mut self, open: bool) -> AdminAuth {
        self.metrics_open = open;
        self
    }

    /// True when the operator endpoints need a credential.
    pub fn is_enabled(&self) -> bool {
        !self.credentials.is_empty()
    }

    /// True when a basic-auth credential is accepted: a browser can be asked for it.
    pub(crate) fn has_basic(&self) -> bool {
        self.credentials
            .iter()
            .any(|c| matches!(c, Credential::Basic { .. }))
    }

    /// Checks a request to an operator endpoint (`metrics`: it is `/metrics`).
    pub(crate) fn check(&self, headers: &HeaderMap, metrics: bool) -> Result<(), ApiError> {
        if !self.is_enabled() || (metrics && self.metrics_open) {
            return Ok(());
        }
        let presented = Presented::of(headers, None);
        if self.credentials.iter().any(|c| presented.matches(c)) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong admin credentials for this operator endpoint",
            ))
        }
    }
}

/// What a request presents: its `Authorization` header and its `?token=`.
struct Presented<'a> {
    authz: &'a str,
    query_token: Option<&'a str>,
}

impl<'a> Presented<'a> {
    fn of(headers: &'a HeaderMap, query_token: Option<&'a str>) -> Presented<'a> {
        let authz = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Presented { authz, query_token }
    }

    fn matches(&self, c: &Credential) -> bool {
        match c {
            Credential::Bearer(t) => scheme(self.authz, "bearer").is_some_and(|tok| t.matches(tok)),
            Credential::Basic { user, password } => scheme(self.authz, "basic")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .and_then(|raw| String::from_utf8(raw).ok())
                .and_then(|pair| {
                    pair.split_once(':')
                        .map(|(u, p)| (u.to_owned(), p.to_owned()))
                })
                .is_some_and(|(u, p)| {
                    bool::from(u.as_bytes().ct_eq(user.as_bytes())) & password.matches(&p)
                }),
            Credential::QueryToken(t) => self.query_token.is_some_and(|q| t.matches(q)),
        }
    }
}
