//! The NATS JetStream backend's foundation: connecting (with the server version the design
//! needs), the one stream every replica shares, and the one write it makes, an atomic batch
//! whose state writes are compare-and-set (docs/nats.md, "Design").
//!
//! Owns: what a replica checks before it trusts a NATS deployment (reachable, JetStream on,
//! a server of at least [`MIN_SERVER`], the stream as the design needs it), and committing
//! a batch of messages all or nothing. Never: decides routing (the step does), or retries
//! a refused commit by itself (the caller re-reads and runs the step again).
//!
//! Why one stream: a submit's state changes and its deliveries must become durable
//! together, and JetStream's atomic batches (2.12) are atomic within one stream only. With
//! `max_msgs_per_subject = 1`, each state key's subject holds its latest value (what a KV
//! bucket is), and `Nats-Expected-Last-Subject-Sequence` on each write makes the batch
//! fail whole when another replica changed a key it read.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use serde::Deserialize;

/// A failure to reach the deployment, or one it answered with: the sender hears a 503 and
/// tries again.
pub(crate) fn unavailable(what: impl std::fmt::Display) -> crate::dispatch::DispatchError {
    crate::dispatch::DispatchError::other(
        crate::dispatch::DispatchErrorKind::Unavailable,
        what.to_string(),
    )
}

/// Whether a fetch from a consumer failed with status 503: no server answered the pull
/// (the consumer has no leader yet, just after it was made or while its servers elect
/// one). The client reports it only as text. A caller takes it as "nothing to take yet":
/// its next fetch asks again.
fn is_no_responders(error: &dyn std::fmt::Display) -> bool {
    error
        .to_string()
        .starts_with("error while processing messages from the stream: 503")
}

/// Up to `n` messages from `consumer`, waiting at most `wait` (100 ms at least) for them.
/// A pull nobody answered (see [`is_no_responders`]) gives what came before it.
pub(crate) async fn fetch(
    consumer: &jetstream::consumer::PullConsumer,
    n: usize,
    wait: Duration,
) -> Result<Vec<jetstream::Message>, crate::dispatch::DispatchError> {
    use futures_util::StreamExt;
    let mut batch = consumer
        .fetch()
        .max_messages(n.max(1))
        .expires(wait.max(Duration::from_millis(100)))
        .messages()
        .await
        .map_err(unavailable)?;
    let mut out = Vec::new();
    while let Some(message) = batch.next().await {
        match message {
            Ok(m) => out.push(m),
            Err(e) if is_no_responders(&e) => {
                tracing::debug!("a consumer has no leader yet; nothing taken now");
                break;
            }
            Err(e) => return Err(unavailable(e)),
        }
    }
    Ok(out)
}

/// Gives `message` back until `due` (ms): the servers hand it out again then, so that no
/// replica polls for it.
pub(crate) async fn nak_until(
    message: &jetstream::Message,
    due: u64,
    now: u64,
) -> Result<(), crate::dispatch::DispatchError> {
    let delay = Duration::from_millis(due.saturating_sub(now));
    message
        .ack_with(jetstream::AckKind::Nak(Some(delay)))
        .await
        .map_err(unavailable)
}

/// The subject of a delivery (under the prefix): the state, the queues and the silences
/// all name deliveries so.
pub(crate) fn delivery_subject(target: &str, id: u64) -> String {
    format!("deliver.{target}.{id}")
}

/// The oldest server the design runs on: atomic batch publishes came in 2.12.
pub(crate) const MIN_SERVER: Version = Version(2, 12, 0);

/// A server version, `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version(pub(crate) u64, pub(crate) u64, pub(crate) u64);

impl Version {
    /// `2.15.1`, `v2.12.0-beta.3` (a pre-release counts as its release); `None` for
    /// anything else.
    pub(crate) fn parse(text: &str) -> Option<Version> {
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
        let v = Version(
            parts.next()??,
            parts.next()??,
            parts.next().unwrap_or(Some(0))?,
        );
        parts.next().is_none().then_some(v)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// How a replica reaches NATS (`state:` in the config file, docs/nats.md).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Server URLs (`nats://127.0.0.1:4222`); the client picks one and fails over.
    pub urls: Vec<String>,
    /// A user and password, or a token, if the servers ask for one.
    pub auth: Auth,
    /// The stream's name and the root of its subjects (`SWITCHYARD`): several deployments
    /// share a NATS cluster under different prefixes.
    pub prefix: String,
    /// How many servers keep each message (3 for a 3-node cluster; 1 for a single server).
    pub replicas: usize,
    /// How long connecting, and each request, may take; also the longest a submit waits
    /// before it is refused (503), within the senders' patience.
    pub timeout: Duration,
    /// How long a delivery taken by a replica stays its own without a word: renewed while
    /// the replica lives, so this is how soon a dead replica's deliveries go to another.
    /// Every replica must use the same.
    pub lease: Duration,
}

/// Credentials for the NATS servers. Values never appear in an error or a log.
#[derive(Clone, Default)]
pub enum Auth {
    /// The servers ask for nothing.
    #[default]
    None,
    /// A user and a password.
    UserPassword(String, String),
    /// A token.
    Token(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::UserPassword(..) => "UserPassword(***)",
            Auth::Token(_) => "Token(***)",
        })
    }
}

