use super::*;

#[test]
fn deliveries_of_different_alerts_never_wait_for_each_other() {
    let mut o = Order::default();
    assert!(o.admit(1, Some("a"), From::Fresh));
    assert!(o.admit(2, Some("b"), From::Fresh));
    assert!(o.admit(3, None, From::Fresh));
    assert!(o.admit(4, None, From::Fresh));
    assert_eq!(o.held(), 0);
}

#[test]
fn a_later_delivery_of_one_alert_waits_for_the_earlier_and_goes_when_it_settles() {
    let mut o = Order::default();
    assert!(o.admit(1, Some("a"), From::Fresh));
    assert!(!o.admit(5, Some("a"), From::Fresh));
    assert!(!o.admit(9, Some("a"), From::Table));
    assert!(o.is_held(5) && o.is_held(9));
    // 1 was retried: nothing moves. Delivered: 5 goes, then 9.
    assert_eq!(o.settled(1), Some((5, From::Fresh)));
    assert!(o.admit(5, Some("a"), From::Fresh), "its turn");
    assert!(!o.is_held(5));
    assert_eq!(o.settled(5), Some((9, From::Table)));
    assert!(o.admit(9, Some("a"), From::Table));
    assert_eq!(o.settled(9), None);
    assert_eq!(o.held(), 0);
    assert!(
        o.pending.is_empty() && o.alert_of.is_empty(),
        "nothing left behind"
    );
}

#[test]
fn a_delivery_known_from_before_a_restart_goes_first() {
    let mut o = Order::default();
    // Delivery 3 waits for a retry in the table; 7 is fresh and comes through first.
    o.know([(3, String::from("a")), (7, String::from("a"))]);
    assert!(!o.admit(7, Some("a"), From::Fresh));
    assert!(o.admit(3, Some("a"), From::Table));
    assert_eq!(o.settled(3), Some((7, From::Fresh)));
    assert!(o.admit(7, Some("a"), From::Fresh));
}

#[test]
fn settling_a_delivery_never_seen_is_harmless() {
    let mut o = Order::default();
    assert_eq!(o.settled(42), None);
    assert!(o.admit(1, Some("a"), From::Fresh));
    assert_eq!(o.settled(1), None);
    assert_eq!(o.settled(1), None);
}
