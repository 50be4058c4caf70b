//! Unit tests of `entry_form.rs`.

use super::{decode, encode};
use crate::state::{Entry, Group, Member, Notified};

fn member(i: u64, inhibits: bool) -> Member {
    Member {
        id: format!("a{i}"),
        name: format!("HighCPU{i}"),
        firing: i.is_multiple_of(2),
        data: format!(
            r#"{{"labels":{{"alertname":"HighCPU{i}","note":"quote \" and \\ and é"}}}}"#
        ),
        until: 1_000 + i,
        since: 500 + i,
        inhibits: if inhibits {
            vec![(String::from("db down"), format!("k{i}"))]
        } else {
            Vec::new()
        },
    }
}

/// One entry of every kind, every field set to something other than its default.
fn every_kind() -> Vec<Entry> {
    vec![
        Entry::Dedup {
            state: String::from("firing"),
            at: 17,
            delivery: 42,
        },
        Entry::Announced { at: 18 },
        Entry::Window {
            times: vec![1, 2, 3],
        },
        Entry::Passed { at: 19 },
        Entry::Flap {
            state: String::from("resolved"),
            changes: vec![4, 5],
            held: Some((6, 7)),
        },
        Entry::Flap {
            state: String::new(),
            changes: Vec::new(),
            held: None,
        },
        Entry::Held {
            delivery: 8,
            until: 9,
        },
        Entry::Group(Box::new(Group {
            rule: String::from("cluster pages"),
            clauses: 0xdead_beef,
            target: String::from("pager"),
            key: String::from(r#"["eu-1"]"#),
            labels: String::from(r#"{"cluster":"eu-1"}"#),
            every_ms: 60_000,
            repeat_ms: 4 * 3_600_000,
            members: vec![member(1, true), member(2, false)],
            truncated: 3,
            next_flush: 10,
            notified: Some(Notified {
                firing: vec![String::from("a2")],
                resolved: vec![String::from("a1")],
                at: 11,
            }),
        })),
        Entry::Truncated { count: 12 },
        Entry::Inhibitor {
            sources: vec![(String::from("s1"), 13), (String::from("s2"), 14)],
        },
        Entry::Silenced {
            delivery: 15,
            silence: 16,
            until: 17,
        },
    ]
}

#[test]
fn every_kind_of_entry_round_trips_through_the_compact_form() {
    for entry in every_kind() {
        let bytes = encode(&entry).unwrap();
        assert_eq!(bytes[0], super::COMPACT);
        assert_eq!(decode(&bytes).unwrap(), entry, "{entry:?}");
    }
}

#[test]
fn an_entry_stored_as_json_by_an_earlier_version_is_still_read() {
    for entry in every_kind() {
        let json = serde_json::to_vec(&entry).unwrap();
        assert_eq!(decode(&json).unwrap(), entry, "{entry:?}");
    }
}

#[test]
fn a_group_members_alert_is_stored_as_its_bytes_not_escaped() {
    let group = Entry::Group(Box::new(Group {
        rule: String::from("g"),
        clauses: 1,
        target: String::from("t"),
        key: String::from("[]"),
        labels: String::from("{}"),
        every_ms: 1,
        repeat_ms: 1,
        members: (0..1_000).map(|i| member(i, false)).collect(),
        truncated: 0,
        next_flush: 1,
        notified: None,
    }));
    let bytes = encode(&group).unwrap();
    let Entry::Group(g) = &group else {
        unreachable!()
    };
    let data = g.members[7].data.as_bytes();
    assert!(bytes.windows(data.len()).any(|w| w == data));
    assert!(bytes.len() < serde_json::to_vec(&group).unwrap().len());
}

#[test]
fn a_damaged_compact_entry_is_an_error_not_a_panic() {
    for entry in every_kind() {
        let bytes = encode(&entry).unwrap();
        for cut in 1..bytes.len() {
            // Cut short: an error (or, rarely, another valid entry), never a panic.
            let _ = decode(&bytes[..cut]);
        }
    }
    assert!(decode(&[super::COMPACT, 0xff, 0xff, 0xff]).is_err());
    assert!(decode(&[super::COMPACT, 200]).is_err());
    assert!(decode(b"").is_err());
    assert!(decode(b"{\"k\":\"nothing\"}").is_err());
}