/// Why a replica cannot use the NATS deployment, said so that an operator can fix it.
#[derive(Debug)]
pub(crate) enum SetupError {
    /// No server answered.
    Unreachable { urls: String, reason: String },
    /// The server is older than the design needs.
    TooOld { found: String },
    /// The account has no JetStream.
    NoJetStream(String),
    /// The stream exists with settings the design cannot work with.
    Mismatch { stream: String, what: String },
    /// A JetStream request failed (no quorum, a timeout).
    Request(String),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Unreachable { urls, reason } => write!(
                f,
                "cannot reach NATS at {urls}: {reason}; start the servers, or fix `state.urls`"
            ),
            SetupError::TooOld { found } => write!(
                f,
                "the NATS server is {found}, older than {MIN_SERVER}, the first with atomic batch publishes, which the NATS backend needs; upgrade the servers"
            ),
            SetupError::NoJetStream(why) => write!(
                f,
                "the NATS account has no JetStream ({why}); start the servers with JetStream on (`-js`, or `jetstream {{}}` in their configuration)"
            ),
            SetupError::Mismatch { stream, what } => write!(
                f,
                "the stream {stream} exists with settings the NATS backend cannot use: {what}; delete it (`nats stream rm {stream}`) if it holds nothing you need, or give `state.stream` another name"
            ),
            SetupError::Request(why) => write!(
                f,
                "a JetStream request failed: {why} (is a majority of the NATS servers up?)"
            ),
        }
    }
}

impl std::error::Error for SetupError {}

/// A replica's connection to the deployment: the client, JetStream, and the stream.
#[derive(Clone)]
pub(crate) struct Nats {
    pub(crate) client: async_nats::Client,
    /// JetStream, for what the stream handle does not do (tests remove the stream).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) js: jetstream::Context,
    pub(crate) stream: stream::Stream,
    pub(crate) version: Version,
    prefix: String,
    timeout: Duration,
}

/// Connects, checks the server and JetStream, and creates the stream or verifies the one
/// that exists. Bounded by `settings.timeout` for the connection and each request.
pub(crate) async fn connect(settings: &Settings) -> Result<Nats, SetupError> {
    let urls = settings.urls.join(", ");
    let mut options = async_nats::ConnectOptions::new()
        .name("switchyard")
        .connection_timeout(settings.timeout)
        .request_timeout(Some(settings.timeout));
    options = match &settings.auth {
        Auth::None => options,
        Auth::UserPassword(user, password) => {
            options.user_and_password(user.clone(), password.clone())
        }
        Auth::Token(token) => options.token(token.clone()),
    };
    let addrs: Vec<async_nats::ServerAddr> = settings
        .urls
        .iter()
        .map(|u| {
            u.parse().map_err(|e| SetupError::Unreachable {
                urls: urls.clone(),
                reason: format!("`{u}` is not a NATS URL ({e})"),
            })
        })
        .collect::<Result<_, _>>()?;
    let client = tokio::time::timeout(settings.timeout, options.connect(addrs))
        .await
        .map_err(|_| SetupError::Unreachable {
            urls: urls.clone(),
            reason: format!("no answer within {:?}", settings.timeout),
        })?
        .map_err(|e| SetupError::Unreachable {
            urls: urls.clone(),
            reason: e.to_string(),
        })?;
    let found = client.server_info().version;
    let version = Version::parse(&found)
        .filter(|v| *v >= MIN_SERVER)
        .ok_or(SetupError::TooOld { found })?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(settings.timeout);
    js.query_account()
        .await
        .map_err(|e| SetupError::NoJetStream(e.to_string()))?;
    let stream = ensure_stream(&js, settings).await?;
    Ok(Nats {
        client,
        js,
        stream,
        version,
        prefix: settings.prefix.clone(),
        timeout: settings.timeout,
    })
}

