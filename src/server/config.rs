//! `switchyard.yaml`: the server's own settings (routing lives only in the rules folder).
//! Unknown keys and wrong types are refused at start with the file, line and a hint.
//!
//! Never: starts with a secret that is unset, empty or unreadable (an empty credential
//! would let anyone in), or shows a secret's value in an error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::auth::{AdminAuth, Credential, IngestAuth, Secret};
use crate::alert::Source;

/// The default listen address: loopback only, so a fresh start exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9095";

/// The whole configuration file. Every key is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where to listen (`127.0.0.1:9095`).
    pub listen: SocketAddr,
    /// The rules folder (`rules`).
    pub rules: PathBuf,
    /// The data directory, holding the outbox (`data`).
    pub data: PathBuf,
    /// Request limits.
    pub limits: Limits,
    /// Credentials senders must present.
    pub ingest: Ingest,
    /// Credentials for the operator endpoints.
    pub admin: Admin,
    /// Log format and level.
    pub logging: Logging,
    /// Requests in flight per target.
    pub delivery: Delivery,
    /// Where deliveries and the rules' memory live: the embedded SQLite outbox (default),
    /// or NATS JetStream shared by replicas.
    pub state: StateConfig,
    /// The web console at `/ui` (docs/console.md).
    pub console: ConsoleConfig,
    /// What a reload asks of a changed rules folder (docs/changing-rules.md).
    pub reload: ReloadConfig,
    /// Recording a sample of live traffic on disk (docs/changing-rules.md).
    pub record: super::record::RecordConfig,
    /// A second rules folder evaluated beside the live one on every alert, delivering
    /// nothing: its disagreements are counted and shown (docs/changing-rules.md).
    pub shadow_rules: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9095))),
            rules: PathBuf::from("rules"),
            data: PathBuf::from("data"),
            limits: Limits::default(),
            ingest: Ingest::default(),
            admin: Admin::default(),
            logging: Logging::default(),
            delivery: Delivery::default(),
            state: StateConfig::default(),
            console: ConsoleConfig::default(),
            reload: ReloadConfig::default(),
            record: super::record::RecordConfig::default(),
            shadow_rules: None,
        }
    }
}

/// `reload:`: what a changed rules folder must pass before it is used.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// A folder whose `test` blocks fail is refused like one with errors (false).
    pub require_tests: bool,
    /// `whole` (an error anywhere keeps the running set) or `per_file` (a file with
    /// errors keeps its last good version; the other files' edits apply).
    pub isolation: crate::reload::Isolation,
}

impl ReloadConfig {
    /// As the reloader takes it.
    pub fn policy(&self) -> crate::reload::Policy {
        crate::reload::Policy {
            require_tests: self.require_tests,
            isolation: self.isolation,
        }
    }
}

/// The web console (`/ui`): on by default, behind the admin credential when one is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Whether `/ui` is served (true).
    pub enabled: bool,
    /// How many recent decisions the console keeps in memory to show (200; 0 keeps none,
    /// at most 10,000). Each keeps its request's body when it is at most 64 KiB, so the
    /// memory stays under `recent` x 64 KiB.
    pub recent: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            recent: 200,
        }
    }
}

/// Limits that keep bad input from hurting the server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest request body, in bytes (1 MiB).
    pub max_body_bytes: usize,
    /// The most alerts in one request (1,000).
    pub max_alerts_per_request: usize,
    /// The largest request head (request line and headers), in bytes (16 KiB).
    pub max_header_bytes: usize,
    /// The longest a request may take to arrive, headers and body, in seconds (10).
    pub request_timeout_secs: u64,
    /// The most requests handled at once (1,024); more wait. A request takes its slot once
    /// its body has arrived: a client that drips its body holds none.
    pub max_concurrent_requests: usize,
    /// Memory for request bodies, all requests together, in MiB (256): a body takes its
    /// bytes as they arrive and gives them back when its request is answered; one that
    /// would pass the budget waits for room, within its time limit.
    pub body_memory_mb: usize,
}

