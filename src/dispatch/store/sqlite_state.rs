//! The rules' memory in the outbox's SQLite file: the step function's [`State`] over the
//! writer's open transaction, so that state and the deliveries it lets through are
//! committed together.
//!
//! Each commit appends one page to the table `memory_pages (id, items)`: every entry it
//! put, and a tombstone for each key it forgot that an older page may still hold
//! (`memory_page.rs` has the form). An entry stored in more than 16 KiB (a group's) gets a
//! page of its own, so that writing a page again never copies it. Entries are looked up
//! through an index held in memory by the writer thread ([`MemoryIndex`], loaded when the
//! outbox opens, pages oldest first: a key's newest item is its state). A B-tree keyed by
//! hash would put every new key on a random page: measured, that made each commit write
//! several times the pages of its deliveries, and durable ingest with `dedup` on unique
//! alerts ran at 0.44x the rate without it. A row per entry, appended, cost a statement and seven bound columns per
//! entry, and another statement when it expired (docs/benchmarks.md, "The rules' memory in
//! pages").
//!
//! The index counts each page's live items (an entry it holds from that page, a tombstone
//! still needed). A page with none left is deleted; one with under a quarter left is
//! written again with those only, so the pages hold at most four items per live one.
//!
//! A key a step deletes has its live copy's page written again without it. Older copies
//! of the key (it was put again since) may stay in older pages: a tombstone hides them
//! until the latest of their expiries, so tombstones are only as many as deletes of keys
//! put more than once within their lives (a group's entry), never one per key deleted
//! (a `resolve once` announcement lives a week; a tombstone per resolution would have
//! grown the memory by the resolutions of a week). An entry forgotten early to make room
//! leaves none (a restart may read it back, until it expires or is forgotten again).
//!
//! The key is a keyed 128-bit SipHash-1-3 of the step's key bytes, with a random secret of
//! this outbox kept in `meta`: nobody can make two keys collide, and no alert data is
//! stored in a key. Changes are applied to the in-memory index only once their commit
//! succeeded: a failed commit (a full disk) leaves the index as the file is. Expired
//! entries are collected a bounded number per commit. Never: reads the clock (the step's
//! `now` comes from the submit), or lets an SQLite error pass silently (the first one fails
//! the commit).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hasher;

use rusqlite::{Connection, Transaction, params};
use rustc_hash::{FxHashMap, FxHashSet};
use siphasher::sip128::{Hasher128, SipHasher13};

use super::memory_page;
use crate::state::{Entry, Group, Key, SilenceSpan, State};

/// The secret that keys the hash of state keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Secret(pub(crate) u64, pub(crate) u64);

impl Secret {
    /// The keyed 128-bit SipHash-1-3 of a key's bytes: what the outbox stores.
    pub(crate) fn hash(self, key: &Key<'_>) -> Hash {
        let mut h = SipHasher13::new_with_keys(self.0, self.1);
        h.write(&key.bytes);
        h.finish128().as_bytes()
    }
}

/// The most expired rows one commit deletes.
const COLLECT_PER_COMMIT: usize = 256;

/// The most entries the rules' memory holds (about 150 bytes of memory each, and a row of
/// the outbox). Past it, the entries closest to expiring are forgotten first, a bounded
/// number per commit: a forgotten `dedup` entry lets one duplicate through, a forgotten
/// `resolve once` announcement drops one resolution; memory never grows without bound.
#[cfg(not(test))]
pub(crate) const MAX_ENTRIES: usize = 1_000_000;
/// Small in unit tests, so that one can fill it.
#[cfg(test)]
pub(crate) const MAX_ENTRIES: usize = 50;

/// A key's keyed hash: what the index and the pages keep entries under.
pub(crate) use super::memory_page::Hash;

/// A map by [`Hash`] (both stores' state maps), hashed by the hash's first 8 bytes. The
/// key is already a keyed SipHash of the state key, which nobody can steer into
/// collisions; hashing it again with the standard map's own SipHash cost about 5% of an
/// ingest with `dedup` (callgrind).
pub(crate) type ByHash<V> = HashMap<Hash, V, std::hash::BuildHasherDefault<Prehashed>>;

