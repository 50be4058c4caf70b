//! The alert as the engine sees it, and one adapter per sender.
//!
//! An [`Alert`] is the sender's payload as received (a JSON value) plus four metadata
//! fields that let one rule cover every sender: `@source`, `@state`, `@name`, `@id`.
//! `../docs/sources.md` says how each sender's metadata is derived; the adapters in this
//! module are that document in code.
//!
//! Never: depends on the server or the runtime (the engine-alone build uses it), or lets
//! metadata hide a payload field of the same name (`@state` and `state` are different).

mod adapt;

use std::fmt;

use serde_json::Value;

pub(crate) use adapt::adapt_at;
pub use adapt::{
    AdaptError, AdaptLimits, adapt_json, adapt_json_at, adapt_json_within, detect_source,
    form_to_json,
};

/// The sender an alert came from: the value of `@source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Alibaba Cloud CloudMonitor: threshold callbacks and system events.
    Alibaba,
    /// Yandex Monitoring, through a Cloud Function relay.
    Yandex,
    /// A Prometheus Alertmanager webhook (`version: "4"`), one alert per element of `alerts`.
    Alertmanager,
    /// Prometheus sending to the Alertmanager API (`POST /api/v2/alerts`).
    Prometheus,
    /// A Grafana webhook contact point (`version: "1"`).
    Grafana,
    /// Any other JSON.
    Generic,
}

impl Source {
    /// Every source, in documentation order.
    pub const ALL: [Source; 6] = [
        Source::Alibaba,
        Source::Yandex,
        Source::Alertmanager,
        Source::Prometheus,
        Source::Grafana,
        Source::Generic,
    ];

    /// The name used in rules (`@source == "alibaba"`) and URLs (`/alerts/alibaba`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Alibaba => "alibaba",
            Source::Yandex => "yandex",
            Source::Alertmanager => "alertmanager",
            Source::Prometheus => "prometheus",
            Source::Grafana => "grafana",
            Source::Generic => "generic",
        }
    }

    /// The source with this name.
    pub fn from_name(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The alert's state normalized across senders: the value of `@state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Alibaba `ALERT`/`ALARM`, Yandex `ALARM`, Alertmanager and Grafana `firing`.
    Firing,
    /// Alibaba and Yandex `OK`, Alertmanager and Grafana `resolved`.
    Resolved,
    /// Alibaba `INSUFFICIENT_DATA`, Yandex `NO_DATA`.
    Nodata,
    /// Yandex `WARN`.
    Warning,
    /// Yandex `ERROR`.
    Error,
    /// Anything else, or no state at all.
    Unknown,
}

impl State {
    /// Every state.
    pub const ALL: [State; 6] = [
        State::Firing,
        State::Resolved,
        State::Nodata,
        State::Warning,
        State::Error,
        State::Unknown,
    ];

    /// The name used in rules: `@state == "resolved"`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Firing => "firing",
            State::Resolved => "resolved",
            State::Nodata => "nodata",
            State::Warning => "warning",
            State::Error => "error",
            State::Unknown => "unknown",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert: the payload as received, its metadata, and when it was received.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    body: Value,
    source: Source,
    state: State,
    name: Option<String>,
    id: Option<String>,
    /// Set by the adapter (`adapt.rs`) to the moment it decided `@state` at.
    pub(super) received_at: jiff::Timestamp,
}

impl Alert {
    /// An alert from a generic sender: `@source` is `generic`, `@state` `unknown`, received
    /// now (set another time with [`Alert::with_received_at`]).
    pub fn new(body: Value) -> Alert {
        Alert::unreceived(body).with_received_at(jiff::Timestamp::now())
    }

    /// An alert whose moment of receipt the caller sets: the adapters, which receive a
    /// whole body at one moment (`adapt.rs` sets it), without reading the clock per alert.
    pub(super) fn unreceived(body: Value) -> Alert {
        Alert {
            body,
            source: Source::Generic,
            state: State::Unknown,
            name: None,
            id: None,
            received_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    /// Sets when the alert was received: the moment `during <window>` is decided at. A
    /// test's clock, or a replay of recorded alerts, sets its own.
    pub fn with_received_at(mut self, at: jiff::Timestamp) -> Alert {
        self.received_at = at;
        self
    }

    /// When the alert was received ([`Alert::new`]'s clock reading, or the adapter's).
    pub fn received_at(&self) -> jiff::Timestamp {
        self.received_at
    }

    /// Sets `@source`.
    pub fn with_source(mut self, source: Source) -> Alert {
        self.source = source;
        self
    }

    /// Sets `@state`.
    pub fn with_state(mut self, state: State) -> Alert {
        self.state = state;
        self
    }

    /// Sets `@name`.
    pub fn with_name(mut self, name: impl Into<String>) -> Alert {
        self.name = Some(name.into());
        self
    }

    /// Sets `@id`.
    pub fn with_id(mut self, id: impl Into<String>) -> Alert {
        self.id = Some(id.into());
        self
    }

    /// The payload as received (after the sender's normalizations).
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// `@source`
    pub fn source(&self) -> Source {
        self.source
    }

    /// `@state`
    pub fn state(&self) -> State {
        self.state
    }

    /// `@name`, if the sender names its alerts.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// `@id`: a stable identity of "the same alert" for this sender.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}
