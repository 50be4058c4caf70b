//! Starting the switchyard binary in a test and reading what it reports on stderr.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Spawns `cmd` (stderr piped, stdout discarded) and waits, at most `within`, for a stderr
/// line starting with `prefix`; returns the child and the rest of that line.
pub(crate) fn spawn_until(
    mut cmd: Command,
    prefix: &'static str,
    within: Duration,
) -> (Child, String) {
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = log_of(child.id());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(prefix) {
                let _ = tx.send(rest.to_owned());
            }
            log.lock().unwrap().push(line);
        }
    });
    match rx.recv_timeout(within) {
        Ok(rest) => (child, rest),
        Err(_) => {
            let _ = child.kill();
            panic!("the process did not report `{prefix}` within {within:?}");
        }
    }
}

/// `switchyard serve` with `args`; returns the child and its base URL (`http://127.0.0.1:port`).
pub(crate) fn serve(args: &[&str]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.arg("serve").args(args);
    spawn_until(cmd, "listening on ", Duration::from_secs(30))
}

/// Starts `serve` on 127.0.0.1 (a port from the OS) with `config` as its config file and
/// `rules` as its one rules file, both written in `dir`; returns the child and its URL.
pub(crate) fn serve_with(dir: &std::path::Path, config: &str, rules: &str) -> (Child, String) {
    serve_with_env(dir, config, rules, &[])
}

/// [`serve_with`], with `env` set in the server's environment (a secret it reads).
pub(crate) fn serve_with_env(
    dir: &std::path::Path,
    config: &str,
    rules: &str,
    env: &[(&str, &str)],
) -> (Child, String) {
    serve_bin(
        std::path::Path::new(env!("CARGO_BIN_EXE_switchyard")),
        dir,
        config,
        rules,
        env,
    )
}

/// [`serve_with_env`] with the binary at `bin`: a benchmark that compares two builds.
pub(crate) fn serve_bin(
    bin: &std::path::Path,
    dir: &std::path::Path,
    config: &str,
    rules: &str,
    env: &[(&str, &str)],
) -> (Child, String) {
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("r.rules"), rules).unwrap();
    std::fs::write(dir.join("s.yaml"), config).unwrap();
    let mut cmd = Command::new(bin);
    cmd.envs(env.iter().copied()).arg("serve").args([
        "--config",
        dir.join("s.yaml").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--rules",
        rules_dir.to_str().unwrap(),
        "--data",
        dir.join("data").to_str().unwrap(),
    ]);
    spawn_until(cmd, "listening on ", Duration::from_secs(30))
}

/// The CPU time (user and system) the processes `pids` have used, in microseconds.
pub(crate) fn cpu_us(pids: &[u32]) -> f64 {
    // Clock ticks of 10 ms: Linux's USER_HZ on every common build.
    const TICK_US: f64 = 10_000.0;
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // The fields after the command's closing parenthesis; utime and stime are the
            // 14th and 15th of the line, the 12th and 13th after it.
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .sum::<f64>()
        * TICK_US
}

/// The peak resident memory of a process (`VmHWM`), in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Every line a process started by [`spawn_until`] wrote on stderr so far, by its PID.
pub(crate) fn stderr_lines(pid: u32) -> Vec<String> {
    log_of(pid).lock().unwrap().clone()
}

fn log_of(pid: u32) -> Log {
    static LOGS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<u32, Log>>> =
        std::sync::OnceLock::new();
    LOGS.get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(pid)
        .or_default()
        .clone()
}