/// The [`std::hash::Hasher`] of [`ByHash`]: keeps the first 8 bytes written, ignores the
/// length prefix.
#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        if let Some(first) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*first);
        }
    }

    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

/// One entry as the index holds it: the entry, when it expires, and its page.
#[derive(Clone, Debug)]
struct Held {
    entry: Entry,
    expires: u64,
    /// The page that holds this entry's copy.
    page: i64,
    /// The latest expiry among older copies of this key that older pages may still hold
    /// (0: none): a key forgotten before then leaves a tombstone, so that a restart does
    /// not read one of them back.
    stale: u64,
}

/// A tombstone as the index holds it: until `expires`, older pages' copies of its key are
/// not read.
#[derive(Clone, Copy, Debug)]
struct Gone {
    expires: u64,
    page: i64,
}

/// A page's items: how many it holds, and how many of them are live (an entry the index
/// holds from this page, or a tombstone still needed). A page none of whose items is live
/// is deleted; one with under a quarter live is written again with those only.
#[derive(Clone, Copy, Debug, Default)]
struct PageCount {
    items: u32,
    live: u32,
}

/// Every live entry of the `memory_pages` table, by key hash, and by expiry for
/// collection.
#[derive(Debug, Default)]
pub(crate) struct MemoryIndex {
    entries: ByHash<Held>,
    by_expiry: BTreeSet<(u64, Hash)>,
    /// Tombstones still needed, by key hash and by expiry. A key has an entry or a
    /// tombstone, never both.
    gone: ByHash<Gone>,
    gone_by_expiry: BTreeSet<(u64, Hash)>,
    pages: FxHashMap<i64, PageCount>,
    /// Every stored silence's span, by id: what the step asks ([`State::silence`]).
    silences: HashMap<u64, SilenceSpan>,
    /// Every group's next flush, earliest first: what the flush timer reads.
    groups: BTreeSet<(u64, Hash)>,
    /// The id of the next commit's page.
    next_page: i64,
}

/// The latest expiry among the copies of a key that older pages may still hold once a newer
/// item is written: the entry it replaces (and that entry's own older copies), or those a
/// tombstone it replaces hid.
fn left_behind(old: Option<&Held>, tomb: Option<&Gone>) -> u64 {
    old.map_or(0, |o| o.expires.max(o.stale))
        .max(tomb.map_or(0, |t| t.expires))
}

