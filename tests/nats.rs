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
