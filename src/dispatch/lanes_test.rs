//! Unit tests of the in-memory queues.

use super::Lanes;
use crate::dispatch::store::Record;

fn record(id: u64, target: &str, body: usize) -> Record {
    let mut r = Record::for_test(target, "x".repeat(body));
    r.id = id;
    r
}

#[test]
fn each_target_gets_its_own_deliveries_in_order() {
    let lanes = Lanes::new(1 << 20);
    lanes.push(vec![
        record(1, "a", 10),
        record(2, "b", 10),
        record(3, "a", 10),
    ]);
    lanes.push(vec![record(4, "a", 10)]);
    let a: Vec<u64> = lanes.take("a", 10).iter().map(|e| e.id).collect();
    assert_eq!(a, [1, 3, 4]);
    let b = lanes.take("b", 10);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].record.as_ref().map(|r| r.body.len()), Some(10));
    assert!(lanes.take("c", 10).is_empty());
    assert_eq!(lanes.depth("a"), (0, 0), "taking gives the memory back");
}

#[test]
fn take_takes_at_most_n_from_the_front() {
    let lanes = Lanes::new(1 << 20);
    lanes.push((1..=5).map(|i| record(i, "a", 1)).collect());
    let first: Vec<u64> = lanes.take("a", 2).iter().map(|e| e.id).collect();
    assert_eq!(first, [1, 2]);
    lanes.put_back("a", &first);
    let all: Vec<u64> = lanes.take("a", 10).iter().map(|e| e.id).collect();
    assert_eq!(all, [1, 2, 3, 4, 5], "put back at the front, in order");
}

#[test]
fn beyond_the_budget_only_ids_are_kept() {
    let one = super::weight(&record(0, "a", 1000));
    let lanes = Lanes::new(one * 3);
    lanes.push((1..=10).map(|i| record(i, "a", 1000)).collect());
    let (n, bytes) = lanes.depth("a");
    assert_eq!(n, 10);
    assert!(
        bytes <= one * 3,
        "{bytes} bytes over a budget of {}",
        one * 3
    );
    let taken = lanes.take("a", 10);
    let whole: Vec<u64> = taken
        .iter()
        .filter(|e| e.record.is_some())
        .map(|e| e.id)
        .collect();
    assert_eq!(whole, [1, 2, 3]);
    assert_eq!(lanes.depth("a"), (0, 0));
    // Memory given back is used again.
    lanes.push(vec![record(11, "a", 1000)]);
    assert!(lanes.take("a", 1)[0].record.is_some());
}

#[test]
fn ids_from_the_outbox_queue_behind_nothing_and_ahead_of_new_ones() {
    let lanes = Lanes::new(1 << 20);
    lanes.push_id(1, "a");
    lanes.push_id(2, "b");
    lanes.push(vec![record(3, "a", 1)]);
    let a = lanes.take("a", 10);
    assert_eq!(a.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 3]);
    assert!(a[0].record.is_none() && a[1].record.is_some());
}
