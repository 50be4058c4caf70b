//! Tests of what only the SQLite store does: ids from reserved blocks, the fresh table,
//! unreadable records, the ledger, error kinds. The contract every store keeps is in
//! `conformance_test.rs`.

use std::time::Duration;

use super::super::{Finish, Loss, Record, Store};
use super::SqliteStore;
use crate::dispatch::DispatchErrorKind;

fn record(n: u64) -> Record {
    Record::for_test("t", format!("{{\"n\":{n}}}"))
}

/// Ids come from reserved blocks: they keep growing within a store and across reopening
/// it, even once every earlier delivery is gone (idempotency keys depend on it).
#[tokio::test]
async fn delivery_ids_stay_unique_across_reopening() {
    let dir = std::env::temp_dir().join(format!("switchyard-ids-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut seen = Vec::new();
    for round in 0..3u64 {
        let store = SqliteStore::open(&dir).unwrap();
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

/// How many are pending and dead.
fn depth(store: &SqliteStore) -> (u64, u64) {
    let d = store.depth().unwrap();
    (d.pending, d.dead)
}

/// `id` retried: the record as the router hands it to the store.
fn retry(id: u64, attempts: u32) -> Finish {
    let mut r = record(id);
    r.id = id;
    r.attempts = attempts;
    r.last_error = Some(String::from("HTTP 500"));
    Finish::Retry(r)
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
    let store = SqliteStore::open(&dir).unwrap();
    let ids = store.append((0..3).map(record).collect()).await.unwrap();
    // ids[0]: retried once (now in the attempted table), then damaged; a read finds it.
    let _ = store.finish(vec![retry(ids[0], 1)]).await;
    corrupt(&dir, "deliveries", ids[0], b"{not json");
    let none = |_| false;
    assert!(
        store
            .due("t", u64::MAX, 10, &none)
            .await
            .unwrap()
            .is_empty()
    );
    // ids[1]: damaged while fresh (queued by id alone); the worker's read by id finds it.
    // (The writer decodes nothing since the policy left the store: a finished attempt
    // carries the worker's own copy.)
    corrupt(&dir, "fresh", ids[1], b"\xff\xfe");
    assert!(store.fresh_records(&[ids[1]]).await.unwrap().is_empty());
    // Both quarantines go with the next commit.
    let _ = store.finish(vec![Finish::Delivered(ids[2])]).await;
    assert_eq!(depth(&store), (0, 2), "nothing pending, two dead letters");
    assert_eq!(store.health().unreadable, 2);
    let dead = store.dead_letters(10).await.unwrap();
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
    assert_eq!(refused.kind(), DispatchErrorKind::Refused, "{refused}");
    assert_eq!(depth(&store), (0, 2));

    // A damaged dead letter: listed as unreadable, not replayed, not deleted.
    corrupt(&dir, "dead", ids[1], b"garbage");
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert!(dead[1].is_unreadable() && dead[1].body == "garbage");
    assert!(store.replay(ids[1], 0).await.is_err());
    assert_eq!(depth(&store), (0, 2));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Deliveries found delivered are deleted together, with one statement per table for the
/// whole commit, from whichever table holds them. 43 finishes in one commit (first attempts, which are in
/// `fresh`; retried ones, in `deliveries`; one id twice; one the store never had), with
/// new deliveries appended in the same commit, leave exactly the others. Then finishing
/// every other one, the newest among them, leaves the database the mark the ledger needs:
/// it reopens without reporting a loss, and ids go on.
#[tokio::test]
async fn deliveries_delivered_together_are_deleted_from_either_table_and_nothing_else() {
    let dir = std::env::temp_dir().join(format!("switchyard-delivered-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rows = |dir: &std::path::Path, table: &str| -> Vec<u64> {
        let c = rusqlite::Connection::open(dir.join("outbox.sqlite3")).unwrap();
        let mut stmt = c
            .prepare(&format!("SELECT id FROM {table} ORDER BY id"))
            .unwrap();
        stmt.query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|id| u64::try_from(id.unwrap()).unwrap())
            .collect()
    };
    let store = SqliteStore::open_with(&dir, None, Loss::Refuse).unwrap();
    let ids = store.append((0..45).map(record).collect()).await.unwrap();
    for r in store
        .finish(vec![retry(ids[3], 1), retry(ids[20], 1), retry(ids[39], 2)])
        .await
    {
        r.unwrap();
    }
    assert_eq!(rows(&dir, "deliveries"), [ids[3], ids[20], ids[39]]);
    let delivered = |range: std::ops::Range<usize>| -> Vec<Finish> {
        ids[range].iter().map(|&id| Finish::Delivered(id)).collect()
    };
    let mut second = delivered(17..40);
    second.push(Finish::Delivered(ids[5]));
    second.push(Finish::Delivered(ids[44] + 1_000));
    let (first, added, second) = tokio::join!(
        store.finish(delivered(0..17)),
        store.append((100..103).map(record).collect()),
        store.finish(second),
    );
    for r in first.into_iter().chain(second) {
        assert_eq!(r.unwrap(), None);
    }
    let added = added.unwrap();
    let mut left = ids[40..].to_vec();
    left.extend(&added);
    assert_eq!(rows(&dir, "fresh"), left);
    assert!(rows(&dir, "deliveries").is_empty());
    assert_eq!(depth(&store), (8, 0));
    let _ = store
        .finish(left.iter().map(|&id| Finish::Delivered(id)).collect())
        .await;
    assert_eq!(depth(&store), (0, 0));
    drop(store);
    let store = SqliteStore::open_with(&dir, None, Loss::Refuse).unwrap();
    let more = store.append(vec![record(200)]).await.unwrap();
    assert!(more[0] > added[2], "ids go on past the ledger's");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The ledger raises no false alarm when every delivery was delivered (rows gone, the
/// database keeps the mark), and catches a database that knows less than the ledger.
#[tokio::test]
async fn the_ledger_sees_lost_commits_and_only_those() {
    let dir = std::env::temp_dir().join(format!("switchyard-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SqliteStore::open_with(&dir, None, Loss::Refuse).unwrap();
    let ids = store.append((0..5).map(record).collect()).await.unwrap();
    let done: Vec<_> = ids.iter().map(|&id| Finish::Delivered(id)).collect();
    let _ = store.finish(done).await;
    assert_eq!(depth(&store), (0, 0));
    drop(store);
    // Every row is gone; the mark says how far ids went: no alarm.
    let store = SqliteStore::open_with(&dir, None, Loss::Refuse).unwrap();
    let more = store.append((0..2).map(record).collect()).await.unwrap();
    assert!(more[0] > ids[4], "ids go on past the ledger's");
    drop(store);
    // The database forgets the newest rows, as a dropped write-ahead log would make it.
    let c = rusqlite::Connection::open(dir.join("outbox.sqlite3")).unwrap();
    c.execute("DELETE FROM fresh", []).unwrap();
    c.execute("DELETE FROM meta WHERE key = 'high_water'", [])
        .unwrap();
    drop(c);
    let refused = SqliteStore::open_with(&dir, None, Loss::Refuse)
        .err()
        .unwrap()
        .to_string();
    assert!(refused.contains("lost committed deliveries"), "{refused}");
    assert!(refused.contains(&format!("{}", more[1])), "{refused}");
    let store = SqliteStore::open_with(&dir, None, Loss::Accept).unwrap();
    assert!(store.health().lost >= 2);
    drop(store);
    // Accepted once: the next open is clean.
    let store = SqliteStore::open_with(&dir, None, Loss::Refuse).unwrap();
    assert_eq!(store.health().lost, 0);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found by a review: every outbox error was a string, so a caller could not tell a full
/// disk from a locked database from a damaged file (all became the same 503). The kind
/// now survives from SQLite's code to the caller.
#[test]
fn outbox_errors_keep_their_kind() {
    use DispatchErrorKind as K;
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
    let store = SqliteStore::open(&dir).unwrap();
    let held = SqliteStore::open(&dir).err().unwrap();
    assert_eq!(held.kind(), K::Busy, "{held}");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found by a review of the bad-input rule: the rules' memory grew with every unique key
/// (a `dedup ... until resolved` on alerts that never resolve keeps an entry for 7 days).
/// Past `MAX_ENTRIES` (50 in unit tests) the entries closest to expiring are forgotten
/// first, so memory stays bounded and the newest keys still deduplicate.
#[tokio::test]
async fn the_rules_memory_is_bounded_and_forgets_the_oldest_first() {
    use crate::alert::State as AlertState;
    use crate::dispatch::store::{Stateful, Submission};
    use crate::state::{AlertFacts, DedupIntent, RuleChoice, VerdictKind};
    let dir = std::env::temp_dir().join(format!("switchyard-bounded-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SqliteStore::open(&dir).unwrap();
    let submit = |id: String, now: u64| Submission {
        plain: Vec::new(),
        stateful: Some(Box::new(Stateful {
            facts: AlertFacts::new(Some(id.clone()), AlertState::Firing),
            now,
            choices: vec![RuleChoice {
                rule: String::from("pages"),
                clauses: 1,
                targets: vec![(String::from("t"), record(now))],
                dedup: Some(DedupIntent {
                    key: Some(id.into_bytes()),
                    window_ms: None,
                }),
                resolve_once: false,
                throttle: None,
                gate: None,
                group: None,
            }],
            probes: Vec::new(),
        })),
    };
    for n in 0..120u64 {
        store
            .submit(vec![submit(format!("a{n}"), 1_000 + n)])
            .await
            .unwrap();
    }
    let held = store.state_entries().unwrap();
    assert!(held <= 51, "{held} entries held");
    let newest = store
        .submit(vec![submit(String::from("a119"), 5_000)])
        .await
        .unwrap();
    assert!(
        matches!(newest[0].verdicts[0].kind, VerdictKind::Duplicate { .. }),
        "the newest key still deduplicates"
    );
    let oldest = store
        .submit(vec![submit(String::from("a0"), 5_001)])
        .await
        .unwrap();
    assert!(
        matches!(oldest[0].verdicts[0].kind, VerdictKind::Delivered { .. }),
        "the oldest key was forgotten first"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A record with every optional field set: a fallback, headers, a shown body, an error, a
/// held firing's recheck.
fn full_record() -> Record {
    let mut r = Record::for_test(
        "t",
        String::from("{\"alert\":\"cpu \\\"high\\\"\",\"n\":1}"),
    );
    r.id = 77;
    r.spec.method = super::super::Method::Put;
    r.spec.headers = vec![(
        String::from("Authorization"),
        String::from("Bearer ${env.TOKEN}"),
    )];
    r.spec.fallback = Some(Box::new(Record::for_test("backup", String::new()).spec));
    r.shown_body = Some(String::from("{\"alert\":\"[hidden]\"}"));
    r.alert_id = Some(String::from("a-1"));
    r.attempts = 3;
    r.next_at_ms = 1_700_000_000_123;
    r.last_error = Some(String::from("HTTP 503: «unavailable»"));
    r.created_ms = 1_700_000_000_000;
    r.fallback_from = Some(String::from("primary"));
    r.recheck = Some(Box::new(crate::state::Recheck {
        rule: String::from("pages"),
        clauses: 42,
        target: String::from("t"),
        alert: String::from("a-1"),
        dedup: Some(vec![0, 1, 255]),
        inhibits: vec![(
            String::from("db down"),
            String::from("{\"cluster\":\"c1\"}"),
        )],
    }));
    r
}

#[test]
fn a_record_round_trips_through_the_compact_form_with_every_field_set() {
    let full = full_record();
    let mut bare = Record::for_test("t", String::new());
    bare.id = 5;
    let mut no_dedup = full_record();
    if let Some(c) = no_dedup.recheck.as_mut() {
        c.dedup = None;
    }
    for r in [full, bare, no_dedup] {
        let bytes = super::encode_record(&r).unwrap();
        assert_eq!(bytes[0], super::super::sqlite_record::COMPACT);
        assert_eq!(super::decode(r.id, &bytes).unwrap(), r);
    }
}

#[test]
fn a_record_stored_as_json_by_an_earlier_version_is_still_read() {
    // Outboxes written before the compact form hold JSON rows: they are read as they are.
    let r = full_record();
    let json = serde_json::to_vec(&r).unwrap();
    assert_eq!(json[0], b'{');
    assert_eq!(super::decode(r.id, &json).unwrap(), r);
}

#[test]
fn a_damaged_compact_record_is_an_error_not_a_panic() {
    let bytes = super::encode_record(&full_record()).unwrap();
    // Every cut of it, and every byte of it flipped: an error (or, rarely, another record
    // that decodes), never a panic.
    for cut in 0..bytes.len() {
        let _ = super::decode(1, &bytes[..cut]);
    }
    for at in 1..bytes.len() {
        let mut b = bytes.clone();
        b[at] ^= 0xff;
        let _ = super::decode(1, &b);
    }
    assert!(super::decode(1, &bytes[..bytes.len() / 2]).is_err());
    assert!(super::decode(1, &[super::super::sqlite_record::COMPACT]).is_err());
}

/// Rows an earlier version wrote as JSON, read through the store: a pending one is due and
/// delivered as it was, beside rows in the compact form.
#[tokio::test]
async fn an_outbox_with_json_rows_from_an_earlier_version_still_delivers_them() {
    let dir = std::env::temp_dir().join(format!("switchyard-json-rows-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SqliteStore::open(&dir).unwrap();
    let ids = store.append((0..2).map(record).collect()).await.unwrap();
    // ids[0] retried (now in `deliveries`), then rewritten as the JSON an earlier version
    // stored; ids[1] rewritten so while fresh.
    let _ = store.finish(vec![retry(ids[0], 1)]).await;
    let mut old = record(ids[0]);
    old.attempts = 1;
    old.last_error = Some(String::from("HTTP 500"));
    corrupt(
        &dir,
        "deliveries",
        ids[0],
        &serde_json::to_vec(&old).unwrap(),
    );
    corrupt(
        &dir,
        "fresh",
        ids[1],
        &serde_json::to_vec(&record(ids[1])).unwrap(),
    );
    let none = |_| false;
    let due = store.due("t", u64::MAX, 10, &none).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].id, due[0].body.as_str()),
        (ids[0], old.body.as_str())
    );
    assert_eq!(due[0].last_error.as_deref(), Some("HTTP 500"));
    let fresh = store.fresh_records(&[ids[1]]).await.unwrap();
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].body, record(ids[1]).body);
    assert_eq!(store.health().unreadable, 0);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pages of the rules' memory, newest first.
fn memory_pages(c: &rusqlite::Connection) -> Vec<Vec<u8>> {
    c.prepare("SELECT items FROM memory_pages ORDER BY id DESC")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The live items of the rules' memory as the outbox holds them: each key's newest item,
/// and whether it keeps an entry (`false`: a tombstone); with the items on disk in all.
fn memory_items(dir: &std::path::Path) -> (Vec<([u8; 16], bool)>, usize) {
    let c = rusqlite::Connection::open(dir.join("outbox.sqlite3")).unwrap();
    let pages = memory_pages(&c);
    let mut newest = std::collections::BTreeMap::new();
    let mut all = 0;
    for page in &pages {
        for item in super::super::memory_page::items(page).unwrap() {
            all += 1;
            newest.entry(item.key).or_insert(item.kept.is_some());
        }
    }
    (newest.into_iter().collect(), all)
}

/// Earlier versions kept the rules' memory as one row per entry in a `memory` table, with
/// the entry in the compact form or, earlier still, as JSON. An outbox written so keeps
/// what it remembered: its rows move into a page at the first start, a duplicate of an
/// alert it noted is still a duplicate, `GET /api/state` lists the entries under their
/// rule, kind and target, and the old table is gone.
#[tokio::test]
async fn an_outbox_with_memory_rows_from_an_earlier_version_still_remembers() {
    use super::super::conformance::{kind, remembered};
    use crate::alert::State as AlertState;
    let dir = std::env::temp_dir().join(format!("switchyard-row-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SqliteStore::open(&dir).unwrap();
    let first = store
        .submit(vec![remembered("a1", AlertState::Firing, 1_000)])
        .await
        .unwrap();
    assert_eq!(kind(&first[0].verdicts[0]), "delivered");
    let listed = store.state_list(1_500, 10).await.unwrap();
    drop(store);
    // Write the page's entries back as the rows an earlier version kept: the first as
    // JSON, the others in the compact form.
    {
        let c = rusqlite::Connection::open(dir.join("outbox.sqlite3")).unwrap();
        c.execute_batch(
            "CREATE TABLE memory (key BLOB NOT NULL, expires INTEGER NOT NULL, value BLOB NOT NULL,
                rule TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL)",
        )
        .unwrap();
        let pages = memory_pages(&c);
        let mut rows = 0;
        for page in &pages {
            for item in super::super::memory_page::items(page).unwrap() {
                let kept = item.kept.unwrap();
                let value = if rows == 0 {
                    let entry = super::super::entry_form::decode(kept.value).unwrap();
                    serde_json::to_vec(&entry).unwrap()
                } else {
                    kept.value.to_vec()
                };
                c.execute(
                    "INSERT INTO memory (key, expires, value, rule, kind, target) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    rusqlite::params![&item.key[..], item.expires as i64, value, kept.rule, kept.kind, kept.target],
                )
                .unwrap();
                rows += 1;
            }
        }
        assert_eq!(rows, 2, "dedup and resolve once");
        c.execute("DELETE FROM memory_pages", []).unwrap();
    }
    let store = SqliteStore::open(&dir).unwrap();
    assert_eq!(store.state_entries().unwrap(), 2, "both rows read");
    let mut moved = store.state_list(1_500, 10).await.unwrap();
    let mut before = listed;
    let by_kind = |l: &crate::state::Listed| l.kind.clone();
    moved.sort_by_key(by_kind);
    before.sort_by_key(by_kind);
    assert_eq!(moved, before, "listed as before, names and all");
    let again = store
        .submit(vec![remembered("a1", AlertState::Firing, 2_000)])
        .await
        .unwrap();
    assert_eq!(kind(&again[0].verdicts[0]), "duplicate");
    drop(store);
    let c = rusqlite::Connection::open(dir.join("outbox.sqlite3")).unwrap();
    let old: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'memory'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 0, "the earlier table is dropped");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A commit's new deliveries are written by multi-row statements of 32, 8 and 1 rows:
/// every one of 45 (32 + 8 + 5 single rows) is stored, each with its own body, read back
/// after reopening.
#[tokio::test]
async fn every_delivery_of_a_commit_written_in_chunks_is_stored() {
    let dir = std::env::temp_dir().join(format!("switchyard-chunks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SqliteStore::open(&dir).unwrap();
    let ids = store.append((0..45).map(record).collect()).await.unwrap();
    assert_eq!(ids.len(), 45);
    drop(store);
    let store = SqliteStore::open(&dir).unwrap();
    let fresh = store.fresh_records(&ids).await.unwrap();
    let mut bodies: Vec<(u64, String)> = fresh.into_iter().map(|r| (r.id, r.body)).collect();
    bodies.sort();
    let expected: Vec<(u64, String)> = ids
        .iter()
        .zip(0..45)
        .map(|(&id, n)| (id, record(n).body))
        .collect();
    assert_eq!(bodies, expected);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The rules' memory is written as one page per commit. In one commit, an alert that fires
/// and resolves puts its `dedup` entry twice and its `resolve once` announcement, then
/// takes the announcement: the page keeps one item for what is still remembered, none for
/// what is not. A later commit that takes an announcement from the first page writes that
/// page again without it: after another restart, the announcement is still taken.
#[tokio::test]
async fn items_put_twice_or_taken_within_one_commit_leave_one_item_or_none() {
    use super::super::conformance::{kind, remembered};
    use crate::alert::State as AlertState;
    let dir = std::env::temp_dir().join(format!("switchyard-rows-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SqliteStore::open(&dir).unwrap();
    let one_commit = store
        .submit(vec![
            remembered("a1", AlertState::Firing, 1_000),
            remembered("a1", AlertState::Resolved, 1_001),
            remembered("a2", AlertState::Firing, 1_002),
        ])
        .await
        .unwrap();
    let kinds: Vec<&str> = one_commit.iter().map(|s| kind(&s.verdicts[0])).collect();
    assert_eq!(kinds, ["delivered", "delivered", "delivered"]);
    // a1: its dedup entry (resolved); a2: its dedup entry and its announcement.
    assert_eq!(store.state_entries().unwrap(), 3);
    let (live, all) = memory_items(&dir);
    assert_eq!((live.len(), all), (3, 3));
    assert!(live.iter().all(|(_, kept)| *kept));
    drop(store);
    let store = SqliteStore::open(&dir).unwrap();
    let after = store
        .submit(vec![
            remembered("a2", AlertState::Resolved, 2_000),
            remembered("a3", AlertState::Firing, 2_001),
        ])
        .await
        .unwrap();
    let kinds: Vec<&str> = after.iter().map(|s| kind(&s.verdicts[0])).collect();
    assert_eq!(kinds, ["delivered", "delivered"]);
    // a2: its dedup entry put again (resolved), its announcement taken: the first page is
    // written again without it (no tombstone), keeping a1's entry only; a3: its dedup
    // entry and announcement.
    assert_eq!(store.state_entries().unwrap(), 4);
    let (live, all) = memory_items(&dir);
    assert_eq!(live.iter().filter(|(_, kept)| *kept).count(), 4);
    assert_eq!(live.iter().filter(|(_, kept)| !*kept).count(), 0);
    assert_eq!(
        all,
        1 + 3,
        "the first page written again with a1's entry alone"
    );
    drop(store);
    let store = SqliteStore::open(&dir).unwrap();
    let resolved_again = store
        .submit(vec![remembered("a2", AlertState::Resolved, 3_000)])
        .await
        .unwrap();
    assert_eq!(kind(&resolved_again[0].verdicts[0]), "unannounced");
    assert_eq!(store.state_entries().unwrap(), 4);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Alerts joining one group, many in one commit (each join takes the entry the commit's
/// previous join put, instead of copying it) and more in a later one (copied from the
/// committed entry): the pages hold one copy of the group (the page of the first commit
/// goes once the second holds the group), and after reopening the
/// group notifies every member, in the order they joined.
#[tokio::test]
async fn a_group_joined_many_times_in_one_commit_keeps_one_row_and_every_member() {
    use super::super::conformance::{grouped, note_render};
    let dir = std::env::temp_dir().join(format!("switchyard-group-rows-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rows = |dir: &std::path::Path| -> usize { memory_items(dir).1 };
    let names: Vec<String> = (0..120).map(|i| format!("m{i:03}")).collect();
    let store = SqliteStore::open(&dir).unwrap();
    let first: Vec<_> = names[..100]
        .iter()
        .enumerate()
        .map(|(i, n)| grouped(n, 1_000 + i as u64))
        .collect();
    store.submit(first).await.unwrap();
    assert_eq!(rows(&dir), 1);
    let second: Vec<_> = names[100..].iter().map(|n| grouped(n, 1_150)).collect();
    store.submit(second).await.unwrap();
    assert_eq!(rows(&dir), 1);
    assert_eq!(store.state_entries().unwrap(), 1);
    drop(store);
    let store = SqliteStore::open(&dir).unwrap();
    let flushed = store.flush_groups(1_200, note_render()).await.unwrap();
    assert_eq!(flushed.sent, 1);
    let mut ids = Vec::new();
    store
        .fresh_pending(&mut |id, _| ids.push(id))
        .await
        .unwrap();
    let notes = store.fresh_records(&ids).await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].body, names.join(","));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