/// Reads `page`'s items into `index` (pages are read oldest first: a later copy of a key
/// replaces an earlier one, a tombstone forgets it). Answers how many items it holds.
fn read_page(index: &mut MemoryIndex, id: i64, items: &[memory_page::Item<'_>]) -> u32 {
    for item in items {
        let older = index.entries.remove(&item.key);
        let tomb = index.gone.remove(&item.key);
        let stale = left_behind(older.as_ref(), tomb.as_ref());
        let entry = item.kept.and_then(|kept| {
            super::entry_form::decode(kept.value)
                .map_err(|e| {
                    // Forgetting one entry lets at most one duplicate through; it never
                    // loses an alert. Older copies stay forgotten with it.
                    tracing::warn!(page = id, error = %e, "a state entry cannot be read; it is forgotten");
                })
                .ok()
        });
        match entry {
            Some(entry) => {
                index.entries.insert(
                    item.key,
                    Held {
                        entry,
                        expires: item.expires,
                        page: id,
                        stale,
                    },
                );
            }
            // A tombstone, or an entry that cannot be read: the key is forgotten.
            None => {
                index.gone.insert(
                    item.key,
                    Gone {
                        expires: stale.max(item.expires),
                        page: id,
                    },
                );
            }
        }
    }
    u32::try_from(items.len()).unwrap_or(u32::MAX)
}

impl MemoryIndex {
    /// Reads every page of the table, oldest first (after moving the rows of an earlier
    /// version's `memory` table into pages). A page that cannot be read is deleted
    /// (forgetting entries lets at most one duplicate each through; it never loses an
    /// alert), as is one none of whose items is live.
    pub(crate) fn load(conn: &Connection) -> rusqlite::Result<MemoryIndex> {
        migrate_rows(conn)?;
        let mut index = MemoryIndex::default();
        let mut bad = Vec::new();
        {
            let mut stmt = conn.prepare("SELECT id, items FROM memory_pages ORDER BY id")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                index.next_page = index.next_page.max(id.saturating_add(1));
                let bytes = row.get_ref(1)?.as_blob()?;
                match memory_page::items(bytes) {
                    Ok(items) => {
                        let n = read_page(&mut index, id, &items);
                        index.pages.insert(id, PageCount { items: n, live: 0 });
                    }
                    Err(e) => {
                        tracing::warn!(page = id, error = %e, "a page of the rules' memory cannot be read; its entries are forgotten");
                        bad.push(id);
                    }
                }
            }
        }
        for held in index.entries.values() {
            if let Some(p) = index.pages.get_mut(&held.page) {
                p.live += 1;
            }
        }
        for g in index.gone.values() {
            if let Some(p) = index.pages.get_mut(&g.page) {
                p.live += 1;
            }
        }
        bad.extend(
            index
                .pages
                .iter()
                .filter(|(_, p)| p.live == 0)
                .map(|(id, _)| *id),
        );
        for id in bad {
            index.pages.remove(&id);
            conn.execute("DELETE FROM memory_pages WHERE id = ?1", params![id])?;
        }
        index.next_page = index.next_page.max(1);
        index.by_expiry = index
            .entries
            .iter()
            .map(|(h, held)| (held.expires, *h))
            .collect();
        index.gone_by_expiry = index.gone.iter().map(|(h, g)| (g.expires, *h)).collect();
        index.groups = index
            .entries
            .iter()
            .filter_map(|(h, held)| group_flush(&held.entry).map(|at| (at, *h)))
            .collect();
        index.silences = super::sqlite_silence::spans(conn)?;
        Ok(index)
    }

    /// How many entries the memory holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Applies a committed transaction's changes.
    pub(crate) fn apply(&mut self, changes: Changes) {
        for (id, span) in changes.silences {
            match span {
                Some(span) => self.silences.insert(id, span),
                None => self.silences.remove(&id),
            };
        }
        let Some(plan) = changes.plan else {
            return;
        };
        for (hash, change) in changes.entries {
            if let Some(old) = self.entries.remove(&hash) {
                self.by_expiry.remove(&(old.expires, hash));
                if let Some(at) = group_flush(&old.entry) {
                    self.groups.remove(&(at, hash));
                }
            }
            if let Change::Put(held) = change {
                if let Some(t) = self.gone.remove(&hash) {
                    self.gone_by_expiry.remove(&(t.expires, hash));
                }
                self.by_expiry.insert((held.expires, hash));
                if let Some(at) = group_flush(&held.entry) {
                    self.groups.insert((at, hash));
                }
                self.entries.insert(hash, held);
            }
        }
        for hash in plan.gone_dropped.into_keys() {
            if let Some(t) = self.gone.remove(&hash) {
                self.gone_by_expiry.remove(&(t.expires, hash));
            }
        }
        for (hash, g) in plan.gone_added {
            if let Some(t) = self.gone.insert(hash, g) {
                self.gone_by_expiry.remove(&(t.expires, hash));
            }
            self.gone_by_expiry.insert((g.expires, hash));
        }
        for (id, dead) in plan.dead {
            if let Some(p) = self.pages.get_mut(&id) {
                p.live = p.live.saturating_sub(dead);
            }
        }
        for id in plan.deleted {
            self.pages.remove(&id);
        }
        for (id, items) in plan.rewritten {
            if let Some(p) = self.pages.get_mut(&id) {
                p.items = items;
            }
        }
        for (id, items) in plan.written {
            self.pages.insert(id, PageCount { items, live: items });
            self.next_page = self.next_page.max(id + 1);
        }
    }
}

