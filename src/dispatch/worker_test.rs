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
