//! Silences in the outbox's SQLite file: `silences (id, record)` holds each silence as
//! JSON, `silenced (delivery, silence)` which held deliveries wait for which silence, so
//! that an early expiry can release them. Written on the writer thread, in the same
//! transactions as the deliveries they hold; read at open (the writer's spans) and by the
//! router (the list it matches alerts against).

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::sqlite::{from_i64, to_i64};
use crate::state::{Silence, SilenceSpan};

/// The tables, created with the outbox's.
pub(crate) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS silences (id INTEGER PRIMARY KEY, record BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS silenced (delivery INTEGER PRIMARY KEY, silence INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS silenced_by ON silenced (silence);
";

fn decode(bytes: &[u8]) -> Option<Silence> {
    serde_json::from_slice(bytes).ok()
}

fn encode(s: &Silence) -> rusqlite::Result<Vec<u8>> {
    serde_json::to_vec(s).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Every silence, by id. One that cannot be read is left out, with a warning: a silence
/// never lost holds nothing back (its held deliveries go at the time they were due).
pub(crate) fn list(conn: &Connection) -> rusqlite::Result<Vec<Silence>> {
    let mut stmt = conn.prepare_cached("SELECT id, record FROM silences ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, bytes) = row?;
        match decode(&bytes) {
            Some(s) => out.push(s),
            None => tracing::warn!(
                silence = id,
                "a stored silence cannot be read; it is ignored"
            ),
        }
    }
    Ok(out)
}

/// Every silence's span, by id: the writer's view at open.
pub(crate) fn spans(
    conn: &Connection,
) -> rusqlite::Result<std::collections::HashMap<u64, SilenceSpan>> {
    Ok(list(conn)?.into_iter().map(|s| (s.id, s.span())).collect())
}

/// Stores a new silence under the next id and returns it as stored. Past
/// [`crate::state::MAX_SILENCES`], the silences that ended longest ago are forgotten, with their notes
/// of held deliveries. `forgotten` gets their ids.
pub(crate) fn add(
    txn: &Transaction<'_>,
    mut s: Silence,
    now: u64,
    forgotten: &mut Vec<u64>,
) -> rusqlite::Result<Silence> {
    let last: Option<i64> = txn
        .prepare_cached("SELECT MAX(id) FROM silences")?
        .query_row([], |r| r.get(0))?;
    s.id = last.map_or(1, |l| from_i64(l) + 1);
    txn.prepare_cached("INSERT INTO silences (id, record) VALUES (?1, ?2)")?
        .execute(params![to_i64(s.id), encode(&s)?])?;
    let count: i64 = txn
        .prepare_cached("SELECT COUNT(*) FROM silences")?
        .query_row([], |r| r.get(0))?;
    // Read them all only when some must go.
    let all = if usize::try_from(count).unwrap_or(0) > crate::state::MAX_SILENCES {
        list_txn(txn)?
    } else {
        Vec::new()
    };
    for id in crate::state::silences_to_forget(&all, now) {
        txn.prepare_cached("DELETE FROM silences WHERE id = ?1")?
            .execute(params![to_i64(id)])?;
        txn.prepare_cached("DELETE FROM silenced WHERE silence = ?1")?
            .execute(params![to_i64(id)])?;
        forgotten.push(id);
    }
    Ok(s)
}

fn list_txn(txn: &Transaction<'_>) -> rusqlite::Result<Vec<Silence>> {
    let mut stmt = txn.prepare_cached("SELECT record FROM silences")?;
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for row in rows {
        if let Some(s) = decode(&row?) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Notes that held delivery `delivery` waits for silence `silence`.
pub(crate) fn note_held(
    txn: &Transaction<'_>,
    delivery: u64,
    silence: u64,
) -> rusqlite::Result<()> {
    txn.prepare_cached("INSERT OR REPLACE INTO silenced (delivery, silence) VALUES (?1, ?2)")?
        .execute(params![to_i64(delivery), to_i64(silence)])?;
    Ok(())
}

/// Ends silence `id` at `now`, if it has not ended: answers the silence as it is then
/// (`None`: no such silence) and the held deliveries to release, which the caller makes
/// due at `now`. An ended silence is answered as it is, releasing nothing.
pub(crate) fn expire(
    txn: &Transaction<'_>,
    id: u64,
    now: u64,
) -> rusqlite::Result<Option<(Silence, Vec<u64>)>> {
    let bytes: Option<Vec<u8>> = txn
        .prepare_cached("SELECT record FROM silences WHERE id = ?1")?
        .query_row(params![to_i64(id)], |r| r.get(0))
        .optional()?;
    let Some(mut s) = bytes.as_deref().and_then(decode) else {
        return Ok(None);
    };
    if s.ends <= now {
        return Ok(Some((s, Vec::new())));
    }
    s.expire(now);
    txn.prepare_cached("UPDATE silences SET record = ?2 WHERE id = ?1")?
        .execute(params![to_i64(id), encode(&s)?])?;
    let held: Vec<u64> = txn
        .prepare_cached("DELETE FROM silenced WHERE silence = ?1 RETURNING delivery")?
        .query_map(params![to_i64(id)], |r| r.get::<_, i64>(0))?
        .map(|r| r.map(from_i64))
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some((s, held)))
}