/// Moves the rows of the `memory` table an earlier version kept (one row per entry) into
/// pages of up to 4,096 entries, in their order, and drops the table; in one transaction.
fn migrate_rows(conn: &Connection) -> rusqlite::Result<()> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'memory'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let moved = (|| -> rusqlite::Result<usize> {
        let mut next: i64 = conn.query_row(
            "SELECT coalesce(max(id), 0) + 1 FROM memory_pages",
            [],
            |r| r.get(0),
        )?;
        let mut stmt = conn
            .prepare("SELECT key, expires, value, rule, kind, target FROM memory ORDER BY rowid")?;
        let mut rows = stmt.query([])?;
        let mut page = memory_page::PageWriter::new();
        let mut meta = Vec::new();
        let mut moved = 0;
        let flush = |page: &mut memory_page::PageWriter, next: &mut i64| {
            if page.items() > 0 {
                insert_page(conn, *next, page)?;
                *next += 1;
                *page = memory_page::PageWriter::new();
            }
            Ok::<(), rusqlite::Error>(())
        };
        while let Some(row) = rows.next()? {
            let key = row
                .get_ref(0)?
                .as_blob()
                .ok()
                .and_then(|k| Hash::try_from(k).ok());
            let expires = u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0);
            let value = row.get_ref(2)?.as_blob().ok();
            let names = (
                row.get_ref(3)?.as_str().ok(),
                row.get_ref(4)?.as_str().ok(),
                row.get_ref(5)?.as_str().ok(),
            );
            let (Some(key), Some(value), (Some(rule), Some(kind), Some(target))) =
                (key, value, names)
            else {
                tracing::warn!("a state entry of the earlier form cannot be read; it is forgotten");
                continue;
            };
            meta.clear();
            memory_page::meta(&mut meta, rule, kind, target);
            page.put_stored(&key, expires, &meta, value);
            moved += 1;
            if page.items() >= 4096 {
                flush(&mut page, &mut next)?;
            }
        }
        flush(&mut page, &mut next)?;
        drop(rows);
        drop(stmt);
        conn.execute_batch("DROP TABLE memory")?;
        Ok(moved)
    })();
    match moved {
        Ok(n) => {
            conn.execute_batch("COMMIT")?;
            if n > 0 {
                tracing::info!(
                    entries = n,
                    "the rules' memory moved from one row per entry to pages"
                );
            }
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// When a group entry is next flushed; `None` for any other entry.
fn group_flush(entry: &Entry) -> Option<u64> {
    match entry {
        Entry::Group(g) => Some(g.next_flush),
        _ => None,
    }
}

/// What a transaction does to a key.
#[derive(Debug)]
enum Change {
    /// Keeps this entry.
    Put(Held),
    /// Forgets the key: a step deleted it. Older copies are shadowed by a tombstone.
    Delete,
    /// Forgets an entry that expired: a tombstone only if an older copy outlives it.
    Expire,
    /// Forgets an entry before its time, to make room: no tombstone (a restart may read
    /// it back, until it expires or is forgotten again).
    Forget,
}

impl Change {
    fn held(&self) -> Option<&Held> {
        match self {
            Change::Put(held) => Some(held),
            _ => None,
        }
    }
}

/// What a transaction changed, to apply once it committed: entries by key hash, silences
/// by id (`None`: deleted).
#[derive(Debug, Default)]
pub(crate) struct Changes {
    entries: ByHash<Change>,
    pub(crate) silences: HashMap<u64, Option<SilenceSpan>>,
    /// Each key put in this commit: where its rule, kind and target are in `meta_bytes`
    /// (the same for every put of one key: its hash covers them).
    meta: ByHash<(u32, u32)>,
    meta_bytes: Vec<u8>,
    /// Tombstones expired, to drop.
    gone_expired: Vec<Hash>,
    /// What [`Changes::write`] did to the pages, for [`MemoryIndex::apply`].
    plan: Option<Plan>,
    /// The bytes of the last key hashed in this commit, and its hash
    /// ([`SqliteState::hash`]).
    last_hashed: (Vec<u8>, Hash),
}

/// An entry stored in more bytes than this is written to a page of its own.
const OWN_PAGE_BYTES: usize = 16 * 1024;

fn insert_page(conn: &Connection, id: i64, page: &memory_page::PageWriter) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO memory_pages (id, items) VALUES (?1, ?2)")?
        .execute(params![id, page.bytes()])?;
    Ok(())
}

/// What a commit did to the pages.
#[derive(Debug, Default)]
struct Plan {
    /// This commit's pages and their items: its page, and a page of its own for each
    /// large entry.
    written: Vec<(i64, u32)>,
    /// Items of older pages no longer live, by page.
    dead: FxHashMap<i64, u32>,
    /// Pages deleted (none of their items live).
    deleted: Vec<i64>,
    /// Pages written again with their live items only, and how many.
    rewritten: Vec<(i64, u32)>,
    gone_added: ByHash<Gone>,
    gone_dropped: ByHash<()>,
    /// Pages that held the live copy of a key a step deleted: written again without it,
    /// however many of their items are live, so that the copy needs no tombstone.
    rewrite: FxHashSet<i64>,
}

impl Changes {
    /// Writes this commit's page (every entry it kept, and a tombstone for each key it
    /// forgot that an older page may still hold in an older copy), then deletes the older
    /// pages none of whose items is live and writes again those with under a quarter live,
    /// and those that held the live copy of a key a step deleted. Called once, before the
    /// commit; nothing in a commit reads the table back before it.
    pub(crate) fn write(
        &mut self,
        txn: &Transaction<'_>,
        index: &MemoryIndex,
    ) -> rusqlite::Result<()> {
        let fail = |e: postcard::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
        let id = index.next_page;
        let mut page = memory_page::PageWriter::new();
        let mut plan = Plan::default();
        for (hash, change) in &mut self.entries {
            let old = index.entries.get(hash);
            let tomb = index.gone.get(hash);
            if let Some(o) = old {
                *plan.dead.entry(o.page).or_default() += 1;
            }
            let shadow = match change {
                Change::Put(held) => {
                    if let Some(t) = tomb {
                        *plan.dead.entry(t.page).or_default() += 1;
                        plan.gone_dropped.insert(*hash, ());
                    }
                    held.page = id;
                    held.stale = left_behind(old, tomb);
                    let (from, to) = self.meta.get(hash).copied().unwrap_or((0, 0));
                    let meta =
                        self.meta_bytes
                            .get(from as usize..to as usize)
                            .ok_or_else(|| {
                                rusqlite::Error::ToSqlConversionFailure(
                                    "a memory entry to write without its names".into(),
                                )
                            })?;
                    let at = page.len();
                    page.put(hash, held.expires, meta, &held.entry)
                        .map_err(fail)?;
                    // A large entry (a group's, with its members' alerts) gets a page of its
                    // own: writing a page again (when a small entry in it is deleted) then
                    // never copies it.
                    if page.len() - at > OWN_PAGE_BYTES {
                        let own = page.split_off(at);
                        let own_id = id + 1 + plan.written.len() as i64;
                        insert_page(txn, own_id, &own)?;
                        plan.written.push((own_id, 1));
                        held.page = own_id;
                    }
                    continue;
                }
                // The live copy's page is written again without it (below), so only
                // older copies need a tombstone: a key put once and deleted (an
                // announcement taken, a held delivery cancelled) leaves none.
                Change::Delete => old.map_or(0, |o| {
                    plan.rewrite.insert(o.page);
                    o.stale
                }),
                Change::Expire => old.map_or(0, |o| o.stale),
                Change::Forget => 0,
            };
            // A key forgotten that a page still holds in an older copy. A tombstone the
            // index holds already (no entry, so no copy this commit made dead) stays.
            if shadow > 0 {
                page.gone(hash, shadow);
                plan.gone_added.insert(
                    *hash,
                    Gone {
                        expires: shadow,
                        page: id,
                    },
                );
            }
        }
        for hash in &self.gone_expired {
            if !self.entries.contains_key(hash)
                && let Some(t) = index.gone.get(hash)
            {
                *plan.dead.entry(t.page).or_default() += 1;
                plan.gone_dropped.insert(*hash, ());
            }
        }
        if page.items() > 0 {
            insert_page(txn, id, &page)?;
            plan.written.push((id, page.items()));
        }
        for (&pid, &dead) in &plan.dead {
            let Some(count) = index.pages.get(&pid) else {
                continue;
            };
            let live = count.live.saturating_sub(dead);
            if live == 0 {
                txn.prepare_cached("DELETE FROM memory_pages WHERE id = ?1")?
                    .execute(params![pid])?;
                plan.deleted.push(pid);
            } else if (live.saturating_mul(4) < count.items || plan.rewrite.contains(&pid))
                && let Some(kept) = self.rewrite(txn, index, &plan, pid)?
            {
                plan.rewritten.push((pid, kept));
            }
        }
        self.plan = Some(plan);
        Ok(())
    }

    /// Writes page `pid` again with the items live once this commit is applied; answers
    /// how many. A page that cannot be read is left as it is.
    fn rewrite(
        &self,
        txn: &Transaction<'_>,
        index: &MemoryIndex,
        plan: &Plan,
        pid: i64,
    ) -> rusqlite::Result<Option<u32>> {
        let bytes: Vec<u8> = txn
            .prepare_cached("SELECT items FROM memory_pages WHERE id = ?1")?
            .query_row(params![pid], |r| r.get(0))?;
        let Ok(items) = memory_page::items(&bytes) else {
            return Ok(None);
        };
        let mut page = memory_page::PageWriter::new();
        for item in &items {
            let live = match &item.kept {
                // An entry this commit changed is in this commit's page, or gone.
                Some(_) => {
                    !self.entries.contains_key(&item.key)
                        && index.entries.get(&item.key).is_some_and(|h| h.page == pid)
                }
                // A tombstone is live while the index keeps it from this page: a key this
                // commit deletes again, with no entry left to delete, keeps its tombstone.
                None => {
                    !plan.gone_added.contains_key(&item.key)
                        && !plan.gone_dropped.contains_key(&item.key)
                        && index.gone.get(&item.key).is_some_and(|g| g.page == pid)
                }
            };
            if live {
                page.copy(item);
            }
        }
        txn.prepare_cached("UPDATE memory_pages SET items = ?1 WHERE id = ?2")?
            .execute(params![page.bytes(), pid])?;
        Ok(Some(page.items()))
    }

    /// Silence `id` as the transaction sees it.
    fn silence(&self, index: &MemoryIndex, id: u64) -> Option<SilenceSpan> {
        match self.silences.get(&id) {
            Some(change) => *change,
            None => index.silences.get(&id).copied(),
        }
    }
}

/// The step's state over an open transaction: reads the index and what the transaction
/// changed; every change waits in [`Changes`] until [`Changes::write`].
pub(crate) struct SqliteState<'t> {
    secret: Secret,
    index: &'t MemoryIndex,
    changes: &'t mut Changes,
}

