//! Body templates: JSON in shape, filled from the alert when a delivery is made.
//!
//! A field path stands for the field's value (`null` when missing). Inside a string,
//! `${path}` is replaced by the field as text (nothing when missing). `${env.NAME}` was
//! resolved at load; it is shown as the placeholder unless the body is rendered for sending.

use serde_json::{Map, Value};

use super::program::path;
use super::value::{Path, first_value};
use crate::alert::Alert;
use crate::check::{BodyTemplate, TextPart};

/// A compiled body template.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    Value(Value),
    Text(Box<[Piece]>),
    Path(Path),
    Array(Box<[Body]>),
    Object(Box<[(String, Body)]>),
}

/// A piece of an interpolated string.
#[derive(Clone, Debug)]
pub(crate) enum Piece {
    Text(String),
    Secret { name: String, value: String },
    Path(Path),
}

pub(crate) fn compile_body(t: &BodyTemplate) -> Body {
    match t {
        BodyTemplate::Value(v) => Body::Value(v.clone()),
        BodyTemplate::Path(p) => Body::Path(path(p)),
        BodyTemplate::Text(s) => Body::Text(
            s.parts
                .iter()
                .map(|p| match p {
                    TextPart::Text(t) => Piece::Text(t.clone()),
                    TextPart::Env { name, value } => Piece::Secret {
                        name: name.clone(),
                        value: value.clone(),
                    },
                    TextPart::Path(fp) => Piece::Path(path(fp)),
                })
                .collect(),
        ),
        BodyTemplate::Array(items) => Body::Array(items.iter().map(compile_body).collect()),
        BodyTemplate::Object(members) => Body::Object(
            members
                .iter()
                .map(|(k, v)| (k.clone(), compile_body(v)))
                .collect(),
        ),
    }
}

impl Body {
    /// Whether the template holds a `${env.NAME}`: then what is sent differs from what may
    /// be shown.
    pub(crate) fn has_secrets(&self) -> bool {
        match self {
            Body::Value(_) | Body::Path(_) => false,
            Body::Text(pieces) => pieces.iter().any(|p| matches!(p, Piece::Secret { .. })),
            Body::Array(items) => items.iter().any(Body::has_secrets),
            Body::Object(members) => members.iter().any(|(_, b)| b.has_secrets()),
        }
    }
}

/// Whether a rendered body holds the secrets' values (to send it) or keeps `${env.NAME}`
/// (to show it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secrets {
    Reveal,
    Hide,
}

/// Renders a body, with its secrets as `secrets` says.
pub(crate) fn render(b: &Body, alert: &Alert, secrets: Secrets) -> Value {
    match b {
        Body::Value(v) => v.clone(),
        Body::Path(p) => first_value(p, alert),
        Body::Text(pieces) => {
            let mut s = String::new();
            for p in pieces.iter() {
                match p {
                    Piece::Text(t) => s.push_str(t),
                    Piece::Secret { value, .. } if secrets == Secrets::Reveal => s.push_str(value),
                    Piece::Secret { name, .. } => {
                        s.push_str("${env.");
                        s.push_str(name);
                        s.push('}');
                    }
                    Piece::Path(p) => match first_value(p, alert) {
                        Value::Null => {}
                        Value::String(v) => s.push_str(&v),
                        other => s.push_str(&other.to_string()),
                    },
                }
            }
            Value::String(s)
        }
        Body::Array(items) => {
            Value::Array(items.iter().map(|i| render(i, alert, secrets)).collect())
        }
        Body::Object(members) => {
            let mut m = Map::new();
            for (k, v) in members.iter() {
                m.insert(k.clone(), render(v, alert, secrets));
            }
            Value::Object(m)
        }
    }
}
