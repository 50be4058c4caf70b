//! One page of the rules' memory as the outbox stores it: one row of `memory_pages` per
//! commit, holding every entry that commit put, and the keys it forgot that an older page
//! may still hold. A row per entry cost about 5,000 instructions to write (its statement,
//! seven bound columns, a B-tree insert), a tenth of an ingest with `dedup` on new alerts,
//! and another statement to delete when it expired; a page is one row for the whole commit
//! (docs/benchmarks.md, "The rules' memory in pages").
//!
//! Owns: the page's bytes. A page is a version byte, then items, each a tag byte, the key's
//! 16-byte hash and its expiry (u64, little-endian); a kept entry goes on with its rule, kind
//! and target (each a u32 length and UTF-8 bytes, for `GET /api/state`) and its stored form
//! (a u32 length and the bytes `entry_form.rs` writes). Never: decides which items are live
//! (`sqlite_state.rs` does), or trusts a length it reads: a page that does not decode to its
//! last byte is unreadable as a whole.

use crate::state::Entry;

/// A key as a page stores it: the 16-byte keyed hash the outbox keeps entries under.
pub(crate) type Hash = [u8; 16];

/// The first byte of a page in this form.
const VERSION: u8 = 1;
/// An entry kept under its key.
const PUT: u8 = 1;
/// A key forgotten: older pages' copies of it are not read.
const GONE: u8 = 2;

/// One item of a page, borrowed from its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Item<'a> {
    pub(crate) key: Hash,
    pub(crate) expires: u64,
    /// `None`: the key is forgotten (a tombstone).
    pub(crate) kept: Option<Kept<'a>>,
    /// The item's own bytes, to copy it whole when the page is written again.
    pub(crate) raw: &'a [u8],
}

/// What a page keeps under a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kept<'a> {
    pub(crate) rule: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) target: &'a str,
    /// The entry's stored form (`entry_form::decode` reads it).
    pub(crate) value: &'a [u8],
}

/// A page being written.
#[derive(Debug)]
pub(crate) struct PageWriter {
    bytes: Vec<u8>,
    items: u32,
}

impl PageWriter {
    pub(crate) fn new() -> PageWriter {
        PageWriter {
            bytes: vec![VERSION],
            items: 0,
        }
    }

    /// Adds an entry kept under `key`. `meta` is [`meta`]'s bytes for its rule, kind and
    /// target.
    pub(crate) fn put(
        &mut self,
        key: &Hash,
        expires: u64,
        meta: &[u8],
        entry: &Entry,
    ) -> Result<(), postcard::Error> {
        self.kept(key, expires, meta, |bytes| {
            super::entry_form::encode_into(entry, bytes)
        })
    }

    /// Adds an entry kept under `key` whose stored form is `value` already (a row of the
    /// earlier form, moved into a page).
    pub(crate) fn put_stored(&mut self, key: &Hash, expires: u64, meta: &[u8], value: &[u8]) {
        // A blob SQLite held is under 4 GiB: its length always fits.
        let _ = self.kept(key, expires, meta, |bytes| {
            bytes.extend_from_slice(value);
            Ok(())
        });
    }

    /// Adds a kept entry whose stored form `value` appends, after its length.
    fn kept(
        &mut self,
        key: &Hash,
        expires: u64,
        meta: &[u8],
        value: impl FnOnce(&mut Vec<u8>) -> Result<(), postcard::Error>,
    ) -> Result<(), postcard::Error> {
        let start = self.bytes.len();
        self.head(PUT, key, expires);
        self.bytes.extend_from_slice(meta);
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        let written = value(&mut self.bytes).and_then(|()| {
            u32::try_from(self.bytes.len() - at - 4)
                .map_err(|_| postcard::Error::SerializeBufferFull)
        });
        match written {
            Ok(len) => {
                self.bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
                self.items += 1;
                Ok(())
            }
            Err(e) => {
                // Nothing of a failed item stays in the page.
                self.bytes.truncate(start);
                Err(e)
            }
        }
    }

    /// Adds a tombstone: `key` is forgotten, and older pages' copies of it (the latest
    /// expiring at `expires`) are not read.
    pub(crate) fn gone(&mut self, key: &Hash, expires: u64) {
        self.head(GONE, key, expires);
        self.items += 1;
    }

    /// Adds an item read from another page, as it is.
    pub(crate) fn copy(&mut self, item: &Item<'_>) {
        self.bytes.extend_from_slice(item.raw);
        self.items += 1;
    }

    fn head(&mut self, tag: u8, key: &Hash, expires: u64) {
        self.bytes.push(tag);
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(&expires.to_le_bytes());
    }

    /// The page's length in bytes so far.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Moves the one item written from byte `at` on into a page of its own.
    pub(crate) fn split_off(&mut self, at: usize) -> PageWriter {
        let mut own = PageWriter::new();
        own.bytes.extend_from_slice(&self.bytes[at..]);
        own.items = 1;
        self.bytes.truncate(at);
        self.items = self.items.saturating_sub(1);
        own
    }

    /// How many items the page holds.
    pub(crate) fn items(&self) -> u32 {
        self.items
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The bytes a kept entry's rule, kind and target are stored as: made once per key and
/// commit, copied into the page.
pub(crate) fn meta(out: &mut Vec<u8>, rule: &str, kind: &str, target: &str) {
    for s in [rule, kind, target] {
        // A name longer than 4 GiB cannot come from a rules file the loader accepts.
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&s.as_bytes()[..len as usize]);
    }
}

/// Every item of `page`, in order; an error names what is wrong with it.
pub(crate) fn items(page: &[u8]) -> Result<Vec<Item<'_>>, String> {
    let mut r = Reader { rest: page };
    match r.byte()? {
        VERSION => {}
        v => {
            return Err(format!(
                "a memory page of version {v}, which this version cannot read"
            ));
        }
    }
    let mut out = Vec::new();
    while !r.rest.is_empty() {
        let start = r.rest;
        let tag = r.byte()?;
        let key: Hash = r
            .take(16)?
            .try_into()
            .map_err(|_| "a key of the wrong length".to_owned())?;
        let expires = u64::from_le_bytes(
            r.take(8)?
                .try_into()
                .map_err(|_| "an expiry of the wrong length".to_owned())?,
        );
        let kept = match tag {
            PUT => Some(Kept {
                rule: r.text()?,
                kind: r.text()?,
                target: r.text()?,
                value: r.sized()?,
            }),
            GONE => None,
            t => return Err(format!("an item of unknown kind {t}")),
        };
        let raw = &start[..start.len() - r.rest.len()];
        out.push(Item {
            key,
            expires,
            kept,
            raw,
        });
    }
    Ok(out)
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!(
                "cut short: {n} bytes expected, {} left",
                self.rest.len()
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn sized(&mut self) -> Result<&'a [u8], String> {
        let len = u32::from_le_bytes(
            self.take(4)?
                .try_into()
                .map_err(|_| "a length of the wrong size".to_owned())?,
        );
        self.take(len as usize)
    }

    fn text(&mut self) -> Result<&'a str, String> {
        std::str::from_utf8(self.sized()?).map_err(|e| format!("a name that is not UTF-8: {e}"))
    }
}

#[cfg(test)]
#[path = "memory_page_test.rs"]
mod tests;
