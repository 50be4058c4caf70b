//! The built binary: exit codes, output formats, and hostile input.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

use support::fixtures::path as fixture;

fn run(args: &[&str]) -> Output {
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{args:?} took {:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("switchyard-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> &Self {
        std::fs::write(self.0.join(name), contents).unwrap();
        self
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn check_exit_codes() {
    let ok = run(&["check", "rules"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(stderr(&ok).contains("ok: rules:"));

    let bad = TempDir::new("check-bad");
    bad.write(
        "a.rules",
        "target t { url = \"https://x.test\" }\nwhen a = 1 -> post t\nwhen b == 1 -> post u\n",
    );
    let out = run(&["check", bad.path()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("error[E0103]") && err.contains("a.rules:2:8"),
        "{err}"
    );
    assert!(
        err.contains("1 error(s)"),
        "a file stops at its first syntax error: {err}"
    );

    let missing = run(&["check", "does/not/exist"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("does/not/exist"));

    let usage = run(&["check", "--format", "yaml"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn check_reports_every_file_and_warnings() {
    let dir = TempDir::new("check-all");
    dir.write("00-targets.rules", "target alarm_url { url = \"https://x.test\" }\ntarget spare { url = \"https://x.test/s\" }\n")
        .write("10-a.rules", "when x == 1 -> post alarm_ulr\n")
        .write("20-b.rules", "when curValue > \"90\" -> post alarm_url\n");
    let out = run(&["check", dir.path()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let a = err.find("10-a.rules").unwrap();
    let b = err.find("20-b.rules").unwrap();
    assert!(a < b, "sorted by file: {err}");
    assert!(err.contains("did you mean `alarm_url`"));

    let warn = TempDir::new("check-warn");
    warn.write("a.rules", "target t { url = \"https://x.test\" }\ntarget spare { url = \"https://x.test/s\" }\nwhen x == 1 -> post t\n");
    let out = run(&["check", warn.path()]);
    assert_eq!(out.status.code(), Some(0), "warnings do not fail check");
    assert!(stderr(&out).contains("warning[W0203]"));
}

#[test]
fn check_json_format() {
    let dir = TempDir::new("check-json");
    let line = "when name == \"é\" and curValue > \"90\" -> post t";
    dir.write(
        "a.rules",
        format!("target t {{ url = \"https://x.test\" }}\n{line}\n"),
    );
    let column = line[..line.find("\"90\"").unwrap()].chars().count() as u64 + 1;
    let out = run(&["check", dir.path(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let d = &v[0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["code"], "E0301");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(2), Some(column)),
        "columns count characters: {d}"
    );
    assert!(d["file"].as_str().unwrap().ends_with("a.rules"));
    assert!(d["help"][0].as_str().unwrap().contains("curValue > 90"));
    assert_eq!(d["labels"].as_array().unwrap().len(), 2);
}

#[test]
fn route_prints_one_json_line() {
    let out = run(&[
        "route",
        "--rules",
        "rules",
        fixture("yandex/function-alarm.json").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "{\"targets\":[\"alarm_url\"],\"rules\":[\"yandex alarm\"],\"dropped\":false,\"unrouted\":false}\n"
    );

    let out = run(&[
        "route",
        "--rules",
        "rules",
        "--source",
        "alibaba",
        fixture("alibaba/metric-alarm.form.txt").to_str().unwrap(),
    ]);
    assert_eq!(
        stdout(&out),
        "{\"targets\":[\"ecs_critical\",\"web_team_chat\"],\"rules\":[\"ecs cpu critical\",\"web team instances\"],\"dropped\":false,\"unrouted\":false}\n"
    );

    let out = run(&[
        "route",
        "--rules",
        "rules",
        fixture("alibaba/metric-ok.form.txt").to_str().unwrap(),
    ]);
    assert!(
        stdout(&out).contains("\"targets\":[\"ecs_recovered\"]"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn route_reads_stdin_and_reports_unrouted() {
    let mut child = Command::new(BIN)
        .args(["route", "--rules", "rules", "-"])
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"hello": "world"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        stdout(&out),
        "{\"targets\":[],\"rules\":[],\"dropped\":false,\"unrouted\":true}\n"
    );
}

#[test]
fn route_refuses_bad_alerts_cleanly() {
    let dir = TempDir::new("route-bad");
    dir.write("bad.json", "{\"not json");
    let out = run(&[
        "route",
        "--rules",
        "rules",
        &format!("{}/bad.json", dir.path()),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not valid JSON"), "{}", stderr(&out));

    let out = run(&["route", "--rules", "rules", "--source", "nope", "x.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid value 'nope' for '--source"));
    assert!(
        stderr(&out).contains(
            "possible values: alibaba, yandex, alertmanager, prometheus, grafana, generic"
        ),
        "{}",
        stderr(&out)
    );

    dir.write("array.json", "[1, 2]");
    let out = run(&[
        "route",
        "--rules",
        "rules",
        "--source",
        "alibaba",
        &format!("{}/array.json", dir.path()),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("must be a JSON object"),
        "{}",
        stderr(&out)
    );

    // JSON nested 100,000 deep is refused by the parser's depth limit, not the stack.
    dir.write("deep.json", "[".repeat(100_000));
    let out = run(&[
        "route",
        "--rules",
        "rules",
        &format!("{}/deep.json", dir.path()),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn test_command_reports_failures_with_trace() {
    let ok = run(&["test", "rules"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("0 failed"));

    let dir = TempDir::new("test-fail");
    dir.write(
        "a.rules",
        r#"target alarm_url { url = "https://x.test/a" }
target ok_url { url = "https://x.test/o" }
when status == "ALARM" -> post alarm_url
test "wrong expectation" {
    alert { "status": "ALARM" }
    expect post ok_url
}
test "right expectation" {
    alert { "status": "ALARM" }
    expect post alarm_url
}
"#,
    );
    let out = run(&["test", dir.path()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("test wrong expectation ... FAILED"), "{text}");
    assert!(
        text.contains("expected a post to `ok_url`, but the alert was posted to: alarm_url"),
        "{text}"
    );
    assert!(
        text.contains("status == \"ALARM\"  (saw \"ALARM\")"),
        "the failure shows the trace: {text}"
    );
    assert!(text.contains("test right expectation ... ok"));
    assert!(text.contains("1 passed; 1 failed"));
}

#[test]
fn explain_text_and_json() {
    let f = fixture("alibaba/metric-alarm.form.txt");
    let out = run(&["explain", "--rules", "rules", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("rule ecs cpu critical (20-alibaba.rules:5): matched -> post ecs_critical"),
        "{text}"
    );
    assert!(text.contains("curValue >= 90  (saw \"93.75\")"), "{text}");
    assert!(
        text.contains("decision: post ecs_critical, web_team_chat"),
        "{text}"
    );

    let out = run(&["explain", "--rules", "rules", "--json", f.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["metadata"]["source"], "alibaba");
    assert_eq!(v["decision"]["targets"][0], "ecs_critical");
}

#[test]
fn route_and_explain_at_a_moment_with_the_rules_memory() {
    let dir = TempDir::new("at");
    dir.write(
        "alerts.jsonl",
        concat!(
            r#"[{"labels": {"alertname": "DiskFilling", "severity": "warning"}}]"#,
            "\n",
            r#"[{"labels": {"alertname": "DiskFilling", "severity": "warning"}}]"#,
            "\n"
        ),
    );
    let alerts = format!("{}/alerts.jsonl", dir.path());
    let route = |at: &str| {
        let out = run(&[
            "route",
            "--rules",
            "rules",
            "--source",
            "prometheus",
            "--at",
            at,
            &alerts,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    // Friday 17:30 in Berlin: inside `office_hours`; route has no memory, so both go.
    let inside = route("2026-01-09T17:30:00+01:00");
    assert_eq!(
        inside.matches(r#""targets":["ops_chat"]"#).count(),
        2,
        "{inside}"
    );
    // Saturday: outside.
    let outside = route("2026-01-10T10:00:00+01:00");
    assert_eq!(
        outside.matches(r#""unrouted":true"#).count(),
        2,
        "{outside}"
    );

    // Explain sends the alerts through the rules' memory in order: the second is a duplicate.
    let out = run(&[
        "explain",
        "--rules",
        "rules",
        "--source",
        "prometheus",
        "--at",
        "2026-01-09T17:30:00+01:00",
        &alerts,
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("true   during office_hours  (saw \"Fri 2026-01-09 17:30 Europe/Berlin\")"),
        "{text}"
    );
    assert!(
        text.contains("memory: rule \"warnings in office hours\" -> ops_chat: duplicate of delivery 1 at 2026-01-09T16:30:00Z for @id="),
        "{text}"
    );
    assert!(text.contains(", window until the resolution"), "{text}");
    assert_eq!(text.matches("decision: post ops_chat").count(), 1, "{text}");

    let out = run(&["route", "--rules", "rules", "--at", "yesterday", &alerts]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--at"), "{}", stderr(&out));
}

#[test]
fn help_for_each_command() {
    for cmd in ["check", "route", "test", "explain", "fmt"] {
        let out = run(&[cmd, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        assert!(stdout(&out).contains("Usage: switchyard"), "{cmd}");
    }
    // Found by a user: the help said only `serve` sends a retried dead letter.
    let out = run(&["dead-letters", "retry", "--help"]);
    assert!(
        stdout(&out).contains("the next `serve` or `send`"),
        "{}",
        stdout(&out)
    );
    // Found by a user: `--source` help did not list the senders.
    for cmd in ["route", "explain", "send"] {
        let out = run(&[cmd, "--help"]);
        // Help wraps at the terminal's width: compare the words, not the lines.
        let words = stdout(&out)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            words.contains(
                "[possible values: alibaba, yandex, alertmanager, prometheus, grafana, generic]"
            ),
            "{cmd}: {words}"
        );
    }
}

/// Hostile rules files: each gets a diagnostic with a position or a clean refusal, in
/// bounded time, never a panic or a crash.
#[test]
fn hostile_rules_files() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
            "E0001",
        ),
        (
            "invalid-utf8",
            b"when a == \"\xc3\x28\" -> post t\n".to_vec(),
            "E0001",
        ),
        ("nul-bytes", b"when a\0 == 1 -> post t\n".to_vec(), "E0103"),
        (
            "long-line",
            format!(
                "when a == \"{}\" and -> post t\n",
                "x".repeat(3 * 1024 * 1024)
            )
            .into_bytes(),
            "E0101",
        ),
        ("ten-mb", vec![b'#'; 10 * 1024 * 1024], "E0001"),
        (
            "parens",
            format!(
                "when {}a == 1{} -> post t",
                "(".repeat(200_000),
                ")".repeat(200_000)
            )
            .into_bytes(),
            "E0105",
        ),
        (
            "nots",
            format!("when {}a == 1 -> post t", "not ".repeat(200_000)).into_bytes(),
            "E0105",
        ),
        (
            "ands",
            format!(
                "target t {{ url = \"https://x.test\" }}\nwhen a == 1{} -> post t",
                " and a == 1".repeat(100_000)
            )
            .into_bytes(),
            "ok",
        ),
        (
            "json-nesting",
            format!("test \"x\" {{ alert {} }}", "{\"a\": ".repeat(100_000)).into_bytes(),
            "E0105",
        ),
        (
            "huge-regex",
            b"target t { url = \"https://x.test\" }\nwhen a =~ /(\\w{100}){100}/ -> post t\n"
                .to_vec(),
            "E0303",
        ),
    ];
    for (name, bytes, expect) in cases {
        let dir = TempDir::new(&format!("hostile-{name}"));
        dir.write("a.rules", &bytes);
        let out = run(&["check", dir.path()]);
        let err = stderr(&out);
        if expect == "ok" {
            assert_eq!(
                out.status.code(),
                Some(0),
                "{name}: {}",
                &err[..err.len().min(2000)]
            );
        } else {
            assert_eq!(
                out.status.code(),
                Some(1),
                "{name}: {}",
                &err[..err.len().min(2000)]
            );
            assert!(
                err.contains(&format!("[{expect}]")),
                "{name}: {}",
                &err[..err.len().min(2000)]
            );
            assert!(
                err.len() < 20_000,
                "{name}: the report stays short ({} bytes)",
                err.len()
            );
        }
    }
}

#[test]
fn thousands_of_files() {
    let dir = TempDir::new("many-files");
    dir.write(
        "0000-targets.rules",
        "target t { url = \"https://x.test\" }\n",
    );
    for i in 1..3000 {
        dir.write(
            &format!("{i:04}.rules"),
            format!("rule \"r{i}\" when n == {i} -> post t\n"),
        );
    }
    let out = run(&["check", dir.path()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("2999 rules"));
}

/// Found by a user: `send` exited 0 when every delivery became a dead letter, so a script
/// could not tell "delivered" from "given up". That is now exit 4.
#[test]
fn send_exits_4_when_deliveries_became_dead_letters() {
    let dir = TempDir::new("send-dead");
    std::fs::create_dir_all(dir.0.join("rules")).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    dir.write(
        "rules/r.rules",
        format!(
            r#"target t {{ url = "http://{closed}/x" retries = 0 }}
               when exists(status) -> post t"#
        ),
    )
    .write("alert.json", r#"{"status": "ALARM"}"#);
    let rules = format!("{}/rules", dir.path());
    let data = format!("{}/data", dir.path());
    let alert = format!("{}/alert.json", dir.path());
    let out = run(&[
        "send", "--rules", &rules, "--data", &data, "--wait", "20", &alert,
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pending: 0, dead-lettered now: 1"),
        "{}",
        stderr(&out)
    );
    // A later run with nothing new to send has nothing dead-lettered in it: exit 0.
    let out = run(&["send", "--rules", &rules, "--data", &data, "--wait", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Found by a user: `explain --json | head -c 600` panicked on the closed pipe. A reader
/// that goes away ends the command quietly, with exit 0, as cargo and ripgrep do.
#[test]
fn explain_into_a_closed_pipe_exits_quietly() {
    use std::io::Read as _;
    // 2,000 alerts: far more output than a pipe holds, so the writes meet the closed end.
    let alerts: Vec<serde_json::Value> = (0..2_000)
        .map(|i| serde_json::json!({"labels": {"alertname": format!("a{i}"), "severity": "critical"}}))
        .collect();
    let dir = TempDir::new("pipe");
    dir.write("alerts.json", serde_json::to_vec(&alerts).unwrap());
    let file = format!("{}/alerts.json", dir.path());
    for json in [true, false] {
        let mut args = vec!["explain", "--rules", "rules", &file];
        if json {
            args.push("--json");
        }
        let mut child = Command::new(BIN)
            .args(&args)
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut head = [0u8; 600];
        child.stdout.take().unwrap().read_exact(&mut head).unwrap();
        // The read end is dropped here: the rest of the output meets a closed pipe.
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "json={json}: {err}");
        assert!(err.is_empty(), "json={json}: nothing on stderr, got: {err}");
    }
}

/// `explain --json` prints a condition with the parentheses its precedence needs.
#[test]
fn explain_json_prints_conditions_with_their_parentheses() {
    let dir = TempDir::new("explain-parens");
    dir.write(
        "a.json",
        r#"{"alertId":"a1","alertName":"cpu","folderId":"f1","status":"ALARM"}"#,
    );
    let file = format!("{}/a.json", dir.path());
    let out = run(&[
        "explain", "--rules", "rules", "--source", "yandex", "--json", &file,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        v["rules"][0]["condition"]["text"],
        r#"@source == "yandex" and (status == "ALARM" or alertStatus == "ALARM")"#
    );
}

/// `switchyard fmt`: formats in place with the comments kept, settles in one pass, and
/// `--check` says which files would change with exit 1 (0 when none would); a file that
/// does not parse is left as it is, with its diagnostic and exit 1.
#[test]
fn fmt_formats_in_place_and_check_lists_what_would_change() {
    let dir = std::env::temp_dir().join(format!("switchyard-fmt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("team")).unwrap();
    let messy =
        "# pages\ntarget  pager{url=\"http://127.0.0.1:1/\"}\nwhen cpu>90->post pager # hot\n";
    let tidy = "# pages\ntarget pager {\n    url = \"http://127.0.0.1:1/\"\n}\n\nwhen cpu > 90 -> post pager  # hot\n";
    std::fs::write(dir.join("a.rules"), messy).unwrap();
    std::fs::write(dir.join("team").join("b.rules"), tidy).unwrap();
    std::fs::write(dir.join("notes.txt"), "not rules").unwrap();
    let d = dir.to_str().unwrap();

    let check = run(&["fmt", "--check", d]);
    assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
    assert_eq!(stdout(&check).trim(), dir.join("a.rules").to_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.join("a.rules")).unwrap(),
        messy,
        "--check changes nothing"
    );

    let done = run(&["fmt", d]);
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    assert_eq!(std::fs::read_to_string(dir.join("a.rules")).unwrap(), tidy);
    assert_eq!(run(&["fmt", "--check", d]).status.code(), Some(0));
    assert_eq!(run(&["check", d]).status.code(), Some(0), "still loads");

    std::fs::write(dir.join("c.rules"), "when cpu = 1 -> stop\n").unwrap();
    let broken = run(&["fmt", dir.join("c.rules").to_str().unwrap()]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        stderr(&broken).contains("E0103") && stderr(&broken).contains("does not parse"),
        "{}",
        stderr(&broken)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("c.rules")).unwrap(),
        "when cpu = 1 -> stop\n"
    );
    let missing = run(&["fmt", dir.join("nope.rules").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn diff_groups_the_changed_decisions_of_a_recording() {
    let corpus = root().join("tests/diff");
    let (old, new, recorded) = (
        corpus.join("old"),
        corpus.join("new"),
        corpus.join("recorded.jsonl"),
    );
    let args = |a: &Path, b: &Path, format: &str| {
        run(&[
            "diff",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--alerts",
            recorded.to_str().unwrap(),
            "--format",
            format,
        ])
    };

    // The known changes, most alerts first.
    let out = args(&old, &new, "json");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let diff: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (diff["alerts"].as_u64(), diff["changed"].as_u64()),
        (Some(16), Some(9))
    );
    let changes: Vec<(String, String, u64, Vec<u64>)> = diff["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["before"].as_str().unwrap().to_owned(),
                c["after"].as_str().unwrap().to_owned(),
                c["count"].as_u64().unwrap(),
                c["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["line"].as_u64().unwrap())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("pager".into(), "chat".into(), 4, vec![1, 2, 3, 4]),
            ("pager".into(), "pager".into(), 3, vec![5, 6, 7]),
            ("dropped".into(), "unrouted".into(), 2, vec![13, 14]),
        ]
    );
    assert_eq!(
        diff["changes"][0]["rules_after"],
        serde_json::json!(["db critical to chat"])
    );
    assert_eq!(
        diff["changes"][0]["rules_before"],
        serde_json::json!(["critical pages"])
    );
    assert_eq!(
        diff["changes"][1]["sent_differently"],
        serde_json::json!(["pager"])
    );
    assert_eq!(diff["changes"][2]["alerts"][0]["name"], "Watchdog");

    // The text form says the same in lines a reviewer reads.
    let out = args(&old, &new, "text");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for line in [
        "4 alerts: pager -> chat, now by `db critical to chat`; no longer by `critical pages`",
        "3 alerts: pager -> pager (sent differently: pager)",
        "2 alerts: dropped -> unrouted, no longer by `drop watchdog`",
        "9 of 16 alerts change (3 ways)",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }
    assert!(text.contains("    line 1 (prometheus, @id "), "{text}");
    assert!(text.contains(", @name DbDown0)"), "{text}");

    // No change: exit 0.
    let out = args(&old, &old, "text");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "no change: all 16 alerts are decided as before\n"
    );

    // A folder that does not load, and a line that is not JSON: exit 2, with the place.
    let broken = TempDir::new("diff-broken");
    broken.write("a.rules", "when x = 1 -> post nowhere\n");
    let out = args(&old, &broken.0, "text");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("E0103"), "{}", stderr(&out));
    let bad = TempDir::new("diff-bad-line");
    bad.write("alerts.jsonl", "[{\"labels\": {}}]\n{not json\n");
    let out = run(&[
        "diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--alerts",
        bad.0.join("alerts.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("alerts.jsonl:2: not a JSON document"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn test_lists_what_no_test_exercises_and_writes_junit() {
    let dir = TempDir::new("coverage");
    dir.write(
        "a.rules",
        "target pager { url = \"https://example.test/p\" }\n\
         rule \"covered\" when sev == \"high\" -> post pager\n\
         rule \"never tested\" when sev == \"low\" -> post pager\n\
         when sev == \"mid\" -> post pager\n\
         test \"high pages\" { alert { \"sev\": \"high\" } expect post pager }\n\
         test \"mid <&> \\\"stays\\\" quiet\" { alert { \"sev\": \"mid\" } expect no post pager }\n",
    );
    let folder = dir.0.to_str().unwrap();

    let out = run(&["test", folder, "--coverage"]);
    assert_eq!(out.status.code(), Some(1), "a test fails: {}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("\ncoverage: 2 of 3 rules are exercised by a test\n"),
        "{text}"
    );
    assert!(
        text.contains("  not exercised: `never tested` (a.rules:3)\n"),
        "{text}"
    );

    let out = run(&["test", folder, "--format", "json", "--coverage"]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (report["passed"].as_u64(), report["failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(report["uncovered"][0]["name"], "never tested");
    assert_eq!(
        report["tests"][1]["rules"],
        serde_json::json!(["a.rules:4"])
    );

    // JUnit XML: the elements and attributes CI systems require, well-formed with the
    // test's name escaped.
    let out = run(&["test", folder, "--format", "junit"]);
    assert_eq!(out.status.code(), Some(1));
    let xml = stdout(&out);
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    assert_eq!(suites.len(), 1);
    let suite = suites[0];
    assert_eq!(suite.tag_name().name(), "testsuite");
    for (attr, value) in [
        ("name", folder),
        ("tests", "2"),
        ("failures", "1"),
        ("errors", "0"),
    ] {
        assert_eq!(suite.attribute(attr), Some(value), "{attr} in\n{xml}");
    }
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0].attribute("name"), Some("high pages"));
    assert_eq!(cases[0].attribute("classname"), Some("a.rules"));
    assert!(
        cases[0].children().all(|n| !n.is_element()),
        "a passing case is empty"
    );
    assert_eq!(cases[1].attribute("name"), Some("mid <&> \"stays\" quiet"));
    let failure = cases[1]
        .children()
        .find(|n| n.has_tag_name("failure"))
        .expect("the failing case has a <failure>");
    assert!(
        failure.attribute("message").unwrap().contains("pager"),
        "{xml}"
    );
    assert!(
        failure.text().unwrap().contains("a.rules:4"),
        "the trace is in the failure: {xml}"
    );
}

#[test]
fn test_coverage_counts_what_recorded_traffic_makes_fire() {
    let dir = TempDir::new("traffic");
    dir.write(
        "a.rules",
        "target pager { url = \"https://example.test/p\" }\n\
         rule \"high\" when sev == \"high\" -> post pager\n\
         rule \"low\" when sev == \"low\" -> post pager\n\
         rule \"never\" when sev == \"never\" -> post pager\n",
    );
    let recorded = dir.0.join("recorded");
    std::fs::create_dir_all(&recorded).unwrap();
    // The server's line format, a plain payload, and a torn last line (skipped, counted).
    std::fs::write(
        recorded.join("recorded-0000000001.jsonl"),
        "{\"@recorded\":{\"source\":\"generic\",\"at\":\"2026-11-30T10:00:00Z\"},\"payload\":{\"sev\":\"high\"}}\n\
         {\"sev\": \"high\"}\n",
    )
    .unwrap();
    std::fs::write(
        recorded.join("recorded-0000000002.jsonl"),
        "{\"sev\": \"low\"}\n{\"sev\": \"lo",
    )
    .unwrap();
    let folder = dir.0.to_str().unwrap();
    let alerts = recorded.to_str().unwrap();

    let out = run(&["test", folder, "--coverage", "--alerts", alerts]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("traffic: 2 of 3 rules fire for the 3 recorded alerts\n  no recorded alert fires: never\n  1 line(s) skipped: not alerts\n"),
        "{text}"
    );
    let out = run(&[
        "test",
        folder,
        "--coverage",
        "--alerts",
        alerts,
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        report["traffic"],
        serde_json::json!({"alerts": 3, "hits": [["high", 2], ["low", 1], ["never", 0]], "skipped": 1})
    );
    // `--alerts` needs `--coverage`.
    let out = run(&["test", folder, "--alerts", alerts]);
    assert_eq!(out.status.code(), Some(2));
}