/// How many times its body limit a request's group fields may be copied into its alerts.
const COPY_FACTOR: usize = 8;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_alerts_per_request: 1_000,
            max_header_bytes: 16 << 10,
            request_timeout_secs: 10,
            max_concurrent_requests: 1_024,
            body_memory_mb: 256,
        }
    }
}

impl Limits {
    /// The body budget in bytes: `body_memory_mb`, and at least one largest body.
    pub fn body_budget_bytes(&self) -> usize {
        self.body_memory_mb
            .saturating_mul(1 << 20)
            .max(self.max_body_bytes)
            .min(tokio::sync::Semaphore::MAX_PERMITS)
    }

    /// What a body may turn into once split into alerts: at most `max_alerts_per_request`
    /// alerts, and group fields copied into them of at most 8 times the body limit.
    pub fn adapt_limits(&self) -> crate::AdaptLimits {
        crate::AdaptLimits {
            max_alerts: self.max_alerts_per_request,
            max_copied_bytes: self.max_body_bytes.saturating_mul(COPY_FACTOR),
        }
    }

    /// `request_timeout_secs` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }
}

/// Delivery settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// The most requests in flight per target (32).
    pub in_flight_per_target: usize,
    /// Whether each target's limit adapts to its answers between one and
    /// `in_flight_per_target` (true): the fewest requests at once that keep its
    /// deliveries from waiting. False keeps every target at the most.
    pub adaptive_in_flight: bool,
    /// Store deliveries without sending them (false): for a downstream in maintenance, or
    /// to measure ingest alone. They go out once the server runs without it.
    pub hold: bool,
    /// MiB of new deliveries kept in memory for their targets' workers, all targets
    /// together (64); beyond it a queued delivery keeps only its id and is read back from
    /// the outbox when sent.
    pub queue_memory_mb: usize,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            in_flight_per_target: crate::dispatch::DEFAULT_IN_FLIGHT,
            adaptive_in_flight: true,
            hold: false,
            queue_memory_mb: crate::dispatch::DEFAULT_QUEUE_MEMORY >> 20,
        }
    }
}

/// Where deliveries and the rules' memory live (`state:`; docs/nats.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `sqlite` (the outbox under `data`, one process) or `nats` (JetStream, shared by
    /// every replica with the same `urls` and `stream`).
    pub backend: Backend,
    /// NATS server URLs (`nats://10.0.0.1:4222`); give every node of the cluster.
    pub urls: Vec<String>,
    /// A NATS user, with `password`.
    pub user: Option<String>,
    /// The NATS user's password.
    pub password: Option<SecretRef>,
    /// A NATS token (instead of a user and password).
    pub token: Option<SecretRef>,
    /// The stream's name and the root of its subjects (`SWITCHYARD`): deployments sharing
    /// a NATS cluster use different names.
    pub stream: String,
    /// How many NATS servers keep each message (3: a 3-node cluster that survives one
    /// node down; 1 for a single server).
    pub replicas: usize,
    /// The longest connecting, a request, or a whole ingest's store may take before the
    /// sender hears 503 with `Retry-After` (4000 ms: senders such as Alibaba give up after
    /// 5 s).
    pub timeout_ms: u64,
    /// How long a delivery taken by a replica stays its own without a word (30000 ms):
    /// renewed while the replica lives, so this is how soon a dead replica's deliveries go
    /// to another. Every replica must use the same.
    pub lease_ms: u64,
}

/// Which store the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The embedded SQLite outbox.
    Sqlite,
    /// NATS JetStream.
    Nats,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: Backend::Sqlite,
            urls: Vec::new(),
            user: None,
            password: None,
            token: None,
            stream: String::from("SWITCHYARD"),
            replicas: 3,
            timeout_ms: 4000,
            lease_ms: 30_000,
        }
    }
}

