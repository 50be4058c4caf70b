//! Unit tests of the retry schedule and the worker's parsed URL.

use std::time::Duration;

use super::{Backoff, LastUrl, parse_retry_after};

#[test]
fn backoff_is_full_jitter_under_an_exponential_cap() {
    let b = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(2),
    };
    for attempt in 0..40 {
        let bound = Duration::from_millis(100)
            .saturating_mul(1 << attempt.min(30))
            .min(Duration::from_secs(2));
        for _ in 0..50 {
            assert!(b.delay(attempt, None) <= bound, "attempt {attempt}");
        }
    }
    // Jitter: not always the bound.
    let waits: std::collections::HashSet<Duration> = (0..50).map(|_| b.delay(3, None)).collect();
    assert!(waits.len() > 5);
}

#[test]
fn retry_after_is_honoured_and_capped() {
    let b = Backoff {
        base: Duration::from_millis(10),
        cap: Duration::from_secs(60),
    };
    assert!(b.delay(0, Some(Duration::from_secs(5))) >= Duration::from_secs(5));
    assert_eq!(
        b.delay(0, Some(Duration::from_secs(3600))),
        Duration::from_secs(60)
    );
}

#[test]
fn retry_after_forms() {
    assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
    assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT"),
        Some(Duration::ZERO),
        "a date in the past: now"
    );
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(90);
    let text = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&future)
        .unwrap();
    let d = parse_retry_after(&text).unwrap();
    assert!(
        d >= Duration::from_secs(85) && d <= Duration::from_secs(91),
        "{text}: {d:?}"
    );
    assert_eq!(parse_retry_after("soon"), None);
}

fn record(n: u64) -> super::store::Record {
    super::store::Record::for_test("t", format!("{{\"n\":{n}}}"))
}

