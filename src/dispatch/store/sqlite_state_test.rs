//! Unit tests of `sqlite_state.rs`.

use std::hash::BuildHasher;

use super::ByHash;

#[test]
fn a_map_by_hash_tells_apart_keys_that_share_their_first_bytes() {
    let mut m: ByHash<u32> = ByHash::default();
    let a = [7u8; 16];
    let mut b = a;
    b[15] = 8;
    m.insert(a, 1);
    m.insert(b, 2);
    assert_eq!((m.get(&a), m.get(&b)), (Some(&1), Some(&2)));
    // The map hashes a key by its first 8 bytes: it is a keyed hash already.
    assert_eq!(m.hasher().hash_one(a), u64::from_le_bytes([7; 8]));
}

use std::collections::BTreeMap;

use proptest::prelude::*;
use rusqlite::Connection;

use super::{Changes, MemoryIndex, SqliteState};
use crate::dispatch::store::memory_page;
use crate::dispatch::store::sqlite_state::Secret;
use crate::state::{Entry, Key, State};

const SECRET: Secret = Secret(7, 11);

fn conn() -> Connection {
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch(
        "CREATE TABLE memory_pages (id INTEGER PRIMARY KEY, items BLOB NOT NULL);
         CREATE TABLE silences (id INTEGER PRIMARY KEY, record BLOB NOT NULL);",
    )
    .unwrap();
    c
}

fn key(k: u8) -> Key<'static> {
    Key {
        bytes: vec![k],
        kind: "dedup",
        rule: "r",
        target: "t",
    }
}

/// What one commit does to a key of the test.
#[derive(Clone, Debug)]
enum Op {
    Put { key: u8, lasts: u64 },
    Delete { key: u8 },
    Take { key: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, 1u64..40).prop_map(|(key, lasts)| Op::Put { key, lasts }),
        1 => (0u8..24).prop_map(|key| Op::Delete { key }),
        1 => (0u8..24).prop_map(|key| Op::Take { key }),
    ]
}

/// One commit as the outbox's writer makes it: the step's changes, the collection of what
/// expired, the pages written, the commit, the index told.
fn commit(c: &mut Connection, index: &mut MemoryIndex, now: u64, ops: &[Op]) {
    let txn = c.transaction().unwrap();
    let mut changes = Changes::default();
    {
        let mut st = SqliteState::new(SECRET, index, &mut changes);
        for op in ops {
            match *op {
                Op::Put { key: k, lasts } => {
                    st.put(&key(k), Entry::Passed { at: now }, now + lasts)
                }
                Op::Delete { key: k } => st.delete(&key(k)),
                Op::Take { key: k } => {
                    if let Some(e) = st.take(&key(k), now) {
                        // A group's join: taken, changed, put back.
                        st.put(&key(k), e, now + 5);
                    }
                }
            }
        }
        assert_eq!(
            st.collect(now),
            0,
            "no key of the test is forgotten for room"
        );
    }
    changes.write(&txn, index).unwrap();
    txn.commit().unwrap();
    index.apply(changes);
}

/// What the test expects each key to hold: the entry's `at` and its expiry.
fn model_apply(model: &mut BTreeMap<u8, (u64, u64)>, now: u64, ops: &[Op]) {
    for op in ops {
        match *op {
            Op::Put { key, lasts } => {
                model.insert(key, (now, now + lasts));
            }
            Op::Delete { key } => {
                model.remove(&key);
            }
            Op::Take { key } => {
                if let Some(&(at, expires)) = model.get(&key)
                    && expires > now
                {
                    model.insert(key, (at, now + 5));
                }
            }
        }
    }
}

fn seen(index: &MemoryIndex, now: u64) -> BTreeMap<u8, (u64, u64)> {
    let mut changes = Changes::default();
    let mut st = SqliteState::new(SECRET, index, &mut changes);
    (0u8..24)
        .filter_map(|k| {
            let expires = st.held(&SECRET.hash(&key(k))).map(|h| h.expires)?;
            match st.peek(&key(k), now)? {
                Entry::Passed { at } => Some((k, (*at, expires))),
                other => panic!("unexpected entry {other:?}"),
            }
        })
        .collect()
}