impl<'t> SqliteState<'t> {
    pub(crate) fn new(
        secret: Secret,
        index: &'t MemoryIndex,
        changes: &'t mut Changes,
    ) -> SqliteState<'t> {
        SqliteState {
            secret,
            index,
            changes,
        }
    }

    /// The key's hash. The step reads a key and then writes it (a `dedup` entry for a new
    /// alert, a group it joins): the last key hashed is kept, with its bytes, so that the
    /// write does not hash it again (a SipHash of the key's bytes, about 270 instructions).
    fn hash(&mut self, key: &Key<'_>) -> Hash {
        let (bytes, hash) = &mut self.changes.last_hashed;
        if !bytes.is_empty() && *bytes == key.bytes {
            return *hash;
        }
        *hash = self.secret.hash(key);
        bytes.clear();
        bytes.extend_from_slice(&key.bytes);
        *hash
    }

    /// The entry under `hash` as this transaction sees it.
    fn held(&self, hash: &Hash) -> Option<&Held> {
        match self.changes.entries.get(hash) {
            Some(change) => change.held(),
            None => self.index.entries.get(hash),
        }
    }

    /// Deletes up to [`COLLECT_PER_COMMIT`] entries that expired before `now` (and as many
    /// tombstones); and, while the memory holds more than [`MAX_ENTRIES`], the entries
    /// closest to expiring, expired or not. Returns how many it deleted before their time.
    pub(crate) fn collect(&mut self, now: u64) -> usize {
        let held = self.index.entries.len() + self.changes.entries.len();
        let over = held.saturating_sub(MAX_ENTRIES);
        let mut early = 0usize;
        let victims: Vec<(Hash, bool)> = self
            .index
            .by_expiry
            .iter()
            .filter(|(_, h)| !self.changes.entries.contains_key(h))
            .take_while(|(expires, _)| {
                if *expires <= now {
                    return true;
                }
                early += 1;
                early <= over
            })
            .map(|(expires, h)| (*h, *expires <= now))
            .take(COLLECT_PER_COMMIT.max(over.min(4 * COLLECT_PER_COMMIT)))
            .collect();
        let early = early.min(over).min(victims.len());
        for (hash, expired) in victims {
            let change = if expired {
                Change::Expire
            } else {
                Change::Forget
            };
            self.changes.entries.insert(hash, change);
        }
        let gone: Vec<Hash> = self
            .index
            .gone_by_expiry
            .iter()
            .take_while(|(expires, _)| *expires <= now)
            .filter(|(_, h)| !self.changes.entries.contains_key(h))
            .take(COLLECT_PER_COMMIT)
            .map(|(_, h)| *h)
            .collect();
        self.changes.gone_expired.extend(gone);
        early
    }
}

