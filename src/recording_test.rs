use super::*;

fn at() -> jiff::Timestamp {
    "2026-11-30T10:00:00Z"
        .parse()
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

#[test]
fn secret_keys_are_found_whatever_their_spelling() {
    for k in [
        "password",
        "X-Api-Key",
        "access_token",
        "signature",
        "Authorization",
        "client.secret",
        "SessionId",
        "PRIVATE_KEY",
        "aws_access_key_id",
    ] {
        assert!(secret_key(k), "{k}");
    }
    for k in ["alertname", "severity", "instance", "tokenizer_version_x"] {
        // `tokenizer` holds `token`: a key that merely looks like one is redacted too, the
        // safe side of the line.
        assert_eq!(secret_key(k), k.contains("token"), "{k}");
    }
}

#[test]
fn credentials_in_strings_and_urls_are_removed_and_the_rest_kept() {
    let mut v = serde_json::json!({
        "a": "Bearer abc.def",
        "b": "basic dXNlcjpwYXNz",
        "c": "https://user:pass@example.test:8443/path?q=1",
        "d": "https://example.test/path?email=a@b.test",
        "e": ["ok", {"Token": {"nested": 1}}],
        "f": "plain text with an @ sign",
        "g": null,
    });
    let n = redact(&mut v);
    assert_eq!(n, 4);
    assert_eq!(v["a"], REDACTED);
    assert_eq!(v["b"], REDACTED);
    assert_eq!(v["c"], "https://[redacted]@example.test:8443/path?q=1");
    assert_eq!(v["d"], "https://example.test/path?email=a@b.test");
    assert_eq!(v["e"], serde_json::json!(["ok", {"Token": REDACTED}]));
    assert_eq!(v["f"], "plain text with an @ sign");
    assert_eq!(v["g"], Value::Null);
}

#[test]
fn a_deeply_nested_payload_is_redacted_without_recursion() {
    let mut v = serde_json::json!({"password": "x"});
    for _ in 0..100_000 {
        v = Value::Array(vec![v]);
    }
    assert_eq!(redact(&mut v), 1);
    // Dropped iteratively too: serde_json's Drop of a deep value recurses.
    let mut stack = vec![v];
    while let Some(mut x) = stack.pop() {
        if let Value::Array(items) = &mut x {
            stack.append(items);
        }
    }
}

#[test]
fn a_recorded_line_reads_back_as_its_sender_at_its_moment() {
    let payload = serde_json::json!({"alerts": [{"labels": {"alertname": "A"}, "status": "firing"}], "version": "4", "status": "firing", "receiver": "r", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "groupKey": "k"});
    let text = line(Source::Alertmanager, at(), payload);
    let alerts = alerts_of(text.as_bytes(), None, None).unwrap_or_default();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].source(), Source::Alertmanager);
    assert_eq!(alerts[0].received_at(), at());
    // What the caller gives wins over what was recorded.
    let later = at() + jiff::SignedDuration::from_hours(1);
    let again = alerts_of(text.as_bytes(), Some(Source::Generic), Some(later)).unwrap_or_default();
    assert_eq!(again[0].source(), Source::Generic);
    assert_eq!(again[0].received_at(), later);
}

