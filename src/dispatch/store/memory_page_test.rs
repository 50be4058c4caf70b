//! Unit tests of `memory_page.rs`.

use proptest::prelude::*;

use super::*;

fn sample() -> (PageWriter, Vec<u8>) {
    let mut page = PageWriter::new();
    let mut meta_bytes = Vec::new();
    meta(&mut meta_bytes, "prom pages", "dedup", "oncall");
    page.put(&[1; 16], 1_000, &meta_bytes, &Entry::Passed { at: 7 })
        .unwrap();
    page.gone(&[2; 16], 2_000);
    let stored = super::super::entry_form::encode(&Entry::Announced { at: 9 }).unwrap();
    page.put_stored(&[3; 16], 3_000, &meta_bytes, &stored);
    (page, stored)
}

/// Every kind of item reads back as written, in order, each with its own bytes; a page
/// made of copied items is the same page.
#[test]
fn a_page_reads_back_every_item_as_written() {
    let (page, stored) = sample();
    assert_eq!(page.items(), 3);
    let items = items(page.bytes()).unwrap();
    assert_eq!(items.len(), 3);
    let kept = items[0].kept.unwrap();
    assert_eq!(
        (
            items[0].key,
            items[0].expires,
            kept.rule,
            kept.kind,
            kept.target
        ),
        ([1; 16], 1_000, "prom pages", "dedup", "oncall")
    );
    assert_eq!(
        super::super::entry_form::decode(kept.value).unwrap(),
        Entry::Passed { at: 7 }
    );
    assert_eq!(
        (items[1].key, items[1].expires, items[1].kept),
        ([2; 16], 2_000, None)
    );
    assert_eq!(items[2].kept.unwrap().value, &stored[..]);
    let mut copy = PageWriter::new();
    for item in &items {
        copy.copy(item);
    }
    assert_eq!(copy.bytes(), page.bytes());
    assert_eq!(copy.items(), 3);
}

/// A page cut anywhere but between two items, or of another version, or with an item of an
/// unknown kind, or a name that is not UTF-8, is refused with a reason.
#[test]
fn a_page_cut_short_or_of_another_form_is_refused() {
    let (page, _) = sample();
    let bytes = page.bytes();
    let ends: Vec<usize> = {
        let items = items(bytes).unwrap();
        let mut at = 1;
        let mut ends = vec![1];
        for item in &items {
            at += item.raw.len();
            ends.push(at);
        }
        ends
    };
    for cut in 0..bytes.len() {
        let read = items(&bytes[..cut]);
        assert_eq!(read.is_ok(), ends.contains(&cut), "cut at {cut}: {read:?}");
    }
    let mut other = bytes.to_vec();
    other[0] = 9;
    assert!(items(&other).unwrap_err().contains("version 9"));
    let mut kind = bytes.to_vec();
    kind[1] = 7;
    assert!(items(&kind).unwrap_err().contains("unknown kind 7"));
    // The rule's first byte: after the version, tag, key, expiry and length.
    let mut name = bytes.to_vec();
    name[1 + 1 + 16 + 8 + 4] = 0xff;
    assert!(items(&name).unwrap_err().contains("UTF-8"));
}

proptest! {
    /// Any bytes after the version byte (and any first byte too): read or refused, never a
    /// panic, and every item read lies within the bytes.
    #[test]
    fn any_bytes_are_read_or_refused(
        rest in proptest::collection::vec(any::<u8>(), 0..200),
        first in prop_oneof![Just(1u8), any::<u8>()],
    ) {
        let mut bytes = vec![first];
        bytes.extend(rest);
        if let Ok(items) = items(&bytes) {
            let total: usize = items.iter().map(|i| i.raw.len()).sum();
            prop_assert_eq!(total + 1, bytes.len());
        }
    }
}