/// The step's state for a preview (`POST /api/explain`): reads what the outbox holds (and
/// what the open transaction changed), keeps what the step writes to itself, and writes
/// nothing to the file or the index.
pub(crate) struct PreviewState<'t> {
    secret: Secret,
    index: &'t MemoryIndex,
    changes: &'t Changes,
    overlay: ByHash<Option<(Entry, u64)>>,
}

impl<'t> PreviewState<'t> {
    pub(crate) fn new(
        secret: Secret,
        index: &'t MemoryIndex,
        changes: &'t Changes,
    ) -> PreviewState<'t> {
        PreviewState {
            secret,
            index,
            changes,
            overlay: ByHash::default(),
        }
    }

    fn hash(&self, key: &Key<'_>) -> Hash {
        self.secret.hash(key)
    }
}

impl State for PreviewState<'_> {
    fn peek(&mut self, key: &Key<'_>, now: u64) -> Option<&Entry> {
        let hash = self.hash(key);
        let (entry, expires) = match self.overlay.get(&hash) {
            Some(Some((e, x))) => (e, *x),
            Some(None) => return None,
            None => {
                let held = match self.changes.entries.get(&hash) {
                    Some(change) => change.held(),
                    None => self.index.entries.get(&hash),
                }?;
                (&held.entry, held.expires)
            }
        };
        (expires > now).then_some(entry)
    }

    fn put(&mut self, key: &Key<'_>, entry: Entry, expires: u64) {
        let hash = self.hash(key);
        self.overlay.insert(hash, Some((entry, expires)));
    }

    fn delete(&mut self, key: &Key<'_>) {
        let hash = self.hash(key);
        self.overlay.insert(hash, None);
    }

    fn silence(&mut self, id: u64) -> Option<SilenceSpan> {
        self.changes.silence(self.index, id)
    }

    /// A preview flushes nothing.
    fn due_groups(&mut self, _: u64, _: usize) -> Vec<Group> {
        Vec::new()
    }
}

