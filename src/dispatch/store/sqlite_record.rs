//! A delivery's record as the SQLite outbox stores it: a tag byte, then postcard
//! ([`COMPACT`]); records stored as JSON by earlier versions are still read.
//!
//! Owns: encoding and decoding a record. Never: the rows and tables around it
//! (`sqlite.rs`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{Record, Spec};

/// A stored record, with its id (which is not in its bytes): the compact form
/// ([`COMPACT`]), or JSON as versions before it wrote (an outbox keeps its old rows).
pub(super) fn decode(id: u64, bytes: &[u8]) -> Result<Record, String> {
    let mut r = match bytes.split_first() {
        Some((&COMPACT, rest)) => postcard::from_bytes::<Compact>(rest)
            .map_err(|e| format!("compact record: {e}"))?
            .into_record()?,
        _ => serde_json::from_slice::<Record>(bytes).map_err(|e| e.to_string())?,
    };
    r.id = id;
    Ok(r)
}

/// The first byte of a record in the compact form: never the first byte of a JSON record
/// (`{`). The rest is [`Compact`] in postcard: the body is stored as its bytes, not as an
/// escaped JSON string, which made encoding a record a tenth of an ingest's instructions.
pub(super) const COMPACT: u8 = 1;

/// A record's compact stored form: every field always written, in this order (postcard is
/// not self-describing: a field is never skipped, and none may be added but at the end
/// with a new [`COMPACT`] tag). The `recheck` of a held firing is kept as JSON, its own
/// optional fields being skipped there.
#[derive(Serialize, Deserialize)]
struct Compact<'a> {
    spec: Cow<'a, Spec>,
    body: Cow<'a, str>,
    shown_body: Option<Cow<'a, str>>,
    alert_id: Option<Cow<'a, str>>,
    attempts: u32,
    next_at_ms: u64,
    last_error: Option<Cow<'a, str>>,
    created_ms: u64,
    fallback_from: Option<Cow<'a, str>>,
    recheck: Option<Vec<u8>>,
}

impl Compact<'_> {
    fn into_record(self) -> Result<Record, String> {
        let recheck = match self.recheck {
            None => None,
            Some(json) => Some(Box::new(
                serde_json::from_slice(&json)
                    .map_err(|e| format!("compact record's recheck: {e}"))?,
            )),
        };
        Ok(Record {
            id: 0,
            spec: self.spec.into_owned(),
            body: self.body.into_owned(),
            shown_body: self.shown_body.map(Cow::into_owned),
            alert_id: self.alert_id.map(Cow::into_owned),
            attempts: self.attempts,
            next_at_ms: self.next_at_ms,
            last_error: self.last_error.map(Cow::into_owned),
            created_ms: self.created_ms,
            fallback_from: self.fallback_from.map(Cow::into_owned),
            recheck,
        })
    }
}

/// A delivery record's stored form: [`COMPACT`], then [`Compact`]. Encoding one cannot
/// fail (postcard writes to a vector); if it ever did, the commit fails and its submits are
/// refused, rather than storing an empty blob.
pub(super) fn encode_record(r: &Record) -> rusqlite::Result<Vec<u8>> {
    let failed =
        |e: Box<dyn std::error::Error + Send + Sync>| rusqlite::Error::ToSqlConversionFailure(e);
    let recheck = match &r.recheck {
        None => None,
        Some(c) => Some(serde_json::to_vec(c).map_err(|e| failed(Box::new(e)))?),
    };
    let compact = Compact {
        spec: Cow::Borrowed(&r.spec),
        body: Cow::Borrowed(&r.body),
        shown_body: r.shown_body.as_deref().map(Cow::Borrowed),
        alert_id: r.alert_id.as_deref().map(Cow::Borrowed),
        attempts: r.attempts,
        next_at_ms: r.next_at_ms,
        last_error: r.last_error.as_deref().map(Cow::Borrowed),
        created_ms: r.created_ms,
        fallback_from: r.fallback_from.as_deref().map(Cow::Borrowed),
        recheck,
    };
    let mut out = Vec::with_capacity(64 + r.body.len() + r.spec.url.len());
    out.push(COMPACT);
    postcard::to_io(&compact, &mut out).map_err(|e| failed(Box::new(e)))?;
    Ok(out)
}