/// The stream as the design needs it.
fn stream_config(settings: &Settings) -> stream::Config {
    stream::Config {
        name: settings.prefix.clone(),
        subjects: vec![format!("{}.>", settings.prefix)],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        max_messages_per_subject: 1,
        discard: stream::DiscardPolicy::Old,
        allow_atomic_publish: true,
        allow_message_ttl: true,
        allow_direct: true,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

/// Creates the stream, or checks that the one there has what the design relies on.
async fn ensure_stream(
    js: &jetstream::Context,
    settings: &Settings,
) -> Result<stream::Stream, SetupError> {
    let want = stream_config(settings);
    let mut stream = idempotent(&format!("the stream {}", want.name), || {
        js.get_or_create_stream(want.clone())
    })
    .await
    .map_err(SetupError::Request)?;
    let have = stream
        .info()
        .await
        .map_err(|e| SetupError::Request(e.to_string()))?
        .config
        .clone();
    let mismatch = |what: String| SetupError::Mismatch {
        stream: want.name.clone(),
        what,
    };
    if have.subjects != want.subjects {
        return Err(mismatch(format!(
            "its subjects are {:?}, not {:?}",
            have.subjects, want.subjects
        )));
    }
    if have.max_messages_per_subject != 1 {
        return Err(mismatch(format!(
            "it keeps {} messages per subject, not 1",
            have.max_messages_per_subject
        )));
    }
    if !have.allow_atomic_publish {
        return Err(mismatch(String::from("atomic publishes are off")));
    }
    if !have.allow_message_ttl {
        return Err(mismatch(String::from("per-message TTLs are off")));
    }
    if have.retention != stream::RetentionPolicy::Limits {
        return Err(mismatch(format!(
            "its retention is {:?}, not limits",
            have.retention
        )));
    }
    if have.num_replicas != want.num_replicas {
        return Err(mismatch(format!(
            "it has {} replicas, not the {} of `state.replicas`",
            have.num_replicas, want.num_replicas
        )));
    }
    Ok(stream)
}

/// Runs an idempotent set-up request (making a stream or a consumer), asking again when
/// it timed out (a cluster busy electing, or starved of CPU: seen in tests under load),
/// three times at most; the error, naming `what`, otherwise.
async fn idempotent<T, E, F, Fut>(what: &str, mut request: F) -> Result<T, String>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match request().await {
            Ok(v) => return Ok(v),
            Err(e) if tries < 3 && e.to_string().contains("timed out") => {
                tracing::warn!(error = %e, "making {what} timed out; asking again");
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
}

/// One message of a commit.
#[derive(Clone, Debug)]
pub(crate) struct Write {
    /// The subject under the prefix (`state.ab12…`), without the prefix.
    pub(crate) subject: String,
    pub(crate) payload: Vec<u8>,
    /// Compare-and-set: the write applies only if the subject's last message is this
    /// sequence (0: the subject holds nothing).
    pub(crate) expect: Option<u64>,
    /// How long the server keeps the message (`Nats-TTL`), in seconds; `None`: until it is
    /// replaced or removed.
    pub(crate) ttl_secs: Option<u64>,
}

/// Why a commit was not stored.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CommitError {
    /// A compare-and-set failed: another replica changed what this one read. Nothing of
    /// the batch was stored; re-read and decide again.
    Conflict(String),
    /// Refused for another reason, or no answer (no quorum, a timeout): whether it was
    /// stored is unknown until the subjects are read again.
    Failed(String),
    /// A message larger than the servers take (`max_payload`): never sent, and never
    /// storable as it is; asking again cannot help.
    TooLarge(String),
}

impl CommitError {
    /// The error a caller answers with: unavailable (a 503: try again) for a commit that
    /// failed, refused for one that can never be stored, busy for a race lost too often.
    pub(crate) fn into_error(self) -> crate::dispatch::DispatchError {
        use crate::dispatch::{DispatchError, DispatchErrorKind};
        match self {
            CommitError::Failed(e) => unavailable(e),
            CommitError::TooLarge(e) => DispatchError::other(DispatchErrorKind::Refused, e),
            CommitError::Conflict(e) => {
                DispatchError::other(DispatchErrorKind::Busy, format!("a concurrent change: {e}"))
            }
        }
    }
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommitError::Conflict(why) => write!(f, "a concurrent change: {why}"),
            CommitError::Failed(why) => write!(f, "the commit failed: {why}"),
            CommitError::TooLarge(why) => write!(f, "{why}"),
        }
    }
}