/// Every page's counts as the index keeps them, against its items on disk and the entries
/// and tombstones that name it; and no page is under a quarter live.
fn check_pages(c: &Connection, index: &MemoryIndex) {
    let mut stmt = c.prepare("SELECT id, items FROM memory_pages").unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut on_disk = 0;
    while let Some(row) = rows.next().unwrap() {
        on_disk += 1;
        let id: i64 = row.get(0).unwrap();
        let bytes: Vec<u8> = row.get(1).unwrap();
        let items = memory_page::items(&bytes).unwrap();
        let count = index
            .pages
            .get(&id)
            .copied()
            .expect("a page the index knows");
        assert_eq!(count.items as usize, items.len(), "page {id}");
        let live = index.entries.values().filter(|h| h.page == id).count()
            + index.gone.values().filter(|g| g.page == id).count();
        assert_eq!(count.live as usize, live, "page {id}");
        assert!(
            live > 0 && live * 4 >= items.len(),
            "page {id}: {live} of {}",
            items.len()
        );
    }
    assert_eq!(on_disk, index.pages.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random commits of puts, deletes and takes, with time passing and the outbox
    /// reopened now and then: every key reads as the model says, before and after each
    /// reopening (a key deleted is not read back from an older page), and the pages' counts
    /// hold.
    #[test]
    fn the_pages_read_back_as_the_commits_left_every_key(
        commits in proptest::collection::vec(
            (proptest::collection::vec(op(), 0..6), 0u64..6, any::<bool>()),
            1..40,
        )
    ) {
        let mut c = conn();
        let mut index = MemoryIndex::load(&c).unwrap();
        let mut model = BTreeMap::new();
        let mut now = 100;
        for (ops, wait, reopen) in commits {
            now += wait;
            commit(&mut c, &mut index, now, &ops);
            model_apply(&mut model, now, &ops);
            model.retain(|_, (_, expires)| *expires > now);
            prop_assert_eq!(&seen(&index, now), &model);
            check_pages(&c, &index);
            if reopen {
                index = MemoryIndex::load(&c).unwrap();
                prop_assert_eq!(&seen(&index, now), &model, "after reopening");
            }
        }
    }
}

/// Found in review: a key deleted by a step (a `resolve once` announcement taken, which
/// lives a week) left a tombstone until its copy's expiry, so the memory grew by every
/// resolution of a week. Now the page that holds the copy is written again without it, and
/// no tombstone is left: many keys put once, each deleted in a commit of its own while its
/// page still holds others, leave no tombstone, and none is read back after a restart.
#[test]
fn a_key_put_once_and_deleted_leaves_no_tombstone_and_is_not_read_back() {
    let mut c = conn();
    let mut index = MemoryIndex::load(&c).unwrap();
    let puts: Vec<Op> = (0..8).map(|key| Op::Put { key, lasts: 10_000 }).collect();
    commit(&mut c, &mut index, 100, &puts);
    for key in 0..6u8 {
        commit(
            &mut c,
            &mut index,
            101 + u64::from(key),
            &[Op::Delete { key }],
        );
        assert!(
            index.gone.is_empty(),
            "no tombstone after deleting key {key}"
        );
        check_pages(&c, &index);
    }
    assert_eq!(
        index.pages.values().map(|p| p.items).collect::<Vec<_>>(),
        [2]
    );
    let reopened = MemoryIndex::load(&c).unwrap();
    assert_eq!(
        seen(&reopened, 110).keys().copied().collect::<Vec<_>>(),
        [6, 7]
    );
}

/// Entries of one page that expire are collected without a statement each: the page is
/// deleted when its last live item goes, and written again, smaller, when under a quarter
/// of it is live.
#[test]
fn a_page_goes_with_its_last_entry_and_is_written_again_when_mostly_dead() {
    let mut c = conn();
    let mut index = MemoryIndex::load(&c).unwrap();
    let mut puts: Vec<Op> = (0..8).map(|key| Op::Put { key, lasts: 10 }).collect();
    puts.push(Op::Put {
        key: 8,
        lasts: 1_000,
    });
    commit(&mut c, &mut index, 100, &puts);
    assert_eq!(
        index.pages.values().map(|p| p.items).collect::<Vec<_>>(),
        [9]
    );
    // Eight of nine expire: one left, under a quarter: the page is written with it alone.
    commit(&mut c, &mut index, 110, &[]);
    assert_eq!(
        index
            .pages
            .values()
            .map(|p| (p.items, p.live))
            .collect::<Vec<_>>(),
        [(1, 1)]
    );
    check_pages(&c, &index);
    commit(&mut c, &mut index, 1_100, &[]);
    assert!(index.pages.is_empty());
    let rows: i64 = c
        .query_row("SELECT count(*) FROM memory_pages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
}

/// A key put again with a shorter life, while the page of its first copy stays (another
/// entry there is live): when the newer copy expires, or is deleted, the older copy is
/// shadowed by a tombstone until its own expiry, and not read back at the next start.
#[test]
fn an_older_copy_that_outlives_the_newer_one_is_not_read_back() {
    for delete in [false, true] {
        let mut c = conn();
        let mut index = MemoryIndex::load(&c).unwrap();
        let first = [
            Op::Put { key: 0, lasts: 100 },
            Op::Put {
                key: 1,
                lasts: 1_000,
            },
        ];
        commit(&mut c, &mut index, 100, &first);
        commit(&mut c, &mut index, 101, &[Op::Put { key: 0, lasts: 9 }]);
        let last = if delete {
            vec![Op::Delete { key: 0 }]
        } else {
            vec![]
        };
        commit(&mut c, &mut index, 120, &last);
        assert_eq!(seen(&index, 120).len(), 1);
        let reopened = MemoryIndex::load(&c).unwrap();
        assert_eq!(
            seen(&reopened, 120).keys().copied().collect::<Vec<_>>(),
            [1],
            "delete: {delete}"
        );
        // Once the older copy's expiry passes, its tombstone is collected.
        commit(&mut c, &mut index, 201, &[]);
        assert!(index.gone.is_empty());
        check_pages(&c, &index);
    }
}

/// Found by the property test above: a commit that deleted a key again (only its tombstone
/// left) and also left the tombstone's page under a quarter live wrote that page again
/// without the tombstone, while the index kept it: at the next start, the older copy the
/// tombstone shadowed was read back.
#[test]
fn a_tombstone_stays_when_its_page_is_written_again_by_a_commit_that_deletes_its_key_again() {
    let mut c = conn();
    let mut index = MemoryIndex::load(&c).unwrap();
    // Key 20's first copy, in a page that stays (key 4 is live there).
    commit(
        &mut c,
        &mut index,
        100,
        &[
            Op::Put { key: 20, lasts: 17 },
            Op::Put { key: 4, lasts: 17 },
        ],
    );
    // A shorter copy, which expires at 105: a tombstone shadows the first one until 117,
    // in a page with four entries that expire at 106.
    commit(&mut c, &mut index, 100, &[Op::Take { key: 20 }]);
    let short: Vec<Op> = (0..4)
        .map(|key| Op::Put {
            key: 30 + key,
            lasts: 1,
        })
        .collect();
    commit(&mut c, &mut index, 105, &short);
    assert_eq!(index.gone.len(), 1);
    // Key 20 deleted again, and the tombstone's page left with only the tombstone live.
    commit(&mut c, &mut index, 106, &[Op::Delete { key: 20 }]);
    check_pages(&c, &index);
    let reopened = MemoryIndex::load(&c).unwrap();
    assert_eq!(
        seen(&reopened, 106).keys().copied().collect::<Vec<_>>(),
        [4]
    );
}

/// The step reads a key, then writes it: the second hash is the one kept from the first,
/// and only for the same bytes; any other key is hashed afresh.
#[test]
fn a_key_hashed_again_is_the_kept_hash_only_for_the_same_bytes() {
    let index = MemoryIndex::default();
    let mut changes = Changes::default();
    let mut st = SqliteState::new(SECRET, &index, &mut changes);
    let longer = Key {
        bytes: vec![1, 2],
        ..key(1)
    };
    for k in [key(1), key(1), key(2), longer, key(1), key(2)] {
        assert_eq!(st.hash(&k), SECRET.hash(&k), "{:?}", k.bytes);
    }
    // A key with no bytes is never taken for the empty buffer of a fresh state.
    let empty = Key {
        bytes: Vec::new(),
        ..key(1)
    };
    let mut changes = Changes::default();
    let mut st = SqliteState::new(SECRET, &index, &mut changes);
    assert_eq!(st.hash(&empty), SECRET.hash(&empty));
    assert_eq!(st.hash(&empty), SECRET.hash(&empty));
}

/// A large entry (a group's holds its members' alerts) is written to a page of its own, so
/// that writing a page again when a small entry of the same commit is deleted never copies
/// it; both read back after a restart.
#[test]
fn a_large_entry_gets_a_page_of_its_own() {
    let mut c = conn();
    let mut index = MemoryIndex::load(&c).unwrap();
    let big = Entry::Window {
        times: (0..4_000).map(|i| u64::MAX / 2 + i).collect(),
    };
    let txn = c.transaction().unwrap();
    let mut changes = Changes::default();
    {
        let mut st = SqliteState::new(SECRET, &index, &mut changes);
        st.put(&key(0), Entry::Passed { at: 1 }, 10_000);
        st.put(&key(1), big.clone(), 10_000);
        st.put(&key(2), Entry::Passed { at: 2 }, 10_000);
    }
    changes.write(&txn, &index).unwrap();
    txn.commit().unwrap();
    index.apply(changes);
    check_pages(&c, &index);
    let mut sizes: Vec<u32> = index.pages.values().map(|p| p.items).collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        [1, 2],
        "the large entry alone, the two small ones together"
    );
    let big_page = index.entries[&SECRET.hash(&key(1))].page;
    assert_eq!(index.pages[&big_page].items, 1);
    // Deleting a small entry writes its page again; the large entry's page is untouched.
    commit(&mut c, &mut index, 100, &[Op::Delete { key: 0 }]);
    check_pages(&c, &index);
    assert_eq!(index.entries[&SECRET.hash(&key(1))].page, big_page);
    let reopened = MemoryIndex::load(&c).unwrap();
    assert_eq!(reopened.entries.len(), 2);
    assert_eq!(reopened.entries[&SECRET.hash(&key(1))].entry, big);
}