#[test]
fn a_plain_payload_and_broken_lines() {
    let plain = alerts_of(br#"{"sev": "high"}"#, None, Some(at())).unwrap_or_default();
    assert_eq!(plain.len(), 1);
    assert!(alerts_of(b"{not json", None, None).is_err());
    let unknown = alerts_of(
        br#"{"@recorded": {"source": "nagios"}, "payload": {}}"#,
        None,
        None,
    );
    assert!(unknown.is_err_and(|e| e.contains("nagios")));
    let bad_time = alerts_of(
        br#"{"@recorded": {"at": "yesterday"}, "payload": {}}"#,
        None,
        None,
    );
    assert!(bad_time.is_err_and(|e| e.contains("`at`")));
    // An object that merely has the key is a payload if it has more keys.
    let other = alerts_of(br#"{"@recorded": 1, "payload": 2, "x": 3}"#, None, None);
    assert!(other.is_ok());
}

#[test]
fn a_folder_is_read_in_the_order_written_and_long_lines_are_skipped_not_held() {
    let dir = std::env::temp_dir().join(format!("switchyard-recording-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_default();
    let write = |n: u64, text: &str| std::fs::write(dir.join(file_name(n)), text);
    let mut big = String::from("{\"x\": \"");
    big.push_str(&"a".repeat(MAX_LINE_BYTES as usize + 10));
    big.push_str("\"}\n");
    assert!(write(10, "{\"n\": 3}\n").is_ok());
    assert!(write(9, &format!("{{\"n\": 1}}\n\n{big}{{\"n\": 2}}\n")).is_ok());
    assert!(std::fs::write(dir.join("notes.txt"), "not read").is_ok());
    let mut seen = Vec::new();
    let mut errors = Vec::new();
    let read = read(&dir, None, Some(at()), |file, line, alerts| {
        match alerts {
            Ok(a) => seen.push((
                file_number(&file.file_name().unwrap_or_default().to_string_lossy()),
                line,
                a[0].body()["n"].clone(),
            )),
            Err(e) => errors.push(e.to_string()),
        }
        Ok(())
    });
    assert!(read.is_ok());
    assert_eq!(
        seen,
        [
            (Some(9), 1, serde_json::json!(1)),
            (Some(9), 4, serde_json::json!(2)),
            (Some(10), 1, serde_json::json!(3)),
        ]
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains(":3: a line is larger than 16 MiB"),
        "{errors:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_payload_is_written_as_it_came_only_when_it_holds_nothing_to_redact() {
    let plain = br#"{"alertId":"a1","status":"ALARM","labels":{"team":"db"},"n":[1,2.5,null]}"#;
    let fast = line_from_json(Source::Yandex, at(), plain).unwrap_or_default();
    let careful = line(
        Source::Yandex,
        at(),
        serde_json::from_slice(plain).unwrap_or_default(),
    );
    let parsed = |s: &str| serde_json::from_str::<Value>(s).unwrap_or_default();
    assert_eq!(parsed(&fast), parsed(&careful));
    // Everything the careful way would redact sends the payload the careful way.
    for raw in [
        r#"{"p_a-s.sword": "x"}"#,
        r#"{"API KEY": "x"}"#,
        r#"{"h": "bearer abc"}"#,
        r#"{"h": "Basic abc"}"#,
        r#"{"u": "https://u:p@h/"}"#,
        r#"{"\u0070assword": "x"}"#,
        "{\"a\":\n1}",
        r#"{"SessionID": 1}"#,
    ] {
        assert_eq!(
            line_from_json(Source::Generic, at(), raw.as_bytes()),
            None,
            "{raw}"
        );
    }
}

#[test]
fn whatever_the_fast_way_writes_holds_nothing_the_careful_way_would_redact() {
    // Keys and values built from pieces of secret words, separators and escapes.
    let pieces = [
        "pass", "word", "tok", "en", "_", "-", ".", " ", "sig", "nature", "api", "key", "x",
        "Bearer ", "@", "cookie", "se", "cret", "ID",
    ];
    let mut seed = 7u64;
    let mut next = || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) as usize
    };
    for _ in 0..5_000 {
        let mut word = || {
            let n = 1 + next() % 4;
            (0..n)
                .map(|_| pieces[next() % pieces.len()])
                .collect::<String>()
        };
        let payload = serde_json::json!({ word(): word(), "nested": { word(): [word()] } });
        let raw = payload.to_string();
        if line_from_json(Source::Generic, at(), raw.as_bytes()).is_some() {
            let mut v = payload.clone();
            assert_eq!(redact(&mut v), 0, "{raw}");
        }
    }
}
