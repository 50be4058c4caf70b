//! A JetStream cluster on 127.0.0.1 for tests: `nats-server` from the project's own
//! install script (`scripts/nats-server`), N nodes with ports from the OS, each stopped by
//! its PID when the cluster is dropped. Every wait is bounded in time.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary, installed by `scripts/nats-server` at the pinned version; the reason when it
/// cannot be (a test then skips with it).
pub(crate) fn server_binary() -> Result<PathBuf, String> {
    installed("scripts/nats-server")
}

/// What one of the project's install scripts (`scripts/nats-server`, `scripts/chromium`)
/// prints: the path of what it installed; its reason on standard error when it cannot.
pub(crate) fn installed(script: &str) -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = Command::new(&script)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// A free port on 127.0.0.1 (the OS's; released before the server binds it).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// One GET on a new connection, with timeouts: the status and the body, or `None` when
/// nothing answers.
pub(crate) fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = format!("127.0.0.1:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    // HTTP/1.0: the body comes whole, not in chunks.
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// One node: its process and ports.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) client: u16,
    pub(crate) monitor: u16,
    config: PathBuf,
    child: Option<Child>,
}

/// Why a cluster did not start.
#[derive(Debug)]
pub(crate) enum StartError {
    /// `nats-server` cannot be installed here (no network, no pip): a test skips.
    Unavailable(String),
    /// It was installed but did not start, or did not become ready: a test fails.
    Failed(String),
}

/// A JetStream cluster of N nodes on 127.0.0.1.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<Node>,
    bin: PathBuf,
    dir: PathBuf,
}

impl Cluster {
    /// Starts `n` nodes (JetStream on, clustered when `n > 1`) and waits, at most `within`,
    /// until every node answers `/healthz` (JetStream current) and the cluster has a meta
    /// leader. `name` must be unique within a test binary.
    ///
    /// Ports come from the OS and are released before a node binds them, so a cluster
    /// started beside others may lose one to a neighbour (seen with five clusters at once
    /// under load): a start that is not ready within a third of `within` is stopped and
    /// tried again on new ports, at most three times; the last failure says what each
    /// node logged.
    pub(crate) fn start(name: &str, n: usize, within: Duration) -> Result<Cluster, StartError> {
        let bin = server_binary().map_err(StartError::Unavailable)?;
        let mut last = String::new();
        for attempt in 1..=3 {
            match Cluster::start_with(bin.clone(), &format!("{name}-{attempt}"), n, within / 3) {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(StartError::Failed(last))
    }

    fn start_with(bin: PathBuf, name: &str, n: usize, within: Duration) -> Result<Cluster, String> {
        let dir =
            std::env::temp_dir().join(format!("switchyard-nats-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut nodes = Vec::with_capacity(n);
        for (i, route) in routes.iter().enumerate() {
            let node = format!("n{}", i + 1);
            let (client, monitor) = (free_port(), free_port());
            let store = dir.join(&node);
            let cluster = if n > 1 {
                let peers: Vec<String> = routes
                    .iter()
                    .map(|p| format!("nats-route://127.0.0.1:{p}"))
                    .collect();
                // A name of its own: a route that reached another test's cluster (a port
                // reused) is refused instead of merging the two.
                format!(
                    "cluster {{ name: sy-{name}-{}, listen: 127.0.0.1:{route}, routes: [{}] }}",
                    std::process::id(),
                    peers.join(", ")
                )
            } else {
                String::new()
            };
            let config = dir.join(format!("{node}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: {node}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n\
                     jetstream {{ store_dir: \"{}\", max_mem: 64MB, max_file: 1GB }}\n{cluster}\n",
                    store.display()
                ),
            )
            .map_err(|e| e.to_string())?;
            nodes.push(Node {
                name: node,
                client,
                monitor,
                config,
                child: None,
            });
        }
        let mut c = Cluster { nodes, bin, dir };
        for i in 0..n {
            c.restart(i)?;
        }
        // One node alone has no meta leader to report: healthy is ready.
        if c.wait(within, |c| c.healthy() && (n == 1 || c.leader().is_some()))
            .is_err()
        {
            let logs: Vec<String> = c
                .nodes
                .iter()
                .map(|node| {
                    let text = std::fs::read_to_string(c.dir.join(format!("{}.log", node.name)))
                        .unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(3).collect();
                    format!("{}: {}", node.name, tail.join(" | "))
                })
                .collect();
            return Err(format!(
                "the {n}-node JetStream cluster was not ready within {within:?}; {}",
                logs.join("; ")
            ));
        }
        Ok(c)
    }

    /// Starts node `i` (again), with its data.
    pub(crate) fn restart(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(self.dir.join(format!("{}.log", node.name)))
            .map_err(|e| e.to_string())?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start nats-server: {e}"))?;
        node.child = Some(child);
        Ok(())
    }

    /// Stops node `i` with SIGKILL, by its PID.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process ids of the running nodes.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }

    /// The client URLs of the running nodes: `nats://127.0.0.1:port`.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| format!("nats://127.0.0.1:{}", n.client))
            .collect()
    }

    /// Whether every running node reports JetStream healthy.
    pub(crate) fn healthy(&self) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .all(|n| matches!(get(n.monitor, "/healthz"), Some((200, _))))
    }

    /// The JetStream meta leader, as a running node sees it.
    pub(crate) fn leader(&self) -> Option<String> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .find_map(|n| {
                let (_, body) = get(n.monitor, "/jsz")?;
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                let leader = v.pointer("/meta_cluster/leader")?.as_str()?;
                (!leader.is_empty()).then(|| leader.to_owned())
            })
    }

    /// The server's version, as node `i` reports it (`2.15.1`).
    pub(crate) fn version(&self, i: usize) -> Option<String> {
        let (_, body) = get(self.nodes[i].monitor, "/varz")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v.get("version")?.as_str().map(str::to_owned)
    }

    /// Polls `done` every 100 ms, at most `within`.
    pub(crate) fn wait(&self, within: Duration, done: impl Fn(&Cluster) -> bool) -> Result<(), ()> {
        let started = Instant::now();
        while started.elapsed() < within {
            if done(self) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