/// The most times a change decides again: after losing a race to another replica, or after
/// fetching what its decision asked for.
pub(crate) const MAX_ROUNDS: usize = 16;

/// The most reads one decision or listing has in flight at once.
pub(crate) const READS_AT_ONCE: usize = 64;

/// The most messages one atomic batch may hold (the server's limit).
pub(crate) const MAX_BATCH: usize = 1000;

/// The answer JetStream gives a publish: an ack with the sequence, or an error.
#[derive(Deserialize)]
struct PubAnswer {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// JetStream's error codes for a failed `Nats-Expected-Last-Subject-Sequence`: on a single
/// publish, and on an atomic batch's commit (2.15 answers a race lost inside a batch with
/// the second; seen in `the_design_holds_on_a_three_node_cluster`).
const WRONG_LAST_SEQUENCE: [u64; 2] = [10071, 10164];

/// JetStream's error code for an atomic batch refused because the stream has as many
/// batches in flight as it takes (50 by default): nothing of it was stored.
const TOO_MANY_BATCHES: u64 = 10210;

impl Nats {
    /// How long a request may take (`Settings::timeout`): also what a whole submit may
    /// take before it is refused.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The durable pull consumer `name`, made by the first replica that asks (the same
    /// name and settings on every replica). Making it is idempotent, so a request that
    /// timed out (a cluster busy electing, or starved of CPU: seen in a test under load) is
    /// asked again, three times at most.
    pub(crate) async fn consumer(
        &self,
        name: &str,
        config: jetstream::consumer::pull::Config,
    ) -> Result<jetstream::consumer::PullConsumer, crate::dispatch::DispatchError> {
        idempotent(&format!("the consumer {name}"), || {
            self.stream.get_or_create_consumer(name, config.clone())
        })
        .await
        .map_err(unavailable)
    }

    /// The subjects under `filter` (relative to the prefix) that hold a message, relative
    /// to the prefix.
    pub(crate) async fn subjects(
        &self,
        filter: &str,
    ) -> Result<Vec<String>, crate::dispatch::DispatchError> {
        use futures_util::TryStreamExt;
        let mut pages = self
            .stream
            .info_with_subjects(self.subject(filter))
            .await
            .map_err(unavailable)?;
        let root = self.subject("");
        let mut out = Vec::new();
        while let Some((subject, _)) = pages.try_next().await.map_err(unavailable)? {
            out.push(subject.strip_prefix(&root).unwrap_or(&subject).to_owned());
        }
        Ok(out)
    }

    /// The full subject of `subject` under the prefix.
    pub(crate) fn subject(&self, subject: &str) -> String {
        format!("{}.{subject}", self.prefix)
    }

    /// The last message of `subject` (under the prefix), from the stream's leader (a
    /// replica may lag): its sequence and payload; `None` when the subject holds nothing.
    /// "No responders" is asked again, as for [`Nats::commit`].
    pub(crate) async fn last(&self, subject: &str) -> Result<Option<(u64, Vec<u8>)>, String> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        let full = self.subject(subject);
        self.while_unanswered(|| async {
            match self.stream.get_last_raw_message_by_subject(&full).await {
                Ok(m) => Some(Ok(Some((m.sequence, m.payload.to_vec())))),
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Some(Ok(None)),
                Err(e) if e.to_string().contains("no responders") => None,
                Err(e) => Some(Err(e.to_string())),
            }
        })
        .await
        .unwrap_or_else(|| {
            Err(String::from(
                "no server answered the read (no responders) within the request timeout",
            ))
        })
    }

