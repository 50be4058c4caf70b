//! The whole server, assembled from a config and a rule set: the router and its outbox,
//! the listener, the service, the rules watcher, SIGHUP, and a graceful stop. What
//! `switchyard serve` runs; a program that embeds switchyard runs the same.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use switchyard::server::{Config, Server};
//!
//! let config = Config::default();
//! let rules = switchyard::RuleSet::load_dir(&config.rules)?;
//! Server::new(config, rules)
//!     .run(switchyard::server::shutdown_signal(), |addr| println!("listening on http://{addr}"))
//!     .await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{AppState, Config, ConfigError, app, serve};
use crate::dispatch::{DispatchError, Router};
use crate::engine::RuleSet;
use crate::reload::Reloader;

/// How long open requests may take to finish once the server is told to stop.
const REQUEST_GRACE: Duration = Duration::from_secs(10);

/// How long deliveries in flight may take to finish once the server has stopped listening.
const DELIVERY_GRACE: Duration = Duration::from_secs(5);

/// A server to run: a config and the rule set it starts with.
pub struct Server {
    config: Config,
    rules: RuleSet,
    accept_outbox_loss: bool,
    env: EnvLookup,
}

/// Where secrets are read from.
type EnvLookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Why a server did not start, or stopped with an error.
#[derive(Debug)]
pub enum ServeError {
    /// The config cannot be used (a credential's secret, say).
    Config(ConfigError),
    /// The outbox cannot be opened (in use, unreadable, lost deliveries).
    Outbox(DispatchError),
    /// The listen address cannot be bound, or serving failed.
    Listen(SocketAddr, std::io::Error),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Config(e) => e.fmt(f),
            ServeError::Outbox(e) => e.fmt(f),
            ServeError::Listen(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Config(_) | ServeError::Outbox(_) => None,
            ServeError::Listen(_, e) => Some(e),
        }
    }
}

impl Server {
    /// A server for `config`, routing with `rules` (loaded from `config.rules`: the
    /// watcher, SIGHUP and `POST /-/reload` reload that folder). Secrets are read from
    /// the process environment.
    pub fn new(config: Config, rules: RuleSet) -> Server {
        Server {
            config,
            rules,
            accept_outbox_loss: false,
            env: Box::new(|name| std::env::var(name).ok()),
        }
    }

    /// Start even if the outbox's ledger shows lost deliveries (see
    /// [`crate::RouterBuilder::accept_outbox_loss`]).
    pub fn accept_outbox_loss(mut self, accept: bool) -> Server {
        self.accept_outbox_loss = accept;
        self
    }

    /// Reads secrets with `env` instead of the process environment.
    pub fn env(mut self, env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Server {
        self.env = Box::new(env);
        self
    }

    /// Runs until `shutdown` completes, then stops gracefully: open requests get 10 s,
    /// deliveries in flight 5 s; what is not delivered stays in the outbox. `listening`
    /// is told the bound address once the server accepts requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
        listening: impl FnOnce(SocketAddr),
    ) -> Result<(), ServeError> {
        let cfg = self.config;
        let auth = cfg.ingest_auth(&*self.env).map_err(ServeError::Config)?;
        let admin = cfg.admin_auth(&*self.env).map_err(ServeError::Config)?;
        let console = cfg.console_settings().map_err(ServeError::Config)?.clone();
        let nats = cfg.nats_settings(&*self.env).map_err(ServeError::Config)?;
        let builder = Router::builder()
            .rules(self.rules)
            .data_dir(&cfg.data)
            .in_flight_per_target(cfg.delivery.in_flight_per_target)
            .adaptive_in_flight(cfg.delivery.adaptive_in_flight)
            .hold_deliveries(cfg.delivery.hold)
            .queue_memory(cfg.delivery.queue_memory_mb.saturating_mul(1 << 20))
            .accept_outbox_loss(self.accept_outbox_loss);
        #[cfg(feature = "nats")]
        let builder = match nats {
            Some(settings) => builder.nats(settings),
            None => builder,
        };
        #[cfg(not(feature = "nats"))]
        let _ = nats;
        let router = builder.build().await.map_err(ServeError::Outbox)?;
        if cfg.delivery.hold {
            tracing::warn!("delivery.hold is set: deliveries are stored in the outbox, not sent");
        }
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| ServeError::Listen(cfg.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServeError::Listen(cfg.listen, e))?;
        if !admin.is_enabled() && !cfg.listen.ip().is_loopback() {
            tracing::warn!(listen = %cfg.listen, "no admin credential: dead letters, reload and rules answer anyone who reaches this address; set admin.bearer in the config");
        }
        let state = Arc::new(
            AppState::new(
                router.clone(),
                Some(cfg.rules.clone()),
                cfg.limits.clone(),
                auth,
            )
            .with_admin(admin)
            .with_console(&console)
            .with_reload_policy(cfg.reload.policy())
            .with_recording(&cfg.record, &cfg.data)
            .map_err(ServeError::Config)?
            .with_shadow(cfg.shadow_rules.as_deref())
            .map_err(ServeError::Config)?,
        );
        state.note_loaded(&router.rules());
        let _watcher = watch(&state);
        let _shadow_watcher = state.watch_shadow();
        let sighup = on_sighup(&state);
        tracing::info!(listen = %addr, rules = %cfg.rules.display(), data = %cfg.data.display(), "switchyard is listening");
        listening(addr);
        let served = serve(
            listener,
            app(state.clone()),
            &cfg.limits,
            shutdown,
            REQUEST_GRACE,
        )
        .await;
        if let Some(task) = sighup {
            task.abort();
        }
        state.set_ready(false);
        tracing::info!("stopping: delivering what is in flight");
        router.shutdown(DELIVERY_GRACE).await;
        served.map_err(|e| ServeError::Listen(addr, e))
    }
}

/// Reloads on every change of the rules folder (debounced), through the state's one
/// rules folder, as SIGHUP and `POST /-/reload` do. Kept alive by the caller.
fn watch(state: &Arc<AppState>) -> Option<Reloader> {
    let folder = state.rules_folder()?;
    let watch_state = state.clone();
    match Reloader::watch_folder(folder, move |outcome| {
        watch_state.apply_reload(outcome, "watch");
    }) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the rules folder; reload with SIGHUP or POST /-/reload");
            None
        }
    }
}

/// Reloads on SIGHUP, until the returned task is aborted.
#[cfg(unix)]
fn on_sighup(state: &Arc<AppState>) -> Option<tokio::task::JoinHandle<()>> {
    let state = state.clone();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => Some(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                state.reload_now("sighup").await;
                state.reload_shadow().await;
            }
        })),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP");
            None
        }
    }
}

#[cfg(not(unix))]
fn on_sighup(_: &Arc<AppState>) -> Option<tokio::task::JoinHandle<()>> {
    None
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM: the stop signal `switchyard serve` uses.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}
