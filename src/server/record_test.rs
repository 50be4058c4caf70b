use super::*;

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-record-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn wait_written(r: &Recorder, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.stats.written.get() + r.stats.dropped.get() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_recording_rotates_within_its_cap_and_keeps_the_newest() {
    let dir = folder("rotate");
    let cfg = RecordConfig {
        enabled: true,
        dir: None,
        max_mb: 1,
        files: 4,
        one_in: 1,
    };
    let r = Recorder::start(&cfg, dir.clone()).unwrap_or_else(|e| panic!("{e}"));
    let at = jiff::Timestamp::UNIX_EPOCH;
    // 2,000 bodies of about 1 KiB: about twice the cap.
    for i in 0..2_000 {
        let body = Bytes::from(format!("{{\"n\": {i}, \"pad\": \"{}\"}}", "x".repeat(1000)));
        r.offer(&body, None, Source::Generic, at);
        if i % 100 == 0 {
            wait_written(&r, i + 1);
        }
    }
    wait_written(&r, 2_000);
    drop(r);
    std::thread::sleep(Duration::from_millis(100));
    let files = crate::recording::files(&dir).unwrap_or_default();
    assert_eq!(files.len(), 4, "{files:?}");
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    assert!(total <= 1 << 20, "{total} bytes on disk");
    let mut last = None;
    let mut count = 0;
    let read = crate::recording::read(&dir, None, None, |_, _, alerts| {
        let alerts = alerts?;
        last = alerts[0].body().get("n").cloned();
        count += 1;
        Ok(())
    });
    assert!(read.is_ok());
    assert_eq!(last, Some(serde_json::json!(1999)), "the newest is kept");
    assert!(
        count > 700,
        "at least (files-1)/files of the cap holds data: {count}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_in_n_and_a_restart_starts_a_new_file_and_secrets_are_not_written() {
    let dir = folder("sample");
    let cfg = RecordConfig {
        one_in: 3,
        ..RecordConfig::default()
    };
    let at = jiff::Timestamp::UNIX_EPOCH;
    for round in 0..2 {
        let r = Recorder::start(&cfg, dir.clone()).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..9 {
            let body = Bytes::from(format!(
                "signature=s3cr3t&n={i}&url=https%3A%2F%2Fu%3Ap%40example.test%2F"
            ));
            let form = HeaderValue::from_static("application/x-www-form-urlencoded");
            r.offer(&body, Some(&form), Source::Alibaba, at);
        }
        wait_written(&r, 3);
        assert_eq!(r.stats.written.get(), 3, "round {round}");
        assert_eq!(r.stats.redacted.get(), 6, "round {round}");
    }
    let files = crate::recording::files(&dir).unwrap_or_default();
    assert_eq!(files.len(), 2, "a restart starts a new file: {files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        assert!(!text.contains("s3cr3t") && !text.contains("u:p@"), "{text}");
        assert!(text.contains("\"source\":\"alibaba\""), "{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn settings_out_of_range_and_an_unwritable_folder_are_refused_with_the_key() {
    let bad = |cfg: RecordConfig, key: &str| {
        let e = Recorder::start(&cfg, folder("bad"))
            .err()
            .unwrap_or_default();
        assert!(e.starts_with(key), "{e}");
    };
    bad(
        RecordConfig {
            max_mb: 0,
            ..RecordConfig::default()
        },
        "record.max_mb",
    );
    bad(
        RecordConfig {
            files: 1,
            ..RecordConfig::default()
        },
        "record.files",
    );
    bad(
        RecordConfig {
            one_in: 0,
            ..RecordConfig::default()
        },
        "record.one_in",
    );
    let file = folder("a-file");
    assert!(std::fs::write(&file, "").is_ok());
    let e = Recorder::start(&RecordConfig::default(), file.join("sub"))
        .err()
        .unwrap_or_default();
    assert!(e.starts_with("record.dir: cannot create"), "{e}");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_folder_that_stops_taking_writes_drops_samples_and_counts_them_never_failing_ingest() {
    let dir = folder("gone");
    let cfg = RecordConfig {
        max_mb: 1,
        files: 2,
        ..RecordConfig::default()
    };
    let r = Recorder::start(&cfg, dir.clone()).unwrap_or_else(|e| panic!("{e}"));
    let at = jiff::Timestamp::UNIX_EPOCH;
    let body = Bytes::from(format!("{{\"pad\": \"{}\"}}", "x".repeat(300 << 10)));
    r.offer(&body, None, Source::Generic, at);
    wait_written(&r, 1);
    assert_eq!(r.stats.written.get(), 1);
    // The folder goes (a disk unmounted, a volume lost): the next file cannot start.
    let _ = std::fs::remove_dir_all(&dir);
    for n in 2..=4 {
        r.offer(&body, None, Source::Generic, at);
        wait_written(&r, n);
    }
    assert_eq!(r.stats.written.get(), 1);
    assert_eq!(r.stats.dropped.get(), 3, "each sample dropped and counted");
    // A body larger than one file is never written, whatever the disk.
    let huge = Bytes::from(format!("{{\"pad\": \"{}\"}}", "x".repeat(600 << 10)));
    r.offer(&huge, None, Source::Generic, at);
    wait_written(&r, 5);
    assert_eq!(r.stats.dropped.get(), 4);
}
