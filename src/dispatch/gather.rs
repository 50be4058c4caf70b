//! Gathers the outbox operations of one scheduler round into one hand-over to the writer
//! thread, so that one group commit (one fsync) takes them all.
//!
//! Handing each operation to the writer at once starts a commit as soon as the first one
//! arrives; the requests the runtime has already read then wait for the next commit. On one
//! core that made commits of about 11 operations at 32 connections, and the fsync of each
//! commit is the largest cost of a durable ingest. Here the first operation after a
//! hand-over starts a small task that yields to the runtime until a round of the scheduler
//! brings no new operation (at most [`ROUNDS`]); every task that was ready, and every
//! socket that became readable, has then had its turn, and the gathered operations go to
//! the writer together. The wait is a few scheduler rounds, microseconds when the runtime
//! is idle. Measured on one core (docs/benchmarks.md): commits of about 19 operations,
//! ingest +15-25%, and end to end 0.85x the CPU per alert with a lower p99.
//!
//! Outside a tokio runtime, or once [`MAX_GATHERED`] operations wait, the operations are
//! handed over at once. Nothing waits here unseen: [`Gather::close`] hands over what is
//! gathered before it closes the channel.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};

/// The most scheduler rounds an operation waits for others.
const ROUNDS: usize = 3;

/// Operations beyond this are handed over without waiting for the round to end.
const MAX_GATHERED: usize = 512;

/// A channel to a thread that takes operations in groups.
pub(crate) struct Gather<T> {
    inner: Arc<Mutex<Inner<T>>>,
}

struct Inner<T> {
    items: Vec<T>,
    /// `None` once closed.
    tx: Option<mpsc::Sender<Vec<T>>>,
}

impl<T> Inner<T> {
    /// Hands the gathered items over; if the receiver is gone they are dropped, and with
    /// them whatever their senders wait on.
    fn flush(&mut self) {
        if self.items.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.items);
        if let Some(tx) = &self.tx {
            let _ = tx.send(items);
        }
    }
}

fn lock<T>(inner: &Mutex<Inner<T>>) -> MutexGuard<'_, Inner<T>> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T: Send + 'static> Gather<T> {
    pub(crate) fn new(tx: mpsc::Sender<Vec<T>>) -> Gather<T> {
        Gather {
            inner: Arc::new(Mutex::new(Inner {
                items: Vec::new(),
                tx: Some(tx),
            })),
        }
    }

    /// Queues `item` for the receiver; gives it back once the channel is closed.
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        let mut inner = lock(&self.inner);
        if inner.tx.is_none() {
            return Err(item);
        }
        inner.items.push(item);
        if inner.items.len() >= MAX_GATHERED {
            inner.flush();
        } else if inner.items.len() == 1 {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let round = Round(Arc::clone(&self.inner));
                    runtime.spawn(async move { round.wait().await });
                }
                Err(_) => inner.flush(),
            }
        }
        Ok(())
    }

    /// Hands over what is gathered and closes the channel: the receiver ends once it has
    /// taken everything, and later pushes are refused.
    pub(crate) fn close(&self) {
        let mut inner = lock(&self.inner);
        inner.flush();
        inner.tx = None;
    }
}

/// The task that ends a gathering round. Its drop hands the items over, so they go even if
/// the runtime drops the task unfinished or never runs it (a runtime shutting down).
struct Round<T>(Arc<Mutex<Inner<T>>>);

impl<T> Round<T> {
    /// Yields until a scheduler round adds nothing, or for [`ROUNDS`] rounds.
    async fn wait(&self) {
        let mut seen = 0;
        for _ in 0..ROUNDS {
            tokio::task::yield_now().await;
            let now = lock(&self.0).items.len();
            if now == seen {
                break;
            }
            seen = now;
        }
    }
}

impl<T> Drop for Round<T> {
    fn drop(&mut self) {
        lock(&self.0).flush();
    }
}

#[cfg(test)]
#[path = "gather_test.rs"]
mod tests;