impl State for SqliteState<'_> {
    fn peek(&mut self, key: &Key<'_>, now: u64) -> Option<&Entry> {
        let hash = self.hash(key);
        self.held(&hash)
            .filter(|h| h.expires > now)
            .map(|h| &h.entry)
    }

    fn put(&mut self, key: &Key<'_>, entry: Entry, expires: u64) {
        let hash = self.hash(key);
        if !self.changes.meta.contains_key(&hash) {
            let from = self.changes.meta_bytes.len();
            memory_page::meta(&mut self.changes.meta_bytes, key.rule, key.kind, key.target);
            let to = self.changes.meta_bytes.len();
            self.changes.meta.insert(
                hash,
                (
                    u32::try_from(from).unwrap_or(u32::MAX),
                    u32::try_from(to).unwrap_or(u32::MAX),
                ),
            );
        }
        self.changes.entries.insert(
            hash,
            // Its page and older copies are known when the commit's pages are written
            // ([`Changes::write`]).
            Change::Put(Held {
                entry,
                expires,
                page: 0,
                stale: 0,
            }),
        );
    }

    /// An entry this commit put is deleted and handed over; one committed before is copied.
    fn take(&mut self, key: &Key<'_>, now: u64) -> Option<Entry> {
        let hash = self.hash(key);
        if !matches!(self.changes.entries.get(&hash), Some(Change::Put(held)) if held.expires > now)
        {
            return self.get(key, now);
        }
        match self.changes.entries.insert(hash, Change::Delete) {
            Some(Change::Put(held)) => Some(held.entry),
            _ => None,
        }
    }

    fn delete(&mut self, key: &Key<'_>) {
        let hash = self.hash(key);
        self.changes.entries.insert(hash, Change::Delete);
    }

    fn silence(&mut self, id: u64) -> Option<SilenceSpan> {
        self.changes.silence(self.index, id)
    }

    fn due_groups(&mut self, now: u64, limit: usize) -> Vec<Group> {
        let stored = self
            .index
            .groups
            .iter()
            .take_while(|(at, _)| *at <= now)
            .filter(|(_, h)| !self.changes.entries.contains_key(h))
            .filter_map(|(_, h)| self.index.entries.get(h));
        let changed = self.changes.entries.values().filter_map(Change::held);
        let entries = stored.chain(changed).map(|h| (&h.entry, h.expires));
        crate::state::due_among(entries, now, limit)
    }
}