    /// Runs `attempt` again while it answers `None` (no responders: nobody took the
    /// request, so asking again is safe), pausing 20 ms, then twice as long each time up to
    /// 500 ms, for at most the request timeout; `None` past it.
    async fn while_unanswered<T, F, Fut>(&self, mut attempt: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            if let Some(done) = attempt().await {
                return Some(done);
            }
            if tokio::time::Instant::now() + pause >= deadline {
                return None;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Stores `writes` all or nothing, as one atomic batch; answers the last message's
    /// stream sequence. A single write is a plain publish (atomic by itself).
    ///
    /// "No responders" (a server that has not yet learned where the stream lives, just
    /// after a connect or a leader change) means the batch was not committed: it is sent
    /// again, with a new batch id, for at most the request timeout.
    pub(crate) async fn commit(&self, writes: Vec<Write>) -> Result<u64, CommitError> {
        let max = self.client.server_info().max_payload;
        if let Some(w) = writes.iter().find(|w| w.payload.len() > max) {
            return Err(CommitError::TooLarge(format!(
                "a message of {} bytes (subject {}) is larger than the NATS servers take (max_payload {max} bytes): raise max_payload on the servers, or lower limits.max_body_bytes",
                w.payload.len(),
                w.subject.split('.').take(2).collect::<Vec<_>>().join(".")
            )));
        }
        self.while_unanswered(|| async {
            match self.commit_once(&writes).await {
                Err(Attempt::NotTaken) => None,
                Err(Attempt::Done(e)) => Some(Err(e)),
                Ok(seq) => Some(Ok(seq)),
            }
        })
        .await
        .unwrap_or_else(|| {
            Err(CommitError::Failed(String::from(
                "no server took the commit within the request timeout (no responders, or the stream had too many atomic batches in flight)",
            )))
        })
    }

    async fn commit_once(&self, writes: &[Write]) -> Result<u64, Attempt> {
        let n = writes.len();
        if n == 0 {
            return Ok(0);
        }
        if n > MAX_BATCH {
            return Err(Attempt::Done(CommitError::Failed(format!(
                "{n} writes in one commit; at most {MAX_BATCH}"
            ))));
        }
        let batch = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let mut last = None;
        for (i, w) in writes.iter().enumerate() {
            let mut headers = HeaderMap::new();
            if n > 1 {
                headers.insert("Nats-Batch-Id", batch.as_str());
                headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
                if i + 1 == n {
                    headers.insert("Nats-Batch-Commit", "1");
                }
            }
            if let Some(ttl) = w.ttl_secs {
                headers.insert("Nats-TTL", format!("{}s", ttl.max(1)).as_str());
            }
            if let Some(seq) = w.expect {
                headers.insert(
                    "Nats-Expected-Last-Subject-Sequence",
                    seq.to_string().as_str(),
                );
            }
            let subject = self.subject(&w.subject);
            // The first message opens the batch (the server answers it), the last commits
            // it (the server answers with the ack); those between need no answer.
            if i == 0 || i + 1 == n {
                let answer = tokio::time::timeout(
                    self.timeout,
                    self.client
                        .request_with_headers(subject, headers, w.payload.clone().into()),
                )
                .await
                .map_err(|_| {
                    Attempt::Done(CommitError::Failed(format!(
                        "no answer within {:?}",
                        self.timeout
                    )))
                })?
                .map_err(|e| match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => Attempt::NotTaken,
                    _ => Attempt::Done(CommitError::Failed(e.to_string())),
                })?;
                last = Some(answer.payload);
            } else {
                self.client
                    .publish_with_headers(subject, headers, w.payload.clone().into())
                    .await
                    .map_err(|e| Attempt::Done(CommitError::Failed(e.to_string())))?;
            }
            // An error on the opening message ends the batch there.
            if i == 0
                && n > 1
                && let Some(p) = &last
                && !p.is_empty()
                && let Err(e) = judge(p)
            {
                return Err(e);
            }
        }
        judge(&last.unwrap_or_default())
    }
}

/// How one try at a commit ended, when it did not store it.
enum Attempt {
    /// Nobody took it (no responders), or the stream refused it for having too many
    /// atomic batches in flight: nothing was stored; it may be sent again.
    NotTaken,
    Done(CommitError),
}

/// What a publish answer says.
fn judge(payload: &[u8]) -> Result<u64, Attempt> {
    let answer: PubAnswer = serde_json::from_slice(payload).map_err(|e| {
        Attempt::Done(CommitError::Failed(format!(
            "an answer that is not JetStream's ({e}): {}",
            String::from_utf8_lossy(payload)
        )))
    })?;
    match answer.error {
        None => Ok(answer.seq),
        Some(e) if WRONG_LAST_SEQUENCE.contains(&e.err_code) => {
            Err(Attempt::Done(CommitError::Conflict(e.description)))
        }
        Some(e) if e.err_code == TOO_MANY_BATCHES => Err(Attempt::NotTaken),
        Some(e) => Err(Attempt::Done(CommitError::Failed(format!(
            "{} (code {})",
            e.description, e.err_code
        )))),
    }
}

#[cfg(test)]
#[path = "nats_test.rs"]
pub(crate) mod tests;
