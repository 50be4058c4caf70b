//! The outbox's write pattern on both candidate stores, measured in one run: each commit
//! appends B records of ~600 bytes to a `deliveries` table and B keys to a `queue` index,
//! durably (redb `Durability::Immediate`; SQLite WAL with `synchronous=FULL`). B is the
//! group-commit batch: 1 (one submitter), 32, 256. Prints records/s and commit latency.
//!
//! Run: `cargo run --release` in this folder (needs a C compiler for SQLite).

use std::time::{Duration, Instant};

use redb::{Database, TableDefinition};

const DELIVERIES: TableDefinition<u64, &[u8]> = TableDefinition::new("deliveries");
const QUEUE: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("queue");

fn record(i: u64) -> Vec<u8> {
    format!(
        r#"{{"spec":{{"target":"sink","url":"http://127.0.0.1:9099/hook","method":"POST","headers":[["Authorization","Bearer 0123456789abcdef"]],"timeout_ms":5000,"retries":3,"fallback":null}},"body":"{{\"alertState\":\"ALARM\",\"metricName\":\"CPUUtilization\",\"curValue\":\"95\",\"n\":{i}}}","alert_id":"rule-{i}","attempts":0,"next_at_ms":{i},"last_error":null,"created_ms":{i},"fallback_from":null}}"#
    )
    .into_bytes()
}

fn redb_run(dir: &std::path::Path, batch: u64, commits: u64) -> Duration {
    let path = dir.join("bench.redb");
    let _ = std::fs::remove_file(&path);
    let db = Database::create(&path).expect("redb");
    let start = Instant::now();
    let mut id = 0u64;
    for _ in 0..commits {
        let txn = db.begin_write().expect("txn");
        {
            let mut d = txn.open_table(DELIVERIES).expect("table");
            let mut q = txn.open_table(QUEUE).expect("table");
            for _ in 0..batch {
                id += 1;
                d.insert(id, record(id).as_slice()).expect("insert");
                q.insert(("sink", id, id), ()).expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
    start.elapsed()
}

fn sqlite_run(dir: &std::path::Path, batch: u64, commits: u64) -> Duration {
    let path = dir.join("bench.sqlite");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    let mut conn = rusqlite::Connection::open(&path).expect("sqlite");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE deliveries (id INTEGER PRIMARY KEY, record BLOB NOT NULL);
         CREATE TABLE queue (target TEXT NOT NULL, next_at INTEGER NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (target, next_at, id)) WITHOUT ROWID;",
    )
    .expect("schema");
    let start = Instant::now();
    let mut id = 0i64;
    for _ in 0..commits {
        let txn = conn.transaction().expect("txn");
        {
            let mut d = txn
                .prepare_cached("INSERT INTO deliveries (id, record) VALUES (?1, ?2)")
                .expect("prepare");
            let mut q = txn
                .prepare_cached("INSERT INTO queue (target, next_at, id) VALUES ('sink', ?1, ?1)")
                .expect("prepare");
            for _ in 0..batch {
                id += 1;
                d.execute(rusqlite::params![id, record(id as u64)])
                    .expect("insert");
                q.execute(rusqlite::params![id]).expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
    start.elapsed()
}

fn main() {
    let dir = std::env::temp_dir().join(format!("outbox-stores-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    println!("batch\tstore\tcommits\trecords/s\tmean commit");
    for (batch, commits) in [(1u64, 2_000u64), (32, 1_000), (256, 300)] {
        // Alternate the stores so drift on a shared machine hits both alike.
        for round in 0..2 {
            for store in ["redb", "sqlite"] {
                let t = if store == "redb" {
                    redb_run(&dir, batch, commits)
                } else {
                    sqlite_run(&dir, batch, commits)
                };
                let records = (batch * commits) as f64;
                println!(
                    "{batch}\t{store}\t{commits}\t{:.0}\t{:.0} us{}",
                    records / t.as_secs_f64(),
                    t.as_micros() as f64 / commits as f64,
                    if round == 0 { " (warm-up)" } else { "" }
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