impl SqliteState<'_> {
    /// When the next group is due to be flushed, as this transaction leaves them.
    pub(crate) fn next_group_flush(&self) -> Option<u64> {
        let stored = self
            .index
            .groups
            .iter()
            .find(|(_, h)| !self.changes.entries.contains_key(h))
            .map(|(at, _)| *at);
        let changed = self
            .changes
            .entries
            .values()
            .filter_map(Change::held)
            .filter_map(|held| group_flush(&held.entry))
            .min();
        stored.into_iter().chain(changed).min()
    }
}

/// Up to `limit` live entries, newest first, for an operator (`GET /api/state`): the pages
/// are read newest first, and a key's newest item is its state (a tombstone: none).
pub(crate) fn list(
    conn: &Connection,
    now: u64,
    limit: usize,
) -> rusqlite::Result<Vec<crate::state::Listed>> {
    let mut stmt = conn.prepare_cached("SELECT items FROM memory_pages ORDER BY id DESC")?;
    let mut rows = stmt.query([])?;
    let mut seen: ByHash<()> = ByHash::default();
    let mut out = Vec::new();
    while out.len() < limit
        && let Some(row) = rows.next()?
    {
        let Ok(items) = memory_page::items(row.get_ref(0)?.as_blob()?) else {
            continue;
        };
        for item in items {
            if seen.insert(item.key, ()).is_some() {
                continue;
            }
            let Some(kept) = item.kept else {
                continue;
            };
            if item.expires <= now || out.len() >= limit {
                continue;
            }
            if let Ok(entry) = super::entry_form::decode(kept.value) {
                out.push(crate::state::Listed {
                    rule: kept.rule.to_owned(),
                    kind: kept.kind.to_owned(),
                    target: kept.target.to_owned(),
                    expires: item.expires,
                    entry,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "sqlite_state_test.rs"]
mod tests;
