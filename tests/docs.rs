//! The documentation's examples, run as they are written.
//!
//! - docs/server.md's end-to-end block (between its `end-to-end` markers) runs in bash, and
//!   every `# -> ` line in it must appear in what it prints. The one change made to the
//!   text: `cargo run --release --` becomes the binary under test (the test does not build
//!   a second, release, binary). The block uses the documented ports, 9095 and 9099.
//! - The README's rules folder checks and its tests pass, and its typo gives exactly the
//!   error the README shows.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// The fenced block between `<!-- NAME: begin -->` and `<!-- NAME: end -->`, without its
/// fence lines.
fn block(doc: &str, name: &str) -> String {
    let begin = format!("<!-- {name}: begin -->");
    let end = format!("<!-- {name}: end -->");
    let inner = doc
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(inner, _)| inner)
        .unwrap_or_else(|| panic!("no {begin} ... {end} in the document"));
    let inner = inner.trim();
    let body = inner
        .strip_prefix("```")
        .and_then(|s| s.strip_suffix("```"))
        .unwrap_or_else(|| panic!("the {name} block is not one fenced block"));
    // Past the fence's language word, if any.
    body.split_once('\n')
        .map_or("", |(_, rest)| rest)
        .to_owned()
}

/// Whether `line` (with `...` standing for any text on the same line) appears in `out`.
fn printed(out: &str, line: &str) -> bool {
    let pieces: Vec<&str> = line.split("...").collect();
    out.lines().any(|l| {
        let mut rest = l;
        for p in &pieces {
            match rest.find(p) {
                Some(i) => rest = &rest[i + p.len()..],
                None => return false,
            }
        }
        true
    })
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn the_end_to_end_example_in_docs_server_md_works_as_pasted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/server.md")).unwrap();
    let script = block(&doc, "end-to-end");
    assert!(
        script.contains("cargo run --release --"),
        "the block no longer runs `cargo run --release --`: update this test"
    );
    let expected: Vec<&str> = script
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("# -> "))
        .collect();
    assert!(expected.len() >= 3, "the block shows what arrives");
    for port in [9095, 9099] {
        assert!(
            port_free(port),
            "port {port} is in use on 127.0.0.1; the documented example needs it: stop what uses it"
        );
    }
    let script = script.replace("cargo run --release --", BIN);

    // The repository's folder, as the reader has it: the example rules, no data yet.
    let dir = std::env::temp_dir().join(format!("switchyard-docs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    for entry in std::fs::read_dir(root.join("rules")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join("rules").join(p.file_name().unwrap())).unwrap();
    }
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that whatever it started can be stopped at the end.
        .process_group(0);
    // The example rules read their URLs and tokens from these, with local defaults.
    for var in [
        "ALARM_URL",
        "OK_URL",
        "WEBHOOK_AUTH_TOKEN",
        "ECS_CRITICAL_URL",
        "ECS_RECOVERED_URL",
        "WEB_CHAT_URL",
        "PAGER_URL",
        "PAGER_TOKEN",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let pgid = child.id();
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(60) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Whatever the block left running (it stops its own on success) is stopped here.
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    let status = status.unwrap_or_else(|| panic!("the block ran over 60 s\n{out}\n{err}"));
    assert!(status.success(), "the block failed: {status}\n{out}\n{err}");
    for line in expected {
        assert!(
            printed(&out, line),
            "the document says `{line}` arrives; the run printed:\n{out}\nstderr:\n{err}"
        );
    }
    assert!(
        !err.contains("curl:") && !err.contains("panicked"),
        "an error during the run:\n{err}"
    );
}

#[test]
fn the_readme_rules_folder_checks_its_tests_pass_and_its_typo_reads_as_shown() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let file = block(&readme, "readme-rules");
    // The README names the file in the sentence before the block.
    let name = "my-rules/cpu.rules";
    assert!(
        readme.contains(&format!("`{name}`:")),
        "the README names {name}"
    );
    let dir = std::env::temp_dir().join(format!("switchyard-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &file).unwrap();
    let folder = name.split('/').next().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .env_remove("PAGER_URL")
            .env_remove("PAGER_TOKEN")
            .output()
            .unwrap()
    };
    let check = run(&["check", folder]);
    let err = String::from_utf8_lossy(&check.stderr).into_owned();
    assert_eq!(check.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "ok: {folder}: 1 rules, 1 targets, 2 tests, 0 warning(s)"
        )),
        "{err}"
    );
    let test = run(&["test", folder]);
    let out = String::from_utf8_lossy(&test.stdout).into_owned();
    assert_eq!(test.status.code(), Some(0), "{out}");
    assert!(out.contains("test result: ok. 2 passed; 0 failed"), "{out}");

    std::fs::write(&path, file.replace("-> post pager", "-> post pagr")).unwrap();
    let typo = run(&["check", folder]);
    assert_eq!(typo.status.code(), Some(1));
    let shown = block(&readme, "readme-error");
    let got = String::from_utf8_lossy(&typo.stderr).into_owned();
    assert!(
        got.starts_with(shown.trim_end()),
        "the README shows:\n{shown}\nthe check prints:\n{got}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// deploy/kubernetes/: the switchyard config in its ConfigMap is what the server accepts
/// (NATS settings checked as at start), its rules pass `switchyard check`, and the
/// Deployment probes the endpoints the server has, on the port the config listens on.
#[test]
fn the_kubernetes_manifests_hold_a_config_and_rules_the_binary_accepts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let text = std::fs::read_to_string(dir.join("configmap.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = text
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    let data = |name: &str| {
        docs.iter()
            .find(|d| d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no ConfigMap {name}"))["data"]
            .as_object()
            .unwrap()
            .clone()
    };
    let config_text = data("switchyard-config")["switchyard.yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = switchyard::server::Config::parse(&config_text, "configmap.yaml").unwrap();
    let env = |name: &str| (name == "SWITCHYARD_ADMIN_TOKEN").then(|| String::from("t0ken"));
    config.admin_auth(&env).unwrap();
    assert_eq!(config.listen.port(), 9095);
    #[cfg(feature = "nats")]
    {
        let nats = config
            .nats_settings(&env)
            .unwrap()
            .expect("the nats backend");
        assert_eq!((nats.urls.len(), nats.replicas), (3, 3));
    }

    let rules = std::env::temp_dir().join(format!("switchyard-k8s-rules-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&rules);
    std::fs::create_dir_all(&rules).unwrap();
    for (name, body) in data("switchyard-rules") {
        std::fs::write(rules.join(name), body.as_str().unwrap()).unwrap();
    }
    let out = Command::new(BIN).arg("check").arg(&rules).output().unwrap();
    let _ = std::fs::remove_dir_all(&rules);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let deployment = std::fs::read_to_string(dir.join("deployment.yaml")).unwrap();
    let deployment: serde_json::Value = serde_saphyr::from_str(&deployment).unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["ports"][0]["containerPort"], 9095);
    assert_eq!(deployment["spec"]["replicas"], 3);
}
