//! Arbitrary bytes as a rules file. Invariants: no panic; every diagnostic points inside
//! the file; cut into pieces at item lines and parsed on two threads, the file gives
//! exactly what parsing it whole gives; a file that parses prints to text that parses to
//! the same tree, and printing that again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::internals;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (start, end) in internals::diagnostic_spans(text) {
        assert!(
            start <= end && end as usize <= text.len(),
            "span {start}..{end} outside a {}-byte file",
            text.len()
        );
    }
    let piece_bytes = usize::from(data.first().copied().unwrap_or(1) % 64);
    assert!(
        internals::pieces_parse_as_whole(text, piece_bytes),
        "parsing in pieces of {piece_bytes} bytes differs:\n{text}"
    );
    let Ok(printed) = internals::parse_and_print(text) else {
        return;
    };
    let tree = internals::parse_to_json(text).expect("parsed once");
    let reparsed = internals::parse_to_json(&printed)
        .unwrap_or_else(|e| panic!("printed text does not parse:\n{printed}\n{e}"));
    assert_eq!(
        tree, reparsed,
        "round trip changed the tree:\n{text}\n---\n{printed}"
    );
    assert_eq!(
        internals::parse_and_print(&printed).as_deref(),
        Ok(printed.as_str()),
        "printing is not stable"
    );
});
