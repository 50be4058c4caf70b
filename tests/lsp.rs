//! `switchyard lsp` spoken to as an editor speaks to it: JSON-RPC over the child's standard
//! input and output. Every wait is bounded; the child is killed by the test when done.

// A failed unwrap in a test is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The longest any answer may take, even on a loaded machine.
const WAIT: Duration = Duration::from_secs(60);

struct Client {
    child: Child,
    stdin: ChildStdin,
    incoming: Receiver<Value>,
    /// Notifications read while waiting for something else.
    notes: Vec<Value>,
    next_id: i64,
}

impl Client {
    fn start(dir: &Path) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("lsp")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, incoming) = channel();
        std::thread::spawn(move || {
            let mut out = BufReader::new(stdout);
            loop {
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if out.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        length = v.parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                if out.read_exact(&mut body).is_err() {
                    return;
                }
                if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                    return;
                }
            }
        });
        let mut client = Client {
            child,
            stdin,
            incoming,
            notes: Vec::new(),
            next_id: 1,
        };
        let init = client.request(
            "initialize",
            json!({"processId": null, "rootUri": null, "capabilities": {}}),
        );
        assert_eq!(init["capabilities"]["positionEncoding"], "utf-16", "{init}");
        client.notify("initialized", json!({}));
        client
    }

    fn send(&mut self, msg: Value) {
        let body = msg.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    fn next(&mut self, deadline: Instant) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.incoming.recv_timeout(left) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => panic!("no message from the server in {WAIT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the server closed its output"),
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let deadline = Instant::now() + WAIT;
        loop {
            let msg = self.next(deadline);
            if msg["id"] == id {
                assert!(msg.get("error").is_none(), "{method}: {msg}");
                return msg["result"].clone();
            }
            self.notes.push(msg);
        }
    }

    /// The next diagnostics published for `uri` that satisfy `wanted`; what is published
    /// for other files is kept for later.
    fn diagnostics(&mut self, uri: &str, wanted: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        let mut kept = Vec::new();
        let mut earlier = std::mem::take(&mut self.notes).into_iter();
        loop {
            let msg = match earlier.next() {
                Some(m) => m,
                None => self.next(deadline),
            };
            if msg["method"] == "textDocument/publishDiagnostics" && msg["params"]["uri"] == uri {
                let ds = msg["params"]["diagnostics"].as_array().unwrap().clone();
                if wanted(&ds) {
                    kept.extend(earlier);
                    self.notes = kept;
                    return ds;
                }
                seen.push(ds);
            } else {
                kept.push(msg);
            }
            assert!(
                Instant::now() < deadline,
                "no wanted diagnostics for {uri}; seen {seen:?}"
            );
        }
    }

    fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "switchyard", "version": 1, "text": text}}),
        );
    }

    fn change(&mut self, uri: &str, version: i64, changes: Value) {
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": changes}),
        );
    }

    fn at(&mut self, method: &str, uri: &str, line: usize, character: usize) -> Value {
        let mut params = json!({
            "textDocument": {"uri": uri},
            "position": {"line": line, "character": character},
        });
        if method == "textDocument/references" {
            params["context"] = json!({"includeDeclaration": true});
        }
        self.request(method, params)
    }

    fn stop(mut self) {
        self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "lsp exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("lsp did not exit after `exit`");
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// UTF-16 code units of a line's text up to `needle`: the column an editor counts.
fn utf16_col(line: &str, needle: &str) -> usize {
    line[..line.find(needle).unwrap()].encode_utf16().count()
}

fn temp_folder(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-lsp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const TARGETS: &str = "target pager { url = \"https://example.test/pager\" }\ntarget chat { url = \"https://example.test/chat\" }\n";

#[test]
fn a_broken_file_is_diagnosed_fixed_by_its_quick_fixes_and_understood() {
    let dir = temp_folder("edit");
    std::fs::write(dir.join("00-targets.rules"), TARGETS).unwrap();
    let targets = uri(&dir.join("00-targets.rules"));
    let cloud = uri(&dir.join("cloud.rules"));
    let line =
        "rule \"cpu 🔥\" when @source == \"alibaba\" and alertState = \"ALARM\" -> post pagr";
    let mut lsp = Client::start(&dir);
    lsp.open(&cloud, &format!("{line}\n"));

    // The syntax error, with its code, its exact range (UTF-16 columns, past the emoji) and
    // its help.
    let ds = lsp.diagnostics(&cloud, |ds| !ds.is_empty());
    assert_eq!(ds.len(), 1, "{ds:?}");
    let d = &ds[0];
    assert_eq!(d["code"], "E0103");
    assert_eq!(d["severity"], 1);
    let col = utf16_col(line, " = ") + 1;
    assert_eq!(
        d["range"],
        json!({"start": {"line": 0, "character": col}, "end": {"line": 0, "character": col + 1}})
    );
    assert!(
        d["message"].as_str().unwrap().contains("help: use `==`"),
        "{d}"
    );

    // Hover on the error explains its code.
    let hover = lsp.at("textDocument/hover", &cloud, 0, col);
    assert!(
        hover["contents"]["value"]
            .as_str()
            .unwrap()
            .contains("E0103"),
        "{hover}"
    );

    // The quick fix: `==`, applied as the editor applies it.
    let actions = lsp.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": cloud}, "range": d["range"], "context": {"diagnostics": [d]}}),
    );
    let action = &actions[0];
    assert_eq!(action["title"], "replace with `==`", "{actions}");
    assert_eq!(action["kind"], "quickfix");
    let edit = &action["edit"]["changes"][&cloud][0];
    assert_eq!(edit["newText"], "==");
    lsp.change(&cloud, 2, json!([{"range": edit["range"], "text": "=="}]));

    // Now the unknown target, with the fix the folder's other file offers.
    let ds = lsp.diagnostics(&cloud, |ds| ds.iter().any(|d| d["code"] == "E0201"));
    let d = ds.iter().find(|d| d["code"] == "E0201").unwrap().clone();
    let actions = lsp.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": cloud}, "range": d["range"], "context": {"diagnostics": [d]}}),
    );
    assert_eq!(actions[0]["title"], "replace with `pager`", "{actions}");
    let edit = actions[0]["edit"]["changes"][&cloud][0].clone();
    lsp.change(
        &cloud,
        3,
        json!([{"range": edit["range"], "text": edit["newText"]}]),
    );
    lsp.diagnostics(&cloud, |ds| ds.is_empty());
    // The folder loads: the warning for the target no rule posts to shows in the file
    // that declares it, and goes when this file posts to it.
    let unused = lsp.diagnostics(&targets, |ds| ds.iter().any(|d| d["code"] == "W0203"));
    assert_eq!(
        unused[0]["range"]["start"],
        json!({"line": 1, "character": 7})
    );
    let fixed = line.replace(" = ", " == ").replace("pagr", "pager");
    let end = json!({"line": 1, "character": 0});
    lsp.change(&cloud, 4, json!([{"range": {"start": end, "end": end}, "text": "when metricName == \"m\" -> post chat\n"}]));
    lsp.diagnostics(&targets, |ds| ds.is_empty());

    // Hover: the target's declaration, the field's meaning for Alibaba, the operator.
    let hover = lsp.at(
        "textDocument/hover",
        &cloud,
        0,
        utf16_col(&fixed, "pager") + 2,
    );
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(
        text.contains("url = \"https://example.test/pager\""),
        "{text}"
    );
    assert!(text.contains("00-targets.rules:1"), "{text}");
    let hover = lsp.at(
        "textDocument/hover",
        &cloud,
        0,
        utf16_col(&fixed, "alertState") + 1,
    );
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(
        text.contains("**`alertState`** (alibaba)") && text.contains("`ALARM`"),
        "{text}"
    );
    let hover = lsp.at(
        "textDocument/hover",
        &cloud,
        0,
        utf16_col(&fixed, "== \"ALARM") + 1,
    );
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(text.contains("the field equals the value"), "{text}");

    // Definition and references, across the two files.
    let def = lsp.at(
        "textDocument/definition",
        &cloud,
        0,
        utf16_col(&fixed, "pager") + 1,
    );
    assert_eq!(def[0]["uri"], targets.as_str(), "{def}");
    assert_eq!(
        def[0]["range"],
        json!({"start": {"line": 0, "character": 7}, "end": {"line": 0, "character": 12}})
    );
    let refs = lsp.at("textDocument/references", &targets, 0, 8);
    let places: Vec<&str> = refs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(places, [targets.as_str(), cloud.as_str()], "{refs}");

    // Completion: targets after `post`, Alibaba's fields in an Alibaba rule, operators
    // after a field, test expectations.
    let more = format!(
        "{fixed}\nwhen @source == \"alibaba\" and cur\nwhen metricName -> post \ntest \"t\" {{\n  expect \n}}\n"
    );
    lsp.change(&cloud, 5, json!([{"text": more}]));
    let labels = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["label"].as_str().unwrap().to_owned())
            .collect()
    };
    let fields = labels(&lsp.at("textDocument/completion", &cloud, 1, 33));
    assert!(fields.contains(&"curValue".to_owned()), "{fields:?}");
    assert!(fields.contains(&"@state".to_owned()), "{fields:?}");
    let ops = labels(&lsp.at("textDocument/completion", &cloud, 2, 16));
    assert!(
        ops.contains(&"==".to_owned()) && ops.contains(&"=~".to_owned()),
        "{ops:?}"
    );
    let posts = labels(&lsp.at("textDocument/completion", &cloud, 2, 24));
    assert_eq!(posts, ["chat", "pager"]);
    let expects = labels(&lsp.at("textDocument/completion", &cloud, 4, 9));
    for e in ["post", "no post", "drop", "unrouted", "body"] {
        assert!(expects.contains(&e.to_owned()), "{expects:?}");
    }

    // Symbols and formatting.
    lsp.change(
        &cloud,
        6,
        json!([{"text": "rule \"cpu\"   when  metricName==\"CPU\"->post pager\ntest \"t\" { alert {\"metricName\": \"CPU\"}\n expect post pager }\n"}]),
    );
    let symbols = lsp.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": cloud}}),
    );
    let names: Vec<&str> = symbols
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cpu", "t"], "{symbols}");
    let edits = lsp.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": cloud}, "options": {"tabSize": 4, "insertSpaces": true}}),
    );
    assert_eq!(
        edits[0]["newText"],
        "rule \"cpu\" when metricName == \"CPU\" -> post pager\n\ntest \"t\" {\n    alert { \"metricName\": \"CPU\" }\n    expect post pager\n}\n",
        "{edits}"
    );
    lsp.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_documents_are_answered_without_a_crash_or_a_hang() {
    let dir = temp_folder("hostile");
    std::fs::write(dir.join("00-targets.rules"), TARGETS).unwrap();
    let mut lsp = Client::start(&dir);
    let started = Instant::now();

    // Control characters and replacement characters, as bytes that are not text arrive.
    let binary: String = (0u8..=255)
        .map(char::from)
        .chain("\u{fffd}\u{0}\u{feff}".chars())
        .cycle()
        .take(20_000)
        .collect();
    // A line of several megabytes.
    let long_line = format!(
        "when alertName == \"{}\" and metricName == \"m\" -> post pager {}\n",
        "x".repeat(3 << 20),
        "post pager ".repeat(1000)
    );
    // 200,000 nested parentheses.
    let nested = format!(
        "when {}a == 1{} -> post pager\n",
        "(".repeat(200_000),
        ")".repeat(200_000)
    );
    for (name, text) in [
        ("binary", &binary),
        ("long", &long_line),
        ("nested", &nested),
    ] {
        let file = uri(&dir.join(format!("{name}.rules")));
        lsp.open(&file, text);
        let ds = lsp.diagnostics(&file, |_| true);
        // Every answer still comes: hover at the end of the text, completion, symbols,
        // formatting.
        let last = text.lines().count().saturating_sub(1);
        lsp.at("textDocument/hover", &file, last, 1 << 30);
        lsp.at("textDocument/completion", &file, last, 1 << 30);
        lsp.request(
            "textDocument/documentSymbol",
            json!({"textDocument": {"uri": file}}),
        );
        lsp.request(
            "textDocument/formatting",
            json!({"textDocument": {"uri": file}, "options": {"tabSize": 4, "insertSpaces": true}}),
        );
        match name {
            "nested" => assert!(ds.iter().any(|d| d["code"] == "E0105"), "{ds:?}"),
            "binary" => assert!(!ds.is_empty()),
            _ => {}
        }
        lsp.notify(
            "textDocument/didClose",
            json!({"textDocument": {"uri": file}}),
        );
    }
    // A message that is not JSON-RPC, and one over the size limit, are read past.
    let garbage = "{not json";
    write!(
        lsp.stdin,
        "Content-Length: {}\r\n\r\n{garbage}",
        garbage.len()
    )
    .unwrap();
    lsp.stdin.flush().unwrap();
    lsp.at(
        "textDocument/hover",
        &uri(&dir.join("00-targets.rules")),
        0,
        8,
    );
    eprintln!("hostile documents answered in {:?}", started.elapsed());
    lsp.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// How long a keystroke takes to come back as diagnostics in a folder of 5,000 rules,
/// against `switchyard check` of the same folder in the same run (its ceiling: the editor
/// checks the folder as `check` does, and reads each file's names besides). Prints the
/// figures; run with `cargo test --release --test lsp -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: prints figures, asserts only that answers come"]
fn a_keystroke_in_a_large_folder_costs_about_one_check() {
    let dir = temp_folder("large");
    std::fs::write(dir.join("00-targets.rules"), TARGETS).unwrap();
    let mut rules = String::new();
    for i in 0..5_000 {
        let target = if i % 2 == 0 { "pager" } else { "chat" };
        rules.push_str(&format!(
            "rule \"r{i}\" when @source == \"alibaba\" and metricName == \"m_{i}\" and curValue > {i} -> post {target}\n"
        ));
    }
    std::fs::write(dir.join("big.rules"), &rules).unwrap();
    let check = |n: usize| {
        let started = Instant::now();
        for _ in 0..n {
            let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
                .arg("check")
                .arg(&dir)
                .output()
                .unwrap();
            assert!(out.status.success());
        }
        started.elapsed() / n as u32
    };
    let mut lsp = Client::start(&dir);
    let edited = uri(&dir.join("edited.rules"));
    lsp.open(&edited, "when metricName == \"x\" -> post pager\n");
    lsp.diagnostics(&edited, |_| true);
    let rounds: i64 = 20;
    let mut keystrokes = Duration::ZERO;
    let mut checks = Duration::ZERO;
    for round in 0..rounds {
        // A slip, then its repair: two checks, each awaited.
        let slip = if round % 2 == 0 { "=" } else { "==" };
        let started = Instant::now();
        lsp.change(
            &edited,
            round + 2,
            json!([{"text": format!("when metricName {slip} \"x\" -> post pager\n")}]),
        );
        lsp.diagnostics(&edited, |ds| ds.is_empty() == (slip == "=="));
        keystrokes += started.elapsed();
        checks += check(1);
    }
    let per_keystroke = keystrokes / rounds as u32;
    let per_check = checks / rounds as u32;
    eprintln!(
        "5,000 rules: a keystroke to its diagnostics {per_keystroke:?}; `switchyard check` {per_check:?} \
         (process start included); ratio {:.2}x",
        per_keystroke.as_secs_f64() / per_check.as_secs_f64()
    );
    lsp.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn windows_have_definitions_and_references_and_exit_needs_shutdown_first() {
    let dir = temp_folder("windows");
    std::fs::write(
        dir.join("00-targets.rules"),
        format!("{TARGETS}window night = daily 22:00-06:00 UTC\n"),
    )
    .unwrap();
    let file = uri(&dir.join("team.rules"));
    let mut lsp = Client::start(&dir);
    let first = "rule \"a\" when metricName == \"a\" -> post pager, hold during night";
    lsp.open(&file, &format!("{first}\nwhen during night -> post chat\n"));
    lsp.diagnostics(&file, |ds| ds.is_empty());
    let def = lsp.at("textDocument/definition", &file, 1, 13);
    assert_eq!(
        def[0]["range"]["start"],
        json!({"line": 2, "character": 7}),
        "{def}"
    );
    let refs = lsp.at(
        "textDocument/references",
        &file,
        0,
        utf16_col(first, "night") + 1,
    );
    assert_eq!(refs.as_array().unwrap().len(), 3, "{refs}");
    let hover = lsp.at("textDocument/hover", &file, 1, 13);
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(
        text.contains("window night = daily 22:00-06:00 UTC"),
        "{text}"
    );

    // `exit` without `shutdown` is a failure, as the protocol says.
    lsp.notify("exit", Value::Null);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = lsp.child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(1), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "lsp did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
