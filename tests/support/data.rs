//! A data folder for a router under test, and waiting for a router's state.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A fresh folder under the system's temp folder, removed when dropped. `name` must be
/// unique within a test binary (the process id keeps binaries apart).
pub(crate) struct DataDir(pub(crate) PathBuf);

impl DataDir {
    pub(crate) fn new(name: &str) -> DataDir {
        let dir = std::env::temp_dir().join(format!("switchyard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        DataDir(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `done` every 10 ms until it holds or `limit` passes; the caller asserts after.
pub(crate) async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