/// Ingest credentials.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    /// One entry per sender (or `*`), each listing accepted credentials.
    pub auth: Vec<AuthEntry>,
}

/// Credentials for some senders.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthEntry {
    /// Sender names, or `*` for every sender without its own entry.
    pub sources: Vec<String>,
    /// `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer: Option<SecretRef>,
    /// `Authorization: Basic`, with this user and password.
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    /// `?token=<token>`, for senders that cannot set headers.
    #[serde(default)]
    pub query_token: Option<SecretRef>,
}

/// Credentials for the operator endpoints (`/api/dead-letters`, its retry, `/-/reload`,
/// `/api/rules`, `/api/explain`, `/metrics`). None configured: they answer everyone who
/// can reach the listen address (loopback by default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// `Authorization: Bearer <token>`.
    pub bearer: Option<SecretRef>,
    /// `Authorization: Basic`, with this user and password.
    pub basic: Option<BasicAuth>,
    /// Whether `/metrics` answers without the admin credential (true), as Prometheus
    /// scrapes usually do; false guards it too (give Prometheus the credential).
    pub metrics_open: bool,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            bearer: None,
            basic: None,
            metrics_open: true,
        }
    }
}

/// Basic-auth credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: SecretRef,
}

/// Where a secret comes from: never written in the config file itself. Each keeps its
/// place in the file, for errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// An environment variable's name.
    #[serde(default)]
    pub env: Option<serde_saphyr::Spanned<String>>,
    /// A file's path (its content, trailing newline removed).
    #[serde(default)]
    pub file: Option<serde_saphyr::Spanned<PathBuf>>,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `switchyard=debug`, ...
    pub level: String,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            format: LogFormat::Text,
            level: String::from("info"),
        }
    }
}

/// The log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Why a configuration cannot be used: what to fix and where (the file, the line, the
/// key), with a kind a caller can match and the cause chained.
#[derive(Debug)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    failed: crate::error::Failed,
}

/// What kind of failure a [`ConfigError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file cannot be read.
    Unreadable,
    /// The YAML does not parse, or a key or value does not fit the schema.
    Invalid,
    /// A secret the config names is missing, empty or unreadable.
    Secret,
}

impl ConfigError {
    fn new(kind: ConfigErrorKind, what: impl Into<String>) -> ConfigError {
        ConfigError {
            kind,
            failed: crate::error::Failed::new(what),
        }
    }

