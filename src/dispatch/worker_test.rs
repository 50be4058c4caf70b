//! Unit tests of the worker's parsed URL.

use super::LastUrl;

#[test]
fn the_last_url_is_parsed_once_and_again_when_it_changes() {
    let mut last = LastUrl::default();
    let a = "https://hooks.example/a?token=x";
    assert_eq!(last.parse(a).map(String::from), Some(String::from(a)));
    assert_eq!(last.0.as_ref().map(|(text, _)| text.as_str()), Some(a));
    assert_eq!(last.parse(a).map(String::from), Some(String::from(a)));
    // Another URL (a reload changed the target) replaces it.
    let b = "http://127.0.0.1:9/b";
    assert_eq!(last.parse(b).map(String::from), Some(String::from(b)));
    assert_eq!(last.0.as_ref().map(|(text, _)| text.as_str()), Some(b));
    // One that does not parse is left to reqwest, which fails the request with its error;
    // the cache keeps the last good one.
    assert_eq!(last.parse("not a url"), None);
    assert_eq!(last.0.as_ref().map(|(text, _)| text.as_str()), Some(b));
}

mod recording {
    use super::super::{MAX_WAITING, Recording};
    use crate::dispatch::attempt::AttemptOutcome;
    use crate::dispatch::store::Record;

    fn done(id: u64) -> (Record, AttemptOutcome) {
        let mut r = Record::for_test("t", String::from("{}"));
        r.id = id;
        (r, AttemptOutcome::Delivered)
    }

    fn ids(taken: Option<Vec<(Record, AttemptOutcome)>>) -> Vec<u64> {
        taken
            .expect("a record to start")
            .iter()
            .map(|(r, _)| r.id)
            .collect()
    }

    #[test]
    fn the_outcomes_waiting_go_together_oldest_first() {
        let mut rec = Recording::default();
        assert!(rec.take().is_none(), "nothing waits");
        rec.push(done(1));
        rec.push(done(2));
        assert_eq!(rec.len(), 2, "both wait, holding no slot");
        assert_eq!(ids(rec.take()), [1, 2]);
        assert!(rec.take().is_none(), "all were taken");
        assert_eq!(rec.len(), 0);
    }

    #[test]
    fn the_waiting_outcomes_are_bounded() {
        let mut rec = Recording::default();
        for id in 0..MAX_WAITING as u64 {
            assert!(rec.has_room(), "room for outcome {id}");
            rec.push(done(id));
        }
        assert!(!rec.has_room(), "the worker leaves the rest in the channel");
    }
}
