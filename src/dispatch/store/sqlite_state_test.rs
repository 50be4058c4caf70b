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