    fn caused(
        kind: ConfigErrorKind,
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ConfigError {
        ConfigError {
            kind,
            failed: crate::error::Failed::caused(what, source),
        }
    }

    /// A setting that cannot be used, with what to fix.
    pub(crate) fn invalid(what: impl Into<String>) -> ConfigError {
        ConfigError::new(ConfigErrorKind::Invalid, what)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.failed.fmt(f)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failed.cause()
    }
}

impl Config {
    /// Reads a configuration file. Errors name the file, the line and what to fix.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::caused(
                ConfigErrorKind::Unreadable,
                format!("cannot read `{}`", path.display()),
                e,
            )
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses configuration text; `name` is shown in errors.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_saphyr::from_str::<Config>(text).map_err(|e| {
            let options = serde_saphyr::render_options! { source_name: Some(name) };
            let rendered = e.render_with_options(options);
            // The caller says "error: " once; the snippet names the file, not `<input>`.
            let rendered = rendered.strip_prefix("error: ").unwrap_or(&rendered);
            ConfigError::new(ConfigErrorKind::Invalid, format!(
                "{rendered}\n  = help: the keys are listed, one by one, in docs/server.md; a value's type must match its default"
            ))
        })
    }

    /// The console's settings, checked.
    pub fn console_settings(&self) -> Result<&ConsoleConfig, ConfigError> {
        let most = super::recent::MAX_RECENT;
        if self.console.recent > most {
            return Err(ConfigError::new(
                ConfigErrorKind::Invalid,
                format!(
                    "console.recent: {} is more than the console keeps ({most}); give at most {most}, or 0 to keep none",
                    self.console.recent
                ),
            ));
        }
        Ok(&self.console)
    }

    /// The admin credentials, with secrets read from the environment or files.
    pub fn admin_auth(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AdminAuth, ConfigError> {
        let creds = read_credentials(
            "admin",
            self.admin.bearer.as_ref(),
            self.admin.basic.as_ref(),
            None,
            env,
        )?;
        Ok(AdminAuth::require(creds).metrics_open(self.admin.metrics_open))
    }

    /// The NATS settings of `state:` when its backend is `nats` (secrets read from the
    /// environment or files), checked: every mistake named with its key and a fix.
    #[cfg(feature = "nats")]
    pub fn nats_settings(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<crate::dispatch::NatsSettings>, ConfigError> {
        use crate::dispatch::NatsAuth;
        let st = &self.state;
        if st.backend != Backend::Nats {
            return Ok(None);
        }
        let invalid = |m: String| ConfigError::new(ConfigErrorKind::Invalid, m);
        if st.urls.is_empty() {
            return Err(invalid(String::from(
                "state.urls: the nats backend needs the servers' URLs, for example [nats://10.0.0.1:4222, nats://10.0.0.2:4222, nats://10.0.0.3:4222]",
            )));
        }
        if let Some(u) = st
            .urls
            .iter()
            .find(|u| !(u.starts_with("nats://") || u.starts_with("tls://")) || u.contains('@'))
        {
            return Err(invalid(format!(
                "state.urls: `{}` is not a NATS URL without credentials: write nats://host:port (or tls://), and give credentials in state.user/password or state.token",
                if u.contains('@') {
                    "<a URL with credentials>"
                } else {
                    u
                }
            )));
        }
        let valid_name = !st.stream.is_empty()
            && st.stream.len() <= 64
            && st
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(invalid(format!(
                "state.stream: `{}` is not a usable stream name: letters, digits, `_` and `-`, at most 64",
                st.stream
            )));
        }
        let within = |key: &str, value: u64, range: std::ops::RangeInclusive<u64>, why: &str| {
            if range.contains(&value) {
                return Ok(());
            }
            Err(invalid(format!(
                "state.{key}: {value} is out of range: {} to {} ({why})",
                range.start(),
                range.end()
            )))
        };
        within(
            "replicas",
            st.replicas as u64,
            1..=5,
            "the copies JetStream keeps; 3 for a 3-node cluster",
        )?;
        within(
            "timeout_ms",
            st.timeout_ms,
            500..=60_000,
            "4000 keeps a 503 within the senders' patience",
        )?;
        within(
            "lease_ms",
            st.lease_ms,
            1000..=600_000,
            "how soon a dead replica's deliveries go to another",
        )?;
        let auth = match (&st.user, &st.password, &st.token) {
            (None, None, None) => NatsAuth::None,
            (Some(user), Some(p), None) => NatsAuth::UserPassword(
                user.clone(),
                read_secret("state.password", p, env)?.expose().to_owned(),
            ),
            (None, None, Some(t)) => {
                NatsAuth::Token(read_secret("state.token", t, env)?.expose().to_owned())
            }
            _ => {
                return Err(invalid(String::from(
                    "state: give either `user` with `password`, or `token`, or neither",
                )));
            }
        };
        Ok(Some(crate::dispatch::NatsSettings {
            urls: st.urls.clone(),
            auth,
            prefix: st.stream.clone(),
            replicas: st.replicas,
            timeout: Duration::from_millis(st.timeout_ms),
            lease: Duration::from_millis(st.lease_ms),
        }))
    }

    /// A `state.backend: nats` in a build without NATS support.
    #[cfg(not(feature = "nats"))]
    pub fn nats_settings(
        &self,
        _env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<()>, ConfigError> {
        if self.state.backend == Backend::Nats {
            return Err(ConfigError::new(
                ConfigErrorKind::Invalid,
                "state.backend: this build has no NATS support; build with the `nats` feature (on by default) or use `sqlite`",
            ));
        }
        Ok(None)
    }

    /// The ingest credentials, with secrets read from the environment or files.
    pub fn ingest_auth(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<IngestAuth, ConfigError> {
        let mut auth = IngestAuth::none();
        for (i, entry) in self.ingest.auth.iter().enumerate() {
            let creds = read_credentials(
                &format!("ingest.auth[{i}]"),
                entry.bearer.as_ref(),
                entry.basic.as_ref(),
                entry.query_token.as_ref(),
                env,
            )?;
            if creds.is_empty() {
                return Err(ConfigError::new(
                    ConfigErrorKind::Invalid,
                    format!(
                        "ingest.auth[{i}]: give at least one of `bearer`, `basic`, `query_token`"
                    ),
                ));
            }
            for s in &entry.sources {
                let source = match s.as_str() {
                    "*" => None,
                    name => Some(Source::from_name(name).ok_or_else(|| {
                        ConfigError::new(ConfigErrorKind::Invalid, format!("ingest.auth[{i}].sources: unknown source `{name}` (alibaba, yandex, alertmanager, prometheus, grafana, generic, or *)"))
                    })?),
                };
                auth = auth.require(source, creds.clone());
            }
        }
        Ok(auth)
    }
}

/// The credentials an entry of the config names, secrets read; `place` names the entry in
/// errors (`ingest.auth[0]`, `admin`).
fn read_credentials(
    place: &str,
    bearer: Option<&SecretRef>,
    basic: Option<&BasicAuth>,
    query_token: Option<&SecretRef>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Credential>, ConfigError> {
    let mut creds = Vec::new();
    if let Some(b) = bearer {
        creds.push(Credential::Bearer(read_secret(
            &format!("{place}.bearer"),
            b,
            env,
        )?));
    }
    if let Some(b) = basic {
        creds.push(Credential::Basic {
            user: b.user.clone(),
            password: read_secret(&format!("{place}.basic.password"), &b.password, env)?,
        });
    }
    if let Some(q) = query_token {
        creds.push(Credential::QueryToken(read_secret(
            &format!("{place}.query_token"),
            q,
            env,
        )?));
    }
    Ok(creds)
}

/// A secret from where the config says (`place` names the key, for errors): an environment
/// variable or a file, never empty or blank.
fn read_secret(
    place: &str,
    r: &SecretRef,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    match (&r.env, &r.file) {
        (Some(name), None) => {
            let line = name.referenced.line();
            let name = &name.value;
            match env(name) {
                None => Err(ConfigError::new(
                    ConfigErrorKind::Secret,
                    format!("line {line}: {place}: environment variable `{name}` is not set"),
                )),
                Some(v) if v.trim().is_empty() => Err(ConfigError::new(
                    ConfigErrorKind::Secret,
                    format!(
                        "line {line}: {place}: environment variable `{name}` is empty; an empty secret would let anyone in"
                    ),
                )),
                Some(v) => Ok(Secret::new(v)),
            }
        }
        (None, Some(file)) => {
            let line = file.referenced.line();
            let path = &file.value;
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::caused(
                    ConfigErrorKind::Secret,
                    format!("line {line}: {place}: cannot read `{}`", path.display()),
                    e,
                )
            })?;
            let secret = text.trim_end_matches(['\n', '\r']);
            if secret.trim().is_empty() {
                return Err(ConfigError::new(
                    ConfigErrorKind::Secret,
                    format!(
                        "line {line}: {place}: `{}` is empty; an empty secret would let anyone in: write the secret in it",
                        path.display()
                    ),
                ));
            }
            Ok(Secret::new(secret))
        }
        _ => Err(ConfigError::new(
            ConfigErrorKind::Invalid,
            format!("{place}: give exactly one of `env` or `file`"),
        )),
    }
}

#[cfg(test)]
#[path = "config_test.rs"]
mod tests;