/// Ids come from reserved blocks: they keep growing within a store and across reopening
/// it, even once every earlier delivery is gone (idempotency keys depend on it).
#[tokio::test]
async fn delivery_ids_stay_unique_across_reopening() {
    let dir = std::env::temp_dir().join(format!("switchyard-ids-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut seen = Vec::new();
    for round in 0..3u64 {
        let store = super::store::Store::open(&dir).unwrap();
        for k in 0..3u64 {
            let ids = store
                .append((0..5).map(|i| record(round * 100 + k * 10 + i)).collect())
                .await
                .unwrap();
            seen.extend(ids);
        }
        drop(store);
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        seen.len(),
        "no id is handed out twice: {seen:?}"
    );
    assert_eq!(sorted, seen, "ids grow: {seen:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A new delivery is in the `fresh` table and handed to the sink once committed; a retry
/// moves it to the table of attempted deliveries, where `due` finds it; a success removes
/// it from whichever table holds it. `depth` counts both.
#[tokio::test]
async fn fresh_deliveries_go_to_the_sink_and_retries_to_the_due_table() {
    use std::sync::{Arc, Mutex};
    let dir = std::env::temp_dir().join(format!("switchyard-fresh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sunk: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink_seen = sunk.clone();
    let store = super::store::Store::open_with(
        &dir,
        Some(Box::new(move |rs: Vec<super::store::Record>| {
            sink_seen.lock().unwrap().extend(rs.iter().map(|r| r.id));
        })),
        super::ledger::Loss::Refuse,
    )
    .unwrap();
    let ids = store.append((0..4).map(record).collect()).await.unwrap();
    assert_eq!(
        *sunk.lock().unwrap(),
        ids,
        "handed over before the reply, in order"
    );
    assert_eq!(store.depth().unwrap(), (4, 0));
    let none = |_: u64| false;
    assert!(
        store.due("t", u64::MAX, 10, &none).unwrap().is_empty(),
        "fresh deliveries are not read back"
    );
    assert_eq!(fresh_pending(&store).len(), 4);
    let read = store.fresh_records(&[ids[2], ids[0], 999_999]).unwrap();
    assert_eq!(
        read.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[2], ids[0]]
    );
    assert_eq!(read[0].body, "{\"n\":2}");

    let results = store
        .finish_many(vec![
            (ids[0], super::store::AttemptOutcome::Delivered),
            (
                ids[1],
                super::store::AttemptOutcome::Retry {
                    attempts: 1,
                    next_at_ms: 5_000,
                    error: String::from("HTTP 503"),
                },
            ),
        ])
        .await;
    assert!(results.iter().all(|(_, r)| r.is_ok()));
    assert_eq!(store.depth().unwrap(), (3, 0));
    let fresh: Vec<u64> = fresh_pending(&store)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(fresh, [ids[2], ids[3]]);
    assert!(store.due("t", 4_999, 10, &none).unwrap().is_empty());
    let due = store.due("t", 5_000, 10, &none).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].id, due[0].attempts), (ids[1], 1));
    assert_eq!(store.next_due("t", &none).unwrap(), Some(5_000));
    // Success from either table removes it.
    store
        .finish_many(vec![
            (ids[1], super::store::AttemptOutcome::Delivered),
            (ids[2], super::store::AttemptOutcome::Delivered),
        ])
        .await;
    assert_eq!(store.depth().unwrap(), (1, 0));
    assert_eq!(store.next_due("t", &none).unwrap(), None);
    drop(store);
    // Reopened, the last fresh delivery is still listed for the queues.
    let store = super::store::Store::open(&dir).unwrap();
    assert_eq!(fresh_pending(&store), [(ids[3], String::from("t"))]);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn fresh_pending(store: &super::store::Store) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    store
        .fresh_pending(&mut |id, t| out.push((id, t.to_owned())))
        .unwrap();
    out
}

#[test]
fn the_last_url_is_parsed_once_and_again_when_it_changes() {
    let mut last = LastUrl::default();
    let a = "https://hooks.example/a?token=x";
    assert_eq!(last.parse(a).map(String::from), Some(String::from(a)));
    assert_eq!(last.0.as_ref().map(|(text, _)| text.as_str()), Some(a));
    assert_eq!(last.parse(a).map(String::from), Some(String::from(a)));
    // Another URL (a reload changed the target) replaces it.
    let b = "http://127.0.0.1:9/b";
    assert_eq!(last.parse(b).map(String::from), Some(String::from(b)));
    assert_eq!(last.0.as_ref().map(|(text, _)| text.as_str()), Some(b));
    // One that does not parse is left to reqwest, which fails the request with its error;
    // the cache keeps the last good one.
    assert_eq!(last.parse("not a url"), None);
    assert_eq!(last.0.as_ref().map(|(text, _)| text.as_str()), Some(b));
}

/// Writes `bytes` over a stored row, as a damaged disk or a bug might.
fn corrupt(dir: &std::path::Path, table: &str, id: u64, bytes: &[u8]) {
    let c = rusqlite::Connection::open(dir.join("outbox.sqlite3")).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let n = c
        .execute(
            &format!("UPDATE {table} SET record = ?1 WHERE id = ?2"),
            rusqlite::params![bytes, i64::try_from(id).unwrap()],
        )
        .unwrap();
    assert_eq!(n, 1, "{table} {id}");
}

/// Found by an attack: the outbox deleted a row before decoding it and swallowed a decode
/// failure, so a damaged record vanished. Now a record that cannot be read becomes a dead
/// letter with its raw bytes and the error, counted; it cannot be replayed, and a damaged
/// dead letter is listed, not skipped.
#[tokio::test]
async fn an_unreadable_record_becomes_a_dead_letter_not_nothing() {
    let dir = std::env::temp_dir().join(format!("switchyard-unreadable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = super::store::Store::open(&dir).unwrap();
    let ids = store.append((0..3).map(record).collect()).await.unwrap();
    let retry = |attempts| super::store::AttemptOutcome::Retry {
        attempts,
        next_at_ms: 0,
        error: String::from("HTTP 500"),
    };
    // ids[0]: retried once (now in the attempted table), then damaged; a read finds it.
    let _ = store.finish_many(vec![(ids[0], retry(1))]).await;
    corrupt(&dir, "deliveries", ids[0], b"{not json");
    let none = |_| false;
    assert!(store.due("t", u64::MAX, 10, &none).unwrap().is_empty());
    // ids[1]: damaged while fresh; its attempt's outcome is recorded by the writer.
    corrupt(&dir, "fresh", ids[1], b"\xff\xfe");
    let _ = store.finish_many(vec![(ids[1], retry(1))]).await;
    // The quarantine of ids[0] goes with the next commit.
    let _ = store
        .finish_many(vec![(ids[2], super::store::AttemptOutcome::Delivered)])
        .await;
    assert_eq!(
        store.depth().unwrap(),
        (0, 2),
        "nothing pending, two dead letters"
    );
    assert_eq!(store.unreadable_count(), 2);
    let dead = store.dead_letters(10).unwrap();
    assert_eq!(
        dead.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[0], ids[1]]
    );
    for d in &dead {
        assert!(d.is_unreadable(), "{d:?}");
        assert!(d.error.contains("could not be read"), "{}", d.error);
        assert_eq!(d.target, "t");
        assert!(d.body().contains("unreadable"), "{}", d.body());
    }
    assert_eq!(dead[0].body, "{not json", "the raw bytes are kept");
    // A replay is refused, and the dead letter stays.
    let refused = store.replay(ids[0], 0).await.err().unwrap();
    assert_eq!(
        refused.kind(),
        super::DispatchErrorKind::Refused,
        "{refused}"
    );
    assert_eq!(store.depth().unwrap(), (0, 2));

    // A damaged dead letter: listed as unreadable, not replayed, not deleted.
    corrupt(&dir, "dead", ids[1], b"garbage");
    let dead = store.dead_letters(10).unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead[1].is_unreadable() && dead[1].body == "garbage");
    assert!(store.replay(ids[1], 0).await.is_err());
    assert_eq!(store.depth().unwrap(), (0, 2));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The ledger raises no false alarm when every delivery was delivered (rows gone, the
/// database keeps the mark), and catches a database that knows less than the ledger.
#[tokio::test]
async fn the_ledger_sees_lost_commits_and_only_those() {
    use super::ledger::Loss;
    let dir = std::env::temp_dir().join(format!("switchyard-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = super::store::Store::open_with(&dir, None, Loss::Refuse).unwrap();
    let ids = store.append((0..5).map(record).collect()).await.unwrap();
    let done: Vec<_> = ids
        .iter()
        .map(|&id| (id, super::store::AttemptOutcome::Delivered))
        .collect();
    let _ = store.finish_many(done).await;
    assert_eq!(store.depth().unwrap(), (0, 0));
    drop(store);
    // Every row is gone; the mark says how far ids went: no alarm.
    let store = super::store::Store::open_with(&dir, None, Loss::Refuse).unwrap();
    let more = store.append((0..2).map(record).collect()).await.unwrap();
    assert!(more[0] > ids[4], "ids go on past the ledger's");
    drop(store);
    // The database forgets the newest rows, as a dropped write-ahead log would make it.
    let c = rusqlite::Connection::open(dir.join("outbox.sqlite3")).unwrap();
    c.execute("DELETE FROM fresh", []).unwrap();
    c.execute("DELETE FROM meta WHERE key = 'high_water'", [])
        .unwrap();
    drop(c);
    let refused = super::store::Store::open_with(&dir, None, Loss::Refuse)
        .err()
        .unwrap()
        .to_string();
    assert!(refused.contains("lost committed deliveries"), "{refused}");
    assert!(refused.contains(&format!("{}", more[1])), "{refused}");
    let store = super::store::Store::open_with(&dir, None, Loss::Accept).unwrap();
    assert!(store.lost_count() >= 2);
    drop(store);
    // Accepted once: the next open is clean.
    let store = super::store::Store::open_with(&dir, None, Loss::Refuse).unwrap();
    assert_eq!(store.lost_count(), 0);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found by a review: every outbox error was a string, so a caller could not tell a full
/// disk from a locked database from a damaged file (all became the same 503). The kind
/// now survives from SQLite's code to the caller.
#[test]
fn outbox_errors_keep_their_kind() {
    use super::DispatchErrorKind as K;
    use rusqlite::ffi;
    let kind = |code| K::of_sqlite(&rusqlite::Error::SqliteFailure(ffi::Error::new(code), None));
    assert_eq!(kind(ffi::SQLITE_FULL), K::Full);
    assert_eq!(kind(ffi::SQLITE_BUSY), K::Busy);
    assert_eq!(kind(ffi::SQLITE_LOCKED), K::Busy);
    assert_eq!(kind(ffi::SQLITE_CORRUPT), K::Corrupt);
    assert_eq!(kind(ffi::SQLITE_NOTADB), K::Corrupt);
    assert_eq!(kind(ffi::SQLITE_IOERR), K::Io);
    // Held by another opener: busy, said once.
    let dir = std::env::temp_dir().join(format!("switchyard-kinds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = super::store::Store::open(&dir).unwrap();
    let held = super::store::Store::open(&dir).err().unwrap();
    assert_eq!(held.kind(), K::Busy, "{held}");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
