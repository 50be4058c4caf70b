use super::*;

#[test]
fn a_flash_comes_only_from_the_codes_the_actions_write() {
    let done = |code: &str| Done {
        done: Some(code.to_owned()),
        id: Some(7),
    };
    assert_eq!(
        done("retried").flash(),
        Some((
            true,
            String::from("Dead letter 7 is queued again, due now.")
        ))
    );
    assert_eq!(done("gone").flash().map(|f| f.0), Some(false));
    assert_eq!(done("<script>").flash(), None, "no text from the request");
    assert_eq!(Done::default().flash(), None);
}

#[test]
fn rates_wait_a_second_then_count_over_the_window() {
    let rates = Rates::new();
    assert_eq!(rates.sample(10, 5), None, "within a second of the start");
    {
        let mut s = rates.samples.lock().unwrap();
        let back = Instant::now() - std::time::Duration::from_secs(10);
        s.clear();
        s.push_back((back, 0, 0));
    }
    let (alerts, delivered) = rates.sample(100, 50).unwrap();
    assert!((9.0..=10.5).contains(&alerts), "{alerts}");
    assert!((4.5..=5.5).contains(&delivered), "{delivered}");
    {
        // A minute and more ago: the oldest sample in the window is the start.
        let mut s = rates.samples.lock().unwrap();
        let now = Instant::now();
        s.clear();
        s.push_back((now - std::time::Duration::from_secs(120), 0, 0));
        s.push_back((now - std::time::Duration::from_secs(90), 100, 0));
        s.push_back((now - std::time::Duration::from_secs(30), 400, 0));
    }
    let (alerts, _) = rates.sample(1000, 0).unwrap();
    // From the sample at 90 s: (1000 - 100) / 90.
    assert!((9.5..=10.5).contains(&alerts), "{alerts}");
}
