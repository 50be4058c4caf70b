//! The outbox's write pattern on both candidate stores, measured in one run: each commit
//! appends B records of ~600 bytes to a `deliveries` table and B keys to a `queue` index,
//! durably (redb `Durability::Immediate`; SQLite WAL with `synchronous=FULL`). B is the
//! group-commit batch: 1 (one submitter), 32, 256. Prints records/s and commit latency.
//!
//! Run: `cargo run --release` in this folder (needs a C compiler for SQLite).
//!
//! `cargo run --release -- hot-path` measures instead what one group commit of the outbox's
//! hot path costs in CPU time (user + system, from `/proc/self/stat`): 15 new deliveries of
//! ~535 bytes for 100 targets per commit, durable, on four candidates in alternating rounds:
//! SQLite with the outbox's first schema (an index on target, next attempt, id), SQLite with
//! the rows in an unindexed table (the `fresh` table it has now), and an append-only file,
//! grown by each commit or preallocated, with `fdatasync` (`docs/benchmarks.md`, "The
//! outbox's hot path").

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

/// A new SQLite database at `path` (any earlier one and its WAL removed), in WAL mode with
/// `synchronous=FULL`, with `schema` applied.
fn new_sqlite(path: &std::path::Path, schema: &str) -> rusqlite::Connection {
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    let conn = rusqlite::Connection::open(path).expect("sqlite");
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; {schema}"
    ))
    .expect("schema");
    conn
}

fn sqlite_run(dir: &std::path::Path, batch: u64, commits: u64) -> Duration {
    let mut conn = new_sqlite(
        &dir.join("bench.sqlite"),
        "CREATE TABLE deliveries (id INTEGER PRIMARY KEY, record BLOB NOT NULL);
         CREATE TABLE queue (target TEXT NOT NULL, next_at INTEGER NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (target, next_at, id)) WITHOUT ROWID;",
    );
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

/// CPU seconds (user + system) this process has used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime, in clock ticks of 1/100 s on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

const HOT_BATCH: u64 = 15;
const HOT_COMMITS: u64 = 4_000;

fn target_of(id: u64) -> String {
    format!("t{}", (id * 7919) % 100)
}

fn hot_sqlite(dir: &std::path::Path, indexed: bool) {
    let mut conn = new_sqlite(
        &dir.join("hot.sqlite"),
        "CREATE TABLE d (id INTEGER PRIMARY KEY, target TEXT NOT NULL, next_at INTEGER NOT NULL, record BLOB NOT NULL);",
    );
    if indexed {
        conn.execute_batch("CREATE INDEX d_due ON d (target, next_at, id);")
            .expect("index");
    }
    let mut id = 0u64;
    for _ in 0..HOT_COMMITS {
        let txn = conn.transaction().expect("txn");
        {
            let mut ins = txn
                .prepare_cached(
                    "INSERT INTO d (id, target, next_at, record) VALUES (?1, ?2, ?1, ?3)",
                )
                .expect("prepare");
            for _ in 0..HOT_BATCH {
                id += 1;
                ins.execute(rusqlite::params![id as i64, target_of(id), record(id)])
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
}

fn hot_log(dir: &std::path::Path, preallocate: bool) {
    use std::os::unix::fs::FileExt;
    let path = dir.join("hot.log");
    let _ = std::fs::remove_file(&path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("log");
    if preallocate {
        // Written zeros, so a commit overwrites allocated blocks and changes no size.
        let zeros = vec![0u8; 1 << 20];
        let total = HOT_COMMITS * HOT_BATCH * 700 + (1 << 20);
        let mut at = 0;
        while at < total {
            file.write_all_at(&zeros, at).expect("preallocate");
            at += zeros.len() as u64;
        }
        file.sync_all().expect("sync");
    }
    let (mut id, mut at) = (0u64, 0u64);
    for _ in 0..HOT_COMMITS {
        let mut group = Vec::new();
        for _ in 0..HOT_BATCH {
            id += 1;
            group.extend_from_slice(&record(id));
        }
        file.write_all_at(&group, at).expect("append");
        at += group.len() as u64;
        file.sync_data().expect("fdatasync");
    }
}

fn hot_path(dir: &std::path::Path) {
    println!("store\tround\tCPU per commit of {HOT_BATCH}\twall per commit");
    for round in 0..3 {
        for store in [
            "sqlite-indexed",
            "sqlite-unindexed",
            "log-grown",
            "log-preallocated",
        ] {
            let (t, c) = (Instant::now(), cpu_seconds());
            match store {
                "sqlite-indexed" => hot_sqlite(dir, true),
                "sqlite-unindexed" => hot_sqlite(dir, false),
                "log-grown" => hot_log(dir, false),
                _ => hot_log(dir, true),
            }
            let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
            println!(
                "{store}\t{round}{}\t{:.0} us\t{:.0} us",
                if round == 0 { " (warm-up)" } else { "" },
                cpu * 1e6 / HOT_COMMITS as f64,
                wall * 1e6 / HOT_COMMITS as f64
            );
        }
    }
}

fn main() {
    let dir = std::env::temp_dir().join(format!("outbox-stores-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    if std::env::args().nth(1).as_deref() == Some("hot-path") {
        hot_path(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
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
